//! Client request bodies: what ingress reads from any client.
//!
//! The bytes go to `ChatRequest::from_json` (`POST /v1/chat/completions`)
//! and, parsed as JSON, to `anthropic::request_to_openai` (`POST
//! /v1/messages`) whose output goes through `from_json` in turn. Accepted
//! requests are read as the classifier reads them (`Conversation`) and
//! translated as dispatch translates them for Anthropic and Gemini
//! upstreams; an accepted request decodes the same with serde's derive.
//! Nothing may panic; errors are answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_protocol::{anthropic, gemini};
use switchyard_types::{ChatRequest, Conversation};

/// What the router does with a request it accepted.
fn route(request: &ChatRequest) {
    let conversation = Conversation::from_messages(&request.messages);
    let _ = conversation.user_turns_newest_first().count();
    let _ = conversation.last_assistant_turn();
    let _ = request.is_stream();
    // Dispatch serializes the accepted request, then translates it per kind.
    let bytes = serde_json::to_vec(request).expect("an accepted request serializes");
    ChatRequest::from_json(&bytes).expect("an accepted request, serialized, is accepted again");
    let value = serde_json::to_value(request).expect("an accepted request is a JSON tree");
    let to_anthropic = anthropic::request_from_openai(&value, "upstream-model");
    assert!(to_anthropic.is_object());
    let to_gemini = gemini::request_from_openai(&value);
    assert!(to_gemini.is_object());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ChatRequest::from_json(data) {
        // `from_json` takes the validated tree apart by hand; serde's own
        // decoding of the same tree (a later duplicate key wins in both)
        // must agree with it.
        let tree: Value = serde_json::from_slice(data).expect("an accepted request is JSON");
        let by_serde: ChatRequest = serde_json::from_value(tree).expect("an accepted request decodes with serde");
        assert_eq!(request, by_serde, "from_json and serde disagree");
        route(&request);
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(openai) = anthropic::request_to_openai(&body) {
        let bytes = serde_json::to_vec(&openai).expect("a JSON tree serializes");
        if let Ok(request) = ChatRequest::from_json(&bytes) {
            route(&request);
        }
    }
});
