//! The PyTorch parity check: load PyTorch-named weights and one batch from a safetensors file, run
//! forward + loss + backward (and optionally Adam steps) here, and compare tensor by tensor.
//!
//! The file is written by `benches/reference/make_parity_fixture.py`: parameters under their
//! `state_dict` names, `inputs` and `targets` (int64 `[B, T]`, batch-first), `loss`,
//! `grad.<param>` and `step<k>.<param>` (parameters after k Adam steps on the same batch, each
//! from a zero hidden state). A file whose tensors are float64 (`--dtype float64`) is checked in
//! `f64` from end to end — every op, the loss and Adam are generic over the float type — so that
//! the two implementations should agree to ~1e-12 rather than to float32's ~1e-7.

use crate::config::Config;
use crate::data::Window;
use crate::model::Model;
use safetensors::{Dtype, SafeTensors};
use stagewise_core::{Ctx, Error, Float, Result};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use std::path::Path;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The file's tensor name (`loss`, `grad.fc.weight`, `step3.lstm.bias_hh_l0`, ...).
    pub name: String,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
}

/// Everything the check measured.
#[derive(Clone, Debug)]
pub struct ParityReport {
    /// The float type the file holds and the check ran in: `"f32"` or `"f64"`.
    pub dtype: &'static str,
    /// Our loss on the batch.
    pub loss: f64,
    /// The reference loss.
    pub reference_loss: f64,
    /// Every comparison, in the order printed.
    pub comparisons: Vec<Comparison>,
}

impl ParityReport {
    /// The comparisons whose difference exceeds `tol`.
    pub fn failures(&self, tol: f64) -> Vec<&Comparison> {
        // NaN counts as a failure.
        self.comparisons.iter().filter(|c| c.max_abs_diff.is_nan() || c.max_abs_diff > tol).collect()
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message }
}

/// The file's float tensor `name` as `T` (whose dtype it must have), with its shape.
fn float_tensor<T: Float>(st: &SafeTensors<'_>, name: &str, path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let t = st.tensor(name).map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
    let data = match (t.dtype(), std::mem::size_of::<T>()) {
        (Dtype::F32, 4) => t
            .data()
            .chunks_exact(4)
            .map(|b| T::from_f64(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
            .collect(),
        (Dtype::F64, 8) => t
            .data()
            .chunks_exact(8)
            .map(|b| T::from_f64(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])))
            .collect(),
        (dtype, size) => {
            let want = if size == 4 { "F32" } else { "F64" };
            return Err(bad(
                path,
                format!("tensor `{name}` is {dtype:?}, expected {want} like `embedding.weight`"),
            ));
        }
    };
    Ok((t.shape().to_vec(), data))
}

fn id_tensor(
    st: &SafeTensors<'_>,
    name: &str,
    path: &Path,
    vocab: usize,
) -> Result<(usize, usize, Vec<u32>)> {
    let t = st.tensor(name).map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
    let shape = t.shape();
    if t.dtype() != Dtype::I64 || shape.len() != 2 {
        return Err(bad(path, format!("tensor `{name}` must be I64 [B, T], got {:?} {shape:?}", t.dtype())));
    }
    let (b, steps) = (shape[0], shape[1]);
    let flat: Vec<i64> =
        t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    let mut time_major = vec![0u32; b * steps];
    for bi in 0..b {
        for ti in 0..steps {
            let id = flat[bi * steps + ti];
            if id < 0 || id as usize >= vocab {
                return Err(bad(
                    path,
                    format!("`{name}`[{bi}, {ti}] = {id} is outside the vocabulary of {vocab}"),
                ));
            }
            time_major[ti * b + bi] = id as u32;
        }
    }
    Ok((b, steps, time_major))
}

/// The largest `|a − b|`, NaN if any difference is NaN (so that it fails every tolerance).
fn max_abs_diff<T: Float>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f64() - y.to_f64()).abs())
        .fold(0.0, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
}

/// Runs the check. `lr` defaults to the file's metadata `lr`, else 1e-3.
///
/// With `adam_steps = N > 0`, the file must hold `stepN.<param>` for every parameter; the
/// parameters after every earlier step `K < N` are compared where the file has `stepK.*` too.
/// The check runs in the file's float type (that of `embedding.weight`: F32 or F64).
pub fn run_parity(path: &Path, adam_steps: usize, lr: Option<f64>) -> Result<ParityReport> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let file_lr = metadata.metadata().as_ref().and_then(|m| m.get("lr")).and_then(|s| s.parse::<f64>().ok());
    let lr = lr.or(file_lr).unwrap_or(1e-3);
    let dtype = st
        .tensor("embedding.weight")
        .map_err(|e| bad(path, format!("tensor `embedding.weight`: {e}")))?
        .dtype();
    match dtype {
        Dtype::F64 => check::<f64>(&st, path, adam_steps, lr, "f64"),
        _ => check::<f32>(&st, path, adam_steps, lr, "f32"),
    }
}

fn check<T: Float>(
    st: &SafeTensors<'_>,
    path: &Path,
    adam_steps: usize,
    lr: f64,
    dtype: &'static str,
) -> Result<ParityReport> {
    let (emb_shape, _) = float_tensor::<T>(st, "embedding.weight", path)?;
    let (hh_shape, _) = float_tensor::<T>(st, "lstm.weight_hh_l0", path)?;
    if emb_shape.len() != 2 || hh_shape.len() != 2 {
        return Err(bad(path, "embedding.weight and lstm.weight_hh_l0 must be 2-D".into()));
    }
    let (vocab, embed, hidden) = (emb_shape[0], emb_shape[1], hh_shape[1]);
    let (batch, steps, inputs) = id_tensor(st, "inputs", path, vocab)?;
    let (tb, ts, targets) = id_tensor(st, "targets", path, vocab)?;
    if (tb, ts) != (batch, steps) {
        return Err(bad(path, format!("targets are [{tb}, {ts}] but inputs are [{batch}, {steps}]")));
    }
    if adam_steps > 0 {
        let last = format!("step{adam_steps}.embedding.weight");
        if st.tensor(&last).is_err() {
            return Err(bad(
                path,
                format!("--adam-steps {adam_steps} needs tensor `{last}`, which is missing"),
            ));
        }
    }

    let mut config = Config {
        embedding: EmbeddingConfig::Table { dim: embed },
        forward: ForwardConfig::Lstm { hidden },
        ..Config::default()
    };
    config.optimizer.set_lr(lr);
    let mut model = Model::<T>::from_config(&config, vocab, batch, steps)?;
    let layout = model.tape.params.layout().clone();
    for id in layout.ids() {
        let entry = layout.entry(id);
        let (shape, data) = float_tensor::<T>(st, &entry.name, path)?;
        if shape != entry.shape {
            return Err(bad(
                path,
                format!("`{}` has shape {shape:?}, expected {:?}", entry.name, entry.shape),
            ));
        }
        model.tape.params.get_mut(id).copy_from_slice(&data);
    }

    let window = Window { steps, inputs: &inputs, targets: &targets };
    let cx = Ctx::seq();
    let mut comparisons = Vec::new();
    let (_, reference) = float_tensor::<T>(st, "loss", path)?;
    let reference_loss = reference.first().ok_or_else(|| bad(path, "`loss` is empty".into()))?.to_f64();
    let mut loss = f64::NAN;
    for step in 1..=adam_steps.max(1) {
        model.reset_state();
        model.train_window(window, &cx)?;
        if step == 1 {
            loss = model.loss_out.mean();
            comparisons.push(Comparison { name: "loss".into(), max_abs_diff: (loss - reference_loss).abs() });
            for id in layout.ids() {
                let name = format!("grad.{}", layout.entry(id).name);
                if st.tensor(&name).is_ok() {
                    let (_, g) = float_tensor::<T>(st, &name, path)?;
                    comparisons
                        .push(Comparison { max_abs_diff: max_abs_diff(model.tape.grads.get(id), &g), name });
                }
            }
        }
        if adam_steps == 0 {
            break;
        }
        for id in layout.ids() {
            let name = format!("step{step}.{}", layout.entry(id).name);
            if st.tensor(&name).is_err() {
                if step == adam_steps {
                    return Err(bad(
                        path,
                        format!("--adam-steps {adam_steps} needs tensor `{name}`, which is missing"),
                    ));
                }
                continue;
            }
            let (_, p) = float_tensor::<T>(st, &name, path)?;
            comparisons.push(Comparison { max_abs_diff: max_abs_diff(model.tape.params.get(id), &p), name });
        }
    }
    Ok(ParityReport { dtype, loss, reference_loss, comparisons })
}
