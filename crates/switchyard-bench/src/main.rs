//! `switchyard-bench`: `load` runs one open-loop load and prints its report
//! as JSON; `suite` runs the side-by-side benchmark of a targets file and
//! prints the table (`bench/run.sh` writes the file and starts the servers).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_bench::load::{self, ExpectHeader, LoadSpec};
use switchyard_bench::suite::{self, AddedBudget, RateSpec, SuiteFile, SuiteParams};

#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", version, about = "Open-loop load generator and benchmark suite")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One open-loop run; prints a JSON report.
    Load {
        /// http://host:port/path (POST); repeat it to spread the connections
        /// over several servers (the nodes of a cluster).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// Requests per second, scheduled regardless of completions.
        #[arg(long)]
        rate: f64,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[command(flatten)]
        shape: Shape,
        /// `Name: value`, repeatable; `{n}` in a value becomes a token unique
        /// to each request.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// JSON body, or @FILE; `{n}` in it becomes a token unique to each request.
        #[arg(long)]
        body: String,
        /// `name=value`: responses without this header value count as errors.
        #[arg(long)]
        expect_header: Option<String>,
        /// Pid whose memory (with its children) is sampled; repeatable.
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// Also write every answered request to this file, one line each in
        /// order of start: `start_ms latency_ms` (start from the measured
        /// window's beginning). Shows whether slow requests cluster in time.
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// The side-by-side suite over a targets file; prints one table.
    Suite {
        /// Targets JSON (see bench/run.sh).
        #[arg(long)]
        targets: PathBuf,
        /// Rounds; the table shows medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A rate is sustained with no errors and p99 at most this (ms).
        #[arg(long, default_value_t = 50.0)]
        p99_budget_ms: f64,
        /// Measured seconds per step.
        #[arg(long, default_value_t = 3.0)]
        step: f64,
        #[command(flatten)]
        shape: Shape,
        /// Bisections after bracketing the highest sustained rate.
        #[arg(long, default_value_t = 2)]
        bisections: usize,
        /// No search goes above this rate.
        #[arg(long, default_value_t = 100_000.0)]
        max_rate: f64,
        /// Common rates, comma-separated: numbers or max:TARGET.
        #[arg(long, value_delimiter = ',', default_value = "50")]
        rates: Vec<RateSpec>,
        /// `TARGET:MS`, repeatable: also find each round the highest rate at
        /// which TARGET's p99 is at most MS above the baseline's (both
        /// measured at that rate, back to back).
        #[arg(long = "added-budget")]
        added_budgets: Vec<AddedBudget>,
        /// Write every step and the medians here as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The floor proxy: JSON in, JSON out, one fixed upstream, nothing else
    /// (see the `floor` module). Runs until stopped.
    Floor {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Where every request goes: http://host:port/path (POST).
        #[arg(long)]
        upstream: hyper::Uri,
    },
}

/// What every load shares: `load` once, `suite` for each of its steps.
#[derive(Debug, clap::Args)]
struct Shape {
    /// Seconds at the same rate before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections (= workers; the most requests in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Load {
            urls,
            rate,
            duration,
            shape: Shape { warmup, connections, timeout },
            headers,
            body,
            expect_header,
            pids,
            samples,
        } => {
            let body = match body.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
                None => body,
            };
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .with_context(|| format!("--header `{h}`: expected `Name: value`"))
                })
                .collect::<anyhow::Result<_>>()?;
            let expect_header = expect_header
                .map(|e| {
                    e.split_once('=')
                        .map(|(name, value)| ExpectHeader { name: name.to_owned(), value: value.to_owned() })
                        .with_context(|| format!("--expect-header `{e}`: expected name=value"))
                })
                .transpose()?;
            let spec = LoadSpec {
                urls,
                rate,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(warmup),
                connections,
                timeout: Duration::from_secs_f64(timeout),
                grace: Duration::from_secs_f64(timeout),
                headers,
                body,
                expect_header,
                pids,
            };
            let report = load::run(&spec).await?;
            if let Some(path) = samples {
                std::fs::write(&path, load::samples_text(&report.samples))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Suite {
            targets,
            rounds,
            p99_budget_ms,
            step,
            shape: Shape { warmup, connections, timeout },
            bisections,
            max_rate,
            rates,
            added_budgets,
            out,
        } => {
            let text = std::fs::read_to_string(&targets).with_context(|| format!("cannot read {}", targets.display()))?;
            let file: SuiteFile = serde_json::from_str(&text).with_context(|| format!("{}", targets.display()))?;
            let params = SuiteParams {
                rounds,
                p99_budget_ms,
                step: Duration::from_secs_f64(step),
                warmup: Duration::from_secs_f64(warmup),
                connections,
                timeout: Duration::from_secs_f64(timeout),
                bisections,
                max_rate,
                rates,
                added_budgets,
            };
            let result = suite::run(&file, &params).await?;
            if let Some(path) = out {
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            print!("{}", result.table);
        }
        Command::Floor { listen, upstream } => {
            anyhow::ensure!(upstream.scheme_str() == Some("http"), "--upstream must be an http:// URL");
            switchyard_bench::floor::run(listen, upstream).await?;
        }
    }
    Ok(())
}
