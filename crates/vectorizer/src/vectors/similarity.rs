//! What word vectors are for: nearest neighbours by cosine, and the Spearman correlation with
//! human similarity judgements (WordSim-353), as gensim's `most_similar` and
//! `evaluate_word_pairs` compute them.

use super::Vectors;
use stagewise_core::{Error, Result};
use std::path::Path;

/// The cosine similarity of two vectors (0 if either is zero).
pub fn cosine(x: &[f32], y: &[f32]) -> f32 {
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (f64::from(a), f64::from(b));
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx == 0.0 || yy == 0.0 { 0.0 } else { (xy / (xx.sqrt() * yy.sqrt())) as f32 }
}

impl Vectors {
    /// The `k` words nearest to `word` by cosine, most similar first (ties in file order), the
    /// word itself excluded; `None` if `word` is not there.
    pub fn neighbors(&self, word: &str, k: usize) -> Option<Vec<(&str, f32)>> {
        let i = self.index_of(word)?;
        let norms: Vec<f32> =
            (0..self.len()).map(|j| self.row(j).iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
        let query = self.row(i);
        let mut scored: Vec<(usize, f32)> = (0..self.len())
            .filter(|&j| j != i)
            .map(|j| {
                let d: f32 = query.iter().zip(self.row(j)).map(|(a, b)| a * b).sum();
                let n = norms[i] * norms[j];
                (j, if n == 0.0 { 0.0 } else { d / n })
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Some(scored.into_iter().take(k).map(|(j, s)| (self.words[j].as_str(), s)).collect())
    }

    /// The vector of `word`, else of `word` lower-cased (word-similarity sets capitalise some
    /// words; gensim compares case-insensitively too).
    fn get_folded(&self, word: &str) -> Option<&[f32]> {
        self.get(word).or_else(|| self.get(&word.to_lowercase()))
    }
}

/// One judged pair of a word-similarity set.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// First word.
    pub a: String,
    /// Second word.
    pub b: String,
    /// The human score.
    pub score: f64,
}

/// Reads a word-similarity file: `word1<TAB>word2<TAB>score` per line (any whitespace works),
/// `#` comment lines and blank lines skipped (gensim's `wordsim353.tsv` layout). A malformed line
/// is an error naming file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = || format!("{name}:{}", n + 1);
        let [a, b, score] = fields[..] else {
            return Err(Error::data(
                at(),
                format!("expected `word1 word2 score`, found {} fields", fields.len()),
            ));
        };
        let score: f64 = score
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite())
            .ok_or_else(|| Error::data(at(), format!("the score `{score}` is not a number")))?;
        pairs.push(Pair { a: a.to_owned(), b: b.to_owned(), score });
    }
    Ok(pairs)
}

/// The agreement of vectors with a word-similarity set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairEvaluation {
    /// Spearman's rank correlation between the human scores and the cosines (NaN with fewer
    /// than two pairs).
    pub spearman: f64,
    /// Pairs whose two words have vectors (the others are left out, as gensim does).
    pub used: usize,
    /// Pairs in the set.
    pub total: usize,
}

/// Scores `pairs` by cosine and correlates with the human scores over the pairs whose words are
/// both known (looked up as written, then lower-cased).
pub fn evaluate_pairs(vectors: &Vectors, pairs: &[Pair]) -> PairEvaluation {
    let (mut human, mut model) = (Vec::new(), Vec::new());
    for p in pairs {
        if let (Some(x), Some(y)) = (vectors.get_folded(&p.a), vectors.get_folded(&p.b)) {
            human.push(p.score);
            model.push(f64::from(cosine(x, y)));
        }
    }
    PairEvaluation { spearman: spearman(&human, &model), used: human.len(), total: pairs.len() }
}

/// Spearman's rho: Pearson's correlation of the ranks, ties given their mean rank (as
/// `scipy.stats.spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if x.len() != y.len() || x.len() < 2 {
        return f64::NAN;
    }
    pearson(&ranks(x), &ranks(y))
}

/// 1-based ranks, ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values checked against `scipy.stats.spearmanr`.
    #[test]
    fn spearman_matches_scipy_with_ties() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // spearmanr([1, 2, 2, 3, 5], [2, 1, 4, 4, 3]).statistic = 0.3947368421052632
        let r = spearman(&[1.0, 2.0, 2.0, 3.0, 5.0], &[2.0, 1.0, 4.0, 4.0, 3.0]);
        assert!((r - 0.394_736_842_105_263_2).abs() < 1e-12, "{r}");
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn neighbors_rank_by_cosine_and_skip_the_word() {
        let mut v = Vectors::new(2);
        v.push("a", &[1.0, 0.0]);
        v.push("b", &[0.0, 1.0]);
        v.push("c", &[2.0, 0.1]);
        v.push("d", &[-1.0, 0.0]);
        let n = v.neighbors("a", 2).unwrap();
        assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>(), ["c", "b"]);
        assert!((n[0].1 - cosine(&[1.0, 0.0], &[2.0, 0.1])).abs() < 1e-7);
        assert_eq!(v.neighbors("zz", 3), None);
        assert_eq!(v.neighbors("a", 10).unwrap().len(), 3);
    }

    #[test]
    fn pairs_use_known_words_only_and_bad_lines_are_named() {
        let path = std::env::temp_dir().join(format!("stagewise-pairs-{}.tsv", std::process::id()));
        std::fs::write(&path, "# comment\nA\tb\t9\na\tc\t1\nb\tc\t5\nx\ta\t3\n").unwrap();
        let pairs = read_pairs(&path).unwrap();
        assert_eq!(pairs.len(), 4);
        let mut v = Vectors::new(2);
        v.push("a", &[1.0, 0.0]);
        v.push("b", &[1.0, 0.1]);
        v.push("c", &[0.0, 1.0]);
        let e = evaluate_pairs(&v, &pairs);
        assert_eq!((e.used, e.total), (3, 4));
        assert!((e.spearman - 1.0).abs() < 1e-12, "{e:?}");
        std::fs::write(&path, "a b 1\na b\n").unwrap();
        let err = read_pairs(&path).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("found 2 fields"), "{err}");
        std::fs::write(&path, "a b x\n").unwrap();
        assert!(read_pairs(&path).unwrap_err().to_string().contains("`x` is not a number"));
        std::fs::remove_file(&path).ok();
    }
}
