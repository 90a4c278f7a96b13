//! The built-in optimizers: PyTorch's numbers, frozen tensors, thread counts, convergence.

use super::*;
use proptest::prelude::{ProptestConfig, prop, prop_assert, proptest};
use stagewise_core::Ctx;

fn arenas(p: &[f64], g: &[f64]) -> (Params<f64>, Grads<f64>, OptimizerState<f64>) {
    let mut params = Params::new();
    let id = params.declare("w", &[p.len()]).unwrap();
    params.get_mut(id).copy_from_slice(p);
    let mut grads = Grads::zeros_with_layout(params.layout());
    grads.as_mut_slice().copy_from_slice(g);
    let state = OptimizerState::new(params.layout());
    (params, grads, state)
}

fn dims(params: usize) -> Dims {
    Dims { vocab: 2, batch: 1, seq_len: 1, params }
}

/// One step without a schedule.
fn update<'a>(params: &'a mut Params<f64>, grads: &'a Grads<f64>) -> Update<'a, f64> {
    Update { params, grads, lr_factor: 1.0 }
}

/// Adam at `lr`, prepared on `state` (which gets its two moments).
fn prepared(lr: f64, state: &mut OptimizerState<f64>) -> Adam<f64> {
    let mut adam = Adam::new(lr);
    adam.prepare(&dims(state.layout().total()), state).unwrap();
    adam
}

#[test]
fn matches_a_hand_computed_step() {
    // Step 1 with g = 0.5, p = 1, lr = 0.1:
    // m = 0.1 * 0.5 = 0.05; v = 0.001 * 0.25 = 0.00025;
    // m̂ = 0.05 / 0.1 = 0.5; v̂ = 0.00025 / 0.001 = 0.25; p = 1 − 0.1 * 0.5 / (0.5 + 1e-8) = 0.9 + 2e-9.
    // Step 2 with g = −1: m = 0.9*0.05 − 0.1 = −0.055; v = 0.999*0.00025 + 0.001 = 0.00124975;
    // m̂ = −0.055 / 0.19; v̂ = 0.00124975 / (1 − 0.999²) = 0.00124975 / 0.001999.
    let (mut p, g, mut s) = arenas(&[1.0], &[0.5]);
    let adam = prepared(0.1, &mut s);
    let names: Vec<&str> = s.buffers().map(|(name, _)| name).collect();
    assert_eq!(names, ["exp_avg", "exp_avg_sq"], "PyTorch's names for Adam's state");
    adam.run(update(&mut p, &g), &mut s, &Ctx::seq()).unwrap();
    let p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8);
    assert!((p.as_slice()[0] - p1).abs() < 1e-15);
    let g2 = arenas(&[0.0], &[-1.0]).1;
    adam.run(update(&mut p, &g2), &mut s, &Ctx::seq()).unwrap();
    let (m_hat, v_hat): (f64, f64) = (-0.055 / 0.19, 0.00124975 / 0.001999);
    let p2 = p1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
    assert!((p.as_slice()[0] - p2).abs() < 1e-12, "{} vs {p2}", p.as_slice()[0]);
    assert_eq!(s.step, 2);
}

/// Parameters `w` `[2, 3]`, `b` `[3]` and a frozen `f` `[2]` (gradient set, never used).
fn model() -> (Params<f64>, Grads<f64>, OptimizerState<f64>) {
    let mut params = Params::new();
    let w = params.declare("w", &[2, 3]).unwrap();
    let b = params.declare("b", &[3]).unwrap();
    let f = params.declare("f", &[2]).unwrap();
    params.get_mut(w).copy_from_slice(&[0.5, -1.0, 0.25, 2.0, -0.75, 1.5]);
    params.get_mut(b).copy_from_slice(&[0.1, -0.2, 0.3]);
    params.get_mut(f).copy_from_slice(&[1.0, -1.0]);
    params.set_trainable(f, false);
    let grads = Grads::zeros_with_layout(params.layout());
    let state = OptimizerState::new(params.layout());
    (params, grads, state)
}

/// The gradients of the three steps (`w`, then `b`; `f`'s is 7 and must not matter).
const GRADS: [[f64; 9]; 3] = [
    [0.3, -0.6, 0.9, -1.2, 0.05, 0.4, 0.2, -0.1, 0.7],
    [-0.5, 0.25, 0.1, 0.8, -0.3, -0.9, -0.4, 0.6, 0.05],
    [0.15, 0.45, -0.35, 0.6, 0.2, -0.1, 0.3, -0.25, -0.5],
];

/// The learning-rate factor of the three steps.
const FACTORS: [f64; 3] = [1.0, 0.5, 0.25];

/// `[w, b, f]` after each of three steps at lr 0.1 × [`FACTORS`] with [`GRADS`], from torch 2.15
/// in float64 (`f` with `requires_grad=False`; the group's `lr` set before each `step()`):
///
/// ```python
/// opt = torch.optim.Adam([w, b], lr=0.1)                           # adam
/// opt = torch.optim.Adam([w, b], lr=0.1, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)  # adam_l2
/// opt = torch.optim.AdamW([w, b], lr=0.1, weight_decay=0.1)        # adamw
/// opt = torch.optim.AdamW([{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
///                         lr=0.1, weight_decay=0.1)                # adamw, decay_all = false
/// opt = torch.optim.SGD([w, b], lr=0.1)                            # sgd
/// opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9)              # sgd_momentum
/// opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
/// opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
/// for (gw, gb), k in zip(GRADS, FACTORS):
///     for g in opt.param_groups: g["lr"] = 0.1 * k
///     w.grad, b.grad = torch.tensor(gw), torch.tensor(gb); opt.step()
/// ```
#[rustfmt::skip]
const PYTORCH: [(&str, [[f64; 11]; 3]); 8] = [
    ("adam", [
        [0.4000000033333332, -0.9000000016666666, 0.15000000111111111, 2.0999999991666667, -0.849999980000004, 1.4000000025, 4.999999775323616e-09, -0.10000000999999903, 0.2000000014285714, 1.0, -1.0],
        [0.41467806321573064, -0.883392950031562, 0.11259136582308063, 2.1072260255816264, -0.8188040481269128, 1.420401709585404, 0.018305180773018296, -0.13119594259820935, 0.1639301179389087, 1.0, -1.0],
        [0.41619090210465143, -0.8872133414525962, 0.10486950447635907, 2.1036655185555255, -0.8175093039689114, 1.429860796703487, 0.015278998568582265, -0.13627353981979926, 0.16185295134368946, 1.0, -1.0],
    ]),
    ("adam_l2", [
        [0.40000028571346935, -0.9000001428569387, 0.15000010810799125, 2.0999999000001, -0.6500039998400065, 1.4000001818178514, 4.7618820864236966e-07, -0.10000083332638895, 0.2000001369861137, 1.0, -1.0],
        [0.4122254538032578, -0.878067030671266, 0.11387858017309185, 2.0941958111808816, -0.6087672885836228, 1.4133893925726273, 0.02014508381804828, -0.13215832944029254, 0.16488026092335228, 1.0, -1.0],
        [0.4108473658617487, -0.879000681414362, 0.10767453382656739, 2.0835839784625048, -0.601115174015385, 1.4174531263974908, 0.01634642757854993, -0.13572059865762887, 0.16407687893290018, 1.0, -1.0],
    ]),
    ("adamw", [
        [0.3950000033333332, -0.8900000016666666, 0.1475000011111111, 2.0799999991666667, -0.8424999800000039, 1.3850000024999998, -0.0009999950000002256, -0.09800000999999903, 0.1970000014285714, 1.0, -1.0],
        [0.40770306319906396, -0.8689429500232287, 0.10935386581752507, 2.076826025585793, -0.8070915482269126, 1.3984767095729038, 0.017310180748018295, -0.12870594254820936, 0.15994511793176583, 1.0, -1.0],
        [0.4081966444299871, -0.8705909840692049, 0.1013586198062597, 2.0680734534957277, -0.803779075198344, 1.4044396049170547, 0.01424072309171222, -0.13346177491342875, 0.1574680885417172, 1.0, -1.0],
    ]),
    ("adamw_2d", [
        [0.3950000033333332, -0.8900000016666666, 0.1475000011111111, 2.0799999991666667, -0.8424999800000039, 1.3850000024999998, 4.999999775323616e-09, -0.10000000999999903, 0.2000000014285714, 1.0, -1.0],
        [0.40770306319906396, -0.8689429500232287, 0.10935386581752507, 2.076826025585793, -0.8070915482269126, 1.3984767095729038, 0.018305180773018296, -0.13119594259820935, 0.1639301179389087, 1.0, -1.0],
        [0.4081966444299871, -0.8705909840692049, 0.1013586198062597, 2.0680734534957277, -0.803779075198344, 1.4044396049170547, 0.015278998568582265, -0.13627353981979926, 0.16185295134368946, 1.0, -1.0],
    ]),
    ("sgd", [
        [0.47, -0.94, 0.16, 2.12, -0.755, 1.46, 0.08, -0.19, 0.22999999999999998, 1.0, -1.0],
        [0.495, -0.9524999999999999, 0.155, 2.08, -0.74, 1.505, 0.1, -0.22, 0.22749999999999998, 1.0, -1.0],
        [0.49125, -0.9637499999999999, 0.16375, 2.065, -0.745, 1.5074999999999998, 0.0925, -0.21375, 0.24, 1.0, -1.0],
    ]),
    ("sgd_momentum", [
        [0.47, -0.94, 0.16, 2.12, -0.755, 1.46, 0.08, -0.19, 0.22999999999999998, 1.0, -1.0],
        [0.4815, -0.9255, 0.1145, 2.134, -0.74225, 1.4869999999999999, 0.091, -0.2155, 0.19599999999999998, 1.0, -1.0],
        [0.482925, -0.930225, 0.102775, 2.1252999999999997, -0.7415125, 1.50165, 0.08845, -0.220725, 0.19319999999999998, 1.0, -1.0],
    ]),
    ("sgd_dampening_wd", [
        [0.465, -0.93, 0.1575, 2.1, -0.7475, 1.445, 0.079, -0.188, 0.22699999999999998, 1.0, -1.0],
        [0.46058750000000004, -0.902425, 0.11298124999999999, 2.1197500000000002, -0.7370062500000001, 1.4391375, 0.0793525, -0.19713, 0.1923325, 1.0, -1.0],
        [0.45615114062500006, -0.89451321875, 0.0971815859375, 2.1184878125, -0.7338628046875001, 1.435950453125, 0.075661934375, -0.1978670875, 0.18274170937499998, 1.0, -1.0],
    ]),
    ("sgd_nesterov_wd", [
        [0.43825, -0.8765, 0.076625, 2.209, -0.752375, 1.40975, 0.06105, -0.1791, 0.16415, 1.0, -1.0],
        [0.47050581249999995, -0.869761625, 0.029804781249999992, 2.16705725, -0.72080746875, 1.4693161875, 0.0904575125, -0.230794275, 0.1296627875, 1.0, -1.0],
        [0.46602150807031245, -0.881399734890625, 0.027626099582031237, 2.1350213765312502, -0.7219865838242188, 1.4787173146796875, 0.0802947377828125, -0.228335049846875, 0.13889526150468748, 1.0, -1.0],
    ]),
];

/// The config of each [`PYTORCH`] case.
fn pytorch_config(name: &str) -> OptimizerConfig {
    let adam =
        |weight_decay, beta1, beta2, eps| OptimizerConfig::Adam { lr: 0.1, beta1, beta2, eps, weight_decay };
    let adamw = |decay_all| OptimizerConfig::AdamW {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decay_all,
    };
    let sgd = |momentum, nesterov, weight_decay, dampening| OptimizerConfig::Sgd {
        lr: 0.1,
        momentum,
        nesterov,
        weight_decay,
        dampening,
    };
    match name {
        "adam" => adam(0.0, 0.9, 0.999, 1e-8),
        "adam_l2" => adam(0.1, 0.8, 0.99, 1e-6),
        "adamw" => adamw(true),
        "adamw_2d" => adamw(false),
        "sgd" => sgd(0.0, false, 0.0, 0.0),
        "sgd_momentum" => sgd(0.9, false, 0.0, 0.0),
        "sgd_dampening_wd" => sgd(0.9, false, 0.1, 0.5),
        "sgd_nesterov_wd" => sgd(0.9, true, 0.05, 0.0),
        _ => unreachable!("{name}"),
    }
}

#[test]
fn first_three_steps_follow_pytorch_and_leave_frozen_tensors_alone() {
    for (name, expected) in PYTORCH {
        for par in [Par::Seq, Par::rayon(2)] {
            let (mut p, mut g, mut s) = model();
            let mut opt = pytorch_config(name).build::<f64>();
            opt.prepare(&dims(11), &mut s).unwrap();
            for (k, (grads, factor)) in GRADS.iter().zip(FACTORS).enumerate() {
                g.as_mut_slice()[..9].copy_from_slice(grads);
                g.as_mut_slice()[9..].copy_from_slice(&[7.0, 7.0]);
                let up = Update { params: &mut p, grads: &g, lr_factor: factor };
                opt.run(up, &mut s, &Ctx { par, ..Ctx::seq() }).unwrap();
                for (j, (a, b)) in p.as_slice().iter().zip(&expected[k]).enumerate() {
                    assert!((a - b).abs() < 2e-15, "{name} step {} element {j}: {a} vs {b}", k + 1);
                }
                assert_eq!(&p.as_slice()[9..], &[1.0, -1.0], "{name}: the frozen tensor is untouched");
                for (buffer, values) in s.buffers() {
                    assert_eq!(&values.as_slice()[9..], &[0.0, 0.0], "{name}: {buffer} of the frozen tensor");
                }
            }
            assert_eq!(s.step, 3);
        }
    }
}

#[test]
fn each_optimizer_declares_pytorch_s_state_names() {
    for (config, names) in [
        (pytorch_config("adam"), &["exp_avg", "exp_avg_sq"][..]),
        (pytorch_config("adamw"), &["exp_avg", "exp_avg_sq"][..]),
        (pytorch_config("sgd_momentum"), &["momentum_buffer"][..]),
        (pytorch_config("sgd"), &[][..]),
    ] {
        let (_, _, mut s) = model();
        let mut opt = config.build::<f64>();
        opt.prepare(&dims(11), &mut s).unwrap();
        assert_eq!(s.buffers().map(|(n, _)| n).collect::<Vec<_>>(), names, "{config:?}");
    }
    let names: Vec<&str> = [pytorch_config("adam"), pytorch_config("adamw"), pytorch_config("sgd")]
        .iter()
        .map(|c| match c.build::<f32>() {
            OptimizerImpl::Adam(_) => "adam",
            OptimizerImpl::AdamW(_) => "adamw",
            OptimizerImpl::Sgd(_) => "sgd",
        })
        .collect();
    assert_eq!(names, ["adam", "adamw", "sgd"]);
}

/// Every built-in kind, with settings that exercise each branch.
fn every_kind() -> Vec<OptimizerConfig> {
    PYTORCH.iter().map(|(name, _)| pytorch_config(name)).collect()
}

/// Several tensors (2-D and 1-D, one frozen, sizes crossing the parallel chunk) with `values`.
fn big_model(values: &[f64]) -> (Params<f64>, Grads<f64>, OptimizerState<f64>) {
    let mut params = Params::new();
    let shapes: [&[usize]; 4] = [&[100, 300], &[17], &[5000], &[3, 4000]];
    let mut ids = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        ids.push(params.declare(&format!("t{i}"), s).unwrap());
    }
    params.set_trainable(ids[2], false);
    let total = params.layout().total();
    params.as_mut_slice().copy_from_slice(&values[..total]);
    let grads = Grads::zeros_with_layout(params.layout());
    let state = OptimizerState::new(params.layout());
    (params, grads, state)
}

const BIG: usize = 100 * 300 + 17 + 5000 + 3 * 4000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn first_step_moves_each_weight_by_about_lr_against_its_gradient(
        p in prop::collection::vec(-3.0f64..3.0, 1..50),
        g in prop::collection::vec(-3.0f64..3.0, 50),
    ) {
        let g = &g[..p.len()];
        let (mut params, grads, mut state) = arenas(&p, g);
        prepared(1e-3, &mut state).run(update(&mut params, &grads), &mut state, &Ctx::seq()).unwrap();
        for ((new, old), g) in params.as_slice().iter().zip(&p).zip(g) {
            prop_assert!(new.is_finite());
            let expected = -1e-3 * g / (g.abs() + 1e-8);
            prop_assert!((new - old - expected).abs() < 1e-12);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn parallel_equals_sequential_for_every_kind(p in prop::collection::vec(-3.0f64..3.0, BIG), seed in 0u64..100) {
        let mut rng = stagewise_core::Rng::new(seed);
        for config in every_kind() {
            let (mut pa, mut ga, mut sa) = big_model(&p);
            let (mut pb, _, mut sb) = big_model(&p);
            let mut opt = config.build::<f64>();
            opt.prepare(&dims(BIG), &mut sa).unwrap();
            opt.prepare(&dims(BIG), &mut sb).unwrap();
            for k in 0..3 {
                for g in ga.as_mut_slice() {
                    *g = rng.normal();
                }
                let factor = 1.0 / (k + 1) as f64;
                opt.run(Update { params: &mut pa, grads: &ga, lr_factor: factor }, &mut sa, &Ctx::seq()).unwrap();
                let two = Ctx { par: Par::rayon(2), ..Ctx::seq() };
                opt.run(Update { params: &mut pb, grads: &ga, lr_factor: factor }, &mut sb, &two).unwrap();
            }
            prop_assert!(pa == pb && sa == sb, "{:?}", config);
            prop_assert!(pa.as_slice()[30_017..35_017] == p[30_017..35_017], "{:?}: frozen", config);
        }
    }
}

/// `f(p) = ½ Σ aᵢ (pᵢ − cᵢ)²`, a convex quadratic, and its gradient.
fn quadratic(p: &[f64], g: &mut [f64]) -> f64 {
    let mut f = 0.0;
    for (i, (p, g)) in p.iter().zip(g).enumerate() {
        let (a, c) = (1.0 + (i % 5) as f64, (i as f64 * 0.7).sin());
        *g = a * (p - c);
        f += 0.5 * a * (p - c) * (p - c);
    }
    f
}

#[test]
fn every_optimizer_decreases_a_convex_quadratic() {
    for config in every_kind() {
        let mut config = config;
        // Small steps for SGD (the curvature reaches 5), Adam's usual scale for Adam.
        config.set_lr(if matches!(config, OptimizerConfig::Sgd { .. }) { 0.05 } else { 0.02 });
        let (mut p, mut g, mut s) = arenas(&[1.5, -2.0, 0.5, 3.0, -1.0, 0.0, 2.5], &[0.0; 7]);
        let mut opt = config.build::<f64>();
        opt.prepare(&dims(7), &mut s).unwrap();
        let start = quadratic(p.as_slice(), g.as_mut_slice());
        for _ in 0..500 {
            quadratic(p.as_slice(), g.as_mut_slice());
            opt.run(update(&mut p, &g), &mut s, &Ctx::seq()).unwrap();
        }
        let end = quadratic(p.as_slice(), g.as_mut_slice());
        // Weight decay moves the minimum away from c, so "decreases" is all that is asked then.
        assert!(end < 0.05 * start, "{config:?}: {start} -> {end}");
    }
}

#[test]
fn a_zero_gradient_changes_nothing_but_weight_decay() {
    let start = [0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 0.1, -0.2, 0.3, 1.0, -1.0];
    for config in every_kind() {
        let (mut p, g, mut s) = model();
        let mut opt = config.build::<f64>();
        opt.prepare(&dims(11), &mut s).unwrap();
        for _ in 0..3 {
            opt.run(update(&mut p, &g), &mut s, &Ctx::seq()).unwrap();
        }
        match config {
            OptimizerConfig::AdamW { lr, weight_decay, decay_all, .. } => {
                // Only the decay acts: p·(1 − lr·wd)³ where decayed (the 2-D `w`, and `b` if all).
                let d = 1.0 - lr * weight_decay;
                for (j, (&a, &b)) in p.as_slice().iter().zip(&start).enumerate() {
                    let decayed = j < 6 || (decay_all && j < 9);
                    let expect = if decayed { b * d * d * d } else { b };
                    assert!((a - expect).abs() < 1e-15, "{config:?} element {j}: {a} vs {expect}");
                }
            }
            OptimizerConfig::Adam { weight_decay, .. } | OptimizerConfig::Sgd { weight_decay, .. }
                if weight_decay > 0.0 =>
            {
                assert!(p.as_slice()[..9].iter().zip(&start).all(|(a, b)| a.abs() < b.abs()), "{config:?}");
            }
            _ => assert_eq!(p.as_slice(), &start[..], "{config:?}"),
        }
        assert_eq!(&p.as_slice()[9..], &start[9..], "{config:?}: frozen");
    }
}

#[test]
fn lr_factor_scales_the_step_and_a_bad_one_is_an_error() {
    for config in every_kind() {
        let (mut a, g, mut sa) = arenas(&[1.0, -2.0], &[0.5, 0.25]);
        let (mut b, _, mut sb) = arenas(&[1.0, -2.0], &[0.5, 0.25]);
        let mut half = config.clone();
        half.set_lr(config.lr() / 2.0);
        let (mut full, mut halved) = (config.build::<f64>(), half.build::<f64>());
        full.prepare(&dims(2), &mut sa).unwrap();
        halved.prepare(&dims(2), &mut sb).unwrap();
        full.run(Update { params: &mut a, grads: &g, lr_factor: 0.5 }, &mut sa, &Ctx::seq()).unwrap();
        halved.run(update(&mut b, &g), &mut sb, &Ctx::seq()).unwrap();
        assert_eq!(a.as_slice(), b.as_slice(), "{config:?}");
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = full.run(Update { params: &mut a, grads: &g, lr_factor: bad }, &mut sa, &Ctx::seq());
            assert!(err.unwrap_err().to_string().contains("lr_factor"), "{config:?}");
        }
    }
}

#[test]
fn bad_hyperparameters_are_config_errors() {
    let (mut p, g, mut s) = arenas(&[1.0], &[1.0]);
    let err = Adam::<f64>::new(-1.0).prepare(&dims(1), &mut s).unwrap_err().to_string();
    assert!(err.contains("optimizer.lr"), "{err}");
    let err = Adam::<f64>::new(0.1).run(update(&mut p, &g), &mut s, &Ctx::seq());
    assert!(err.unwrap_err().to_string().contains("before prepare"));
    let err = Sgd::<f64>::new(0.1).run(update(&mut p, &g), &mut s, &Ctx::seq());
    assert!(err.unwrap_err().to_string().contains("before prepare"));
    let c: std::result::Result<OptimizerConfig, _> =
        serde_json::from_str(r#"{"kind":"adam","learning_rate":0.1}"#);
    assert!(c.is_err());
    let sgd = |momentum, nesterov, weight_decay, dampening| OptimizerConfig::Sgd {
        lr: 0.1,
        momentum,
        nesterov,
        weight_decay,
        dampening,
    };
    for (config, field) in [
        (sgd(0.0, true, 0.0, 0.0), "optimizer.nesterov"),
        (sgd(0.9, true, 0.0, 0.1), "optimizer.nesterov"),
        (sgd(-0.5, false, 0.0, 0.0), "optimizer.momentum"),
        (sgd(0.9, false, -1.0, 0.0), "optimizer.weight_decay"),
        (sgd(0.9, false, 0.0, 2.0), "optimizer.dampening"),
        (
            OptimizerConfig::AdamW {
                lr: 0.1,
                beta1: 1.0,
                beta2: 0.9,
                eps: 1e-8,
                weight_decay: 0.0,
                decay_all: true,
            },
            "optimizer.beta1",
        ),
        (
            OptimizerConfig::AdamW {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.9,
                eps: 0.0,
                weight_decay: 0.0,
                decay_all: true,
            },
            "optimizer.eps",
        ),
    ] {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{config:?}: {err}");
        let (_, _, mut s) = arenas(&[1.0], &[1.0]);
        let err = config.build::<f64>().prepare(&dims(1), &mut s).unwrap_err().to_string();
        assert!(err.contains(field), "{config:?}: {err}");
    }
}

#[test]
fn config_tables_parse_with_pytorch_s_defaults() {
    let parse = |text: &str| toml::from_str::<OptimizerConfig>(text).unwrap();
    assert_eq!(
        parse("kind = \"adamw\"\n"),
        OptimizerConfig::AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_all: true
        }
    );
    assert_eq!(
        parse("kind = \"sgd\"\nlr = 0.5\nmomentum = 0.9\nnesterov = true\n"),
        OptimizerConfig::Sgd { lr: 0.5, momentum: 0.9, nesterov: true, weight_decay: 0.0, dampening: 0.0 }
    );
    assert_eq!(parse("kind = \"adam\"\n"), OptimizerConfig::default());
    for config in every_kind() {
        assert_eq!(parse(&toml::to_string(&config).unwrap()), config);
    }
    let err = toml::from_str::<OptimizerConfig>("kind = \"sgd\"\nbeta1 = 0.9\n").unwrap_err().to_string();
    assert!(err.contains("beta1"), "{err}");
    let err =
        toml::from_str::<OptimizerConfig>("kind = \"adam\"\ndecay_all = false\n").unwrap_err().to_string();
    assert!(err.contains("decay_all"), "{err}");
    let mut c = parse("kind = \"sgd\"\n");
    c.set_lr(0.25);
    assert_eq!(c.lr(), 0.25);
}

/// Every built-in keeps the update box's laws, and the kit catches an optimizer that breaks one.
#[test]
fn the_built_ins_keep_the_laws() {
    crate::laws::check(|| Adam::<f64>::new(0.05), false).unwrap();
    crate::laws::check(
        || {
            let mut adam = Adam::<f64>::new(0.05);
            adam.weight_decay = 0.01;
            adam
        },
        true,
    )
    .unwrap();
    crate::laws::check(|| AdamW::<f64>::new(0.05), true).unwrap();
    crate::laws::check(|| Sgd::<f64>::new(0.1), false).unwrap();
    let sgd = |momentum: f64, nesterov: bool, dampening: f64, weight_decay: f64| {
        let mut sgd = Sgd::<f64>::new(0.05);
        (sgd.momentum, sgd.nesterov, sgd.dampening, sgd.weight_decay) =
            (momentum, nesterov, dampening, weight_decay);
        sgd
    };
    crate::laws::check(|| sgd(0.9, true, 0.0, 0.0), false).unwrap();
    crate::laws::check(|| sgd(0.5, false, 0.5, 0.01), true).unwrap();
    // Gradient ascent: the quadratic grows.
    let err = crate::laws::check(|| Sgd::<f64>::new(-0.1), false);
    assert!(err.is_err(), "a negative rate must break a law");
}
