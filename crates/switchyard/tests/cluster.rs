//! The cluster with real processes: three `switchyard serve` nodes on
//! 127.0.0.1, session pins written through one node and read through the
//! others, the leader killed (SIGKILL) in the middle of a stream of pinned
//! requests, the killed node restarted and caught up, a fourth node added
//! and one removed, and a full-cluster restart. No pin may be lost or
//! changed. Every wait is on a condition (status endpoint, applied index).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::{MockConfig, MockServer};

mod common;
use common::{BIN, Cluster, START_DEADLINE, cluster_files, route_on};

/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(50);

impl Cluster {
    /// Writes the configs of nodes 1..=count (the first `initial` of them
    /// are the initial members) without starting anything.
    fn new(upstream: &str, count: u64, initial: u64) -> Cluster {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Cluster::from_files(cluster_files(upstream, count, initial), client)
    }

    /// The leader every listed node agrees on.
    async fn agreed_leader(&self, ids: &[u64]) -> Option<u64> {
        self.agreed_leader_among(ids).await.map(|(leader, _)| leader)
    }

    async fn wait_for_leader(&self, ids: &[u64]) -> u64 {
        let ids = ids.to_vec();
        self.wait_for("a leader all nodes agree on", START_DEADLINE, POLL, async |cluster| {
            cluster.agreed_leader(&ids).await.is_some()
        })
        .await;
        self.agreed_leader(&ids).await.unwrap()
    }

    /// Waits until every listed node has applied as far as `id` has.
    async fn wait_caught_up(&self, ids: &[u64], id: u64) {
        let ids = ids.to_vec();
        let target = self.status(id).await.unwrap()["last_applied"].as_u64().unwrap();
        self.wait_for("followers to apply the leader's log", START_DEADLINE, POLL, async |cluster| {
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
        let response = self
            .client
            .post(self.node(id).url("/v1/chat/completions"))
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
            Err(err) => self.fail(&format!("session {session} through node {id}: {err}")),
        }
    }

    /// A session's pin as node `id` reads it (`/v1/route`: no upstream call,
    /// no write), with the affinity status.
    async fn pinned(&self, id: u64, session: &str) -> (String, String) {
        let body = route_on(&self.client, &self.node(id).url(""), session, Duration::from_secs(20))
            .await
            .unwrap_or_else(|err| self.fail(&format!("session {session} through node {id}: {err}")));
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
            cluster.node_mut(leader).kill();
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
    // keeps the entries a lagging replica still needs). It serves as soon as
    // it listens, before it has heard from the leader or caught up: its
    // local misses must be confirmed by the leader, so the pins written
    // while it was down are hits from its first request on (the fault test
    // once caught a restarted node routing such a turn unpinned).
    cluster.start(leader);
    cluster
        .wait_for("the restarted node to listen", START_DEADLINE, POLL, async |cluster| cluster.status(leader).await.is_some())
        .await;
    cluster.assert_pins(leader, &pins).await;
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
        .wait_for("the leader to compact its log", START_DEADLINE, POLL, async |cluster| {
            let status = cluster.status(leader).await;
            status.is_some_and(|status| status["purged_index"].as_u64().is_some())
        })
        .await;
    let purged = cluster.status(leader).await.unwrap()["purged_index"].as_u64().unwrap();
    cluster.start(4);
    cluster
        .wait_for("node 4 to listen", START_DEADLINE, POLL, async |cluster| cluster.status(4).await.is_some())
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
    cluster.node_mut(follower).kill();
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
    cluster.node_mut(2).stop();
    let rest = [1, 3, 4];
    let leader = cluster.wait_for_leader(&rest).await;
    cluster.assert_pins(3, &pins).await;

    // New pins still work, then the whole cluster restarts.
    let model = cluster.chat(4, "after-removal", ASKS[1]).await.unwrap();
    pins.insert("after-removal".to_owned(), model);
    cluster.wait_caught_up(&rest, leader).await;
    for id in rest {
        cluster.node_mut(id).stop();
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
    cluster.chat(leader, "metrics-check", ASKS[2]).await.unwrap();
    let metrics = cluster.client.get(cluster.node(leader).url("/metrics")).send().await.unwrap().text().await.unwrap();
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
        cluster.node_mut(id).stop();
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
