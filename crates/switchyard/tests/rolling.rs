//! A rolling restart of a 3-node cluster (real `switchyard serve` processes
//! on 127.0.0.1) under a bounded load: every node, followers first and the
//! leader last, leaves the load balancer's rotation, gets SIGTERM while
//! requests it accepted are still in flight (it must drain them), exits,
//! starts again on the same data directory, and rejoins the rotation once
//! it answers `/healthz` and `/readyz` and has caught up with the leader.
//!
//! Meanwhile 8 clients send one request at a time each, round robin over
//! the nodes in rotation: new sessions throughout (so pins are written
//! while each node, the leader included, is down), later turns of their
//! sessions, and unpinned requests. A later turn's text routes, unpinned,
//! to another model than its session's first turn, so a lost pin shows as
//! a changed model. Every request must be answered 200 (0 failed) and no
//! session may change model (0 pins lost); afterwards every session's pin
//! is read through every node, as a hit on its first turn's model.
//!
//! Every wait is on a condition, with a deadline and the nodes' log tails
//! when it does not hold; the only other sleeps are the clients' pacing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::{MockConfig, MockServer};

mod common;
use common::{Cluster, START_DEADLINE, cluster_files, route_on};

/// Concurrent clients, each with one request in flight at most.
const CLIENTS: usize = 8;
/// Every client turn `t` with `t % CYCLE == 0` starts a new session, with
/// `t % CYCLE == CYCLE - 1` is unpinned; the others continue a session.
const CYCLE: usize = 5;
/// Time the fake upstream takes to answer: long enough that a node told
/// to stop still has requests in flight, which it must drain.
const UPSTREAM_TIME: Duration = Duration::from_millis(150);
/// The clients' pacing between two requests (not a synchronisation).
const PACE: Duration = Duration::from_millis(20);

/// First-turn texts that route to each task of `router:eng` (whose first
/// models differ). A session started with `ASKS[k]` continues with
/// `ASKS[(k + 1) % 3]`, which unpinned would route to another model.
const ASKS: [&str; 3] = [
    "my service crashes with an exception and a stack trace",
    "write SQL queries and indexes for this database schema",
    "write documentation docstrings and a README",
];

impl Cluster {
    /// The configs of a 3-node cluster over `upstream`; nothing started.
    fn new(upstream: &str) -> Cluster {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Cluster::from_files(cluster_files(upstream, 3, 3), client)
    }

    /// The leader all three nodes agree on, with its status.
    async fn agreed_leader(&self) -> Option<(u64, Value)> {
        self.agreed_leader_among(&[1, 2, 3]).await
    }

    async fn wait_for_leader(&self) -> (u64, Value) {
        self.wait_for("a leader all three nodes agree on", START_DEADLINE, Duration::from_millis(50), async |cluster| {
            cluster.agreed_leader().await.is_some()
        })
        .await;
        self.agreed_leader().await.unwrap()
    }

    /// A session's pin as node `id` reads it (`/v1/route`: no upstream
    /// call, no write): the model and the affinity status.
    async fn pinned(&self, id: u64, session: &str) -> Result<(String, String), String> {
        // The client's own 20 s timeout, as before.
        let body = route_on(&self.client, &self.node(id).url(""), session, Duration::from_secs(20)).await?;
        Ok((body["model"].as_str().unwrap_or("").to_owned(), body["affinity"].as_str().unwrap_or("").to_owned()))
    }
}

/// What the clients share: the load balancer's rotation and counters the
/// test waits on.
struct Load {
    /// The nodes in rotation: (id, base URL).
    rotation: Mutex<Vec<(u64, String)>>,
    /// Round robin over the rotation, shared by all clients.
    next: AtomicUsize,
    /// Requests sent to each node (by id) and not answered yet.
    in_flight: [AtomicU64; 4],
    /// Requests answered 200 by each node (by id).
    served: [AtomicU64; 4],
    /// Chat requests sent: counted before they leave, so when the upstream
    /// has received as many, none is still on its way to a node.
    sent: AtomicU64,
    stop: AtomicBool,
    /// What the test is doing (for failure messages).
    phase: Mutex<String>,
    started: Instant,
}

#[derive(Default)]
struct ClientReport {
    sent: u64,
    failures: Vec<String>,
    /// Later turns answered by another model than the first turn's, or
    /// not as an affinity hit.
    lost: Vec<String>,
    /// Answers whose model is not the one the text routes to.
    misrouted: Vec<String>,
    latencies: Vec<Duration>,
    /// (session, first turn's model), in creation order.
    sessions: Vec<(String, String)>,
    later_turns: u64,
    unpinned: u64,
}

/// One client: one request at a time, round robin over the rotation.
async fn client(c: usize, load: Arc<Load>, expected: [String; 3]) -> ClientReport {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut report = ClientReport::default();
    // (session, ask of its first turn, first turn's model)
    let mut sessions: Vec<(String, usize, String)> = Vec::new();
    let mut cursor = 0usize;
    let mut turn = 0usize;
    while !load.stop.load(Ordering::SeqCst) {
        enum Kind {
            First(String, usize),
            Later(usize),
            Unpinned(usize),
        }
        let kind = match turn % CYCLE {
            0 => Kind::First(format!("c{c}-s{}", turn / CYCLE), (c + turn / CYCLE) % 3),
            k if k == CYCLE - 1 || sessions.is_empty() => Kind::Unpinned((c + turn) % 3),
            _ => {
                cursor = (cursor + 1) % sessions.len();
                Kind::Later(cursor)
            }
        };
        let (session, text) = match &kind {
            Kind::First(session, ask) => (Some(session.clone()), ASKS[*ask]),
            Kind::Later(index) => (Some(sessions[*index].0.clone()), ASKS[(sessions[*index].1 + 1) % 3]),
            Kind::Unpinned(ask) => (None, ASKS[*ask]),
        };
        let (id, base) = {
            let nodes = load.rotation.lock().unwrap();
            let picked = nodes[load.next.fetch_add(1, Ordering::SeqCst) % nodes.len()].clone();
            load.in_flight[picked.0 as usize].fetch_add(1, Ordering::SeqCst);
            load.sent.fetch_add(1, Ordering::SeqCst);
            picked
        };
        let mut request = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": text }] }));
        if let Some(session) = &session {
            request = request.header("X-Model-Affinity", session);
        }
        let started = Instant::now();
        report.sent += 1;
        let outcome = match request.send().await {
            Ok(response) if response.status().is_success() => {
                let affinity = response
                    .headers()
                    .get("x-model-router-affinity")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                match response.json::<Value>().await {
                    Ok(body) => Ok((body["model"].as_str().unwrap_or("").to_owned(), affinity)),
                    Err(err) => Err(format!("body: {err}")),
                }
            }
            Ok(response) => {
                let status = response.status();
                Err(format!("HTTP {status}: {}", response.text().await.unwrap_or_default()))
            }
            Err(err) => Err(format!("{err:?}")),
        };
        let elapsed = started.elapsed();
        load.in_flight[id as usize].fetch_sub(1, Ordering::SeqCst);
        let at = load.started.elapsed();
        let phase = load.phase.lock().unwrap().clone();
        let what = match &kind {
            Kind::First(..) => "first turn",
            Kind::Later(_) => "later turn",
            Kind::Unpinned(_) => "unpinned",
        };
        let session_name = session.as_deref().unwrap_or("-");
        match outcome {
            Err(err) => report.failures.push(format!(
                "client {c}, {what} of session {session_name} via node {id}, at {at:?} ({phase}), after {elapsed:?}: {err}"
            )),
            Ok((model, affinity)) => {
                load.served[id as usize].fetch_add(1, Ordering::SeqCst);
                report.latencies.push(elapsed);
                match kind {
                    Kind::First(session, ask) => {
                        if model != expected[ask] || affinity != "miss" {
                            report.misrouted.push(format!(
                                "client {c}, first turn of {session} via node {id} at {at:?} ({phase}): {model} ({affinity}), expected {} (miss)",
                                expected[ask]
                            ));
                        }
                        report.sessions.push((session.clone(), model.clone()));
                        sessions.push((session, ask, model));
                    }
                    Kind::Later(index) => {
                        report.later_turns += 1;
                        let (session, _, first) = &sessions[index];
                        if model != *first || affinity != "hit" {
                            report.lost.push(format!(
                                "client {c}, session {session} via node {id} at {at:?} ({phase}): {first} -> {model} (affinity {affinity})"
                            ));
                        }
                    }
                    Kind::Unpinned(ask) => {
                        report.unpinned += 1;
                        if model != expected[ask] {
                            report.misrouted.push(format!(
                                "client {c}, unpinned via node {id} at {at:?} ({phase}): {model}, expected {}",
                                expected[ask]
                            ));
                        }
                    }
                }
            }
        }
        turn += 1;
        tokio::time::sleep(PACE).await;
    }
    report
}

fn set_phase(load: &Load, phase: String) {
    *load.phase.lock().unwrap() = phase;
}

fn served(load: &Load, id: u64) -> u64 {
    load.served[id as usize].load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_load_fails_no_request_and_loses_no_pin() {
    let test_start = Instant::now();
    let upstream = MockServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        MockConfig {
            ttft: UPSTREAM_TIME,
            ..MockConfig::default()
        },
    )
    .await
    .unwrap();
    let mut cluster = Cluster::new(&upstream.base_url());

    // 1. Three nodes, one leader they agree on, all ready.
    for id in 1..=3 {
        cluster.start(id);
    }
    let (first_leader, first_status) = cluster.wait_for_leader().await;
    for id in 1..=3 {
        cluster
            .wait_for(&format!("node {id} ready"), START_DEADLINE, Duration::from_millis(50), async |cluster| {
                cluster.answers_200(id, "/readyz").await
            })
            .await;
    }
    let first_term = first_status["term"].as_u64().unwrap();
    println!("cluster up in {:?}: leader {first_leader}, term {first_term}", test_start.elapsed());

    // What each first-turn text routes to, unpinned: three different
    // models, so a session that lost its pin answers with another one.
    let mut expected: [String; 3] = Default::default();
    for (k, ask) in ASKS.iter().enumerate() {
        let body: Value = cluster
            .client
            .post(cluster.node(1).url("/v1/route"))
            .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": ask }] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        expected[k] = body["model"].as_str().unwrap().to_owned();
    }
    assert!(
        expected[0] != expected[1] && expected[1] != expected[2] && expected[0] != expected[2],
        "the three texts must route to three models: {expected:?}"
    );
    assert_eq!(upstream.total_requests(), 0, "only the load calls the upstream");

    // 2. The bounded load.
    let load = Arc::new(Load {
        rotation: Mutex::new((1..=3).map(|id| (id, cluster.node(id).url(""))).collect()),
        next: AtomicUsize::new(0),
        in_flight: Default::default(),
        served: Default::default(),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        phase: Mutex::new("warm-up".to_owned()),
        started: Instant::now(),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(c, Arc::clone(&load), expected.clone())))
        .collect();
    // Some load on the whole cluster before the first restart.
    cluster
        .wait_for("warm-up load on every node", Duration::from_secs(30), Duration::from_millis(10), async |_| {
            (1..=3).all(|id| served(&load, id) >= CLIENTS as u64)
        })
        .await;

    // 3. Restart every node once: a follower not restarted yet while there
    // is one, the leader last. (Should the leadership move to a node
    // already restarted, that leader is restarted once more at the end:
    // the leader is always among the restarted.)
    let mut restarted: Vec<u64> = Vec::new();
    let mut figures = Vec::new();
    let mut drained_total = 0;
    loop {
        let (leader, _) = cluster.wait_for_leader().await;
        let leader_restarted = figures.iter().any(|(_, role, _)| *role == "leader");
        let Some(id) = (1..=3)
            .find(|id| !restarted.contains(id) && *id != leader)
            .or_else(|| (!restarted.contains(&leader) || !leader_restarted).then_some(leader))
        else {
            break;
        };
        let role = if id == leader { "leader" } else { "follower" };
        let began = Instant::now();

        // Out of the rotation, at a moment when requests to it are in flight.
        set_phase(&load, format!("node {id} ({role}) leaving the rotation"));
        cluster
            .wait_for(&format!("a request in flight to node {id}, to take it out of rotation"), Duration::from_secs(10), Duration::from_millis(1), async |_| {
                let mut nodes = load.rotation.lock().unwrap();
                if load.in_flight[id as usize].load(Ordering::SeqCst) == 0 {
                    return false;
                }
                nodes.retain(|(node, _)| *node != id);
                true
            })
            .await;
        // Every request sent so far (those to this node included) has
        // reached the upstream: the node accepted them, and no client is
        // still connecting to it. (Upstream count first, then sent: equal
        // means nothing sent by then is still on its way.)
        cluster
            .wait_for("every request sent to have reached the upstream", Duration::from_secs(10), Duration::from_millis(1), async |_| {
                let received = upstream.total_requests();
                received == load.sent.load(Ordering::SeqCst)
            })
            .await;
        let in_flight = load.in_flight[id as usize].load(Ordering::SeqCst);
        let served_at_sigterm = served(&load, id);

        // SIGTERM: the node drains what it accepted, then exits.
        set_phase(&load, format!("node {id} ({role}) draining after SIGTERM"));
        let stop_began = Instant::now();
        let mut child = cluster.node_mut(id).child.take().unwrap();
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if stop_began.elapsed() > Duration::from_secs(45) {
                let _ = child.kill();
                cluster.fail(&format!("node {id} did not exit within 45 s of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let stopped_in = stop_began.elapsed();
        if !exit.success() {
            cluster.fail(&format!("node {id} exited with {exit} after SIGTERM"));
        }
        // Every request it had accepted got its answer: the clients have
        // them all back (a failure is recorded by its client and fails the
        // test at the end).
        cluster
            .wait_for(&format!("the clients to get back every request sent to node {id}"), Duration::from_secs(10), Duration::from_millis(5), async |_| {
                load.in_flight[id as usize].load(Ordering::SeqCst) == 0
            })
            .await;
        let served_at_exit = served(&load, id);
        let drained = served_at_exit - served_at_sigterm;
        drained_total += drained;
        // A leader that comes back at once resumes its leadership (openraft
        // restores a leader on start-up, same term): the old leader stays
        // down until the other two have elected a new one, as when its
        // machine takes a while to come back, so pins are written across a
        // real leader change.
        let mut election = String::new();
        if id == leader {
            set_phase(&load, format!("node {id} (leader) down, the others electing"));
            let others: Vec<u64> = (1..=3).filter(|other| *other != id).collect();
            cluster
                .wait_for("the other two nodes to elect a new leader", START_DEADLINE, Duration::from_millis(10), async |cluster| {
                    cluster.agreed_leader_among(&others).await.is_some()
                })
                .await;
            let (new_leader, status) = cluster.agreed_leader_among(&others).await.unwrap();
            election = format!(
                "new leader {new_leader} (term {}) elected {:?} after exit; ",
                status["term"],
                stop_began.elapsed() - stopped_in
            );
        }

        // Start it again, same overlay and data directory; back in rotation
        // once it answers, knows the leader and has caught up.
        set_phase(&load, format!("node {id} ({role}) down, restarting"));
        let start_began = Instant::now();
        cluster.start(id);
        cluster
            .wait_for(&format!("node {id} to answer /healthz after restart"), START_DEADLINE, Duration::from_millis(20), async |cluster| {
                cluster.answers_200(id, "/healthz").await
            })
            .await;
        let healthy_in = start_began.elapsed();
        // What the restarted node believes while it rejoins: each distinct
        // (role, leader, term, /readyz) it reports, in order.
        let mut views: Vec<(Duration, String)> = Vec::new();
        let mut record = async |cluster: &Cluster| {
            let status = cluster.status(id).await;
            let ready = cluster.answers_200(id, "/readyz").await;
            let view = match &status {
                Some(status) => format!("{} leader={} term={} ready={ready}", status["role"], status["leader"], status["term"]),
                None => format!("no status, ready={ready}"),
            };
            if views.last().map(|(_, last)| last) != Some(&view) {
                views.push((start_began.elapsed(), view));
            }
            status
        };
        cluster
            .wait_for(&format!("node {id} to know a leader after restart"), START_DEADLINE, Duration::from_millis(10), async |cluster| {
                record(cluster).await.is_some_and(|status| status["leader"].as_u64().is_some())
            })
            .await;
        let (leader_now, leader_status) = cluster.wait_for_leader().await;
        let target = leader_status["last_applied"].as_u64().unwrap();
        cluster
            .wait_for(&format!("node {id} to apply the leader's log up to {target}"), START_DEADLINE, Duration::from_millis(10), async |cluster| {
                let Some(status) = record(cluster).await else { return false };
                status["last_applied"].as_u64().unwrap_or(0) >= target && status["leader"].as_u64() == Some(leader_now)
            })
            .await;
        cluster
            .wait_for(&format!("node {id} ready after restart"), START_DEADLINE, Duration::from_millis(20), async |cluster| {
                cluster.answers_200(id, "/readyz").await
            })
            .await;
        let back_in = start_began.elapsed();
        load.rotation.lock().unwrap().push((id, cluster.node(id).url("")));
        set_phase(&load, format!("node {id} back in rotation"));
        let total = began.elapsed();
        let term = cluster.status(id).await.and_then(|s| s["term"].as_u64()).unwrap_or(0);
        println!(
            "restarted node {id} ({role}): {in_flight} requests in flight at SIGTERM, {drained} answered after it, exited in {stopped_in:?}, \
             {election}/healthz in {healthy_in:?}, caught up (applied >= {target}) and ready in {back_in:?}; \
             {total:?} out of rotation; leader now {leader_now}, term {term}; its views while rejoining: [{}]",
            views.iter().map(|(at, view)| format!("{at:.0?}: {view}")).collect::<Vec<_>>().join("; ")
        );
        figures.push((id, role, total));
        restarted.push(id);

        // The node serves again: some load through it before the next restart.
        cluster
            .wait_for(&format!("load through node {id} after its restart"), Duration::from_secs(30), Duration::from_millis(10), async |_| {
                served(&load, id) >= served_at_exit + 2 * CLIENTS as u64
            })
            .await;
    }
    let (last_leader, last_status) = cluster.wait_for_leader().await;
    let last_term = last_status["term"].as_u64().unwrap();

    // 4. Stop the load and count.
    load.stop.store(true, Ordering::SeqCst);
    let mut report = ClientReport::default();
    for handle in clients {
        let client = handle.await.unwrap();
        report.sent += client.sent;
        report.failures.extend(client.failures);
        report.lost.extend(client.lost);
        report.misrouted.extend(client.misrouted);
        report.latencies.extend(client.latencies);
        report.sessions.extend(client.sessions);
        report.later_turns += client.later_turns;
        report.unpinned += client.unpinned;
    }
    let mut latencies = report.latencies.clone();
    latencies.sort();
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
    let p99 = latencies.get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "load: {CLIENTS} clients, {} requests sent ({} first turns, {} later turns, {} unpinned), {} failed, {} pins lost or changed, {} misrouted",
        report.sent,
        report.sessions.len(),
        report.later_turns,
        report.unpinned,
        report.failures.len(),
        report.lost.len(),
        report.misrouted.len()
    );
    println!(
        "latency (upstream answers in {UPSTREAM_TIME:?}): p50 {p50:?}, p99 {p99:?}, max {max:?}; {drained_total} requests answered by nodes after their SIGTERM; \
         leader {first_leader} (term {first_term}) -> {last_leader} (term {last_term})"
    );
    println!(
        "time out of rotation per restart: {}",
        figures.iter().map(|(id, role, t)| format!("node {id} ({role}) {t:?}")).collect::<Vec<_>>().join(", ")
    );
    if !report.failures.is_empty() || !report.lost.is_empty() || !report.misrouted.is_empty() {
        eprintln!("{}", cluster.logs());
    }
    assert!(report.failures.is_empty(), "{} failed requests: {:#?}", report.failures.len(), report.failures);
    assert!(report.lost.is_empty(), "{} later turns lost their pin: {:#?}", report.lost.len(), report.lost);
    assert!(report.misrouted.is_empty(), "{} misrouted answers: {:#?}", report.misrouted.len(), report.misrouted);
    assert!(drained_total > 0, "no request was answered after any SIGTERM: the drain was not exercised");
    assert!(last_term > first_term, "restarting the leader changes the term ({first_term} -> {last_term})");

    // 5. Every session's pin, through every node: its first turn's model, a hit.
    let (leader, status) = cluster.wait_for_leader().await;
    let target = status["last_applied"].as_u64().unwrap();
    cluster
        .wait_for("every node to apply the leader's log", START_DEADLINE, Duration::from_millis(20), async |cluster| {
            for id in 1..=3 {
                let applied = cluster.status(id).await.and_then(|s| s["last_applied"].as_u64()).unwrap_or(0);
                if applied < target {
                    return false;
                }
            }
            true
        })
        .await;
    let sessions: Arc<BTreeMap<String, String>> = Arc::new(report.sessions.iter().cloned().collect());
    assert_eq!(sessions.len(), report.sessions.len(), "session ids are unique");
    let cluster = Arc::new(cluster);
    let check_began = Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    for id in 1..=3u64 {
        for part in 0..4usize {
            let (cluster, sessions) = (Arc::clone(&cluster), Arc::clone(&sessions));
            checks.spawn(async move {
                let mut wrong = Vec::new();
                let mut checked = 0u64;
                for (session, model) in sessions.iter().skip(part).step_by(4) {
                    checked += 1;
                    match cluster.pinned(id, session).await {
                        Ok((read, affinity)) if read == *model && affinity == "hit" => {}
                        Ok((read, affinity)) => wrong.push(format!("session {session} via node {id}: {read} ({affinity}), pinned {model}")),
                        Err(err) => wrong.push(format!("session {session} via node {id}: {err}")),
                    }
                }
                (checked, wrong)
            });
        }
    }
    let (mut checked, mut wrong) = (0, Vec::new());
    while let Some(result) = checks.join_next().await {
        let (c, w) = result.unwrap();
        checked += c;
        wrong.extend(w);
    }
    println!(
        "{checked} pin reads ({} sessions x 3 nodes, leader {leader}) in {:?}: {} wrong",
        sessions.len(),
        check_began.elapsed(),
        wrong.len()
    );
    if !wrong.is_empty() {
        cluster.fail(&format!("{} pins not found as pinned: {wrong:#?}", wrong.len()));
    }
    println!("rolling restart test took {:?}", test_start.elapsed());
    upstream.shutdown().await;
}
