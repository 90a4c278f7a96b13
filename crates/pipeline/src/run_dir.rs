//! The run directory (`--out DIR`): locked while a run uses it, and at every moment holding one
//! consistent set of files.
//!
//! # Layout
//! ```text
//! DIR/.lock                      an OS lock held by the run using DIR (its process id inside)
//! DIR/generations/<id>/          one complete set: metrics.jsonl, vocab.json, model.ckpt, config.toml,
//!                                best.ckpt
//! DIR/latest -> generations/<id> the set that counts, switched by one atomic rename
//! DIR/metrics.jsonl -> latest/metrics.jsonl   (and vocab.json, model.ckpt, tokenizer.json): stable names
//! ```
//!
//! A run publishes a new generation at the end of every epoch: it writes the whole set into a
//! fresh directory, flushes it to disk, then renames a new `latest` link over the old one. A reader
//! that opens `DIR/model.ckpt` and `DIR/metrics.jsonl` therefore sees the previous complete set or
//! the new one, never a mixture, whenever the writer is killed; a run that fails before its first
//! publication leaves the previous run's files as they were. Older generations are removed after
//! each switch (a kill in between leaves only unreferenced directories, removed by the next
//! publication).
//!
//! The lock is `std::fs::File::try_lock` on `DIR/.lock`, released by the operating system when the
//! process ends however it ends, so a crashed run never leaves a directory locked.

use stagewise_core::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files of one generation, also the stable names in the run directory: the metrics, the
/// vocabulary, the checkpoint of the last epoch, the effective config (the file with every
/// `--set` and flag applied, the one the checkpoint embeds) and the checkpoint of the epoch with
/// the lowest test loss so far.
pub const RUN_FILES: [&str; 5] = ["metrics.jsonl", "vocab.json", "model.ckpt", "config.toml", "best.ckpt"];

/// Files a generation may hold besides [`RUN_FILES`], linked under a stable name when it does:
/// the `tokenizer.json` of a BPE run.
pub const OPTIONAL_RUN_FILES: [&str; 1] = ["tokenizer.json"];

/// A run directory held by this process (see the module docs). Dropping it releases the lock.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    /// Held for the lifetime of the value: the lock is the open file's.
    _lock: File,
    /// This run's prefix for its generation names: the process id and the start time.
    run_id: String,
    published: u64,
}

impl RunDir {
    /// Creates `dir` if needed and locks it. Fails at once, naming the directory and the process
    /// holding it, if another run uses it.
    pub fn open(dir: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(".lock");
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::from("another process")
                } else {
                    format!("process {holder}")
                };
                return Err(Error::data(
                    dir.display().to_string(),
                    format!("the run directory is in use by {who}; wait for it or choose another --out"),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let pid = std::process::id();
        lock.set_len(0)
            .and_then(|()| lock.write_all(format!("{pid}\n").as_bytes()))
            .map_err(|e| Error::io(&lock_path, e))?;
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run =
            RunDir { dir: dir.to_path_buf(), _lock: lock, run_id: format!("{started}-{pid}"), published: 0 };
        run.adopt_plain_files()?;
        Ok(run)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Publishes a new consistent set: `write` fills a fresh generation directory (it must write
    /// every one of [`RUN_FILES`]); then `latest` is switched to it and the older generations are
    /// removed. Until the switch, the previous set stays the one the stable names show.
    pub fn publish(&mut self, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        self.publish_files(&RUN_FILES, write)
    }

    /// [`RunDir::publish`] for a run whose set is `files` (a classifier's adds `best.ckpt` and
    /// `confusion.json`): `write` must write every one of them, and each gets a stable name.
    pub fn publish_files(&mut self, files: &[&str], write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let generations = self.dir.join("generations");
        std::fs::create_dir_all(&generations).map_err(|e| Error::io(&generations, e))?;
        self.published += 1;
        let name = format!("{}-{}", self.run_id, self.published);
        let fresh = generations.join(&name);
        std::fs::create_dir(&fresh).map_err(|e| Error::io(&fresh, e))?;
        write(&fresh)?;
        for &file in files {
            let path = fresh.join(file);
            if !path.is_file() {
                return Err(Error::data(fresh.display().to_string(), format!("{file} was not written")));
            }
        }
        sync_dir(&fresh);
        self.switch_latest(&Path::new("generations").join(&name))?;
        self.link_stable_names(files)?;
        self.remove_other_generations(&name);
        Ok(())
    }

    /// Points `DIR/latest` at `target` (relative to `DIR`) with one atomic rename.
    fn switch_latest(&self, target: &Path) -> Result<()> {
        let latest = self.dir.join("latest");
        let tmp = self.dir.join(format!(".latest.{}.tmp", self.run_id));
        let _ = std::fs::remove_file(&tmp);
        symlink(target, &tmp).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &latest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&latest, e)
        })?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Makes `DIR/<file>` a link to `latest/<file>` for each run file (once; renames keep each
    /// name valid at every moment).
    fn link_stable_names(&self, files: &[&str]) -> Result<()> {
        let latest = self.dir.join("latest");
        let optional = OPTIONAL_RUN_FILES.into_iter().filter(|f| latest.join(f).is_file());
        for file in files.iter().copied().chain(optional) {
            let name = self.dir.join(file);
            let target = Path::new("latest").join(file);
            if std::fs::read_link(&name).is_ok_and(|t| t == target) {
                continue;
            }
            let tmp = self.dir.join(format!(".{file}.{}.tmp", self.run_id));
            let _ = std::fs::remove_file(&tmp);
            symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &name).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(&name, e)
            })?;
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// Removes every generation but `keep`, and temporary files of earlier runs (best effort:
    /// they are unreferenced, and the next publication tries again).
    fn remove_other_generations(&self, keep: &str) {
        let generations = self.dir.join("generations");
        if let Ok(entries) = std::fs::read_dir(&generations) {
            for entry in entries.flatten() {
                if entry.file_name() != keep {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// A directory written before generations existed holds the run files as plain files: they
    /// become the first generation, by hard links (no copy), so that the stable names can then be
    /// turned into links without a moment at which they disagree.
    fn adopt_plain_files(&self) -> Result<()> {
        let plain: Vec<&str> = RUN_FILES
            .into_iter()
            .filter(|f| std::fs::symlink_metadata(self.dir.join(f)).is_ok_and(|m| m.file_type().is_file()))
            .collect();
        if plain.is_empty() || self.dir.join("latest").exists() {
            return Ok(());
        }
        let adopted = self.dir.join("generations").join("adopted");
        let _ = std::fs::remove_dir_all(&adopted);
        std::fs::create_dir_all(&adopted).map_err(|e| Error::io(&adopted, e))?;
        for file in &plain {
            std::fs::hard_link(self.dir.join(file), adopted.join(file))
                .map_err(|e| Error::io(adopted.join(file), e))?;
        }
        sync_dir(&adopted);
        self.switch_latest(&Path::new("generations").join("adopted"))?;
        for file in plain {
            let (name, target) = (self.dir.join(file), Path::new("latest").join(file));
            let tmp = self.dir.join(format!(".{file}.{}.tmp", self.run_id));
            symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &name).map_err(|e| Error::io(&name, e))?;
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let _ = (target, link);
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "run directories need symbolic links (Unix)"))
}

/// Flushes a directory's entries to disk (best effort, as in `stagewise_fs`).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stagewise-rundir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write_set(dir: &Path, tag: &str) -> Result<()> {
        for file in RUN_FILES {
            std::fs::write(dir.join(file), format!("{tag} {file}")).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }

    fn read_set(dir: &Path) -> Vec<String> {
        RUN_FILES.iter().map(|f| std::fs::read_to_string(dir.join(f)).unwrap()).collect()
    }

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_directory() {
        let dir = scratch("lock");
        let first = RunDir::open(&dir).unwrap();
        let err = RunDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("in use by process") && err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        drop(first);
        RunDir::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn stable_names_follow_each_publication_and_old_generations_go() {
        let dir = scratch("publish");
        let mut run = RunDir::open(&dir).unwrap();
        run.publish(|g| write_set(g, "one")).unwrap();
        assert_eq!(
            read_set(&dir),
            ["one metrics.jsonl", "one vocab.json", "one model.ckpt", "one config.toml", "one best.ckpt"]
        );
        run.publish(|g| write_set(g, "two")).unwrap();
        assert_eq!(
            read_set(&dir),
            ["two metrics.jsonl", "two vocab.json", "two model.ckpt", "two config.toml", "two best.ckpt"]
        );
        assert_eq!(std::fs::read_dir(dir.join("generations")).unwrap().count(), 1);
        // A failed publication leaves the last set and removes nothing it shows.
        let err =
            run.publish(|g| std::fs::write(g.join("metrics.jsonl"), "half").map_err(|e| Error::io(g, e)));
        assert!(err.unwrap_err().to_string().contains("vocab.json was not written"));
        assert_eq!(read_set(&dir)[2], "two model.ckpt");
        drop(run);
        // A new run shows the previous set until it publishes its own.
        let mut again = RunDir::open(&dir).unwrap();
        assert_eq!(read_set(&dir)[0], "two metrics.jsonl");
        again.publish(|g| write_set(g, "three")).unwrap();
        assert_eq!(read_set(&dir)[1], "three vocab.json");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn plain_files_of_an_older_layout_are_adopted_unchanged() {
        let dir = scratch("adopt");
        std::fs::create_dir_all(&dir).unwrap();
        write_set(&dir, "old").unwrap();
        let run = RunDir::open(&dir).unwrap();
        assert_eq!(
            read_set(&dir),
            ["old metrics.jsonl", "old vocab.json", "old model.ckpt", "old config.toml", "old best.ckpt"]
        );
        for file in RUN_FILES {
            assert!(std::fs::symlink_metadata(dir.join(file)).unwrap().file_type().is_symlink());
        }
        drop(run);
        std::fs::remove_dir_all(&dir).ok();
    }
}
