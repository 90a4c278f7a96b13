//! Saving never destroys the previous checkpoint: it is written through
//! `stagewise_core::write_atomically` (a temporary sibling with a unique name, fsync, rename,
//! directory fsync), so any failure leaves the old file as it was. (That helper's own failure
//! paths are tested in `stagewise-fs`; corruption on load in `checkpoint.rs`.)

use crate::util::TempDir;
use stagewise_core::Params;
use stagewise_pipeline::checkpoint::{Checkpoint, StateBuffer};

fn sample(step: u64) -> Checkpoint {
    let mut p = Params::<f32>::new();
    p.declare("fc.bias", &[3]).unwrap();
    Checkpoint {
        config_toml: "[train]\n".into(),
        vocab_json: "{}".into(),
        stages: ["table", "lstm", "cross_entropy", "reverse", "adam"].map(String::from).to_vec(),
        layout: p.layout().clone(),
        params: vec![1.0, 2.0, 3.0],
        optimizer_state: vec![
            StateBuffer { name: "exp_avg".into(), values: vec![0.1; 3] },
            StateBuffer { name: "exp_avg_sq".into(), values: vec![0.2; 3] },
        ],
        step,
        epoch: 1,
        seed: 5,
        labels: Vec::new(),
    }
}

#[test]
fn failed_writes_leave_the_existing_checkpoint_intact() {
    let dir = TempDir::new("ckpt-safety");
    let path = dir.join("model.ckpt");
    sample(1).save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    // A target inside a directory that does not exist: an error naming it, the other file intact.
    let elsewhere = dir.join("no/such/dir/model.ckpt");
    let err = sample(2).save(&elsewhere).unwrap_err().to_string();
    assert!(err.contains("no/such/dir/model.ckpt"), "{err}");
    assert!(!elsewhere.exists());
    assert_eq!(std::fs::read(&path).unwrap(), good);

    // A target that cannot be replaced (a directory is in its way): the error names it.
    let blocked = dir.join("blocked.ckpt");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    let err = sample(2).save(&blocked).unwrap_err().to_string();
    assert!(err.contains("blocked.ckpt"), "{err}");
    std::fs::remove_dir_all(&blocked).unwrap();

    // A successful save replaces it and leaves no temporary file behind.
    sample(2).save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), sample(2));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["model.ckpt"]);
}
