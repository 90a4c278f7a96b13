//! Saving never destroys the previous checkpoint: `write_atomically` writes a temporary sibling
//! and renames it, so any failure before the rename leaves the old file as it was. (Corruption on
//! load is covered by the unit tests in `checkpoint.rs`.)

use crate::util::TempDir;
use stagewise_core::Params;
use stagewise_pipeline::checkpoint::{Checkpoint, write_atomically};

fn sample(step: u64) -> Checkpoint {
    let mut p = Params::<f32>::new();
    p.declare("fc.bias", &[3]).unwrap();
    Checkpoint {
        config_toml: "[train]\n".into(),
        vocab_json: "{}".into(),
        layout: p.layout().clone(),
        params: vec![1.0, 2.0, 3.0],
        moment1: vec![0.1; 3],
        moment2: vec![0.2; 3],
        step,
        epoch: 1,
        seed: 5,
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
    let err = write_atomically(&elsewhere, b"new bytes").unwrap_err().to_string();
    assert!(err.contains("no/such/dir/model.ckpt"), "{err}");
    assert!(!elsewhere.exists());
    assert_eq!(std::fs::read(&path).unwrap(), good);

    // Over the existing path, failing before the rename (the temporary sibling cannot be created
    // because a directory is in its way; this fails even as root): the old checkpoint survives.
    let tmp = dir.join("model.ckpt.tmp");
    std::fs::create_dir(&tmp).unwrap();
    let err = sample(2).save(&path).unwrap_err().to_string();
    assert!(err.contains("model.ckpt"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert_eq!(Checkpoint::load(&path).unwrap(), sample(1));
    std::fs::remove_dir(&tmp).unwrap();

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
