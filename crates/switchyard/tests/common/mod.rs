//! What the multi-process cluster tests share: `switchyard serve`
//! processes on 127.0.0.1 ports and the configs of a small cluster over a
//! fake upstream.

#![allow(dead_code, reason = "each test binary uses its own part of the helpers")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// Long enough for a node process to start on a loaded 2-core machine.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The secret the nodes of every cluster under test share
/// (`auth.cluster_secret_env`).
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One node: its ports, files, and process while it runs.
pub struct Node {
    pub id: u64,
    pub http: u16,
    pub raft: u16,
    pub overlay: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn start(&mut self, base: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(base)
            .arg("--overlay")
            .arg(&self.overlay)
            .env("RUST_LOG", "info,openraft=warn")
            // Every cluster under test talks over authenticated gRPC.
            .env("SWITCHYARD_CLUSTER_SECRET", CLUSTER_SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs, as when a machine dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the node drains and stops.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster's files: the shared base config, one overlay per node.
pub struct ClusterFiles {
    pub dir: tempfile::TempDir,
    pub base: PathBuf,
    pub nodes: Vec<Node>,
}

/// The configs of nodes 1..=count over `upstream` (the first `initial`
/// are the initial members; the others join later with `cluster add`);
/// nothing started. One router, `eng`, whose three tasks start with
/// different models (`manual`), BM25 classifier, fallback `m1`.
pub fn cluster_files(upstream: &str, count: u64, initial: u64) -> ClusterFiles {
    cluster_files_with_base(
        &format!(
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
        count,
        initial,
    )
}

/// [`cluster_files`] with the given shared base config (the YAML text:
/// providers, models, routers...); the overlays are the same.
pub fn cluster_files_with_base(base_yaml: &str, count: u64, initial: u64) -> ClusterFiles {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yaml");
    std::fs::write(&base, base_yaml).unwrap();
    let ports: Vec<(u64, u16, u16)> = (1..=count).map(|id| (id, free_port(), free_port())).collect();
    let peers: String = ports
        .iter()
        .filter(|(id, _, _)| *id <= initial)
        .map(|(id, http, raft)| format!("    - {{ id: {id}, raft: 127.0.0.1:{raft}, http: 127.0.0.1:{http} }}\n"))
        .collect();
    let nodes = ports
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
                    "server:\n  listen: 127.0.0.1:{http}\n  data_dir: {data}\ncluster:\n  node_id: {id}\n  listen: 127.0.0.1:{raft}\n  snapshot_every: 40\n{membership}auth:\n  cluster_secret_env: SWITCHYARD_CLUSTER_SECRET\n",
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
    ClusterFiles { dir, base, nodes }
}

/// A cluster of node processes under test, with the client that probes it.
pub struct Cluster {
    pub _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub nodes: Vec<Node>,
    pub client: reqwest::Client,
}

impl Cluster {
    /// The cluster of `files`; nothing started.
    pub fn from_files(files: ClusterFiles, client: reqwest::Client) -> Cluster {
        Cluster {
            _dir: files.dir,
            base: files.base,
            nodes: files.nodes,
            client,
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|node| node.id == id).unwrap()
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|node| node.id == id).unwrap()
    }

    pub fn start(&mut self, id: u64) {
        let base = self.base.clone();
        self.node_mut(id).start(&base);
    }

    /// The end of every node's log.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node {} log tail ---\n{}\n", node.id, node.log_tail()))
            .collect()
    }

    pub fn fail(&self, what: &str) -> ! {
        eprintln!("{}", self.logs());
        panic!("{what}");
    }

    /// Node `id`'s `GET /v1/cluster`, if it answers.
    pub async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let response = self.client.get(self.node(id).url("/v1/cluster")).timeout(Duration::from_secs(2)).send().await.ok()?;
        response.json().await.ok()
    }

    pub async fn answers_200(&self, id: u64, path: &str) -> bool {
        let request = self.client.get(self.node(id).url(path)).timeout(Duration::from_secs(2));
        request.send().await.is_ok_and(|response| response.status().is_success())
    }

    /// Waits until `check` holds (polled every `poll`), or fails with the
    /// nodes' log tails.
    pub async fn wait_for(&self, what: &str, deadline: Duration, poll: Duration, mut check: impl AsyncFnMut(&Cluster) -> bool) {
        let start = std::time::Instant::now();
        while start.elapsed() < deadline {
            if check(self).await {
                return;
            }
            tokio::time::sleep(poll).await;
        }
        self.fail(&format!("timed out after {deadline:?} waiting for {what}"));
    }

    /// The leader the listed nodes agree on (one of them), with its status.
    pub async fn agreed_leader_among(&self, ids: &[u64]) -> Option<(u64, serde_json::Value)> {
        let mut leader = None;
        for id in ids {
            let status = self.status(*id).await?;
            let theirs = status["leader"].as_u64()?;
            if leader.is_some_and(|leader| leader != theirs) || !ids.contains(&theirs) {
                return None;
            }
            leader = Some(theirs);
        }
        let leader = leader?;
        Some((leader, self.status(leader).await?))
    }
}

/// `POST /v1/route` for `router:eng` with a session header through the node
/// at `base`: the decision, read from the pin (no upstream call, no write).
pub async fn route_on(client: &reqwest::Client, base: &str, session: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    let response = client
        .post(format!("{base}/v1/route"))
        .header("X-Model-Affinity", session)
        .timeout(timeout)
        .json(&serde_json::json!({ "model": "router:eng", "messages": [{ "role": "user", "content": "and the next step?" }] }))
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|err| err.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body)
}
