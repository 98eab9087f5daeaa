//! Bad input and limits: a corpus of malformed requests, each answered with
//! the right status and an OpenAI-shaped (or, on `/v1/messages`,
//! Anthropic-shaped) error; upstreams that answer garbage; the load-shedding,
//! body-time and classifier limits. The node must stay healthy throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed unwrap is a failed test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use switchyard_mock::MockConfig;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, ask, eventually, sample, sse_events};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// An upstream that misbehaves by model name, and holds `held` requests
/// until released.
struct BadUpstream {
    url: String,
    held: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

async fn bad_upstream() -> BadUpstream {
    let held = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (count, gate) = (Arc::clone(&held), Arc::clone(&release));
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (count, gate) = (Arc::clone(&count), Arc::clone(&gate));
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let sse = |text: &'static str| {
                    axum::response::Response::builder()
                        .header(header::CONTENT_TYPE, "text/event-stream")
                        .body(Body::from(text))
                        .unwrap()
                };
                let json_response = |status: StatusCode, text: &'static str, kind: &'static str| {
                    axum::response::Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, kind)
                        .body(Body::from(text))
                        .unwrap()
                };
                match request["model"].as_str().unwrap_or("") {
                    "no-fields" => json_response(StatusCode::OK, r#"{"id":"x","object":"chat.completion"}"#, "application/json"),
                    "html" => json_response(StatusCode::OK, "<html><body>502 Bad Gateway</body></html>", "text/html"),
                    "empty" => json_response(StatusCode::OK, "", "application/json"),
                    "bad-sse" => sse("data: {not json\n\ndata: [DONE]\n\n"),
                    "cut-sse" => sse(
                        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: <!doctype html>\n\n",
                    ),
                    "held" => {
                        count.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        json_response(
                            StatusCode::OK,
                            r#"{"id":"h","object":"chat.completion","model":"held","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}]}"#,
                            "application/json",
                        )
                    }
                    _ => json_response(StatusCode::NOT_FOUND, r#"{"error":{"message":"no such model"}}"#, "application/json"),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BadUpstream {
        url: format!("http://{addr}"),
        held,
        release,
    }
}

/// STANDARD_CONFIG with the misbehaving upstream's models, a router that
/// fails over across them to a healthy model, and tight limits.
fn config(bad: &str, limits: &str) -> String {
    let models = ["no-fields", "html", "empty", "bad-sse", "cut-sse", "held"]
        .iter()
        .map(|id| format!("  - {{ id: {id}, provider: bad, price: {{ input: 1, output: 1 }} }}\n"))
        .collect::<String>();
    STANDARD_CONFIG
        .replace(
            "models:\n",
            &format!("  - {{ name: bad, kind: openai, base_url: \"{bad}\" }}\nmodels:\n{models}"),
        )
        .replace(
            "routers:\n",
            "routers:\n  - name: rough\n    tasks:\n      - name: anything\n        description: Any question at all\n        models: [no-fields, html, empty, bad-sse, cheap]\n        selection_policy: manual\n    fallback_models: [no-fields, html, empty, bad-sse, spare]\n",
        )
        + limits
}

async fn sandbox(bad: &BadUpstream, limits: &str) -> Sandbox {
    Sandbox::start_with(&config(&bad.url, limits), MockConfig::default()).await
}

/// A malformed request: (case, path, content type, body, status, code).
type Case = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16, &'static str);

/// Checks an OpenAI-shaped error body and returns its code.
fn openai_error(body: &Value, case: &str) -> String {
    let error = &body["error"];
    for field in ["message", "type", "code"] {
        assert!(error[field].is_string(), "{case}: OpenAI-shaped error, got {body}");
    }
    error["code"].as_str().unwrap().to_owned()
}

async fn node_is_healthy(sandbox: &Sandbox) {
    let health = sandbox.client.get(sandbox.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let answer = sandbox.chat(&ask("router:eng", "this throws a NullPointerException"), None).await;
    assert_eq!(answer.status(), 200, "a good request after the bad ones");
}

#[tokio::test]
async fn malformed_requests_get_the_right_status_and_an_openai_error() {
    let bad = bad_upstream().await;
    let sandbox = sandbox(&bad, "limits:\n  max_messages: 50\n").await;
    let ok_message = r#"[{"role":"user","content":"hi"}]"#;
    let deep = format!(r#"{{"model":"cheap","messages":{ok_message},"metadata":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let many: Vec<Value> = (0..51).map(|i| json!({"role": "user", "content": format!("turn {i}")})).collect();
    let huge = format!(r#"{{"model":"cheap","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(70_000));
    let mut invalid_utf8 = br#"{"model":"cheap","messages":[{"role":"user","content":"caf"#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}]}");
    let raw_nul = b"{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":\"a\x00b\"}]}".to_vec();

    let cases: Vec<Case> = vec![
        ("invalid JSON", "/v1/chat/completions", None, br#"{"model":"#.to_vec(), 400, "invalid_request"),
        ("empty body", "/v1/chat/completions", None, Vec::new(), 400, "invalid_request"),
        ("not an object", "/v1/chat/completions", None, b"[1,2,3]".to_vec(), 400, "invalid_request"),
        ("model is a number", "/v1/chat/completions", None, format!(r#"{{"model":7,"messages":{ok_message}}}"#).into_bytes(), 400, "invalid_request"),
        ("empty model", "/v1/chat/completions", None, format!(r#"{{"model":"","messages":{ok_message}}}"#).into_bytes(), 400, "invalid_request"),
        ("messages is an object", "/v1/chat/completions", None, br#"{"model":"cheap","messages":{"role":"user"}}"#.to_vec(), 400, "invalid_request"),
        ("no messages", "/v1/chat/completions", None, br#"{"model":"cheap","messages":[]}"#.to_vec(), 400, "invalid_request"),
        ("content is a number", "/v1/chat/completions", None, br#"{"model":"cheap","messages":[{"role":"user","content":5}]}"#.to_vec(), 400, "invalid_request"),
        ("unknown role", "/v1/chat/completions", None, br#"{"model":"cheap","messages":[{"role":"wizard","content":"hi"}]}"#.to_vec(), 400, "invalid_request"),
        ("role is null", "/v1/chat/completions", None, br#"{"model":"cheap","messages":[{"role":null,"content":"hi"}]}"#.to_vec(), 400, "invalid_request"),
        ("stream is a string", "/v1/chat/completions", None, format!(r#"{{"model":"cheap","stream":"yes","messages":{ok_message}}}"#).into_bytes(), 400, "invalid_request"),
        ("invalid UTF-8", "/v1/chat/completions", None, invalid_utf8, 400, "invalid_request"),
        ("raw NUL byte in a string", "/v1/chat/completions", None, raw_nul, 400, "invalid_request"),
        ("deep nesting", "/v1/chat/completions", None, deep.into_bytes(), 400, "invalid_request"),
        ("too many messages", "/v1/chat/completions", None, serde_json::to_vec(&json!({"model": "cheap", "messages": many})).unwrap(), 400, "invalid_request"),
        ("body over the size limit", "/v1/chat/completions", None, huge.into_bytes(), 413, "request_too_large"),
        ("multipart body", "/v1/chat/completions", Some("multipart/form-data; boundary=x"), b"--x--".to_vec(), 415, "unsupported_media_type"),
        ("XML body", "/v1/route", Some("application/xml"), b"<model/>".to_vec(), 415, "unsupported_media_type"),
        ("unknown model", "/v1/chat/completions", None, format!(r#"{{"model":"gpt-9","messages":{ok_message}}}"#).into_bytes(), 404, "model_not_found"),
        ("unknown router", "/v1/chat/completions", None, format!(r#"{{"model":"router:nope","messages":{ok_message}}}"#).into_bytes(), 404, "router_not_found"),
        ("route: wrong types", "/v1/route", None, br#"{"model":["x"]}"#.to_vec(), 400, "invalid_request"),
        ("unknown path", "/v1/chat/completion", None, b"{}".to_vec(), 404, "not_found"),
    ];
    for (case, path, content_type, body, status, code) in cases {
        let mut request = sandbox.client.post(sandbox.url(path)).body(body);
        request = request.header(header::CONTENT_TYPE, content_type.unwrap_or("application/json"));
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        let body: Value = response.json().await.unwrap_or_else(|err| panic!("{case}: body is not JSON: {err}"));
        assert_eq!(openai_error(&body, case), code, "{case}: {body}");
    }

    // Fields named where the client can fix them.
    let unknown_role = sandbox
        .client
        .post(sandbox.url("/v1/chat/completions"))
        .json(&json!({"model": "cheap", "messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = unknown_role.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages[1].role", "{body}");

    // Accepted though odd: escaped NUL, empty content, no content type
    // (curl's default form type too), a long message (cut for the
    // classifier only).
    let long = "why does this crash? ".repeat(2500);
    for (case, body, content_type) in [
        ("escaped NUL", json!({"model": "router:eng", "messages": [{"role": "user", "content": "a\u{0}b"}]}), "application/json"),
        ("empty content", json!({"model": "router:eng", "messages": [{"role": "user", "content": ""}]}), "application/json"),
        ("form content type", ask("cheap", "hi"), "application/x-www-form-urlencoded"),
        ("long message", json!({"model": "router:eng", "messages": [{"role": "user", "content": long}]}), "application/json"),
    ] {
        let response = sandbox
            .client
            .post(sandbox.url("/v1/chat/completions"))
            .header(header::CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{case}");
    }

    // Other methods, headers and the Anthropic API.
    let get = sandbox.client.get(sandbox.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(openai_error(&get.json().await.unwrap(), "GET"), "method_not_allowed");
    let mut headers = HeaderMap::new();
    headers.insert("x-model-affinity", "s".repeat(300).parse().unwrap());
    let long_session = sandbox
        .client
        .post(sandbox.url("/v1/chat/completions"))
        .headers(headers)
        .json(&ask("router:eng", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(long_session.status(), 400);
    assert_eq!(openai_error(&long_session.json().await.unwrap(), "session"), "invalid_affinity_header");
    for (case, body) in [
        ("anthropic: invalid JSON", b"{\"model\"".to_vec()),
        ("anthropic: messages missing", br#"{"model":"cheap","max_tokens":10}"#.to_vec()),
        ("anthropic: content is a number", br#"{"model":"cheap","max_tokens":10,"messages":[{"role":"user","content":1}]}"#.to_vec()),
    ] {
        let response = sandbox
            .client
            .post(sandbox.url("/v1/messages"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error", "{case}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{case}: {body}");
        assert!(body["error"]["message"].is_string(), "{case}");
    }

    node_is_healthy(&sandbox).await;
    sandbox.stop().await;
}

#[tokio::test]
async fn upstream_garbage_fails_over_or_ends_in_an_openai_error() {
    let bad = bad_upstream().await;
    let sandbox = sandbox(&bad, "").await;

    // Named directly (no failover), each kind of garbage is a 502 that
    // says what went wrong.
    for model in ["no-fields", "html", "empty", "bad-sse"] {
        let stream = model.ends_with("sse");
        let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let response = sandbox.chat(&body, None).await;
        assert_eq!(response.status(), 502, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(openai_error(&body, model), "all_models_failed", "{model}: {body}");
        assert_eq!(body["error"]["attempts"][0]["model"], model);
    }

    // Through a router, the garbage is skipped for the healthy model (the
    // task's or, if the classifier says `other`, the fallback pool's).
    for stream in [false, true] {
        let body = json!({"model": "router:rough", "stream": stream, "messages": [{"role": "user", "content": "any question"}]});
        let response = sandbox.chat(&body, None).await;
        assert_eq!(response.status(), 200, "stream: {stream}");
        if stream {
            let (events, error) = sse_events(response).await;
            assert_eq!(error, None);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            let first: Value = serde_json::from_str(&events[0]).unwrap();
            assert!(["cheap", "spare"].contains(&first["model"].as_str().unwrap()), "{first}");
        } else {
            let body: Value = response.json().await.unwrap();
            assert!(["cheap", "spare"].contains(&body["model"].as_str().unwrap()), "{body}");
            assert!(body["choices"][0]["message"]["content"].is_string());
        }
    }

    // Garbage after the first chunk reached the client: the stream ends
    // with an error event rather than passing the garbage on.
    let body = json!({"model": "cut-sse", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let response = sandbox.chat(&body, None).await;
    assert_eq!(response.status(), 200);
    let (events, _) = sse_events(response).await;
    assert!(!events.iter().any(|event| event.contains("doctype")), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{events:?}");

    node_is_healthy(&sandbox).await;
    sandbox.stop().await;
}

#[tokio::test]
async fn excess_concurrent_requests_are_shed_with_503_not_queued() {
    let bad = bad_upstream().await;
    let sandbox = sandbox(&bad, "limits:\n  max_concurrent_requests: 2\n").await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (sandbox.client.clone(), sandbox.url("/v1/chat/completions"));
            tokio::spawn(async move { client.post(url).json(&ask("held", "wait")).send().await.unwrap().status() })
        })
        .collect();
    eventually("both requests are upstream", Duration::from_secs(10), || async { bad.held.load(Ordering::SeqCst) == 2 }).await;

    let shed = sandbox.chat(&ask("cheap", "one too many"), None).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(openai_error(&shed.json().await.unwrap(), "shed"), "overloaded");
    // Probes and metrics are not counted against the limit.
    assert_eq!(sandbox.client.get(sandbox.url("/healthz")).send().await.unwrap().status(), 200);

    bad.release.notify_waiters();
    for request in held {
        assert_eq!(request.await.unwrap(), 200, "accepted requests are served");
    }
    assert_eq!(sandbox.chat(&ask("cheap", "room again"), None).await.status(), 200);
    let metrics = sandbox
        .metrics_eventually("the shed request", |m| {
            sample(m, "switchyard_refused_total{reason=\"overloaded\"}").is_some_and(|n| n >= 1.0)
        })
        .await;
    assert!(metrics.contains("switchyard_refused_total"));
    sandbox.stop().await;
}

#[tokio::test]
async fn stalled_headers_are_cut_off_and_a_stalled_body_gets_408() {
    let bad = bad_upstream().await;
    let sandbox = sandbox(&bad, "limits:\n  body_timeout_secs: 0.5\n  header_timeout_secs: 0.5\n").await;

    // Headers that never end (slowloris): the connection is closed.
    let mut slow_headers = tokio::net::TcpStream::connect(sandbox.node.addr()).await.unwrap();
    slow_headers.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 1024];
        while let Ok(n) = slow_headers.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a connection whose headers never end is closed");

    let mut socket = tokio::net::TcpStream::connect(sandbox.node.addr()).await.unwrap();
    socket
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"model\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || String::from_utf8_lossy(&answer).contains("body_timeout") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the node answered a stalled body within its limit");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
    node_is_healthy(&sandbox).await;
    sandbox.stop().await;
}

#[tokio::test]
async fn a_saturated_classifier_sheds_to_the_fallback_models_unpinned() {
    let bad = bad_upstream().await;
    // No MoE decision (an encoder pass) finishes within 1 ms: every routed
    // request is shed.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = config(&bad.url, "limits:\n  classify_timeout_ms: 1\n").replace(
        "  kind: lexical\n",
        &format!(
            "  kind: moe\n  model_dir: \"{}\"\n  head_dir: \"{}\"\n",
            root.join("models/cache/all-minilm-l6-v2").display(),
            root.join("models/moe-router").display()
        ),
    );
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    assert_eq!(sandbox.node.config().limits.classify_timeout, Duration::from_millis(1));
    let body = ask("router:eng", "this stack trace shows a null pointer exception");
    let route = sandbox.route(&body, None).await;
    assert_eq!(route["shed"], "timeout", "{route}");
    assert_eq!(route["route"], "other");
    assert_eq!(route["model"], "spare", "the router's first fallback model: {route}");
    let first = sandbox.chat(&body, Some("shed-session")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-model-router-selected-route"], "other");
    let second = sandbox.chat(&body, Some("shed-session")).await;
    assert_eq!(second.headers()["x-model-router-affinity"], "miss", "a shed turn pins nothing");
    let metrics = sandbox
        .metrics_eventually("shed requests", |m| {
            sample(m, "switchyard_classifier_shed_total{reason=\"timeout\"}").is_some_and(|n| n >= 2.0)
        })
        .await;
    assert!(metrics.contains("switchyard_classifier_shed_total"));
    sandbox.stop().await;
}

#[tokio::test]
async fn a_full_classifier_queue_sheds_instead_of_queueing() {
    let bad = bad_upstream().await;
    // One MoE worker (tens of milliseconds a decision in a debug build) and
    // no queue beyond it: of concurrent routed requests, those that find
    // the worker busy are served by the fallback models at once.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = config(&bad.url, "limits:\n  classifier_queue: 0\n  classify_timeout_ms: 60000\n")
        .replace(
            "  kind: lexical\n  workers: 2\n",
            &format!(
                "  kind: moe\n  workers: 1\n  model_dir: \"{}\"\n  head_dir: \"{}\"\n",
                root.join("models/cache/all-minilm-l6-v2").display(),
                root.join("models/moe-router").display()
            ),
        );
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let (client, url) = (sandbox.client.clone(), sandbox.url("/v1/route"));
            tokio::spawn(async move {
                let body = ask("router:eng", &format!("request {i}: this stack trace shows a null pointer exception"));
                let response = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200, "a shed request is still answered");
                response.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut shed = 0;
    let mut decided = 0;
    for request in requests {
        let route = request.await.unwrap();
        if route["shed"] == "queue_full" {
            shed += 1;
            assert_eq!(route["route"], "other", "{route}");
            assert_eq!(route["model"], "spare", "{route}");
        } else {
            assert!(route["shed"].is_null(), "{route}");
            decided += 1;
        }
    }
    assert!(decided >= 1, "the worker decided at least the first request");
    assert!(shed >= 1, "requests that found the worker busy were shed ({decided} decided)");
    sandbox
        .metrics_eventually("queue_full sheds", |m| {
            sample(m, "switchyard_classifier_shed_total{reason=\"queue_full\"}").is_some_and(|n| n >= f64::from(shed))
        })
        .await;
    sandbox.stop().await;
}

