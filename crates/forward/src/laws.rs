//! The forward box's laws, as a check any implementation can be run through: the built-ins in
//! this crate's tests, a user's own forward box in theirs (enable the `testkit` feature).
//!
//! ```ignore
//! #[test]
//! fn my_forward_keeps_the_laws() {
//!     stagewise_forward::laws::check(|| MyForward::<f64>::new(4, 0), 3).unwrap();
//! }
//! ```
//!
//! `make` builds the box, once per case; `embed` is the width E of the vectors it reads (a head
//! tied to the table needs E equal to its hidden width). Each case prepares the box on a tape
//! holding a stand-in for the embed box, as the pipeline would: its table `embedding.weight`
//! `[V, E]` (what a tied head reads; trainable in the first case, frozen in the second) and its
//! output `embedding.out` `[T·B, E]`, a slot with a gradient that the kit fills with random
//! vectors (not rows of the table, so the input's gradient and the table's are checked apart).
//! At a few vocabularies, batches and window lengths, in `f64`:
//! - `prepare` leaves as the tape's output the logits, a row slot of `[T·B, V]` scalars with a
//!   gradient buffer (the loss writes it);
//! - `run` writes every row of the window's logits, finite, leaves its input as it was, and is a
//!   function of the parameters, the input, the carried state and the context: run twice, it gives
//!   the same bits, in training (dropout masks drawn from the seed and `cx.step`, as the
//!   built-in's) and in evaluation;
//! - the state it carries from window to window ([`Tape::end_window`], detached) is consistent:
//!   in evaluation, two windows of `a` and `T − a` steps give the logits of one window of `T`
//!   steps (to 1e-12), and after [`Tape::reset_state`] a window gives what it gave on the fresh
//!   tape, bit for bit;
//! - in training, from a carried state, the reverse sweep over the tape's ops with a random
//!   cotangent on the logits gives the gradient of `⟨cotangent, logits⟩` with respect to every
//!   trainable parameter and every element of the input as central finite differences of `run`
//!   do (each to 1e-6 of its tensor's largest, above the round-off of the differences). With
//!   dropout the masks are the same in every run of the window (the previous law), so the check
//!   differentiates through them as drawn; evaluation is not differentiated (a box may skip there
//!   what its VJP needs);
//! - every tensor the box declares gets a non-zero gradient somewhere unless it is frozen
//!   ([`ParamLayout::trainable`](stagewise_core::ParamLayout::trainable) false); the ops add
//!   (`+=`) to the parameter gradients and leave a frozen tensor's as it was (a head tied to a
//!   frozen table), and they overwrite the input's gradient (nothing zeroes it between windows);
//! - two threads give the same bits as one: logits, parameter and input gradients over two
//!   windows (the second shorter) with the state carried between.

use crate::{EMBEDDING_WEIGHT, Forward};
use stagewise_core::{Ctx, Dims, Mode, Par, ParamId, Rng, SlotId, Tape};
use std::ops::Range;

/// The cases `(V, B, T, frozen table)`.
const CASES: [(usize, usize, usize, bool); 2] = [(7, 2, 3, false), (5, 3, 4, true)];

/// Runs every law on forward boxes made by `make` (one per case) reading vectors of width
/// `embed`; returns the first violation, described.
pub fn check<F: Forward<f64> + Sync>(make: impl Fn() -> F, embed: usize) -> Result<(), String> {
    for (i, (v, b, t, frozen)) in CASES.into_iter().enumerate() {
        let case =
            format!("V = {v}, E = {embed}, B = {b}, T = {t}{}", if frozen { ", frozen table" } else { "" });
        one_case(&make, embed, v, b, t, frozen, 31 + i as u64).map_err(|e| format!("{case}: {e}"))?;
    }
    Ok(())
}

/// A prepared box on a tape with the stand-in embedding, and the handles the laws read.
struct Bench<F> {
    fwd: F,
    tape: Tape<f64>,
    x: SlotId,
    logits: SlotId,
    embed: usize,
    vocab: usize,
    /// The tensors the box declared (after the stand-in's table), as layout indices.
    own: Range<usize>,
    pool: rayon::ThreadPool,
}

impl<F: Forward<f64> + Sync> Bench<F> {
    fn new(
        make: &impl Fn() -> F,
        dims: &Dims,
        embed: usize,
        frozen: bool,
        seed: u64,
    ) -> Result<Self, String> {
        let text = |e: stagewise_core::Error| e.to_string();
        let mut tape = Tape::try_new(dims.batch, dims.seq_len).map_err(text)?;
        let table: ParamId = tape.params.declare(EMBEDDING_WEIGHT, &[dims.vocab, embed]).map_err(text)?;
        let mut rng = Rng::new(seed);
        tape.params.get_mut(table).iter_mut().for_each(|w| *w = 0.5 * rng.normal());
        tape.params.set_trainable(table, !frozen);
        let x = tape.acts.declare_rows("embedding.out", embed, true).map_err(text)?;
        tape.set_output(x);
        let first = tape.params.layout().entries().len();
        let mut fwd = make();
        fwd.prepare(dims, &mut tape).map_err(|e| format!("prepare: {e}"))?;
        tape.try_finish().map_err(text)?;
        let own = first..tape.params.layout().entries().len();
        let logits = tape.output().filter(|&s| s != x).ok_or("prepare left no logits slot on the tape")?;
        let slot = tape.acts.slot(logits);
        if slot.width != dims.vocab || slot.value.len() != dims.max_rows() * dims.vocab {
            return Err(format!(
                "the logits slot {} holds {} scalars of width {}, not [T·B, V] = [{}, {}]",
                slot.name,
                slot.value.len(),
                slot.width,
                dims.max_rows(),
                dims.vocab
            ));
        }
        if slot.grad.len() != slot.value.len() {
            return Err(format!("the logits slot {} has no gradient buffer", slot.name));
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().map_err(|e| e.to_string())?;
        Ok(Bench { fwd, tape, x, logits, embed, vocab: dims.vocab, own, pool })
    }

    /// Runs the box on `input` (a window of `input.len() / (B·E)` steps) after filling the logits
    /// with NaN; returns the window's logits, checked finite and the input left as it was.
    fn window(&mut self, input: &[f64], cx: Ctx) -> Result<Vec<f64>, String> {
        let steps = input.len() / (self.tape.acts.batch() * self.embed);
        self.tape.set_steps(steps).map_err(|e| e.to_string())?;
        self.tape.acts.slot_mut(self.x).value[..input.len()].copy_from_slice(input);
        self.tape.acts.slot_mut(self.logits).value.fill(f64::NAN);
        let (fwd, tape) = (&self.fwd, &mut self.tape);
        match cx.par {
            Par::Seq => fwd.run((), tape, &cx),
            Par::Rayon(_) => self.pool.install(|| fwd.run((), tape, &cx)),
        }
        .map_err(|e| format!("run: {e}"))?;
        if self.tape.acts.slot(self.x).value[..input.len()] != *input {
            return Err("run changed its input".into());
        }
        let n = self.tape.acts.rows() * self.vocab;
        let logits = &self.tape.acts.slot(self.logits).value[..n];
        if let Some(k) = logits.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "row {} of the logits is not finite (or not written): {}",
                k / self.vocab,
                logits[k]
            ));
        }
        Ok(logits.to_vec())
    }

    /// Seeds the logits' gradient with `cotangent` and runs every op's VJP in reverse, after
    /// zeroing the parameter gradients if `zero`; returns the parameter and input gradients.
    fn sweep(&mut self, cotangent: &[f64], par: Par, zero: bool) -> (Vec<f64>, Vec<f64>) {
        if zero {
            self.tape.grads.fill_zero();
        }
        self.tape.acts.slot_mut(self.logits).grad[..cotangent.len()].copy_from_slice(cotangent);
        let tape = &mut self.tape;
        let mut sweep = move || tape.backward_all(par);
        match par {
            Par::Seq => sweep(),
            Par::Rayon(_) => self.pool.install(sweep),
        }
        let n = self.tape.acts.rows() * self.embed;
        (self.tape.grads.as_slice().to_vec(), self.tape.acts.slot(self.x).grad[..n].to_vec())
    }

    /// `⟨cotangent, logits⟩` after a window.
    fn probe(&mut self, input: &[f64], cotangent: &[f64], cx: Ctx) -> Result<f64, String> {
        Ok(self.window(input, cx)?.iter().zip(cotangent).map(|(y, w)| y * w).sum())
    }
}

fn train(step: u64, par: Par) -> Ctx {
    Ctx { par, mode: Mode::Train, step, seed: 0 }
}

fn eval() -> Ctx {
    Ctx::seq().eval()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn one_case<F: Forward<f64> + Sync>(
    make: &impl Fn() -> F,
    embed: usize,
    v: usize,
    b: usize,
    t: usize,
    frozen: bool,
    seed: u64,
) -> Result<(), String> {
    let dims = Dims { vocab: v, batch: b, seq_len: t, params: 0 };
    let mut bench = Bench::new(make, &dims, embed, frozen, seed)?;
    let mut rng = Rng::new(seed + 1);
    let mut input = |steps: usize| -> Vec<f64> { (0..steps * b * embed).map(|_| rng.normal()).collect() };
    let (x1, x2, x3) = (input(t), input(t), input(t.saturating_sub(1).max(1)));

    // A function of its inputs: the same bits twice, in evaluation and in training.
    let fresh = bench.window(&x1, eval())?;
    if bits(&bench.window(&x1, eval())?) != bits(&fresh) {
        return Err("an evaluation window run twice gave other logits (does run move the state on?)".into());
    }
    let trained = bench.window(&x1, train(0, Par::Seq))?;
    if bits(&bench.window(&x1, train(0, Par::Seq))?) != bits(&trained) {
        return Err("a training window run twice with the same context gave other logits".into());
    }

    // The carried state: reset brings back the fresh one; two windows equal one.
    bench.tape.end_window();
    bench.tape.reset_state();
    if bits(&bench.window(&x1, eval())?) != bits(&fresh) {
        return Err(
            "after end_window and reset_state a window gave other logits than on the fresh tape".into()
        );
    }
    for a in 1..t {
        bench.tape.reset_state();
        let split = b * embed * a;
        let mut joined = bench.window(&x1[..split], eval())?;
        bench.tape.end_window();
        joined.extend(bench.window(&x1[split..], eval())?);
        let worst =
            joined.iter().zip(&fresh).map(|(j, f)| (j - f).abs() / (1.0 + f.abs())).fold(0.0, f64::max);
        if worst > 1e-12 {
            return Err(format!(
                "windows of {a} and {} steps with end_window between differ from one window of {t} by {worst:e}",
                t - a
            ));
        }
    }

    // The gradient, in a training window after one whose state is carried on.
    bench.tape.reset_state();
    bench.window(&x1, train(0, Par::Seq))?;
    bench.tape.end_window();
    let cx = train(1, Par::Seq);
    let logits = bench.window(&x2, cx)?;
    let cotangent: Vec<f64> = (0..logits.len()).map(|_| rng.normal()).collect();
    let loss_scale: f64 = logits.iter().zip(&cotangent).map(|(y, w)| (y * w).abs()).sum();
    let (grad, dx) = bench.sweep(&cotangent, Par::Seq, true);
    let layout = bench.tape.params.layout().clone();
    for i in bench.own.clone() {
        let e = &layout.entries()[i];
        if e.trainable && grad[e.offset..e.offset + e.len()].iter().all(|&g| g == 0.0) {
            return Err(format!("{} got no gradient", e.name));
        }
    }
    let before: Vec<f64> = (0..grad.len()).map(|_| rng.normal()).collect();
    bench.tape.grads.as_mut_slice().copy_from_slice(&before);
    bench.tape.acts.slot_mut(bench.x).grad.fill(f64::NAN);
    let (after, dx_again) = bench.sweep(&cotangent, Par::Seq, false);
    for e in layout.entries() {
        let range = e.offset..e.offset + e.len();
        let (c, g, a) = (&before[range.clone()], &grad[range.clone()], &after[range]);
        if !e.trainable {
            if bits(a) != bits(c) {
                return Err(format!("the gradient of the frozen tensor {} was changed", e.name));
            }
        } else if let Some(k) =
            (0..c.len()).find(|&k| (a[k] - (c[k] + g[k])).abs() > 1e-12 * (c[k].abs() + g[k].abs()).max(1.0))
        {
            return Err(format!(
                "the gradient of {}[{k}] was not added to what the arena held: {} + {} gave {}",
                e.name, c[k], g[k], a[k]
            ));
        }
    }
    if bits(&dx_again) != bits(&dx) {
        return Err("the input's gradient depends on what its buffer held before (not overwritten)".into());
    }
    let eps = 1e-6;
    // The round-off of a difference quotient: ~1e-10 of the probe's magnitude.
    let floor = 1e-8 * loss_scale;
    let compare = |name: &str, got: &[f64], numeric: &[f64]| -> Result<(), String> {
        let scale = numeric.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        match got.iter().zip(numeric).position(|(a, n)| (a - n).abs() > 1e-6 * scale + floor) {
            None => Ok(()),
            Some(k) => {
                Err(format!("gradient of {name}[{k}] is {}, finite differences give {}", got[k], numeric[k]))
            }
        }
    };
    for e in layout.entries().iter().filter(|e| e.trainable) {
        let mut numeric = Vec::with_capacity(e.len());
        for i in e.offset..e.offset + e.len() {
            let p = bench.tape.params.as_slice()[i];
            bench.tape.params.as_mut_slice()[i] = p + eps;
            let up = bench.probe(&x2, &cotangent, cx)?;
            bench.tape.params.as_mut_slice()[i] = p - eps;
            let down = bench.probe(&x2, &cotangent, cx)?;
            bench.tape.params.as_mut_slice()[i] = p;
            numeric.push((up - down) / (2.0 * eps));
        }
        compare(&e.name, &grad[e.offset..e.offset + e.len()], &numeric)?;
    }
    let mut shifted = x2.clone();
    let mut numeric = Vec::with_capacity(x2.len());
    for i in 0..x2.len() {
        shifted[i] = x2[i] + eps;
        let up = bench.probe(&shifted, &cotangent, cx)?;
        shifted[i] = x2[i] - eps;
        let down = bench.probe(&shifted, &cotangent, cx)?;
        shifted[i] = x2[i];
        numeric.push((up - down) / (2.0 * eps));
    }
    compare("the input embedding.out", &dx, &numeric)?;

    // Two threads, the same bits: two training windows, the state carried between.
    let cotangent3: Vec<f64> = (0..x3.len() / embed * v).map(|_| rng.normal()).collect();
    let mut cycles = |par: Par| -> Result<Vec<u64>, String> {
        bench.tape.reset_state();
        let mut seen = Vec::new();
        for (step, (x, w)) in [(&x2, &cotangent), (&x3, &cotangent3)].into_iter().enumerate() {
            seen.extend(bits(&bench.window(x, train(step as u64, par))?));
            let (g, dx) = bench.sweep(w, par, true);
            seen.extend(bits(&g));
            seen.extend(bits(&dx));
            bench.tape.end_window();
        }
        Ok(seen)
    };
    if cycles(Par::Seq)? != cycles(Par::rayon(2))? {
        return Err("two threads gave other logits or gradients than one".into());
    }
    Ok(())
}
