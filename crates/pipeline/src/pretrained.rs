//! Starting the embedding table from a word-vector file (`[embedding] pretrained = "FILE"`), as a
//! classic setup starts from `glove.6B.100d.txt`.
//!
//! Each vocabulary word (id 0, `<unk>`, included) is looked up in the file: exact match first,
//! then the word lower-cased (so a case-keeping tokenizer still finds GloVe's lower-cased words;
//! the file's own words are never lower-cased). Found words take the file's vector; the others
//! keep the table's configured `init`. Only the vocabulary's rows of the file are kept in memory,
//! but every line is checked.

use stagewise_core::{Error, Params, Result, Tokens};
use stagewise_embedding::EmbeddingConfig;
use stagewise_vectorizer::{Vectorizer, Vectors};
use std::collections::HashSet;

/// How much of the vocabulary a vector file covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The file, as the config gives it.
    pub file: String,
    /// Vocabulary words that took the file's vector.
    pub found: usize,
    /// Vocabulary size.
    pub total: usize,
}

impl Coverage {
    /// The one line a run prints:
    /// `pretrained: 8,412 of 10,000 words from FILE (84.1 %); 1,588 initialised`.
    pub fn line(&self) -> String {
        let pct = 100.0 * self.found as f64 / self.total.max(1) as f64;
        format!(
            "pretrained: {} of {} words from {} ({pct:.1} %); {} initialised",
            thousands(self.found),
            thousands(self.total),
            self.file,
            thousands(self.total - self.found)
        )
    }
}

/// `n` with a comma every three digits (`8412` -> `8,412`).
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Overwrites the rows of `embedding.weight` in `params` for the vocabulary words found in the
/// config's `pretrained` file, and says how many were found; `None` if the config names no file.
///
/// Fails with the file and line if the file is malformed or its width is not `embedding.dim`,
/// and if the parameters hold no `embedding.weight` of `V x dim`.
pub fn load_pretrained(
    config: &EmbeddingConfig,
    vectorizer: &impl Vectorizer,
    params: &mut Params<f32>,
) -> Result<Option<Coverage>> {
    let Some((path, format)) = config.pretrained() else {
        return Ok(None);
    };
    let vocab = vectorizer.vocab_size();
    let ids: Vec<u32> = (0..vocab as u32).collect();
    let mut words = Tokens::new();
    vectorizer.decode(&ids, &mut words)?;
    let wanted: HashSet<String> = words.iter().flat_map(|w| [w.to_owned(), w.to_lowercase()]).collect();
    let dim = config.dim();
    let vectors = Vectors::read_filtered(path, format, Some((dim, "embedding.dim")), |w| wanted.contains(w))?;
    let id = params
        .layout()
        .find("embedding.weight")
        .ok_or_else(|| Error::config("embedding.pretrained", "the model has no embedding.weight table"))?;
    let table = params.get_mut(id);
    if table.len() != vocab * dim {
        return Err(Error::shape("embedding.weight", [vocab, dim], table.len()));
    }
    let found = fill_rows(&words, &vectors, table);
    Ok(Some(Coverage { file: path.display().to_string(), found, total: vocab }))
}

/// Copies the vector of each word of `words` found in `vectors` (exact match first, then the word
/// lower-cased) into its row of `table` (`words.len() x vectors.dim()`), leaving the other rows
/// alone; returns how many were found.
pub fn fill_rows(words: &Tokens, vectors: &Vectors, table: &mut [f32]) -> usize {
    let mut found = 0;
    for (row, word) in table.chunks_exact_mut(vectors.dim().max(1)).zip(words.iter()) {
        if let Some(v) = vectors.get(word).or_else(|| vectors.get(&word.to_lowercase())) {
            row.copy_from_slice(v);
            found += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_first_then_the_word_lower_cased() {
        let mut vectors = Vectors::new(2);
        vectors.push("The", &[1.0, 1.0]);
        vectors.push("the", &[2.0, 2.0]);
        vectors.push("king", &[3.0, 3.0]);
        vectors.push("QUEEN", &[4.0, 4.0]);
        let words: Tokens = ["<unk>", "The", "the", "King", "queen", "QUEEN"].into_iter().collect();
        let mut table = vec![0.0; 12];
        assert_eq!(fill_rows(&words, &vectors, &mut table), 4);
        // `QUEEN`'s own row matched exactly; `queen` is not upper-cased to find it.
        assert_eq!(table, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 0.0, 0.0, 4.0, 4.0]);
    }

    #[test]
    fn counts_have_thousands_separators() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (8412, "8,412"), (1234567, "1,234,567")];
        for (n, s) in cases {
            assert_eq!(thousands(n), s);
        }
        let c = Coverage { file: "glove.txt".into(), found: 8412, total: 10000 };
        assert_eq!(c.line(), "pretrained: 8,412 of 10,000 words from glove.txt (84.1 %); 1,588 initialised");
    }
}
