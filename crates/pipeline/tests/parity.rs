//! The PyTorch parity check: the library call, its errors, and the `parity` subcommand; the seed
//! model, and every configuration `make_parity_fixture.py --all` writes a case for.

use crate::util::{TempDir, stagewise, texts};
use stagewise_pipeline::Config;
use stagewise_pipeline::parity::{ParityReport, run_parity, run_parity_with_config};
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

/// Every case `benches/reference/make_parity_fixture.py --all` writes (`parity_<case>.safetensors`
/// and `parity_<case>.toml`), each with 3 optimizer steps.
const CASES: [&str; 15] = [
    "adamw",
    "adamw_matrices",
    "clip",
    "combined",
    "frozen",
    "gru",
    "gru_2layers",
    "ignore_index",
    "label_smoothing",
    "lstm_2layers",
    "rnn_tanh",
    "rnn_tanh_2layers",
    "sgd_dampening",
    "sgd_nesterov",
    "tied",
];

/// The tolerance every case meets in f32.
const CASE_TOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A case's fixture and config.
fn case(name: &str) -> (PathBuf, PathBuf) {
    (fixtures().join(format!("parity_{name}.safetensors")), fixtures().join(format!("parity_{name}.toml")))
}

fn case_config(name: &str) -> Config {
    Config::load(&case(name).1).unwrap()
}

fn check_case(name: &str, config: &Config) -> ParityReport {
    run_parity_with_config(&case(name).0, config, 3, None).unwrap()
}

/// The cases on disk are exactly [`CASES`]: a case the script gains is a case the tests run.
#[test]
fn every_committed_case_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            Some(name.strip_prefix("parity_")?.strip_suffix(".toml")?.to_owned())
        })
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, CASES);
    for name in CASES {
        assert!(case(name).0.is_file(), "{name}: no fixture");
    }
}

/// Each configuration — the three kinds, two layers, a tied head, a frozen table, Adam, AdamW
/// (decaying every tensor or only the matrices), SGD with Nesterov momentum and weight decay or
/// with dampening, clipping, label smoothing, ignore_index, and all at once — agrees with
/// PyTorch to 1e-5 in f32: loss, gradient norm, every gradient and the parameters after each of
/// the three steps.
#[test]
fn every_configuration_matches_pytorch_in_f32() {
    let (mut worst, mut failed) = (Vec::new(), Vec::new());
    for name in CASES {
        let config = case_config(name);
        let report = check_case(name, &config);
        assert_eq!(report.dtype, "f32");
        for c in report.failures(CASE_TOL) {
            failed.push(format!("{name}: {} {:e}", c.name, c.max_abs_diff));
        }
        let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[..2], ["loss", "grad_norm"], "{name}");
        let params = names.iter().filter(|n| n.starts_with("step3.")).count();
        let grads = names.iter().filter(|n| n.starts_with("grad.")).count();
        let frozen = usize::from(name == "frozen");
        assert!(params >= 6 && grads == params - frozen, "{name}: {names:?}");
        assert_eq!(names.len(), 2 + grads + 3 * params, "{name}: {names:?}");
        let max = report.comparisons.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
        worst.push(format!("{name} {max:.1e}"));
    }
    println!("max |diff| per case: {}", worst.join(", "));
    assert!(failed.is_empty(), "beyond {CASE_TOL:e}: {failed:#?}");
}

/// The combined case stored in float64 is checked in f64: exact to ~1e-15, where f32 is held to
/// 1e-5 (so the cases' f32 differences are float32's, not the implementation's).
#[test]
fn the_combined_case_in_float64_agrees_to_1e_12() {
    let path = fixtures().join("parity_combined_f64.safetensors");
    let report = run_parity_with_config(&path, &case_config("combined"), 3, None).unwrap();
    assert_eq!((report.dtype, report.comparisons.len()), ("f64", 42));
    let worst = report.comparisons.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
    assert!(report.failures(1e-10).is_empty() && worst < 1e-12, "worst {worst:e}: {report:?}");
}

/// The numeric backward box (central differences) is checked the same way: in f64 its gradient is
/// close enough for the combined case's steps to agree to 1e-6.
#[test]
fn the_numeric_backward_agrees_in_float64() {
    let path = fixtures().join("parity_combined_f64.safetensors");
    let config =
        case_config("combined").with_overrides(&["backward.kind=numeric".into(), "backward.clip=0.1".into()]);
    let config = config.unwrap();
    let report = run_parity_with_config(&path, &config, 3, None).unwrap();
    assert!(report.model.ends_with("numeric / adamw"), "{}", report.model);
    assert!(report.failures(1e-6).is_empty(), "{report:?}");
}

/// The config describes the model; the file's shapes give the sizes, whatever the config says.
#[test]
fn the_files_sizes_override_the_configs() {
    let config = case_config("gru_2layers");
    let resized = config
        .with_overrides(&["forward.hidden=99".into(), "forward.layers=1".into(), "embedding.dim=3".into()])
        .unwrap();
    let report = check_case("gru_2layers", &resized);
    assert!(report.failures(CASE_TOL).is_empty(), "{report:?}");
    assert!(report.model.starts_with("gru, 2 layers of 12, vocabulary 50, width 8"), "{}", report.model);
}

/// A check that cannot fail checks nothing: a config that differs from the fixture's in one
/// setting fails where that setting matters.
#[test]
fn a_config_unlike_the_fixtures_fails() {
    let failed = |name: &str, set: &str| {
        let config = case_config(name).with_overrides(&[set.to_owned()]).unwrap();
        let report = check_case(name, &config);
        report.failures(CASE_TOL).iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    // Smoothing changes the loss, every gradient and every step.
    let f = failed("label_smoothing", "loss.label_smoothing=0.0");
    assert!(f.contains(&"loss".into()) && f.contains(&"grad.fc.bias".into()), "{f:?}");
    assert!(f.contains(&"step3.fc.weight".into()), "{f:?}");
    // Forgetting the ignored id scores its rows.
    let text = case_config("ignore_index").to_toml();
    assert!(text.contains("ignore_index = 0\n"), "{text}");
    let text = text.replace("ignore_index = 0\n", "");
    let report = check_case("ignore_index", &Config::from_toml(&text, "no ignore_index").unwrap());
    assert!(report.failures(CASE_TOL).iter().any(|c| c.name == "loss"), "{report:?}");
    // Without clipping the gradients (compared before clipping) and their norm still agree, but
    // every step moves too far.
    let f = failed("clip", "backward.clip=0.0");
    assert!(!f.is_empty() && f.iter().all(|n| n.starts_with("step")), "{f:?}");
    // Momentum without Nesterov, and AdamW decaying every tensor, take other steps.
    let f = failed("sgd_nesterov", "optimizer.nesterov=false");
    assert!(!f.is_empty() && f.iter().all(|n| n.starts_with("step")), "{f:?}");
    let f = failed("adamw_matrices", "optimizer.decay_all=true");
    assert!(f.contains(&"step1.fc.bias".into()) && !f.contains(&"step1.fc.weight".into()), "{f:?}");
}

/// A config that does not describe the file's model is a one-line error naming the tensor and
/// the key, never a comparison of the wrong tensors.
#[test]
fn a_config_for_another_model_is_an_error_naming_the_tensor() {
    let err = |file: &Path, config: &Config, steps: usize| {
        let err = run_parity_with_config(file, config, steps, None).unwrap_err().to_string();
        assert!(!err.contains('\n') && err.contains(file.file_name().unwrap().to_str().unwrap()), "{err}");
        err
    };
    let seed = Config::default();
    let gru = seed.with_overrides(&["forward.kind=gru".into()]).unwrap();
    let e = err(&fixture(), &gru, 0);
    assert!(e.contains("`gru.weight_hh_l0` is missing") && e.contains("\"lstm\""), "{e}");
    // A file with both kinds' tensors: the foreign one is named.
    let e = err(&case("gru").0, &seed, 0);
    assert!(e.contains("`lstm.weight_hh_l0` is missing") && e.contains("\"gru\""), "{e}");
    // Tied against an untied file, and the other way round.
    let tied = case_config("tied");
    let e = err(&fixture(), &tied, 0);
    assert!(e.contains("`fc.weight`") && e.contains("embedding.tied"), "{e}");
    let e = err(&case("tied").0, &seed, 0);
    assert!(e.contains("tensor `fc.weight` is missing") && e.contains("embedding.tied = true"), "{e}");
    // A frozen table has no gradient in the file: training it needs one.
    let e = err(&case("frozen").0, &seed, 0);
    assert!(e.contains("`grad.embedding.weight` is missing"), "{e}");
    // More steps than the file has: the missing tensor is named.
    let e = err(&case("sgd_nesterov").0, &case_config("sgd_nesterov"), 4);
    assert!(e.contains("--steps 4 needs tensor `step4.embedding.weight`, which is missing"), "{e}");
    // A layer missing in the middle.
    let dir = TempDir::new("parity-layers");
    let bytes = std::fs::read(case("lstm_2layers").0).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = st.tensors().into_iter().filter(|(n, _)| !n.ends_with("lstm.weight_hh_l1")).collect();
    let path = dir.join("no_hh_l1.safetensors");
    safetensors::serialize_to_file(kept, None, &path).unwrap();
    let e = err(&path, &seed, 0);
    assert!(e.contains("`lstm.weight_hh_l1` is missing") && e.contains("2 layers"), "{e}");
}

/// Dropout's masks cannot match PyTorch's random numbers: refused, naming the key.
#[test]
fn dropout_is_refused() {
    let config = case_config("gru_2layers").with_overrides(&["forward.dropout=0.2".into()]).unwrap();
    let err = run_parity_with_config(&case("gru_2layers").0, &config, 3, None).unwrap_err().to_string();
    assert!(err.contains("forward.dropout") && err.contains("0.2") && !err.contains('\n'), "{err}");
}

/// The command: `--config`, `--steps` (and its alias `--adam-steps`) and `--tol`, a model line,
/// every comparison, and one-line errors for a config that does not fit.
#[test]
fn command_checks_a_case_with_its_config() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (file, config) = case("combined");
    let (file, config) = (file.to_str().unwrap(), config.to_str().unwrap());
    for steps in ["--steps", "--adam-steps"] {
        let out = stagewise(here, &["parity", file, "--config", config, steps, "3", "--tol", "1e-5"]);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            stdout.contains("model: gru, 2 layers of 12, vocabulary 50, width 12, head tied"),
            "{stdout}"
        );
        assert!(stdout.contains("table / gru / cross_entropy / reverse / adamw"), "{stdout}");
        for prefix in ["grad_norm max_abs_diff=", "grad.gru.weight_hh_l1 max_abs_diff=", "step3.fc.bias"] {
            assert!(stdout.lines().any(|l| l.starts_with(prefix)), "no line `{prefix}` in:\n{stdout}");
        }
        assert!(stdout.contains("parity OK: 42 tensors within tol 1e-5"), "{stdout}");
    }
    // The learning rate overrides the config's: the steps then differ.
    let out = stagewise(here, &["parity", file, "--config", config, "--steps", "3", "--lr", "0.02"]);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failed = stdout.lines().find_map(|l| l.strip_prefix("parity FAILED: ")).unwrap_or_default();
    let names = failed.split_once(": ").map_or("", |(_, names)| names);
    assert!(!names.is_empty() && names.split(", ").all(|n| n.starts_with("step")), "{stdout}");

    let dir = TempDir::new("parity-cli-config");
    for (name, text, needles) in [
        ("dropout.toml", "[forward]\nkind = \"gru\"\ndropout = 0.1\n", &["forward.dropout"][..]),
        ("kind.toml", "[forward]\nkind = \"rnn_tanh\"\n", &["`rnn.weight_hh_l0` is missing", "\"gru\""]),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
        let out = stagewise(here, &["parity", file, "--config", dir.join(name).to_str().unwrap()]);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        for needle in needles {
            assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{name}: {stderr}");
        }
        assert!(!stdout.contains("parity OK"), "{name}: {stdout}");
    }
}
