//! GPT-2's pre-tokenization, hand-written: the pieces its regex finds, without a regex engine.
//!
//! The regex (openai/gpt-2 `encoder.py`, HF `ByteLevel` with `use_regex = true`) is
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, applied
//! leftmost-first from the end of the previous match. Each alternative is a run of one character
//! class (letters, numbers, "other" = neither, whitespace), so a scanner that looks at one class
//! table gives the same pieces; the tests compare it with the regex on arbitrary strings.

use std::sync::OnceLock;

/// The character classes the regex distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Class {
    /// Neither a letter, a number nor whitespace: `[^\s\p{L}\p{N}]`.
    Other = 0,
    /// `\p{L}`: Unicode general category Letter.
    Letter = 1,
    /// `\p{N}`: Unicode general category Number.
    Number = 2,
    /// `\s`: Unicode `White_Space`.
    Space = 3,
}

/// One class byte per code point, built on first use from regex-syntax's Unicode tables (the
/// same tables a regex engine would use), so the classes follow Unicode, not a hand-made list.
fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![Class::Other as u8; 0x11_0000].into_boxed_slice();
        for (pattern, class) in [(r"\p{L}", Class::Letter), (r"\p{N}", Class::Number)] {
            for (start, end) in unicode_ranges(pattern) {
                table[start as usize..=end as usize].fill(class as u8);
            }
        }
        for c in (0..=0x3000u32).filter_map(char::from_u32).filter(|c| c.is_whitespace()) {
            table[c as usize] = Class::Space as u8;
        }
        table
    })
}

/// The code point ranges of a Unicode class such as `\p{L}`, from regex-syntax.
fn unicode_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    let hir = regex_syntax::Parser::new().parse(pattern).expect("a Unicode class regex-syntax knows");
    match hir.kind() {
        HirKind::Class(HirClass::Unicode(class)) => {
            class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        _ => Vec::new(),
    }
}

/// The class of `c`.
#[inline]
pub(crate) fn class_of(c: char) -> Class {
    let code = c as u32;
    if code < 128 {
        return ASCII[code as usize];
    }
    match table()[code as usize] {
        1 => Class::Letter,
        2 => Class::Number,
        3 => Class::Space,
        _ => Class::Other,
    }
}

/// The classes of the ASCII characters, without touching the big table.
const ASCII: [Class; 128] = {
    let mut out = [Class::Other; 128];
    let mut b = 0u8;
    while b < 128 {
        out[b as usize] = match b {
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Number,
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Class::Space,
            _ => Class::Other,
        };
        b += 1;
    }
    out
};

/// The `char` starting at byte `i` of `s` and its length in bytes (`i` is a `char` boundary).
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    let b = *s.as_bytes().get(i)?;
    if b < 128 {
        return Some((b as char, 1));
    }
    s[i..].chars().next().map(|c| (c, c.len_utf8()))
}

/// The pieces of `text`, in order; they concatenate to `text`.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

/// The iterator [`pieces`] returns.
#[derive(Clone, Debug)]
pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Pieces<'a> {
    /// The end of the run of `class` characters starting at byte `i`.
    #[inline]
    fn run(&self, mut i: usize, class: Class) -> usize {
        let bytes = self.text.as_bytes();
        while i < bytes.len() {
            let b = bytes[i];
            if b < 128 {
                if ASCII[b as usize] != class {
                    break;
                }
                i += 1;
            } else {
                let Some((c, len)) = char_at(self.text, i) else { break };
                if class_of(c) != class {
                    break;
                }
                i += len;
            }
        }
        i
    }

    /// `\s+(?!\S)|\s+` at `start`: the whitespace run, less its last character when a
    /// non-space follows and the run is longer than one character.
    fn space(&self, start: usize) -> usize {
        let end = self.run(start, Class::Space);
        if end == self.text.len() {
            return end;
        }
        let last = self.text[start..end].char_indices().next_back().map_or(start, |(i, _)| start + i);
        if last > start { last } else { end }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `start` (an apostrophe): the contraction's end, if one.
    fn contraction(&self, start: usize) -> Option<usize> {
        let rest = &self.text.as_bytes()[start + 1..];
        match rest {
            [b's' | b't' | b'm' | b'd', ..] => Some(start + 2),
            [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => Some(start + 3),
            _ => None,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let (c, len) = char_at(self.text, start)?;
        let end = if c == '\'' {
            self.contraction(start).unwrap_or_else(|| self.run(start, Class::Other))
        } else if c == ' ' {
            match char_at(self.text, start + 1) {
                Some((next, _)) => match class_of(next) {
                    Class::Space => self.space(start),
                    class => self.run(start + 1, class),
                },
                None => start + 1,
            }
        } else {
            match class_of(c) {
                Class::Space => self.space(start),
                class => self.run(start + len, class),
            }
        };
        self.pos = end;
        Some(&self.text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(text: &str) -> Vec<&str> {
        pieces(text).collect()
    }

    #[test]
    fn splits_like_gpt2() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("I'm don't we'll 'tis"), ["I", "'m", " don", "'t", " we", "'ll", " '", "tis"]);
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(split("a \n b  "), ["a", " \n", " b", "  "]);
        assert_eq!(split("x123 456!!"), ["x", "123", " 456", "!!"]);
        assert_eq!(split("?'s ''x"), ["?'", "s", " ''", "x"]);
        assert_eq!(split("分词 Ⅻ٣"), ["分词", " Ⅻ٣"]);
        assert_eq!(split(" "), [" "]);
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("e\u{301}"), ["e", "\u{301}"]);
    }

    /// The regex itself, with lookahead emulated: regex-automata has no `(?!\S)`, so this tries
    /// each alternative in order at the position, as a backtracking engine would.
    fn reference(text: &str) -> Vec<&str> {
        let alternatives =
            [r"\A(?:'s|'t|'re|'ve|'m|'ll|'d)", r"\A ?\p{L}+", r"\A ?\p{N}+", r"\A ?[^\s\p{L}\p{N}]+"];
        let res: Vec<regex::Regex> =
            alternatives.iter().map(|p| regex::Regex::new(p).expect("valid")).collect();
        let space = regex::Regex::new(r"\A\s+").expect("valid");
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let mut end = None;
            for re in &res {
                if let Some(m) = re.find(rest) {
                    end = Some(m.end());
                    break;
                }
            }
            let end = end.unwrap_or_else(|| {
                let m = space.find(rest).expect("every char is in one class").end();
                // \s+(?!\S): the longest prefix of the run followed by whitespace or the end.
                let ends: Vec<usize> = rest[..m].char_indices().map(|(i, c)| i + c.len_utf8()).collect();
                ends.iter()
                    .rev()
                    .copied()
                    .find(|&e| e == rest.len() || rest[e..].chars().next().is_some_and(char::is_whitespace))
                    .unwrap_or(m)
            });
            out.push(&text[pos..pos + end]);
            pos += end;
        }
        out
    }

    fn texts() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("'".to_owned()),
            Just("s".to_owned()),
            Just("ll".to_owned()),
            Just("\u{a0}".to_owned()),
            Just("٣".to_owned()),
            "[a-z0-9 .,!?'\t\n]{1,4}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn agrees_with_the_regex(text in texts()) {
            prop_assert_eq!(split(&text), reference(&text));
        }

        #[test]
        fn agrees_with_the_regex_on_any_string(text in any::<String>()) {
            prop_assert_eq!(split(&text), reference(&text));
        }
    }
}
