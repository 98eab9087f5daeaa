//! The `prometheus` latency source against a real Prometheus server (the
//! Debian package's binary, installed by `tests/setup.sh`): node A serves
//! traffic and exports `switchyard_ttft_seconds`; Prometheus scrapes it;
//! node B, which serves nothing itself, ranks its `fastest` task by what
//! the default PromQL query returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_mock::MockConfig;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, ask, eventually, sample};

/// Routes to `databases`: fastest of [sluggish (250 ms), cheap (at once),
/// hourly (never served here)].
const SQL: &str = "Write SQL queries for this database schema and its indexes";

/// The Prometheus binary: `SWITCHYARD_PROMETHEUS`, else `prometheus` on
/// the PATH.
fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_PROMETHEUS") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("no `prometheus` binary on the PATH: run tests/setup.sh (Debian package `prometheus`) or set SWITCHYARD_PROMETHEUS")
    })
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastest_ranks_by_the_latency_prometheus_reports() {
    let serving = Arc::new(Sandbox::start().await);
    let target = serving.node.base_url().trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);

    // Node B: same routers, latency from Prometheus, never any traffic.
    let yaml = format!(
        "{STANDARD_CONFIG}signals:\n  latency: {{ source: prometheus, url: \"{}\", refresh_secs: 1 }}\n",
        prometheus.url
    );
    let ranking = Sandbox::start_with(&yaml, MockConfig::default()).await;
    let first = ranking.route(&ask("router:eng", SQL), None).await;
    assert_eq!(first["route"], "databases");
    assert_eq!(first["model"], "sluggish", "no data yet: the declared order");

    // Traffic on A to both models, until B has seen the query's answer
    // (`rate` needs two scrapes with traffic between them).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (serving, stop) = (Arc::clone(&serving), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for model in ["sluggish", "cheap"] {
                    let response = serving.chat(&ask(model, "hello"), None).await;
                    assert_eq!(response.status(), 200);
                }
            }
        })
    };
    let client = reqwest::Client::new();
    let ready = eventually("node B to rank cheap first from Prometheus", Duration::from_secs(90), || async {
        ranking.route(&ask("router:eng", SQL), None).await["model"] == "cheap"
    });
    // On failure, say what Prometheus had.
    let guard = scopeguard(&prometheus);
    ready.await;
    std::mem::forget(guard);
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();

    let route = ranking.route(&ask("router:eng", SQL), None).await;
    assert_eq!(route["candidates"][0], "cheap");
    assert_eq!(route["candidates"][1], "sluggish");
    let metrics = ranking.metrics().await;
    assert!(sample(&metrics, r#"switchyard_signal_refreshes_total{source="prometheus",result="ok"}"#).unwrap() >= 1.0);
    let cheap = sample(&metrics, r#"switchyard_ttft_estimate_seconds{model="cheap"}"#).unwrap();
    let sluggish = sample(&metrics, r#"switchyard_ttft_estimate_seconds{model="sluggish"}"#).unwrap();
    println!("TTFT from Prometheus: cheap {cheap:.4} s, sluggish {sluggish:.4} s");
    assert!(sluggish > 0.2 && cheap < sluggish, "cheap {cheap}, sluggish {sluggish}");
    // B served nothing: its own histogram is empty.
    assert_eq!(sample(&metrics, r#"switchyard_ttft_seconds_count{model="cheap"}"#), None);
    let models = ranking.get_json("/v1/models").await;
    let entry = models["data"].as_array().unwrap().iter().find(|m| m["id"] == "cheap").unwrap();
    assert_eq!(entry["switchyard"]["latency"]["samples"], 0);

    // Prometheus going away keeps the last values and counts the failure.
    let query = format!("{}/api/v1/query?query=up", prometheus.url);
    assert!(client.get(&query).send().await.unwrap().status().is_success());
    drop(prometheus);
    ranking
        .metrics_eventually("a failed Prometheus refresh", |m| {
            sample(m, r#"switchyard_signal_refreshes_total{source="prometheus",result="error"}"#).is_some()
        })
        .await;
    assert_eq!(ranking.route(&ask("router:eng", SQL), None).await["model"], "cheap");
    Arc::into_inner(serving).unwrap().stop().await;
    ranking.stop().await;
}

/// Prints Prometheus's log if dropped while unwinding (the wait failed).
fn scopeguard(prometheus: &Prometheus) -> impl Drop + '_ {
    struct Guard<'a>(&'a Prometheus);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("--- prometheus log ---\n{}", self.0.log());
            }
        }
    }
    Guard(prometheus)
}
