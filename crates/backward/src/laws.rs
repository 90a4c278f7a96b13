//! The backward box's laws, as a check any implementation can be run through: the built-ins in
//! this crate's tests, a user's own backward box in theirs (enable the `testkit` feature).
//!
//! ```ignore
//! #[test]
//! fn my_backward_keeps_the_laws() {
//!     stagewise_backward::laws::check(|| MyBackward::new()).unwrap();
//! }
//! ```
//!
//! On small tapes built here from two op kinds (an affine map and `tanh`, so the laws do not
//! depend on the forward crate), with a random seed gradient on the output:
//! - the parameter gradients equal central finite differences of `⟨seed, output(θ)⟩` in `f64`,
//!   up to one factor in `(0, 1]` for the whole arena (a box that clips the norm scales them all);
//! - a second call gives the same gradients (they are not accumulated across calls);
//! - two threads give the same bits as one.

use crate::Backward;
use stagewise_core::{Activations, Ctx, Dims, Float, Grads, Op, Par, ParamId, Params, Rng, SlotId, Tape};

/// Runs every law on backward boxes made by `make`; returns the first violation, described.
pub fn check<B: Backward<f64> + Sync>(make: impl Fn() -> B) -> Result<(), String> {
    for (rows, widths, seed) in [(1, [1, 1, 1], 1), (3, [4, 5, 3], 2), (6, [7, 2, 9], 3)] {
        let case = format!("{rows} rows, widths {widths:?}");
        let (mut tape, out) = small_tape(rows, widths, seed).map_err(|e| format!("{case}: {e}"))?;
        let mut backward = make();
        let dims = Dims { vocab: widths[2], batch: rows, seq_len: 1, params: tape.params.layout().total() };
        backward.prepare(&dims, &mut tape).map_err(|e| format!("{case}: prepare: {e}"))?;
        let n = tape.ops().len();
        let mut rng = Rng::new(seed + 100);
        let seed_grad: Vec<f64> = (0..rows * widths[2]).map(|_| rng.normal()).collect();
        let run = |tape: &mut Tape<f64>, par: Par| -> Result<Vec<f64>, String> {
            tape.forward_range(0..n, par);
            tape.acts.slot_mut(out).grad[..seed_grad.len()].copy_from_slice(&seed_grad);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(stagewise_core::threads_of(par))
                .build()
                .map_err(|e| e.to_string())?;
            pool.install(|| backward.run(out, tape, &Ctx { par, ..Ctx::seq() }))
                .map_err(|e| format!("run: {e}"))?;
            Ok(tape.grads.as_slice().to_vec())
        };
        let got = run(&mut tape, Par::Seq).map_err(|e| format!("{case}: {e}"))?;
        let again = run(&mut tape, Par::Seq).map_err(|e| format!("{case}: {e}"))?;
        if again != got {
            return Err(format!("{case}: a second call gave other gradients (accumulated?)"));
        }
        let two = run(&mut tape, Par::rayon(2)).map_err(|e| format!("{case}: {e}"))?;
        if two.iter().map(|x| x.to_bits()).ne(got.iter().map(|x| x.to_bits())) {
            return Err(format!("{case}: two threads gave other gradients"));
        }
        let numeric = finite_differences(&mut tape, out, &seed_grad);
        matches_up_to_a_factor(&got, &numeric).map_err(|e| format!("{case}: {e}"))?;
    }
    Ok(())
}

/// `⟨seed, output(θ)⟩`'s gradient by central differences, one parameter at a time.
fn finite_differences(tape: &mut Tape<f64>, out: SlotId, seed: &[f64]) -> Vec<f64> {
    let n = tape.ops().len();
    let eps = 1e-6;
    let value = |tape: &mut Tape<f64>| {
        tape.forward_range(0..n, Par::Seq);
        tape.acts.slot(out).value.iter().zip(seed).map(|(y, s)| y * s).sum::<f64>()
    };
    (0..tape.params.as_slice().len())
        .map(|i| {
            let x = tape.params.as_slice()[i];
            tape.params.as_mut_slice()[i] = x + eps;
            let up = value(tape);
            tape.params.as_mut_slice()[i] = x - eps;
            let down = value(tape);
            tape.params.as_mut_slice()[i] = x;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

/// `got = c · want` for one `c` in `(0, 1]`, element by element to ~1e-6 of the largest.
fn matches_up_to_a_factor(got: &[f64], want: &[f64]) -> Result<(), String> {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (g, w) = (norm(got), norm(want));
    if w == 0.0 {
        return if g == 0.0 {
            Ok(())
        } else {
            Err(format!("gradient norm {g} where finite differences give 0"))
        };
    }
    let c = g / w;
    if !(c > 0.0 && c <= 1.0 + 1e-6) {
        return Err(format!(
            "gradient norm {g} against {w} by finite differences: a factor {c}, not in (0, 1]"
        ));
    }
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    match got.iter().zip(want).position(|(a, b)| (a - c * b).abs() > 1e-6 * scale.max(1e-3)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "gradient element {i} is {}, finite differences give {} (factor {c})",
            got[i], want[i]
        )),
    }
}

/// A tape `x → affine → tanh → affine → out` over `rows` rows of widths `[in, hidden, out]`,
/// with random parameters and input; returns it and the output slot.
fn small_tape(
    rows: usize,
    [w_in, w_hid, w_out]: [usize; 3],
    seed: u64,
) -> stagewise_core::Result<(Tape<f64>, SlotId)> {
    let mut tape = Tape::try_new(rows, 1)?;
    let x = tape.acts.declare_rows("x", w_in, false)?;
    let h = tape.acts.declare_rows("h", w_hid, true)?;
    let t = tape.acts.declare_rows("t", w_hid, true)?;
    let y = tape.acts.declare_rows("y", w_out, true)?;
    let first = Affine::declare(&mut tape, "first", x, h)?;
    let second = Affine::declare(&mut tape, "second", t, y)?;
    let mut rng = Rng::new(seed);
    for p in tape.params.as_mut_slice() {
        *p = 0.5 * rng.normal();
    }
    for v in tape.acts.slot_mut(x).value.iter_mut() {
        *v = rng.normal();
    }
    tape.push(Box::new(first));
    tape.push(Box::new(Tanh { x: h, y: t }));
    tape.push(Box::new(second));
    tape.set_output(y);
    tape.try_finish()?;
    Ok((tape, y))
}

/// `y = x·Wᵀ + b` row by row, in plain loops.
struct Affine {
    w: ParamId,
    b: ParamId,
    x: SlotId,
    y: SlotId,
    inp: usize,
    out: usize,
}

impl Affine {
    fn declare(tape: &mut Tape<f64>, name: &str, x: SlotId, y: SlotId) -> stagewise_core::Result<Self> {
        let (inp, out) = (tape.acts.slot(x).width, tape.acts.slot(y).width);
        let w = tape.params.declare(&format!("{name}.weight"), &[out, inp])?;
        let b = tape.params.declare(&format!("{name}.bias"), &[out])?;
        Ok(Affine { w, b, x, y, inp, out })
    }
}

impl<T: Float> Op<T> for Affine {
    fn name(&self) -> &str {
        "affine"
    }

    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let (w, b, rows) = (params.get(self.w), params.get(self.b), acts.rows());
        let [x, y] = acts.slots_mut([self.x, self.y]);
        for r in 0..rows {
            for o in 0..self.out {
                let dot =
                    (0..self.inp).fold(b[o], |s, i| s + w[o * self.inp + i] * x.value[r * self.inp + i]);
                y.value[r * self.out + o] = dot;
            }
        }
    }

    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, _par: Par) {
        let (w, rows) = (params.get(self.w), acts.rows());
        let [x, y] = acts.slots_mut([self.x, self.y]);
        let dw = grads.get_mut(self.w);
        for r in 0..rows {
            for o in 0..self.out {
                let g = y.grad[r * self.out + o];
                for i in 0..self.inp {
                    dw[o * self.inp + i] += g * x.value[r * self.inp + i];
                }
            }
        }
        let db = grads.get_mut(self.b);
        for row in y.grad[..rows * self.out].chunks_exact(self.out) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
        if !x.grad.is_empty() {
            for r in 0..rows {
                for i in 0..self.inp {
                    let dx = (0..self.out)
                        .fold(T::from_f64(0.0), |s, o| s + y.grad[r * self.out + o] * w[o * self.inp + i]);
                    x.grad[r * self.inp + i] = dx;
                }
            }
        }
    }
}

/// `y = tanh(x)` element by element.
struct Tanh {
    x: SlotId,
    y: SlotId,
}

impl<T: Float> Op<T> for Tanh {
    fn name(&self) -> &str {
        "tanh"
    }

    fn forward(&self, _params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let [x, y] = acts.slots_mut([self.x, self.y]);
        for (o, i) in y.value.iter_mut().zip(x.value.iter()) {
            *o = i.tanh();
        }
    }

    fn vjp(&self, _params: &Params<T>, acts: &mut Activations<T>, _grads: &mut Grads<T>, _par: Par) {
        let [x, y] = acts.slots_mut([self.x, self.y]);
        let one = T::from_f64(1.0);
        for ((dx, &t), &g) in x.grad.iter_mut().zip(y.value.iter()).zip(y.grad.iter()) {
            *dx = g * (one - t * t);
        }
    }
}
