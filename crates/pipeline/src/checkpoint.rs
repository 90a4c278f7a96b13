//! Checkpoints: a versioned header with a magic number and a SHA-256 checksum, then a bincode body
//! with the config text, the parameter layout, parameters, Adam moments, step and vocabulary.
//!
//! Written atomically (temporary file, `fsync`, rename), so a crash mid-write never destroys the
//! previous checkpoint, and verified on load, so a truncated or corrupted file is an error naming
//! the file rather than silently wrong weights.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stagewise_core::{Error, ParamLayout, Result};
use std::io::Write;
use std::path::Path;

/// First bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"STGWCKPT";
/// Format version; bumped on any incompatible change of [`Checkpoint`].
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Everything needed to resume training or to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run's config as TOML.
    pub config_toml: String,
    /// The vocabulary as its JSON file text.
    pub vocab_json: String,
    /// Names, shapes and offsets of the parameters (PyTorch names).
    pub layout: ParamLayout,
    /// Parameters, flat in layout order.
    pub params: Vec<f32>,
    /// Adam's first moment, same layout.
    pub moment1: Vec<f32>,
    /// Adam's second moment, same layout.
    pub moment2: Vec<f32>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// The run seed.
    pub seed: u64,
}

fn corrupt(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

impl Checkpoint {
    /// Serialises to bytes: header (magic, version, body length, SHA-256 of the body) + body.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
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

    /// Parses and verifies bytes read from `path` (named in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not a Stagewise checkpoint (bad magic number)"));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("checkpoint format version {version}, this build reads {VERSION}"),
            ));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[12..20]);
        let len = u64::from_le_bytes(len) as usize;
        let body = &bytes[HEADER_LEN..];
        if body.len() != len {
            return Err(corrupt(path, format!("truncated: body is {} bytes, header says {len}", body.len())));
        }
        if Sha256::digest(body).as_slice() != &bytes[20..52] {
            return Err(corrupt(path, "checksum mismatch: the file is corrupted"));
        }
        let (ck, _): (Checkpoint, usize) =
            bincode::serde::decode_from_slice(body, bincode::config::standard())
                .map_err(|e| corrupt(path, format!("cannot decode: {e}")))?;
        let n = ck.layout.total();
        if ck.params.len() != n || ck.moment1.len() != n || ck.moment2.len() != n {
            return Err(corrupt(path, format!("layout has {n} parameters but the arenas disagree")));
        }
        Ok(ck)
    }

    /// Writes atomically: a temporary file in the same directory, flushed to disk, then renamed
    /// over `path`. An existing checkpoint survives any failure before the rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_bytes()?)
    }

    /// Reads and verifies a checkpoint.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }
}

/// Writes `bytes` to `path` via a temporary sibling file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        Error::io(path, e)
    })
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
            layout: p.layout().clone(),
            params: vec![1.0, 2.0, 3.0],
            moment1: vec![0.1; 3],
            moment2: vec![0.2; 3],
            step: 7,
            epoch: 1,
            seed: 5,
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
}
