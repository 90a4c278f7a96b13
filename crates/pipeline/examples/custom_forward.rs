//! Your own forward box: an Elman RNN (PyTorch's `nn.RNN(nonlinearity="tanh")`, one layer)
//! followed by the built-in Linear head, trained through the same run as the built-ins.
//!
//! Two pieces:
//! - `ElmanOp`, an op of the tape: `h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh)` over the
//!   whole window, forward and vector–Jacobian product side by side, with PyTorch's parameter
//!   names (`rnn.weight_ih_l0`, ...) and initialisation (U(−1/√H, 1/√H)). It also says how the
//!   tape may cut it ([`Op::pieces`]: a recurrence, runnable a range of steps at a time), so on
//!   several threads the tape overlaps the head's product with its steps, exactly as it does for
//!   the built-in LSTM — with the same bits as on one thread.
//! - `ElmanForward`, the box: a [`Stage`] with `Input<'a> = ()` and `Output = Tape<T>`, which
//!   makes it a `stagewise_forward::Forward<T>`. Its `prepare` declares the op on the tape after
//!   the embedding's output, then the head (`stagewise_forward::LinearOp`, `fc.weight`,
//!   `fc.bias`), and leaves the logits as the tape's output.
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_forward -- --max-windows 50 --out runs/elman
//! ```

use clap::Parser;
use stagewise_core::{
    Activations, Ctx, Dims, Error, Float, Grads, Op, Par, ParamId, Params, Pieces, Result, Rng, SlotId,
    Stage, StepOp, Tape, run_steps_whole,
};
use stagewise_forward::{FC_PREFIX, LinearOp};
use stagewise_kernels::matrix::{gemm, mat, mat_mut};
use stagewise_kernels::rows::{add_column_sums, add_to_rows};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::ops::Range;
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// An Elman RNN layer over a whole window, as one op of the tape. Holds only sizes and handles.
#[derive(Clone, Debug)]
pub struct ElmanOp {
    embed: usize,
    hidden: usize,
    batch: usize,
    /// `rnn.weight_ih_l0` `[H, E]`, `rnn.weight_hh_l0` `[H, H]`, `rnn.bias_ih_l0`, `rnn.bias_hh_l0` `[H]`.
    w_ih: ParamId,
    w_hh: ParamId,
    b_ih: ParamId,
    b_hh: ParamId,
    /// The input `x` `[T·B, E]`.
    input: SlotId,
    /// Every step's input projection plus both biases, `[T·B, H]`.
    pre: SlotId,
    /// The output `h` `[T·B, H]`, with grad.
    h: SlotId,
    /// The state the window starts from, `[B, H]` (carried between windows, detached).
    h0: SlotId,
    /// Backward scratch: the gradient of the pre-activations `[T·B, H]` and of `h_t` from `t + 1`.
    da: SlotId,
    dh_next: SlotId,
}

impl ElmanOp {
    /// Declares the layer on `tape` after the row slot `input`, its parameters drawn from
    /// `Rng::stream(seed, "rnn")`.
    pub fn declare<T: Float>(tape: &mut Tape<T>, input: SlotId, hidden: usize, seed: u64) -> Result<Self> {
        let embed = tape.acts.slot(input).width;
        if embed == 0 || hidden == 0 {
            return Err(Error::shape("rnn input and hidden widths", "at least 1", (embed, hidden)));
        }
        let p = &mut tape.params;
        let (w_ih, w_hh) = (
            p.declare("rnn.weight_ih_l0", &[hidden, embed])?,
            p.declare("rnn.weight_hh_l0", &[hidden, hidden])?,
        );
        let (b_ih, b_hh) = (p.declare("rnn.bias_ih_l0", &[hidden])?, p.declare("rnn.bias_hh_l0", &[hidden])?);
        let mut rng = Rng::stream(seed, "rnn");
        let bound = 1.0 / (hidden as f64).sqrt();
        for id in [w_ih, w_hh, b_ih, b_hh] {
            for v in p.get_mut(id) {
                *v = T::from_f64(rng.uniform_in(-bound, bound));
            }
        }
        let batch = tape.acts.batch();
        let a = &mut tape.acts;
        Ok(ElmanOp {
            embed,
            hidden,
            batch,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            input,
            pre: a.declare_rows("rnn.pre", hidden, false)?,
            h: a.declare_rows("rnn.h", hidden, true)?,
            h0: a.declare_flat("rnn.h0", &[batch, hidden], false)?,
            da: a.declare_rows("rnn.da", hidden, false)?,
            dh_next: a.declare_flat("rnn.dh_next", &[batch, hidden], false)?,
        })
    }

    /// The output slot `h`.
    pub fn output(&self) -> SlotId {
        self.h
    }
}

impl<T: Float> StepOp<T> for ElmanOp {
    fn output(&self) -> SlotId {
        self.h
    }

    /// A step is one `[B, H]×[H, H]` product: never worth splitting across threads here.
    fn step_threads(&self, _par: Par) -> usize {
        1
    }

    /// `H²` multiply-adds per stream, weighted ×2 for the small product and the `tanh`.
    fn step_cost(&self) -> f64 {
        2.0 * (self.hidden * self.hidden) as f64
    }

    /// `pre = X·W_ihᵀ + b_ih + b_hh` for every step at once.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        let (n, e, hd) = (acts.rows(), self.embed, self.hidden);
        let [x, pre] = acts.slots_mut([self.input, self.pre]);
        let pre = &mut pre.value[..n * hd];
        gemm(
            mat_mut(pre, n, hd),
            false,
            mat(&x.value, n, e),
            mat(params.get(self.w_ih), hd, e).transpose(),
            par,
        );
        add_to_rows(pre, params.get(self.b_ih), par);
        add_to_rows(pre, params.get(self.b_hh), par);
    }

    /// `h_t = tanh(pre_t + h_{t−1}·W_hhᵀ)` for the steps of `steps`.
    fn run_steps(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        prev: &[T],
        out: &mut [T],
        steps: Range<usize>,
        par: Par,
    ) {
        let (bsz, hd) = (self.batch, self.hidden);
        let len = bsz * hd;
        let w_hh_t = mat(params.get(self.w_hh), hd, hd).transpose();
        let (pre, h0) = (&acts.slot(self.pre).value, &acts.slot(self.h0).value);
        for (i, t) in steps.enumerate() {
            let (done, rest) = out.split_at_mut(i * len);
            let h_prev = match i {
                0 if t == 0 => &h0[..len],
                0 => &prev[prev.len() - len..],
                _ => &done[(i - 1) * len..],
            };
            let h_t = &mut rest[..len];
            h_t.copy_from_slice(&pre[t * len..(t + 1) * len]);
            gemm(mat_mut(h_t, bsz, hd), true, mat(h_prev, bsz, hd), w_hh_t, par);
            for v in h_t.iter_mut() {
                *v = v.tanh();
            }
        }
    }
}

impl<T: Float> Op<T> for ElmanOp {
    fn name(&self) -> &str {
        "rnn"
    }

    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        run_steps_whole(self, params, acts, par);
    }

    /// Backward through time: `da_t = (dh_t + da_{t+1}·W_hh) ⊙ (1 − h_t²)`, then the weight
    /// gradients as products over every step, and `dx = da·W_ih`.
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let (e, hd, bsz) = (self.embed, self.hidden, self.batch);
        let (steps, n, len) = (acts.steps(), acts.rows(), bsz * hd);
        let w_hh = params.get(self.w_hh);
        let [x, h, h0, da, dh_next] = acts.slots_mut([self.input, self.h, self.h0, self.da, self.dh_next]);
        let (da, dh_next) = (&mut da.value[..n * hd], &mut dh_next.value[..len]);
        let one = T::from_f64(1.0);
        for t in (0..steps).rev() {
            let rows = t * len..(t + 1) * len;
            dh_next.copy_from_slice(&h.grad[rows.clone()]);
            if t + 1 < steps {
                gemm(
                    mat_mut(dh_next, bsz, hd),
                    true,
                    mat(&da[(t + 1) * len..(t + 2) * len], bsz, hd),
                    mat(w_hh, hd, hd),
                    par,
                );
            }
            for ((d, &g), &y) in da[rows.clone()].iter_mut().zip(dh_next.iter()).zip(&h.value[rows]) {
                *d = g * (one - y * y);
            }
        }
        let da: &[T] = da;
        gemm(
            mat_mut(grads.get_mut(self.w_ih), hd, e),
            true,
            mat(da, n, hd).transpose(),
            mat(&x.value, n, e),
            par,
        );
        let dw_hh = grads.get_mut(self.w_hh);
        gemm(mat_mut(dw_hh, hd, hd), true, mat(da, bsz, hd).transpose(), mat(&h0.value, bsz, hd), par);
        if steps > 1 {
            let m = (steps - 1) * bsz;
            gemm(mat_mut(dw_hh, hd, hd), true, mat(&da[len..], m, hd).transpose(), mat(&h.value, m, hd), par);
        }
        for id in [self.b_ih, self.b_hh] {
            add_column_sums(grads.get_mut(id), da, n, par);
        }
        if !x.grad.is_empty() {
            gemm(mat_mut(&mut x.grad, n, e), false, mat(da, n, hd), mat(params.get(self.w_ih), hd, e), par);
        }
    }

    /// The next window starts from this one's last state, with no gradient path back.
    fn end_window(&self, acts: &mut Activations<T>) {
        let len = self.batch * self.hidden;
        let last = (acts.steps() - 1) * len;
        let [h, h0] = acts.slots_mut([self.h, self.h0]);
        h0.value[..len].copy_from_slice(&h.value[last..last + len]);
    }

    fn reset_state(&self, acts: &mut Activations<T>) {
        acts.slot_mut(self.h0).value.fill(T::from_f64(0.0));
    }

    /// A recurrence: the tape may overlap the head with its steps.
    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Steps(self)
    }
}

/// The forward box "elman": embedded vectors → Elman RNN → Linear head → logits; generic over
/// the float type, so the forward box's laws can be checked in `f64`.
#[derive(Clone, Debug)]
pub struct ElmanForward<T> {
    hidden: usize,
    seed: u64,
    ops: Option<Range<usize>>,
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T> ElmanForward<T> {
    /// A box of hidden width `hidden`, initialised from the run seed's streams.
    pub fn new(hidden: usize, seed: u64) -> Self {
        ElmanForward { hidden, seed, ops: None, _float: std::marker::PhantomData }
    }
}

impl<T: Float> Stage for ElmanForward<T> {
    type Input<'a> = ();
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "elman"
    }

    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        let input =
            tape.output().ok_or_else(|| Error::config("forward", "no embedding output on the tape"))?;
        let rnn = ElmanOp::declare(tape, input, self.hidden, self.seed)?;
        let fc = LinearOp::declare(tape, FC_PREFIX, rnn.output(), dims.vocab, self.seed)?;
        let logits = fc.output();
        let first = tape.push(Box::new(rnn));
        tape.push(Box::new(fc));
        tape.set_output(logits);
        self.ops = Some(first..first + 2);
        Ok(())
    }

    fn run(&self, _input: (), tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let ops = self.ops.clone().ok_or_else(|| Error::config("forward", "elman run before prepare"))?;
        tape.forward_range(ops, cx.par);
        Ok(())
    }
}

/// The flags of `cargo xtask train`, and the RNN's width.
#[derive(Parser)]
#[command(about = "Train an Elman RNN (a user-defined forward box) in place of the LSTM.")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Hidden width of the RNN.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
}

fn run(args: &Args) -> Result<()> {
    let hidden = args.hidden;
    train_command(&args.train, |config| {
        Ok(Model::<f32>::builder(config)?.forward(ElmanForward::<f32>::new(hidden, config.train.seed)))
    })
    .map(|_| ())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    exit_code(run(&Args::parse()).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_testkit::check_tape_gradients;

    #[test]
    fn trains_through_the_common_run() {
        let scratch = common::Scratch::new("forward");
        let mut args = scratch.args(6, Args::parse_from);
        args.hidden = 12;
        run(&args).unwrap();
        let ck = scratch.check_run(2, ["table", "elman", "cross_entropy", "reverse", "adam"]);
        let names: Vec<&str> = ck.layout.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "embedding.weight",
                "rnn.weight_ih_l0",
                "rnn.weight_hh_l0",
                "rnn.bias_ih_l0",
                "rnn.bias_hh_l0",
                "fc.weight",
                "fc.bias"
            ]
        );
    }

    /// The forward box's laws (`stagewise_forward::laws`), which every built-in passes too.
    #[test]
    fn keeps_the_forward_box_s_laws() {
        stagewise_forward::laws::check(|| ElmanForward::<f64>::new(4, 3), 3).unwrap();
        stagewise_forward::laws::check(|| ElmanForward::<f64>::new(1, 5), 2).unwrap();
    }

    /// A tape holding an input `x` `[T·B, e]` (with grad, random), the RNN and a head of `v`.
    fn tape<T: Float>(b: usize, t: usize, e: usize, hd: usize, v: usize) -> (Tape<T>, SlotId) {
        let mut tape = Tape::<T>::new(b, t);
        let x = tape.acts.declare_rows("x", e, true).unwrap();
        tape.set_output(x);
        let mut stage = ElmanForward::<T>::new(hd, 3);
        stage.prepare(&Dims { vocab: v, batch: b, seq_len: t, params: 0 }, &mut tape).unwrap();
        tape.finish();
        let mut rng = Rng::new(5);
        for v in tape.acts.slot_mut(x).value.iter_mut() {
            *v = T::from_f64(rng.normal());
        }
        let h0 = tape.acts.find("rnn.h0").unwrap();
        for v in tape.acts.slot_mut(h0).value.iter_mut() {
            *v = T::from_f64(0.5 * rng.normal());
        }
        (tape, x)
    }

    #[test]
    fn vjp_matches_finite_differences() {
        for (b, t, e, hd, v) in [(1, 1, 1, 1, 2), (2, 4, 3, 5, 7), (3, 6, 4, 2, 3)] {
            let (mut tape, x) = tape::<f64>(b, t, e, hd, v);
            let out = tape.output().unwrap();
            let report = check_tape_gradients(&mut tape, &[x], out, 11, 4, 8);
            assert!(report.max_rel_err < 1e-6, "B={b} T={t} E={e} H={hd}: {}", report.worst);
        }
    }

    /// On two threads the tape overlaps the head with the RNN's steps, and every value is the
    /// same bit for bit as on one thread, window after window.
    #[test]
    fn overlapped_on_two_threads_with_the_same_bits() {
        let run = |par: Par| {
            let (mut tape, _) = tape::<f32>(16, 16, 32, 64, 2000);
            let stage = ElmanForward::<f32> { ops: Some(0..2), ..ElmanForward::new(64, 3) };
            let mut seen = Vec::new();
            for steps in [16, 16, 10] {
                tape.set_steps(steps).unwrap();
                stage.run((), &mut tape, &Ctx { par, ..Ctx::seq() }).unwrap();
                let out = tape.output().unwrap();
                seen.extend(tape.acts.slot(out).value.iter().map(|v| v.to_bits()));
                tape.end_window();
            }
            (seen, tape.overlapped_runs())
        };
        let (one, _) = run(Par::Seq);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (two, overlapped) = pool.install(|| run(Par::rayon(2)));
        assert_eq!(overlapped, 3, "the tape overlapped every window");
        assert!(one == two, "two threads changed the logits");
    }
}
