//! Vector files: every format round-trips arbitrary words and finite floats to the bit, is
//! detected from its first bytes, and every malformed file is one error naming file and line.

use super::temp_path;
use proptest::prelude::*;
use stagewise_vectorizer::vectors::read_from;
use stagewise_vectorizer::{VectorFormat, Vectors};
use std::collections::BTreeSet;

/// Distinct words of any Unicode characters but whitespace, and a finite vector for each.
fn vector_set() -> impl Strategy<Value = (usize, Vec<(String, Vec<f32>)>)> {
    (1usize..6).prop_flat_map(|dim| {
        use prop::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        let finite = POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO;
        let words = prop::collection::btree_set("[^\\s]{1,8}", 0..12);
        (Just(dim), words, prop::collection::vec(prop::collection::vec(finite, dim), 12)).prop_map(
            |(dim, words, rows): (usize, BTreeSet<String>, Vec<Vec<f32>>)| {
                (dim, words.into_iter().zip(rows).collect())
            },
        )
    })
}

fn build(dim: usize, rows: &[(String, Vec<f32>)]) -> Vectors {
    let mut v = Vectors::new(dim);
    for (w, r) in rows {
        assert!(v.push(w, r));
    }
    v
}

/// Parses `bytes` as `format` (`None`: detected), as a file named `t.vec`.
fn parse(bytes: &[u8], format: Option<VectorFormat>, expected: Option<usize>) -> Result<Vectors, String> {
    let format = format.unwrap_or_else(|| VectorFormat::detect(bytes));
    read_from(bytes, format, "t.vec", expected.map(|d| (d, "embedding.dim")), |_| true)
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_format_round_trips_words_and_bits((dim, rows) in vector_set()) {
        let vectors = build(dim, &rows);
        for format in VectorFormat::ALL {
            if format == VectorFormat::Glove && vectors.is_empty() {
                continue; // a header-less file with no line has no dimension
            }
            let mut bytes = Vec::new();
            vectors.write_to(&mut bytes, format, "mem").unwrap();
            let named = parse(&bytes, Some(format), Some(dim)).unwrap();
            prop_assert_eq!(named.words(), vectors.words(), "{:?}", format);
            let bits = |v: &Vectors| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&named), bits(&vectors), "{:?}", format);
            // Detection reads the same (fastText's `.vec` is word2vec text).
            let detected = VectorFormat::detect(&bytes);
            let expected = if format == VectorFormat::Fasttext { VectorFormat::Word2vec } else { format };
            // (An empty file is the same bytes as text and binary; a GloVe file whose first line
            // is two integers reads as a header.)
            let ambiguous = vectors.is_empty()
                || (format == VectorFormat::Glove && dim == 1 && rows[0].0.parse::<u64>().is_ok());
            if !ambiguous {
                prop_assert_eq!(detected, expected);
            }
        }
    }
}

#[test]
fn files_round_trip_through_the_disk_and_detect_their_format() {
    let vectors =
        build(3, &[("der".into(), vec![1.5, -2.0, 0.25]), ("größe".into(), vec![0.0, 1e-30, 3e30])]);
    for format in VectorFormat::ALL {
        let path = temp_path(&format!("v.{}", format.name()));
        vectors.write(&path, format).unwrap();
        assert_eq!(Vectors::read(&path, None).unwrap(), vectors, "{format:?}");
        assert_eq!(Vectors::read(&path, Some(format)).unwrap(), vectors, "{format:?}");
        let only = Vectors::read_filtered(&path, None, Some((3, "dim")), |w| w == "größe").unwrap();
        assert_eq!(only.words(), ["größe"]);
        assert_eq!(only.get("größe"), Some(&[0.0, 1e-30, 3e30][..]));
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn gensim_s_binary_layout_without_newlines_reads_too() {
    let mut bytes = b"2 2\n".to_vec();
    for (w, r) in [("a", [1.0f32, 2.0]), ("b", [3.0, 4.0])] {
        bytes.extend_from_slice(w.as_bytes());
        bytes.push(b' ');
        r.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
    }
    assert_eq!(VectorFormat::detect(&bytes), VectorFormat::Word2vecBinary);
    let v = parse(&bytes, None, None).unwrap();
    assert_eq!((v.words(), v.row(1)), (&["a".to_owned(), "b".to_owned()][..], &[3.0, 4.0][..]));
}

#[test]
fn a_word_listed_twice_keeps_its_first_vector() {
    let v = parse(b"a 1 2\nb 3 4\na 5 6\n", Some(VectorFormat::Glove), None).unwrap();
    assert_eq!((v.len(), v.get("a")), (2, Some(&[1.0, 2.0][..])));
}

#[test]
fn format_names_parse_and_unknown_ones_are_named() {
    for f in VectorFormat::ALL {
        assert_eq!(VectorFormat::from_name(f.name(), "--format").unwrap(), f);
    }
    let err = VectorFormat::from_name("glov", "--format").unwrap_err().to_string();
    assert!(err.contains("--format") && err.contains("glov") && err.contains("word2vec_binary"), "{err}");
}

/// Each malformed text file, in each layout that can hold it, is an error naming file and line.
#[test]
fn bad_text_files_name_file_and_line() {
    type Case<'a> = (&'a [u8], Option<VectorFormat>, Option<usize>, &'a str, &'a str);
    let cases: [Case; 13] = [
        (
            b"2 3\na 1 2 3\nb 1 2\n",
            None,
            None,
            "t.vec:3",
            "`b` has 2 values, expected 3 (the header's dimension)",
        ),
        (
            b"2 3\na 1 2 3\nb 1 2 3 4\n",
            Some(VectorFormat::Word2vec),
            None,
            "t.vec:3",
            "has 4 values, expected 3",
        ),
        (
            b"a 1 2\nb 1 2 3\n",
            None,
            None,
            "t.vec:2",
            "`b` has 3 values, expected 2 (the dimension of the first line)",
        ),
        (
            b"3 2\na 1 2\nb 1 2\n",
            None,
            None,
            "t.vec:3",
            "the header promises 3 words but the file ends after 2",
        ),
        (b"1 2\na 1 2\nb 1 2\n", None, None, "t.vec:3", "more words than the 1 the header promises"),
        (b"2 2\na 1 2\nb 1 x\n", None, None, "t.vec:3", "`x` (value 2 of `b`) is not a number"),
        (b"a 1 2\nb 1e99 2\n", None, None, "t.vec:2", "`1e99` (value 1 of `b`) is not a finite number"),
        (b"a 1 2\nb nan 2\n", None, None, "t.vec:2", "is not a finite number"),
        (b"1 3\na 1 2 3\n", None, Some(4), "t.vec:1", "vectors of dimension 3, but embedding.dim is 4"),
        (b"a 1 2 3\n", None, Some(4), "t.vec:1", "vectors of dimension 3, but embedding.dim is 4"),
        (
            b"words and more\na 1\n",
            Some(VectorFormat::Word2vec),
            None,
            "t.vec:1",
            "expected a header `COUNT DIM`",
        ),
        (b"", Some(VectorFormat::Glove), None, "t.vec", "no vectors"),
        (b"a 1\n\xff 2\n", None, None, "t.vec:2", "not UTF-8"),
    ];
    for (bytes, format, expected, place, what) in cases {
        let err = parse(bytes, format, expected).unwrap_err();
        assert!(err.contains(place) && err.contains(what), "{:?}: {err}", String::from_utf8_lossy(bytes));
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn bad_binary_files_name_file_and_record_line() {
    let record = |w: &str, r: &[f32]| {
        let mut b = w.as_bytes().to_vec();
        b.push(b' ');
        r.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        b.push(b'\n');
        b
    };
    let file = |header: &str, records: &[Vec<u8>]| {
        let mut b = header.as_bytes().to_vec();
        records.iter().for_each(|r| b.extend_from_slice(r));
        b
    };
    let bin = Some(VectorFormat::Word2vecBinary);
    let (a, b) = (record("a", &[1.0, 2.0]), record("b", &[3.0, 4.0]));
    let truncated = file("2 2\n", &[a.clone(), b[..6].to_vec()]);
    let cases: [(Vec<u8>, Option<usize>, &str, &str); 7] = [
        (truncated, None, "t.vec:3", "the file ends inside the vector of `b`"),
        (
            file("3 2\n", &[a.clone(), b.clone()]),
            None,
            "t.vec:4",
            "promises 3 words but the file ends after 2",
        ),
        (
            file("1 2\n", &[a.clone(), b.clone()]),
            None,
            "t.vec:3",
            "more words than the 1 the header promises",
        ),
        (
            file("2 2\n", &[a.clone(), record("c", &[f32::NAN, 0.0])]),
            None,
            "t.vec:3",
            "value 1 of `c` is NaN",
        ),
        (
            file("2 2\n", &[a.clone(), b.clone()]),
            Some(3),
            "t.vec:1",
            "vectors of dimension 2, but embedding.dim is 3",
        ),
        (file("two 2\n", std::slice::from_ref(&a)), None, "t.vec:1", "expected a header `COUNT DIM`"),
        (file("1 2\n", &[b"abc".to_vec()]), None, "t.vec:2", "the file ends inside a word"),
    ];
    for (bytes, expected, place, what) in cases {
        let err = parse(&bytes, bin, expected).unwrap_err();
        assert!(err.contains(place) && err.contains(what), "{err}");
    }
}

#[test]
fn writing_refuses_words_no_layout_can_hold() {
    for word in ["two words", "", "tab\there"] {
        let mut v = Vectors::new(1);
        v.push(word, &[1.0]);
        let err = v.write_to(Vec::new(), VectorFormat::Word2vec, "out.vec").unwrap_err().to_string();
        assert!(err.contains("out.vec") && err.contains("whitespace"), "{err}");
    }
    let mut v = Vectors::new(1);
    v.push("inf", &[f32::INFINITY]);
    let err = v.write_to(Vec::new(), VectorFormat::Glove, "out.vec").unwrap_err().to_string();
    assert!(err.contains("not a finite number"), "{err}");
}
