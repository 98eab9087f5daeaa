//! The attempt loop: ranked models first, then fallbacks, until one serves.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use switchyard_types::{Attempt, AttemptFailure, ChatRequest, RankedCandidates, Usage};
use tokio::time::Instant;

use crate::kinds;
use crate::stream::{SseRelay, parse_usage, relay};
use crate::upstream::{Dispatcher, Upstream};

/// Whether a failed upstream status should pass the request to the next
/// model. Rate limits, server errors and timeouts are the upstream's
/// trouble; so are 401/403 (our credentials for that provider) and 404
/// (that provider lacks the model): another model may well serve. So is a
/// redirect (3xx): redirects are not followed, and an API endpoint that
/// moved means the provider's `base_url` needs fixing. Other 4xx (400, 413,
/// 422, ...) are about the request itself and would fail everywhere, so
/// they go back to the client at once.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 408 | 409 | 429) || (300..400).contains(&status) || status >= 500
}

/// A response that one model served.
#[derive(Debug)]
pub struct Served {
    /// The model id that answered.
    pub model: String,
    /// Its index in the candidate list (to tell a fallback from a ranked model).
    pub index: usize,
    /// The models that failed before it.
    pub attempts: Vec<Attempt>,
    /// Time to the upstream's first body byte (first SSE event when streaming).
    pub ttft: Duration,
    pub body: ServedBody,
}

#[derive(Debug)]
pub enum ServedBody {
    /// A complete JSON response, `model` already rewritten to our id.
    Json {
        value: Value,
        usage: Option<Usage>,
        total: Duration,
    },
    /// A live SSE relay; its summary arrives when the stream ends.
    Stream(SseRelay),
}

/// Why no model served.
#[derive(Debug)]
pub enum DispatchFailure {
    /// Every candidate failed; the client gets a 502 listing them.
    AllFailed { attempts: Vec<Attempt> },
    /// An upstream refused the request itself; its status and error body go
    /// back to the client unchanged.
    Rejected {
        model: String,
        status: u16,
        body: Value,
        attempts: Vec<Attempt>,
    },
}

enum AttemptResult {
    Served(Duration, ServedBody),
    Failed(AttemptFailure),
    Rejected(u16, Value),
}

impl Dispatcher {
    /// Tries `candidates` in order until one serves `request`.
    pub async fn dispatch(
        &self,
        request: &ChatRequest,
        candidates: &RankedCandidates,
    ) -> Result<Served, DispatchFailure> {
        let deadline = Instant::now() + self.timeouts.total_timeout;
        let mut attempts = Vec::new();
        for (index, model) in candidates.models.iter().enumerate() {
            let Some(upstream) = self.upstreams.get(model) else {
                attempts.push(Attempt {
                    model: model.clone(),
                    failure: AttemptFailure::Unavailable {
                        detail: "model is not configured".to_owned(),
                    },
                });
                continue;
            };
            if let Some(detail) = &upstream.missing_key {
                attempts.push(Attempt {
                    model: model.clone(),
                    failure: AttemptFailure::Unavailable {
                        detail: detail.clone(),
                    },
                });
                continue;
            }
            if Instant::now() >= deadline {
                attempts.push(Attempt {
                    model: model.clone(),
                    failure: AttemptFailure::Timeout {
                        phase: "total".to_owned(),
                    },
                });
                continue;
            }
            match self.attempt(request, upstream, deadline).await {
                AttemptResult::Served(ttft, body) => {
                    return Ok(Served {
                        model: model.clone(),
                        index,
                        attempts,
                        ttft,
                        body,
                    });
                }
                AttemptResult::Rejected(status, body) => {
                    return Err(DispatchFailure::Rejected {
                        model: model.clone(),
                        status,
                        body,
                        attempts,
                    });
                }
                AttemptResult::Failed(failure) => {
                    tracing::warn!(model = %model, failure = %failure, "upstream attempt failed; trying the next model");
                    attempts.push(Attempt {
                        model: model.clone(),
                        failure,
                    });
                }
            }
        }
        Err(DispatchFailure::AllFailed { attempts })
    }

    async fn attempt(
        &self,
        request: &ChatRequest,
        upstream: &Upstream,
        deadline: Instant,
    ) -> AttemptResult {
        let stream = request.is_stream();
        let outgoing = Outgoing::new(request, &upstream.upstream_name);
        let swallow_usage = outgoing.adds_usage;
        let body = match kinds::body(upstream, &outgoing) {
            Ok(body) => body,
            Err(err) => return AttemptResult::Failed(broken(&format!("cannot encode the request: {err}"))),
        };
        let url = if stream { &upstream.stream_url } else { &upstream.url };
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let builder = kinds::authorize(request, upstream);
        let started = Instant::now();
        let first_byte_deadline = deadline.min(started + self.timeouts.first_byte_timeout);
        let response = match tokio::time::timeout_at(first_byte_deadline, builder.send()).await {
            Err(_) => return AttemptResult::Failed(timeout("first byte")),
            Ok(Err(err)) => return AttemptResult::Failed(transport_failure(&err)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if !response.status().is_success() {
            if is_retryable(status) {
                return AttemptResult::Failed(AttemptFailure::Status { status });
            }
            let body = match tokio::time::timeout_at(deadline, response.bytes()).await {
                Ok(Ok(bytes)) => error_body(status, &bytes, upstream.api_key.as_ref()),
                _ => error_body(status, b"", None),
            };
            return AttemptResult::Rejected(status, body);
        }
        if stream {
            let mut events = kinds::events(upstream, crate::stream::sse_events(response.bytes_stream()));
            // Leading events that carry nothing for the client (the role
            // chunk, empty deltas) are held back until the first one that
            // does: a stream that breaks before its first token then fails
            // over to the next model unseen, like one that never started.
            let mut held = Vec::new();
            let first = loop {
                let event = match tokio::time::timeout_at(first_byte_deadline, events.next()).await {
                    Err(_) => return AttemptResult::Failed(timeout("first byte")),
                    Ok(None) if held.is_empty() => return AttemptResult::Failed(broken("stream ended before any event")),
                    Ok(None) => return AttemptResult::Failed(broken("stream ended before its first token")),
                    Ok(Some(Err(err))) => return AttemptResult::Failed(broken(&err.to_string())),
                    Ok(Some(Ok(event))) => event,
                };
                match serde_json::from_str::<Value>(&event.data) {
                    Ok(value) if value.get("error").is_some() => {
                        return AttemptResult::Failed(broken("the stream opened with an error event"));
                    }
                    Ok(value) if held.len() < MAX_HELD_EVENTS && is_preamble(&value) => held.push(event),
                    Ok(_) => break event,
                    // Nothing reached the client yet: the next model can serve.
                    Err(_) if event.data.trim() != "[DONE]" => {
                        return AttemptResult::Failed(broken("the stream opened with data that is not JSON"));
                    }
                    Err(_) => break event,
                }
            };
            let ttft = started.elapsed();
            held.push(first);
            let mut ordered = held.into_iter();
            let Some(head) = ordered.next() else {
                return AttemptResult::Failed(broken("stream ended before any event"));
            };
            let relay = relay(
                head,
                futures_util::stream::iter(ordered.map(Ok)).chain(events),
                upstream.model.clone(),
                swallow_usage,
                started,
                deadline,
            );
            return AttemptResult::Served(ttft, ServedBody::Stream(relay));
        }
        let mut body_stream = response.bytes_stream();
        let mut ttft = None;
        // One timer for the whole body (not one per chunk).
        let read = tokio::time::timeout_at(deadline, async {
            let mut bytes = Vec::new();
            while let Some(chunk) = body_stream.next().await {
                let chunk = chunk.map_err(|err| describe(&err))?;
                ttft.get_or_insert_with(|| started.elapsed());
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, String>(bytes)
        });
        let bytes = match read.await {
            Err(_) => return AttemptResult::Failed(timeout("total")),
            Ok(Err(detail)) => return AttemptResult::Failed(broken(&detail)),
            Ok(Ok(bytes)) => bytes,
        };
        let mut value: Value = match serde_json::from_slice(&bytes) {
            Ok(value) => kinds::response(upstream, value),
            Err(err) => return AttemptResult::Failed(broken(&format!("invalid JSON body: {err}"))),
        };
        // A 200 without choices answers nothing: clients index `choices[0]`.
        if !value.get("choices").is_some_and(Value::is_array) {
            return AttemptResult::Failed(broken("the response has no `choices` array"));
        }
        if let Some(object) = value.as_object_mut() {
            object.insert("model".to_owned(), Value::String(upstream.model.clone()));
        }
        let usage = value.get("usage").and_then(parse_usage);
        let total = started.elapsed();
        AttemptResult::Served(
            ttft.unwrap_or(total),
            ServedBody::Json {
                value,
                usage,
                total,
            },
        )
    }
}

/// The body sent upstream: the client's request with the upstream's model
/// name. Streams ask for usage so tokens and cost can be counted; when the
/// client did not ask for it, the extra usage chunk is swallowed again
/// (`adds_usage`) so the client sees exactly the stream it asked for.
///
/// It borrows the client's request and is serialized as it stands: the
/// request is not copied for every attempt.
struct Outgoing<'a> {
    request: &'a ChatRequest,
    model: &'a str,
    /// `stream_options.include_usage` is set on the client's behalf.
    adds_usage: bool,
}

impl<'a> Outgoing<'a> {
    fn new(request: &'a ChatRequest, upstream_name: &'a str) -> Outgoing<'a> {
        let client_asked = request
            .extra
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Outgoing {
            request,
            model: upstream_name,
            adds_usage: request.is_stream() && !client_asked,
        }
    }
}

impl Serialize for Outgoing<'_> {
    /// The fields in `ChatRequest`'s own order, with `model` replaced and,
    /// when usage is added, the client's other stream options kept.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("messages", &self.request.messages)?;
        if let Some(stream) = self.request.stream {
            map.serialize_entry("stream", &stream)?;
        }
        for (key, value) in &self.request.extra {
            if !(self.adds_usage && key == "stream_options") {
                map.serialize_entry(key, value)?;
            }
        }
        if self.adds_usage {
            let mut options = match self.request.extra.get("stream_options") {
                Some(Value::Object(options)) => options.clone(),
                _ => serde_json::Map::new(),
            };
            options.insert("include_usage".to_owned(), Value::Bool(true));
            map.serialize_entry("stream_options", &options)?;
        }
        map.end()
    }
}

fn timeout(phase: &str) -> AttemptFailure {
    AttemptFailure::Timeout {
        phase: phase.to_owned(),
    }
}

fn broken(detail: &str) -> AttemptFailure {
    AttemptFailure::Broken {
        detail: detail.to_owned(),
    }
}

fn transport_failure(err: &reqwest::Error) -> AttemptFailure {
    if err.is_connect() {
        AttemptFailure::Connect
    } else if err.is_timeout() {
        timeout("connect")
    } else {
        broken(&describe(err))
    }
}

/// An error's text without its URL: reqwest prints the URL, and a
/// provider's URL may carry a key in its query string.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(url.as_str(), "<upstream>"),
        None => text,
    }
}

/// Most leading contentless events held back before the first token.
const MAX_HELD_EVENTS: usize = 16;

/// Whether an OpenAI chunk carries nothing a client shows: no content, no
/// tool call, no finish, no usage (a role chunk, an empty delta, Azure's
/// prompt-filter chunk).
fn is_preamble(chunk: &Value) -> bool {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return false;
    };
    let no_usage = chunk.get("usage").is_none_or(Value::is_null);
    no_usage
        && choices.iter().all(|choice| {
            let delta = choice.get("delta");
            let field = |name: &str| delta.and_then(|delta| delta.get(name)).filter(|value| !value.is_null());
            choice.get("finish_reason").is_none_or(Value::is_null)
                && field("content").is_none_or(|content| content.as_str() == Some(""))
                && field("refusal").is_none_or(|refusal| refusal.as_str() == Some(""))
                && field("tool_calls").is_none()
                && field("function_call").is_none()
        })
}

/// An upstream's error body, kept when it is OpenAI-shaped, wrapped otherwise.
/// The body goes to the client, so the provider key it may echo ("invalid
/// key sk-...") is cut out first.
fn error_body(status: u16, bytes: &[u8], key: Option<&switchyard_config::Secret>) -> Value {
    let scrubbed;
    let bytes = match key.map(|key| key.expose()).filter(|key| !key.is_empty()) {
        Some(key) if bytes.windows(key.len()).any(|window| window == key.as_bytes()) => {
            scrubbed = String::from_utf8_lossy(bytes).replace(key, "[redacted]");
            scrubbed.as_bytes()
        }
        _ => bytes,
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.get("error").is_some() => value,
        _ => json!({
            "error": {
                "message": format!("the upstream refused the request with HTTP {status}"),
                "type": "invalid_request_error",
                "code": "upstream_rejected",
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_only_what_another_model_could_fix() {
        for status in [429, 500, 502, 503, 504, 401, 403, 404, 408, 301, 307, 308] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [400, 413, 422] {
            assert!(!is_retryable(status), "{status}");
        }
    }

    #[test]
    fn streams_ask_for_usage_and_remember_whether_the_client_did() {
        let request = ChatRequest::from_json(
            br#"{"model":"router:x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let outgoing = Outgoing::new(&request, "upstream-name");
        assert!(outgoing.adds_usage);
        let body = serde_json::to_value(&outgoing).unwrap();
        assert_eq!(body["model"], "upstream-name");
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let asked = ChatRequest::from_json(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert!(!Outgoing::new(&asked, "m").adds_usage);
        // Other stream options survive; a non-object one is replaced.
        let other = ChatRequest::from_json(
            br#"{"model":"m","stream":true,"stream_options":{"chunk":1},"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let body = serde_json::to_value(Outgoing::new(&other, "m")).unwrap();
        assert_eq!(body["stream_options"], json!({"chunk": 1, "include_usage": true}));
        let odd = ChatRequest::from_json(
            br#"{"model":"m","stream":true,"stream_options":"x","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let body = serde_json::to_value(Outgoing::new(&odd, "m")).unwrap();
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn a_request_goes_upstream_unchanged_but_for_its_model() {
        let body = br#"{"model":"router:x","messages":[{"role":"user","content":"hi","name":"ann"}],"temperature":0.2,"tools":[{"type":"function"}],"stream":false}"#;
        let request = ChatRequest::from_json(body).unwrap();
        let outgoing = Outgoing::new(&request, "gpt-5-mini");
        assert!(!outgoing.adds_usage);
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = json!("gpt-5-mini");
        assert_eq!(serde_json::to_value(&outgoing).unwrap(), expected);
    }

    #[test]
    fn an_echoed_provider_key_never_reaches_the_client() {
        let key = switchyard_config::Secret::new("sk-live-0123456789abcdef");
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-0123456789abcdef.","type":"invalid_request_error"}}"#;
        let value = error_body(400, body, Some(&key));
        let text = value.to_string();
        assert!(!text.contains("sk-live-0123456789abcdef"), "{text}");
        assert!(text.contains("Incorrect API key provided: [redacted]."), "{text}");
        let plain = error_body(400, b"not json sk-live-0123456789abcdef", Some(&key));
        assert!(!plain.to_string().contains("sk-live"), "{plain}");
    }

    #[test]
    fn only_chunks_without_anything_to_show_are_preamble() {
        let preamble = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}], "usage": null}),
            json!({"choices": [], "prompt_filter_results": []}),
        ];
        for chunk in preamble {
            assert!(is_preamble(&chunk), "{chunk}");
        }
        let content = [
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
            json!({"object": "something else"}),
        ];
        for chunk in content {
            assert!(!is_preamble(&chunk), "{chunk}");
        }
    }
}
