//! The OpenAI chat-completions request, as the router needs to see it.
//!
//! The router reads `model`, `messages` and `stream`; everything else a
//! client sends (tools, temperature, response_format, ...) is kept verbatim in
//! `extra` and forwarded, so new OpenAI parameters pass through untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a request body was refused before any routing happened.
///
/// Each variant becomes a 400/404 at the edge; the message is written for
/// the client's developer and names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON, or not the right JSON shape.
    #[error("{0}")]
    Malformed(String),
    /// A field is present but its value is not acceptable.
    #[error("`{param}` {message}")]
    Invalid { param: String, message: String },
}

impl RequestError {
    /// The request parameter the error is about, for the OpenAI `param` field.
    pub fn param(&self) -> Option<&str> {
        match self {
            RequestError::Malformed(_) => None,
            RequestError::Invalid { param, .. } => Some(param),
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    /// Every role the OpenAI API accepts, in the order its docs list them.
    pub const ALL: [&'static str; 6] = [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];

    /// The role's name as the OpenAI API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }

    /// A role from its API name.
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            _ => return None,
        })
    }
}

/// One message of the conversation; fields other than `role` and `content`
/// (`name`, `tool_calls`, `tool_call_id`, ...) ride along in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// The message's text: a string content, or the `text` parts of an array
    /// content joined by newlines. Images and audio contribute nothing.
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// A chat-completions request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    ///
    /// Validation is done on the JSON tree before typed decoding so each
    /// refusal names the exact field (`messages[2].role`), which serde's
    /// own errors do not.
    pub fn from_json(body: &[u8]) -> Result<ChatRequest, RequestError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| RequestError::Malformed(format!("request body is not valid JSON: {err}")))?;
        let Value::Object(object) = &value else {
            return Err(RequestError::Malformed(
                "request body must be a JSON object".to_owned(),
            ));
        };
        match object.get("model") {
            Some(Value::String(model)) if !model.trim().is_empty() => {}
            Some(Value::String(_)) => {
                return Err(RequestError::invalid("model", "must not be empty"));
            }
            Some(_) => return Err(RequestError::invalid("model", "must be a string")),
            None => return Err(RequestError::invalid("model", "is required")),
        }
        let messages = match object.get("messages") {
            Some(Value::Array(messages)) => messages,
            Some(_) => return Err(RequestError::invalid("messages", "must be an array")),
            None => return Err(RequestError::invalid("messages", "is required")),
        };
        if messages.is_empty() {
            return Err(RequestError::invalid(
                "messages",
                "must contain at least one message",
            ));
        }
        for (index, message) in messages.iter().enumerate() {
            validate_message(index, message)?;
        }
        match object.get("stream") {
            None | Some(Value::Bool(_)) | Some(Value::Null) => {}
            Some(_) => return Err(RequestError::invalid("stream", "must be a boolean")),
        }
        into_request(value).ok_or_else(|| RequestError::Malformed("request body has an unexpected shape".to_owned()))
    }

    /// Whether the client asked for a server-sent-event stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// The validated JSON tree taken apart into a request: its values are
/// moved, not copied, and unknown fields go to `extra` as they are (what
/// `serde_json::from_value` with `#[serde(flatten)]` does, without the
/// intermediate copy flattening makes of every field). `None` only for a
/// tree that validation would have refused.
fn into_request(value: Value) -> Option<ChatRequest> {
    let Value::Object(mut object) = value else {
        return None;
    };
    let Some(Value::String(model)) = object.remove("model") else {
        return None;
    };
    let Some(Value::Array(messages)) = object.remove("messages") else {
        return None;
    };
    let stream = match object.remove("stream") {
        Some(Value::Bool(stream)) => Some(stream),
        None | Some(Value::Null) => None,
        Some(_) => return None,
    };
    let messages = messages.into_iter().map(into_message).collect::<Option<Vec<_>>>()?;
    Some(ChatRequest {
        model,
        messages,
        stream,
        extra: object,
    })
}

fn into_message(value: Value) -> Option<ChatMessage> {
    let Value::Object(mut fields) = value else {
        return None;
    };
    let Some(Value::String(role)) = fields.remove("role") else {
        return None;
    };
    let content = match fields.remove("content") {
        None | Some(Value::Null) => None,
        Some(content) => Some(content),
    };
    Some(ChatMessage {
        role: Role::parse(&role)?,
        content,
        extra: fields,
    })
}

fn validate_message(index: usize, message: &Value) -> Result<(), RequestError> {
    let Value::Object(fields) = message else {
        return Err(RequestError::invalid(
            format!("messages[{index}]"),
            "must be an object with `role` and `content`",
        ));
    };
    let role = match fields.get("role") {
        Some(Value::String(role)) => role,
        Some(_) => {
            return Err(RequestError::invalid(
                format!("messages[{index}].role"),
                "must be a string",
            ));
        }
        None => {
            return Err(RequestError::invalid(
                format!("messages[{index}].role"),
                "is required",
            ));
        }
    };
    if Role::parse(role).is_none() {
        return Err(RequestError::invalid(
            format!("messages[{index}].role"),
            format!(
                "unknown role `{role}`; expected one of {}",
                Role::ALL.join(", ")
            ),
        ));
    }
    match fields.get("content") {
        None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        Some(_) => Err(RequestError::invalid(
            format!("messages[{index}].content"),
            "must be a string, an array of content parts, or null",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_the_tree_apart_decodes_like_serde() {
        let bodies: [&[u8]; 4] = [
            br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"ann"}],"temperature":0.2,"tools":[]}"#,
            br#"{"model":"m","stream":null,"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]},{"role":"tool","tool_call_id":"c"}]}"#,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}"#,
            br#"{"messages":[{"content":"x","role":"developer"}],"model":"m","n":2,"stream":false}"#,
        ];
        for body in bodies {
            let by_serde: ChatRequest = serde_json::from_slice(body).unwrap();
            assert_eq!(ChatRequest::from_json(body).unwrap(), by_serde, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn keeps_unknown_fields_for_forwarding() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"ann"}],"temperature":0.2,"tools":[]}"#;
        let request = ChatRequest::from_json(body).unwrap();
        assert_eq!(request.extra["temperature"], 0.2);
        assert_eq!(request.messages[0].extra["name"], "ann");
        let round_trip = serde_json::to_value(&request).unwrap();
        assert_eq!(round_trip["tools"], serde_json::json!([]));
    }

    #[test]
    fn names_the_offending_field() {
        let err = ChatRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"bot","content":"b"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param(), Some("messages[1].role"));
        assert!(err.to_string().contains("unknown role `bot`"));
    }

    #[test]
    fn refuses_empty_and_missing_messages() {
        let empty = ChatRequest::from_json(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(empty.param(), Some("messages"));
        let missing = ChatRequest::from_json(br#"{"model":"m"}"#).unwrap_err();
        assert_eq!(missing.param(), Some("messages"));
        let garbage = ChatRequest::from_json(b"{not json").unwrap_err();
        assert!(matches!(garbage, RequestError::Malformed(_)));
    }

    #[test]
    fn text_joins_text_parts_only() {
        let request = ChatRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(request.messages[0].text(), "a\nb");
    }
}
