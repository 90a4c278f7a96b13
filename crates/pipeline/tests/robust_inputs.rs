//! Hostile and mistaken inputs: reference files that would pass by comparing too little, headers
//! that claim enormous models, absurd thread counts, files that never end, damaged checkpoints,
//! and messages that should point at the fix. Each is refused at once with one line naming it.

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};
use safetensors::Dtype;
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_pipeline::parity::run_parity;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_small.safetensors")
}

/// One tensor as it will be written, whatever its shape says: the safetensors crate refuses to
/// write a shape that does not match the data, and these tests need such files.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Writes `tensors` in the safetensors layout (a little-endian header length, the JSON header
/// padded to 8 bytes, the data) without checking them.
fn write_unchecked(path: &Path, tensors: &HashMap<String, Raw>, meta: Option<HashMap<String, String>>) {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for name in names {
        let t = &tensors[name];
        let start = data.len();
        data.extend_from_slice(&t.data);
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [start, data.len()] }),
        );
    }
    if let Some(meta) = meta {
        header.insert("__metadata__".into(), serde_json::json!(meta));
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// The committed fixture's tensors, by name, and its metadata.
fn fixture_tensors() -> (HashMap<String, Raw>, Option<HashMap<String, String>>) {
    let bytes = std::fs::read(fixture()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, Raw { dtype: t.dtype(), shape: t.shape().to_vec(), data: t.data().to_vec() }))
        .collect();
    (tensors, meta.metadata().clone())
}

/// The fixture with `edit` applied to its tensors, written to `dir/name`.
fn fixture_with(dir: &TempDir, name: &str, edit: impl FnOnce(&mut HashMap<String, Raw>)) -> PathBuf {
    let (mut tensors, meta) = fixture_tensors();
    edit(&mut tensors);
    let path = dir.join(name);
    write_unchecked(&path, &tensors, meta);
    path
}

/// Cuts every tensor whose name starts with `prefix` to its first element, shape `[1]`.
fn cut_to_one(tensors: &mut HashMap<String, Raw>, prefix: &str) {
    for (name, t) in tensors.iter_mut() {
        if name.starts_with(prefix) {
            t.shape = vec![1];
            t.data.truncate(t.dtype.bitsize() / 8);
        }
    }
}

fn parity_error(path: &Path, adam_steps: usize) -> String {
    let err = run_parity(path, adam_steps, None).unwrap_err().to_string();
    let file = path.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(file) && !err.contains('\n'), "{err}");
    err
}

/// Runs `stagewise args...` in `dir`, killing it (and failing) if it is still running after
/// `limit`: a refused input must be refused at once, not after minutes (or never).
fn stagewise_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stagewise"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("`stagewise {}` still running after {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Checks `out` failed with exactly one `error: ` line on stderr containing every needle, no
/// panic and no abort. Returns that line.
fn one_line_error(out: &Output, what: &str, needles: &[&str]) -> String {
    let (stdout, stderr) = texts(out);
    let context = format!("{what}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{context}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not named: {context}");
    }
    lines[0].to_owned()
}

/// A reference tensor of the wrong shape would be compared over the common prefix (one element
/// for `[1]`) and pass: every known tensor must have exactly its shape, compared or not.
#[test]
fn parity_refuses_reference_tensors_of_the_wrong_shape() {
    let dir = TempDir::new("robust-shapes");
    let path = fixture_with(&dir, "grad_cut.safetensors", |t| cut_to_one(t, "grad."));
    let err = parity_error(&path, 0);
    assert!(err.contains("`grad.embedding.weight` has shape [1], expected [50, 8]"), "{err}");

    // `step1.*` is not compared without --adam-steps, but a file holding it cut short is broken.
    let path = fixture_with(&dir, "step_cut.safetensors", |t| cut_to_one(t, "step"));
    for steps in [0, 3] {
        let err = parity_error(&path, steps);
        assert!(err.contains("`step1.embedding.weight` has shape [1], expected [50, 8]"), "{err}");
    }

    let path = fixture_with(&dir, "loss2.safetensors", |t| {
        let loss = t.get_mut("loss").unwrap();
        loss.data = loss.data.repeat(2);
        loss.shape = vec![2];
    });
    assert!(parity_error(&path, 0).contains("`loss` has shape [2], expected [1]"));

    let path = fixture_with(&dir, "targets.safetensors", |t| {
        let targets = t.get_mut("targets").unwrap();
        targets.shape = vec![5, 3];
    });
    assert!(parity_error(&path, 0).contains("`targets` has shape [5, 3], expected [3, 5]"));

    let path =
        fixture_with(&dir, "param.safetensors", |t| t.get_mut("fc.weight").unwrap().shape = vec![12, 50]);
    assert!(parity_error(&path, 0).contains("`fc.weight` has shape [12, 50], expected [50, 12]"));

    // The command: an error line, exit code 1, no `parity OK`.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let grad_cut = dir.join("grad_cut.safetensors");
    let out = stagewise(here, &["parity", grad_cut.to_str().unwrap()]);
    one_line_error(&out, "parity grad_cut", &["grad_cut.safetensors", "`grad.embedding.weight`"]);
    assert!(!texts(&out).0.contains("parity OK"));
}

/// A file without gradients would compare the loss alone and pass.
#[test]
fn parity_needs_every_parameters_gradient() {
    let dir = TempDir::new("robust-grads");
    let path = fixture_with(&dir, "no_grad.safetensors", |t| t.retain(|n, _| !n.starts_with("grad.")));
    let err = parity_error(&path, 0);
    assert!(err.contains("`grad.embedding.weight` is missing"), "{err}");
    let path = fixture_with(&dir, "no_bias_grad.safetensors", |t| {
        t.remove("grad.lstm.bias_hh_l0");
    });
    assert!(parity_error(&path, 3).contains("`grad.lstm.bias_hh_l0` is missing"));
}

/// NaN in a reference (or in our numbers) fails, and so does a tolerance that is NaN, negative
/// or infinite, which is refused before any work.
#[test]
fn nan_never_passes_parity() {
    let dir = TempDir::new("robust-nan");
    let path = fixture_with(&dir, "nan_grad.safetensors", |t| {
        let g = t.get_mut("grad.fc.weight").unwrap();
        g.data = f32::NAN.to_le_bytes().repeat(g.data.len() / 4);
    });
    let report = run_parity(&path, 0, None).unwrap();
    let failed: Vec<&str> = report.failures(f64::INFINITY).iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["grad.fc.weight"]);
    let one_nan = fixture_with(&dir, "one_nan.safetensors", |t| {
        let g = t.get_mut("step2.lstm.weight_hh_l0").unwrap();
        g.data[100..104].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let report = run_parity(&one_nan, 3, None).unwrap();
    let failed: Vec<&str> = report.failures(1.0).iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["step2.lstm.weight_hh_l0"]);

    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = stagewise(here, &["parity", path.to_str().unwrap()]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("parity FAILED: 1 tensor exceeds tol 1e-4: grad.fc.weight"), "{stdout}");

    let fixture = fixture();
    for tol in ["nan", "NaN", "-1", "inf", "-0.5"] {
        let out = stagewise(here, &["parity", fixture.to_str().unwrap(), "--tol", tol]);
        one_line_error(&out, &format!("--tol {tol}"), &["--tol", "finite"]);
        assert!(!texts(&out).0.contains("parity OK"), "--tol {tol}");
    }
    let out = stagewise(here, &["parity", fixture.to_str().unwrap(), "--lr", "-1", "--adam-steps", "1"]);
    one_line_error(&out, "--lr -1", &["optimizer.lr", "out of range"]);
    let out = stagewise(here, &["parity", fixture.to_str().unwrap()]);
    assert!(texts(&out).0.contains("parity OK: 8 tensors within tol"), "{:?}", texts(&out));
}

/// Sizes are checked before a model is built: a batch or window of 0 is an error naming
/// `inputs`, and a header declaring an enormous model is refused naming the tensor before
/// anything is allocated.
#[test]
fn parity_validates_sizes_before_building_a_model() {
    let dir = TempDir::new("robust-sizes");
    let path = fixture_with(&dir, "batch0.safetensors", |t| {
        for name in ["inputs", "targets"] {
            let ids = t.get_mut(name).unwrap();
            ids.shape = vec![0, 5];
            ids.data.clear();
        }
    });
    assert!(parity_error(&path, 0).contains("`inputs` is I64 [0, 5], expected I64 [batch, steps]"));
    let path = fixture_with(&dir, "width0.safetensors", |t| {
        let e = t.get_mut("embedding.weight").unwrap();
        e.shape = vec![50, 0];
        e.data.clear();
    });
    assert!(parity_error(&path, 0).contains("`embedding.weight` has shape [50, 0]"));

    // hidden = 10^8 with no data behind it: an empty [0, 10^8] passes safetensors' validation, so
    // it is our size check that refuses it.
    let hidden = 100_000_000;
    let path = fixture_with(&dir, "hidden_empty.safetensors", |t| {
        let hh = t.get_mut("lstm.weight_hh_l0").unwrap();
        hh.shape = vec![0, hidden];
        hh.data.clear();
    });
    let err = parity_error(&path, 0);
    assert!(err.contains("`lstm.weight_hh_l0` would have shape [400000000, 100000000]"), "{err}");
    assert!(err.contains("1 GiB"), "{err}");
    // The full shape with the fixture's few bytes: safetensors' validation, naming the tensor.
    let path = fixture_with(&dir, "hidden_tiny.safetensors", |t| {
        t.get_mut("lstm.weight_hh_l0").unwrap().shape = vec![4 * hidden, hidden];
    });
    let err = parity_error(&path, 0);
    assert!(err.contains("`lstm.weight_hh_l0` declares F32 [400000000, 100000000]"), "{err}");
    assert!(err.contains("holds 2304 bytes"), "{err}");

    // Honest data, but a batch whose logits alone would take more than 1 GiB.
    let path = fixture_with(&dir, "big_batch.safetensors", |t| {
        t.clear();
        let (vocab, rows) = (9500, 16_000);
        let f32s = |shape: Vec<usize>| {
            let n = shape.iter().product::<usize>();
            Raw { dtype: Dtype::F32, shape, data: vec![0; 4 * n] }
        };
        t.insert("embedding.weight".into(), f32s(vec![vocab, 1]));
        t.insert("lstm.weight_hh_l0".into(), f32s(vec![4, 1]));
        for name in ["inputs", "targets"] {
            t.insert(name.into(), Raw { dtype: Dtype::I64, shape: vec![rows, 1], data: vec![0; 8 * rows] });
        }
    });
    let err = parity_error(&path, 0);
    assert!(err.contains("`inputs` of shape [16000, 1]") && err.contains("activations"), "{err}");

    // The command: no panic, no abort, at once.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, needle) in
        [("batch0", "`inputs`"), ("hidden_empty", "`lstm.weight_hh_l0`"), ("big_batch", "`inputs`")]
    {
        let file = dir.join(format!("{name}.safetensors"));
        let out = stagewise_within(here, &["parity", file.to_str().unwrap()], Duration::from_secs(20));
        one_line_error(&out, name, &[needle]);
    }
}

/// A mistyped thread count (a million) is refused before any thread is started, not after
/// minutes of starting them.
#[test]
fn absurd_thread_counts_are_refused_at_once() {
    let dir = TempDir::new("robust-threads");
    let d = dir.path();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let limit = Duration::from_secs(10);
    for args in [
        &["train", "--config", "tiny.toml", "--out", "run", "--threads", "1000000"][..],
        &["eval", "--checkpoint", "none.ckpt", "--threads", "1000000"],
        &["bench-run", "--config", "tiny.toml", "--threads", "1000000"],
        &["bench-gemm", "--size", "8", "--threads", "1000000"],
    ] {
        let out = stagewise_within(d, args, limit);
        one_line_error(&out, &args.join(" "), &["threads", "1000000", "1024"]);
    }
    std::fs::write(dir.join("threads.toml"), "[train]\nthreads = 2000\n").unwrap();
    let out = stagewise_within(d, &["train", "--config", "threads.toml", "--out", "run"], limit);
    one_line_error(&out, "threads = 2000", &["train.threads", "2000", "1024"]);
    for command in ["train", "eval", "bench-run", "bench-gemm"] {
        let out = stagewise(d, &[command, "--help"]);
        let help = texts(&out).0;
        // The short help puts it on the flag's line, the long help (`bench-*`) on the next.
        let lines: Vec<&str> = help.lines().collect();
        let at = lines.iter().position(|l| l.contains("--threads")).unwrap();
        assert!(lines[at..at + 2].concat().contains("at most 1024"), "{command} --help:\n{help}");
    }
}

/// A device is never read as a checkpoint or a reference file: `/dev/zero` would never end.
#[cfg(unix)]
#[test]
fn checkpoints_and_references_must_be_regular_files() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(Checkpoint::load(Path::new("/dev/zero")).map(|_| ())).ok());
    let err = rx.recv_timeout(Duration::from_secs(10)).expect("still reading /dev/zero").unwrap_err();
    assert!(err.to_string().contains("/dev/zero: is not a regular file"), "{err}");

    let dir = TempDir::new("robust-devices");
    let limit = Duration::from_secs(10);
    for args in [
        &["generate", "--checkpoint", "/dev/zero"][..],
        &["eval", "--checkpoint", "/dev/zero"],
        &["parity", "/dev/zero"],
    ] {
        let out = stagewise_within(dir.path(), args, limit);
        one_line_error(&out, &args.join(" "), &["/dev/zero", "not a regular file"]);
    }
    let out = stagewise_within(dir.path(), &["generate", "--checkpoint", "."], limit);
    one_line_error(&out, "a directory", &["not a regular file"]);
}

/// Run from elsewhere, `eval` cannot find the corpus the checkpoint's config names relative to
/// where it was trained: the error says to pass `--data`. `--lr -1` parses, and is refused by the
/// config's own check.
#[test]
fn messages_point_at_the_fix() {
    let dir = TempDir::new("robust-messages");
    let d = dir.path();
    std::fs::write(dir.join("corpus.txt"), corpus(80)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let tiny = ["train", "--config", "tiny.toml", "--out", "run"];

    let out = stagewise(d, &[&tiny[..], &["--lr", "-1"]].concat());
    one_line_error(&out, "--lr -1", &["optimizer.lr", "-1", "out of range"]);

    let help = texts(&stagewise(d, &["train", "--help"])).0;
    let line = help.lines().find(|l| l.contains("--max-windows")).unwrap_or_default().to_owned();
    assert!(line.contains("0 = the whole epoch"), "{help}");

    let out = stagewise(d, &[&tiny[..], &["--epochs", "1", "--max-windows", "2"]].concat());
    assert!(out.status.success(), "{:?}", texts(&out));
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let ckpt = dir.join("run/model.ckpt");
    let out = stagewise(&elsewhere, &["eval", "--checkpoint", ckpt.to_str().unwrap()]);
    one_line_error(&out, "eval elsewhere", &["corpus.txt", "--data"]);
    let corpus = dir.join("corpus.txt");
    let out = stagewise(
        &elsewhere,
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", corpus.to_str().unwrap()],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success() && stdout.starts_with("test loss "), "{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with(" tokens"), "{stdout}");
    // A corpus given with --data that is missing gets no hint: the path is the user's own.
    let out = stagewise(&elsewhere, &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", "typo.txt"]);
    let line = one_line_error(&out, "eval --data typo.txt", &["typo.txt"]);
    assert!(!line.contains("--data"), "{line}");

    // A checkpoint cut inside its header, or with one byte appended: said as such.
    let good = std::fs::read(&ckpt).unwrap();
    std::fs::write(dir.join("cut.ckpt"), &good[..30]).unwrap();
    let out = stagewise(d, &["generate", "--checkpoint", "cut.ckpt"]);
    one_line_error(&out, "cut in header", &["cut.ckpt", "truncated inside its 52-byte header", "30 bytes"]);
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(dir.join("longer.ckpt"), &longer).unwrap();
    let out = stagewise(d, &["generate", "--checkpoint", "longer.ckpt"]);
    let line = one_line_error(&out, "one byte appended", &["longer.ckpt", "1 byte after the body"]);
    assert!(!line.contains("truncated"), "{line}");
}
