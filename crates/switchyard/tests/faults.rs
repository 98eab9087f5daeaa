//! Fault injection under load (issue 10): a 3-node cluster of real
//! `switchyard serve` processes over one fake upstream whose models fail
//! on a schedule (flaky 429s and 500s, a model that hangs, one that cuts
//! its streams), while the raft leader is SIGKILLed in the middle of the
//! run and restarted a few seconds later.
//!
//! The load: about a minute of requests, round robin over the three nodes,
//! a mix of streaming and non-streaming: unpinned requests sent open-loop
//! at a fixed rate, and 12 concurrent pinned sessions (`X-Model-Affinity`,
//! several turns each; a later turn's text would route, unpinned, to
//! another model than the first turn's). Router `eng` has three tasks of
//! three candidate models each (`manual`) and two fallback models; the
//! dispatch timeouts are small (first byte 300 ms) so a hang fails over
//! quickly. At every moment at least one candidate of every task (and both
//! fallbacks) is healthy.
//!
//! The client behaves as an SDK: it retries on another node only when the
//! connection failed (refused, reset, or the node died mid-request; these
//! retries are counted and must all be to the killed node), never on an
//! HTTP answer. It proves:
//!
//! - **0 requests lost**: every request got 200 and a complete answer (JSON
//!   with content, or a stream ending with `data: [DONE]`), with one
//!   documented exception: a stream the upstream cuts after a token has
//!   reached the client ends with a `stream_interrupted` error event (never
//!   silently), and such streams may only come from the mid-answer cut
//!   phase; cuts before the first token fail over unseen;
//! - **0 pins lost**: the pipeline moves a session's pin to the model that
//!   served when its pinned model failed (`Repin`, written before the
//!   answer goes out). So every later turn must be an affinity `hit`, and
//!   be answered by the model that answered the session's previous turn,
//!   unless that model failed on this turn (the node's decision log lists
//!   it in `failed`) or was cooling down on that node (`/v1/route`'s
//!   `cooling`, read right after). After the run, with no model cooling,
//!   every session's pin reads back as a hit on its last model through
//!   every node, the restarted one included, and one more turn through the
//!   restarted node is answered by it;
//! - and it prints requests, statuses, connection retries, failovers (the
//!   nodes' `/metrics`), pins and p50/p90/p99/max latency, overall and
//!   split streaming / non-streaming.
//!
//! Every wait is on a condition with a deadline (the nodes' log tails when
//! it does not hold); the only sleeps pace the load and the fault schedule.
//!
//! Run it alone: `cargo test -p switchyard --test faults -- --nocapture`
//! (about two minutes in a debug build on 2 cores).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::{MockConfig, MockServer};

mod common;
use common::{Cluster, START_DEADLINE, cluster_files_with_base, route_on};

/// How long the load runs.
const LOAD: Duration = Duration::from_secs(60);
/// One unpinned request every this long, whether earlier ones have been
/// answered or not (open loop).
const UNPINNED_EVERY: Duration = Duration::from_millis(40);
/// Concurrent pinned sessions (one worker each, one turn at a time).
const SESSION_WORKERS: usize = 12;
/// Turns of a session before its worker starts a new one.
const TURNS_PER_SESSION: usize = 6;
/// A session worker's pause between two turns (a user reading).
const TURN_PACE: Duration = Duration::from_millis(300);
/// Tries of one request over the nodes (connection failures only).
const MAX_TRIES: usize = 6;
/// The client's timeout per try: far above the router's total timeout, so
/// hitting it means a request hung in the router.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// When the leader is killed and restarted, from the start of the load.
const KILL_AT: Duration = Duration::from_secs(25);
const RESTART_AT: Duration = Duration::from_secs(30);
/// The longest a `/v1/route` probe of a pin may take.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(50);
const MODELS: [&str; 5] = ["m1", "m2", "m3", "m4", "m5"];

/// First-turn texts that route to each task. A session started with
/// `ASKS[k]` continues with `ASKS[(k + 1) % 3]`, which, unpinned, routes to
/// another task whose first model differs.
const ASKS: [&str; 3] = [
    "my service crashes with an exception and a stack trace",
    "write SQL queries and indexes for this database schema",
    "write documentation docstrings and a README",
];

/// The fault schedule: (seconds into the load, model, failure spec or
/// `None` to clear). Candidates: debugging [m1 m2 m3], databases [m2 m3
/// m1], docs [m3 m1 m2]; fallbacks m4, m5 never fail. Every phase leaves
/// one candidate fully healthy: m2 and m3, then m3, then m2, then m3, then
/// m1, then all.
const SCHEDULE: &[(u64, &str, Option<&str>)] = &[
    (0, "m1", Some("429@3")),
    (10, "m2", Some("500@4")),
    (20, "m1", Some("hang")),
    (20, "m2", None),
    (20, "m3", Some("drop:2@3")),
    (35, "m1", Some("500@2")),
    (35, "m2", Some("hang@3")),
    (35, "m3", None),
    (48, "m1", None),
    // Cut after the role chunk, before the first token: the router holds
    // such a preamble back, so these must fail over unseen.
    (48, "m2", Some("drop:0@2")),
    (48, "m3", Some("429@2")),
    (55, "m2", None),
    (55, "m3", None),
];

fn base_config(upstream: &str) -> String {
    let models: String = MODELS
        .iter()
        .map(|id| format!("  - {{ id: {id}, provider: mock, price: {{ input: 1, output: 1 }} }}\n"))
        .collect();
    format!(
        r#"
demo: off
providers:
  - {{ name: mock, kind: openai, base_url: "{upstream}" }}
models:
{models}routers:
  - name: eng
    tasks:
      - {{ name: debugging, description: Bugs errors exceptions stack traces crashes, models: [m1, m2, m3], selection_policy: manual }}
      - {{ name: databases, description: SQL queries database schemas indexes, models: [m2, m3, m1], selection_policy: manual }}
      - {{ name: docs, description: Documentation docstrings READMEs, models: [m3, m1, m2], selection_policy: manual }}
    fallback_models: [m4, m5]
classifier: {{ kind: lexical, workers: 1 }}
affinity: {{ ttl_secs: 3600 }}
dispatch: {{ connect_timeout_ms: 200, first_byte_timeout_ms: 300, total_timeout_ms: 5000 }}
signals:
  health: {{ failures: 5, window_secs: 10, cooldown_secs: 5 }}
"#
    )
}

impl Cluster {
    async fn wait_for_leader(&self, ids: &[u64]) -> (u64, Value) {
        self.wait_for("a leader the nodes agree on", START_DEADLINE, POLL, async |cluster| cluster.agreed_leader_among(ids).await.is_some())
            .await;
        self.agreed_leader_among(ids).await.unwrap()
    }

    /// Waits until every node knows the same leader, has applied its log as
    /// far as it had when asked, and answers `/readyz`.
    async fn wait_caught_up(&self, what: &str) -> u64 {
        let (leader, status) = self.wait_for_leader(&[1, 2, 3]).await;
        let target = status["last_applied"].as_u64().unwrap();
        self.wait_for(what, START_DEADLINE, POLL, async |cluster| {
            for id in 1..=3 {
                let Some(status) = cluster.status(id).await else { return false };
                if status["last_applied"].as_u64().unwrap_or(0) < target || status["leader"].as_u64() != Some(leader) {
                    return false;
                }
                if !cluster.answers_200(id, "/readyz").await {
                    return false;
                }
            }
            true
        })
        .await;
        leader
    }

    /// `POST /v1/route` through node `id`: the decision, no upstream call.
    async fn route(&self, id: u64, session: &str) -> Result<Value, String> {
        route_on(&self.client, &self.node(id).url(""), session, ROUTE_TIMEOUT).await
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// A connection failure the client retried on another node.
#[derive(Debug, Clone)]
struct Retry {
    node: u64,
    at: Duration,
    /// Refused (the node is down), else the connection broke mid-request.
    refused: bool,
    detail: String,
}

/// A request's answer.
#[derive(Debug, Clone)]
struct Answer {
    node: u64,
    model: String,
    affinity: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unpinned,
    First,
    Later,
}

#[derive(Debug, Clone)]
struct Record {
    tag: String,
    kind: Kind,
    stream: bool,
    session: Option<String>,
    at: Duration,
    latency: Duration,
    result: Result<Answer, String>,
    retries: Vec<Retry>,
}

/// What a session's later turn did to its pin, to be checked against the
/// nodes' decision logs once the run is over.
#[derive(Debug, Clone)]
struct Moved {
    tag: String,
    session: String,
    turn: usize,
    node: u64,
    at: Duration,
    latency: Duration,
    from: String,
    to: String,
    affinity: String,
    retried: bool,
    /// The node's cooling models, read right after the answer.
    cooling: Result<Vec<String>, String>,
}

#[derive(Debug, Default)]
struct SessionReport {
    /// (session, the model that answered its last turn)
    sessions: Vec<(String, String)>,
    later_turns: u64,
    kept: u64,
    moved: Vec<Moved>,
    /// Later turns that were not an affinity hit.
    missing: Vec<String>,
    /// Sessions ended by a lost turn.
    abandoned: u64,
}

/// What the load tasks share.
struct Load {
    nodes: Vec<(u64, String)>,
    next: AtomicUsize,
    started: Instant,
    stop: AtomicBool,
    records: Mutex<Vec<Record>>,
    http: reqwest::Client,
}

enum Try {
    Answered(Result<Answer, String>),
    Retry(bool, String),
}

/// One try of a request on one node.
async fn try_once(load: &Load, node: u64, base: &str, body: &Value, session: Option<&str>, stream: bool) -> Try {
    let mut request = load.http.post(format!("{base}/v1/chat/completions")).json(body);
    if let Some(session) = session {
        request = request.header("X-Model-Affinity", session);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => return Try::Answered(Err(format!("node {node}: no answer within {CLIENT_TIMEOUT:?}"))),
        Err(err) => return Try::Retry(err.is_connect(), format!("{err:?}")),
    };
    let status = response.status();
    let affinity = response
        .headers()
        .get("x-model-router-affinity")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Try::Answered(Err(format!("node {node}: HTTP {status}: {text}")));
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(err) if err.is_timeout() => {
                return Try::Answered(Err(format!("node {node}: body not finished within {CLIENT_TIMEOUT:?}")));
            }
            Err(err) => return Try::Retry(false, format!("body: {err:?}")),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let (model, content) = if stream {
        let data: Vec<&str> = text
            .split("\n\n")
            .flat_map(|event| event.lines().filter_map(|line| line.strip_prefix("data: ")))
            .collect();
        if data.last() != Some(&"[DONE]") {
            let kind = if text.contains("stream_interrupted") { "stream interrupted" } else { "stream incomplete" };
            let tail: String = data.iter().rev().take(2).rev().copied().collect::<Vec<_>>().join(" | ");
            return Try::Answered(Err(format!("node {node}: {kind}: no [DONE], {} events, last: {tail}", data.len())));
        }
        let mut model = String::new();
        let mut content = String::new();
        for chunk in data.iter().filter(|data| **data != "[DONE]") {
            let Ok(value) = serde_json::from_str::<Value>(chunk) else {
                return Try::Answered(Err(format!("node {node}: stream chunk is not JSON: {chunk}")));
            };
            if value.get("error").is_some() {
                return Try::Answered(Err(format!("node {node}: error event in stream: {chunk}")));
            }
            if let Some(found) = value["model"].as_str() {
                model = found.to_owned();
            }
            if let Some(piece) = value["choices"][0]["delta"]["content"].as_str() {
                content.push_str(piece);
            }
        }
        (model, content)
    } else {
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            return Try::Answered(Err(format!("node {node}: body is not JSON: {text}")));
        };
        (
            value["model"].as_str().unwrap_or("").to_owned(),
            value["choices"][0]["message"]["content"].as_str().unwrap_or("").to_owned(),
        )
    };
    if !MODELS.contains(&model.as_str()) || !content.contains("says") {
        return Try::Answered(Err(format!("node {node}: incomplete answer: model `{model}`, content `{content}`")));
    }
    Try::Answered(Ok(Answer { node, model, affinity }))
}

/// Sends one request as an SDK would: round robin, and on a connection
/// failure (only) the next node. Records it.
async fn request(load: &Load, tag: String, kind: Kind, text: &str, session: Option<&str>, stream: bool) -> Record {
    let first = load.next.fetch_add(1, Ordering::SeqCst);
    let at = load.started.elapsed();
    let body = json!({
        "model": "router:eng",
        "stream": stream,
        "messages": [{ "role": "user", "content": format!("[{tag}] {text}") }],
    });
    let mut retries = Vec::new();
    let mut result = Err(format!("no node answered in {MAX_TRIES} tries"));
    for attempt in 0..MAX_TRIES {
        let (node, base) = &load.nodes[(first + attempt) % load.nodes.len()];
        match try_once(load, *node, base, &body, session, stream).await {
            Try::Answered(answer) => {
                result = answer;
                break;
            }
            Try::Retry(refused, detail) => retries.push(Retry {
                node: *node,
                at: load.started.elapsed(),
                refused,
                detail,
            }),
        }
    }
    let record = Record {
        tag,
        kind,
        stream,
        session: session.map(str::to_owned),
        at,
        latency: load.started.elapsed() - at,
        result,
        retries,
    };
    load.records.lock().unwrap().push(record.clone());
    record
}

/// 2 requests in 5 stream.
fn streams(n: usize) -> bool {
    n % 5 < 2
}

async fn unpinned_load(load: Arc<Load>) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(UNPINNED_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0usize;
    while load.started.elapsed() < LOAD {
        ticker.tick().await;
        let load = Arc::clone(&load);
        tasks.spawn(async move {
            request(&load, format!("u{n}"), Kind::Unpinned, ASKS[n % 3], None, streams(n)).await;
        });
        n += 1;
    }
    while tasks.join_next().await.is_some() {}
}

async fn session_worker(w: usize, load: Arc<Load>) -> SessionReport {
    let mut report = SessionReport::default();
    let mut n = 0usize;
    'sessions: while load.started.elapsed() < LOAD && !load.stop.load(Ordering::SeqCst) {
        let session = format!("w{w}-s{n}");
        let ask = (w + n) % 3;
        n += 1;
        let mut current: Option<String> = None;
        for turn in 0..TURNS_PER_SESSION {
            if load.started.elapsed() >= LOAD {
                break;
            }
            let (kind, text) = if turn == 0 { (Kind::First, ASKS[ask]) } else { (Kind::Later, ASKS[(ask + 1) % 3]) };
            let stream = streams(w + turn + n);
            let record = request(&load, format!("{session}-t{turn}"), kind, text, Some(&session), stream).await;
            let Ok(answer) = &record.result else {
                // A lost request fails the test on its own. The session
                // cannot be judged after it (a stream cut mid-answer, for
                // one, has already moved the pin to the model that cut it):
                // it ends here and stays out of the final pin check.
                report.abandoned += 1;
                continue 'sessions;
            };
            if let Some(pinned) = &current {
                report.later_turns += 1;
                if answer.affinity != "hit" {
                    report.missing.push(format!(
                        "session {session} turn {turn} ({}) via node {} at {:?}: affinity `{}`, answered by {} (pinned {pinned})",
                        record.tag, answer.node, record.at, answer.affinity, answer.model
                    ));
                }
                if answer.model == *pinned {
                    report.kept += 1;
                } else {
                    let base = &load.nodes.iter().find(|(id, _)| *id == answer.node).unwrap().1;
                    let cooling = route_on(&load.http, base, &session, ROUTE_TIMEOUT).await.map(|decision| strings(&decision["cooling"]));
                    report.moved.push(Moved {
                        tag: record.tag.clone(),
                        session: session.clone(),
                        turn,
                        node: answer.node,
                        at: record.at,
                        latency: record.latency,
                        from: pinned.clone(),
                        to: answer.model.clone(),
                        affinity: answer.affinity.clone(),
                        retried: !record.retries.is_empty(),
                        cooling,
                    });
                }
            }
            current = Some(answer.model.clone());
            tokio::time::sleep(TURN_PACE).await;
        }
        if let Some(model) = current {
            report.sessions.push((session, model));
        }
    }
    report
}

/// Every node's cooling models (`/v1/route`'s `cooling`), sampled every
/// 100 ms until the load stops: (node, time, models).
async fn sample_cooling(load: Arc<Load>) -> Vec<(u64, Duration, Vec<String>)> {
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !load.stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        for (id, base) in &load.nodes {
            let response = load
                .http
                .post(format!("{base}/v1/route"))
                .timeout(Duration::from_secs(1))
                .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": ASKS[0] }] }))
                .send()
                .await;
            if let Ok(response) = response
                && let Ok(decision) = response.json::<Value>().await
            {
                samples.push((*id, load.started.elapsed(), strings(&decision["cooling"])));
            }
        }
    }
    samples
}

async fn set_fault(http: &reqwest::Client, mock: SocketAddr, model: &str, spec: Option<&str>) {
    let url = format!("http://{mock}/mock/failures/{model}");
    let response = match spec {
        Some(spec) => http.put(url).json(&json!({ "failure": spec })).send().await,
        None => http.delete(url).send().await,
    }
    .unwrap();
    assert_eq!(response.status(), 204, "setting {model} = {spec:?}");
}

/// Sums a metric's samples by one label, from a `/metrics` text.
fn metric_by(text: &str, name: &str, label: &str, into: &mut BTreeMap<String, f64>) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|rest| rest.split_once("} ")) else { continue };
        let key = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == label)
            .map_or(String::new(), |(_, v)| v.trim_matches('"').to_owned());
        *into.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
}

fn percentiles(mut latencies: Vec<Duration>) -> String {
    if latencies.is_empty() {
        return "no requests".to_owned();
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    format!(
        "n {}, p50 {:.0?}, p90 {:.0?}, p99 {:.0?}, max {:.0?}",
        latencies.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        latencies[latencies.len() - 1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_under_load_lose_no_request_and_no_pin() {
    let test_start = Instant::now();
    let upstream = MockServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockConfig {
            ttft: Duration::from_millis(30),
            tokens_per_sec: 200.0,
            ..MockConfig::default()
        },
    )
    .await
    .unwrap();
    let files = cluster_files_with_base(&base_config(&upstream.base_url()), 3, 3);
    let mut cluster = Cluster::from_files(files, reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap());
    for id in 1..=3 {
        cluster.start(id);
    }
    let first_leader = cluster.wait_caught_up("the cluster to be up and ready").await;
    println!("cluster up in {:.1?}, leader {first_leader}", test_start.elapsed());

    let load = Arc::new(Load {
        nodes: (1..=3).map(|id| (id, cluster.node(id).url(""))).collect(),
        next: AtomicUsize::new(0),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        records: Mutex::new(Vec::new()),
        http: reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    });
    let unpinned = tokio::spawn(unpinned_load(Arc::clone(&load)));
    let workers: Vec<_> = (0..SESSION_WORKERS).map(|w| tokio::spawn(session_worker(w, Arc::clone(&load)))).collect();
    let sampler = tokio::spawn(sample_cooling(Arc::clone(&load)));

    // The fault schedule, the kill and the restart, by the clock.
    enum Step {
        Fault(&'static str, Option<&'static str>),
        Kill,
        Restart,
    }
    let mut steps: Vec<(Duration, Step)> = SCHEDULE
        .iter()
        .map(|(secs, model, spec)| (Duration::from_secs(*secs), Step::Fault(model, *spec)))
        .chain([(KILL_AT, Step::Kill), (RESTART_AT, Step::Restart)])
        .collect();
    steps.sort_by_key(|(at, _)| *at);
    let mut killed = None;
    let mut killed_at = Duration::ZERO;
    let mut rejoined_at = Duration::ZERO;
    let mut timeline = Vec::new();
    for (at, step) in steps {
        if let Some(wait) = at.checked_sub(load.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let now = load.started.elapsed();
        match step {
            Step::Fault(model, spec) => {
                set_fault(&cluster.client, upstream.addr(), model, spec).await;
                timeline.push(format!("{now:.1?}: {model} = {}", spec.unwrap_or("healthy")));
            }
            Step::Kill => {
                let (leader, status) = cluster.wait_for_leader(&[1, 2, 3]).await;
                // From the moment the signal may land: requests cut by the
                // kill fail while `kill` still waits for the process.
                killed_at = load.started.elapsed();
                cluster.node_mut(leader).kill();
                killed = Some(leader);
                timeline.push(format!("{killed_at:.1?}: SIGKILL node {leader} (the leader, term {})", status["term"]));
            }
            Step::Restart => {
                let id = killed.unwrap();
                let others: Vec<u64> = (1..=3).filter(|other| *other != id).collect();
                let (new_leader, status) = cluster.wait_for_leader(&others).await;
                timeline.push(format!("{now:.1?}: node {new_leader} leads (term {}); restarting node {id}", status["term"]));
                cluster.start(id);
                cluster.wait_caught_up(&format!("node {id} to rejoin after its restart")).await;
                rejoined_at = load.started.elapsed();
                timeline.push(format!("{rejoined_at:.1?}: node {id} rejoined (knows the leader, caught up, ready)"));
            }
        }
    }
    unpinned.await.unwrap();
    let mut pins = SessionReport::default();
    for worker in workers {
        let report = worker.await.unwrap();
        pins.sessions.extend(report.sessions);
        pins.later_turns += report.later_turns;
        pins.kept += report.kept;
        pins.moved.extend(report.moved);
        pins.missing.extend(report.missing);
        pins.abandoned += report.abandoned;
    }
    load.stop.store(true, Ordering::SeqCst);
    let cooling_samples = sampler.await.unwrap();
    let load_took = load.started.elapsed();
    let restarted = killed.unwrap();
    let records = std::mem::take(&mut *load.records.lock().unwrap());

    // The nodes' own accounts: decision logs (which models failed for each
    // request) and metrics (failovers, pin writes, cooldowns).
    let leader = cluster.wait_caught_up("every node to catch up after the load").await;
    let mut decisions: HashMap<String, Vec<(u64, Value)>> = HashMap::new();
    let mut metrics: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    for id in 1..=3u64 {
        let text = cluster
            .client
            .get(cluster.node(id).url("/v1/decisions?limit=100000"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let decision: Value = serde_json::from_str(line).unwrap();
            if decision["outcome"] == "dry_run" {
                continue;
            }
            let tag = decision["preview"].as_str().and_then(|p| p.strip_prefix('[')).and_then(|p| p.split_once(']')).map(|(tag, _)| tag.to_owned());
            if let Some(tag) = tag {
                decisions.entry(tag).or_default().push((id, decision));
            }
        }
        let text = cluster.client.get(cluster.node(id).url("/metrics")).send().await.unwrap().text().await.unwrap();
        for (name, label) in [
            ("switchyard_failovers_total", "model"),
            ("switchyard_requests_total", "outcome"),
            ("switchyard_upstream_errors_total", "status"),
            ("switchyard_pin_writes_total", "result"),
            ("switchyard_model_cooldowns_total", "model"),
        ] {
            metric_by(&text, name, label, metrics.entry(name).or_default());
        }
    }

    // Every later turn that changed model: justified only if the pinned
    // model failed on that turn or was cooling down on that node.
    let (mut by_failover, mut by_cooling, mut by_retry) = (0, 0, 0);
    let mut not_honoured = Vec::new();
    for moved in &pins.moved {
        let found = decisions.get(&moved.tag).cloned().unwrap_or_default();
        let failed_there = found.iter().any(|(_, decision)| strings(&decision["failed"]).contains(&moved.from));
        // Cooling on that node right after the answer, or in a sample taken
        // while the request ran (give or take a sampling period: a
        // cooldown may end between the request and the read after it).
        let slack = Duration::from_millis(250);
        let cooling = moved.cooling.as_ref().is_ok_and(|cooling| cooling.contains(&moved.from))
            || cooling_samples.iter().any(|(id, at, cooling)| {
                *id == moved.node
                    && *at + slack >= moved.at
                    && *at <= moved.at + moved.latency + slack
                    && cooling.contains(&moved.from)
            });
        if failed_there {
            by_failover += 1;
        } else if cooling {
            by_cooling += 1;
        } else if moved.retried {
            // The try on the node that died may have moved the pin already.
            by_retry += 1;
        } else {
            not_honoured.push(format!(
                "session {} turn {} ({}) via node {} at {:.1?}: pinned {} -> answered by {} (affinity {}); node's decision(s): {}; cooling right after: {:?}",
                moved.session,
                moved.turn,
                moved.tag,
                moved.node,
                moved.at,
                moved.from,
                moved.to,
                moved.affinity,
                if found.is_empty() {
                    "none found".to_owned()
                } else {
                    found
                        .iter()
                        .map(|(id, d)| format!("node {id}: affinity {} model {} failed {} outcome {}", d["affinity"], d["model"], d["failed"], d["outcome"]))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
                moved.cooling
            ));
        }
    }

    // After the run: with no model cooling on any node, every session's pin
    // reads back through every node as a hit on its last model, and one
    // more turn through the restarted node is answered by that model.
    let probe = pins.sessions.first().map(|(session, _)| session.clone()).unwrap();
    cluster
        .wait_for("no model cooling down on any node", Duration::from_secs(30), POLL, async |cluster| {
            for id in 1..=3 {
                match cluster.route(id, &probe).await {
                    Ok(decision) if strings(&decision["cooling"]).is_empty() => {}
                    _ => return false,
                }
            }
            true
        })
        .await;
    let mut final_wrong = Vec::new();
    for (session, model) in &pins.sessions {
        for id in 1..=3 {
            match cluster.route(id, session).await {
                Ok(decision) if decision["model"] == json!(model) && decision["affinity"] == "hit" => {}
                Ok(decision) => final_wrong.push(format!(
                    "session {session} via node {id}: {} ({}), last answered by {model}",
                    decision["model"], decision["affinity"]
                )),
                Err(err) => final_wrong.push(format!("session {session} via node {id}: {err}")),
            }
        }
    }
    let check = Arc::new(Load {
        nodes: vec![(restarted, cluster.node(restarted).url(""))],
        next: AtomicUsize::new(0),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        records: Mutex::new(Vec::new()),
        http: load.http.clone(),
    });
    for (i, (session, model)) in pins.sessions.iter().enumerate() {
        let record = request(&check, format!("{session}-final"), Kind::Later, ASKS[i % 3], Some(session), i % 2 == 0).await;
        match &record.result {
            Ok(answer) if answer.model == *model && answer.affinity == "hit" => {}
            Ok(answer) => final_wrong.push(format!(
                "session {session}, last turn through restarted node {restarted}: {} ({}), last answered by {model}",
                answer.model, answer.affinity
            )),
            Err(err) => final_wrong.push(format!("session {session}, last turn through restarted node {restarted}: {err}")),
        }
    }

    // The summary.
    let total = records.len();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lost, mut interrupted) = (Vec::new(), Vec::new());
    for record in &records {
        match &record.result {
            Ok(_) => *by_status.entry("200 complete".to_owned()).or_default() += 1,
            Err(err) => {
                let status = err.split_once("HTTP ").map_or_else(
                    || if err.contains("stream interrupted") { "200, stream interrupted".to_owned() } else { "no complete answer".to_owned() },
                    |(_, rest)| rest.chars().take(3).collect(),
                );
                *by_status.entry(status).or_default() += 1;
                let line = format!(
                    "{} ({:?}{}, session {}) at {:.1?} after {:.0?}: {err}",
                    record.tag,
                    record.kind,
                    if record.stream { ", stream" } else { "" },
                    record.session.as_deref().unwrap_or("-"),
                    record.at,
                    record.latency
                );
                if err.contains("stream interrupted") {
                    interrupted.push(line);
                } else {
                    lost.push(line);
                }
            }
        }
    }
    let retries: Vec<&Retry> = records.iter().flat_map(|record| &record.retries).collect();
    let refused = retries.iter().filter(|retry| retry.refused).count();
    let unexpected_retries: Vec<String> = retries
        .iter()
        .filter(|retry| retry.node != restarted || retry.at < killed_at)
        .map(|retry| format!("node {} at {:.1?}: {}", retry.node, retry.at, retry.detail))
        .collect();
    let streamed: Vec<Duration> = records.iter().filter(|r| r.stream && r.result.is_ok()).map(|r| r.latency).collect();
    let plain: Vec<Duration> = records.iter().filter(|r| !r.stream && r.result.is_ok()).map(|r| r.latency).collect();
    let all: Vec<Duration> = streamed.iter().chain(&plain).copied().collect();
    let count = |kind: Kind| records.iter().filter(|r| r.kind == kind).count();
    let counters: Value = cluster.client.get(format!("http://{}/mock/counters", upstream.addr())).send().await.unwrap().json().await.unwrap();

    println!("--- fault-injection load test ---");
    println!("timeline:\n  {}", timeline.join("\n  "));
    println!(
        "load: {total} requests in {load_took:.1?} ({} unpinned, {} first turns, {} later turns; {} streaming), {} sessions",
        count(Kind::Unpinned),
        count(Kind::First),
        count(Kind::Later),
        records.iter().filter(|r| r.stream).count(),
        pins.sessions.len()
    );
    println!("results: {by_status:?}");
    println!(
        "connection retries: {} ({refused} refused, {} broken mid-request), all to node {restarted} after its kill: {}",
        retries.len(),
        retries.len() - refused,
        unexpected_retries.is_empty()
    );
    println!("latency overall:        {}", percentiles(all));
    println!("latency non-streaming:  {}", percentiles(plain));
    println!("latency streaming:      {} (to [DONE])", percentiles(streamed));
    println!("upstream requests by model (mock): {}", counters["by_model"]);
    for (name, values) in &metrics {
        println!("{name} (3 nodes; node {restarted} since its restart): {values:?}");
    }
    println!(
        "pins: {} sessions checked ({} more ended by a lost turn), {} later turns, {} kept their model, {} moved ({by_failover} after the pinned model failed on that turn, {by_cooling} while it was cooling, {by_retry} after a connection retry), {} not honoured, {} not a hit; final check: {} pin reads on 3 nodes + {} turns through node {restarted}, {} wrong",
        pins.sessions.len(),
        pins.abandoned,
        pins.later_turns,
        pins.kept,
        pins.moved.len(),
        not_honoured.len(),
        pins.missing.len(),
        pins.sessions.len() * 3,
        pins.sessions.len(),
        final_wrong.len()
    );
    println!("leader {first_leader} killed at {killed_at:.1?}, rejoined at {rejoined_at:.1?}; leader now {leader}; test took {:.1?}", test_start.elapsed());

    let problems: [(&str, &Vec<String>); 6] = [
        ("lost requests", &lost),
        ("later turns not a hit", &pins.missing),
        ("later turns that left their pin without cause", &not_honoured),
        ("pins wrong after the run", &final_wrong),
        ("connection failures not explained by the kill", &unexpected_retries),
        ("streams interrupted mid-answer", &interrupted),
    ];
    for (what, list) in problems {
        if !list.is_empty() {
            println!("{} {what}:\n  {}", list.len(), list.join("\n  "));
        }
    }
    let failed = !lost.is_empty() || !pins.missing.is_empty() || !not_honoured.is_empty() || !final_wrong.is_empty() || !unexpected_retries.is_empty();
    if failed {
        eprintln!("{}", cluster.logs());
        // The whole logs outlive the test's temporary directory.
        let keep = std::env::temp_dir().join(format!("switchyard-faults-{}", std::process::id()));
        std::fs::create_dir_all(&keep).unwrap();
        for node in &cluster.nodes {
            let _ = std::fs::copy(&node.log, keep.join(format!("node-{}.log", node.id)));
        }
        eprintln!("node logs kept in {} (load started at {:?} after the test)", keep.display(), load.started - test_start);
    }
    assert!(lost.is_empty(), "{} requests lost: {lost:#?}", lost.len());
    assert!(pins.missing.is_empty(), "{} later turns did not find their pin: {:#?}", pins.missing.len(), pins.missing);
    assert!(not_honoured.is_empty(), "{} later turns left their pinned model without cause: {not_honoured:#?}", not_honoured.len());
    assert!(final_wrong.is_empty(), "{} pins wrong after the run: {final_wrong:#?}", final_wrong.len());
    assert!(unexpected_retries.is_empty(), "connection failures not explained by the kill: {unexpected_retries:#?}");
    // The faults were exercised: failovers, and the kill seen by clients.
    let failovers: f64 = metrics["switchyard_failovers_total"].values().sum();
    assert!(failovers > 0.0, "no failover happened");
    assert!(!retries.is_empty(), "no client noticed the killed node");
    // Streams cut by the upstream after a token reached the client cannot
    // move to another model (it would not continue the same text): the
    // router ends them with a `stream_interrupted` error event and no
    // `[DONE]` (README, "Failover"), which is how they were counted apart
    // above; a silent truncation counts as lost. They may come only from
    // the mid-answer cuts (m3, `drop:2@3`, from 20 s to 35 s, plus the
    // total timeout); the cuts before the first token (m2, `drop:0@2`)
    // must all have failed over.
    let mid_answer = Duration::from_secs(20)..Duration::from_secs(35 + 5);
    let outside: Vec<&String> = records
        .iter()
        .zip(records.iter().map(|record| &record.result))
        .filter(|(record, result)| {
            result.as_ref().is_err_and(|err| err.contains("stream interrupted")) && !mid_answer.contains(&record.at)
        })
        .map(|(record, _)| &record.tag)
        .collect();
    assert!(outside.is_empty(), "streams interrupted outside the mid-answer cut phase: {outside:?} (all: {interrupted:#?})");
    upstream.shutdown().await;
}
