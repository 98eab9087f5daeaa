//! What upstreams send back, JSON bodies and SSE streams, through every
//! parser that reads it.
//!
//! The same bytes are read as:
//! - a JSON body of each provider kind: OpenAI (kept, usage read),
//!   Anthropic and Gemini (`response_to_openai`), then written back in the
//!   Messages shape for `/v1/messages` clients (`response_from_openai`);
//! - an SSE stream, parsed as dispatch parses an upstream body
//!   (`stream::sse_events`, over eventsource-stream), fed as one chunk,
//!   byte by byte, and in chunks of sizes drawn from a hash of the input
//!   (all three must give the same events), then translated per
//!   kind (`StreamToOpenAi` of Anthropic and Gemini), relayed
//!   (`rewrite_chunk`, usage swallowed or not) and translated for
//!   `/v1/messages` clients (`StreamFromOpenAi`).
//!
//! Nothing may panic, and every chunk a translator emits is JSON (or
//! `[DONE]`).
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::Event;
use futures_util::{FutureExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_dispatch::stream::{Rewritten, parse_usage, rewrite_chunk, sse_events};
use switchyard_protocol::{anthropic, gemini};

const MODEL: &str = "our-model";

/// An event, or where the parser stopped (dispatch ends the stream there).
type Parsed = Result<Event, String>;

fn parse_sse(chunks: Vec<Bytes>) -> Vec<Parsed> {
    let mut events = sse_events(futures_util::stream::iter(chunks.into_iter().map(Ok::<Bytes, Infallible>)));
    let mut out = Vec::new();
    // The source is always ready, so every poll completes at once.
    while let Some(Some(item)) = events.next().now_or_never() {
        match item {
            Ok(event) => out.push(Ok(event)),
            Err(err) => {
                out.push(Err(err.to_string()));
                break;
            }
        }
    }
    out
}

/// Splits `data` in chunks whose sizes (1 to 64 bytes) come from a hash of
/// it, so each input is split its own way, reproducibly.
fn hashed_chunks(data: &[u8]) -> Vec<Bytes> {
    let mut state = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
        | 1;
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = usize::try_from(state % 64).unwrap_or(0) + 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(Bytes::copy_from_slice(chunk));
        rest = tail;
    }
    chunks
}

fn assert_json_or_done(data: &str) {
    if data == "[DONE]" {
        return;
    }
    let value: Value = serde_json::from_str(data).unwrap_or_else(|err| panic!("translator emitted non-JSON {data:?}: {err}"));
    assert!(value.is_object(), "translator emitted a non-object: {data}");
}

/// The relay to the client (stream.rs) and, behind it, the `/v1/messages`
/// translation of the relayed chunks.
fn relay(openai_events: &[String]) {
    for swallow_usage in [false, true] {
        let mut usage = None;
        let mut to_anthropic = anthropic::StreamFromOpenAi::new(MODEL);
        for data in openai_events {
            if data.trim() == "[DONE]" {
                break;
            }
            let sent = match rewrite_chunk(data, MODEL, swallow_usage, &mut usage) {
                Rewritten::Send(sent) => sent,
                Rewritten::Dropped => continue,
                // The relay ends the stream here, with an error event.
                Rewritten::NotJson => break,
            };
            assert_json_or_done(&sent);
            for (name, event) in to_anthropic.chunk(&sent) {
                assert!(!name.is_empty());
                assert_json_or_done(&event);
            }
        }
        for (_, event) in to_anthropic.finish() {
            assert_json_or_done(&event);
        }
    }
}

fn stream(events: &[Event]) {
    // OpenAI kind: relayed as they come.
    let openai: Vec<String> = events.iter().map(|event| event.data.clone()).collect();
    relay(&openai);
    // Anthropic kind: translated event by event; nothing added at the end.
    let mut from_anthropic = anthropic::StreamToOpenAi::new(MODEL);
    let mut translated = Vec::new();
    for event in events {
        translated.extend(from_anthropic.event(&event.event, &event.data));
    }
    let _ = from_anthropic.is_done();
    translated.iter().for_each(|data| assert_json_or_done(data));
    relay(&translated);
    // Gemini kind: translated chunk by chunk, closed when the upstream closes.
    let mut from_gemini = gemini::StreamToOpenAi::new(MODEL);
    let mut translated = Vec::new();
    for event in events {
        translated.extend(from_gemini.chunk_data(&event.data));
    }
    translated.extend(from_gemini.finish());
    translated.iter().for_each(|data| assert_json_or_done(data));
    relay(&translated);
}

/// A JSON body as failover.rs reads it, then as ingress answers a
/// `/v1/messages` client.
fn json_body(value: &Value) {
    let answers = [
        value.clone(),
        anthropic::response_to_openai(value, MODEL),
        gemini::response_to_openai(value, MODEL),
    ];
    for mut answer in answers {
        if let Some(object) = answer.as_object_mut() {
            object.insert("model".to_owned(), Value::String(MODEL.to_owned()));
        }
        let _ = answer.get("usage").and_then(parse_usage);
        let messages = anthropic::response_from_openai(&answer, MODEL);
        assert!(messages.is_object());
        let _ = messages.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        json_body(&value);
    }
    let whole = parse_sse(vec![Bytes::copy_from_slice(data)]);
    // eventsource-stream rescans an unfinished line at every chunk: byte by
    // byte is quadratic, so only short inputs get it.
    if data.len() <= 512 {
        let bytewise = parse_sse(data.iter().map(|byte| Bytes::copy_from_slice(&[*byte])).collect());
        assert_eq!(whole, bytewise, "one chunk and byte-by-byte parse differently");
    }
    let hashed = parse_sse(hashed_chunks(data));
    assert_eq!(whole, hashed, "one chunk and hashed chunks parse differently");
    let events: Vec<Event> = whole.into_iter().map_while(Result::ok).collect();
    stream(&events);
});
