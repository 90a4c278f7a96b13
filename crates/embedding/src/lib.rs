//! The embed box: token ids -> vectors.
//!
//! # Brief overview
//! - [`Embedding`]: the box's contract, a [`Stage`] that reads a window of ids and writes the
//!   tape's embedding slot.
//! - [`TableEmbedding`] (`kind = "table"`): a `V x E` lookup table named `embedding.weight`,
//!   initialised N(0, 1) like PyTorch's `nn.Embedding` (or U(−0.1, 0.1), the word-language-model's
//!   `init_weights`: [`EmbeddingInit`]), optionally frozen. Its op, [`GatherOp`], copies rows
//!   forward and scatter-adds gradients backward, touching only the rows that occurred. A forward
//!   box may use the same table as its head's weight (`tied`).
//! - [`EmbeddingConfig`] / [`EmbeddingImpl`]: the config-file face (a TOML table with `kind`) and
//!   the run-time enum it builds.
//! - `laws` (feature `testkit`): the box's laws as a check any implementation can be run through.
//!
//! ```
//! use stagewise_core::{Ctx, Dims, Stage, Tape};
//! use stagewise_embedding::TableEmbedding;
//!
//! let dims = Dims { vocab: 5, batch: 2, seq_len: 2, params: 0 };
//! let mut tape = Tape::<f32>::new(dims.batch, dims.seq_len);
//! let mut table = TableEmbedding::<f32>::new(3, 42);
//! table.prepare(&dims, &mut tape)?;
//! table.run(&[1, 2, 3, 4], &mut tape, &Ctx::seq())?;
//! let out = tape.output().expect("embedding declared its output");
//! assert_eq!(tape.acts.slot(out).value.len(), 4 * 3);
//! # Ok::<(), stagewise_core::Error>(())
//! ```

#[cfg(any(test, feature = "testkit"))]
pub mod laws;

use stagewise_vectorizer::VectorFormat;
use std::path::{Path, PathBuf};

use stagewise_core::{
    Activations, Ctx, Dims, Error, Float, Grads, Op, Par, ParamId, Params, Result, Rng, SlotId, Stage, Tape,
};

/// The embed box's contract: ids of one window (time-major, `steps * batch` of them) in, the tape's
/// embedding slot out. A user type implementing this drops into the pipeline in place of the table.
pub trait Embedding<T: Float>: for<'a> Stage<Input<'a> = &'a [u32], Output = Tape<T>> {}

impl<T: Float, S> Embedding<T> for S where S: for<'a> Stage<Input<'a> = &'a [u32], Output = Tape<T>> {}

/// Row gather from `embedding.weight`: `out[r] = W[ids[r]]`.
///
/// Shapes: `W` is `[V, E]`, `ids` is `[N]` (N = steps·B, time-major), `out` is `[N, E]`.
#[derive(Clone, Debug)]
pub struct GatherOp {
    weight: ParamId,
    out: SlotId,
    dim: usize,
}

impl<T: Float> Op<T> for GatherOp {
    fn name(&self) -> &str {
        "embedding"
    }

    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let rows = acts.rows();
        let e = self.dim;
        let w = params.get(self.weight);
        let (ids, out) = acts.ids_and_slot_mut(self.out);
        for (dst, &id) in out.value[..rows * e].chunks_exact_mut(e).zip(ids) {
            let id = id as usize;
            dst.copy_from_slice(&w[id * e..(id + 1) * e]);
        }
    }

    /// Scatter-add in position order (deterministic at any thread count): only rows that
    /// occurred in the window are touched. Accumulates (`+=`), so a head tied to the table adds
    /// its share to the same gradient; a frozen table (not trainable) gets nothing, as PyTorch's
    /// `requires_grad = False`.
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, _par: Par) {
        if !params.layout().trainable(self.weight) {
            return;
        }
        let rows = acts.rows();
        let e = self.dim;
        let dw = grads.get_mut(self.weight);
        let dout = &acts.slot(self.out).grad[..rows * e];
        for (g, &id) in dout.chunks_exact(e).zip(&acts.ids[..rows]) {
            let id = id as usize;
            for (d, &x) in dw[id * e..(id + 1) * e].iter_mut().zip(g) {
                *d += x;
            }
        }
    }
}

/// How the table is initialised.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingInit {
    /// N(0, 1), `nn.Embedding`'s default.
    #[default]
    Normal,
    /// U(−0.1, 0.1), PyTorch's word-language-model's `init_weights` (the usual choice with a head
    /// tied to the table, whose logits N(0, 1) rows would make large).
    Uniform,
}

/// A `V x E` lookup table, PyTorch's `nn.Embedding` (`embedding.weight`).
#[derive(Clone, Debug)]
pub struct TableEmbedding<T> {
    dim: usize,
    seed: u64,
    init: EmbeddingInit,
    freeze: bool,
    vocab: usize,
    ops: std::ops::Range<usize>,
    _float: std::marker::PhantomData<T>,
}

impl<T: Float> TableEmbedding<T> {
    /// A trainable table of width `dim`, initialised N(0, 1) from the stream `"embedding"` of run
    /// seed `seed`.
    pub fn new(dim: usize, seed: u64) -> Self {
        TableEmbedding {
            dim,
            seed,
            init: EmbeddingInit::Normal,
            freeze: false,
            vocab: 0,
            ops: 0..0,
            _float: std::marker::PhantomData,
        }
    }

    /// The same table initialised by `init`.
    pub fn with_init(self, init: EmbeddingInit) -> Self {
        TableEmbedding { init, ..self }
    }

    /// The same table, frozen if `freeze`: marked untrainable when prepared, so optimizers leave
    /// it as initialised (or as loaded) and the gather's VJP skips it.
    pub fn with_freeze(self, freeze: bool) -> Self {
        TableEmbedding { freeze, ..self }
    }

    /// Width E.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl<T: Float> Stage for TableEmbedding<T> {
    type Input<'a> = &'a [u32];
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "table"
    }

    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::config("embedding.dim", "must be at least 1"));
        }
        if dims.vocab == 0 {
            return Err(Error::config("vectorizer", "vocabulary is empty"));
        }
        self.vocab = dims.vocab;
        let weight = tape.params.declare("embedding.weight", &[dims.vocab, self.dim])?;
        let mut rng = Rng::stream(self.seed, "embedding");
        for x in tape.params.get_mut(weight) {
            *x = T::from_f64(match self.init {
                EmbeddingInit::Normal => rng.normal(),
                EmbeddingInit::Uniform => rng.uniform_in(-0.1, 0.1),
            });
        }
        if self.freeze {
            tape.params.set_trainable(weight, false);
        }
        let out = tape.acts.declare_rows("embedding.out", self.dim, true)?;
        let index = tape.push(Box::new(GatherOp { weight, out, dim: self.dim }));
        self.ops = index..index + 1;
        tape.set_output(out);
        Ok(())
    }

    fn run(&self, ids: &[u32], tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let rows = tape.acts.rows();
        if ids.len() != rows {
            return Err(Error::shape("embedding input ids", rows, ids.len()));
        }
        if let Some(pos) = ids.iter().position(|&id| id as usize >= self.vocab) {
            return Err(Error::data(
                "embedding",
                format!("id {} at position {pos} is outside the vocabulary of {}", ids[pos], self.vocab),
            ));
        }
        tape.acts.ids[..rows].copy_from_slice(ids);
        tape.forward_range(self.ops.clone(), cx.par);
        Ok(())
    }
}

/// The embed box as a config-file table:
///
/// ```toml
/// kind = "table"
/// dim = 100
/// init = "normal"   # or "uniform"
/// freeze = false
/// tied = false
/// # pretrained = "glove.6B.100d.txt"   # start from a vector file
/// # format = "glove"                    # its layout (default: detected)
/// ```
///
/// `tied` is read by the forward box (its head's weight is then this table, and its hidden width
/// must equal `dim`); the table itself is the same either way.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbeddingConfig {
    /// A trainable table of one vector per id (PyTorch's `nn.Embedding`).
    ///
    /// [`TableEmbedding`].
    Table {
        /// Width E (the seed uses 100).
        #[serde(default = "default_dim")]
        dim: usize,
        /// N(0, 1) (`normal`, the default) or U(−0.1, 0.1) (`uniform`).
        #[serde(default)]
        init: EmbeddingInit,
        /// Whether the table stays as initialised (not trained).
        #[serde(default)]
        freeze: bool,
        /// Whether the forward box's head uses the table as its weight.
        #[serde(default)]
        tied: bool,
        /// A word-vector file to start the table from (e.g. `glove.6B.100d.txt`), relative to
        /// the working directory: each vocabulary word found in it (exact match first, then the
        /// word lower-cased) takes the file's vector, the others keep `init`. Read when training
        /// starts; its width must equal `dim`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pretrained: Option<PathBuf>,
        /// The layout of `pretrained`: `word2vec` (text), `word2vec_binary`, `fasttext` (`.vec`)
        /// or `glove` (default: detected from the file's first bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<VectorFormat>,
    },
}

fn default_dim() -> usize {
    100
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig::table(default_dim())
    }
}

impl EmbeddingConfig {
    /// A trainable, untied table of width `dim`, initialised N(0, 1) (the seed's, at 100).
    pub fn table(dim: usize) -> Self {
        EmbeddingConfig::Table {
            dim,
            init: EmbeddingInit::Normal,
            freeze: false,
            tied: false,
            pretrained: None,
            format: None,
        }
    }

    /// The vector file the table starts from, and its layout if named (`None`: detected).
    pub fn pretrained(&self) -> Option<(&Path, Option<VectorFormat>)> {
        match self {
            EmbeddingConfig::Table { pretrained, format, .. } => pretrained.as_deref().map(|p| (p, *format)),
        }
    }

    /// Width E of the vectors this stage produces.
    pub fn dim(&self) -> usize {
        match self {
            EmbeddingConfig::Table { dim, .. } => *dim,
        }
    }

    /// Whether the forward box's head is tied to the table.
    pub fn tied(&self) -> bool {
        match self {
            EmbeddingConfig::Table { tied, .. } => *tied,
        }
    }

    /// Builds the stage, seeded from the run seed.
    pub fn build<T: Float>(&self, seed: u64) -> EmbeddingImpl<T> {
        match *self {
            EmbeddingConfig::Table { dim, init, freeze, .. } => {
                EmbeddingImpl::Table(TableEmbedding::new(dim, seed).with_init(init).with_freeze(freeze))
            }
        }
    }
}

/// Every built-in embedding, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum EmbeddingImpl<T> {
    /// [`TableEmbedding`].
    Table(TableEmbedding<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for EmbeddingImpl<T> { Table }
    input<'a> = &'a [u32]; output = Tape<T>;);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{ProptestConfig, prop_assert, prop_assert_eq, proptest};
    use stagewise_testkit::{check_tape_gradients, dims_strategy};

    fn setup(
        v: usize,
        e: usize,
        b: usize,
        t: usize,
        seed: u64,
    ) -> (Tape<f64>, TableEmbedding<f64>, Vec<u32>) {
        let dims = Dims { vocab: v, batch: b, seq_len: t, params: 0 };
        let mut tape = Tape::<f64>::new(b, t);
        let mut table = TableEmbedding::new(e, seed);
        table.prepare(&dims, &mut tape).unwrap();
        tape.finish();
        let mut rng = stagewise_core::Rng::new(seed + 1);
        let ids = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
        (tape, table, ids)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn lookup_equals_table_rows((v, e, _h, b, t) in dims_strategy(), seed in 0u64..1000) {
            let (mut tape, table, ids) = setup(v, e, b, t, seed);
            table.run(&ids, &mut tape, &Ctx::seq()).unwrap();
            let w = tape.params.get(tape.params.layout().find("embedding.weight").unwrap()).to_vec();
            let out = &tape.acts.slot(tape.output().unwrap()).value;
            for (r, &id) in ids.iter().enumerate() {
                prop_assert_eq!(&out[r * e..(r + 1) * e], &w[id as usize * e..(id as usize + 1) * e]);
            }
        }

        #[test]
        fn vjp_matches_finite_differences((v, e, _h, b, t) in dims_strategy(), seed in 0u64..1000) {
            let (mut tape, table, ids) = setup(v, e, b, t, seed);
            table.run(&ids, &mut tape, &Ctx::seq()).unwrap();
            let out = tape.output().unwrap();
            let report = check_tape_gradients(&mut tape, &[], out, seed, 3, 4);
            prop_assert!(report.max_rel_err < 1e-6, "{}", report.worst);
        }

        #[test]
        fn gradient_touches_only_rows_that_occurred((v, e, _h, b, t) in dims_strategy(), seed in 0u64..1000) {
            let (mut tape, table, ids) = setup(v, e, b, t, seed);
            table.run(&ids, &mut tape, &Ctx::seq()).unwrap();
            let out = tape.output().unwrap();
            tape.acts.slot_mut(out).grad.fill(1.0);
            let (ops, params, acts, grads) = tape.sweep_parts();
            ops[0].vjp(params, acts, grads, Par::Seq);
            let dw = tape.grads.as_slice();
            for row in 0..v {
                let count = ids.iter().filter(|&&id| id as usize == row).count() as f64;
                prop_assert!(dw[row * e..(row + 1) * e].iter().all(|&g| g == count));
            }
        }
    }

    #[test]
    fn out_of_vocabulary_id_is_an_error_not_a_panic() {
        let (mut tape, table, mut ids) = setup(4, 2, 1, 2, 0);
        ids[1] = 9;
        let err = table.run(&ids, &mut tape, &Ctx::seq()).unwrap_err().to_string();
        assert!(err.contains("id 9 at position 1"), "{err}");
    }

    #[test]
    fn init_is_standard_normal() {
        let (tape, _, _) = setup(500, 100, 1, 1, 3);
        let w = tape.params.as_slice();
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / w.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean} var {var}");
    }

    #[test]
    fn config_rejects_unknown_keys_and_kinds() {
        let ok: EmbeddingConfig = serde_json::from_str(r#"{"kind":"table","dim":7}"#).unwrap();
        assert_eq!(ok, EmbeddingConfig::table(7));
        assert_eq!((ok.dim(), ok.tied()), (7, false));
        assert!(serde_json::from_str::<EmbeddingConfig>(r#"{"kind":"table","dims":7}"#).is_err());
        assert!(serde_json::from_str::<EmbeddingConfig>(r#"{"kind":"word2vec"}"#).is_err());
        let all: EmbeddingConfig =
            serde_json::from_str(r#"{"kind":"table","dim":7,"init":"uniform","freeze":true,"tied":true}"#)
                .unwrap();
        assert_eq!(
            all,
            EmbeddingConfig::Table {
                dim: 7,
                init: EmbeddingInit::Uniform,
                freeze: true,
                tied: true,
                pretrained: None,
                format: None
            }
        );
        let pre: EmbeddingConfig =
            serde_json::from_str(r#"{"kind":"table","pretrained":"v.txt","format":"glove"}"#).unwrap();
        assert_eq!(pre.pretrained(), Some((Path::new("v.txt"), Some(VectorFormat::Glove))));
        assert_eq!(EmbeddingConfig::table(3).pretrained(), None);
        let err =
            serde_json::from_str::<EmbeddingConfig>(r#"{"kind":"table","format":"gloves"}"#).unwrap_err();
        assert!(err.to_string().contains("gloves"), "{err}");
        assert!(all.tied());
        let err = serde_json::from_str::<EmbeddingConfig>(r#"{"kind":"table","init":"xavier"}"#).unwrap_err();
        assert!(err.to_string().contains("xavier"), "{err}");
    }

    /// `uniform` draws U(−0.1, 0.1), the word-language-model's `init_weights`.
    #[test]
    fn uniform_init_is_within_a_tenth() {
        let dims = Dims { vocab: 500, batch: 1, seq_len: 1, params: 0 };
        let mut tape = Tape::<f64>::new(1, 1);
        let mut table = TableEmbedding::<f64>::new(100, 3).with_init(EmbeddingInit::Uniform);
        table.prepare(&dims, &mut tape).unwrap();
        let w = tape.params.as_slice();
        assert!(w.iter().all(|x| x.abs() < 0.1));
        let mean_sq = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((mean_sq - 0.01 / 3.0).abs() < 2e-4, "{mean_sq}");
    }

    /// `freeze` marks the table untrainable (optimizers skip it), and the gather then leaves its
    /// gradient alone; the config's face builds the same.
    #[test]
    fn freeze_marks_the_table_untrainable() {
        let dims = Dims { vocab: 9, batch: 2, seq_len: 2, params: 0 };
        for (stage, frozen) in [
            (EmbeddingConfig::table(3).build::<f64>(0), false),
            (
                EmbeddingConfig::Table {
                    dim: 3,
                    init: EmbeddingInit::Normal,
                    freeze: true,
                    tied: false,
                    pretrained: None,
                    format: None,
                }
                .build(0),
                true,
            ),
        ] {
            let mut stage = stage;
            let mut tape = Tape::<f64>::new(2, 2);
            stage.prepare(&dims, &mut tape).unwrap();
            tape.finish();
            let id = tape.params.layout().find("embedding.weight").unwrap();
            assert_eq!(tape.params.layout().trainable(id), !frozen);
            stage.run(&[1, 2, 3, 1], &mut tape, &Ctx::seq()).unwrap();
            let out = tape.output().unwrap();
            tape.acts.slot_mut(out).grad.fill(1.0);
            let (ops, params, acts, grads) = tape.sweep_parts();
            ops[0].vjp(params, acts, grads, Par::Seq);
            let touched = tape.grads.as_slice().iter().any(|&g| g != 0.0);
            assert_eq!(touched, !frozen);
        }
    }
}

#[cfg(test)]
mod law_tests {
    use super::*;

    #[test]
    fn the_built_in_keeps_the_laws() {
        for init in [EmbeddingInit::Normal, EmbeddingInit::Uniform] {
            for freeze in [false, true] {
                laws::check_plain_table(|| {
                    TableEmbedding::<f64>::new(3, 5).with_init(init).with_freeze(freeze)
                })
                .unwrap();
            }
        }
        laws::check_plain_table(|| EmbeddingConfig::table(1).build::<f64>(2)).unwrap();
    }

    /// What a broken table gets wrong.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        /// Its VJP assigns each position's gradient to its row instead of adding it: a repeated
        /// id keeps only its last position's.
        OverwritesRepeats,
        /// It looks up the next id's row (and scatters into the rows of the ids it was given).
        NextRow,
        /// Its VJP scatters into a frozen table.
        IgnoresFreeze,
        /// It returns twice the row, and scatters twice the gradient: a consistent lookup, but
        /// not the plain table.
        Doubled,
    }

    /// The table's gather with one fault.
    struct FaultyGather {
        gather: GatherOp,
        vocab: usize,
        fault: Fault,
    }

    impl Op<f64> for FaultyGather {
        fn name(&self) -> &str {
            "faulty"
        }

        fn forward(&self, params: &Params<f64>, acts: &mut Activations<f64>, par: Par) {
            let (rows, e, g) = (acts.rows(), self.gather.dim, &self.gather);
            self.gather.forward(params, acts, par);
            let w = params.get(g.weight);
            let (ids, out) = acts.ids_and_slot_mut(g.out);
            for (dst, &id) in out.value[..rows * e].chunks_exact_mut(e).zip(ids) {
                match self.fault {
                    Fault::NextRow => {
                        let id = (id as usize + 1) % self.vocab;
                        dst.copy_from_slice(&w[id * e..(id + 1) * e]);
                    }
                    Fault::Doubled => dst.iter_mut().for_each(|x| *x *= 2.0),
                    _ => {}
                }
            }
        }

        fn vjp(&self, params: &Params<f64>, acts: &mut Activations<f64>, grads: &mut Grads<f64>, par: Par) {
            let (rows, e, g) = (acts.rows(), self.gather.dim, &self.gather);
            let (factor, assign) = match self.fault {
                Fault::OverwritesRepeats => (1.0, true),
                Fault::Doubled => (2.0, false),
                Fault::IgnoresFreeze => (1.0, false),
                Fault::NextRow => return self.gather.vjp(params, acts, grads, par),
            };
            let dw = grads.get_mut(g.weight);
            let dout = &acts.slot(g.out).grad[..rows * e];
            for (gr, &id) in dout.chunks_exact(e).zip(&acts.ids[..rows]) {
                for (d, &x) in dw[id as usize * e..(id as usize + 1) * e].iter_mut().zip(gr) {
                    *d = if assign { factor * x } else { *d + factor * x };
                }
            }
        }
    }

    /// The built-in table with its op replaced by a faulty one.
    struct FaultyTable {
        table: TableEmbedding<f64>,
        fault: Fault,
    }

    impl Stage for FaultyTable {
        type Input<'a> = &'a [u32];
        type Output = Tape<f64>;

        fn name(&self) -> &str {
            "faulty"
        }

        fn prepare(&mut self, dims: &Dims, tape: &mut Tape<f64>) -> Result<()> {
            let weight = tape.params.declare("embedding.weight", &[dims.vocab, self.table.dim])?;
            let mut rng = Rng::new(3);
            tape.params.get_mut(weight).iter_mut().for_each(|x| *x = rng.normal());
            tape.params.set_trainable(weight, !self.table.freeze);
            let out = tape.acts.declare_rows("embedding.out", self.table.dim, true)?;
            let gather = GatherOp { weight, out, dim: self.table.dim };
            let i = tape.push(Box::new(FaultyGather { gather, vocab: dims.vocab, fault: self.fault }));
            (self.table.vocab, self.table.ops) = (dims.vocab, i..i + 1);
            tape.set_output(out);
            Ok(())
        }

        fn run(&self, ids: &[u32], tape: &mut Tape<f64>, cx: &Ctx) -> Result<()> {
            self.table.run(ids, tape, cx)
        }
    }

    fn faulty(fault: Fault, freeze: bool) -> impl Fn() -> FaultyTable {
        move || FaultyTable { table: TableEmbedding::new(3, 0).with_freeze(freeze), fault }
    }

    #[test]
    fn the_kit_catches_a_gradient_that_forgets_repeated_ids() {
        let err = laws::check(faulty(Fault::OverwritesRepeats, false)).unwrap_err();
        assert!(err.contains("gradient of embedding.weight") && err.contains("finite differences"), "{err}");
    }

    #[test]
    fn the_kit_catches_a_lookup_of_the_wrong_row() {
        let err = laws::check(faulty(Fault::NextRow, false)).unwrap_err();
        assert!(err.contains("equal table rows"), "{err}");
        let err = laws::check_plain_table(faulty(Fault::NextRow, false)).unwrap_err();
        assert!(err.contains("not the table's row"), "{err}");
    }

    #[test]
    fn the_kit_catches_a_gradient_written_into_a_frozen_table() {
        laws::check(faulty(Fault::IgnoresFreeze, false)).unwrap();
        let err = laws::check(faulty(Fault::IgnoresFreeze, true)).unwrap_err();
        assert!(err.contains("frozen tensor embedding.weight"), "{err}");
    }

    /// A scaled lookup keeps the laws of any embedding, but is not the plain table.
    #[test]
    fn a_consistent_scaled_lookup_is_an_embedding_but_not_the_plain_table() {
        laws::check(faulty(Fault::Doubled, false)).unwrap();
        let err = laws::check_plain_table(faulty(Fault::Doubled, false)).unwrap_err();
        assert!(err.contains("not the table's row"), "{err}");
    }
}
