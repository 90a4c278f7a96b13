//! `cargo xtask data [--check]`: the bundled classification data set `data/fortunes/train.csv` and
//! `data/fortunes/test.csv`.
//!
//! Built from ten category files of Debian's `fortunes` package, bookworm version
//! [`VERSION`] (`usr/share/games/fortunes/<category>`): an entry is the text between lines that
//! are exactly `%`, with every run of whitespace (Unicode `White_Space`) collapsed to one space
//! and the ends trimmed; empty entries are dropped. Per category, in file order, the first
//! ⌊8n/10⌋ entries go to the training file and the rest to the test file. Both files are CSV with
//! the header `text,label`, the category's file name as the label, categories in the order of
//! [`CATEGORIES`], `\n` line ends, and a field quoted only when it holds a comma or a quote (a
//! quote doubled inside). See `data/README.md` for provenance and licence.

use std::fs;
use std::path::Path;

use crate::data::{Scratch, sha256_hex, write_atomically};

/// The Debian package the entries come from.
const PACKAGE: &str = "fortunes";

/// Its exact version (Debian bookworm).
pub const VERSION: &str = "1:1.99.1-7.3";

/// Where the category files live in the unpacked package.
const FORTUNES_DIR: &str = "usr/share/games/fortunes";

/// The categories (file names, and labels), in the order they are written.
pub const CATEGORIES: [&str; 10] = [
    "art",
    "computers",
    "education",
    "food",
    "humorists",
    "love",
    "medicine",
    "politics",
    "science",
    "sports",
];

/// The two files relative to the workspace root, with the SHA-256 (lower-case hex) of each as
/// committed; also in `data/README.md`.
pub const FILES: [(&str, &str); 2] = [
    ("data/fortunes/train.csv", "dbadc5f25df371717cea6c8e20345bfc66df2bc1fc5f7710990f3fb083b61873"),
    ("data/fortunes/test.csv", "ddeeecdd0e17717034be35ce966832084dad267dc0328e98405f288587d3fde6"),
];

/// The entries of one fortune file: the text between lines that are exactly `%`, whitespace
/// collapsed to single spaces, empty entries dropped.
pub fn entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut flush = |current: &mut Vec<&str>| {
        let entry = current.iter().flat_map(|l| l.split_whitespace()).collect::<Vec<_>>().join(" ");
        if !entry.is_empty() {
            out.push(entry);
        }
        current.clear();
    };
    for line in text.split('\n') {
        if line == "%" {
            flush(&mut current);
        } else {
            current.push(line);
        }
    }
    flush(&mut current);
    out
}

/// One CSV field: quoted (quotes doubled) only if it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// The training and test CSV files built from `(category, file text)` pairs, in the given order.
pub fn build(categories: &[(&str, String)]) -> (String, String) {
    let (mut train, mut test) = (String::from("text,label\n"), String::from("text,label\n"));
    for (label, text) in categories {
        let all = entries(text);
        let cut = 8 * all.len() / 10;
        for (i, entry) in all.iter().enumerate() {
            let out = if i < cut { &mut train } else { &mut test };
            out.push_str(&format!("{},{}\n", field(entry), field(label)));
        }
    }
    (train, test)
}

/// Hashes the committed files and compares them with [`FILES`].
pub fn check(root: &Path) -> Result<(), String> {
    FILES.iter().try_for_each(|(name, expected)| crate::data::check_file(root, name, expected))
}

/// Rebuilds both files from the Debian package, verifies their hashes, then replaces the
/// committed files atomically; on any failure they are left untouched.
pub fn rebuild(root: &Path) -> Result<(), String> {
    let scratch = Scratch::new(root.join("target").join(format!("xtask-fortunes-{}", std::process::id())))?;
    let unpacked = crate::debian::unpack(scratch.path(), PACKAGE, VERSION)?;
    let dir = unpacked.join(FORTUNES_DIR);
    let mut categories = Vec::new();
    for name in CATEGORIES {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text =
            String::from_utf8(bytes).map_err(|e| format!("{} is not valid UTF-8: {e}", path.display()))?;
        categories.push((name, text));
    }
    let (train, test) = build(&categories);
    let built = [train, test];
    for ((name, expected), text) in FILES.iter().zip(&built) {
        let actual = sha256_hex(text.as_bytes());
        if actual != *expected {
            return Err(format!(
                "rebuilt {name} SHA-256 mismatch: expected {expected}, got {actual}; committed files left untouched"
            ));
        }
    }
    for ((name, _), text) in FILES.iter().zip(&built) {
        write_atomically(&root.join(name), text.as_bytes())?;
        println!("{name}: rebuilt ({} bytes, sha256 {})", text.len(), sha256_hex(text.as_bytes()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_percent_lines_and_collapse_whitespace() {
        let text = "One\n  two\tthree\n%\n%\n\n%\nnot % a separator\n%%\n%\nlast\n";
        assert_eq!(entries(text), ["One two three", "not % a separator %%", "last"]);
    }

    #[test]
    fn split_is_eight_tenths_per_category_and_fields_are_quoted_when_needed() {
        let many: String = (0..10).map(|i| format!("e{i}\n%\n")).collect();
        let (train, test) = build(&[("a", many), ("b", "x, \"y\"\n%\nz\n".into())]);
        let lines = |s: &str| s.lines().count() - 1;
        assert_eq!((lines(&train), lines(&test)), (8 + 1, 2 + 1));
        assert!(train.ends_with("e7,a\n\"x, \"\"y\"\"\",b\n"), "{train}");
        assert_eq!(test, "text,label\ne8,a\ne9,a\nz,b\n");
    }

    #[test]
    fn committed_files_match_expected_sha256() -> Result<(), String> {
        check(&crate::project_root()?)
    }
}
