//! Deterministic completion text, token accounting and the OpenAI JSON shapes.
//!
//! Everything here is pure so the numbers the mock reports can be predicted
//! exactly by tests: one whitespace-separated word is one token.

use serde_json::{Value, json};

/// Upper bound on completion length, so a request with a huge `max_tokens`
/// cannot make the mock allocate or stream without end.
const MAX_COMPLETION_WORDS: usize = 4096;

/// Echoed when the last user message has no words, so the completion is never
/// just the prefix.
const FALLBACK_WORDS: &[&str] = &[
    "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog",
];

/// What the mock needs from a validated chat completion request.
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_words: Option<usize>,
    pub prompt_tokens: u64,
    pub last_user_text: String,
}

impl ChatRequest {
    /// Validates the minimum OpenAI shape; the error is the message for a 400.
    pub fn parse(body: &Value) -> Result<Self, String> {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .ok_or("`model` must be a string")?;
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|messages| !messages.is_empty())
            .ok_or("`messages` must be a non-empty array")?;

        // Each message costs its words plus one, a stand-in for the role and
        // framing tokens a real tokenizer would add.
        let prompt_tokens = messages
            .iter()
            .map(|m| word_count(&message_text(m)) + 1)
            .sum();
        let last_user_text = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(message_text)
            .unwrap_or_default();
        // `max_completion_tokens` is the newer name and wins when both are sent.
        let max_words = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|key| body.get(*key).and_then(Value::as_u64))
            .map(|n| {
                usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(MAX_COMPLETION_WORDS)
            });

        Ok(Self {
            model: model.to_owned(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
            max_words,
            prompt_tokens,
            last_user_text,
        })
    }

    /// The completion as a list of words (tokens): `[label] model says:`
    /// followed by the last user message cycled, cut to the requested length.
    /// The prefix counts against the length so `max_tokens` is always honoured.
    pub fn completion_words(&self, label: Option<&str>, default_words: usize) -> Vec<String> {
        let len = self
            .max_words
            .unwrap_or(default_words)
            .clamp(1, MAX_COMPLETION_WORDS);
        let prefix = match label {
            Some(label) => format!("[{label}] {} says:", self.model),
            None => format!("{} says:", self.model),
        };
        let echo: Vec<&str> = self.last_user_text.split_whitespace().collect();
        let echo = if echo.is_empty() {
            FALLBACK_WORDS
        } else {
            echo.as_slice()
        };
        prefix
            .split_whitespace()
            .chain(echo.iter().copied().cycle())
            .take(len)
            .map(str::to_owned)
            .collect()
    }
}

/// The text of a message: string content, or the `text` parts of array content.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

pub(crate) fn usage(prompt_tokens: u64, completion_tokens: usize) -> Value {
    let completion_tokens = completion_tokens as u64;
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// The fields every response object of one completion shares.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The mock's label, reported where OpenAI reports its backend build.
    pub fingerprint: Option<String>,
}

impl Envelope {
    fn object(&self, object: &str) -> Value {
        let mut value = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
        });
        if let Some(fingerprint) = &self.fingerprint {
            value["system_fingerprint"] = json!(fingerprint);
        }
        value
    }

    pub fn completion(&self, content: &str, usage: Value) -> Value {
        let mut value = self.object("chat.completion");
        value["choices"] = json!([{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }]);
        value["usage"] = usage;
        value
    }

    /// An answer calling one tool: no content, `finish_reason: tool_calls`,
    /// the arguments as a JSON string.
    pub fn tool_call(&self, id: &str, name: &str, args: &Value, usage: Value) -> Value {
        let mut value = self.object("chat.completion");
        value["choices"] = json!([{
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [{
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            }]},
            "finish_reason": "tool_calls",
        }]);
        value["usage"] = usage;
        value
    }

    /// A streaming chunk. With `include_usage` OpenAI sends `"usage": null`
    /// on every chunk but the last, and clients may rely on the key existing.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Value {
        let mut value = self.object("chat.completion.chunk");
        value["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": finish_reason}]);
        if include_usage {
            value["usage"] = Value::Null;
        }
        value
    }

    pub fn usage_chunk(&self, usage: Value) -> Value {
        let mut value = self.object("chat.completion.chunk");
        value["choices"] = json!([]);
        value["usage"] = usage;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_of_string_and_part_content() {
        let body = json!({
            "model": "m",
            "max_tokens": 6,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "image_url"}]},
            ],
        });
        let request = ChatRequest::parse(&body).unwrap();
        assert_eq!(request.prompt_tokens, 2 + 1 + 2 + 1);
        let words = request.completion_words(Some("demo"), 12);
        assert_eq!(words.join(" "), "[demo] m says: one two one");
    }

    #[test]
    fn rejects_missing_model_and_empty_messages() {
        assert!(
            ChatRequest::parse(&json!({"messages": [{"role": "user", "content": "x"}]})).is_err()
        );
        assert!(ChatRequest::parse(&json!({"model": "m", "messages": []})).is_err());
    }

    #[test]
    fn falls_back_when_user_said_nothing() {
        let request = ChatRequest::parse(
            &json!({"model": "m", "messages": [{"role": "user", "content": ""}]}),
        )
        .unwrap();
        assert_eq!(
            request.completion_words(None, 4).join(" "),
            "m says: the quick"
        );
    }
}
