//! Pin benchmark: three voters on 127.0.0.1 (each its own raft instance,
//! redb file and gRPC server, in one process), printing
//! - pin writes (a session's first turn, set-if-absent through the log)
//!   issued on the leader and on a follower (forwarded), p50/p99;
//! - a pinned read (a later turn: the local state machine), against the
//!   embedded single-node store, p50/p99;
//! - failover: the leader stops (its server and raft go away, as a killed
//!   process's would), and a follower keeps proposing: time until a new
//!   pin is accepted again.
//!
//! `cargo bench -p switchyard-cluster --bench pins`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark: a failed unwrap is a failed run")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use switchyard_affinity::{AffinityBackend, LocalStore, Pin, PinKey};
use switchyard_cluster::{ClusterNode, ClusterSettings, Member, ReplicatedStore};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, samples: &mut [Duration]) {
    println!(
        "{label:<44} p50 {:>10.1} µs   p99 {:>10.1} µs   ({} samples)",
        percentile(samples, 0.5).as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

fn pin(model: &str) -> Pin {
    Pin {
        route: "debugging".to_owned(),
        model: model.to_owned(),
        expires_at: SystemTime::now() + Duration::from_secs(3600),
    }
}

fn key(session: String) -> PinKey {
    PinKey {
        router: "eng".to_owned(),
        session,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u64, u16)> = (1..=3).map(|id| (id, free_port())).collect();
    let peers: BTreeMap<u64, Member> = ports
        .iter()
        .map(|(id, port)| {
            (
                *id,
                Member {
                    raft_addr: format!("127.0.0.1:{port}"),
                    http_addr: format!("127.0.0.1:{}", 8000 + id),
                },
            )
        })
        .collect();
    let mut nodes = Vec::new();
    for (id, port) in &ports {
        nodes.push(
            ClusterNode::start(ClusterSettings {
                node_id: *id,
                listen: SocketAddr::from(([127, 0, 0, 1], *port)),
                advertise: None,
                http_addr: format!("127.0.0.1:{}", 8000 + id),
                peers: peers.clone(),
                bootstrap: *id == 1,
                data_dir: dir.path().join(format!("node-{id}")),
                max_sessions: 1_000_000,
                heartbeat: Duration::from_millis(100),
                election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
                snapshot_every: 5_000,
                secret: switchyard_cluster::PeerSecret::none(),
            }, tonic::service::Routes::default())
            .await
            .unwrap(),
        );
    }
    // Wait until all three agree on a leader.
    let leader = loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|node| node.shared().status().leader).collect();
        if let Some(first) = leaders[0]
            && leaders.iter().all(|leader| *leader == Some(first))
        {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let leader_index = nodes.iter().position(|node| node.shared().status().id == leader).unwrap();
    let follower_index = (leader_index + 1) % 3;
    let on_leader = ReplicatedStore::new(nodes[leader_index].shared());
    let on_follower = ReplicatedStore::new(nodes[follower_index].shared());
    println!("pin benchmark: 3 voters on 127.0.0.1, redb with fsync per commit, leader node {leader}");
    println!();

    // Warm-up: connections, first entries.
    for i in 0..50 {
        on_follower.set_if_absent(key(format!("warm-{i}")), pin("m1"), SystemTime::now()).await.unwrap();
    }
    let writes = 1_000;
    for (label, store) in [("pin write on the leader", &on_leader), ("pin write on a follower (forwarded)", &on_follower)] {
        let mut samples = Vec::with_capacity(writes);
        for i in 0..writes {
            let started = Instant::now();
            store.set_if_absent(key(format!("{label}-{i}")), pin("m1"), SystemTime::now()).await.unwrap();
            samples.push(started.elapsed());
        }
        report(label, &mut samples);
    }
    // Concurrent first turns: 16 sessions at a time through the follower.
    let mut samples = Vec::new();
    for round in 0..60 {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = on_follower.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    store.set_if_absent(key(format!("burst-{round}-{i}")), pin("m2"), SystemTime::now()).await.unwrap();
                    started.elapsed()
                })
            })
            .collect();
        for task in tasks {
            samples.push(task.await.unwrap());
        }
    }
    report("pin write, 16 concurrent, on a follower", &mut samples);

    // Later turns: the pin is read from the local state machine.
    let local = LocalStore::new(1_000_000);
    let sessions: Vec<PinKey> = (0..writes).map(|i| key(format!("pin write on the leader-{i}"))).collect();
    for session in &sessions {
        local.set_if_absent(session.clone(), pin("m1"), SystemTime::now()).await.unwrap();
    }
    // Let the follower apply everything first.
    while on_follower.get(&sessions[writes - 1], SystemTime::now()).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (label, reads) in [("pinned read, replicated store (follower)", 0), ("pinned read, embedded single-node store", 1)] {
        let mut samples = Vec::with_capacity(writes * 5);
        for _ in 0..5 {
            for session in &sessions {
                let started = Instant::now();
                let found = if reads == 0 {
                    on_follower.get(session, SystemTime::now()).await.unwrap()
                } else {
                    local.get(session, SystemTime::now()).await.unwrap()
                };
                samples.push(started.elapsed());
                assert!(found.is_some());
            }
        }
        report(label, &mut samples);
    }

    // Failover: the leader goes away; a follower keeps proposing new pins.
    println!();
    let survivor = on_follower.clone();
    let stopped = nodes.remove(leader_index);
    let killed_at = Instant::now();
    // Not awaited to the end before proposing: peers see connections refused.
    let stopping = tokio::spawn(stopped.shutdown());
    let mut attempts = 0;
    loop {
        attempts += 1;
        if survivor
            .set_if_absent(key(format!("after-{attempts}")), pin("m3"), SystemTime::now())
            .await
            .is_ok()
        {
            break;
        }
    }
    let recovery = killed_at.elapsed();
    stopping.await.unwrap();
    let new_leader = nodes[0].shared().status().leader;
    println!(
        "failover: leader {leader} stopped; the next pin was accepted after {:.0} ms (new leader {new_leader:?}; heartbeat 100 ms, election timeout 400-800 ms)",
        recovery.as_secs_f64() * 1e3
    );
    for node in nodes {
        node.shutdown().await;
    }
}
