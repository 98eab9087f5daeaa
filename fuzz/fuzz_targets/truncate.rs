//! `truncate_middle`: the bounded text a classifier reads.
//!
//! Input: two bytes of `max_chars` (little endian; `0xffff` stands for
//! `usize::MAX`, other values are taken modulo 1024 so cuts are common),
//! then the text (the longest valid UTF-8 prefix of the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_types::limits::{ELISION, truncate_middle};

fuzz_target!(|data: &[u8]| {
    let (max_chars, rest) = match data {
        [low, high, rest @ ..] => match u16::from_le_bytes([*low, *high]) {
            u16::MAX => (usize::MAX, rest),
            max => (usize::from(max) % 1024, rest),
        },
        _ => return,
    };
    let text = match std::str::from_utf8(rest) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&rest[..err.valid_up_to()]).expect("valid up to there"),
    };
    let cut = truncate_middle(text, max_chars);
    let cut_chars = cut.chars().count();
    let text_chars = text.chars().count();
    let elision_chars = ELISION.chars().count();
    assert!(
        cut_chars <= max_chars.saturating_add(elision_chars),
        "{cut_chars} chars for max {max_chars}"
    );
    if text_chars <= max_chars {
        assert_eq!(&*cut, text, "a text within the bound is kept whole");
        return;
    }
    if max_chars == 0 {
        assert_eq!(&*cut, "", "max 0 keeps nothing");
        return;
    }
    // Cut: the first ceil(max/2) and the last floor(max/2) characters
    // around the elision, so exactly `max_chars` of the input's own.
    let head_chars = max_chars.div_ceil(2);
    let tail_chars = max_chars - head_chars;
    let head: String = text.chars().take(head_chars).collect();
    let tail: String = text.chars().skip(text_chars - tail_chars).collect();
    assert!(text.starts_with(&head) && text.ends_with(&tail));
    assert!(cut.starts_with(&head), "the cut starts with a prefix of the input");
    assert!(cut.ends_with(&tail), "the cut ends with a suffix of the input");
    assert_eq!(&cut[head.len()..cut.len() - tail.len()], ELISION);
    assert_eq!(cut_chars - elision_chars, max_chars, "max_chars of the input's own");
    assert!(cut.len() < text.len() + ELISION.len());
});
