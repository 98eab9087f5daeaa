//! What the three API shapes share: how a request's tools and last turn
//! decide the answer, and how answers are cut into streamed pieces.
//!
//! Each shape reads its request into a [`Turn`] with a parser of its own
//! (kept independent of the router's translations, so tests of those
//! translations test something), and renders the [`Answer`] in its shape:
//!
//! - a request ending with a tool result (OpenAI `tool` message, Anthropic
//!   `tool_result` block, Gemini `functionResponse` part) is answered with
//!   the text `[label] tool result received: <result, first 80 chars>`;
//! - otherwise a request that declares tools and ends with a user turn is
//!   answered with a call of its first tool: `{"city": "Paris"}` when that
//!   tool's parameters have a `city` property, `{}` otherwise;
//! - anything else gets the usual deterministic words
//!   (`[label] model says: <last user text, cycled>`).

use serde_json::{Value, json};

use crate::completion::ChatRequest;
use crate::server::Shared;

/// Output tokens reported for a tool call, whatever its arguments.
const CALL_TOKENS: usize = 8;

/// How much of a tool result the acknowledging text quotes, in characters.
const RESULT_QUOTE_CHARS: usize = 80;

/// What the mock needs to know about a request's tools and last turn,
/// whatever its shape.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Declared tools, in order: the name, and whether its parameters have a
    /// `city` property.
    pub tools: Vec<(String, bool)>,
    /// The text of the tool result that ends the conversation, if one does.
    pub tool_result: Option<String>,
    /// The last message is a user turn (not the assistant's or model's).
    pub ends_with_user: bool,
}

/// What the mock answers, before it is put in a shape.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Text, as words (one word, one token).
    Text(Vec<String>),
    /// A call of one tool; `id` is a fresh number each shape prefixes.
    Call { id: u64, name: String, args: Value },
}

impl Answer {
    /// Output tokens: the words of a text, [`CALL_TOKENS`] for a call.
    pub fn tokens(&self) -> usize {
        match self {
            Self::Text(words) => words.len(),
            Self::Call { .. } => CALL_TOKENS,
        }
    }
}

impl Turn {
    pub fn answer(&self, shared: &Shared, request: &ChatRequest) -> Answer {
        if let Some(result) = &self.tool_result {
            let quote: String = result.chars().take(RESULT_QUOTE_CHARS).collect();
            let text = match shared.label() {
                Some(label) => format!("[{label}] tool result received: {quote}"),
                None => format!("tool result received: {quote}"),
            };
            return Answer::Text(text.split_whitespace().map(str::to_owned).collect());
        }
        match self.tools.first() {
            Some((name, has_city)) if self.ends_with_user => Answer::Call {
                id: shared.next_id(),
                name: name.clone(),
                args: if *has_city {
                    json!({"city": "Paris"})
                } else {
                    json!({})
                },
            },
            _ => Answer::Text(request.completion_words(shared.label(), shared.completion_words())),
        }
    }
}

/// Each word with its separating space, so concatenated deltas equal the
/// non-streaming text exactly.
pub(crate) fn deltas(words: &[String]) -> Vec<String> {
    words
        .iter()
        .enumerate()
        .map(|(index, word)| {
            if index + 1 < words.len() {
                format!("{word} ")
            } else {
                word.clone()
            }
        })
        .collect()
}

/// A call's argument JSON split in two, as real streams fragment it.
pub(crate) fn fragments(args: &Value) -> Vec<String> {
    let text = args.to_string();
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(index, _)| index);
    vec![text[..middle].to_owned(), text[middle..].to_owned()]
}

pub(crate) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The text of a string, or of the `text` fields of an array of blocks or
/// parts, joined with spaces.
pub(crate) fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The prompt's size and the text the answer echoes, for the Anthropic and
/// Gemini shapes: one token per word, plus one for a non-empty system
/// prompt and one per message (`(is the user's, text)`), and the last
/// non-empty user text.
pub(crate) fn prompt_of(system: &str, messages: impl Iterator<Item = (bool, String)>) -> (u64, String) {
    let mut tokens = word_count(system) + u64::from(!system.is_empty());
    let mut last_user_text = String::new();
    for (from_user, text) in messages {
        tokens += word_count(&text) + 1;
        if from_user && !text.is_empty() {
            last_user_text = text;
        }
    }
    (tokens, last_user_text)
}

/// Whether a JSON schema has a `city` property.
pub(crate) fn has_city(schema: Option<&Value>) -> bool {
    schema
        .and_then(|schema| schema.pointer("/properties/city"))
        .is_some()
}

/// The tools and the last turn of an OpenAI chat request.
pub(crate) fn openai_turn(body: &Value) -> Turn {
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            let function = tool.get("function")?;
            let name = function.get("name")?.as_str()?.to_owned();
            Some((name, has_city(function.get("parameters"))))
        })
        .collect();
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last());
    let role = last
        .and_then(|message| message.get("role"))
        .and_then(Value::as_str);
    Turn {
        tools,
        tool_result: (role == Some("tool"))
            .then(|| text_of(last.and_then(|message| message.get("content")))),
        ends_with_user: role == Some("user"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_rejoin_to_the_arguments() {
        for args in [json!({}), json!({"city": "Paris"})] {
            assert_eq!(fragments(&args).concat(), args.to_string());
        }
    }

    #[test]
    fn openai_turns() {
        let tools = json!([{"type": "function", "function": {"name": "w",
            "parameters": {"properties": {"city": {"type": "string"}}}}}]);
        let ask =
            openai_turn(&json!({"tools": tools, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(ask.tools, [("w".to_owned(), true)]);
        assert!(ask.ends_with_user && ask.tool_result.is_none());
        let result = openai_turn(&json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "sunny"}]},
        ]}));
        assert_eq!(result.tool_result.as_deref(), Some("sunny"));
        assert!(result.tools.is_empty());
    }
}
