//! The words of an entry's name, for the name index: what a name search (`/?q=`, and the API's
//! word filter) looks up instead of reading every entry.
//!
//! A word is a longest run of word characters: ASCII letters and digits, and the two other
//! characters that a case-insensitive regex takes for an ASCII letter (U+017F `ſ`, which matches
//! `s`, and U+212A KELVIN SIGN, which matches `k`), lowercased (those two to `s` and `k`). Anything
//! else separates words. The index holds, for each word, its prefixes of 1 to
//! [`MAX_PREFIX_CHARS`] characters (a word that long or longer: its first [`MAX_PREFIX_CHARS`]),
//! so a name of at most 256 characters has at most 256 index keys.
//!
//! The filter that asks "some word of the name begins with `term`" is the regex
//! [`word_pattern`]`(term)` with `$options: "i"`: `(?:^|[^0-9a-z])term`. Under `i` the class
//! `[^0-9a-z]` excludes exactly the word characters above, so the regex matches a name exactly
//! when one of its words begins with `term` (a unit test holds the two to each other), and the
//! index answers it exactly for a term of at most [`MAX_PREFIX_CHARS`] characters, a superset for a
//! longer one (which the filter then narrows).

use std::collections::BTreeSet;

/// Longest prefix of a word the index holds (see the module docs).
pub const MAX_PREFIX_CHARS: usize = 12;

/// The opening of [`word_pattern`].
const WORD_START: &str = "(?:^|[^0-9a-z])";

fn word_char(c: char) -> Option<char> {
    match c {
        'a'..='z' | '0'..='9' => Some(c),
        'A'..='Z' => Some(c.to_ascii_lowercase()),
        '\u{17F}' => Some('s'),
        '\u{212A}' => Some('k'),
        _ => None,
    }
}

/// The words of `text`, lowercased, in order, repeats included.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match word_char(c) {
            Some(c) => word.push(c),
            None if !word.is_empty() => out.push(std::mem::take(&mut word)),
            None => {}
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The index keys of a name: every prefix of each word, up to [`MAX_PREFIX_CHARS`] characters
/// (words are ASCII), each once, in order.
pub fn index_keys(name: &str) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for word in words(name) {
        for n in 1..=word.len().min(MAX_PREFIX_CHARS) {
            keys.insert(word[..n].to_string());
        }
    }
    keys.into_iter().collect()
}

/// The key a term is looked up under: itself, or its first [`MAX_PREFIX_CHARS`] characters.
/// `exact` says whether the key's list is exactly the names with a word beginning with `term`.
pub fn lookup_key(term: &str) -> (String, bool) {
    let n = term.len().min(MAX_PREFIX_CHARS);
    (term[..n].to_string(), n == term.len())
}

/// The `$regex` (with `$options: "i"`) that matches a name with a word beginning with `term`
/// (one word as [`words`] makes them).
pub fn word_pattern(term: &str) -> String {
    format!("{WORD_START}{term}")
}

/// The term of a pattern made by [`word_pattern`] under `$options: "i"`, if it is one.
pub fn term_of<'p>(pattern: &'p str, options: &str) -> Option<&'p str> {
    if options != "i" {
        return None;
    }
    let term = pattern.strip_prefix(WORD_START)?;
    (!term.is_empty()
        && term
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(term)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Filter;
    use serde_json::json;

    #[test]
    fn words_are_runs_of_letters_and_digits_lowercased() {
        assert_eq!(words("My-Registry_77 (EU)"), ["my", "registry", "77", "eu"]);
        assert_eq!(words("Caf\u{e9}\u{17F}x \u{212A}8s"), ["caf", "sx", "k8s"]);
        assert_eq!(words("--"), Vec::<String>::new());
        let keys = index_keys("ab abc-registry-of-everything");
        assert!(keys.contains(&"a".to_string()) && keys.contains(&"abc".to_string()));
        assert!(keys.contains(&"registry".to_string()));
        assert!(keys.contains(&"everything".to_string()));
        assert!(!keys.iter().any(|k| k.len() > MAX_PREFIX_CHARS));
        assert_eq!(lookup_key("reg"), ("reg".to_string(), true));
        assert_eq!(
            lookup_key("registrations1"),
            ("registration".to_string(), false)
        );
    }

    #[test]
    fn the_pattern_reads_back_and_nothing_else_does() {
        assert_eq!(term_of(&word_pattern("reg7"), "i"), Some("reg7"));
        assert_eq!(term_of(&word_pattern("reg7"), ""), None);
        assert_eq!(term_of(&word_pattern("reg7"), "im"), None);
        assert_eq!(term_of("(?:^|[^0-9a-z])Reg", "i"), None);
        assert_eq!(term_of("(?:^|[^0-9a-z])r.g", "i"), None);
        assert_eq!(term_of("(?:^|[^0-9a-z])", "i"), None);
    }

    /// The regex the filter evaluates and the index agree on every name: the index's answer is
    /// exactly the unindexed evaluation's.
    #[test]
    fn the_regex_matches_exactly_the_names_whose_words_begin_with_the_term() {
        let alphabet: Vec<char> = "aAbBkKsS09 -_.\u{17F}\u{212A}\u{e9}\u{130}\u{131}\u{1C5}"
            .chars()
            .collect();
        let terms = ["a", "ab", "k", "ks", "s", "s9", "0", "b0a", "kk"];
        let filters: Vec<Filter> = terms
            .iter()
            .map(|t| {
                Filter::parse(&json!({"container_registry_name": {"$regex": word_pattern(t), "$options": "i"}}))
                    .unwrap()
            })
            .collect();
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let len = (seed % 9) as usize;
            let mut name = String::new();
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                name.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            seed = seed.wrapping_add(1);
            let keys = index_keys(&name);
            for (term, filter) in terms.iter().zip(&filters) {
                let indexed = keys.contains(&term.to_string());
                let evaluated = filter.matches(&json!({"container_registry_name": name}));
                assert_eq!(indexed, evaluated, "{name:?} and {term:?}");
            }
        }
    }
}
