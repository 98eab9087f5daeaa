//! Tokenization with the encoder's own `tokenizer.json`, and truncation.
//!
//! Budgets are counted in the model's tokens, not characters or words:
//! that is what the encoder pays for and what its position table limits.
//! Long messages keep their start *and* their end: the ask of a pasted log
//! or document usually comes last.

use std::path::Path;

use crate::EncoderError;

/// Share of a truncated message's budget kept from its start; the rest
/// comes from its end.
const HEAD_SHARE: f64 = 0.6;

/// The encoder's tokenizer, with the built-in padding and truncation (to a
/// fixed 128) turned off: we pad per batch and truncate ourselves.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
    ellipsis: Vec<u32>,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<TextTokenizer, EncoderError> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|err| EncoderError::Tokenizer(format!("{}: {err}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|err| EncoderError::Tokenizer(err.to_string()))?;
        let special = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| EncoderError::Tokenizer(format!("{token} is not in the vocabulary")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let mut tokenizer = TextTokenizer {
            inner,
            cls,
            sep,
            ellipsis: Vec::new(),
        };
        tokenizer.ellipsis = tokenizer.ids("...")?;
        Ok(tokenizer)
    }

    /// Token ids of `text`, without `[CLS]`/`[SEP]`.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|err| EncoderError::Tokenizer(err.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The model input for `text`: `[CLS] ids [SEP]`, at most `max_tokens`
    /// long in all, cut in the middle when longer.
    pub fn model_input(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>, EncoderError> {
        let ids = self.ids(text)?;
        let body = keep_head_and_tail(&ids, max_tokens.saturating_sub(2), &self.ellipsis);
        let mut input = Vec::with_capacity(body.len() + 2);
        input.push(self.cls);
        input.extend_from_slice(&body);
        input.push(self.sep);
        Ok(input)
    }
}

/// `ids` if they fit in `budget`; otherwise about 60% of the budget from
/// the start and 40% from the end, joined by `ellipsis`.
pub fn keep_head_and_tail(ids: &[u32], budget: usize, ellipsis: &[u32]) -> Vec<u32> {
    if ids.len() <= budget {
        return ids.to_vec();
    }
    if budget <= ellipsis.len() {
        // No room for the marker: the end carries the ask, keep it.
        return ids[ids.len() - budget..].to_vec();
    }
    let room = budget - ellipsis.len();
    let head = ((room as f64) * HEAD_SHARE).round() as usize;
    let tail = room - head;
    let mut kept = Vec::with_capacity(budget);
    kept.extend_from_slice(&ids[..head]);
    kept.extend_from_slice(ellipsis);
    kept.extend_from_slice(&ids[ids.len() - tail..]);
    kept
}

/// How many of a conversation's newest turns fit a token budget: walking
/// newest first, stopping at the first turn that no longer fits, so the
/// context has no gaps. The newest turn always counts (it is truncated to
/// the budget elsewhere). `counts` is consumed lazily: older turns past the
/// budget are never tokenized.
pub fn recent_turns_within(counts_newest_first: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let mut kept = 0;
    let mut used = 0usize;
    for count in counts_newest_first {
        if kept > 0 && used.saturating_add(count) > budget {
            break;
        }
        used = used.saturating_add(count);
        kept += 1;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELLIPSIS: [u32; 3] = [1012, 1012, 1012];

    #[test]
    fn short_messages_are_kept_whole() {
        let ids: Vec<u32> = (0..10).collect();
        assert_eq!(keep_head_and_tail(&ids, 10, &ELLIPSIS), ids);
        assert_eq!(keep_head_and_tail(&ids, 50, &ELLIPSIS), ids);
    }

    #[test]
    fn long_messages_keep_sixty_percent_head_and_forty_percent_tail() {
        let ids: Vec<u32> = (0..1000).collect();
        let kept = keep_head_and_tail(&ids, 103, &ELLIPSIS);
        assert_eq!(kept.len(), 103);
        // 100 tokens of room: 60 from the start, the marker, 40 from the end.
        assert_eq!(&kept[..60], &ids[..60]);
        assert_eq!(&kept[60..63], &ELLIPSIS);
        assert_eq!(&kept[63..], &ids[960..]);
    }

    #[test]
    fn the_end_survives_even_a_tiny_budget() {
        let ids: Vec<u32> = (0..100).collect();
        assert_eq!(keep_head_and_tail(&ids, 2, &ELLIPSIS), vec![98, 99]);
        assert_eq!(keep_head_and_tail(&ids, 0, &ELLIPSIS), Vec::<u32>::new());
    }

    #[test]
    fn recent_turns_fill_the_budget_newest_first() {
        // newest .. oldest
        assert_eq!(recent_turns_within([20, 30, 40, 50], 100), 3);
        assert_eq!(recent_turns_within([20, 30, 40, 50], 1000), 4);
        // An old turn that does not fit stops the walk: no gaps in the context.
        assert_eq!(recent_turns_within([5, 500, 5], 100), 1);
        // The newest turn is kept even when it alone overflows.
        assert_eq!(recent_turns_within([400, 10], 100), 1);
        assert_eq!(recent_turns_within([], 100), 0);
    }

    #[test]
    fn counting_stops_at_the_budget() {
        let mut counted = 0;
        let counts = [60, 60, 60, 60].into_iter().inspect(|_| counted += 1);
        assert_eq!(recent_turns_within(counts, 100), 1);
        assert_eq!(counted, 2);
    }
}
