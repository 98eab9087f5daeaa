//! The cluster with real processes: three `switchyard serve` nodes on
//! 127.0.0.1, session pins written through one node and read through the
//! others, the leader killed (SIGKILL) in the middle of a stream of pinned
//! requests, the killed node restarted and caught up, a fourth node added
//! and one removed, and a full-cluster restart. No pin may be lost or
//! changed. Every wait is on a condition (status endpoint, applied index).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::{MockConfig, MockServer};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// Long enough for a node process to start on a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Node {
    id: u64,
    http: u16,
    raft: u16,
    overlay: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn start(&mut self, base: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(base)
            .arg("--overlay")
            .arg(&self.overlay)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs, as when a machine dies.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM: the node drains and stops.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
            child.wait().unwrap();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    base: PathBuf,
    nodes: Vec<Node>,
    client: reqwest::Client,
}

impl Cluster {
    /// Writes the configs of nodes 1..=count (the first `initial` of them
    /// are the initial members) without starting anything.
    fn new(upstream: &str, count: u64, initial: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yaml");
        std::fs::write(
            &base,
            format!(
                r#"
demo: off
providers:
  - {{ name: mock, kind: openai, base_url: "{upstream}" }}
models:
  - {{ id: m1, provider: mock, price: {{ input: 1, output: 1 }} }}
  - {{ id: m2, provider: mock, price: {{ input: 2, output: 2 }} }}
  - {{ id: m3, provider: mock, price: {{ input: 3, output: 3 }} }}
routers:
  - name: eng
    tasks:
      - {{ name: debugging, description: Bugs errors exceptions stack traces crashes, models: [m1, m2], selection_policy: manual }}
      - {{ name: databases, description: SQL queries database schemas indexes, models: [m2, m3], selection_policy: manual }}
      - {{ name: docs, description: Documentation docstrings READMEs, models: [m3, m1], selection_policy: manual }}
    fallback_models: [m1]
classifier: {{ kind: lexical, workers: 1 }}
affinity: {{ ttl_secs: 3600 }}
"#
            ),
        )
        .unwrap();
        let nodes: Vec<(u64, u16, u16)> = (1..=count).map(|id| (id, free_port(), free_port())).collect();
        let peers: String = nodes
            .iter()
            .filter(|(id, _, _)| *id <= initial)
            .map(|(id, http, raft)| format!("    - {{ id: {id}, raft: 127.0.0.1:{raft}, http: 127.0.0.1:{http} }}\n"))
            .collect();
        let nodes = nodes
            .into_iter()
            .map(|(id, http, raft)| {
                let overlay = dir.path().join(format!("node-{id}.yaml"));
                let membership = if id <= initial {
                    format!("  peers:\n{peers}")
                } else {
                    "  bootstrap: false\n".to_owned()
                };
                std::fs::write(
                    &overlay,
                    format!(
                        "server:\n  listen: 127.0.0.1:{http}\n  data_dir: {data}\ncluster:\n  node_id: {id}\n  listen: 127.0.0.1:{raft}\n  snapshot_every: 40\n{membership}",
                        data = dir.path().join(format!("node-{id}")).display()
                    ),
                )
                .unwrap();
                Node {
                    id,
                    http,
                    raft,
                    overlay,
                    log: dir.path().join(format!("node-{id}.log")),
                    child: None,
                }
            })
            .collect();
        Cluster {
            _dir: dir,
            base,
            nodes,
            client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
        }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|node| node.id == id).unwrap()
    }

    fn start(&mut self, id: u64) {
        let base = self.base.clone();
        self.node(id).start(&base);
    }

    async fn status(&self, id: u64) -> Option<Value> {
        let node = self.nodes.iter().find(|node| node.id == id)?;
        let response = self.client.get(node.url("/v1/cluster")).timeout(Duration::from_secs(2)).send().await.ok()?;
        response.json().await.ok()
    }

    /// The end of every node's log, on stderr (for a failing test).
    fn print_logs(&self) {
        for node in &self.nodes {
            eprintln!("--- node {} ---\n{}", node.id, node.log_tail());
        }
    }

    /// Waits until `check` holds, printing the nodes' logs if it never does.
    async fn wait_for(&self, what: &str, deadline: Duration, mut check: impl AsyncFnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.print_logs();
        panic!("timed out after {deadline:?} waiting for {what}");
    }

    /// The leader every listed node agrees on.
    async fn agreed_leader(&self, ids: &[u64]) -> Option<u64> {
        let mut leader = None;
        for id in ids {
            let status = self.status(*id).await?;
            let theirs = status["leader"].as_u64()?;
            if leader.is_some_and(|leader| leader != theirs) || !ids.contains(&theirs) {
                return None;
            }
            leader = Some(theirs);
        }
        leader
    }

    async fn wait_for_leader(&self, ids: &[u64]) -> u64 {
        let ids = ids.to_vec();
        self.wait_for("a leader all nodes agree on", START_DEADLINE, async |cluster| {
            cluster.agreed_leader(&ids).await.is_some()
        })
        .await;
        self.agreed_leader(&ids).await.unwrap()
    }

    /// Waits until every listed node has applied as far as `id` has.
    async fn wait_caught_up(&self, ids: &[u64], id: u64) {
        let ids = ids.to_vec();
        let target = self.status(id).await.unwrap()["last_applied"].as_u64().unwrap();
        self.wait_for("followers to apply the leader's log", START_DEADLINE, async |cluster| {
            for id in &ids {
                match cluster.status(*id).await {
                    Some(status) if status["last_applied"].as_u64().unwrap_or(0) >= target => {}
                    _ => return false,
                }
            }
            true
        })
        .await;
    }

    /// One chat turn of `session` through node `id`: the model that answered.
    async fn chat(&self, id: u64, session: &str, text: &str) -> Result<String, String> {
        let node = self.nodes.iter().find(|node| node.id == id).unwrap();
        let response = self
            .client
            .post(node.url("/v1/chat/completions"))
            .header("X-Model-Affinity", session)
            .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": text }] }))
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body: Value = response.json().await.map_err(|err| err.to_string())?;
        Ok(body["model"].as_str().unwrap().to_owned())
    }

    /// [`Cluster::chat`] that must succeed: the nodes' logs if it fails.
    async fn chat_or_logs(&self, id: u64, session: &str, text: &str) -> String {
        match self.chat(id, session, text).await {
            Ok(model) => model,
            Err(err) => {
                self.print_logs();
                panic!("session {session} through node {id}: {err}");
            }
        }
    }

    /// A session's pin as node `id` reads it (`/v1/route`: no upstream call,
    /// no write), with the affinity status.
    async fn pinned(&self, id: u64, session: &str) -> (String, String) {
        let node = self.nodes.iter().find(|node| node.id == id).unwrap();
        let body: Value = self
            .client
            .post(node.url("/v1/route"))
            .header("X-Model-Affinity", session)
            .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": "and the next step?" }] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (body["model"].as_str().unwrap().to_owned(), body["affinity"].as_str().unwrap().to_owned())
    }

    /// Every known pin, read through node `id`: the same model, as a hit.
    async fn assert_pins(&self, id: u64, pins: &BTreeMap<String, String>) {
        for (session, model) in pins {
            let (read, affinity) = self.pinned(id, session).await;
            assert_eq!((read.as_str(), affinity.as_str()), (model.as_str(), "hit"), "session {session} through node {id}");
        }
    }
}

/// First-turn texts that route to each task (and so pin different models).
const ASKS: [&str; 3] = [
    "my service crashes with an exception and a stack trace",
    "write SQL queries and indexes for this database schema",
    "write documentation docstrings and a README",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pins_survive_leader_loss_restarts_and_membership_changes() {
    let _serial = SERIAL.lock().await;
    let upstream = MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default()).await.unwrap();
    let mut cluster = Cluster::new(&upstream.base_url(), 4, 3);
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;

    // Pin sessions through node 1; read them through 2 and 3.
    let mut pins = BTreeMap::new();
    for i in 0..30 {
        let session = format!("early-{i}");
        let model = cluster.chat(1, &session, ASKS[i % 3]).await.unwrap();
        pins.insert(session, model);
    }
    assert!(pins.values().collect::<std::collections::BTreeSet<_>>().len() >= 2, "pins cover several models");
    cluster.wait_caught_up(&[2, 3], 1).await;
    cluster.assert_pins(2, &pins).await;
    cluster.assert_pins(3, &pins).await;

    // A stream of pinned requests over all nodes; the leader dies in the middle.
    let total = 300;
    let mut alive: Vec<u64> = vec![1, 2, 3];
    let mut killed_at = None;
    let mut behind_from = 0;
    let mut first_pin_after_kill = None;
    for i in 0..total {
        if i == total / 2 {
            behind_from = cluster.status(leader).await.unwrap()["last_log_index"].as_u64().unwrap();
            cluster.node(leader).kill();
            alive.retain(|id| *id != leader);
            killed_at = Some(Instant::now());
        }
        // Every third request starts a session, the others continue one.
        let (session, text) = if i % 3 == 0 {
            (format!("stream-{i}"), ASKS[(i / 3) % 3])
        } else {
            let existing: Vec<&String> = pins.keys().collect();
            (existing[i % existing.len()].clone(), "and now the next step please")
        };
        // Any node accepts any request: on a dead node, the client moves on.
        let mut answered = None;
        for attempt in 0..alive.len() * 3 {
            let id = alive[(i + attempt) % alive.len()];
            match cluster.chat(id, &session, text).await {
                Ok(model) => {
                    answered = Some(model);
                    break;
                }
                Err(_) if attempt + 1 < alive.len() * 3 => continue,
                Err(err) => panic!("request {i} failed on every live node: {err}"),
            }
        }
        let model = answered.unwrap();
        match pins.get(&session) {
            Some(pinned) => assert_eq!(&model, pinned, "request {i}: session {session} changed model"),
            None => {
                if killed_at.is_some() && first_pin_after_kill.is_none() {
                    first_pin_after_kill = killed_at.map(|at| at.elapsed());
                }
                pins.insert(session, model);
            }
        }
    }
    let new_leader = cluster.wait_for_leader(&alive).await;
    assert_ne!(new_leader, leader);
    let recovery = first_pin_after_kill.unwrap();
    println!("leader {leader} killed; first new pin accepted {recovery:?} later; new leader {new_leader}");
    assert!(recovery < Duration::from_secs(5), "new pins waited {recovery:?}");
    for id in &alive {
        cluster.wait_caught_up(&alive, new_leader).await;
        cluster.assert_pins(*id, &pins).await;
    }

    // The killed node comes back and catches up from the log (the leader
    // keeps the entries a lagging replica still needs).
    cluster.start(leader);
    let everyone = [1, 2, 3];
    cluster.wait_for_leader(&everyone).await;
    cluster.wait_caught_up(&everyone, new_leader).await;
    cluster.assert_pins(leader, &pins).await;
    let restarted = cluster.status(leader).await.unwrap();
    assert!(restarted["last_applied"].as_u64().unwrap() > behind_from, "{restarted}");

    // A fourth node joins through the admin API (the CLI) and serves the
    // pins. The log it would need is compacted by then (every member is up,
    // so the leader purges behind its snapshots): it catches up by
    // installing the snapshot.
    let leader = cluster.wait_for_leader(&everyone).await;
    cluster
        .wait_for("the leader to compact its log", START_DEADLINE, async |cluster| {
            let status = cluster.status(leader).await;
            status.is_some_and(|status| status["purged_index"].as_u64().is_some())
        })
        .await;
    let purged = cluster.status(leader).await.unwrap()["purged_index"].as_u64().unwrap();
    cluster.start(4);
    cluster
        .wait_for("node 4 to listen", START_DEADLINE, async |cluster| cluster.status(4).await.is_some())
        .await;
    let (raft4, http4) = (cluster.node(4).raft, cluster.node(4).http);
    let output = Command::new(BIN)
        .args(["cluster", "--node", &format!("http://127.0.0.1:{}", cluster.node(1).http), "add", "--id", "4"])
        .args(["--raft-addr", &format!("127.0.0.1:{raft4}"), "--http-addr", &format!("127.0.0.1:{http4}")])
        .output()
        .unwrap();
    assert!(output.status.success(), "cluster add: {}", String::from_utf8_lossy(&output.stderr));
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let voters = |status: &Value| {
        status["members"].as_array().unwrap().iter().filter(|m| m["voter"] == json!(true)).count()
    };
    assert_eq!(voters(&status), 4, "{status}");
    let four = [1, 2, 3, 4];
    let leader = cluster.wait_for_leader(&four).await;
    cluster.wait_caught_up(&four, leader).await;
    cluster.assert_pins(4, &pins).await;
    let joined = cluster.status(4).await.unwrap();
    assert!(joined["snapshot_index"].as_u64().unwrap() >= purged, "node 4 installed the snapshot: {joined}");

    // A follower dies (SIGKILL); pins keep being written and read; it
    // comes back and catches up.
    let follower = [1, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.node(follower).kill();
    let others: Vec<u64> = four.iter().copied().filter(|id| *id != follower).collect();
    for i in 0..10 {
        let session = format!("follower-down-{i}");
        let model = cluster.chat(others[i % others.len()], &session, ASKS[i % 3]).await.unwrap();
        pins.insert(session, model);
    }
    cluster.assert_pins(4, &pins).await;
    cluster.start(follower);
    let leader = cluster.wait_for_leader(&four).await;
    cluster.wait_caught_up(&four, leader).await;
    cluster.assert_pins(follower, &pins).await;

    // Remove node 2 (asked of node 3: forwarded to the leader), then stop it.
    let removed: Value = cluster
        .client
        .delete(cluster.nodes[2].url("/v1/cluster/nodes/2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(voters(&removed), 3, "{removed}");
    assert!(removed["members"].as_array().unwrap().iter().all(|m| m["id"] != json!(2)));
    cluster.node(2).stop();
    let rest = [1, 3, 4];
    let leader = cluster.wait_for_leader(&rest).await;
    cluster.assert_pins(3, &pins).await;

    // New pins still work, then the whole cluster restarts.
    let model = cluster.chat(4, "after-removal", ASKS[1]).await.unwrap();
    pins.insert("after-removal".to_owned(), model);
    cluster.wait_caught_up(&rest, leader).await;
    for id in rest {
        cluster.node(id).stop();
    }
    for id in rest {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(&rest).await;
    cluster.wait_caught_up(&rest, leader).await;
    for id in rest {
        cluster.assert_pins(id, &pins).await;
    }
    println!("{} pins checked on every node after a full-cluster restart", pins.len());

    // The leader's metrics: role, members, and the pins written through it.
    let leader_node = cluster.nodes.iter().find(|node| node.id == leader).unwrap();
    cluster.chat(leader, "metrics-check", ASKS[2]).await.unwrap();
    let metrics = cluster.client.get(leader_node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "switchyard_cluster_is_leader 1",
        &format!("switchyard_cluster_leader {leader}"),
        "switchyard_cluster_members{voter=\"true\"} 3",
        "switchyard_pin_writes_total{result=\"written\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in\n{metrics}");
    }

    // Quorum lost (both followers stopped): the leader, which still
    // believes it leads, keeps serving. Known sessions keep their model
    // from its local state; a new session's pin write is accepted but can
    // never commit, so the request is answered, unpinned, once the bounded
    // write gives up.
    let survivor = leader;
    for id in rest.into_iter().filter(|id| *id != survivor) {
        cluster.node(id).stop();
    }
    let (session, model) = pins.iter().next().unwrap();
    assert_eq!(&cluster.chat_or_logs(survivor, session, "still there?").await, model);
    let started = Instant::now();
    cluster.chat_or_logs(survivor, "no-quorum", ASKS[0]).await;
    let waited = started.elapsed();
    println!("without a quorum, a new session was answered (unpinned) in {waited:?}");
    assert!(waited < Duration::from_secs(10), "the pin write is bounded: {waited:?}");
    upstream.shutdown().await;
}

/// The two tests start three processes each: one at a time, so neither
/// loads the machine under the other's timing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Shared by the load's clients: the nodes a load balancer would send to.
struct Rotation {
    nodes: std::sync::Mutex<Vec<(u64, String)>>,
    /// Bumped on every pick; the test waits until every client has picked
    /// since a node left the rotation, so none still holds it.
    picks: Vec<std::sync::atomic::AtomicU64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_request_and_loses_no_pin() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let _serial = SERIAL.lock().await;
    let upstream = MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default()).await.unwrap();
    let mut cluster = Cluster::new(&upstream.base_url(), 3, 3);
    for id in 1..=3 {
        cluster.start(id);
    }
    cluster.wait_for_leader(&[1, 2, 3]).await;
    for id in 1..=3 {
        cluster
            .wait_for("every node ready", START_DEADLINE, async |cluster| {
                let node = cluster.nodes.iter().find(|node| node.id == id).unwrap();
                cluster.client.get(node.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success())
            })
            .await;
    }

    // The bounded load: 6 clients, one request at a time each, 20 ms apart;
    // each starts a session every 5 turns (first turn routes to a task,
    // later turns say "and the next step", which on its own would route
    // elsewhere: a lost pin shows as a changed model) and sends every fifth
    // request unpinned.
    const CLIENTS: usize = 6;
    let rotation = Arc::new(Rotation {
        nodes: std::sync::Mutex::new(cluster.nodes.iter().map(|node| (node.id, node.url(""))).collect()),
        picks: (0..CLIENTS).map(|_| AtomicU64::new(0)).collect(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let load: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (rotation, stop, client) = (Arc::clone(&rotation), Arc::clone(&stop), client.clone());
            tokio::spawn(async move {
                let mut first_models: BTreeMap<String, String> = BTreeMap::new();
                let (mut sent, mut failures, mut changed) = (0u64, Vec::new(), Vec::new());
                let mut latencies = Vec::new();
                let mut turn = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (id, base) = {
                        let nodes = rotation.nodes.lock().unwrap();
                        let picked = nodes[(c + turn) % nodes.len()].clone();
                        rotation.picks[c].fetch_add(1, Ordering::SeqCst);
                        picked
                    };
                    // A new session every 5 turns (so pins are written
                    // while each node, the leader included, is down), its
                    // later turns, and every fifth request unpinned.
                    let session = (turn % 5 != 4).then(|| format!("c{c}-{}", turn / 5));
                    let text = match &session {
                        Some(session) if first_models.contains_key(session) => "and now the next step please",
                        _ => ASKS[(c + turn / 5) % 3],
                    };
                    let mut request = client
                        .post(format!("{base}/v1/chat/completions"))
                        .json(&json!({ "model": "router:eng", "messages": [{ "role": "user", "content": text }] }));
                    if let Some(session) = &session {
                        request = request.header("X-Model-Affinity", session);
                    }
                    let started = Instant::now();
                    sent += 1;
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            latencies.push(started.elapsed());
                            let body: Value = response.json().await.unwrap();
                            let model = body["model"].as_str().unwrap().to_owned();
                            if let Some(session) = session {
                                let first = first_models.entry(session.clone()).or_insert_with(|| model.clone());
                                if *first != model {
                                    changed.push(format!("{session}: {first} -> {model} via node {id}"));
                                }
                            }
                        }
                        Ok(response) => failures.push(format!("node {id}: HTTP {}", response.status())),
                        Err(err) => failures.push(format!("node {id}: {err}")),
                    }
                    turn += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (sent, failures, changed, first_models, latencies)
            })
        })
        .collect();

    // Restart every node once, the leader last: out of the rotation, wait
    // until no client can still be on its way to it, SIGTERM (it drains),
    // start it again, wait until it is ready and caught up, back in.
    let leader = cluster.agreed_leader(&[1, 2, 3]).await.unwrap();
    let mut order: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    order.push(leader);
    let mut restarts = Vec::new();
    for id in order {
        let began = Instant::now();
        let seen: Vec<u64> = rotation.picks.iter().map(|picks| picks.load(Ordering::SeqCst)).collect();
        rotation.nodes.lock().unwrap().retain(|(node, _)| *node != id);
        cluster
            .wait_for("every client to pick again", Duration::from_secs(30), async |_| {
                rotation.picks.iter().zip(&seen).all(|(picks, seen)| picks.load(Ordering::SeqCst) > *seen + 1)
            })
            .await;
        cluster.node(id).stop();
        cluster.start(id);
        let others: Vec<u64> = (1..=3).collect();
        let leader = cluster.wait_for_leader(&others).await;
        cluster.wait_caught_up(&[id], leader).await;
        cluster
            .wait_for("the restarted node ready", START_DEADLINE, async |cluster| {
                let node = cluster.nodes.iter().find(|node| node.id == id).unwrap();
                cluster.client.get(node.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success())
            })
            .await;
        let url = cluster.nodes.iter().find(|node| node.id == id).unwrap().url("");
        rotation.nodes.lock().unwrap().push((id, url));
        restarts.push((id, began.elapsed()));
        // Some load on the full cluster before the next restart.
        let picks: u64 = rotation.picks.iter().map(|p| p.load(Ordering::SeqCst)).sum();
        cluster
            .wait_for("more load on the whole cluster", Duration::from_secs(30), async |_| {
                rotation.picks.iter().map(|p| p.load(Ordering::SeqCst)).sum::<u64>() > picks + 2 * CLIENTS as u64
            })
            .await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failures, mut changed, mut pins, mut latencies) = (0, Vec::new(), Vec::new(), BTreeMap::new(), Vec::new());
    for client in load {
        let (s, f, c, p, l) = client.await.unwrap();
        sent += s;
        failures.extend(f);
        changed.extend(c);
        pins.extend(p);
        latencies.extend(l);
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "rolling restart: {sent} requests, {} failed, {} sessions, {} pins changed; p99 {p99:?}, max {:?}; restarts (node, time): {restarts:?}",
        failures.len(),
        pins.len(),
        changed.len(),
        latencies.last().unwrap()
    );
    if !failures.is_empty() || !changed.is_empty() {
        cluster.print_logs();
    }
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(changed.is_empty(), "sessions that changed model: {changed:#?}");
    assert!(pins.len() >= CLIENTS * 3, "{} sessions", pins.len());
    // Every pin is on every node, as a hit.
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    cluster.wait_caught_up(&[1, 2, 3], leader).await;
    for id in 1..=3 {
        cluster.assert_pins(id, &pins).await;
    }
    upstream.shutdown().await;
}
