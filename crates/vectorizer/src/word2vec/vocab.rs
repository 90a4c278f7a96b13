//! The word2vec vocabulary: counts, the subsampling thresholds and the negative-sampling table,
//! exactly as gensim's `Word2Vec.prepare_vocab` and `make_cum_table` define them.

use stagewise_core::{Error, Result};
use std::collections::HashMap;

/// gensim's `cum_table` domain: the table's last entry.
pub const CUM_TABLE_DOMAIN: u32 = (1 << 31) - 1;

/// Words kept for training (count at least `min_count`), most frequent first (ties by bytes),
/// with what sampling needs.
#[derive(Clone, Debug, PartialEq)]
pub struct W2vVocab {
    /// The words, most frequent first.
    pub words: Vec<String>,
    /// Each word's count in the corpus.
    pub counts: Vec<u64>,
    /// Each word's chance to be kept, scaled to `u32` (`u32::MAX`: always kept): a word is
    /// dropped when this is below the next 32 random bits.
    pub sample_int: Vec<u32>,
    /// Cumulative `count^0.75`, scaled to [`CUM_TABLE_DOMAIN`]: a negative is the first index
    /// whose entry exceeds a uniform draw below the last entry (`bisect_left`).
    pub cum_table: Vec<u32>,
    /// `guide[b]`: the first index whose `cum_table` entry is at least `b << GUIDE_SHIFT`, so a
    /// draw bisects only the few entries of its bucket (the same index as bisecting the whole
    /// table, in a fraction of the cache misses).
    guide: Vec<u32>,
    index: HashMap<String, u32>,
}

/// Bucket width of the negative table's guide: `2^31 >> 15` = 65,536 buckets.
const GUIDE_SHIFT: u32 = 15;

impl W2vVocab {
    /// Counts `tokens`, keeps words seen at least `min_count` times and computes gensim's
    /// subsampling thresholds for `sample` (0: no subsampling) and its unigram^0.75 table.
    ///
    /// Errors if no word is frequent enough.
    pub fn build<'a>(tokens: impl IntoIterator<Item = &'a str>, min_count: u64, sample: f64) -> Result<Self> {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for t in tokens {
            *counts.entry(t).or_insert(0) += 1;
        }
        let mut kept: Vec<(&str, u64)> = counts.into_iter().filter(|&(_, c)| c >= min_count.max(1)).collect();
        if kept.is_empty() {
            return Err(Error::config("--min-count", format!("no word occurs at least {min_count} times")));
        }
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        let retain_total: u64 = kept.iter().map(|&(_, c)| c).sum();
        // gensim: threshold_count = sample * retain_total (sample < 1), or the
        // int(sample * (3 + sqrt 5) / 2) shorthand (sample >= 1); no subsampling at 0.
        let threshold = if sample <= 0.0 {
            retain_total as f64
        } else if sample < 1.0 {
            sample * retain_total as f64
        } else {
            (sample * (3.0 + 5f64.sqrt()) / 2.0).floor()
        };
        let sample_int = kept
            .iter()
            .map(|&(_, c)| {
                let v = c as f64;
                let p = ((v / threshold).sqrt() + 1.0) * (threshold / v);
                if p < 1.0 { (p * u32::MAX as f64) as u32 } else { u32::MAX }
            })
            .collect();
        let pow: Vec<f64> = kept.iter().map(|&(_, c)| (c as f64).powf(0.75)).collect();
        let total: f64 = pow.iter().sum();
        let mut cumulative = 0.0;
        let cum_table: Vec<u32> = pow
            .iter()
            .map(|p| {
                cumulative += p;
                (cumulative / total * CUM_TABLE_DOMAIN as f64).round() as u32
            })
            .collect();
        let words: Vec<String> = kept.iter().map(|&(w, _)| w.to_owned()).collect();
        let index = words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        let buckets = (CUM_TABLE_DOMAIN >> GUIDE_SHIFT) as usize + 2;
        let guide = (0..buckets)
            .map(|b| cum_table.partition_point(|&c: &u32| u64::from(c) < (b as u64) << GUIDE_SHIFT) as u32)
            .collect();
        let counts = kept.iter().map(|&(_, c)| c).collect();
        Ok(W2vVocab { words, counts, sample_int, cum_table, guide, index })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there is no word (never, once built).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The index of `word`, if it was kept.
    pub fn id_of(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The negative drawn for the random number `r` (gensim:
    /// `bisect_left(cum_table, (next_random >> 16) % cum_table[-1])`).
    #[inline]
    pub fn negative(&self, next_random: u64) -> u32 {
        let table = &self.cum_table;
        let x = (next_random >> 16) % u64::from(table[table.len() - 1]);
        let b = (x >> GUIDE_SHIFT) as usize;
        let (lo, hi) = (self.guide[b] as usize, (self.guide[b + 1] as usize + 1).min(table.len()));
        (lo + table[lo..hi].partition_point(|&c| u64::from(c) < x)) as u32
    }

    /// [`W2vVocab::negative`] by bisecting the whole table (gensim's `bisect_left`), for tests.
    pub fn negative_by_bisection(&self, next_random: u64) -> u32 {
        let table = &self.cum_table;
        let x = (next_random >> 16) % u64::from(table[table.len() - 1]);
        table.partition_point(|&c| u64::from(c) < x) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_order_and_min_count() {
        let v = W2vVocab::build("b a b c b a d".split(' '), 2, 0.0).unwrap();
        assert_eq!((v.words.clone(), v.counts.clone()), (vec!["b".to_owned(), "a".into()], vec![3, 2]));
        assert_eq!((v.id_of("a"), v.id_of("c")), (Some(1), None));
        let err = W2vVocab::build("a b".split(' '), 5, 0.0).unwrap_err().to_string();
        assert!(err.contains("--min-count") && err.contains('5'), "{err}");
    }

    /// gensim's formula: keep probability `(sqrt(v / t) + 1) * t / v`, t = sample * total.
    #[test]
    fn subsampling_follows_gensim() {
        let text: Vec<&str> =
            std::iter::repeat_n("the", 900).chain(std::iter::repeat_n("cat", 100)).collect();
        let v = W2vVocab::build(text, 1, 0.01).unwrap();
        let t = 0.01 * 1000.0;
        let p_the = ((900.0f64 / t).sqrt() + 1.0) * t / 900.0;
        assert_eq!(v.sample_int[0], (p_the * u32::MAX as f64) as u32);
        let p_cat = ((100.0f64 / t).sqrt() + 1.0) * t / 100.0;
        assert!(p_cat < 1.0 && v.sample_int[1] == (p_cat * u32::MAX as f64) as u32);
        let none = W2vVocab::build(["a", "a", "b"], 1, 0.0).unwrap();
        assert!(none.sample_int.iter().all(|&s| s == u32::MAX));
    }

    /// The table ends at the domain, grows with count^0.75, and draws follow it.
    #[test]
    fn negative_table_is_unigram_to_the_three_quarters() {
        let text: Vec<&str> = std::iter::repeat_n("a", 16).chain(std::iter::repeat_n("b", 1)).collect();
        let v = W2vVocab::build(text, 1, 0.0).unwrap();
        assert_eq!(*v.cum_table.last().unwrap(), CUM_TABLE_DOMAIN);
        let share_a = v.cum_table[0] as f64 / CUM_TABLE_DOMAIN as f64;
        assert!((share_a - 8.0 / 9.0).abs() < 1e-9, "16^0.75 = 8 of 8 + 1: {share_a}");
        let mut next: u64 = 1;
        let mut hits = [0usize; 2];
        for _ in 0..90_000 {
            hits[v.negative(next) as usize] += 1;
            next = (next.wrapping_mul(25_214_903_917).wrapping_add(11)) & 0xFFFF_FFFF_FFFF;
        }
        assert!((hits[0] as f64 / 90_000.0 - 8.0 / 9.0).abs() < 0.01, "{hits:?}");
    }

    /// The guided search draws exactly what bisecting the whole table draws.
    #[test]
    fn guided_draws_equal_whole_table_bisection() {
        let mut rng = stagewise_core::Rng::new(9);
        let text: Vec<String> =
            (0..20_000).map(|_| format!("w{}", (rng.uniform().powi(4) * 3000.0) as u32)).collect();
        let v = W2vVocab::build(text.iter().map(String::as_str), 1, 0.0).unwrap();
        let mut next: u64 = 12345;
        for _ in 0..200_000 {
            assert_eq!(v.negative(next), v.negative_by_bisection(next), "{next}");
            next = (next.wrapping_mul(25_214_903_917).wrapping_add(11)) & 0xFFFF_FFFF_FFFF;
        }
        for x in [0u64, 1, (1 << 47) - 1, u64::from(CUM_TABLE_DOMAIN - 1) << 16] {
            assert_eq!(v.negative(x), v.negative_by_bisection(x), "{x}");
        }
    }
}
