//! The carrier between the tokenize and vectorize boxes: a token list stored in one arena.

use std::fmt;
use std::iter::FusedIterator;

/// A list of tokens, stored compactly: every token's text back to back in one `String`, and the
/// byte offset where each token ends.
///
/// The tokenize box writes it and the vectorize box reads it (like the encodings HF tokenizers
/// passes between its stages). A corpus has about a million tokens; one `String` per token would
/// cost a heap allocation and 24 bytes of header each, about ten times the text itself, and the
/// allocator keeps that memory after it is freed. Here a token costs its bytes plus one `usize`,
/// and a cleared list keeps its capacity, so a reused `Tokens` allocates nothing once warm.
///
/// Tokens may be empty and may contain any text; the list only records where each one ends.
///
/// ```
/// use stagewise_core::Tokens;
///
/// let mut tokens = Tokens::new();
/// tokens.push("the");
/// tokens.push_with(|arena| arena.push_str("CAT"));
/// assert_eq!(tokens.len(), 2);
/// assert_eq!(tokens.get(1), Some("CAT"));
/// assert_eq!(tokens.iter().rev().collect::<Vec<_>>(), ["CAT", "the"]);
/// assert_eq!(tokens, Tokens::from(&["the", "CAT"][..]));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Tokens {
    /// Every token's text, back to back.
    text: String,
    /// `ends[i]` is the byte offset in `text` where token `i` ends; token `i` starts where token
    /// `i - 1` ends (or at 0). Non-decreasing, and every offset is a `char` boundary.
    ends: Vec<usize>,
}

impl Tokens {
    /// An empty list; allocates nothing until the first token is pushed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every token but keeps the allocated capacity, so a list reused across calls (a
    /// stage's output buffer) stops allocating once it has held its largest input.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Appends one token (copied into the arena).
    pub fn push(&mut self, token: &str) {
        self.text.push_str(token);
        self.ends.push(self.text.len());
    }

    /// Appends one token written by `f` straight into the arena: the token is whatever `f`
    /// appends (possibly nothing, an empty token). A tokenizer that transforms its input (a
    /// lower-casing one, say) thus writes each token in place instead of building a `String`
    /// per token and copying it.
    ///
    /// `f` must only append: the text before the current end belongs to earlier tokens.
    ///
    /// # Panics
    /// If `f` shortens the arena below its length before the call (it removed earlier tokens'
    /// text).
    pub fn push_with(&mut self, f: impl FnOnce(&mut String)) {
        let start = self.text.len();
        f(&mut self.text);
        assert!(
            self.text.len() >= start,
            "Tokens::push_with: the closure removed text of earlier tokens (length {start} became {})",
            self.text.len()
        );
        self.ends.push(self.text.len());
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// `true` if there are no tokens (an empty token still counts as one).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Token `i`, or `None` if `i >= len()`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).and_then(|prev| self.ends.get(prev)).copied().unwrap_or(0);
        self.text.get(start..end)
    }

    /// The tokens in order, borrowed from the arena; also iterable backwards and of known length.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + FusedIterator + Clone {
        TokensIter { text: &self.text, ends: &self.ends, front: 0 }
    }

    /// Copies the tokens out as owned strings: for tests and for callers that need them
    /// separately (it allocates one `String` per token, which this type exists to avoid).
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// The iterator of [`Tokens::iter`] and of `&Tokens`: walks the end offsets, slicing the arena.
#[derive(Clone, Debug)]
pub struct TokensIter<'a> {
    /// The whole arena.
    text: &'a str,
    /// End offsets of the tokens not yet returned.
    ends: &'a [usize],
    /// Where the first token not yet returned from the front starts.
    front: usize,
}

impl<'a> Iterator for TokensIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (&end, rest) = self.ends.split_first()?;
        let token = &self.text[self.front..end];
        self.front = end;
        self.ends = rest;
        Some(token)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ends.len(), Some(self.ends.len()))
    }
}

impl DoubleEndedIterator for TokensIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (&end, rest) = self.ends.split_last()?;
        let start = rest.last().copied().unwrap_or(self.front);
        self.ends = rest;
        Some(&self.text[start..end])
    }
}

impl ExactSizeIterator for TokensIter<'_> {}

impl FusedIterator for TokensIter<'_> {}

impl<'a> IntoIterator for &'a Tokens {
    type Item = &'a str;
    type IntoIter = TokensIter<'a>;

    /// `for token in &tokens`, and passing `&tokens` where any iterator of `&str` is expected (a
    /// vocabulary trainer's `feed`, say).
    fn into_iter(self) -> TokensIter<'a> {
        TokensIter { text: &self.text, ends: &self.ends, front: 0 }
    }
}

impl<'s> FromIterator<&'s str> for Tokens {
    /// Collects borrowed tokens into one arena, for tests and callers holding a token list.
    fn from_iter<I: IntoIterator<Item = &'s str>>(iter: I) -> Self {
        let mut tokens = Tokens::new();
        tokens.extend(iter);
        tokens
    }
}

impl<'s> Extend<&'s str> for Tokens {
    /// Appends each token in order, like [`Tokens::push`].
    fn extend<I: IntoIterator<Item = &'s str>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.ends.reserve(iter.size_hint().0);
        for token in iter {
            self.push(token);
        }
    }
}

impl From<&[&str]> for Tokens {
    /// The tokens of a slice, in order: `Tokens::from(&["the", "cat"][..])`.
    fn from(tokens: &[&str]) -> Self {
        tokens.iter().copied().collect()
    }
}

impl fmt::Debug for Tokens {
    /// Prints the token list, `["the", "cat"]`, rather than the arena and its offsets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary token lists: empty tokens, ASCII, non-ASCII and whitespace all included.
    fn token_lists() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(prop_oneof![Just(String::new()), "[a-zé ]{0,4}", any::<String>()], 0..40)
    }

    fn check_matches(tokens: &Tokens, expected: &[String]) -> Result<(), TestCaseError> {
        prop_assert_eq!(tokens.len(), expected.len());
        prop_assert_eq!(tokens.is_empty(), expected.is_empty());
        for (i, e) in expected.iter().enumerate() {
            prop_assert_eq!(tokens.get(i), Some(e.as_str()));
        }
        prop_assert_eq!(tokens.get(expected.len()), None);
        prop_assert_eq!(tokens.iter().len(), expected.len());
        prop_assert_eq!(&tokens.to_vec(), expected);
        prop_assert_eq!(
            tokens.iter().collect::<Vec<_>>(),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
        let mut backwards = tokens.iter().rev().map(str::to_owned).collect::<Vec<_>>();
        backwards.reverse();
        prop_assert_eq!(&backwards, expected);
        prop_assert_eq!(format!("{tokens:?}"), format!("{expected:?}"));
        Ok(())
    }

    proptest! {
        #[test]
        fn push_get_and_iter_round_trip(list in token_lists()) {
            let mut pushed = Tokens::new();
            let mut written = Tokens::new();
            for t in &list {
                pushed.push(t);
                written.push_with(|arena| arena.push_str(t));
            }
            check_matches(&pushed, &list)?;
            prop_assert_eq!(&written, &pushed);
            let collected: Tokens = list.iter().map(String::as_str).collect();
            prop_assert_eq!(&collected, &pushed);
            let borrowed: Vec<&str> = list.iter().map(String::as_str).collect();
            prop_assert_eq!(Tokens::from(&borrowed[..]), pushed.clone());
            prop_assert_eq!(pushed.clone(), pushed);
        }

        #[test]
        fn clear_then_reuse_holds_only_the_new_tokens(a in token_lists(), b in token_lists()) {
            let mut tokens: Tokens = a.iter().map(String::as_str).collect();
            tokens.clear();
            check_matches(&tokens, &[])?;
            for t in &b {
                tokens.push(t);
            }
            check_matches(&tokens, &b)?;
            prop_assert_eq!(tokens, b.iter().map(String::as_str).collect::<Tokens>());
        }

        #[test]
        fn iterating_from_both_ends_meets_in_the_middle(list in token_lists(), fronts in 0usize..50) {
            let tokens: Tokens = list.iter().map(String::as_str).collect();
            let mut iter = tokens.iter();
            let mut seen = Vec::new();
            for _ in 0..fronts.min(list.len()) {
                seen.extend(iter.next());
            }
            prop_assert_eq!(iter.len(), list.len() - seen.len());
            let mut tail: Vec<&str> = iter.by_ref().rev().collect();
            tail.reverse();
            seen.extend(tail);
            prop_assert_eq!(seen, list.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(iter.next(), None);
            prop_assert_eq!(iter.next_back(), None);
        }
    }

    #[test]
    fn clear_keeps_capacity_and_empty_tokens_count() {
        let mut tokens = Tokens::from(&["a", "", "b"][..]);
        assert_eq!(tokens.to_vec(), ["a", "", "b"]);
        let capacity = (tokens.text.capacity(), tokens.ends.capacity());
        tokens.clear();
        assert!(tokens.is_empty());
        assert_eq!((tokens.text.capacity(), tokens.ends.capacity()), capacity);
        tokens.push_with(|_| {});
        assert_eq!((tokens.len(), tokens.get(0)), (1, Some("")));
        assert_eq!(format!("{tokens:?}"), r#"[""]"#);
    }

    #[test]
    fn push_with_writes_in_place() {
        let mut tokens = Tokens::new();
        for word in ["ΑΒΓ", "Déjà"] {
            tokens.push_with(|arena| arena.extend(word.chars().flat_map(char::to_lowercase)));
        }
        assert_eq!(tokens.to_vec(), ["αβγ", "déjà"]);
        let by_ref: Vec<&str> = (&tokens).into_iter().collect();
        assert_eq!(by_ref, ["αβγ", "déjà"]);
    }

    #[test]
    #[should_panic(expected = "removed text of earlier tokens")]
    fn push_with_refuses_to_shorten_earlier_tokens() {
        let mut tokens = Tokens::from(&["abc"][..]);
        tokens.push_with(|arena| {
            arena.pop();
        });
    }
}
