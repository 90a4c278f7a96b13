//! `data/tang300.txt`: the Chinese corpus, *Three Hundred Tang Poems* (唐诗三百首) from the
//! `tang300` file of Debian's `fortunes-zh` package, version 2.98 (bookworm).
//!
//! The fortune file colours each poem's title green and its author yellow with ANSI escape
//! sequences and separates poems with `%` lines. The corpus is that file made plain text:
//!
//! 1. every ANSI CSI escape sequence (`ESC [ ... m`: the colours and their resets) is removed;
//!    any other escape byte is an error, so a differently built file cannot slip through;
//! 2. each `%` separator line becomes one empty line between two poems (the last one, after the
//!    last poem, is dropped), so a poem is its title line `《…》`, its author line `作者：…`, an
//!    optional preface and its verse lines, and poems are separated by a blank line;
//! 3. trailing whitespace is removed from every line (two prefaces are followed by a line of two
//!    spaces, which becomes empty).
//!
//! Nothing else changes: characters, punctuation (full-width `，。` and the few ASCII commas in
//! two long titles) and line breaks are the package's. See `data/README.md`.

use std::path::Path;

use crate::data::{Scratch, sha256_hex, write_atomically};

/// SHA-256 (lower-case hex) of the committed `data/tang300.txt`; also in `data/README.md`.
pub const EXPECTED_SHA256: &str = "883e297303bb86e3d4986018bea927ce293f2b47846b84b66e58fa9c0a6c839f";

/// The Debian package and the exact version the corpus is built from.
const PACKAGE: &str = "fortunes-zh";
const VERSION: &str = "2.98";

/// The fortune file inside the unpacked package.
const SOURCE: &str = "usr/share/games/fortunes/tang300";

/// The corpus path relative to the workspace root.
pub const CORPUS: &str = "data/tang300.txt";

/// The ASCII escape byte that starts every ANSI sequence.
const ESC: char = '\u{1b}';

/// Removes the ANSI CSI sequences of `text`: `ESC [`, parameter bytes (`0x30..=0x3F`),
/// intermediate bytes (`0x20..=0x2F`), one final byte (`0x40..=0x7E`), as ECMA-48 defines them.
/// An escape byte that does not start a complete CSI sequence is an error naming its line.
pub fn strip_ansi(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(ESC) {
        out.push_str(&rest[..at]);
        let sequence = &rest[at..];
        let line = text[..text.len() - sequence.len()].matches('\n').count() + 1;
        let bytes = sequence.as_bytes();
        if bytes.get(1) != Some(&b'[') {
            return Err(format!("line {line}: an escape byte that does not start an `ESC [` sequence"));
        }
        let mut end = 2;
        while bytes.get(end).is_some_and(|b| (0x30..=0x3f).contains(b)) {
            end += 1;
        }
        while bytes.get(end).is_some_and(|b| (0x20..=0x2f).contains(b)) {
            end += 1;
        }
        if !bytes.get(end).is_some_and(|b| (0x40..=0x7e).contains(b)) {
            return Err(format!("line {line}: an unterminated `ESC [` sequence"));
        }
        rest = &sequence[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The corpus text of a fortune file: escapes stripped, `%` separators turned into blank lines,
/// trailing whitespace removed, one `\n` after every line (see the module docs).
pub fn normalise(fortunes: &str) -> Result<String, String> {
    let plain = strip_ansi(fortunes)?;
    let mut out = String::with_capacity(plain.len());
    let mut separator = false;
    for line in plain.lines() {
        if line == "%" {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('\n');
        }
        separator = false;
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// Hashes the committed corpus and compares it with [`EXPECTED_SHA256`].
pub fn check(root: &Path) -> Result<(), String> {
    crate::data::check_file(root, CORPUS, EXPECTED_SHA256)
}

/// Rebuilds the corpus from the Debian package (`apt-get download` and `dpkg-deb -x` into a
/// scratch directory under `target/`), verifies its hash, then replaces the committed file
/// atomically. On any failure the committed file is left untouched.
pub fn rebuild(root: &Path) -> Result<(), String> {
    let scratch = Scratch::new(root.join("target").join(format!("xtask-tang300-{}", std::process::id())))?;
    let unpacked = crate::debian::unpack(scratch.path(), PACKAGE, VERSION)?;
    let source = unpacked.join(SOURCE);
    let bytes = std::fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!("{PACKAGE} {VERSION}: {SOURCE} is not valid UTF-8 at byte {}", e.utf8_error().valid_up_to())
    })?;
    let corpus = normalise(&text).map_err(|e| format!("{PACKAGE} {VERSION}: {SOURCE}: {e}"))?;
    let actual = sha256_hex(corpus.as_bytes());
    if actual != EXPECTED_SHA256 {
        return Err(format!(
            "rebuilt {CORPUS} SHA-256 mismatch: expected {EXPECTED_SHA256}, got {actual}; \
             {CORPUS} left untouched"
        ));
    }
    write_atomically(&root.join(CORPUS), corpus.as_bytes())?;
    println!("{CORPUS}: rebuilt ({} bytes, sha256 {actual})", corpus.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_colour_sequences_and_nothing_else() -> Result<(), String> {
        assert_eq!(
            strip_ansi("\u{1b}[32m《静夜思》\u{1b}[m\n\u{1b}[33m作者：李白\u{1b}[m\n")?,
            "《静夜思》\n作者：李白\n"
        );
        // Parameters, an intermediate byte and other final bytes; text without escapes unchanged.
        assert_eq!(strip_ansi("a\u{1b}[1;31mb\u{1b}[0 qc\u{1b}[2Jd")?, "abcd");
        assert_eq!(strip_ansi("床前明月光，疑是地上霜。[m")?, "床前明月光，疑是地上霜。[m");
        let err = strip_ansi("一\n二\u{1b}]0;title\u{7}").expect_err("not CSI");
        assert!(err.starts_with("line 2:"), "{err}");
        let err = strip_ansi("三\u{1b}[32").expect_err("unterminated");
        assert!(err.contains("unterminated") && err.starts_with("line 1:"), "{err}");
        Ok(())
    }

    #[test]
    fn normalise_separates_poems_by_one_blank_line() -> Result<(), String> {
        let fortunes = "\u{1b}[32m《甲》\u{1b}[m\n\u{1b}[33m作者：某\u{1b}[m\n一二三，  \n  \n四五六。\n%\n\
                        \u{1b}[32m《乙》\u{1b}[m\n七八九。\n%\n";
        assert_eq!(normalise(fortunes)?, "《甲》\n作者：某\n一二三，\n\n四五六。\n\n《乙》\n七八九。\n");
        Ok(())
    }

    #[test]
    fn committed_corpus_matches_expected_sha256() -> Result<(), String> {
        let root = crate::project_root()?;
        let bytes = std::fs::read(root.join(CORPUS)).map_err(|e| format!("cannot read {CORPUS}: {e}"))?;
        assert_eq!(sha256_hex(&bytes), EXPECTED_SHA256, "{CORPUS} is corrupted; run `cargo xtask data`");
        let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
        assert!(!text.contains(ESC) && !text.lines().any(|l| l == "%"), "escapes or separators left");
        Ok(())
    }
}
