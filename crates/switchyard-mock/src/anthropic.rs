//! The Anthropic Messages API: `POST /v1/messages`, JSON and SSE.
//!
//! - Request: `{model, max_tokens, system?, messages, tools?, stream?}`; the
//!   `anthropic-version` header is accepted but not required, `x-api-key` is
//!   recorded.
//! - `max_tokens` caps the answer (at most the configured completion length,
//!   as a real model stops on its own well before a generous cap).
//! - Stream: `message_start`, `content_block_start`, `ping`, one
//!   `content_block_delta` per word (`text_delta`) or argument fragment
//!   (`input_json_delta`), `content_block_stop`, `message_delta` (stop
//!   reason, output tokens), `message_stop`.
//! - Errors: `{"type": "error", "error": {"type", "message"}}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::RecordedRequest;
use crate::completion::ChatRequest;
use crate::server::{
    Closed, Shared, SseSender, frame, header, json_answer, json_body, retry_after, sse, with_model,
};
use crate::shapes::{Answer, Turn, deltas, fragments, has_city, prompt_of, text_of};

/// An error in Anthropic's envelope; a 429 carries `retry-after`.
fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    retry_after((status, Json(body)).into_response())
}

/// Prompt tokens, the last user text, and the tools and last turn.
fn read_turn(body: &Value) -> (u64, String, Turn) {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (prompt_tokens, last_user_text) = prompt_of(
        &text_of(body.get("system")),
        messages.iter().map(|message| {
            let from_user = message.get("role").and_then(Value::as_str) == Some("user");
            (from_user, text_of(message.get("content")))
        }),
    );
    let last = messages.last();
    let tool_result = last
        .and_then(|message| message.get("content"))
        .and_then(Value::as_array)
        .and_then(|blocks| {
            blocks
                .iter()
                .rfind(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
        .map(|block| text_of(block.get("content")));
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            let name = tool.get("name")?.as_str()?.to_owned();
            Some((name, has_city(tool.get("input_schema"))))
        })
        .collect();
    let turn = Turn {
        tools,
        tool_result,
        ends_with_user: last
            .and_then(|message| message.get("role"))
            .and_then(Value::as_str)
            == Some("user"),
    };
    (prompt_tokens, last_user_text, turn)
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match json_body(&body, error) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "model: Field required");
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return error(StatusCode::BAD_REQUEST, "max_tokens: Field required");
    };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "messages: at least one message is required",
        );
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (prompt_tokens, last_user_text, turn) = read_turn(&body);
    let request = ChatRequest {
        model: model.clone(),
        stream,
        include_usage: true,
        max_words: Some(
            usize::try_from(max_tokens)
                .unwrap_or(usize::MAX)
                .min(shared.completion_words()),
        ),
        prompt_tokens,
        last_user_text,
    };
    let recorded = RecordedRequest {
        model: model.clone(),
        api: "anthropic",
        body,
        authorization: header(&headers, AUTHORIZATION.as_str()),
        api_key: header(&headers, "x-api-key"),
        stream,
    };
    let drop_after = match shared.admit(recorded, error).await {
        Ok(drop_after) => drop_after,
        Err(response) => return with_model(response, &model),
    };
    let answer = turn.answer(&shared, &request);
    let message = Message {
        id: format!("msg_mock_{}", shared.next_id()),
        model: model.clone(),
        prompt_tokens,
        answer,
    };
    let response = if stream {
        let producer = Arc::clone(&shared);
        sse(&shared, move |events| {
            message.stream(producer, drop_after, events)
        })
    } else {
        shared.pause(shared.ttft()).await;
        json_answer(&message.json(), drop_after)
    };
    with_model(response, &model)
}

/// One answer, rendered whole or as events.
struct Message {
    id: String,
    model: String,
    prompt_tokens: u64,
    answer: Answer,
}

impl Message {
    fn stop_reason(&self) -> &'static str {
        match self.answer {
            Answer::Text(_) => "end_turn",
            Answer::Call { .. } => "tool_use",
        }
    }

    fn json(&self) -> Value {
        let content = match &self.answer {
            Answer::Text(words) => json!([{"type": "text", "text": words.join(" ")}]),
            Answer::Call { id, name, args } => json!([{
                "type": "tool_use", "id": format!("toolu_mock_{id}"), "name": name, "input": args,
            }]),
        };
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": null,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.answer.tokens()},
        })
    }

    async fn stream(
        self,
        shared: Arc<Shared>,
        drop_after: Option<usize>,
        mut events: SseSender,
    ) -> Result<(), Closed> {
        events.pause(shared.ttft()).await?;
        let start = json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
        }});
        events.send_event("message_start", &start).await?;
        let (block, pieces, delta_type, delta_field) = match &self.answer {
            Answer::Text(words) => (
                json!({"type": "text", "text": ""}),
                deltas(words),
                "text_delta",
                "text",
            ),
            Answer::Call { id, name, args } => (
                json!({"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": name, "input": {}}),
                fragments(args),
                "input_json_delta",
                "partial_json",
            ),
        };
        let block_start =
            json!({"type": "content_block_start", "index": 0, "content_block": block});
        events
            .send_event("content_block_start", &block_start)
            .await?;
        events.send_event("ping", &json!({"type": "ping"})).await?;
        events
            .send_pieces(&pieces, drop_after, shared.pace(), |_, piece| {
                let delta = json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": delta_type, delta_field: piece}});
                frame(Some("content_block_delta"), &delta)
            })
            .await?;
        let stop = json!({"type": "content_block_stop", "index": 0});
        events.send_event("content_block_stop", &stop).await?;
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
            "usage": {"output_tokens": self.answer.tokens()}});
        events.send_event("message_delta", &delta).await?;
        events
            .send_event("message_stop", &json!({"type": "message_stop"}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_system_tools_and_tool_results() {
        let body = json!({
            "system": [{"type": "text", "text": "be brief"}],
            "tools": [{"name": "a", "input_schema": {"properties": {}}}, {"name": "b"}],
            "messages": [
                {"role": "user", "content": "one two three"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                    "content": [{"type": "text", "text": "done"}]}]},
            ],
        });
        let (prompt, last_user, turn) = read_turn(&body);
        assert_eq!(prompt, 2 + 1 + 3 + 1 + 1 + 1);
        assert_eq!(last_user, "one two three");
        assert_eq!(
            turn.tools,
            [("a".to_owned(), false), ("b".to_owned(), false)]
        );
        assert_eq!(turn.tool_result.as_deref(), Some("done"));
        assert!(turn.ends_with_user);
    }
}
