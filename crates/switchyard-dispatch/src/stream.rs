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
use eventsource_stream::{Event, EventStream, Eventsource};
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

/// An upstream's SSE body as events.
///
/// UTF-8 byte-order marks opening the body are dropped first (the SSE
/// format allows one): eventsource-stream 0.2.3 cuts one off as if it were
/// one byte and panics on the char boundary (found by fuzzing,
/// fuzz/README.md). A mark may arrive split over the first chunks.
pub fn sse_events<S, E>(body: S) -> EventStream<impl Stream<Item = Result<Bytes, E>>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    const BOM: &[u8] = "\u{feff}".as_bytes();
    // The body's first bytes, until they show that no BOM follows.
    let mut head = Some(Vec::with_capacity(BOM.len()));
    body.map(Some)
        .chain(futures_util::stream::once(std::future::ready(None)))
        .map(move |item| match (item, head.as_mut()) {
            (Some(Ok(chunk)), None) => Ok(chunk),
            (Some(Ok(chunk)), Some(seen)) => {
                seen.extend_from_slice(&chunk);
                let marks = seen.chunks_exact(BOM.len()).take_while(|bytes| *bytes == BOM).count();
                seen.drain(..marks * BOM.len());
                // Empty, or maybe the start of one more mark: wait for more.
                if BOM.starts_with(seen) {
                    return Ok(Bytes::new());
                }
                let rest = Bytes::from(std::mem::take(seen));
                head = None;
                Ok(rest)
            }
            (Some(Err(err)), _) => Err(err),
            // The body ended inside what could have been a BOM: it was not one.
            (None, _) => Ok(head.take().map(Bytes::from).unwrap_or_default()),
        })
        .eventsource()
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
                match rewrite_chunk(&event.data, &model, swallow_usage, &mut usage) {
                    Rewritten::Send(data) => Some(frame(&event.event, &data)),
                    Rewritten::Dropped => None,
                    // A chunk that is not JSON would break the client's SDK
                    // mid-answer; end the stream with an error event instead.
                    Rewritten::NotJson => {
                        broken = Some("the upstream sent a chunk that is not JSON".to_owned());
                        break;
                    }
                }
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

/// What becomes of one upstream chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// This data goes to the client.
    Send(String),
    /// Dropped: the usage-only chunk the client did not ask for, or JSON
    /// that is not an object.
    Dropped,
    /// Not JSON at all.
    NotJson,
}

/// Rewrites one chunk for the client: our model id, usage noted, and the
/// usage-only chunk dropped when only the router asked for it. The chunk is
/// parsed once, here: whether it is JSON at all is part of the answer.
pub fn rewrite_chunk(data: &str, model: &str, swallow_usage: bool, usage: &mut Option<Usage>) -> Rewritten {
    let Ok(mut value) = serde_json::from_str::<Value>(data) else {
        return Rewritten::NotJson;
    };
    if let Some(found) = value.get("usage").and_then(parse_usage) {
        *usage = Some(found);
    }
    let Some(object) = value.as_object_mut() else {
        return Rewritten::Dropped;
    };
    if swallow_usage {
        let no_choices = object
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if no_choices && object.get("usage").is_some_and(|u| !u.is_null()) {
            return Rewritten::Dropped;
        }
        object.remove("usage");
    }
    if object.contains_key("model") {
        object.insert("model".to_owned(), Value::String(model.to_owned()));
    }
    Rewritten::Send(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_model_and_hides_usage_the_client_did_not_ask_for() {
        let mut usage = None;
        let chunk = r#"{"object":"chat.completion.chunk","model":"up/name","choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
        let Rewritten::Send(out) = rewrite_chunk(chunk, "our-id", true, &mut usage) else {
            panic!("a content chunk is sent");
        };
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["model"], "our-id");
        assert!(value.get("usage").is_none());
        let usage_chunk = r#"{"model":"up/name","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        assert_eq!(rewrite_chunk(usage_chunk, "our-id", true, &mut usage), Rewritten::Dropped);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3
            })
        );
        assert!(matches!(rewrite_chunk(usage_chunk, "our-id", false, &mut usage), Rewritten::Send(_)));
        assert_eq!(rewrite_chunk("{\"model\": ", "our-id", false, &mut usage), Rewritten::NotJson);
        assert_eq!(rewrite_chunk("[1, 2]", "our-id", false, &mut usage), Rewritten::Dropped);
    }

    fn events_of(chunks: &[&'static [u8]]) -> Vec<Event> {
        let body = futures_util::stream::iter(chunks.iter().map(|chunk| Ok::<_, Infallible>(Bytes::from_static(chunk))));
        let events: Vec<_> = futures_util::FutureExt::now_or_never(sse_events(body).collect::<Vec<_>>()).unwrap();
        events.into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn a_byte_order_mark_opening_the_stream_is_dropped_even_when_split() {
        // Fuzzing finding: eventsource-stream alone panics on these bodies.
        let whole = events_of(&[b"\xef\xbb\xbfdata: {\"a\":1}\n\n"]);
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].event.as_str(), whole[0].data.as_str()), ("message", r#"{"a":1}"#));
        assert_eq!(events_of(&[b"\xef", b"\xbb", b"\xbf", b"data: {\"a\":1}\n\n"]), whole);
        assert_eq!(events_of(&[b"", b"\xef\xbb", b"\xbfdata: {\"a\":1}", b"\n\n"]), whole);
        assert_eq!(events_of(&[b"data: {\"a\":1}\n\n"]), whole);
        assert_eq!(events_of(&[b"da", b"ta: {\"a\":1}\n\n"]), whole);
        // A second opening mark would reach the same panic: it goes too.
        assert_eq!(events_of(&[b"\xef\xbb\xbf\xef\xbb", b"\xbfdata: {\"a\":1}\n\n"]), whole);
        // Only opening marks go; a later one is data.
        assert_eq!(events_of(&[b"data: \xef\xbb\xbf\n\n"])[0].data, "\u{feff}");
        assert!(events_of(&[b"\xef\xbb\xbf"]).is_empty());
        assert!(events_of(&[b"\n"]).is_empty());
    }

    #[test]
    fn frames_multi_line_data_and_named_events() {
        assert_eq!(frame("", "a\nb"), Bytes::from("data: a\ndata: b\n\n"));
        assert_eq!(frame("ping", "{}"), Bytes::from("event: ping\ndata: {}\n\n"));
    }
}
