//! Fetching a Debian package's files, for corpora built from Debian packages (`fortunes-zh`,
//! `fortunes`).
//!
//! `apt-get download PACKAGE=VERSION` fetches the exact `.deb` into a scratch directory (no root
//! needed, nothing is installed) and `dpkg-deb -x` unpacks it there. Each corpus built this way
//! is still checked against its committed SHA-256, so a different package build is caught.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Downloads `package` at exactly `version` into `scratch` and unpacks it; returns the root of
/// the unpacked tree (its `usr/share/...` paths are relative to it).
pub fn unpack(scratch: &Path, package: &str, version: &str) -> Result<PathBuf, String> {
    let spec = format!("{package}={version}");
    run(Command::new("apt-get").current_dir(scratch).args(["download", "--quiet=2", &spec]))?;
    let deb = fs::read_dir(scratch)
        .map_err(|e| format!("cannot list {}: {e}", scratch.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension() == Some(OsStr::new("deb")))
        .ok_or_else(|| format!("`apt-get download {spec}` left no .deb in {}", scratch.display()))?;
    let root = scratch.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    Ok(root)
}

/// Runs `command`, turning a missing program or a failure into a one-line error.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("`{shown}` failed: the program is not installed (a Debian system with apt is needed)")
        }
        _ => format!("cannot run `{shown}`: {e}"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("`{shown}` failed ({}): {last}", output.status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_a_one_line_error() {
        let err = run(&mut Command::new("stagewise-no-such-program")).expect_err("not installed");
        assert!(err.contains("not installed") && !err.contains('\n'), "{err}");
    }
}
