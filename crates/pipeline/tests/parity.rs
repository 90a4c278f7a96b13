//! The PyTorch parity check: the library call, its errors, and the `parity` subcommand.

use crate::util::{TempDir, stagewise, texts};
use stagewise_pipeline::parity::run_parity;
use std::path::{Path, PathBuf};

/// The CLI's default `--tol`.
const TOL: f64 = 1e-4;

const PARAMS: [&str; 7] = [
    "embedding.weight",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    "lstm.bias_ih_l0",
    "lstm.bias_hh_l0",
    "fc.weight",
    "fc.bias",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_small.safetensors")
}

/// The same model, batch and Adam steps as [`fixture`], every tensor stored in float64 as
/// PyTorch computed it (`make_parity_fixture.py --dtype float64`).
fn fixture_f64() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_small_f64.safetensors")
}

/// A float64 fixture runs the whole check in f64 — every op, the loss, Adam — and agrees with
/// PyTorch's float64 run to within 1e-10 (in practice ~1e-16).
#[test]
fn a_float64_fixture_is_checked_in_f64_to_1e_10() {
    let report = run_parity(&fixture_f64(), 3, None).unwrap();
    assert_eq!(report.dtype, "f64");
    assert_eq!(report.comparisons.len(), 1 + 7 + 21);
    let worst = report.comparisons.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
    assert!(report.failures(1e-10).is_empty() && worst < 1e-12, "worst {worst:e}: {report:?}");
    // The f32 check of the same model is ~1e-7 off: the f64 run is what closes the gap.
    assert_eq!(run_parity(&fixture(), 3, None).unwrap().dtype, "f32");

    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out =
        stagewise(here, &["parity", fixture_f64().to_str().unwrap(), "--adam-steps", "3", "--tol", "1e-10"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("checking in f64") && stdout.contains("parity OK"), "{stdout}");
}

#[test]
fn loss_gradients_and_three_adam_steps_match_pytorch() {
    let report = run_parity(&fixture(), 3, None).unwrap();
    for c in &report.comparisons {
        assert!(c.max_abs_diff <= TOL, "{} max_abs_diff {:e} > {TOL:e}", c.name, c.max_abs_diff);
    }
    assert!(report.failures(TOL).is_empty());
    assert!(report.loss.is_finite() && (report.loss - report.reference_loss).abs() <= TOL, "{report:?}");

    let mut expected = vec!["loss".to_owned()];
    expected.extend(PARAMS.iter().map(|p| format!("grad.{p}")));
    for k in 1..=3 {
        expected.extend(PARAMS.iter().map(|p| format!("step{k}.{p}")));
    }
    let mut got: Vec<String> = report.comparisons.iter().map(|c| c.name.clone()).collect();
    assert_eq!(got.len(), 1 + 7 + 21, "{got:?}");
    assert_eq!(got[0], "loss");
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    let dir = TempDir::new("parity-truncated");
    let bytes = std::fs::read(fixture()).unwrap();
    for (i, keep) in [bytes.len() / 2, bytes.len() - 1, 5].into_iter().enumerate() {
        let path = dir.join(format!("cut{i}.safetensors"));
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = run_parity(&path, 0, None).unwrap_err().to_string();
        assert!(err.contains(&format!("cut{i}.safetensors")), "{keep} bytes: {err}");
    }
}

#[test]
fn more_adam_steps_than_the_file_has_names_the_missing_tensor() {
    let err = run_parity(&fixture(), 5, None).unwrap_err().to_string();
    assert!(err.contains("`step5.") && err.contains("missing"), "{err}");
    assert!(err.contains("parity_small.safetensors"), "{err}");
}

/// A copy of the fixture without the tensors `drop` picks, written into `dir`.
fn fixture_without(dir: &TempDir, name: &str, drop: impl Fn(&str) -> bool) -> PathBuf {
    let bytes = std::fs::read(fixture()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().filter(|(n, _)| !drop(n)).collect();
    let path = dir.join(name);
    safetensors::serialize_to_file(kept, meta.metadata().clone(), &path).unwrap();
    path
}

/// `--adam-steps N` needs only `stepN.*`: the steps before it are compared where the file has them.
#[test]
fn intermediate_steps_are_optional() {
    let dir = TempDir::new("parity-steps");
    let path = fixture_without(&dir, "no_step2.safetensors", |n| n.starts_with("step2."));
    let report = run_parity(&path, 3, None).unwrap();
    let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 1 + 7 + 14, "{names:?}");
    assert!(names.contains(&"step1.fc.bias") && names.contains(&"step3.fc.bias"));
    assert!(!names.iter().any(|n| n.starts_with("step2.")));
    assert!(report.failures(TOL).is_empty(), "{report:?}");
    // The last step must be there.
    let path = fixture_without(&dir, "no_step3.safetensors", |n| n.starts_with("step3."));
    let err = run_parity(&path, 3, None).unwrap_err().to_string();
    assert!(err.contains("`step3.") && err.contains("no_step3.safetensors"), "{err}");
    assert_eq!(run_parity(&path, 2, None).unwrap().failures(TOL).len(), 0);
}

#[test]
fn command_prints_every_comparison_and_fails_below_tolerance() {
    let fixture = fixture();
    let fixture = fixture.to_str().unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));

    let out = stagewise(here, &["parity", fixture, "--adam-steps", "3"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for prefix in ["grad.fc.weight max_abs_diff=", "step3.fc.bias max_abs_diff="] {
        assert!(stdout.lines().any(|l| l.starts_with(prefix)), "no line `{prefix}` in:\n{stdout}");
    }
    assert!(stdout.contains("parity OK"), "{stdout}");

    let out = stagewise(here, &["parity", fixture, "--adam-steps", "3", "--tol", "1e-12"]);
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("parity FAILED"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
