//! A tiny reader and writer for flat JSON objects: the one-line reports that
//! `stagewise bench-*` and `benches/reference/bench_reference.py` print, and the file
//! `cargo xtask bench --json` writes. Keeps xtask free of serde.
//!
//! Reading accepts one object whose values are strings, numbers, booleans or `null` (nested
//! objects and arrays are rejected with an error naming the key).

use std::collections::BTreeMap;
use std::fmt::Write;

/// A scalar JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string, unescaped.
    Str(String),
    /// A number.
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// One flat object: key -> value.
pub type Object = BTreeMap<String, Value>;

/// Parses `{"key": scalar, ...}` (surrounding whitespace allowed, nothing else after it).
pub fn parse(text: &str) -> Result<Object, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let object = p.object()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the object at byte {}", p.i));
    }
    Ok(object)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!("expected `{}` at byte {}, found `{}`", c as char, self.i, x as char)),
            None => Err(format!("expected `{}` at byte {}, found the end", c as char, self.i)),
        }
    }

    fn object(&mut self) -> Result<Object, String> {
        self.expect(b'{')?;
        let mut out = Object::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(format!("expected a key at byte {}", self.i));
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value().map_err(|e| format!("key `{key}`: {e}"))?;
            out.insert(key, value);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(format!("expected `,` or `}}` at byte {}", self.i)),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{' | b'[') => Err("nested objects and arrays are not supported".into()),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(c) => Err(format!("unexpected `{}` at byte {}", c as char, self.i)),
            None => Err("unexpected end".into()),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        text.parse().map(Value::Num).map_err(|_| format!("bad number `{text}` at byte {start}"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code =
                                if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                            out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                        }
                        _ => return Err(format!("bad escape `\\{}`", e as char)),
                    }
                }
                _ => {
                    // Copy the whole UTF-8 sequence this byte starts.
                    let start = self.i - 1;
                    while self.i < self.s.len() && (self.s[self.i] & 0xC0) == 0x80 {
                        self.i += 1;
                    }
                    out.push_str(&String::from_utf8_lossy(&self.s[start..self.i]));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| format!("bad \\u escape `{text}`"))
    }
}

/// The last line of `stdout` that starts with `{`, parsed (children may print other lines).
pub fn last_object(stdout: &str) -> Result<Object, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| "no JSON line in the output".to_string())?;
    parse(line)
}

/// A number value, or an error naming the missing or mistyped key.
pub fn num(o: &Object, key: &str) -> Result<f64, String> {
    match o.get(key) {
        Some(Value::Num(x)) => Ok(*x),
        Some(other) => Err(format!("`{key}` is not a number: {other:?}")),
        None => Err(format!("no `{key}`")),
    }
}

/// A number value, `None` for `null` or a missing key.
pub fn opt_num(o: &Object, key: &str) -> Result<Option<f64>, String> {
    match o.get(key) {
        Some(Value::Num(x)) => Ok(Some(*x)),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(format!("`{key}` is not a number: {other:?}")),
    }
}

/// A string value, or an error naming the missing or mistyped key.
pub fn string(o: &Object, key: &str) -> Result<String, String> {
    match o.get(key) {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{key}` is not a string: {other:?}")),
        None => Err(format!("no `{key}`")),
    }
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `x` as a JSON number (`null` when not finite, which JSON cannot express).
pub fn number(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { "null".into() }
}

/// An optional number (`null` for `None`).
pub fn opt_number(x: Option<f64>) -> String {
    x.map_or_else(|| "null".into(), number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_bench_run_line() -> Result<(), String> {
        let line = r#"{"impl":"stagewise","config":"seed","threads":2,"mode":"train","tokens_per_s":12345.5,"peak_rss_mb":null,"ok":true,"e":-1.5e-3}"#;
        let o = parse(line)?;
        assert_eq!(string(&o, "impl")?, "stagewise");
        assert_eq!(num(&o, "threads")?, 2.0);
        assert_eq!(num(&o, "tokens_per_s")?, 12345.5);
        assert_eq!(opt_num(&o, "peak_rss_mb")?, None);
        assert_eq!(opt_num(&o, "absent")?, None);
        assert_eq!(o.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(num(&o, "e")?, -1.5e-3);
        assert!(num(&o, "impl").is_err() && num(&o, "absent").is_err());
        Ok(())
    }

    #[test]
    fn whitespace_escapes_and_unicode() -> Result<(), String> {
        let o = parse(" { \"a\" : \"x\\\"y\\\\z\\n\\u00e9\\ud83d\\ude00é\" , \"b\" : 1 } \n")?;
        assert_eq!(string(&o, "a")?, "x\"y\\z\né😀é");
        assert_eq!(parse("{}")?.len(), 0);
        Ok(())
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} extra",
            "{\"a\":[1]}",
            "{\"a\":{\"b\":1}}",
            "{\"a\":\"open}",
            "{\"a\":1e}",
            "{a:1}",
            "{\"a\":nul}",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn last_object_skips_other_output() -> Result<(), String> {
        let out = "warming up\n{\"a\":1}\nnoise\n{\"a\":2}\n\n";
        assert_eq!(num(&last_object(out)?, "a")?, 2.0);
        assert!(last_object("no json here\n").is_err());
        Ok(())
    }

    #[test]
    fn written_values_read_back() -> Result<(), String> {
        let s = "tab\there \"q\" \\ \u{1} é";
        let line = format!("{{\"s\":{},\"x\":{},\"n\":{}}}", quote(s), number(0.1), opt_number(None));
        let o = parse(&line)?;
        assert_eq!(string(&o, "s")?, s);
        assert_eq!(num(&o, "x")?, 0.1);
        assert_eq!(o.get("n"), Some(&Value::Null));
        assert_eq!(number(f64::NAN), "null");
        Ok(())
    }
}
