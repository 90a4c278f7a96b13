//! The embed box's laws, as a check any implementation can be run through: the built-in table in
//! this crate's tests, a user's own embedding in theirs (enable the `testkit` feature).
//!
//! ```ignore
//! #[test]
//! fn my_embedding_keeps_the_laws() {
//!     stagewise_embedding::laws::check(|| MyEmbedding::<f64>::new(4, 0)).unwrap();
//! }
//! ```
//!
//! The box is a table lookup: its table is the first parameter it declares with one row per id
//! (`[V, k]`). Each law is checked on windows of seeded random ids at a few vocabularies, batches
//! and window lengths, every window of two or more rows repeating an id and none looking up the
//! last id, all in `f64`:
//! - `prepare` leaves as the tape's output a row slot of `[T·B, E]` scalars with a gradient
//!   buffer (the forward box's VJP writes it); `run` writes every row of the window, finite;
//! - each row is a function of its id's table row (and of parameters every id shares): an id gives
//!   the same bits wherever it sits, two ids whose table rows are made equal give equal rows, and
//!   a shorter window writes its rows as the full one does. [`check_plain_table`] also asks for
//!   the table's rows as they are, `out[r] = W[ids[r]]` bit for bit (the built-in table);
//! - the gradient the tape's ops leave in the parameters for a random cotangent on the output
//!   equals central finite differences of `⟨cotangent, out⟩` with respect to every trainable
//!   parameter (so the rows of a repeated id add up); every table row looked up gets a gradient
//!   and every other row none;
//! - the ops add (`+=`) to the parameter gradients, and leave a frozen tensor's
//!   ([`ParamLayout::trainable`](stagewise_core::ParamLayout::trainable) false) as it was;
//! - an id outside the vocabulary, or a window of the wrong length, is an error;
//! - two threads give the same bits as one, vectors and gradients.
//!
//! `make` builds a fresh box for each case.

use crate::Embedding;
use stagewise_core::{Ctx, Dims, Par, ParamId, Rng, SlotId, Tape};

/// The cases `(V, B, T)`: a first window, a wider one, and a window of one row.
const CASES: [(usize, usize, usize); 3] = [(7, 2, 3), (11, 3, 4), (2, 1, 1)];

/// Runs every law on embeddings made by `make` (a fresh one per case); returns the first
/// violation, described.
pub fn check<E: Embedding<f64> + Sync>(make: impl Fn() -> E) -> Result<(), String> {
    laws(&make, false)
}

/// [`check`], and the vectors are the table's rows as they are (`out[r] = W[ids[r]]`), as in
/// PyTorch's `nn.Embedding` and the built-in [`TableEmbedding`](crate::TableEmbedding).
pub fn check_plain_table<E: Embedding<f64> + Sync>(make: impl Fn() -> E) -> Result<(), String> {
    laws(&make, true)
}

fn laws<E: Embedding<f64> + Sync>(make: &impl Fn() -> E, plain: bool) -> Result<(), String> {
    for (i, (v, b, t)) in CASES.into_iter().enumerate() {
        one_case(make, plain, v, b, t, 17 + i as u64)
            .map_err(|e| format!("V = {v}, B = {b}, T = {t}: {e}"))?;
    }
    Ok(())
}

/// A prepared box on its tape, with the handles the laws read.
struct Bench<E> {
    emb: E,
    tape: Tape<f64>,
    out: SlotId,
    width: usize,
    table: ParamId,
    pool: rayon::ThreadPool,
}

impl<E: Embedding<f64> + Sync> Bench<E> {
    fn new(make: &impl Fn() -> E, dims: &Dims) -> Result<Self, String> {
        let mut emb = make();
        let mut tape = Tape::try_new(dims.batch, dims.seq_len).map_err(|e| e.to_string())?;
        emb.prepare(dims, &mut tape).map_err(|e| format!("prepare: {e}"))?;
        tape.try_finish().map_err(|e| e.to_string())?;
        let out = tape.output().ok_or("prepare left no output slot on the tape")?;
        let slot = tape.acts.slot(out);
        let width = slot.width;
        if width == 0 || slot.value.len() != dims.max_rows() * width {
            return Err(format!(
                "the output slot {} holds {} scalars of width {width}, not [T·B, E] = [{}, E]",
                slot.name,
                slot.value.len(),
                dims.max_rows()
            ));
        }
        if slot.grad.len() != slot.value.len() {
            return Err(format!("the output slot {} has no gradient buffer", slot.name));
        }
        let layout = tape.params.layout();
        let table =
            layout.ids().find(|&id| matches!(layout.entry(id).shape[..], [rows, _] if rows == dims.vocab));
        let table =
            table.ok_or_else(|| format!("no table: no parameter of shape [V = {}, k]", dims.vocab))?;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().map_err(|e| e.to_string())?;
        Ok(Bench { emb, tape, out, width, table, pool })
    }

    /// Runs the box on `ids` (a window of `ids.len() / B` steps) after filling its output with
    /// NaN; returns the window's vectors.
    fn run(&mut self, ids: &[u32], par: Par) -> Result<Vec<f64>, String> {
        self.tape.set_steps(ids.len() / self.tape.acts.batch()).map_err(|e| e.to_string())?;
        self.tape.acts.slot_mut(self.out).value.fill(f64::NAN);
        let cx = Ctx { par, ..Ctx::seq() };
        let (emb, tape) = (&self.emb, &mut self.tape);
        match par {
            Par::Seq => emb.run(ids, tape, &cx),
            Par::Rayon(_) => self.pool.install(|| emb.run(ids, tape, &cx)),
        }
        .map_err(|e| format!("run: {e}"))?;
        let n = ids.len() * self.width;
        let out = &self.tape.acts.slot(self.out).value[..n];
        if let Some(k) = out.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "row {} of the output is not finite (or not written): {}",
                k / self.width,
                out[k]
            ));
        }
        Ok(out.to_vec())
    }

    /// Seeds the output's gradient with `cotangent` and runs every op's VJP in reverse, after
    /// zeroing the parameter gradients if `zero`; returns the parameter gradients.
    fn sweep(&mut self, cotangent: &[f64], par: Par, zero: bool) -> Vec<f64> {
        if zero {
            self.tape.grads.fill_zero();
        }
        self.tape.acts.slot_mut(self.out).grad[..cotangent.len()].copy_from_slice(cotangent);
        let tape = &mut self.tape;
        let mut sweep = move || tape.backward_all(par);
        match par {
            Par::Seq => sweep(),
            Par::Rayon(_) => self.pool.install(sweep),
        }
        self.tape.grads.as_slice().to_vec()
    }

    /// `⟨cotangent, out⟩` after a run on one thread.
    fn probe(&mut self, ids: &[u32], cotangent: &[f64]) -> Result<f64, String> {
        Ok(self.run(ids, Par::Seq)?.iter().zip(cotangent).map(|(y, w)| y * w).sum())
    }
}

fn one_case<E: Embedding<f64> + Sync>(
    make: &impl Fn() -> E,
    plain: bool,
    v: usize,
    b: usize,
    t: usize,
    seed: u64,
) -> Result<(), String> {
    let dims = Dims { vocab: v, batch: b, seq_len: t, params: 0 };
    let mut bench = Bench::new(make, &dims)?;
    let (e, rows) = (bench.width, b * t);
    let mut rng = Rng::new(seed);
    // Ids below V − 1 (the last id is never looked up), the first repeated at the end.
    let mut ids: Vec<u32> = (0..rows).map(|_| rng.below(v.saturating_sub(1).max(1) as u64) as u32).collect();
    if rows >= 2 {
        ids[rows - 1] = ids[0];
    }

    // A lookup: each row a function of its id's table row.
    let out = bench.run(&ids, Par::Seq)?;
    let row = |out: &[f64], r: usize| out[r * e..(r + 1) * e].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for r in 0..rows {
        let first = ids.iter().position(|&id| id == ids[r]).unwrap_or(r);
        if row(&out, r) != row(&out, first) {
            return Err(format!("rows {first} and {r} hold id {} but differ", ids[r]));
        }
    }
    if plain {
        let w = bench.tape.params.get(bench.table);
        for (r, &id) in ids.iter().enumerate() {
            let want = w.get(id as usize * e..(id as usize + 1) * e).unwrap_or(&[]);
            if out[r * e..(r + 1) * e] != *want {
                return Err(format!("row {r} is not the table's row for id {id}"));
            }
        }
    }
    if t > 1 {
        let shorter = bench.run(&ids[..(t - 1) * b], Par::Seq)?;
        if shorter[..] != out[..shorter.len()] {
            return Err(format!("a window of {} steps wrote other rows than the full one", t - 1));
        }
    }
    if let Some(r) = (1..rows).find(|&r| ids[r] != ids[0]) {
        let (a, c) = (ids[0] as usize, ids[r] as usize);
        let k = bench.tape.params.layout().entry(bench.table).shape[1];
        let saved = bench.tape.params.as_slice().to_vec();
        let w = bench.tape.params.get_mut(bench.table);
        w.copy_within(c * k..(c + 1) * k, a * k);
        let copied = bench.run(&ids, Par::Seq)?;
        if row(&copied, 0) != row(&copied, r) {
            return Err(format!("ids {a} and {c} have equal table rows but get different vectors"));
        }
        bench.tape.params.as_mut_slice().copy_from_slice(&saved);
    }

    // The gradient: finite differences, the rows it reaches, accumulation, frozen tensors.
    let cotangent: Vec<f64> = (0..rows * e).map(|_| rng.normal()).collect();
    bench.run(&ids, Par::Seq)?;
    let grad = bench.sweep(&cotangent, Par::Seq, true);
    let layout = bench.tape.params.layout().clone();
    let eps = 1e-6;
    // The round-off of a difference quotient: ~1e-10 of the probe's magnitude.
    let floor = 1e-8 * out.iter().zip(&cotangent).map(|(y, w)| (y * w).abs()).sum::<f64>();
    for id in layout.ids().filter(|&id| layout.trainable(id)) {
        let entry = layout.entry(id);
        let mut numeric = Vec::with_capacity(entry.len());
        for i in entry.offset..entry.offset + entry.len() {
            let x = bench.tape.params.as_slice()[i];
            bench.tape.params.as_mut_slice()[i] = x + eps;
            let up = bench.probe(&ids, &cotangent)?;
            bench.tape.params.as_mut_slice()[i] = x - eps;
            let down = bench.probe(&ids, &cotangent)?;
            bench.tape.params.as_mut_slice()[i] = x;
            numeric.push((up - down) / (2.0 * eps));
        }
        let got = &grad[entry.offset..entry.offset + entry.len()];
        let scale = numeric.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if let Some(k) = got.iter().zip(&numeric).position(|(a, n)| (a - n).abs() > 1e-6 * scale + floor) {
            return Err(format!(
                "gradient of {}[{k}] is {}, finite differences give {}",
                entry.name, got[k], numeric[k]
            ));
        }
    }
    if layout.trainable(bench.table) {
        let entry = layout.entry(bench.table);
        let k = entry.shape[1];
        for r in 0..v {
            let g = &grad[entry.offset + r * k..entry.offset + (r + 1) * k];
            let touched = g.iter().any(|&x| x != 0.0);
            match (ids.contains(&(r as u32)), touched) {
                (true, false) => return Err(format!("table row {r} was looked up but got no gradient")),
                (false, true) => return Err(format!("table row {r} was not looked up but got a gradient")),
                _ => {}
            }
        }
    }
    let before: Vec<f64> = (0..grad.len()).map(|_| rng.normal()).collect();
    bench.tape.grads.as_mut_slice().copy_from_slice(&before);
    let after = bench.sweep(&cotangent, Par::Seq, false);
    for id in layout.ids() {
        let entry = layout.entry(id);
        let range = entry.offset..entry.offset + entry.len();
        let (c, g, a) = (&before[range.clone()], &grad[range.clone()], &after[range]);
        if !layout.trainable(id) {
            if a.iter().zip(c).any(|(a, c)| a.to_bits() != c.to_bits()) {
                return Err(format!("the gradient of the frozen tensor {} was changed", entry.name));
            }
        } else if let Some(k) =
            (0..c.len()).find(|&k| (a[k] - (c[k] + g[k])).abs() > 1e-12 * (c[k].abs() + g[k].abs()).max(1.0))
        {
            return Err(format!(
                "the gradient of {}[{k}] was not added to what the arena held: {} + {} gave {}",
                entry.name, c[k], g[k], a[k]
            ));
        }
    }

    // Two threads, the same bits.
    let two = bench.run(&ids, Par::rayon(2))?;
    let grad2 = bench.sweep(&cotangent, Par::rayon(2), true);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    if bits(&two) != bits(&out) || bits(&grad2) != bits(&grad) {
        return Err("two threads gave other vectors or gradients than one".into());
    }

    // Bad windows are errors.
    let mut outside = ids.clone();
    outside[rows - 1] = v as u32;
    let cx = Ctx::seq();
    if bench.emb.run(&outside, &mut bench.tape, &cx).is_ok() {
        return Err(format!("id {v}, outside the vocabulary of {v}, was accepted"));
    }
    let mut long = ids.clone();
    long.push(0);
    if bench.emb.run(&long, &mut bench.tape, &cx).is_ok() {
        return Err(format!("{} ids were accepted for a window of {rows} rows", rows + 1));
    }
    Ok(())
}
