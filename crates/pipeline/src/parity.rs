//! The PyTorch parity check: load PyTorch-named weights and one batch from a safetensors file, run
//! forward + loss + backward (and optionally optimizer steps) here with the model a config
//! describes, and compare tensor by tensor.
//!
//! The file is written by `benches/reference/make_parity_fixture.py`: parameters under their
//! `state_dict` names, `inputs` and `targets` (int64 `[B, T]`, batch-first), `loss`,
//! `grad.<param>` (before clipping), optionally `grad_norm`, and `step<k>.<param>` (parameters
//! after k optimizer steps on the same batch, each from a zero hidden state). The script writes
//! the seed model's file and, per case, a file with the Stagewise config of its model
//! ([`run_parity_with_config`]). A file whose tensors are float64 (`--dtype float64`) is checked
//! in `f64` from end to end — every op, the loss and the optimizer are generic over the float
//! type — so that the two implementations should agree to ~1e-12 rather than to float32's ~1e-7.
//!
//! A reference file is input like any other: a header can claim any shape, and a check that
//! trusted it could compare one element of a tensor, or no tensor, and pass. So before a model is
//! built, the sizes `embedding.weight` (`[V, E]`), `{kind}.weight_hh_l0` (`[G·H, H]`), the layers
//! present and `inputs` (`[B, T]`) declare must be at least 1 and the model within
//! [`MAX_PARAM_BYTES`] and [`MAX_ACTIVATION_BYTES`], every tensor the check knows must have
//! exactly the shape those sizes give it, no tensor may belong to another kind of model, and
//! every trained parameter's gradient must be there.

use crate::config::Config;
use crate::data::Window;
use crate::model::Model;
use safetensors::{Dtype, SafeTensors};
use stagewise_backward::BackwardConfig;
use stagewise_core::{Ctx, Error, Float, Result};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::{ForwardConfig, RecurrentKind};
use std::path::Path;

/// Every recurrent kind, to recognise another kind's tensors in a file.
const KINDS: [RecurrentKind; 3] = [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh];

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
    /// The model checked, in one line (kind, layers, sizes, head; the five boxes' names), so a
    /// report says what it is a report of.
    pub model: String,
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

/// What the config says about the model beyond its sizes, which the file gives: enough to name
/// and shape every parameter before anything is built.
#[derive(Clone, Copy, Debug)]
struct Arch {
    /// The recurrent cell (`forward.kind`), hence the parameters' prefix and gate count.
    kind: RecurrentKind,
    /// Whether the head's weight is `embedding.weight` (`embedding.tied`): no `fc.weight`.
    tied: bool,
    /// Whether the table is frozen (`embedding.freeze`): PyTorch then has no gradient for it.
    frozen: bool,
}

impl Arch {
    fn of(config: &Config) -> Self {
        let EmbeddingConfig::Table { freeze, tied, .. } = config.embedding;
        Arch { kind: config.forward.kind(), tied, frozen: freeze }
    }
}

/// One parameter the declared model has.
#[derive(Clone, Debug)]
struct ParamSpec {
    /// PyTorch's `state_dict` name.
    name: String,
    /// Its shape.
    shape: Vec<usize>,
    /// Whether the config trains it (the file must then hold its gradient).
    trainable: bool,
}

/// The parameters of `arch` at these sizes, in the model's layout order: the table, each layer's
/// four tensors, the head. `gates_hidden` is `gates · hidden`.
fn param_specs(
    arch: Arch,
    [vocab, embed, hidden, layers]: [usize; 4],
    gates_hidden: usize,
) -> Vec<ParamSpec> {
    let spec = |name: String, shape: Vec<usize>| ParamSpec { name, shape, trainable: true };
    let mut params =
        vec![ParamSpec { trainable: !arch.frozen, ..spec("embedding.weight".into(), vec![vocab, embed]) }];
    let prefix = arch.kind.prefix();
    for l in 0..layers {
        let input = if l == 0 { embed } else { hidden };
        params.push(spec(format!("{prefix}.weight_ih_l{l}"), vec![gates_hidden, input]));
        params.push(spec(format!("{prefix}.weight_hh_l{l}"), vec![gates_hidden, hidden]));
        params.push(spec(format!("{prefix}.bias_ih_l{l}"), vec![gates_hidden]));
        params.push(spec(format!("{prefix}.bias_hh_l{l}"), vec![gates_hidden]));
    }
    if !arch.tied {
        params.push(spec("fc.weight".into(), vec![vocab, hidden]));
    }
    params.push(spec("fc.bias".into(), vec![vocab]));
    params
}

/// The layer index of a recurrent parameter named `{prefix}.{weight,bias}_{ih,hh}_l{k}`, if
/// `name` is one.
fn layer_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let k =
        ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"].iter().find_map(|p| rest.strip_prefix(p))?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

/// The parameter a tensor name refers to: `name` without a `grad.` or `step<K>.` prefix.
fn param_of(name: &str) -> &str {
    if let Some(p) = name.strip_prefix("grad.") {
        return p;
    }
    match name.strip_prefix("step").and_then(|rest| rest.split_once('.')) {
        Some((k, p)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => name,
    }
}

/// The model a file declares: sizes read from its header and the shape every known tensor must
/// have, all computed with checked arithmetic before anything is allocated.
struct Declared {
    arch: Arch,
    vocab: usize,
    embed: usize,
    hidden: usize,
    layers: usize,
    batch: usize,
    steps: usize,
    /// Every parameter, in the model's layout order.
    params: Vec<ParamSpec>,
}

impl Declared {
    /// Sizes from the shapes of `embedding.weight` `[V, E]`, `{kind}.weight_hh_l0` `[G·H, H]`
    /// and `inputs` `[B, T]`, each at least 1, the layers from the `{kind}.*_l{k}` tensors
    /// present (every layer must have its `weight_hh`), and the model's memory within the
    /// bounds.
    fn from_header(st: &SafeTensors<'_>, path: &Path, elem_bytes: usize, arch: Arch) -> Result<Self> {
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
        let (kind, prefix) = (arch.kind, arch.kind.prefix());
        let hh_name = format!("{prefix}.weight_hh_l0");
        let hh = match st.tensor(&hh_name) {
            Ok(t) => t.shape().to_vec(),
            Err(e) => {
                return Err(kind_mismatch(st, path, kind).unwrap_or_else(|| tensor_error(path, &hh_name, &e)));
            }
        };
        let gates = kind.gates();
        let hidden = match hh[..] {
            [_, h] if h >= 1 => h,
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "`{hh_name}` has shape {hh:?}, expected [{gates}·hidden, hidden], hidden at least 1"
                    ),
                ));
            }
        };
        let names = st.names();
        let deepest = names.iter().filter_map(|n| Some((layer_index(n, prefix)?, *n))).max();
        let layers = deepest.map_or(Some(1), |(k, _)| k.checked_add(1));
        let Some(layers) = layers else {
            let name = deepest.map_or("", |(_, n)| n);
            return Err(bad(path, format!("`{name}` declares more layers than can be counted")));
        };
        // Every layer needs its `weight_hh` (each present one is a distinct tensor, so this stops
        // within the file's tensor count).
        for k in 1..layers {
            let name = format!("{prefix}.weight_hh_l{k}");
            if st.tensor(&name).is_err() {
                let last = deepest.map_or("", |(_, n)| n);
                return Err(bad(
                    path,
                    format!(
                        "tensor `{name}` is missing: the file has `{last}`, so its model has {layers} layers"
                    ),
                ));
            }
        }
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
        let gates_hidden =
            hidden.checked_mul(gates).ok_or_else(|| too_large(&format!("`{hh_name}`'s {gates}·hidden")))?;
        let params = param_specs(arch, [vocab, embed, hidden, layers], gates_hidden);
        let declared = Declared { arch, vocab, embed, hidden, layers, batch, steps, params };
        declared.check_size(path, elem_bytes)?;
        Ok(declared)
    }

    /// Refuses a model whose parameters exceed [`MAX_PARAM_BYTES`] (naming the largest parameter
    /// and its shape) or whose activations exceed [`MAX_ACTIVATION_BYTES`] (naming `inputs`).
    fn check_size(&self, path: &Path, elem_bytes: usize) -> Result<()> {
        let bytes = |shape: &[usize]| shape.iter().try_fold(elem_bytes, |n, &d| n.checked_mul(d));
        let total = self.params.iter().try_fold(0usize, |sum, p| sum.checked_add(bytes(&p.shape)?));
        if total.is_none_or(|n| n > MAX_PARAM_BYTES) {
            let (name, shape) = self
                .params
                .iter()
                .max_by_key(|p| bytes(&p.shape).unwrap_or(usize::MAX))
                .map_or(("embedding.weight", &[][..]), |p| (p.name.as_str(), &p.shape[..]));
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
        // Per row of the window: the embedding's output and gradient (2E); per layer the gates
        // and their gradient, cell, tanh(cell), output and its gradient, transposed input
        // (~14H, the LSTM's, more than a GRU's or an RNN's); the head's input copies (~2H) and
        // its logits and their gradient (2V), and a few scalars.
        let per_row = self.layers.checked_mul(16).and_then(|per_hidden| {
            [2usize, per_hidden, 2]
                .iter()
                .zip([self.embed, self.hidden, self.vocab])
                .try_fold(4usize, |sum, (k, d)| sum.checked_add(k.checked_mul(d)?))
        });
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
                    "`inputs` of shape {:?} with vocabulary {}, width {}, hidden size {} and {} \
                     needs about {size} of activations, more than the {} GiB a parity fixture may declare",
                    [self.batch, self.steps],
                    self.vocab,
                    self.embed,
                    self.hidden,
                    if self.layers == 1 { "1 layer".to_owned() } else { format!("{} layers", self.layers) },
                    MAX_ACTIVATION_BYTES >> 30
                ),
            ));
        }
        Ok(())
    }

    /// The shape the tensor `name` must have, if the check knows it: a parameter, `grad.<param>`,
    /// `step<K>.<param>` for any K, `loss`, `grad_norm`, `inputs` or `targets`.
    fn expected_shape(&self, name: &str) -> Option<Vec<usize>> {
        match name {
            "loss" | "grad_norm" => Some(vec![1]),
            "inputs" | "targets" => Some(vec![self.batch, self.steps]),
            _ => {
                let param = param_of(name);
                self.params.iter().find(|p| p.name == param).map(|p| p.shape.clone())
            }
        }
    }

    /// Why the tensor `name` cannot belong to the configured model, if it cannot: a parameter
    /// (or its gradient or step) of another recurrent kind or of a layer the parameters do not
    /// have, or `fc.weight` when the config ties the head to the table.
    fn foreign(&self, name: &str) -> Option<String> {
        let param = param_of(name);
        let ours = self.arch.kind;
        if let Some(other) =
            KINDS.into_iter().find(|k| *k != ours && param.starts_with(&format!("{}.", k.prefix())))
        {
            return Some(format!(
                "`{name}` is a parameter of kind \"{}\", but the config's forward.kind is \"{}\"",
                other.name(),
                ours.name()
            ));
        }
        if param.starts_with(&format!("{}.", ours.prefix())) && !self.params.iter().any(|p| p.name == param) {
            let layers =
                if self.layers == 1 { "1 layer".to_owned() } else { format!("{} layers", self.layers) };
            return Some(format!(
                "`{name}` is not a parameter of the file's model ({layers} of kind \"{}\", from its parameters)",
                ours.name()
            ));
        }
        if self.arch.tied && param == "fc.weight" {
            return Some(format!(
                "`{name}` is an untied head's weight, but the config ties the head to the table \
                 (embedding.tied = true): set it to false for this file"
            ));
        }
        None
    }

    /// Every known tensor of the file has exactly its expected shape (`targets` also the dtype
    /// of `inputs`), no tensor belongs to another model, and the parameters, the gradients of the
    /// trainable ones and `loss` are all there.
    fn check_tensors(&self, st: &SafeTensors<'_>, path: &Path) -> Result<()> {
        let mut names = st.names();
        names.sort_unstable();
        for name in names {
            if let Some(why) = self.foreign(name) {
                return Err(bad(path, why));
            }
            let Some(expected) = self.expected_shape(name) else { continue };
            let t = st.tensor(name).map_err(|e| tensor_error(path, name, &e))?;
            if t.shape() != expected.as_slice() {
                return Err(bad(path, format!("`{name}` has shape {:?}, expected {expected:?}", t.shape())));
            }
            if name == "targets" && t.dtype() != Dtype::I64 {
                return Err(bad(path, format!("`targets` is {:?}, expected I64 like `inputs`", t.dtype())));
            }
        }
        let required = self
            .params
            .iter()
            .map(|p| p.name.clone())
            .chain(["loss".to_owned(), "targets".to_owned()])
            .chain(self.params.iter().filter(|p| p.trainable).map(|p| format!("grad.{}", p.name)));
        for name in required {
            if st.tensor(&name).is_err() {
                let why = if name.starts_with("grad.") {
                    ": the check needs every trained parameter's gradient"
                } else if name == "fc.weight" {
                    ": if the file's head is tied to the table, set embedding.tied = true"
                } else {
                    ""
                };
                return Err(bad(path, format!("tensor `{name}` is missing{why}")));
            }
        }
        Ok(())
    }

    /// `config` with the file's sizes: the table's width, the layers' hidden size and count.
    fn sized(&self, config: &Config) -> Config {
        let mut config = config.clone();
        let EmbeddingConfig::Table { dim, .. } = &mut config.embedding;
        *dim = self.embed;
        config.forward =
            ForwardConfig::with(self.arch.kind, self.hidden, self.layers, config.forward.dropout());
        config
    }

    /// One line on the model: the kind, layers and sizes, and the head.
    fn describe(&self) -> String {
        let layers = if self.layers == 1 { "1 layer".to_owned() } else { format!("{} layers", self.layers) };
        let head = if self.arch.tied { "head tied to the table" } else { "untied head" };
        let frozen = if self.arch.frozen { ", frozen table" } else { "" };
        format!(
            "{}, {layers} of {}, vocabulary {}, width {}, {head}{frozen}; batch {}, window {}",
            self.arch.kind.name(),
            self.hidden,
            self.vocab,
            self.embed,
            self.batch,
            self.steps
        )
    }
}

/// The error for a file whose recurrent tensors are of another kind than the config's (no
/// `{kind}.weight_hh_l0`, but another kind's), naming both; `None` if the file has none either.
fn kind_mismatch(st: &SafeTensors<'_>, path: &Path, kind: RecurrentKind) -> Option<Error> {
    let other = KINDS
        .into_iter()
        .find(|k| *k != kind && st.tensor(&format!("{}.weight_hh_l0", k.prefix())).is_ok())?;
    Some(bad(
        path,
        format!(
            "tensor `{}.weight_hh_l0` is missing: the config's forward.kind is \"{}\", but the file holds a model of kind \"{}\" (`{}.weight_hh_l0`)",
            kind.prefix(),
            kind.name(),
            other.name(),
            other.prefix()
        ),
    ))
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

/// Runs the check of the seed configuration (one LSTM layer, untied head, plain cross-entropy, no
/// clipping, Adam) at the file's sizes: [`run_parity_with_config`] with the default [`Config`].
/// `lr` defaults to the file's metadata `lr`, else 1e-3.
pub fn run_parity(path: &Path, adam_steps: usize, lr: Option<f64>) -> Result<ParityReport> {
    check_file(path, None, adam_steps, lr)
}

/// Runs the check of the model `config` describes, at the file's sizes, so that every
/// configuration (recurrent kind, layers, tied head, frozen table, loss, backward, clipping,
/// optimizer) can be held to PyTorch. `lr` overrides the config's learning rate.
///
/// From the config: `forward.kind`, `embedding.tied` and `embedding.freeze`, `[loss]`,
/// `[backward]` (kind and `clip`) and `[optimizer]`. From the file: the vocabulary and width
/// (`embedding.weight`), the hidden size (`{kind}.weight_hh_l0`) and the layers (the
/// `{kind}.*_l{k}` tensors present), which override the config's; the batch and window
/// (`inputs`). `forward.dropout` must be 0: its masks come from our random stream, which cannot
/// match PyTorch's. The `[schedule]` is not applied: every step is at the optimizer's own rate
/// (the model's `lr_factor` stays 1).
///
/// `backward.kind = "numeric"` is checked the same way, but its central differences only
/// approximate the gradient: in f64 the committed combined case's steps are within 1e-6, in f32
/// they are not within 1e-5.
///
/// The model is built by [`Model::from_config`], so every box is the one a run would use; the
/// parameters are loaded from the file by their PyTorch names. Compared: `loss`; `grad_norm`
/// (the total gradient norm before clipping) if the file has it; `grad.<param>`, the gradient
/// before clipping (with `clip > 0` it comes from a second model without clipping, built and
/// loaded the same way), for every parameter whose gradient the file holds — required for every
/// trained one; and, with `steps = N > 0`, the parameters after each step `K ≤ N` whose
/// `stepK.*` the file has — `stepN.*` is required. A step is what `Model::train_window` does on
/// the file's batch from a zero state: forward, loss, backward (and clipping), optimizer step.
///
/// The check runs in the file's float type (that of `embedding.weight`: F32 or F64). Before any
/// model is built the file is validated: every parameter, `grad.<param>`, `step<K>.<param>`
/// (for every K, compared or not), `loss` and `grad_norm` (`[1]`), `inputs` and `targets`
/// (`[B, T]`) has exactly its expected shape, no tensor belongs to another kind of model (or is
/// `fc.weight` with a tied head), the gradients are present, all sizes are at least 1 and the
/// model fits [`MAX_PARAM_BYTES`] and [`MAX_ACTIVATION_BYTES`]. Each failure is an error naming
/// the file and the tensor.
pub fn run_parity_with_config(
    path: &Path,
    config: &Config,
    steps: usize,
    lr: Option<f64>,
) -> Result<ParityReport> {
    check_file(path, Some(config), steps, lr)
}

/// Refuses what parity cannot reproduce: dropout (random masks).
fn check_parity_config(config: &Config) -> Result<()> {
    let p = config.forward.dropout();
    if p != 0.0 {
        return Err(Error::config(
            "forward.dropout",
            format!(
                "is {p}: parity needs 0, since dropout masks come from Stagewise's random stream and cannot match PyTorch's"
            ),
        ));
    }
    Ok(())
}

/// [`run_parity_with_config`], or the seed configuration at the file's (or 1e-3) learning rate
/// without a config.
fn check_file(path: &Path, config: Option<&Config>, steps: usize, lr: Option<f64>) -> Result<ParityReport> {
    if let Some(config) = config {
        check_parity_config(config)?;
    }
    let bytes = read_regular_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(&bytes, &e, path))?;
    let config = match config {
        Some(config) => {
            let mut config = config.clone();
            if let Some(lr) = lr {
                config.optimizer.set_lr(lr);
            }
            config
        }
        None => {
            let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
            let file_lr =
                metadata.metadata().as_ref().and_then(|m| m.get("lr")).and_then(|s| s.parse::<f64>().ok());
            let mut config = Config::default();
            config.optimizer.set_lr(lr.or(file_lr).unwrap_or(1e-3));
            config
        }
    };
    let dtype =
        st.tensor("embedding.weight").map_err(|e| tensor_error(path, "embedding.weight", &e))?.dtype();
    match dtype {
        Dtype::F64 => check::<f64>(&st, path, &config, steps, "f64"),
        _ => check::<f32>(&st, path, &config, steps, "f32"),
    }
}

/// `backward` without clipping: what gives the gradient before clipping.
fn unclipped(backward: &BackwardConfig) -> BackwardConfig {
    match backward {
        BackwardConfig::Reverse { .. } => BackwardConfig::Reverse { clip: 0.0 },
        BackwardConfig::Numeric { .. } => BackwardConfig::Numeric { clip: 0.0 },
    }
}

/// The model `config` describes for the file's batch, holding the file's initial parameters.
fn load_model<T: Float>(
    config: &Config,
    declared: &Declared,
    st: &SafeTensors<'_>,
    path: &Path,
) -> Result<Model<T>> {
    let mut model = Model::<T>::from_config(config, declared.vocab, declared.batch, declared.steps)?;
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
    Ok(model)
}

fn check<T: Float>(
    st: &SafeTensors<'_>,
    path: &Path,
    config: &Config,
    steps: usize,
    dtype: &'static str,
) -> Result<ParityReport> {
    let declared = Declared::from_header(st, path, std::mem::size_of::<T>(), Arch::of(config))?;
    declared.check_tensors(st, path)?;
    let inputs = id_tensor(st, "inputs", path, declared.vocab, declared.batch)?;
    let targets = id_tensor(st, "targets", path, declared.vocab, declared.batch)?;
    if steps > 0 {
        for p in &declared.params {
            let last = format!("step{steps}.{}", p.name);
            if st.tensor(&last).is_err() {
                return Err(bad(path, format!("--steps {steps} needs tensor `{last}`, which is missing")));
            }
        }
    }
    let (_, reference) = float_tensor::<T>(st, "loss", path)?;
    let reference_loss = reference.first().ok_or_else(|| bad(path, "`loss` is empty".into()))?.to_f64();
    let reference_norm = match st.tensor("grad_norm") {
        Ok(_) => float_tensor::<T>(st, "grad_norm", path)?.1.first().map(|n| n.to_f64()),
        Err(_) => None,
    };

    let config = declared.sized(config);
    let mut model = load_model::<T>(&config, &declared, st, path)?;
    let mut unclipped_model = if config.backward.clip() > 0.0 {
        let config = Config { backward: unclipped(&config.backward), ..config.clone() };
        Some(load_model::<T>(&config, &declared, st, path)?)
    } else {
        None
    };
    let stages = model.stage_names().join(" / ");
    let description = format!("{}; {stages}", declared.describe());
    let layout = model.tape.params.layout().clone();
    let window = Window { steps: declared.steps, inputs: &inputs, targets: &targets };
    let cx = Ctx::seq();
    let mut comparisons = Vec::new();
    let mut loss = f64::NAN;
    for step in 1..=steps.max(1) {
        model.reset_state();
        model.train_window(window, &cx)?;
        if step == 1 {
            loss = model.loss_out.mean();
            comparisons.push(Comparison { name: "loss".into(), max_abs_diff: (loss - reference_loss).abs() });
            if let Some(reference) = reference_norm {
                let ours = model.tape.grad_norm.unwrap_or(f64::NAN);
                comparisons
                    .push(Comparison { name: "grad_norm".into(), max_abs_diff: (ours - reference).abs() });
            }
            if let Some(m) = unclipped_model.as_mut() {
                m.reset_state();
                m.train_window(window, &cx)?;
            }
            let grads = &unclipped_model.as_ref().unwrap_or(&model).tape.grads;
            for id in layout.ids() {
                let name = format!("grad.{}", layout.entry(id).name);
                if st.tensor(&name).is_err() {
                    continue; // a frozen parameter's (the required ones were checked)
                }
                let (_, g) = float_tensor::<T>(st, &name, path)?;
                comparisons.push(Comparison { max_abs_diff: max_abs_diff(grads.get(id), &g), name });
            }
        }
        if steps == 0 {
            break;
        }
        for id in layout.ids() {
            let name = format!("step{step}.{}", layout.entry(id).name);
            if st.tensor(&name).is_err() {
                continue; // an intermediate step (the last one's were checked)
            }
            let (_, p) = float_tensor::<T>(st, &name, path)?;
            comparisons.push(Comparison { max_abs_diff: max_abs_diff(model.tape.params.get(id), &p), name });
        }
    }
    Ok(ParityReport { dtype, model: description, loss, reference_loss, comparisons })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Arch = Arch { kind: RecurrentKind::Lstm, tied: false, frozen: false };

    fn declared(vocab: usize, embed: usize, hidden: usize, batch: usize, steps: usize) -> Declared {
        declared_as(SEED, 1, [vocab, embed, hidden, batch, steps])
    }

    fn declared_as(arch: Arch, layers: usize, [vocab, embed, hidden, batch, steps]: [usize; 5]) -> Declared {
        let params = param_specs(arch, [vocab, embed, hidden, layers], hidden * arch.kind.gates());
        Declared { arch, vocab, embed, hidden, layers, batch, steps, params }
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
            model: String::new(),
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

    /// The names and shapes follow the kind, the layers, the tied head and the frozen table, and
    /// the parameters of another kind (or an untied head's weight, when tied) are recognised.
    #[test]
    fn every_configuration_declares_pytorch_s_names_and_shapes() {
        let gru = Arch { kind: RecurrentKind::Gru, tied: false, frozen: false };
        let d = declared_as(gru, 2, [50, 8, 12, 3, 5]);
        let names: Vec<&str> = d.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "embedding.weight",
                "gru.weight_ih_l0",
                "gru.weight_hh_l0",
                "gru.bias_ih_l0",
                "gru.bias_hh_l0",
                "gru.weight_ih_l1",
                "gru.weight_hh_l1",
                "gru.bias_ih_l1",
                "gru.bias_hh_l1",
                "fc.weight",
                "fc.bias"
            ]
        );
        assert_eq!(d.expected_shape("grad.gru.weight_ih_l0"), Some(vec![36, 8]));
        assert_eq!(d.expected_shape("step2.gru.weight_ih_l1"), Some(vec![36, 12]));
        assert_eq!(d.expected_shape("grad_norm"), Some(vec![1]));
        assert_eq!(d.expected_shape("lstm.weight_ih_l0"), None);
        let why = d.foreign("step1.lstm.bias_hh_l0").unwrap();
        assert!(why.contains("\"lstm\"") && why.contains("forward.kind is \"gru\""), "{why}");
        assert_eq!(d.foreign("fc.weight"), None);
        assert_eq!(d.foreign("step3.gru.bias_hh_l1"), None);
        let why = d.foreign("grad.gru.bias_hh_l2").unwrap();
        assert!(why.contains("not a parameter") && why.contains("2 layers"), "{why}");

        let tied = Arch { kind: RecurrentKind::RnnTanh, tied: true, frozen: true };
        let d = declared_as(tied, 1, [50, 12, 12, 3, 5]);
        let names: Vec<(&str, bool)> = d.params.iter().map(|p| (p.name.as_str(), p.trainable)).collect();
        assert_eq!(names[0], ("embedding.weight", false));
        assert_eq!(names[1], ("rnn.weight_ih_l0", true));
        assert_eq!(names.last(), Some(&("fc.bias", true)));
        assert!(!names.iter().any(|(n, _)| *n == "fc.weight"));
        assert_eq!(d.expected_shape("rnn.weight_hh_l0"), Some(vec![12, 12]));
        assert!(d.foreign("grad.fc.weight").unwrap().contains("embedding.tied"));
    }

    #[test]
    fn layer_indices_and_parameter_names_are_parsed_strictly() {
        assert_eq!(layer_index("gru.weight_hh_l3", "gru"), Some(3));
        assert_eq!(layer_index("gru.bias_ih_l10", "gru"), Some(10));
        assert_eq!(layer_index("gru.weight_hh_l", "gru"), None);
        assert_eq!(layer_index("gru.weight_hh_l+1", "gru"), None);
        assert_eq!(layer_index("lstm.weight_hh_l0", "gru"), None);
        assert_eq!(layer_index("grad.gru.weight_hh_l0", "gru"), None);
        assert_eq!(param_of("step12.fc.bias"), "fc.bias");
        assert_eq!(param_of("grad.fc.bias"), "fc.bias");
        assert_eq!(param_of("stepx.fc.bias"), "stepx.fc.bias");
    }

    /// Dropout's masks cannot match PyTorch's: a config with dropout is refused, naming the key.
    #[test]
    fn dropout_is_refused_naming_the_key() {
        let config =
            Config { forward: ForwardConfig::with(RecurrentKind::Gru, 12, 2, 0.5), ..Config::default() };
        let err = run_parity_with_config(Path::new("never-read.safetensors"), &config, 0, None).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("forward.dropout") && err.contains("0.5") && !err.contains('\n'), "{err}");
    }
}
