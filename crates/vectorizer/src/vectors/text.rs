//! The text layouts: word2vec text and fastText `.vec` (with a header), GloVe (without).

use super::{Vectors, count_mismatch, dim_mismatch, parse_header};
use stagewise_core::{Error, Result};
use std::io::{BufRead, Write};

/// Writes `word v1 ... vN` and a newline (`trailing_space`: fastText's `word v1 ... vN \n`).
/// Values are written in Rust's shortest round-trip form, so reading gives the same bits.
pub(super) fn write_record(
    out: &mut impl Write,
    word: &str,
    row: &[f32],
    trailing_space: bool,
) -> std::io::Result<()> {
    out.write_all(word.as_bytes())?;
    for x in row {
        write!(out, " {x}")?;
    }
    if trailing_space {
        out.write_all(b" ")?;
    }
    out.write_all(b"\n")
}

/// Reads a text vector file; see [`Vectors::read_filtered`].
pub(super) fn read(
    mut reader: impl BufRead,
    header: bool,
    name: &str,
    expected_dim: Option<(usize, &str)>,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vectors> {
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut promised = None;
    let mut dim = None;
    let mut vectors = Vectors::default();
    let mut row = Vec::new();
    let mut records = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::io(name, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let at = || format!("{name}:{line_no}");
        let line = std::str::from_utf8(&buf).map_err(|e| {
            Error::data(at(), format!("not UTF-8 text (invalid byte at column {})", e.valid_up_to() + 1))
        })?;
        if header && line_no == 1 {
            let (count, d) = parse_header(line).ok_or_else(|| {
                Error::data(at(), format!("expected a header `COUNT DIM`, found `{}`", line.trim_end()))
            })?;
            if let Some(expected) = expected_dim.filter(|e| e.0 != d) {
                return Err(dim_mismatch(name, line_no, d, expected));
            }
            (promised, dim) = (Some(count), Some(d));
            vectors = Vectors::new(d);
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let Some(word) = fields.next() else {
            continue; // a blank line (a trailing one, usually)
        };
        if promised.is_some_and(|p| records >= p) {
            return Err(count_mismatch(name, line_no, promised.unwrap_or(0), records + 1));
        }
        row.clear();
        for (i, field) in fields.enumerate() {
            let x: f32 = field.parse().map_err(|_| {
                Error::data(at(), format!("`{field}` (value {} of `{word}`) is not a number", i + 1))
            })?;
            if !x.is_finite() {
                return Err(Error::data(
                    at(),
                    format!("`{field}` (value {} of `{word}`) is not a finite number", i + 1),
                ));
            }
            row.push(x);
        }
        let d = match dim {
            Some(d) => d,
            None => {
                // GloVe: the first record sets the width.
                if let Some(expected) = expected_dim.filter(|e| e.0 != row.len()) {
                    return Err(dim_mismatch(name, line_no, row.len(), expected));
                }
                if row.is_empty() {
                    return Err(Error::data(at(), format!("`{word}` has no values")));
                }
                vectors = Vectors::new(row.len());
                *dim.insert(row.len())
            }
        };
        if row.len() != d {
            let source = if header { "the header's dimension" } else { "the dimension of the first line" };
            return Err(Error::data(
                at(),
                format!("`{word}` has {} values, expected {d} ({source})", row.len()),
            ));
        }
        records += 1;
        if keep(word) {
            vectors.push(word, &row);
        }
    }
    if let Some(p) = promised.filter(|&p| p != records) {
        return Err(count_mismatch(name, line_no, p, records));
    }
    if dim.is_none() {
        return Err(Error::data(name, "no vectors (the file is empty)"));
    }
    Ok(vectors)
}
