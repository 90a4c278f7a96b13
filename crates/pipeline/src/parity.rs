//! The PyTorch parity check: load PyTorch-named weights and one batch from a safetensors file, run
//! forward + loss + backward (and optionally Adam steps) here, and compare tensor by tensor.
//!
//! The file is written by `benches/reference/make_parity_fixture.py`: parameters under their
//! `state_dict` names, `inputs` and `targets` (int64 `[B, T]`, batch-first), `loss`,
//! `grad.<param>` and `step<k>.<param>` (parameters after k Adam steps on the same batch, each
//! from a zero hidden state). A file whose tensors are float64 (`--dtype float64`) is checked in
//! `f64` from end to end — every op, the loss and Adam are generic over the float type — so that
//! the two implementations should agree to ~1e-12 rather than to float32's ~1e-7.
//!
//! A reference file is input like any other: a header can claim any shape, and a check that
//! trusted it could compare one element of a tensor, or no tensor, and pass. So before a model is
//! built, the sizes `embedding.weight` (`[V, E]`), `lstm.weight_hh_l0` (`[4H, H]`) and `inputs`
//! (`[B, T]`) declare must be at least 1 and the model within [`MAX_PARAM_BYTES`] and
//! [`MAX_ACTIVATION_BYTES`], every tensor the check knows must have exactly the shape those sizes
//! give it, and every parameter's gradient must be there.

use crate::config::Config;
use crate::data::Window;
use crate::model::Model;
use safetensors::{Dtype, SafeTensors};
use stagewise_core::{Ctx, Error, Float, Result};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use std::path::Path;

/// The most parameter memory (in the file's float type) a fixture may declare, so that a header
/// claiming an enormous model is refused before anything is allocated. PyTorch fixtures are tiny
/// models; the check also holds gradients, Adam's moments and weight copies of the same size.
pub const MAX_PARAM_BYTES: usize = 1 << 30;

/// The most activation memory (an estimate of every `[B·T, width]` buffer the model allocates) a
/// fixture may declare through its batch, window and widths, for the same reason.
pub const MAX_ACTIVATION_BYTES: usize = 1 << 30;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The file's tensor name (`loss`, `grad.fc.weight`, `step3.lstm.bias_hh_l0`, ...).
    pub name: String,
    /// Largest absolute difference; NaN if any difference is NaN.
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
    /// The comparisons whose difference is not within `tol`. A NaN difference fails every
    /// tolerance, and a NaN `tol` fails every comparison, so NaN can never make a check pass.
    pub fn failures(&self, tol: f64) -> Vec<&Comparison> {
        self.comparisons
            .iter()
            .filter(|c| c.max_abs_diff.is_nan() || tol.is_nan() || c.max_abs_diff > tol)
            .collect()
    }
}

/// The model's parameters in layout order (PyTorch `state_dict` names).
const PARAMS: [&str; 7] = [
    "embedding.weight",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    "lstm.bias_ih_l0",
    "lstm.bias_hh_l0",
    "fc.weight",
    "fc.bias",
];

fn bad(path: &Path, message: String) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message }
}

/// The error for a tensor the file lacks, or whatever else the library reports.
fn tensor_error(path: &Path, name: &str, e: &safetensors::SafeTensorError) -> Error {
    match e {
        safetensors::SafeTensorError::TensorNotFound(_) => bad(path, format!("tensor `{name}` is missing")),
        e => bad(path, format!("tensor `{name}`: {e}")),
    }
}

/// The file's float tensor `name` as `T` (whose dtype it must have), with its shape.
fn float_tensor<T: Float>(st: &SafeTensors<'_>, name: &str, path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let t = st.tensor(name).map_err(|e| tensor_error(path, name, &e))?;
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

/// The ids of `inputs` or `targets` (already checked to be I64 `[batch, steps]`), time-major.
fn id_tensor(st: &SafeTensors<'_>, name: &str, path: &Path, vocab: usize, batch: usize) -> Result<Vec<u32>> {
    let t = st.tensor(name).map_err(|e| tensor_error(path, name, &e))?;
    let flat: Vec<i64> =
        t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    let steps = flat.len() / batch;
    if flat.len() != batch * steps {
        return Err(bad(
            path,
            format!("tensor `{name}` holds {} ids, not a multiple of {batch}", flat.len()),
        ));
    }
    let mut time_major = vec![0u32; flat.len()];
    for (i, &id) in flat.iter().enumerate() {
        let (bi, ti) = (i / steps, i % steps);
        match u32::try_from(id).ok().filter(|&id| (id as usize) < vocab) {
            Some(id) => time_major[ti * batch + bi] = id,
            None => {
                return Err(bad(
                    path,
                    format!("`{name}`[{bi}, {ti}] = {id} is outside the vocabulary of {vocab}"),
                ));
            }
        }
    }
    Ok(time_major)
}

/// The largest `|a − b|`, NaN if any difference is NaN or the lengths differ (so that it fails
/// every tolerance: NaN is never dropped).
fn max_abs_diff<T: Float>(a: &[T], b: &[T]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f64() - y.to_f64()).abs())
        .fold(0.0, |m: f64, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
}

/// The parameters' shapes, in [`PARAMS`] order, for vocabulary `vocab`, embedding width `embed`,
/// hidden size `hidden` and `h4 = 4·hidden`.
fn param_shapes(vocab: usize, embed: usize, hidden: usize, h4: usize) -> Vec<(&'static str, Vec<usize>)> {
    let shapes = [
        vec![vocab, embed],
        vec![h4, embed],
        vec![h4, hidden],
        vec![h4],
        vec![h4],
        vec![vocab, hidden],
        vec![vocab],
    ];
    PARAMS.into_iter().zip(shapes).collect()
}

/// The model a file declares: sizes read from its header and the shape every known tensor must
/// have, all computed with checked arithmetic before anything is allocated.
struct Declared {
    vocab: usize,
    embed: usize,
    hidden: usize,
    batch: usize,
    steps: usize,
    /// Every parameter's expected shape, in [`PARAMS`] order.
    params: Vec<(&'static str, Vec<usize>)>,
}

impl Declared {
    /// Sizes from the shapes of `embedding.weight` `[V, E]`, `lstm.weight_hh_l0` `[4H, H]` and
    /// `inputs` `[B, T]`, each at least 1, and the model's memory within the bounds.
    fn from_header(st: &SafeTensors<'_>, path: &Path, elem_bytes: usize) -> Result<Self> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            Ok(st.tensor(name).map_err(|e| tensor_error(path, name, &e))?.shape().to_vec())
        };
        let emb = shape("embedding.weight")?;
        let [vocab, embed] = match emb[..] {
            [v, e] if v >= 1 && e >= 1 => [v, e],
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "`embedding.weight` has shape {emb:?}, expected [vocabulary, width], both at least 1"
                    ),
                ));
            }
        };
        let hh = shape("lstm.weight_hh_l0")?;
        let hidden = match hh[..] {
            [_, h] if h >= 1 => h,
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "`lstm.weight_hh_l0` has shape {hh:?}, expected [4·hidden, hidden], hidden at least 1"
                    ),
                ));
            }
        };
        let inputs = st.tensor("inputs").map_err(|e| tensor_error(path, "inputs", &e))?;
        let [batch, steps] = match (inputs.dtype(), inputs.shape()) {
            (Dtype::I64, &[b, t]) if b >= 1 && t >= 1 => [b, t],
            (dtype, shape) => {
                return Err(bad(
                    path,
                    format!("`inputs` is {dtype:?} {shape:?}, expected I64 [batch, steps], both at least 1"),
                ));
            }
        };
        let too_large = |what: &str| bad(path, format!("{what} is too large to count"));
        let h4 = hidden.checked_mul(4).ok_or_else(|| too_large("`lstm.weight_hh_l0`'s 4·hidden"))?;
        let params = param_shapes(vocab, embed, hidden, h4);
        let declared = Declared { vocab, embed, hidden, batch, steps, params };
        declared.check_size(path, elem_bytes)?;
        Ok(declared)
    }

    /// Refuses a model whose parameters exceed [`MAX_PARAM_BYTES`] (naming the largest parameter
    /// and its shape) or whose activations exceed [`MAX_ACTIVATION_BYTES`] (naming `inputs`).
    fn check_size(&self, path: &Path, elem_bytes: usize) -> Result<()> {
        let bytes = |shape: &[usize]| shape.iter().try_fold(elem_bytes, |n, &d| n.checked_mul(d));
        let total = self.params.iter().try_fold(0usize, |sum, (_, shape)| sum.checked_add(bytes(shape)?));
        if total.is_none_or(|n| n > MAX_PARAM_BYTES) {
            let (name, shape) = self
                .params
                .iter()
                .max_by_key(|(_, shape)| bytes(shape).unwrap_or(usize::MAX))
                .map_or(("embedding.weight", &[][..]), |(n, s)| (*n, &s[..]));
            let size = total.map_or("more bytes than can be counted".to_owned(), |n| format!("{n} bytes"));
            return Err(bad(
                path,
                format!(
                    "`{name}` would have shape {shape:?}: the declared model's parameters are {size}, \
                     more than the {} GiB a parity fixture may declare",
                    MAX_PARAM_BYTES >> 30
                ),
            ));
        }
        // Per row of the window: the embedding's output and gradient (2E), the LSTM's gates and
        // their gradient, cell, tanh(cell), output and its gradient, transposed input (~14H), the
        // head's input copies (~2H) and its logits and their gradient (2V), and a few scalars.
        let per_row = [2usize, 16, 2]
            .iter()
            .zip([self.embed, self.hidden, self.vocab])
            .try_fold(4usize, |sum, (k, d)| sum.checked_add(k.checked_mul(d)?));
        let activations = self
            .batch
            .checked_mul(self.steps)
            .and_then(|rows| rows.checked_mul(per_row?))
            .and_then(|n| n.checked_mul(elem_bytes));
        if activations.is_none_or(|n| n > MAX_ACTIVATION_BYTES) {
            let size =
                activations.map_or("more bytes than can be counted".to_owned(), |n| format!("{n} bytes"));
            return Err(bad(
                path,
                format!(
                    "`inputs` of shape {:?} with vocabulary {}, width {} and hidden size {} needs about \
                     {size} of activations, more than the {} GiB a parity fixture may declare",
                    [self.batch, self.steps],
                    self.vocab,
                    self.embed,
                    self.hidden,
                    MAX_ACTIVATION_BYTES >> 30
                ),
            ));
        }
        Ok(())
    }

    /// The shape the tensor `name` must have, if the check knows it: a parameter, `grad.<param>`,
    /// `step<K>.<param>` for any K, `loss`, `inputs` or `targets`.
    fn expected_shape(&self, name: &str) -> Option<Vec<usize>> {
        let param = |p: &str| self.params.iter().find(|(n, _)| *n == p).map(|(_, s)| s.clone());
        match name {
            "loss" => Some(vec![1]),
            "inputs" | "targets" => Some(vec![self.batch, self.steps]),
            _ => {
                if let Some(p) = name.strip_prefix("grad.") {
                    return param(p);
                }
                if let Some((k, p)) = name.strip_prefix("step").and_then(|rest| rest.split_once('.'))
                    && !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_digit())
                {
                    return param(p);
                }
                param(name)
            }
        }
    }

    /// Every known tensor of the file has exactly its expected shape (`targets` also the dtype
    /// of `inputs`); the parameters, their gradients and `loss` are all there.
    fn check_tensors(&self, st: &SafeTensors<'_>, path: &Path) -> Result<()> {
        let mut names = st.names();
        names.sort_unstable();
        for name in names {
            let Some(expected) = self.expected_shape(name) else { continue };
            let t = st.tensor(name).map_err(|e| tensor_error(path, name, &e))?;
            if t.shape() != expected.as_slice() {
                return Err(bad(path, format!("`{name}` has shape {:?}, expected {expected:?}", t.shape())));
            }
            if name == "targets" && t.dtype() != Dtype::I64 {
                return Err(bad(path, format!("`targets` is {:?}, expected I64 like `inputs`", t.dtype())));
            }
        }
        let required = PARAMS
            .iter()
            .map(|p| (*p).to_owned())
            .chain(["loss".to_owned(), "targets".to_owned()])
            .chain(PARAMS.iter().map(|p| format!("grad.{p}")));
        for name in required {
            if st.tensor(&name).is_err() {
                let why = if name.starts_with("grad.") {
                    ": the check needs every parameter's gradient"
                } else {
                    ""
                };
                return Err(bad(path, format!("tensor `{name}` is missing{why}")));
            }
        }
        Ok(())
    }
}

/// Why `bytes` is not a safetensors file, naming the tensor when its declared shape and dtype do
/// not match the length of its data (the library's own error does not say which tensor).
fn not_safetensors(bytes: &[u8], e: &safetensors::SafeTensorError, path: &Path) -> Error {
    let generic = || bad(path, format!("not a safetensors file: {e}"));
    if !matches!(e, safetensors::SafeTensorError::TensorInvalidInfo) {
        return generic();
    }
    let header = bytes
        .get(..8)
        .and_then(|n| usize::try_from(u64::from_le_bytes(n.try_into().unwrap_or([0; 8]))).ok())
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
        .and_then(|h| {
            serde_json::from_slice::<std::collections::BTreeMap<String, serde_json::Value>>(h).ok()
        });
    let Some(header) = header else { return generic() };
    for (name, info) in &header {
        let dtype = info.get("dtype").and_then(|d| serde_json::from_value::<Dtype>(d.clone()).ok());
        let shape = info.get("shape").and_then(|s| serde_json::from_value::<Vec<usize>>(s.clone()).ok());
        let offsets =
            info.get("data_offsets").and_then(|o| serde_json::from_value::<[usize; 2]>(o.clone()).ok());
        let (Some(dtype), Some(shape), Some([start, end])) = (dtype, shape, offsets) else { continue };
        let declared = shape.iter().try_fold(dtype.bitsize(), |n, &d| n.checked_mul(d)).map(|bits| bits / 8);
        let held = end.saturating_sub(start);
        if declared != Some(held) {
            let declared =
                declared.map_or("more bytes than can be counted".to_owned(), |n| format!("{n} bytes"));
            return bad(
                path,
                format!(
                    "not a valid safetensors file: tensor `{name}` declares {dtype:?} {shape:?} ({declared}) but holds {held} bytes"
                ),
            );
        }
    }
    generic()
}

/// Reads the whole file, which must be a regular file (a device such as `/dev/zero` would be read
/// forever).
fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(bad(path, "is not a regular file: expected a safetensors file".into()));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Runs the check. `lr` defaults to the file's metadata `lr`, else 1e-3.
///
/// With `adam_steps = N > 0`, the file must hold `stepN.<param>` for every parameter; the
/// parameters after every earlier step `K < N` are compared where the file has `stepK.*` too.
/// The check runs in the file's float type (that of `embedding.weight`: F32 or F64).
///
/// Before any model is built the file is validated: every parameter, `grad.<param>`,
/// `step<K>.<param>` (for every K, compared or not), `loss` (`[1]`), `inputs` and `targets`
/// (`[B, T]`) has exactly its expected shape, every parameter's gradient is present, all sizes
/// are at least 1 and the model fits [`MAX_PARAM_BYTES`] and [`MAX_ACTIVATION_BYTES`]. Each
/// failure is an error naming the file and the tensor.
pub fn run_parity(path: &Path, adam_steps: usize, lr: Option<f64>) -> Result<ParityReport> {
    let bytes = read_regular_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(&bytes, &e, path))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let file_lr = metadata.metadata().as_ref().and_then(|m| m.get("lr")).and_then(|s| s.parse::<f64>().ok());
    let lr = lr.or(file_lr).unwrap_or(1e-3);
    let dtype =
        st.tensor("embedding.weight").map_err(|e| tensor_error(path, "embedding.weight", &e))?.dtype();
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
    let declared = Declared::from_header(st, path, std::mem::size_of::<T>())?;
    declared.check_tensors(st, path)?;
    let Declared { vocab, embed, hidden, batch, steps, .. } = declared;
    let inputs = id_tensor(st, "inputs", path, vocab, batch)?;
    let targets = id_tensor(st, "targets", path, vocab, batch)?;
    if adam_steps > 0 {
        let last = format!("step{adam_steps}.embedding.weight");
        if st.tensor(&last).is_err() {
            return Err(bad(
                path,
                format!("--adam-steps {adam_steps} needs tensor `{last}`, which is missing"),
            ));
        }
    }
    let (_, reference) = float_tensor::<T>(st, "loss", path)?;
    let reference_loss = reference.first().ok_or_else(|| bad(path, "`loss` is empty".into()))?.to_f64();

    let mut config = Config {
        embedding: EmbeddingConfig::table(embed),
        forward: ForwardConfig::lstm(hidden),
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
    let mut loss = f64::NAN;
    for step in 1..=adam_steps.max(1) {
        model.reset_state();
        model.train_window(window, &cx)?;
        if step == 1 {
            loss = model.loss_out.mean();
            comparisons.push(Comparison { name: "loss".into(), max_abs_diff: (loss - reference_loss).abs() });
            for id in layout.ids() {
                let name = format!("grad.{}", layout.entry(id).name);
                let (_, g) = float_tensor::<T>(st, &name, path)?;
                comparisons
                    .push(Comparison { max_abs_diff: max_abs_diff(model.tape.grads.get(id), &g), name });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(vocab: usize, embed: usize, hidden: usize, batch: usize, steps: usize) -> Declared {
        Declared {
            vocab,
            embed,
            hidden,
            batch,
            steps,
            params: param_shapes(vocab, embed, hidden, hidden * 4),
        }
    }

    #[test]
    fn nan_is_never_dropped_from_a_difference() {
        let nan = f32::NAN;
        for (a, b) in [
            (vec![nan, 1.0, 2.0], vec![0.0, 1.0, 2.0]),
            (vec![0.0, 1.0, nan], vec![0.0, 1.0, 2.0]),
            (vec![0.0, 5.0, 2.0], vec![0.0, 1.0, nan]),
            (vec![nan; 3], vec![nan; 3]),
            (vec![f32::INFINITY], vec![f32::INFINITY]),
        ] {
            assert!(max_abs_diff(&a, &b).is_nan(), "{a:?} vs {b:?}");
        }
        assert!(max_abs_diff(&[1.0f32, 2.0], &[1.0]).is_nan(), "different lengths");
        assert_eq!(max_abs_diff(&[1.0f32, 2.0], &[1.5, 2.0]), 0.5);
    }

    #[test]
    fn nan_fails_every_tolerance_and_a_nan_tolerance_fails_everything() {
        let report = ParityReport {
            dtype: "f32",
            loss: 1.0,
            reference_loss: 1.0,
            comparisons: vec![
                Comparison { name: "loss".into(), max_abs_diff: 0.0 },
                Comparison { name: "grad.fc.bias".into(), max_abs_diff: f64::NAN },
            ],
        };
        let names = |tol| report.failures(tol).iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(f64::INFINITY), ["grad.fc.bias"]);
        assert_eq!(names(1e-4), ["grad.fc.bias"]);
        assert_eq!(names(f64::NAN), ["loss", "grad.fc.bias"]);
    }

    #[test]
    fn enormous_models_are_refused_naming_the_tensor() {
        let path = Path::new("huge.safetensors");
        assert!(declared(50, 8, 12, 3, 5).check_size(path, 4).is_ok());
        // hidden = 10^8: W_hh alone would be [4·10^8, 10^8].
        let err = declared(50, 8, 100_000_000, 3, 5).check_size(path, 4).unwrap_err().to_string();
        assert!(err.contains("`lstm.weight_hh_l0` would have shape [400000000, 100000000]"), "{err}");
        assert!(err.contains("huge.safetensors") && err.contains("parameters"), "{err}");
        // Sizes whose products overflow are refused too, not wrapped.
        let err = declared(usize::MAX / 2, 3, 1, 1, 1).check_size(path, 8).unwrap_err().to_string();
        assert!(err.contains("more bytes than can be counted"), "{err}");
        // A small model over an enormous batch: the activations.
        let err = declared(50, 8, 12, 1 << 20, 1 << 10).check_size(path, 4).unwrap_err().to_string();
        assert!(err.contains("`inputs` of shape [1048576, 1024]") && err.contains("activations"), "{err}");
    }

    #[test]
    fn every_step_and_gradient_name_has_its_parameters_shape() {
        let d = declared(50, 8, 12, 3, 5);
        assert_eq!(d.expected_shape("grad.lstm.weight_ih_l0"), Some(vec![48, 8]));
        assert_eq!(d.expected_shape("step17.fc.weight"), Some(vec![50, 12]));
        assert_eq!(d.expected_shape("step0.fc.bias"), Some(vec![50]));
        assert_eq!(d.expected_shape("targets"), Some(vec![3, 5]));
        assert_eq!(d.expected_shape("loss"), Some(vec![1]));
        assert_eq!(d.expected_shape("stepx.fc.bias"), None);
        assert_eq!(d.expected_shape("notes"), None);
    }
}
