//! Bounds on what one request may make the router do.
//!
//! A router reads every message of every request before any upstream sees
//! it; a 10 MB pasted log must not cost the classifier 10 MB of
//! tokenisation. The text a classifier reads is therefore cut to a bounded
//! length here, while the request forwarded upstream stays whole.

use std::borrow::Cow;

/// What stands for the cut middle of a truncated text.
pub const ELISION: &str = " … ";

/// `text` with at most `max_chars` characters of its own: when longer, its
/// first and last `max_chars / 2` characters (the head usually states the
/// ask, the tail holds the newest lines of a pasted log or the question
/// after it) joined by [`ELISION`]. Cuts fall on character boundaries, so
/// the result is always valid UTF-8; `max_chars == 0` keeps nothing.
pub fn truncate_middle(text: &str, max_chars: usize) -> Cow<'_, str> {
    // Fast path: byte length bounds character count.
    if text.len() <= max_chars {
        return Cow::Borrowed(text);
    }
    let total = text.chars().count();
    if total <= max_chars {
        return Cow::Borrowed(text);
    }
    if max_chars == 0 {
        return Cow::Borrowed("");
    }
    let head_chars = max_chars.div_ceil(2);
    let tail_chars = max_chars - head_chars;
    let head_end = text
        .char_indices()
        .nth(head_chars)
        .map_or(text.len(), |(index, _)| index);
    let tail_start = if tail_chars == 0 {
        text.len()
    } else {
        text.char_indices()
            .nth(total - tail_chars)
            .map_or(text.len(), |(index, _)| index)
    };
    let mut cut = String::with_capacity(head_end + ELISION.len() + (text.len() - tail_start));
    cut.push_str(&text[..head_end]);
    cut.push_str(ELISION);
    cut.push_str(&text[tail_start..]);
    Cow::Owned(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_unchanged() {
        assert!(matches!(truncate_middle("fix it", 10), Cow::Borrowed("fix it")));
        assert!(matches!(truncate_middle("héllo", 5), Cow::Borrowed("héllo")));
    }

    #[test]
    fn long_text_keeps_head_and_tail() {
        assert_eq!(truncate_middle("abcdefghij", 4), "ab … ij");
        assert_eq!(truncate_middle("abcdefghij", 5), "abc … ij");
        assert_eq!(truncate_middle("abcdefghij", 1), "a … ");
        assert_eq!(truncate_middle("abcdefghij", 0), "");
    }

    #[test]
    fn cuts_on_character_boundaries() {
        let text = "ééééé😀😀😀😀😀";
        let cut = truncate_middle(text, 4);
        assert_eq!(cut, "éé … 😀😀");
        let cut = truncate_middle(text, 3);
        assert_eq!(cut, "éé … 😀");
    }

    #[test]
    fn keeps_at_most_max_chars_of_the_input() {
        let text = "x".repeat(100_000);
        let cut = truncate_middle(&text, 1000);
        assert_eq!(cut.chars().count(), 1000 + ELISION.chars().count());
    }
}
