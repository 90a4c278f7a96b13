//! Checkpoints: a versioned header with a magic number and a SHA-256 checksum, then a bincode body
//! with the config text, the names of the boxes, the parameter layout, parameters, the
//! optimizer's named state buffers, step and vocabulary.
//!
//! Written atomically ([`stagewise_core::write_atomically`]), so a crash mid-write never
//! destroys the previous checkpoint, and verified on load, so a truncated or corrupted file is an
//! error naming the file rather than silently wrong weights. Any model can be saved and restored
//! ([`Checkpoint::of_model`], [`Checkpoint::restore`]): the state is matched by name, whatever
//! boxes the model is made of.

use crate::model::Model;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stagewise_backward::Backward;
use stagewise_core::{Error, ParamLayout, Result};
use stagewise_embedding::Embedding;
use stagewise_forward::Forward;
use stagewise_loss::Loss;
use stagewise_optimizer::Optimizer;
use std::io::Read;
use std::path::Path;

/// First bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"STGWCKPT";
/// Format version; bumped on any incompatible change of [`Checkpoint`]. Version 1 files (Adam's
/// moments in fixed fields) and version 2 files (no class labels) are still read.
pub const VERSION: u32 = 3;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// One buffer of the optimizer's state, in the parameters' layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateBuffer {
    /// The name the optimizer declared it with (`exp_avg`, `exp_avg_sq`, `momentum_buffer`, ...).
    pub name: String,
    /// Values, flat in layout order.
    pub values: Vec<f32>,
}

/// Everything needed to resume training or to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run's config as TOML.
    pub config_toml: String,
    /// The vocabulary as its JSON file text.
    pub vocab_json: String,
    /// The names of the boxes that made it, in cycle order: embed, forward, loss, backward,
    /// update (e.g. `table`, `lstm`, `cross_entropy`, `reverse`, `adam`).
    pub stages: Vec<String>,
    /// Names, shapes and offsets of the parameters (PyTorch names).
    pub layout: ParamLayout,
    /// Parameters, flat in layout order.
    pub params: Vec<f32>,
    /// The optimizer's state, buffer by buffer, as it declared them (none for plain SGD).
    pub optimizer_state: Vec<StateBuffer>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// The run seed.
    pub seed: u64,
    /// A classifier's class labels, class id `i` being `labels[i]`; empty for a language model.
    pub labels: Vec<String>,
}

/// A checkpoint's body borrowed from where it lives (a model's arenas), serialised exactly like
/// [`Checkpoint`] — the same fields in the same order, and slices encode like vectors — so that
/// saving a model copies none of its state (its parameters and optimizer buffers are most of a
/// training run's memory after the activations).
#[derive(Serialize)]
struct CheckpointRef<'a> {
    config_toml: &'a str,
    vocab_json: &'a str,
    stages: &'a [String],
    layout: &'a ParamLayout,
    params: &'a [f32],
    optimizer_state: Vec<StateBufferRef<'a>>,
    step: u64,
    epoch: u64,
    seed: u64,
    labels: &'a [String],
}

/// A [`StateBuffer`], borrowed.
#[derive(Serialize)]
struct StateBufferRef<'a> {
    name: &'a str,
    values: &'a [f32],
}

/// Counts and hashes bytes without keeping them: the first of the two passes of
/// [`CheckpointRef::save`].
struct HashingSink {
    hasher: Sha256,
    len: u64,
}

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CheckpointRef<'_> {
    /// Streams the file to `path` atomically, holding nothing but the encoder's state: a first
    /// encoding pass only counts and hashes the body (the header needs its length and
    /// checksum), the second writes header and body to disk.
    fn save(&self, path: &Path) -> Result<()> {
        let config = bincode::config::standard();
        let encode_error =
            |e: bincode::error::EncodeError| std::io::Error::other(format!("cannot encode: {e}"));
        let mut sink = HashingSink { hasher: Sha256::new(), len: 0 };
        bincode::serde::encode_into_std_write(self, &mut sink, config)
            .map_err(|e| Error::io(path, encode_error(e)))?;
        let digest = sink.hasher.finalize();
        stagewise_core::write_atomically_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&VERSION.to_le_bytes())?;
            w.write_all(&sink.len.to_le_bytes())?;
            w.write_all(&digest)?;
            bincode::serde::encode_into_std_write(self, &mut &mut *w, config).map_err(encode_error)?;
            Ok(())
        })
        .map_err(|e| Error::io(path, e))
    }

    /// The whole file in memory: header and body (for [`Checkpoint::to_bytes`]).
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| corrupt(Path::new("<memory>"), format!("cannot encode checkpoint: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&body));
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The body of a version 1 file: Adam's two moments in fixed fields, no box names.
#[derive(Deserialize)]
struct CheckpointV1 {
    config_toml: String,
    vocab_json: String,
    layout: ParamLayout,
    params: Vec<f32>,
    moment1: Vec<f32>,
    moment2: Vec<f32>,
    step: u64,
    epoch: u64,
    seed: u64,
}

/// The body of a version 2 file: no class labels (only language models were saved).
#[derive(Deserialize)]
struct CheckpointV2 {
    config_toml: String,
    vocab_json: String,
    stages: Vec<String>,
    layout: ParamLayout,
    params: Vec<f32>,
    optimizer_state: Vec<StateBuffer>,
    step: u64,
    epoch: u64,
    seed: u64,
}

impl From<CheckpointV2> for Checkpoint {
    fn from(v2: CheckpointV2) -> Self {
        Checkpoint {
            config_toml: v2.config_toml,
            vocab_json: v2.vocab_json,
            stages: v2.stages,
            layout: v2.layout,
            params: v2.params,
            optimizer_state: v2.optimizer_state,
            step: v2.step,
            epoch: v2.epoch,
            seed: v2.seed,
            labels: Vec::new(),
        }
    }
}

impl From<CheckpointV1> for Checkpoint {
    /// Version 1 could only hold the built-in boxes, with Adam's moments.
    fn from(v1: CheckpointV1) -> Self {
        Checkpoint {
            config_toml: v1.config_toml,
            vocab_json: v1.vocab_json,
            stages: ["table", "lstm", "cross_entropy", "reverse", "adam"].map(String::from).to_vec(),
            layout: v1.layout,
            params: v1.params,
            optimizer_state: vec![
                StateBuffer { name: "exp_avg".into(), values: v1.moment1 },
                StateBuffer { name: "exp_avg_sq".into(), values: v1.moment2 },
            ],
            step: v1.step,
            epoch: v1.epoch,
            seed: v1.seed,
            labels: Vec::new(),
        }
    }
}

fn corrupt(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// `n` bytes, in words ("1 byte", "52 bytes").
fn bytes(n: u64) -> String {
    if n == 1 { "1 byte".to_owned() } else { format!("{n} bytes") }
}

/// The version and declared body length from the start of a file, checking the magic number and
/// the version. `start` may be the whole file or only its first bytes: a file too short to hold
/// a header is reported as truncated inside it, unless what it has already differs from the magic.
fn parse_header(start: &[u8], path: &Path) -> Result<(u32, u64)> {
    let Some(header) = start.get(..HEADER_LEN) else {
        let n = start.len().min(MAGIC.len());
        if start[..n] != MAGIC[..n] {
            return Err(corrupt(path, "not a Stagewise checkpoint (bad magic number)"));
        }
        return Err(corrupt(
            path,
            format!(
                "truncated inside its {HEADER_LEN}-byte header: the file is only {}",
                bytes(start.len() as u64)
            ),
        ));
    };
    if &header[..8] != MAGIC {
        return Err(corrupt(path, "not a Stagewise checkpoint (bad magic number)"));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(1..=VERSION).contains(&version) {
        return Err(corrupt(
            path,
            format!("checkpoint format version {version}, this build reads 1 to {VERSION}"),
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[12..20]);
    Ok((version, u64::from_le_bytes(len)))
}

/// Checks that the body after the header is as long as the header says: shorter is a truncated
/// file, longer is bytes appended after it or a corrupted length field.
fn check_body_len(declared: u64, present: u64, path: &Path) -> Result<()> {
    if present < declared {
        return Err(corrupt(
            path,
            format!(
                "truncated: the header says the body is {}, the file holds {} after the header",
                bytes(declared),
                bytes(present)
            ),
        ));
    }
    if present > declared {
        return Err(corrupt(
            path,
            format!(
                "{} after the body: the header says the body is {}, the file holds {} after the header \
                 (bytes appended, or a corrupted length field)",
                bytes(present - declared),
                bytes(declared),
                bytes(present)
            ),
        ));
    }
    Ok(())
}

impl Checkpoint {
    /// The state of `model` (parameters, the optimizer's buffers and step, the boxes' names),
    /// with the config and vocabulary that go with it.
    pub fn of_model<E, F, L, B, O>(
        model: &Model<f32, E, F, L, B, O>,
        config_toml: String,
        vocab_json: String,
        epoch: u64,
        seed: u64,
    ) -> Self
    where
        E: Embedding<f32>,
        F: Forward<f32>,
        L: Loss<f32>,
        B: Backward<f32>,
        O: Optimizer<f32>,
    {
        let optimizer_state = model
            .opt_state
            .buffers()
            .map(|(name, buf)| StateBuffer { name: name.to_owned(), values: buf.as_slice().to_vec() })
            .collect();
        Checkpoint {
            config_toml,
            vocab_json,
            stages: model.stage_names().to_vec(),
            layout: model.tape.params.layout().clone(),
            params: model.tape.params.as_slice().to_vec(),
            optimizer_state,
            step: model.opt_state.step,
            epoch,
            seed,
            labels: Vec::new(),
        }
    }

    /// Writes the state of `model` (as [`Checkpoint::of_model`] describes it) to `path`,
    /// atomically and streamed from the model's own arenas: nothing of its state is copied.
    pub fn save_model<E, F, L, B, O>(
        model: &Model<f32, E, F, L, B, O>,
        config_toml: &str,
        vocab_json: &str,
        epoch: u64,
        seed: u64,
        path: &Path,
    ) -> Result<()>
    where
        E: Embedding<f32>,
        F: Forward<f32>,
        L: Loss<f32>,
        B: Backward<f32>,
        O: Optimizer<f32>,
    {
        Self::save_classifier(model, config_toml, vocab_json, &[], epoch, seed, path)
    }

    /// [`Checkpoint::save_model`] for a classifier: `labels` are its classes in id order.
    #[allow(clippy::too_many_arguments)] // the fields of the file, each one of its own kind
    pub fn save_classifier<E, F, L, B, O>(
        model: &Model<f32, E, F, L, B, O>,
        config_toml: &str,
        vocab_json: &str,
        labels: &[String],
        epoch: u64,
        seed: u64,
        path: &Path,
    ) -> Result<()>
    where
        E: Embedding<f32>,
        F: Forward<f32>,
        L: Loss<f32>,
        B: Backward<f32>,
        O: Optimizer<f32>,
    {
        let stages = model.stage_names();
        CheckpointRef {
            config_toml,
            vocab_json,
            stages: &stages,
            layout: model.tape.params.layout(),
            params: model.tape.params.as_slice(),
            optimizer_state: model
                .opt_state
                .buffers()
                .map(|(name, buf)| StateBufferRef { name, values: buf.as_slice() })
                .collect(),
            step: model.opt_state.step,
            epoch,
            seed,
            labels,
        }
        .save(path)
    }

    /// This checkpoint, borrowed in the form that is written.
    fn as_ref(&self) -> CheckpointRef<'_> {
        CheckpointRef {
            config_toml: &self.config_toml,
            vocab_json: &self.vocab_json,
            stages: &self.stages,
            layout: &self.layout,
            params: &self.params,
            optimizer_state: self
                .optimizer_state
                .iter()
                .map(|b| StateBufferRef { name: &b.name, values: &b.values })
                .collect(),
            step: self.step,
            epoch: self.epoch,
            seed: self.seed,
            labels: &self.labels,
        }
    }

    /// Loads this checkpoint's parameters into `model` and, with `with_optimizer`, its
    /// optimizer's state and step (to continue training). `path` names the file in errors.
    ///
    /// Fails, leaving `model` unchanged, if the parameter layouts differ (another model), or with
    /// `with_optimizer` if the buffers the model's optimizer declared are not exactly those
    /// saved (another optimizer).
    pub fn restore<E, F, L, B, O>(
        &self,
        model: &mut Model<f32, E, F, L, B, O>,
        with_optimizer: bool,
        path: &Path,
    ) -> Result<()>
    where
        E: Embedding<f32>,
        F: Forward<f32>,
        L: Loss<f32>,
        B: Backward<f32>,
        O: Optimizer<f32>,
    {
        if model.tape.params.layout() != &self.layout {
            return Err(corrupt(path, self.layout_mismatch(model.tape.params.layout())));
        }
        if with_optimizer {
            let saved: Vec<&str> = self.optimizer_state.iter().map(|b| b.name.as_str()).collect();
            let declared: Vec<&str> = model.opt_state.buffers().map(|(name, _)| name).collect();
            if saved != declared {
                return Err(corrupt(
                    path,
                    format!(
                        "optimizer state {saved:?} (saved by `{}`) does not fit optimizer `{}`, which keeps {declared:?}",
                        self.stages.get(4).map_or("?", String::as_str),
                        model.optimizer.name()
                    ),
                ));
            }
            for buf in &self.optimizer_state {
                if let Some(id) = model.opt_state.find(&buf.name) {
                    model.opt_state.get_mut(id).as_mut_slice().copy_from_slice(&buf.values);
                }
            }
            model.opt_state.step = self.step;
        }
        model.tape.params.as_mut_slice().copy_from_slice(&self.params);
        Ok(())
    }

    /// What differs between the saved layout and `ours`, for an error message: the first
    /// differing tensor, or the counts.
    fn layout_mismatch(&self, ours: &ParamLayout) -> String {
        let (saved, mine) = (self.layout.entries(), ours.entries());
        let made_by = self.stages.get(..2).map(|s| s.join(" + ")).unwrap_or_default();
        for (a, b) in saved.iter().zip(mine) {
            if a.name != b.name || a.shape != b.shape {
                return format!(
                    "made by `{made_by}` with parameter {} {:?} where this model has {} {:?}",
                    a.name, a.shape, b.name, b.shape
                );
            }
        }
        format!("made by `{made_by}` with {} parameter tensors, this model has {}", saved.len(), mine.len())
    }

    /// Serialises to bytes: header (magic, version, body length, SHA-256 of the body) + body.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.as_ref().to_bytes()
    }

    /// Parses and verifies bytes read from `path` (named in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let (version, len) = parse_header(bytes, path)?;
        let body = &bytes[HEADER_LEN..];
        check_body_len(len, body.len() as u64, path)?;
        if Sha256::digest(body).as_slice() != &bytes[20..52] {
            return Err(corrupt(path, "checksum mismatch: the file is corrupted"));
        }
        let decode_error = |e: bincode::error::DecodeError| corrupt(path, format!("cannot decode: {e}"));
        let ck: Checkpoint = if version == 1 {
            let (v1, _): (CheckpointV1, usize) =
                bincode::serde::decode_from_slice(body, bincode::config::standard()).map_err(decode_error)?;
            v1.into()
        } else if version == 2 {
            let (v2, _): (CheckpointV2, usize) =
                bincode::serde::decode_from_slice(body, bincode::config::standard()).map_err(decode_error)?;
            v2.into()
        } else {
            bincode::serde::decode_from_slice(body, bincode::config::standard()).map_err(decode_error)?.0
        };
        let n = ck.layout.total();
        if ck.params.len() != n {
            return Err(corrupt(
                path,
                format!("layout has {n} parameters but {} are stored", ck.params.len()),
            ));
        }
        if let Some(b) = ck.optimizer_state.iter().find(|b| b.values.len() != n) {
            return Err(corrupt(
                path,
                format!("optimizer state `{}` has {} values, expected {n}", b.name, b.values.len()),
            ));
        }
        Ok(ck)
    }

    /// Writes atomically, streamed (see the module docs). An existing checkpoint survives any
    /// failure.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.as_ref().save(path)
    }

    /// Reads and verifies a checkpoint. Only a regular file is read (a device such as
    /// `/dev/zero` would never end), and only as much of it as its header declares: the header
    /// first, then a body of exactly the declared length, which must be what the file holds.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |e| Error::io(path, e);
        // `metadata` before `open`: opening a FIFO for reading would wait for a writer.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(corrupt(path, "is not a regular file: expected a checkpoint written by `train`"));
        }
        let mut file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut bytes = Vec::with_capacity(HEADER_LEN);
        (&mut file).take(HEADER_LEN as u64).read_to_end(&mut bytes).map_err(io)?;
        let (_, len) = parse_header(&bytes, path)?;
        check_body_len(len, size.saturating_sub(HEADER_LEN as u64), path)?;
        let body_len = usize::try_from(len)
            .map_err(|_| corrupt(path, format!("a body of {len} bytes does not fit in memory")))?;
        bytes
            .try_reserve_exact(body_len)
            .map_err(|e| corrupt(path, format!("cannot hold a body of {len} bytes in memory: {e}")))?;
        // If the file changed size meanwhile, `from_bytes` finds the body's length wrong.
        file.take(len).read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(&bytes, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::Params;

    fn sample() -> Checkpoint {
        let mut p = Params::<f32>::new();
        p.declare("fc.bias", &[3]).unwrap();
        Checkpoint {
            config_toml: "[train]\n".into(),
            vocab_json: "{}".into(),
            stages: ["table", "lstm", "cross_entropy", "reverse", "sgd"].map(String::from).to_vec(),
            layout: p.layout().clone(),
            params: vec![1.0, 2.0, 3.0],
            optimizer_state: vec![StateBuffer { name: "momentum_buffer".into(), values: vec![0.1; 3] }],
            step: 7,
            epoch: 1,
            seed: 5,
            labels: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn round_trips_and_detects_every_kind_of_damage() {
        let dir = std::env::temp_dir().join(format!("stagewise-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.ckpt");
        sample().save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), sample());

        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = Checkpoint::from_bytes(&flipped, &path).unwrap_err().to_string();
        assert!(err.contains("checksum") && err.contains("model.ckpt"), "{err}");
        let err = Checkpoint::from_bytes(&good[..good.len() - 4], &path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let err =
            Checkpoint::from_bytes(b"hello world, not a checkpoint at all......................", &path)
                .unwrap_err()
                .to_string();
        assert!(err.contains("magic"), "{err}");
        let mut future = good.clone();
        future[8] = 99;
        assert!(Checkpoint::from_bytes(&future, &path).unwrap_err().to_string().contains("version 99"));

        // A failed save (directory missing) leaves nothing behind and the old file intact.
        let err = sample().save(&dir.join("no/such/dir/x.ckpt")).unwrap_err().to_string();
        assert!(err.contains("x.ckpt"), "{err}");
        assert_eq!(Checkpoint::load(&path).unwrap(), sample());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Damage to the header or the length says which: cut inside the header, a body shorter than
    /// declared (truncated), or longer (bytes appended, or a corrupted length field).
    #[test]
    fn header_and_length_damage_is_told_apart() {
        let path = Path::new("model.ckpt");
        let good = sample().to_bytes().unwrap();
        let body = (good.len() - HEADER_LEN) as u64;
        let err = |bytes: &[u8]| Checkpoint::from_bytes(bytes, path).unwrap_err().to_string();
        for keep in [0, 1, 8, 30, 51] {
            let e = err(&good[..keep]);
            assert!(
                e.contains("truncated inside its 52-byte header") && e.contains(&format!(" {keep} byte")),
                "{e}"
            );
        }
        assert!(err(b"STGXCKPT").contains("bad magic number"));
        let e = err(&good[..good.len() - 1]);
        assert!(e.contains(&format!("body is {body} bytes, the file holds {} bytes", body - 1)), "{e}");
        let mut longer = good.clone();
        longer.push(7);
        let e = err(&longer);
        assert!(
            e.contains("1 byte after the body") && e.contains(&format!("says the body is {body} bytes")),
            "{e}"
        );
        assert!(!e.contains("truncated"), "{e}");
        let mut length = good.clone();
        length[12..20].copy_from_slice(&(body - 10).to_le_bytes());
        let e = err(&length);
        assert!(e.contains("10 bytes after the body") && e.contains("corrupted length field"), "{e}");
        length[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&length).contains(&format!("says the body is {} bytes", u64::MAX)));

        // `load` gives the same answers, reading only the header when the length is wrong.
        let dir = std::env::temp_dir().join(format!("stagewise-ckpt-len-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.ckpt");
        std::fs::write(&file, &length).unwrap();
        let e = Checkpoint::load(&file).unwrap_err().to_string();
        assert!(e.contains("truncated: the header says the body is") && e.contains("model.ckpt"), "{e}");
        std::fs::write(&file, &longer).unwrap();
        assert!(Checkpoint::load(&file).unwrap_err().to_string().contains("1 byte after the body"));
        std::fs::write(&file, &good[..30]).unwrap();
        assert!(Checkpoint::load(&file).unwrap_err().to_string().contains("truncated inside"));
        std::fs::write(&file, &good).unwrap();
        assert_eq!(Checkpoint::load(&file).unwrap(), sample());
        let e = Checkpoint::load(&dir).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The borrowed form writes exactly the owned form's bytes, streamed or in memory.
    #[test]
    fn streamed_and_in_memory_files_are_the_same_bytes() {
        let ck = sample();
        let owned = {
            let body = bincode::serde::encode_to_vec(&ck, bincode::config::standard()).unwrap();
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&Sha256::digest(&body));
            out.extend_from_slice(&body);
            out
        };
        assert_eq!(ck.to_bytes().unwrap(), owned);
        let dir = std::env::temp_dir().join(format!("stagewise-ckpt-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.ckpt");
        ck.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), owned);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A version 1 file (Adam's moments in fixed fields) still loads, its moments under Adam's
    /// names and the built-in boxes as its makers.
    #[test]
    fn version_1_files_still_load() {
        #[derive(Serialize)]
        struct V1 {
            config_toml: String,
            vocab_json: String,
            layout: ParamLayout,
            params: Vec<f32>,
            moment1: Vec<f32>,
            moment2: Vec<f32>,
            step: u64,
            epoch: u64,
            seed: u64,
        }
        let new = sample();
        let old = V1 {
            config_toml: new.config_toml.clone(),
            vocab_json: new.vocab_json.clone(),
            layout: new.layout.clone(),
            params: new.params.clone(),
            moment1: vec![0.5; 3],
            moment2: vec![0.25; 3],
            step: 7,
            epoch: 1,
            seed: 5,
        };
        let body = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(&body));
        bytes.extend_from_slice(&body);
        let ck = Checkpoint::from_bytes(&bytes, Path::new("old.ckpt")).unwrap();
        assert_eq!(ck.stages, ["table", "lstm", "cross_entropy", "reverse", "adam"]);
        assert_eq!(ck.optimizer_state[0], StateBuffer { name: "exp_avg".into(), values: vec![0.5; 3] });
        assert_eq!(ck.optimizer_state[1], StateBuffer { name: "exp_avg_sq".into(), values: vec![0.25; 3] });
        assert_eq!((ck.params, ck.step, ck.epoch, ck.seed), (new.params, 7, 1, 5));
        assert!(ck.labels.is_empty());
    }

    /// A version 2 file (no labels) still loads, as a checkpoint without classes.
    #[test]
    fn version_2_files_still_load() {
        #[derive(Serialize)]
        struct V2<'a> {
            config_toml: &'a str,
            vocab_json: &'a str,
            stages: &'a [String],
            layout: &'a ParamLayout,
            params: &'a [f32],
            optimizer_state: &'a [StateBuffer],
            step: u64,
            epoch: u64,
            seed: u64,
        }
        let new = sample();
        let old = V2 {
            config_toml: &new.config_toml,
            vocab_json: &new.vocab_json,
            stages: &new.stages,
            layout: &new.layout,
            params: &new.params,
            optimizer_state: &new.optimizer_state,
            step: new.step,
            epoch: new.epoch,
            seed: new.seed,
        };
        let body = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(&body));
        bytes.extend_from_slice(&body);
        let ck = Checkpoint::from_bytes(&bytes, Path::new("v2.ckpt")).unwrap();
        assert_eq!(ck, Checkpoint { labels: Vec::new(), ..new });
    }
}
