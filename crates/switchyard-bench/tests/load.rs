//! The load generator against two small local servers (connections spread
//! over every URL, `{n}` makes each request's header and body unique), and
//! the floor proxy relaying to one of them.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use switchyard_bench::load::{self, LoadSpec};

type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn record(State(seen): State<Seen>, headers: HeaderMap, body: String) -> &'static str {
    let session = headers
        .get("x-model-affinity")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push((session, body));
    "{}"
}

async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new().route("/v1/chat/completions", post(record)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn connections_spread_over_every_url_and_placeholders_are_unique_per_request() {
    let (first_url, first) = server().await;
    let (second_url, second) = server().await;
    let spec = LoadSpec {
        urls: vec![first_url, second_url],
        rate: 400.0,
        duration: Duration::from_millis(500),
        warmup: Duration::ZERO,
        connections: 4,
        timeout: Duration::from_secs(2),
        grace: Duration::from_secs(2),
        headers: vec![("X-Model-Affinity".to_owned(), "session-{n}".to_owned())],
        body: r#"{"turn": "{n}"}"#.to_owned(),
        expect_header: None,
        pids: Vec::new(),
    };
    let report = load::run(&spec).await.unwrap();
    assert_eq!(report.error_count, 0, "{report:?}");
    assert_eq!(report.ok, 200);
    // One sample per answered request, in order of start, all within the
    // measured window (0.5 s, plus the last requests' lateness).
    assert_eq!(report.samples.len(), 200);
    assert!(report.samples.windows(2).all(|pair| pair[0].start_us <= pair[1].start_us));
    assert!(report.samples.iter().all(|s| s.start_us < 1_500_000 && s.latency_us > 0), "{:?}", report.samples.last());
    let text = load::samples_text(&report.samples);
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        let fields: Vec<f64> = line.split(' ').map(|field| field.parse().unwrap()).collect();
        assert_eq!(fields.len(), 2, "{line}");
    }

    let first = first.lock().unwrap().clone();
    let second = second.lock().unwrap().clone();
    // Two of the four workers are connected to each server, and workers
    // take requests as they come, so neither server is left out.
    assert!(!first.is_empty() && !second.is_empty(), "{} / {}", first.len(), second.len());
    let all: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(all.len(), 200);
    let sessions: HashSet<&str> = all.iter().map(|(session, _)| session.as_str()).collect();
    let bodies: HashSet<&str> = all.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(sessions.len(), 200, "every request opens its own session");
    assert_eq!(bodies.len(), 200);
    assert!(sessions.iter().all(|s| s.starts_with("session-") && !s.contains("{n}")));
    // The header and the body of one request carry the same token.
    for (session, body) in &all {
        let token = session.trim_start_matches("session-");
        assert_eq!(body, &format!(r#"{{"turn": "{token}"}}"#));
    }
}

#[tokio::test]
async fn a_header_value_that_http_refuses_fails_the_run_up_front() {
    let (url, seen) = server().await;
    let spec = LoadSpec {
        urls: vec![url],
        rate: 100.0,
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        connections: 1,
        timeout: Duration::from_secs(1),
        grace: Duration::from_secs(1),
        headers: vec![("X-Bad".to_owned(), "line\nbreak".to_owned())],
        body: "{}".to_owned(),
        expect_header: None,
        pids: Vec::new(),
    };
    assert!(load::run(&spec).await.is_err());
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_floor_proxy_relays_json_both_ways_and_answers_502_when_it_cannot() {
    let (upstream, seen) = server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
    tokio::spawn(switchyard_bench::floor::serve(listener, upstream.parse().unwrap()));
    let client = post_once(&proxy, r#"{"model": "m",  "messages": []}"#).await;
    assert_eq!(client, (200, "{}".to_owned()));
    // The upstream got the body re-encoded: parsed, then written compactly.
    assert_eq!(seen.lock().unwrap().as_slice(), [(String::new(), r#"{"messages":[],"model":"m"}"#.to_owned())]);
    // Not JSON: no upstream call, an OpenAI-shaped 502.
    let (status, body) = post_once(&proxy, "not json").await;
    assert_eq!(status, 502);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "bad_gateway");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// One POST over a fresh hyper connection: (status, body).
async fn post_once(url: &str, body: &'static str) -> (u16, String) {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().unwrap();
    let stream = tokio::net::TcpStream::connect((uri.host().unwrap(), uri.port_u16().unwrap())).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(uri.path())
        .header("host", uri.authority().unwrap().as_str())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}
