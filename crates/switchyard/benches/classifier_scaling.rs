//! Classifier scaling: routed requests per second through one ingress node
//! with 1, 2 and 3 classifier-only node processes, side by side with the
//! all-in-one node (its own workers, no classifier nodes), and the
//! classification latency the ingress node sees.
//!
//! `cargo bench -p switchyard --bench classifier_scaling` (after
//! `models/fetch.sh`). Each configuration runs the same closed-loop load:
//! `SCALING_CLIENTS` concurrent clients (16) for `SCALING_SECS` seconds (8)
//! of `POST /v1/route` to `router:software-engineering`, every request a
//! new turn (a unique user message, so the encoder's cache never answers).
//! `/v1/route` is the whole routing decision (affinity, classifier, ranker)
//! without an upstream call, so the figure is routing capacity.
//!
//! Every process runs on this machine: with 2 cores, more classifier
//! processes add gRPC hops and contend for the same cores, so the figures
//! show the overhead of spreading; capacity grows with classifier nodes
//! only when they bring their own cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a bench binary: a failure aborts it")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A `switchyard serve` process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(overlay: &Path, log: &Path) -> Process {
    let log = std::fs::File::create(log).unwrap();
    Process(
        Command::new(BIN)
            // The config's model paths are relative to the repository root.
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .args(["serve", "--overlay"])
            .arg(overlay)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn wait_for(what: &str, deadline: Duration, log: &Path, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("timed out waiting for {what}; its log:\n{log}");
}

/// Cumulative `switchyard_classify_seconds` buckets of one target.
fn buckets(metrics: &str, target: &str) -> Vec<(f64, f64)> {
    let prefix = "switchyard_classify_seconds_bucket{";
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix) && line.contains(&format!("target=\"{target}\"")))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            let value = line.rsplit(' ').next()?.parse().ok()?;
            Some((le, value))
        })
        .collect()
}

/// The bucket bound under which `q` of the observations fall.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, count)| (*le, count - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, c)| *c)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta.iter().find(|(_, count)| *count >= q * total).map(|(le, _)| *le)
}

fn ms(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() => format!("≤{:.1}", s * 1000.0),
        Some(_) => "+Inf".to_owned(),
        None => "-".to_owned(),
    }
}

struct Figures {
    label: String,
    requests: u64,
    errors: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The routing decision as the ingress node timed it (`decision_ms`:
    /// affinity, classification wherever it ran, ranking).
    decision_p50_ms: f64,
    decision_p99_ms: f64,
    classify_p99: Option<f64>,
    remote_share: f64,
}

async fn load(client: &reqwest::Client, base: &str, label: &str, clients: u64, secs: u64) -> Figures {
    let metrics_url = format!("{base}/metrics");
    let before = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, counter, errors) = (client.clone(), Arc::clone(&counter), Arc::clone(&errors));
            let url = format!("{base}/v1/route");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut decisions = Vec::new();
                while Instant::now() < until {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let body = json!({
                        "model": "router:software-engineering",
                        "messages": [{"role": "user", "content": format!(
                            "My service {c}-{n} crashes with a NullPointerException in the request handler; here is the stack trace, how do I fix it?"
                        )}]
                    });
                    let sent = Instant::now();
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {
                            let body: Value = response.json().await.unwrap_or(Value::Null);
                            latencies.push(sent.elapsed());
                            if let Some(ms) = body["decision_ms"].as_f64() {
                                decisions.push(ms);
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                (latencies, decisions)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut decisions = Vec::new();
    for task in tasks {
        let (l, d) = task.await.unwrap();
        latencies.extend(l);
        decisions.extend(d);
    }
    decisions.sort_by(f64::total_cmp);
    let decision = |q: f64| decisions.get(((decisions.len() as f64 * q) as usize).min(decisions.len().saturating_sub(1))).copied().unwrap_or(0.0);
    let elapsed = started.elapsed().as_secs_f64();
    let after = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    latencies.sort();
    let pick = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let (remote_before, remote_after) = (buckets(&before, "remote"), buckets(&after, "remote"));
    let (local_before, local_after) = (buckets(&before, "local"), buckets(&after, "local"));
    let count = |b: &[(f64, f64)], a: &[(f64, f64)]| a.last().map_or(0.0, |x| x.1) - b.last().map_or(0.0, |x| x.1);
    let remote = count(&remote_before, &remote_after);
    let local = count(&local_before, &local_after);
    let (b, a) = if remote >= local { (remote_before, remote_after) } else { (local_before, local_after) };
    Figures {
        label: label.to_owned(),
        requests: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        rps: latencies.len() as f64 / elapsed,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        decision_p50_ms: decision(0.5),
        decision_p99_ms: decision(0.99),
        classify_p99: quantile(&b, &a, 0.99),
        remote_share: if remote + local > 0.0 { remote / (remote + local) } else { 0.0 },
    }
}

#[tokio::main]
async fn main() {
    let clients = env_or("SCALING_CLIENTS", 16);
    let secs = env_or("SCALING_SECS", 8);
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let mut results = Vec::new();
    let mut unloaded = Vec::new();

    for classifier_nodes in [0usize, 1, 2, 3] {
        let run = dir.path().join(format!("run-{classifier_nodes}"));
        std::fs::create_dir_all(&run).unwrap();
        let (http, raft) = (free_port(), free_port());
        // 0 classifier nodes: the all-in-one node classifies with its own
        // two workers. Otherwise the ingress node has no classifier role.
        let roles = if classifier_nodes == 0 { "[ingress, voter, classifier]" } else { "[ingress, voter]" };
        let overlay = run.join("ingress.yaml");
        std::fs::write(
            &overlay,
            format!(
                "server: {{ listen: 127.0.0.1:{http}, data_dir: {data} }}\ncluster: {{ listen: 127.0.0.1:{raft}, roles: {roles} }}\nclassifier: {{ workers: 2, remote: {{ fallback: moe, timeout_ms: 2000, register_every_ms: 200 }} }}\n",
                data = run.join("ingress").display()
            ),
        )
        .unwrap();
        let _ingress = serve(&overlay, &run.join("ingress.log"));
        let base = format!("http://127.0.0.1:{http}");
        wait_for("the ingress node", Duration::from_secs(120), &run.join("ingress.log"), async || {
            client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        let mut nodes = Vec::new();
        for i in 0..classifier_nodes {
            let overlay = run.join(format!("classifier-{i}.yaml"));
            std::fs::write(
                &overlay,
                format!(
                    "server: {{ listen: 127.0.0.1:{}, data_dir: {} }}\ncluster: {{ listen: \"127.0.0.1:0\", roles: [classifier], seeds: [\"127.0.0.1:{raft}\"] }}\nclassifier: {{ workers: 2, remote: {{ register_every_ms: 200 }} }}\n",
                    free_port(),
                    run.join(format!("classifier-{i}")).display()
                ),
            )
            .unwrap();
            nodes.push(serve(&overlay, &run.join(format!("classifier-{i}.log"))));
        }
        wait_for("every classifier node registered", Duration::from_secs(120), &run.join("classifier-0.log"), async || {
            let status: Value = match client.get(format!("{base}/v1/classifier")).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => return false,
            };
            status["remote"].as_array().is_some_and(|remote| remote.len() == classifier_nodes)
        })
        .await;
        // Warm-up: the route descriptions are prepared on each classifier
        // node by the first request that reaches it.
        let _ = load(&client, &base, "warm-up", clients, 2).await;
        let label = match classifier_nodes {
            0 => "all-in-one (local workers)".to_owned(),
            n => format!("{n} classifier process{}", if n == 1 { "" } else { "es" }),
        };
        let figures = load(&client, &base, &label, clients, secs).await;
        eprintln!("{label}: {:.1} req/s", figures.rps);
        results.push(figures);
        // One client at a time: the decision's latency without queueing,
        // which shows what the hop to a classifier node costs.
        let alone = load(&client, &base, &label, 1, secs / 2).await;
        unloaded.push(alone);
        drop(nodes);
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nclassifier scaling: POST /v1/route, {clients} concurrent clients, {secs} s per row, every turn new; {cores} cores; classifier moe, 2 workers per process"
    );
    println!(
        "| {:<28} | {:>8} | {:>6} | {:>7} | {:>9} | {:>9} | {:>15} | {:>15} | {:>15} | {:>6} |",
        "configuration", "requests", "errors", "req/s", "p50 ms", "p99 ms", "decision p50 ms", "decision p99 ms", "classify p99 ms", "remote"
    );
    let base_rps = results.first().map_or(1.0, |f| f.rps);
    for f in &results {
        println!(
            "| {:<28} | {:>8} | {:>6} | {:>7.1} | {:>9.1} | {:>9.1} | {:>15.1} | {:>15.1} | {:>15} | {:>5.0}% |",
            f.label, f.requests, f.errors, f.rps, f.p50_ms, f.p99_ms, f.decision_p50_ms, f.decision_p99_ms, ms(f.classify_p99), f.remote_share * 100.0
        );
    }
    println!("\none client at a time ({} s per row): the decision without queueing", secs / 2);
    println!("| {:<28} | {:>8} | {:>7} | {:>15} | {:>15} |", "configuration", "requests", "req/s", "decision p50 ms", "decision p99 ms");
    for f in &unloaded {
        println!(
            "| {:<28} | {:>8} | {:>7.1} | {:>15.1} | {:>15.1} |",
            f.label, f.requests, f.rps, f.decision_p50_ms, f.decision_p99_ms
        );
    }
    println!("\nthroughput relative to all-in-one:");
    for f in &results {
        println!("  {:<28} {:.2}×", f.label, f.rps / base_rps);
    }
    println!("(decision: `decision_ms` of each /v1/route answer; classify p99: upper bound of the switchyard_classify_seconds bucket holding it)");
}
