//! The word2vec binary layout: a text header `COUNT DIM`, then per word its UTF-8 bytes, a space
//! and DIM little-endian `f32`s (optionally followed by a newline, as word2vec.c writes).

use super::{Vectors, count_mismatch, dim_mismatch, parse_header};
use stagewise_core::{Error, Result};
use std::io::{BufRead, Write};

/// Writes `word `, the little-endian values and a newline (word2vec.c's record).
pub(super) fn write_record(out: &mut impl Write, word: &str, row: &[f32]) -> std::io::Result<()> {
    out.write_all(word.as_bytes())?;
    out.write_all(b" ")?;
    for x in row {
        out.write_all(&x.to_le_bytes())?;
    }
    out.write_all(b"\n")
}

/// Reads a binary vector file; see [`Vectors::read_filtered`]. Record k is reported as line k + 2.
pub(super) fn read(
    mut reader: impl BufRead,
    name: &str,
    expected_dim: Option<(usize, &str)>,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vectors> {
    let io = |e: std::io::Error| Error::io(name, e);
    let mut buf = Vec::new();
    reader.read_until(b'\n', &mut buf).map_err(io)?;
    let header = std::str::from_utf8(&buf).ok().and_then(parse_header);
    let Some((count, dim)) = header else {
        let shown = String::from_utf8_lossy(&buf[..buf.len().min(40)]).trim_end().to_owned();
        return Err(Error::data(
            format!("{name}:1"),
            format!("expected a header `COUNT DIM`, found `{shown}`"),
        ));
    };
    if let Some(expected) = expected_dim.filter(|e| e.0 != dim) {
        return Err(dim_mismatch(name, 1, dim, expected));
    }
    if dim == 0 {
        return Err(Error::data(format!("{name}:1"), "the header's dimension is 0"));
    }
    let mut vectors = Vectors::new(dim);
    let mut bytes = vec![0u8; dim * 4];
    let mut row = vec![0f32; dim];
    for k in 0..count {
        let line = k + 2;
        let at = || format!("{name}:{line}");
        // Skip the newline word2vec.c leaves after the previous vector.
        loop {
            let chunk = reader.fill_buf().map_err(io)?;
            match chunk.first() {
                Some(b'\n') => reader.consume(1),
                Some(_) => break,
                None => return Err(count_mismatch(name, line, count, k)),
            }
        }
        buf.clear();
        reader.read_until(b' ', &mut buf).map_err(io)?;
        if buf.last() != Some(&b' ') {
            return Err(Error::data(at(), "the file ends inside a word (no space before its vector)"));
        }
        buf.pop();
        let word = std::str::from_utf8(&buf).map_err(|e| {
            Error::data(at(), format!("the word is not UTF-8 (invalid byte {})", e.valid_up_to() + 1))
        })?;
        if word.is_empty() {
            return Err(Error::data(at(), "empty word"));
        }
        reader.read_exact(&mut bytes).map_err(|_| {
            Error::data(at(), format!("the file ends inside the vector of `{word}` ({dim} values expected)"))
        })?;
        for (x, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if let Some(i) = row.iter().position(|x| !x.is_finite()) {
            return Err(Error::data(
                at(),
                format!("value {} of `{word}` is {}, not a finite number", i + 1, row[i]),
            ));
        }
        if keep(word) {
            vectors.push(word, &row);
        }
    }
    // Anything after the last record but a newline is a word the header did not count.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).map_err(io)?;
    if rest.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(count_mismatch(name, count + 2, count, count + 1));
    }
    Ok(vectors)
}
