//! Word-vector files: word2vec text and binary, fastText `.vec`, GloVe.
//!
//! The four layouts (gensim's `load_word2vec_format` / `save_word2vec_format` are the reference):
//! - `word2vec` (text): a header line `COUNT DIM`, then one line per word: the word and DIM
//!   numbers separated by spaces.
//! - `word2vec_binary`: the same header, then per word the word's UTF-8 bytes, one space and DIM
//!   little-endian `f32`s (word2vec.c writes a newline after each vector, gensim 4 does not;
//!   both read).
//! - `fasttext` (`.vec`): word2vec text as fastText writes it (each line ends with a space).
//! - `glove`: word2vec text without the header line.
//!
//! [`VectorFormat::detect`] tells them apart from the first bytes of a file (a first line of two
//! integers is a word2vec header; a text first record after it means text, anything else
//! binary; no header means GloVe). fastText `.vec` reads as word2vec text, which it is.
//!
//! Every malformed file (a ragged row, a count that does not match the header, a value that is
//! not a finite number, a truncated binary record, a dimension other than the one expected) is a
//! one-line [`Error::Data`](stagewise_core::Error) naming the file and the line. In a binary
//! file, record k counts as line k + 2 (the header is line 1), the line it occupies in the
//! layout word2vec.c writes. A word listed twice keeps its first vector (as gensim does).

mod binary;
pub mod similarity;
mod text;

use serde::{Deserialize, Serialize};
use stagewise_core::{Error, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The layout of a vector file, named in a config (`format = "glove"`) or detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VectorFormat {
    /// word2vec text: a `COUNT DIM` header, then `word v1 ... vDIM` per line.
    Word2vec,
    /// word2vec binary: the header, then per word `word ` and DIM little-endian `f32`s.
    Word2vecBinary,
    /// fastText `.vec`: word2vec text, each line ending with a space.
    Fasttext,
    /// GloVe: word2vec text without the header.
    Glove,
}

impl VectorFormat {
    /// Every format, for tests and help texts.
    pub const ALL: [VectorFormat; 4] =
        [VectorFormat::Word2vec, VectorFormat::Word2vecBinary, VectorFormat::Fasttext, VectorFormat::Glove];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            VectorFormat::Word2vec => "word2vec",
            VectorFormat::Word2vecBinary => "word2vec_binary",
            VectorFormat::Fasttext => "fasttext",
            VectorFormat::Glove => "glove",
        }
    }

    /// The format named `name` (as [`VectorFormat::name`] spells it); `field` names the key or
    /// flag in the error.
    pub fn from_name(name: &str, field: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
            Error::config(field, format!("unknown vector format `{name}` (one of {})", names.join(", ")))
        })
    }

    /// Guesses the format from the first bytes of a file: a first line of two integers is a
    /// word2vec header, followed by a text record (the word and as many numbers as the header's
    /// dimension) or else a binary one; any other first line starts a GloVe file.
    ///
    /// A header-less file whose first line is a word made of digits and a single value reads as
    /// word2vec: name `glove` for it.
    pub fn detect(prefix: &[u8]) -> VectorFormat {
        let first_end = prefix.iter().position(|&b| b == b'\n').unwrap_or(prefix.len());
        let Some((_, dim)) = std::str::from_utf8(&prefix[..first_end]).ok().and_then(parse_header) else {
            return VectorFormat::Glove;
        };
        let rest = &prefix[(first_end + 1).min(prefix.len())..];
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let is_text = std::str::from_utf8(&rest[..line_end]).is_ok_and(|line| {
            let mut fields = line.split_ascii_whitespace();
            fields.next().is_some()
                && fields.clone().count() == dim
                && fields.all(|f| f.parse::<f32>().is_ok())
        });
        if is_text || rest.is_empty() { VectorFormat::Word2vec } else { VectorFormat::Word2vecBinary }
    }

    /// Whether the file starts with a `COUNT DIM` header line.
    fn has_header(self) -> bool {
        self != VectorFormat::Glove
    }
}

/// `COUNT DIM`: two unsigned integers and nothing else.
fn parse_header(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let count = fields.next()?.parse().ok()?;
    let dim = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some((count, dim))
}

/// A set of word vectors: words in file order, one row of `dim` values each, with a hash index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vectors {
    dim: usize,
    words: Vec<String>,
    data: Vec<f32>,
    index: HashMap<String, usize>,
}

impl Vectors {
    /// An empty set of `dim`-wide vectors.
    pub fn new(dim: usize) -> Self {
        Vectors { dim, ..Vectors::default() }
    }

    /// Appends `word` with `row` (of length [`Vectors::dim`]) and returns `true`, or returns
    /// `false` and keeps the first vector if `word` is already there.
    ///
    /// # Panics
    /// If `row` is not `dim` long (a caller bug: readers check lengths before pushing).
    pub fn push(&mut self, word: &str, row: &[f32]) -> bool {
        assert_eq!(row.len(), self.dim, "row length");
        if self.index.contains_key(word) {
            return false;
        }
        self.index.insert(word.to_owned(), self.words.len());
        self.words.push(word.to_owned());
        self.data.extend_from_slice(row);
        true
    }

    /// Width of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there is no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words, in file order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Row `i` (in file order).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All rows, `len x dim`, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The position of `word`, if present.
    pub fn index_of(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }

    /// The vector of `word`, if present.
    pub fn get(&self, word: &str) -> Option<&[f32]> {
        self.index_of(word).map(|i| self.row(i))
    }

    /// Reads a vector file of the given format (`None`: detected, see [`VectorFormat::detect`]).
    pub fn read(path: &Path, format: Option<VectorFormat>) -> Result<Vectors> {
        Self::read_filtered(path, format, None, |_| true)
    }

    /// Reads the words of a vector file for which `keep` returns true (so a 400,000-word GloVe
    /// file costs only the vocabulary's rows), checking every line of the file. With
    /// `expected_dim`, a file of another width is an error at its first line, naming both
    /// widths.
    pub fn read_filtered(
        path: &Path,
        format: Option<VectorFormat>,
        expected_dim: Option<(usize, &str)>,
        keep: impl FnMut(&str) -> bool,
    ) -> Result<Vectors> {
        let name = path.display().to_string();
        let open = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
        let format = match format {
            Some(f) => f,
            None => {
                let mut prefix = Vec::new();
                open()?.take(1 << 20).read_to_end(&mut prefix).map_err(|e| Error::io(path, e))?;
                VectorFormat::detect(&prefix)
            }
        };
        let reader = BufReader::with_capacity(1 << 16, open()?);
        read_from(reader, format, &name, expected_dim, keep)
    }

    /// Writes the vectors in `format`, atomically (a reader never sees half a file).
    ///
    /// Fails, naming the word, if a word is empty or contains whitespace (no layout can hold it),
    /// or if a value is not finite.
    pub fn write(&self, path: &Path, format: VectorFormat) -> Result<()> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes, format, &path.display().to_string())?;
        stagewise_core::write_atomically(path, &bytes).map_err(|e| Error::io(path, e))
    }

    /// Writes the vectors in `format` to `out`; `name` names the destination in errors.
    pub fn write_to(&self, out: impl Write, format: VectorFormat, name: &str) -> Result<()> {
        for (i, word) in self.words.iter().enumerate() {
            if word.is_empty() || word.chars().any(char::is_whitespace) {
                return Err(Error::data(
                    name,
                    format!("word {} `{word}` is empty or contains whitespace", i + 1),
                ));
            }
            if let Some(x) = self.row(i).iter().find(|x| !x.is_finite()) {
                return Err(Error::data(
                    name,
                    format!("the vector of `{word}` holds {x}, not a finite number"),
                ));
            }
        }
        let mut out = BufWriter::new(out);
        let io = |e: std::io::Error| Error::io(name, e);
        if format.has_header() {
            writeln!(out, "{} {}", self.len(), self.dim).map_err(io)?;
        }
        for (i, word) in self.words.iter().enumerate() {
            let row = self.row(i);
            match format {
                VectorFormat::Word2vecBinary => binary::write_record(&mut out, word, row),
                _ => text::write_record(&mut out, word, row, format == VectorFormat::Fasttext),
            }
            .map_err(io)?;
        }
        out.flush().map_err(io)
    }
}

/// Reads a whole vector file from `reader` (see [`Vectors::read_filtered`]).
pub fn read_from(
    reader: impl BufRead,
    format: VectorFormat,
    name: &str,
    expected_dim: Option<(usize, &str)>,
    keep: impl FnMut(&str) -> bool,
) -> Result<Vectors> {
    let vectors = match format {
        VectorFormat::Word2vecBinary => binary::read(reader, name, expected_dim, keep)?,
        _ => text::read(reader, format.has_header(), name, expected_dim, keep)?,
    };
    Ok(vectors)
}

/// The error for a file whose width is not the expected one.
fn dim_mismatch(name: &str, line: usize, dim: usize, expected: (usize, &str)) -> Error {
    Error::data(
        format!("{name}:{line}"),
        format!("vectors of dimension {dim}, but {} is {}", expected.1, expected.0),
    )
}

/// The error for a header whose count the records do not match.
fn count_mismatch(name: &str, line: usize, promised: usize, found: usize) -> Error {
    let what = if found < promised {
        format!("the header promises {promised} words but the file ends after {found}")
    } else {
        format!("more words than the {promised} the header promises")
    };
    Error::data(format!("{name}:{line}"), what)
}
