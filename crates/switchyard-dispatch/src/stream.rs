//! Relaying an upstream's server-sent events to the client.
//!
//! A task reads the upstream's events and forwards each one as soon as it
//! arrives (no buffering), with `model` rewritten to the id that served.
//! The client's body reads from a small channel: when the client goes
//! away, the next send fails and the task stops reading upstream. When the
//! stream ends, a [`StreamSummary`] reports usage and how it ended.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Event;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use switchyard_types::Usage;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Events buffered between the upstream reader and the client; small, so a
/// slow client applies back-pressure to the upstream read.
const CHANNEL_DEPTH: usize = 16;

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub usage: Option<Usage>,
    /// Why the stream broke after it had started, if it did.
    pub broken: Option<String>,
    /// The client went away before the end.
    pub client_gone: bool,
    /// From the start of the attempt to the end of the stream.
    pub total: Duration,
}

/// A live relay: the body to send the client and, later, its summary.
#[derive(Debug)]
pub struct SseRelay {
    pub body: mpsc::Receiver<Result<Bytes, Infallible>>,
    pub summary: oneshot::Receiver<StreamSummary>,
}

/// Reads `usage` from an OpenAI response or chunk.
pub fn parse_usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: value.get("prompt_tokens")?.as_u64()?,
        completion_tokens: value.get("completion_tokens")?.as_u64()?,
    })
}

/// Starts relaying: `first` has already been read (it decided that this
/// upstream serves), `rest` are the events after it.
pub(crate) fn relay<S, E>(
    first: Event,
    mut rest: S,
    model: String,
    swallow_usage: bool,
    started: Instant,
    deadline: Instant,
) -> SseRelay
where
    S: Stream<Item = Result<Event, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send,
{
    let (body_tx, body_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (summary_tx, summary_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut usage = None;
        let mut broken = None;
        let mut client_gone = false;
        let mut next = Some(first);
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => match tokio::time::timeout_at(deadline, rest.next()).await {
                    Err(_) => {
                        broken = Some("the response exceeded the total timeout".to_owned());
                        break;
                    }
                    Ok(None) => {
                        broken = Some("the upstream closed the stream before [DONE]".to_owned());
                        break;
                    }
                    Ok(Some(Err(err))) => {
                        broken = Some(format!("the upstream stream broke: {err}"));
                        break;
                    }
                    Ok(Some(Ok(event))) => event,
                },
            };
            let done = event.data.trim() == "[DONE]";
            let frame = if done {
                Some(frame(&event.event, "[DONE]"))
            } else {
                rewrite_chunk(&event.data, &model, swallow_usage, &mut usage)
                    .map(|data| frame(&event.event, &data))
            };
            if let Some(frame) = frame
                && body_tx.send(Ok(frame)).await.is_err()
            {
                client_gone = true;
                break;
            }
            if done {
                break;
            }
        }
        if let Some(reason) = &broken {
            tracing::warn!(model = %model, reason = %reason, "stream broke after it reached the client");
            let event = json!({
                "error": {
                    "message": format!("the stream from model `{model}` was interrupted: {reason}"),
                    "type": "upstream_error",
                    "code": "stream_interrupted",
                }
            });
            // The client may be gone too; nothing more to do then.
            let _ = body_tx.send(Ok(frame("", &event.to_string()))).await;
        }
        let _ = summary_tx.send(StreamSummary {
            usage,
            broken,
            client_gone,
            total: started.elapsed(),
        });
    });
    SseRelay {
        body: body_rx,
        summary: summary_rx,
    }
}

fn frame(event: &str, data: &str) -> Bytes {
    let mut text = String::with_capacity(data.len() + 16);
    if !event.is_empty() && event != "message" {
        text.push_str("event: ");
        text.push_str(event);
        text.push('\n');
    }
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

/// Rewrites one chunk for the client: our model id, usage noted, and the
/// usage-only chunk dropped when only the router asked for it. Data that is
/// not JSON passes through untouched.
fn rewrite_chunk(
    data: &str,
    model: &str,
    swallow_usage: bool,
    usage: &mut Option<Usage>,
) -> Option<String> {
    let Ok(mut value) = serde_json::from_str::<Value>(data) else {
        return Some(data.to_owned());
    };
    if let Some(found) = value.get("usage").and_then(parse_usage) {
        *usage = Some(found);
    }
    let object = value.as_object_mut()?;
    if swallow_usage {
        let no_choices = object
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if no_choices && object.get("usage").is_some_and(|u| !u.is_null()) {
            return None;
        }
        object.remove("usage");
    }
    if object.contains_key("model") {
        object.insert("model".to_owned(), Value::String(model.to_owned()));
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_model_and_hides_usage_the_client_did_not_ask_for() {
        let mut usage = None;
        let chunk = r#"{"object":"chat.completion.chunk","model":"up/name","choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
        let out = rewrite_chunk(chunk, "our-id", true, &mut usage).unwrap();
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["model"], "our-id");
        assert!(value.get("usage").is_none());
        let usage_chunk = r#"{"model":"up/name","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        assert_eq!(rewrite_chunk(usage_chunk, "our-id", true, &mut usage), None);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3
            })
        );
        assert!(rewrite_chunk(usage_chunk, "our-id", false, &mut usage).is_some());
    }

    #[test]
    fn frames_multi_line_data_and_named_events() {
        assert_eq!(frame("", "a\nb"), Bytes::from("data: a\ndata: b\n\n"));
        assert_eq!(frame("ping", "{}"), Bytes::from("event: ping\ndata: {}\n\n"));
    }
}
