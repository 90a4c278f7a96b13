//! Pooling over time: the states of a batch of padded texts `[T·B, H]` -> one vector per text
//! `[B, H]`, the input of a classification head.
//!
//! Stream `b` holds a text of `acts.lengths[b]` real steps followed by padding; pooling reads only
//! the real steps, so a text's pooled vector (and every gradient) is the same alone or in a padded
//! batch. A stream of length 0 (an unused stream of a last, short batch) pools to zeros.

use stagewise_core::{Activations, Error, Float, Grads, Op, Par, Params, Result, SlotId, Tape};

/// How a text's states become one vector (`[forward] pooling`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The state at the text's last real token (what a packed-sequence RNN's final state is).
    #[default]
    Last,
    /// The mean of the states over the text's real tokens.
    Mean,
    /// The element-wise maximum of the states over the text's real tokens.
    Max,
}

impl Pooling {
    /// The config's name (`last`, `mean`, `max`).
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
        }
    }
}

/// The step of the largest value of column `j` over the first `len` steps of stream `b` (the
/// first such step on ties), in `x` `[T·B, H]`.
fn argmax_step<T: Float>(x: &[T], b: usize, j: usize, len: usize, batch: usize, h: usize) -> usize {
    let mut best = 0;
    for t in 1..len {
        if x[(t * batch + b) * h + j] > x[(best * batch + b) * h + j] {
            best = t;
        }
    }
    best
}

/// Pooling in plain loops, the reference for [`PoolOp`]: `x` is `[T·B, H]` time-major (row
/// `t·B + b`), `lengths` has `B` entries, `y` is `[B, H]`.
pub fn pool_forward_naive<T: Float>(pooling: Pooling, x: &[T], lengths: &[usize], y: &mut [T], h: usize) {
    let batch = lengths.len();
    for (b, &len) in lengths.iter().enumerate() {
        for j in 0..h {
            let at = |t: usize| x[(t * batch + b) * h + j];
            y[b * h + j] = match (pooling, len) {
                (_, 0) => T::from_f64(0.0),
                (Pooling::Last, _) => at(len - 1),
                (Pooling::Mean, _) => {
                    (0..len).map(at).fold(T::from_f64(0.0), |s, v| s + v) / T::from_f64(len as f64)
                }
                (Pooling::Max, _) => at(argmax_step(x, b, j, len, batch, h)),
            };
        }
    }
}

/// Pooling as a tape op: reads the row slot `input` `[T·B, H]` and [`Activations::lengths`],
/// writes the first `B` rows of `output` (`{prefix}.out`, a row slot of width H).
#[derive(Clone, Debug)]
pub struct PoolOp {
    name: String,
    pooling: Pooling,
    input: SlotId,
    output: SlotId,
    width: usize,
}

impl PoolOp {
    /// Declares the op's output slot `{prefix}.out` (with a gradient) over the row slot `input`.
    /// Returns the op; the caller pushes it.
    pub fn declare<T: Float>(
        tape: &mut Tape<T>,
        prefix: &str,
        input: SlotId,
        pooling: Pooling,
    ) -> Result<Self> {
        let width = tape.acts.slot(input).width;
        if width == 0 {
            let name = tape.acts.slot(input).name.clone();
            return Err(Error::shape(
                format!("{prefix} input {name}"),
                "a row slot of width > 0",
                "a flat slot",
            ));
        }
        let output = tape.acts.declare_rows(&format!("{prefix}.out"), width, true)?;
        Ok(PoolOp { name: prefix.to_owned(), pooling, input, output, width })
    }

    /// The pooled slot: its first `B` rows, `[B, H]`, are the texts' vectors.
    pub fn output(&self) -> SlotId {
        self.output
    }

    /// The states it pools, `[T·B, H]`.
    pub fn input(&self) -> SlotId {
        self.input
    }

    /// Which pooling.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
}

impl<T: Float> Op<T> for PoolOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// `output[b] = pool(input[t·B + b] for t < lengths[b])` (see [`pool_forward_naive`]), each
    /// length capped at the window's steps.
    fn forward(&self, _params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let (batch, steps, h) = (acts.batch(), acts.steps(), self.width);
        let rows = steps * batch;
        // Moved out (no allocation) so that the slots can be borrowed beside it.
        let lengths = std::mem::take(&mut acts.lengths);
        let [x, y] = acts.slots_mut([self.input, self.output]);
        let (x, y) = (&x.value[..rows * h], &mut y.value[..batch * h]);
        for (b, out) in y.chunks_exact_mut(h).enumerate() {
            let len = lengths.get(b).map_or(0, |&l| l.min(steps));
            if len == 0 {
                out.fill(T::from_f64(0.0));
                continue;
            }
            let row = |t: usize| &x[(t * batch + b) * h..][..h];
            match self.pooling {
                Pooling::Last => out.copy_from_slice(row(len - 1)),
                Pooling::Mean => {
                    out.copy_from_slice(row(0));
                    for t in 1..len {
                        out.iter_mut().zip(row(t)).for_each(|(o, v)| *o += *v);
                    }
                    let n = T::from_f64(len as f64);
                    out.iter_mut().for_each(|o| *o /= n);
                }
                Pooling::Max => {
                    out.copy_from_slice(row(0));
                    for t in 1..len {
                        out.iter_mut().zip(row(t)).for_each(|(o, v)| {
                            if *v > *o {
                                *o = *v;
                            }
                        });
                    }
                }
            }
        }
        acts.lengths = lengths;
    }

    /// Overwrites `input.grad` `[T·B, H]`: `output.grad[b]` goes to stream `b`'s last real step
    /// (`last`), divided by the length to each real step (`mean`), or to the step of each
    /// column's maximum (`max`, the first on ties); padding steps get zero. No parameters.
    fn vjp(&self, _params: &Params<T>, acts: &mut Activations<T>, _grads: &mut Grads<T>, _par: Par) {
        let (batch, steps, h) = (acts.batch(), acts.steps(), self.width);
        let rows = steps * batch;
        let lengths = std::mem::take(&mut acts.lengths);
        let [x, y] = acts.slots_mut([self.input, self.output]);
        if !x.grad.is_empty() {
            let dy = &y.grad[..batch * h];
            let (xv, dx) = (&x.value[..rows * h], &mut x.grad[..rows * h]);
            dx.fill(T::from_f64(0.0));
            for (b, g) in dy.chunks_exact(h).enumerate() {
                let len = lengths.get(b).map_or(0, |&l| l.min(steps));
                if len == 0 {
                    continue;
                }
                let at = |t: usize| (t * batch + b) * h;
                match self.pooling {
                    Pooling::Last => dx[at(len - 1)..][..h].copy_from_slice(g),
                    Pooling::Mean => {
                        let n = T::from_f64(len as f64);
                        for t in 0..len {
                            dx[at(t)..][..h].iter_mut().zip(g).for_each(|(d, g)| *d = *g / n);
                        }
                    }
                    Pooling::Max => {
                        for (j, &gj) in g.iter().enumerate() {
                            dx[at(argmax_step(xv, b, j, len, batch, h)) + j] = gj;
                        }
                    }
                }
            }
        }
        acts.lengths = lengths;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stagewise_core::Rng;

    /// A tape with an input slot `[T·B, H]` of random values and the op over it.
    fn setup(
        pooling: Pooling,
        b: usize,
        t: usize,
        h: usize,
        lengths: &[usize],
        seed: u64,
    ) -> (Tape<f64>, PoolOp) {
        let mut tape = Tape::<f64>::new(b, t);
        let x = tape.acts.declare_rows("x", h, true).expect("slot");
        let op = PoolOp::declare(&mut tape, "pool", x, pooling).expect("op");
        tape.finish();
        tape.set_steps(t).expect("steps");
        tape.acts.lengths.copy_from_slice(lengths);
        let mut rng = Rng::new(seed);
        tape.acts.slot_mut(x).value.iter_mut().for_each(|v| *v = rng.normal());
        (tape, op)
    }

    fn case() -> impl Strategy<Value = (Pooling, usize, usize, usize, Vec<usize>, u64)> {
        (
            prop_oneof![Just(Pooling::Last), Just(Pooling::Mean), Just(Pooling::Max)],
            1usize..4,
            1usize..5,
            1usize..4,
        )
            .prop_flat_map(|(p, b, t, h)| {
                (Just(p), Just(b), Just(t), Just(h), proptest::collection::vec(0..=t, b), any::<u64>())
            })
    }

    proptest! {
        /// The op equals the plain-loop reference, and its VJP equals central finite differences of
        /// `L = Σ c·y` in f64, with zero gradient on every padding step.
        #[test]
        fn pooling_matches_the_reference_and_finite_differences((pooling, b, t, h, lengths, seed) in case()) {
            let (mut tape, op) = setup(pooling, b, t, h, &lengths, seed);
            let x = op.input();
            let n = b * t * h;
            let run = |tape: &mut Tape<f64>| {
                op.forward(&tape.params, &mut tape.acts, Par::Seq);
                tape.acts.slot(op.output()).value[..b * h].to_vec()
            };
            let y = run(&mut tape);
            let mut want = vec![0.0; b * h];
            pool_forward_naive(pooling, &tape.acts.slot(x).value[..n], &lengths, &mut want, h);
            for (g, w) in y.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{g} vs {w}");
            }
            let mut rng = Rng::new(seed ^ 5);
            let c: Vec<f64> = (0..b * h).map(|_| rng.normal()).collect();
            tape.acts.slot_mut(x).grad.fill(f64::NAN);
            tape.acts.slot_mut(op.output()).grad[..b * h].copy_from_slice(&c);
            let mut grads = Grads::zeros_with_layout(tape.params.layout());
            op.vjp(&tape.params, &mut tape.acts, &mut grads, Par::Seq);
            let dx = tape.acts.slot(x).grad[..n].to_vec();
            let loss = |tape: &mut Tape<f64>| run(tape).iter().zip(&c).map(|(y, c)| y * c).sum::<f64>();
            let eps = 1e-6;
            #[allow(clippy::needless_range_loop)] // i indexes the input slot too, perturbed in place
            for i in 0..n {
                let v = tape.acts.slot(x).value[i];
                tape.acts.slot_mut(x).value[i] = v + eps;
                let up = loss(&mut tape);
                tape.acts.slot_mut(x).value[i] = v - eps;
                let down = loss(&mut tape);
                tape.acts.slot_mut(x).value[i] = v;
                let fd = (up - down) / (2.0 * eps);
                prop_assert!((dx[i] - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "element {i}: vjp {} vs fd {fd}", dx[i]);
                let (step, stream) = (i / h / b, i / h % b);
                if step >= lengths[stream] {
                    prop_assert_eq!(dx[i], 0.0, "a padding step has no gradient");
                }
            }
        }
    }

    #[test]
    fn a_text_pools_the_same_alone_and_padded_in_a_batch() {
        // Stream 0 of a batch of 3 over 5 steps, length 2, against the same two steps alone.
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            let (mut batch, op) = setup(pooling, 3, 5, 4, &[2, 5, 0], 9);
            op.forward(&batch.params, &mut batch.acts, Par::Seq);
            let (mut alone, op1) = setup(pooling, 1, 2, 4, &[2], 1);
            for t in 0..2 {
                let row = batch.acts.slot(op.input()).value[(t * 3) * 4..][..4].to_vec();
                alone.acts.slot_mut(op1.input()).value[t * 4..][..4].copy_from_slice(&row);
            }
            op1.forward(&alone.params, &mut alone.acts, Par::Seq);
            assert_eq!(batch.acts.slot(op.output()).value[..4], alone.acts.slot(op1.output()).value[..4]);
            assert!(
                batch.acts.slot(op.output()).value[8..12].iter().all(|&v| v == 0.0),
                "length 0 pools to zeros"
            );
        }
    }
}
