//! Labelled texts for the `classify` task: a CSV file with a header row naming a text column and
//! a label column (read with the `csv` crate: quoted fields may hold commas, doubled quotes and
//! line breaks), and the labels' mapping to class ids.
//!
//! Every problem with a file is a one-line error naming the file and the line: a missing column,
//! an empty text or label, a row with another number of fields than the header (a ragged row, or
//! a file that is not CSV at all), invalid UTF-8.

use stagewise_core::{Error, Result};
use std::path::Path;

/// One CSV file's labelled texts, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelledTexts {
    /// The text of each row.
    pub texts: Vec<String>,
    /// The label of each row, as written.
    pub labels: Vec<String>,
    /// The line each row starts on (1-based; the header is line 1), for error messages.
    pub lines: Vec<u64>,
}

impl LabelledTexts {
    /// Rows.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether the file had no rows after its header.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// `file:line`, how errors place a row.
fn place(path: &Path, line: u64) -> String {
    format!("{}:{line}", path.display())
}

/// The line a CSV error happened on, if the crate knows it.
fn csv_line(e: &csv::Error) -> Option<u64> {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos: Some(pos), .. } => Some(pos.line()),
        csv::ErrorKind::Utf8 { pos: Some(pos), .. } => Some(pos.line()),
        csv::ErrorKind::Deserialize { pos: Some(pos), .. } => Some(pos.line()),
        _ => None,
    }
}

/// A CSV error as a one-line error naming `path` and the line.
fn csv_error(path: &Path, e: &csv::Error) -> Error {
    if let csv::ErrorKind::Io(io) = e.kind() {
        return Error::io(path, std::io::Error::new(io.kind(), io.to_string()));
    }
    let at = csv_line(e).map_or_else(|| path.display().to_string(), |l| place(path, l));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
            "a row of {len} fields where the header has {expected_len} (a ragged row, or not a CSV file)"
        ),
        _ => e.to_string(),
    };
    Error::data(at, message.replace('\n', " "))
}

/// The field of `record` at `column` as UTF-8, or an error naming the file, the line and the
/// column.
fn utf8_field<'a>(
    record: &'a csv::ByteRecord,
    column: usize,
    name: &str,
    path: &Path,
    line: u64,
) -> Result<&'a str> {
    let bytes = record.get(column).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::data(
            place(path, line),
            format!("invalid UTF-8 in column `{name}` at byte {} of the field", e.valid_up_to()),
        )
    })
}

/// Reads `path`: a header row naming `text_column` and `label_column` (any order, other columns
/// ignored), then one row per text. Fails, naming the file and line, on any problem listed in the
/// module docs, and on a file with no rows.
pub fn read_csv(path: &Path, text_column: &str, label_column: &str) -> Result<LabelledTexts> {
    let bytes = stagewise_core::read_regular_file(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
    let header = reader.byte_headers().map_err(|e| csv_error(path, &e))?.clone();
    if header.is_empty() {
        return Err(Error::data(place(path, 1), "the file is empty: expected a header row"));
    }
    let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).trim().to_owned()).collect();
    let find = |column: &str| {
        names.iter().position(|n| n == column).ok_or_else(|| {
            Error::data(
                place(path, 1),
                format!("no column `{column}` in the header (it names {})", quoted_list(&names)),
            )
        })
    };
    let (text_at, label_at) = (find(text_column)?, find(label_column)?);
    let mut out = LabelledTexts::default();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, &e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        let text = utf8_field(&record, text_at, text_column, path, line)?;
        let label = utf8_field(&record, label_at, label_column, path, line)?;
        for (value, column) in [(text, text_column), (label, label_column)] {
            if value.trim().is_empty() {
                return Err(Error::data(place(path, line), format!("empty `{column}` field")));
            }
        }
        out.texts.push(text.to_owned());
        out.labels.push(label.to_owned());
        out.lines.push(line);
    }
    if out.is_empty() {
        return Err(Error::data(path.display().to_string(), "no rows after the header"));
    }
    Ok(out)
}

/// `a`, `b` and `c` as "`a`, `b`, `c`".
fn quoted_list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The classes of a training set: its distinct labels in sorted (byte) order; class id `i` is
/// `labels[i]`.
pub fn classes_of(labels: &[String]) -> Vec<String> {
    let mut classes = labels.to_vec();
    classes.sort();
    classes.dedup();
    classes
}

/// The class id of every label of `texts`, given the `classes` fitted on the training file.
/// A label that is not a class (never seen in training) is an error naming it, its file and line.
pub fn class_ids(texts: &LabelledTexts, classes: &[String], path: &Path) -> Result<Vec<u32>> {
    texts
        .labels
        .iter()
        .zip(&texts.lines)
        .map(|(label, &line)| match classes.binary_search(label) {
            Ok(id) => Ok(id as u32),
            Err(_) => Err(Error::data(
                place(path, line),
                format!(
                    "label `{label}` never appears in the training file (its classes: {})",
                    quoted_list(classes)
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("stagewise-texts-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("temp dir");
            Dir(d)
        }
        fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).expect("write");
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    fn err(dir: &Dir, name: &str, bytes: &[u8]) -> String {
        let p = dir.file(name, bytes);
        read_csv(&p, "text", "label").expect_err("bad input").to_string()
    }

    #[test]
    fn quoted_fields_and_column_order_and_extra_columns() {
        let dir = Dir::new("ok");
        let p = dir.file("a.csv", b"id,label,text\n1,b,\"one, \"\"two\"\"\nthree\"\n2,a,plain\n");
        let t = read_csv(&p, "text", "label").expect("valid");
        assert_eq!(t.texts, ["one, \"two\"\nthree", "plain"]);
        assert_eq!(t.labels, ["b", "a"]);
        assert_eq!(t.lines, [2, 4], "a row starts on the line after a quoted line break");
        let classes = classes_of(&t.labels);
        assert_eq!(classes, ["a", "b"]);
        assert_eq!(class_ids(&t, &classes, &p).expect("known"), [1, 0]);
        let unseen = class_ids(&t, &["a".to_owned()], &p).expect_err("b unseen").to_string();
        assert!(unseen.contains("`b`") && unseen.contains("a.csv:2"), "{unseen}");
    }

    #[test]
    fn each_bad_input_names_the_file_and_line() {
        let dir = Dir::new("bad");
        let cases: [(&str, &[u8], &str); 7] = [
            ("missing.csv", b"text,category\nhello,a\n", "missing.csv:1: no column `label`"),
            ("empty_text.csv", b"text,label\nhello,a\n  ,b\n", "empty_text.csv:3: empty `text`"),
            ("ragged.csv", b"text,label\nhello,a\nworld,b,c\n", "ragged.csv:3: a row of 3 fields"),
            (
                "utf8.csv",
                b"text,label\nhello,a\n\"caf\xe9\",b\n",
                "utf8.csv:3: invalid UTF-8 in column `text`",
            ),
            ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00,\x01\n", "binary.csv:1: no column `text`"),
            (
                "prose.txt",
                b"It was a dark night, and cold.\nNothing more.\n",
                "prose.txt:1: no column `text`",
            ),
            ("empty.csv", b"", "empty.csv:1: the file is empty"),
        ];
        for (name, bytes, want) in cases {
            let got = err(&dir, name, bytes);
            assert!(got.contains(want) && !got.contains('\n'), "{name}: {got}");
        }
        let got = err(&dir, "header_only.csv", b"text,label\n");
        assert!(got.contains("header_only.csv") && got.contains("no rows"), "{got}");
        let missing = read_csv(&dir.0.join("nope.csv"), "text", "label").expect_err("missing").to_string();
        assert!(missing.contains("nope.csv"), "{missing}");
    }

    proptest! {
        /// Any texts and labels (commas, quotes, line breaks, any Unicode) written by a CSV writer
        /// read back unchanged.
        #[test]
        fn csv_round_trips_arbitrary_strings(
            rows in proptest::collection::vec(
                ("[a-z,\"\n\r ]{0,6}[a-z,\"][a-z,\"\n\r ]{0,6}|\\PC{1,12}", "[a-z,\"\n]{0,3}[a-z\"]"),
                1..12,
            )
        ) {
            let rows: Vec<(String, String)> =
                rows.into_iter().filter(|(t, _)| !t.trim().is_empty()).collect();
            prop_assume!(!rows.is_empty());
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["text", "label"]).expect("header");
            for (t, l) in &rows {
                w.write_record([t, l]).expect("row");
            }
            let bytes = w.into_inner().expect("flush");
            let dir = Dir::new("prop");
            let p = dir.file("r.csv", &bytes);
            let got = read_csv(&p, "text", "label").expect("round trip");
            let texts: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
            let labels: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
            prop_assert_eq!(got.texts, texts);
            prop_assert_eq!(got.labels, labels);
        }
    }
}
