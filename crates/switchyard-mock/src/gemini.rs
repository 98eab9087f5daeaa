//! The Gemini API: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` (also under `/v1/`).
//!
//! - Request: `{contents, systemInstruction?, tools?, generationConfig?}`;
//!   `x-goog-api-key` (or the `key` query parameter) is recorded.
//! - `generationConfig.maxOutputTokens` caps the answer (at most the
//!   configured completion length).
//! - Stream with `?alt=sse`: `data:` events, one word (or the whole
//!   `functionCall`) each, the last with `finishReason: STOP` and
//!   `usageMetadata`, then the body ends (no `[DONE]`). Without `alt=sse`
//!   the same chunks come as one JSON array, as the real API sends them.
//! - A model whose name contains `blocked` has its prompt blocked: a 200
//!   with `promptFeedback.blockReason: SAFETY` and no candidates.
//! - Errors: `{"error": {"code", "message", "status"}}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::RecordedRequest;
use crate::completion::ChatRequest;
use crate::server::{Closed, Shared, SseSender, header, json_answer, json_body, sse, with_model};
use crate::shapes::{Answer, Turn, deltas, has_city, prompt_of, text_of};

/// An error in Google's envelope; a 429 says when to retry, as Google does.
fn error(status: StatusCode, message: &str) -> Response {
    let code = status.as_u16();
    let kind = match code {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    };
    let mut body = json!({"error": {"code": code, "message": message, "status": kind}});
    if code == 429 {
        body["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s",
        }]);
    }
    (status, Json(body)).into_response()
}

/// The text a `functionResponse` carries: its `response`'s `content`,
/// `result` or `output` string, or else the whole `response` as JSON.
fn response_text(function_response: &Value) -> String {
    let response = function_response.get("response").unwrap_or(&Value::Null);
    ["content", "result", "output"]
        .iter()
        .find_map(|key| response.get(*key).and_then(Value::as_str))
        .map_or_else(|| response.to_string(), str::to_owned)
}

/// Prompt tokens, the last user text, and the tools and last turn.
fn read_turn(body: &Value) -> (u64, String, Turn) {
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A missing role means `user`.
    let (prompt_tokens, last_user_text) = prompt_of(
        &text_of(body.pointer("/systemInstruction/parts")),
        contents.iter().map(|content| {
            let from_user = content.get("role").and_then(Value::as_str) != Some("model");
            (from_user, text_of(content.get("parts")))
        }),
    );
    let last = contents.last();
    let tool_result = last
        .and_then(|content| content.get("parts"))
        .and_then(Value::as_array)
        .and_then(|parts| {
            parts
                .iter()
                .rev()
                .find_map(|part| part.get("functionResponse"))
        })
        .map(response_text);
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            tool.get("functionDeclarations")
                .or_else(|| tool.get("function_declarations"))
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|function| {
            let name = function.get("name")?.as_str()?.to_owned();
            Some((name, has_city(function.get("parameters"))))
        })
        .collect();
    let turn = Turn {
        tools,
        tool_result,
        // A missing role means `user`.
        ends_with_user: last
            .is_some_and(|content| content.get("role").and_then(Value::as_str) != Some("model")),
    };
    (prompt_tokens, last_user_text, turn)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct GeminiQuery {
    alt: Option<String>,
    key: Option<String>,
}

/// `POST /v1beta/models/{model}:generateContent` or `:streamGenerateContent`.
pub(crate) async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(target): Path<String>,
    Query(query): Query<GeminiQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, method)) = target
        .rsplit_once(':')
        .filter(|(model, _)| !model.is_empty())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "expected models/{model}:generateContent or :streamGenerateContent",
        );
    };
    let model = model.to_owned();
    let (stream, sse_events) = match method {
        "generateContent" => (false, false),
        "streamGenerateContent" => (true, query.alt.as_deref() == Some("sse")),
        _ => return error(StatusCode::NOT_FOUND, &format!("unknown method `{method}`")),
    };
    let body = match json_body(&body, error) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if body
        .get("contents")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "* contents: contents is not specified",
        );
    }
    let (prompt_tokens, last_user_text, turn) = read_turn(&body);
    let max_words = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let request = ChatRequest {
        model: model.clone(),
        stream,
        include_usage: true,
        max_words: Some(max_words.min(shared.completion_words())),
        prompt_tokens,
        last_user_text,
    };
    let recorded = RecordedRequest {
        model: model.clone(),
        api: "gemini",
        body,
        authorization: header(&headers, AUTHORIZATION.as_str()),
        api_key: header(&headers, "x-goog-api-key").or(query.key),
        stream,
    };
    let drop_after = match shared.admit(recorded, error).await {
        Ok(drop_after) => drop_after,
        Err(response) => return with_model(response, &model),
    };
    let reply = Reply {
        blocked: model.contains("blocked"),
        answer: turn.answer(&shared, &request),
        model: model.clone(),
        prompt_tokens,
    };
    let response = if sse_events {
        let producer = Arc::clone(&shared);
        sse(&shared, move |events| {
            reply.stream(producer, drop_after, events)
        })
    } else {
        shared.pause(shared.ttft()).await;
        let body = if stream {
            Value::Array(reply.chunks())
        } else {
            reply.whole()
        };
        json_answer(&body, drop_after)
    };
    with_model(response, &model)
}

/// One answer, rendered whole or as chunks.
struct Reply {
    model: String,
    prompt_tokens: u64,
    answer: Answer,
    blocked: bool,
}

impl Reply {
    fn usage(&self, output: usize) -> Value {
        let output = output as u64;
        json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": self.prompt_tokens + output,
        })
    }

    /// A response carrying `parts`; the last one also `finishReason` and usage.
    fn response(&self, parts: Value, last: bool) -> Value {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut response = json!({"modelVersion": self.model});
        if last {
            candidate["finishReason"] = json!("STOP");
            response["usageMetadata"] = self.usage(self.answer.tokens());
        }
        response["candidates"] = json!([candidate]);
        response
    }

    fn blocked_response(&self) -> Value {
        json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {
                "promptTokenCount": self.prompt_tokens,
                "totalTokenCount": self.prompt_tokens,
            },
            "modelVersion": self.model,
        })
    }

    fn call_part(name: &str, args: &Value) -> Value {
        json!([{"functionCall": {"name": name, "args": args}}])
    }

    /// The `generateContent` answer.
    fn whole(&self) -> Value {
        if self.blocked {
            return self.blocked_response();
        }
        match &self.answer {
            Answer::Text(words) => self.response(json!([{"text": words.join(" ")}]), true),
            Answer::Call { name, args, .. } => self.response(Self::call_part(name, args), true),
        }
    }

    /// The `streamGenerateContent` chunks: one per word, or one with the
    /// whole call (Gemini does not fragment arguments).
    fn chunks(&self) -> Vec<Value> {
        if self.blocked {
            return vec![self.blocked_response()];
        }
        match &self.answer {
            Answer::Text(words) => {
                let pieces = deltas(words);
                let count = pieces.len();
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(index, piece)| {
                        self.response(json!([{"text": piece}]), index + 1 == count)
                    })
                    .collect()
            }
            Answer::Call { name, args, .. } => {
                vec![self.response(Self::call_part(name, args), true)]
            }
        }
    }

    async fn stream(
        self,
        shared: Arc<Shared>,
        drop_after: Option<usize>,
        mut events: SseSender,
    ) -> Result<(), Closed> {
        events.pause(shared.ttft()).await?;
        let chunks: Vec<String> = self.chunks().iter().map(Value::to_string).collect();
        events
            .send_pieces(&chunks, drop_after, shared.pace(), |_, chunk| {
                Bytes::from(format!("data: {chunk}\n\n"))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_system_tools_and_function_responses() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "tools": [{"functionDeclarations": [{"name": "w", "parameters": {"properties": {"city": {}}}}]}],
            "contents": [
                {"role": "user", "parts": [{"text": "one two three"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"temp": 21}}}]},
            ],
        });
        let (prompt, last_user, turn) = read_turn(&body);
        assert_eq!(prompt, 2 + 1 + 3 + 1 + 1 + 1);
        assert_eq!(last_user, "one two three");
        assert_eq!(turn.tools, [("w".to_owned(), true)]);
        assert_eq!(turn.tool_result.as_deref(), Some(r#"{"temp":21}"#));
    }
}
