//! One way to replace a file, used for every file Stagewise writes that someone may rely on:
//! checkpoints, vocabularies, the bundled corpus.
//!
//! [`write_atomically`] writes the new bytes to a temporary file in the same directory, flushes
//! it to disk, renames it over the target and flushes the directory, so that after a crash, a
//! full disk or a kill at any moment the target holds either its old bytes or the new ones,
//! never a mixture, and no temporary file is left behind by a failure that returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` by `bytes` atomically (see the crate docs). The directory must exist.
///
/// The temporary file is named after the target, this process and a counter
/// (`.model.ckpt.1234.0.tmp`), so concurrent writers never share one. On any error it is removed
/// and the target is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomically`], with the contents written by `write` into a buffered writer, so a
/// large file (a checkpoint) is streamed to disk instead of first built in memory.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temporary_sibling(path)?;
    let written = write_synced(&tmp, write).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_directory(path);
    Ok(())
}

/// Reads the whole of `path`, which must be a regular file of at most `limit` bytes: a device
/// (`/dev/zero`), a pipe or a directory given where a file was expected would read forever, block,
/// or fail obscurely, so each is refused at once with an error that says what it is.
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() { "a directory" } else { "not a regular file (a device or a pipe)" };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {what}, expected a file"),
        ));
    }
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {len} bytes, more than the {limit} expected of it"),
        ));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit.saturating_add(1)), &mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("grew past {limit} bytes while read"),
        ));
    }
    Ok(bytes)
}

/// A fresh name next to `path` for its temporary copy.
fn temporary_sibling(path: &Path) -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    Ok(path.with_file_name(tmp))
}

/// Creates `path` (it must not exist), lets `write` fill it and flushes it to disk.
fn write_synced(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    write(&mut out)?;
    out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
}

/// Flushes the directory entry of the rename to disk, so that the new name survives a power
/// loss. Best effort: some systems cannot open a directory for syncing, and the data itself is
/// already on disk.
fn sync_directory(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stagewise-fs-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("model.ckpt");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new bytes").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("vocab.json");
        write_atomically(&path, b"kept").unwrap();
        // A directory where the target should be: the rename fails after the temporary exists.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomically(&blocked, b"x").is_err());
        assert!(write_atomically(&dir.join("missing/dir/file"), b"x").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn concurrent_writers_use_distinct_temporaries() {
        let dir = scratch("concurrent");
        let path = dir.join("out.bin");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || write_atomically(path, &[i; 4096]).unwrap());
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() == 4096 && bytes.iter().all(|&b| b == bytes[0]), "one writer's bytes, whole");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_writer_that_fails_leaves_the_old_file() {
        let dir = scratch("writer");
        let path = dir.join("model.ckpt");
        write_atomically(&path, b"old").unwrap();
        let err = write_atomically_with(&path, |w| {
            w.write_all(b"half of the new ")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(leftovers(&dir).is_empty());
        write_atomically_with(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = scratch("read");
        let path = dir.join("config.toml");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read_regular_file(&path, 3).unwrap(), b"abc");
        assert!(read_regular_file(&path, 2).unwrap_err().to_string().contains("more than the 2"));
        assert!(read_regular_file(&dir, 100).unwrap_err().to_string().contains("a directory"));
        if Path::new("/dev/zero").exists() {
            let err = read_regular_file(Path::new("/dev/zero"), 100).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert!(write_atomically(Path::new("/"), b"x").is_err());
    }
}
