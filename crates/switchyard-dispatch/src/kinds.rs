//! Provider kinds on the wire: the URL, headers and body each kind wants,
//! and its answers (JSON or SSE) turned back into OpenAI chat completions,
//! the shape the rest of dispatch and the client relay work with.

use std::collections::VecDeque;
use std::pin::Pin;

use eventsource_stream::Event;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use switchyard_config::ProviderKind;
use switchyard_protocol::{anthropic, gemini};

use crate::upstream::Upstream;

/// An upstream's event stream, already in the OpenAI chunk shape.
pub(crate) type OpenAiEvents = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// Where a provider of `kind` at `base_url` takes `stream`ing or
/// non-streaming requests for the model it calls `upstream_name`.
pub(crate) fn url(kind: ProviderKind, base_url: &str, upstream_name: &str, stream: bool) -> String {
    match kind {
        ProviderKind::OpenAi => format!("{base_url}/chat/completions"),
        ProviderKind::Anthropic => format!("{base_url}/messages"),
        ProviderKind::Gemini if stream => format!("{base_url}/models/{upstream_name}:streamGenerateContent?alt=sse"),
        ProviderKind::Gemini => format!("{base_url}/models/{upstream_name}:generateContent"),
    }
}

/// Adds the kind's credentials and version headers.
pub(crate) fn authorize(builder: reqwest::RequestBuilder, upstream: &Upstream) -> reqwest::RequestBuilder {
    let builder = match upstream.kind {
        ProviderKind::Anthropic => builder.header("anthropic-version", anthropic::API_VERSION),
        _ => builder,
    };
    let Some(key) = &upstream.api_key else {
        return builder;
    };
    match upstream.kind {
        ProviderKind::OpenAi => builder.bearer_auth(key.expose()),
        ProviderKind::Anthropic => builder.header("x-api-key", key.expose()),
        ProviderKind::Gemini => builder.header("x-goog-api-key", key.expose()),
    }
}

/// The upstream's JSON body from the OpenAI-shaped request (already
/// carrying the upstream's model name, and the usage request when
/// streaming). An OpenAI upstream gets the request serialized as it is; the
/// other kinds go through a JSON tree to be translated.
pub(crate) fn body(upstream: &Upstream, openai: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let translated = match upstream.kind {
        ProviderKind::OpenAi => return serde_json::to_vec(openai),
        ProviderKind::Anthropic => anthropic::request_from_openai(&serde_json::to_value(openai)?, &upstream.upstream_name),
        ProviderKind::Gemini => gemini::request_from_openai(&serde_json::to_value(openai)?),
    };
    serde_json::to_vec(&translated)
}

/// A JSON answer as an OpenAI chat completion answered by our model id.
pub(crate) fn response(upstream: &Upstream, value: Value) -> Value {
    match upstream.kind {
        ProviderKind::OpenAi => value,
        ProviderKind::Anthropic => anthropic::response_to_openai(&value, &upstream.model),
        ProviderKind::Gemini => gemini::response_to_openai(&value, &upstream.model),
    }
}

enum Translator {
    Anthropic(anthropic::StreamToOpenAi),
    Gemini(gemini::StreamToOpenAi),
}

impl Translator {
    fn feed(&mut self, event: &Event) -> Vec<String> {
        match self {
            Translator::Anthropic(stream) => stream.event(&event.event, &event.data),
            Translator::Gemini(stream) => stream.chunk_data(&event.data),
        }
    }

    /// The upstream closed the stream. A Gemini stream ends that way; an
    /// Anthropic one should have said `message_stop` first, so nothing is
    /// added and the relay reports the stream as broken.
    fn finish(&mut self) -> Vec<String> {
        match self {
            Translator::Anthropic(_) => Vec::new(),
            Translator::Gemini(stream) => stream.finish(),
        }
    }
}

fn openai_event(data: String) -> Event {
    Event {
        event: String::new(),
        data,
        id: String::new(),
        retry: None,
    }
}

/// The upstream's SSE events as OpenAI chunk events, translated one by one
/// as they arrive.
pub(crate) fn events<S, E>(upstream: &Upstream, events: S) -> OpenAiEvents
where
    S: Stream<Item = Result<Event, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let translator = match upstream.kind {
        ProviderKind::OpenAi => return Box::pin(events.map(|event| event.map_err(|err| err.to_string()))),
        ProviderKind::Anthropic => Translator::Anthropic(anthropic::StreamToOpenAi::new(&upstream.model)),
        ProviderKind::Gemini => Translator::Gemini(gemini::StreamToOpenAi::new(&upstream.model)),
    };
    let state = (events, translator, VecDeque::<String>::new(), false);
    Box::pin(futures_util::stream::unfold(state, |(mut events, mut translator, mut pending, mut ended)| async move {
        loop {
            if let Some(data) = pending.pop_front() {
                return Some((Ok(openai_event(data)), (events, translator, pending, ended)));
            }
            if ended {
                return None;
            }
            match events.next().await {
                Some(Ok(event)) => pending.extend(translator.feed(&event)),
                Some(Err(err)) => {
                    ended = true;
                    return Some((Err(err.to_string()), (events, translator, pending, ended)));
                }
                None => {
                    ended = true;
                    pending.extend(translator.finish());
                }
            }
        }
    }))
}
