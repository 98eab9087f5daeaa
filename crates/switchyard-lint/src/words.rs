//! Word heuristics over names and descriptions: plain functions, no encoder.
//!
//! They are deliberately crude (a word list, a suffix stripper, prefix
//! matching): their findings are warnings that a person reads, and each
//! one says which words it saw.

/// Function words: neither content nor qualifiers.
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "between", "both", "but", "by", "can", "could", "do", "does",
    "each", "e.g", "eg", "either", "else", "for", "from", "go", "goes", "has", "have", "how", "i",
    "ie", "if", "in", "into", "is", "it", "its", "just", "may", "me", "more", "most", "my", "no",
    "nor", "not", "of", "on", "one", "only", "or", "other", "others", "our", "out", "over", "own",
    "per", "s", "same", "should", "so", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "up", "us", "use",
    "used", "using", "via", "vs", "want", "wants", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whose", "why", "will", "with", "within", "without", "would", "you",
    "your",
];

/// Vague qualifiers, intensifiers and filler nouns: words that say how a
/// task should go ("fast", "high quality", "advanced") or nothing at all
/// ("things", "various", "etc") instead of what it is about. A sentence
/// encoder places a description by its subject matter, so a description
/// made of these lands near every other one and routes by accident.
/// Difficulty words ("simple", "complex") are here too: the encoder does
/// not see difficulty, so "complex questions" and "simple questions" sit
/// side by side.
pub const VAGUE_WORDS: &[&str] = &[
    "accurate",
    "advanced",
    "amazing",
    "anything",
    "assistance",
    "assist",
    "awesome",
    "basic",
    "best",
    "better",
    "cheap",
    "clever",
    "complex",
    "complicated",
    "comprehensive",
    "cool",
    "detailed",
    "difficult",
    "easy",
    "effective",
    "efficient",
    "etc",
    "everything",
    "excellent",
    "expert",
    "extremely",
    "fast",
    "general",
    "generic",
    "good",
    "great",
    "hard",
    "help",
    "helpful",
    "high",
    "highly",
    "important",
    "intelligent",
    "misc",
    "miscellaneous",
    "nice",
    "optimal",
    "perfect",
    "powerful",
    "premium",
    "professional",
    "quality",
    "quick",
    "quickly",
    "really",
    "reliable",
    "robust",
    "simple",
    "smart",
    "sophisticated",
    "stuff",
    "super",
    "thing",
    "things",
    "thorough",
    "top",
    "tricky",
    "useful",
    "various",
    "very",
];

/// Lowercase words of `text`: runs of letters and digits; pure numbers and
/// one-letter words are dropped.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() > 1 && !word.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .collect()
}

/// Words that carry meaning: [`tokens`] minus [`STOPWORDS`] (vague words
/// included; see [`vague_words`]).
pub fn content_words(text: &str) -> Vec<String> {
    tokens(text)
        .into_iter()
        .filter(|word| !STOPWORDS.contains(&word.as_str()))
        .collect()
}

/// The words of a task name: snake_case, kebab-case and camelCase split,
/// lowercased.
pub fn name_words(name: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(name.len() + 4);
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_uppercase() && previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
            spaced.push(' ');
        }
        spaced.push(c);
        previous = Some(c);
    }
    tokens(&spaced)
}

/// The name's words that say what the task is about: no stopwords, no
/// vague words ("general_help" has none).
pub fn name_content_words(name: &str) -> Vec<String> {
    name_words(name)
        .into_iter()
        .filter(|word| !STOPWORDS.contains(&word.as_str()) && !VAGUE_WORDS.contains(&word.as_str()))
        .collect()
}

/// `name` as words, for the encoder: `code_review` → `code review`.
pub fn humanize(name: &str) -> String {
    name_words(name).join(" ")
}

/// Suffixes stripped by [`stem`], longest first among those sharing an end.
const SUFFIXES: &[&str] = &[
    "ations", "ation", "ments", "ment", "ings", "ing", "ions", "ion", "ies", "ers", "er", "es",
    "ed", "al", "ly", "s", "e", "y",
];

/// A light stem: one inflectional or derivational suffix off, keeping at
/// least three letters (`translation` → `transl`, `translate` → `translat`).
pub fn stem(word: &str) -> &str {
    SUFFIXES
        .iter()
        .find_map(|suffix| {
            let rest = word.strip_suffix(suffix)?;
            (rest.chars().count() >= 3).then_some(rest)
        })
        .unwrap_or(word)
}

/// Whether two words are forms of one another: equal stems, or stems that
/// share a prefix of at least four letters covering all but one letter of
/// the shorter (`debugging`/`debug`, `summarization`/`summaries`,
/// `mathematics`/`math`, `explanation`/`explain`).
pub fn same_root(a: &str, b: &str) -> bool {
    let (a, b) = (stem(a), stem(b));
    if a == b {
        return true;
    }
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let shorter = a.chars().count().min(b.chars().count());
    common >= 4 && common + 1 >= shorter
}

/// The name's content words that appear (as some form) in `description`.
pub fn name_words_in_description(name: &str, description: &str) -> Vec<String> {
    let described = tokens(description);
    name_content_words(name)
        .into_iter()
        .filter(|word| described.iter().any(|other| same_root(word, other)))
        .collect()
}

/// The [`VAGUE_WORDS`] among a description's words, in order.
pub fn vague_words(description: &str) -> Vec<String> {
    content_words(description)
        .into_iter()
        .filter(|word| VAGUE_WORDS.contains(&word.as_str()))
        .collect()
}

/// A description reduced to its words, to spot duplicates that differ only
/// in case, punctuation or function words.
pub fn normalized(description: &str) -> String {
    content_words(description).join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn names_split_on_every_convention() {
        assert_eq!(name_words("code_generation"), ["code", "generation"]);
        assert_eq!(name_words("bug-fix"), ["bug", "fix"]);
        assert_eq!(name_words("codeReview2FA"), ["code", "review2", "fa"]);
        assert_eq!(name_content_words("general_help_for_users"), ["users"]);
        assert_eq!(humanize("marketing_copy"), "marketing copy");
    }

    #[test]
    fn forms_of_a_word_share_a_root_and_unrelated_words_do_not() {
        for (a, b) in [
            ("debugging", "debug"),
            ("summarization", "summaries"),
            ("translation", "translate"),
            ("mathematics", "math"),
            ("explanation", "explain"),
            ("planning", "plans"),
            ("code", "coding"),
            ("databases", "database"),
            ("questions", "question"),
        ] {
            assert!(same_root(a, b), "{a} / {b}");
        }
        for (a, b) in [
            ("translation", "poems"),
            ("review", "reverse"),
            ("code", "cold"),
            ("art", "article"),
        ] {
            assert!(!same_root(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn a_name_is_found_in_its_description_in_any_form() {
        assert_eq!(
            name_words_in_description("summarization", "Summaries of articles and long texts"),
            ["summarization"]
        );
        assert_eq!(
            name_words_in_description("code_review", "Review of a diff"),
            ["review"]
        );
        assert!(
            name_words_in_description("translation", "Write poems and short stories").is_empty()
        );
    }

    #[test]
    fn vague_words_are_counted_among_content_words() {
        let description = "Fast, smart, high quality answers to complex questions, etc.";
        assert_eq!(
            vague_words(description),
            ["fast", "smart", "high", "quality", "complex", "etc"]
        );
        assert_eq!(content_words(description).len(), 8);
        assert!(
            vague_words("Bugs, errors, stack traces and crashes - diagnosis and fixes").is_empty()
        );
    }

    #[test]
    fn duplicates_differ_only_in_case_punctuation_and_function_words() {
        assert_eq!(
            normalized("Fix the bugs, in code."),
            normalized("fix bugs in code")
        );
        assert_ne!(
            normalized("Fix bugs in code"),
            normalized("Fix bugs in tests")
        );
    }
}
