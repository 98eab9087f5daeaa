//! The open-loop load generator.
//!
//! Request `i` of a run is *due* at `start + i / rate`, whatever happened to
//! the requests before it: the schedule never waits for the server. A fixed
//! number of workers, each owning one keep-alive HTTP/1 connection, take the
//! next index from a shared counter, wait for its due time and send it.
//! When every worker is busy, due requests wait for a free connection, and
//! that wait counts: latency is measured from the due time (no coordinated
//! omission, as in wrk2). A worker that was idle and slept until the due time
//! measures from when it woke instead, so the timer's granularity (about a
//! millisecond) is not charged to the server; how late those wake-ups were is
//! reported as `wake_lag_p99_ms`, a check that the generator itself kept up.
//!
//! With several URLs (the nodes of a cluster), worker `w` connects to URL
//! `w mod n`, so connections, and with them requests, spread evenly.
//!
//! A run is `warmup` then `duration`; only requests due in the second part
//! are counted. It is bounded: no request starts after `duration + grace`,
//! and each has `timeout`; due requests never sent count as `unsent` errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::rss::PeakSampler;
use crate::stats::{self, Latency};

/// Where a request body or header value holds this, each request gets a
/// token no other request of this process sends (so caches keyed by content
/// never hit, and every request can open a new affinity session).
pub const UNIQUE_PLACEHOLDER: &str = "{n}";

/// One run: what to send, how fast, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `http://host:port/path`, one or more: connections are spread over them.
    pub urls: Vec<String>,
    /// Requests per second, scheduled.
    pub rate: f64,
    /// The measured window.
    pub duration: Duration,
    /// Sent at the same rate before the window, not counted.
    pub warmup: Duration,
    /// Workers, one connection each: the most requests in flight.
    pub connections: usize,
    /// Per request; past it the request is an error and its connection dropped.
    pub timeout: Duration,
    /// After the window, how long due requests may still start.
    pub grace: Duration,
    /// Header values may hold [`UNIQUE_PLACEHOLDER`].
    pub headers: Vec<(String, String)>,
    /// The JSON body; see [`UNIQUE_PLACEHOLDER`].
    pub body: String,
    /// A response header that must have this value (e.g. the route chosen),
    /// or the response counts as an error.
    pub expect_header: Option<ExpectHeader>,
    /// Processes whose resident memory (with their descendants) is sampled.
    pub pids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectHeader {
    pub name: String,
    pub value: String,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub target_rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    /// Requests due in the measured window.
    pub scheduled: u64,
    /// Of those, answered 200 (with the expected header).
    pub ok: u64,
    /// `ok` per second of the window.
    pub achieved_rate: f64,
    pub error_count: u64,
    /// By kind: `http_503`, `timeout`, `connect`, `transport`, `unsent`, `unexpected_header`.
    pub errors: BTreeMap<String, u64>,
    /// Of the `ok` requests, from due time (or wake-up) to the last body byte.
    pub latency: Latency,
    /// How late idle workers woke for their due time (the generator's own lag).
    pub wake_lag_p99_ms: f64,
    /// Peak summed `VmRSS` of `pids` and descendants during the run.
    pub rss_peak_kib: Option<u64>,
    /// Every answered request of the window, in order of its start: when
    /// slow requests come in clusters (the machine stalled) rather than
    /// spread out, it shows here. Not in the JSON report (`load --samples`
    /// writes them to a file).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// One answered request: when it started, relative to the measured
/// window's start (its due time, or its worker's wake-up), and how long it
/// took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    pub start_us: u64,
    pub latency_us: u64,
}

/// Distinguishes runs of this process in unique bodies.
static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

struct Shared {
    endpoints: Vec<Endpoint>,
    request: RequestTemplate,
    expect_header: Option<ExpectHeader>,
    next: AtomicU64,
    start: Instant,
    /// When the first counted request is due (samples are timed from here).
    window_start: Instant,
    rate: f64,
    total: u64,
    warm: u64,
    stop_at: Instant,
    timeout: Duration,
}

/// One URL of the run, resolved.
struct Endpoint {
    addr: SocketAddr,
    path: String,
    host: String,
}

impl Endpoint {
    async fn resolve(url: &str) -> anyhow::Result<Endpoint> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad url `{url}`"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "only http:// urls (loopback benchmarks)");
        let authority = uri.authority().context("url without host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await?
            .next()
            .with_context(|| format!("cannot resolve {authority}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Endpoint { addr, path, host: authority.to_string() })
    }
}

/// A text that may hold [`UNIQUE_PLACEHOLDER`] (its first occurrence is
/// replaced).
enum Template {
    Fixed(Bytes),
    Unique { before: String, after: String },
}

impl Template {
    fn new(text: &str) -> Template {
        match text.split_once(UNIQUE_PLACEHOLDER) {
            Some((before, after)) => Template::Unique { before: before.to_owned(), after: after.to_owned() },
            None => Template::Fixed(Bytes::from(text.to_owned())),
        }
    }

    fn render(&self, prefix: &str, index: u64) -> Bytes {
        match self {
            Template::Fixed(bytes) => bytes.clone(),
            Template::Unique { before, after } => Bytes::from(format!("{before}{prefix}{index}{after}")),
        }
    }
}

struct RequestTemplate {
    headers: Vec<(String, Template)>,
    body: Template,
    /// The unique token's prefix for this run: `<process salt>-<run>-`.
    unique_prefix: String,
}

impl RequestTemplate {
    fn build(&self, endpoint: &Endpoint, index: u64) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let mut builder = hyper::Request::post(endpoint.path.as_str())
            .header(hyper::header::HOST, endpoint.host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            let value = hyper::header::HeaderValue::from_maybe_shared(value.render(&self.unique_prefix, index))?;
            builder = builder.header(name.as_str(), value);
        }
        Ok(builder.body(Full::new(self.body.render(&self.unique_prefix, index)))?)
    }
}

#[derive(Default)]
struct WorkerTally {
    /// Every answered request; the latency summary is taken from these.
    samples: Vec<Sample>,
    wake_lags_us: Vec<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Samples as text: a `start_ms latency_ms` line each, in milliseconds
/// with microsecond digits.
pub fn samples_text(samples: &[Sample]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(samples.len() * 20);
    for sample in samples {
        let _ = writeln!(
            text,
            "{:.3} {:.3}",
            sample.start_us as f64 / 1000.0,
            sample.latency_us as f64 / 1000.0
        );
    }
    text
}

/// Runs one bounded open-loop load and reports it.
pub async fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(spec.rate > 0.0, "rate must be positive");
    anyhow::ensure!(spec.connections > 0, "at least one connection");
    anyhow::ensure!(!spec.urls.is_empty(), "at least one url");
    let mut endpoints = Vec::with_capacity(spec.urls.len());
    for url in &spec.urls {
        endpoints.push(Endpoint::resolve(url).await?);
    }
    let salt = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() % 1000);
    let request = RequestTemplate {
        headers: spec.headers.iter().map(|(name, value)| (name.clone(), Template::new(value))).collect(),
        body: Template::new(&spec.body),
        unique_prefix: format!("{salt}-{}-", RUN_SEQ.fetch_add(1, Ordering::Relaxed)),
    };
    // A bad header fails here, once, not as an error on every request.
    request.build(&endpoints[0], 0)?;

    // Connections are opened before the clock starts: the first requests
    // must not pay for the handshakes.
    let mut connections = Vec::with_capacity(spec.connections);
    for worker in 0..spec.connections {
        connections.push(connect(endpoints[worker % endpoints.len()].addr).await.ok());
    }

    let warm = (spec.warmup.as_secs_f64() * spec.rate).floor() as u64;
    let measured = (spec.duration.as_secs_f64() * spec.rate).floor() as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let shared = Arc::new(Shared {
        endpoints,
        request,
        expect_header: spec.expect_header.clone(),
        next: AtomicU64::new(0),
        start,
        window_start: start + Duration::from_secs_f64(warm as f64 / spec.rate),
        rate: spec.rate,
        total: warm + measured,
        warm,
        stop_at: start + spec.warmup + spec.duration + spec.grace,
        timeout: spec.timeout,
    });
    let sampler = PeakSampler::start(spec.pids.clone());
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| {
            let endpoint = index % shared.endpoints.len();
            tokio::spawn(worker(Arc::clone(&shared), endpoint, connection))
        })
        .collect();
    let mut tally = WorkerTally::default();
    for worker in workers {
        let part = worker.await.context("a load worker failed")?;
        tally.samples.extend(part.samples);
        tally.wake_lags_us.extend(part.wake_lags_us);
        tally.ok += part.ok;
        for (kind, count) in part.errors {
            *tally.errors.entry(kind).or_default() += count;
        }
    }
    let rss_peak_kib = sampler.finish();

    let attempted = tally.ok + tally.errors.values().sum::<u64>();
    if measured > attempted {
        tally.errors.insert("unsent".to_owned(), measured - attempted);
    }
    tally.wake_lags_us.sort_unstable();
    tally.samples.sort_unstable();
    Ok(LoadReport {
        target_rate: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        warmup_s: spec.warmup.as_secs_f64(),
        connections: spec.connections,
        scheduled: measured,
        ok: tally.ok,
        achieved_rate: tally.ok as f64 / spec.duration.as_secs_f64(),
        error_count: tally.errors.values().sum(),
        errors: tally.errors,
        latency: stats::summarize(tally.samples.iter().map(|sample| sample.latency_us).collect()),
        wake_lag_p99_ms: stats::percentile(&tally.wake_lags_us, 0.99) as f64 / 1000.0,
        rss_peak_kib,
        samples: tally.samples,
    })
}

async fn worker(shared: Arc<Shared>, endpoint: usize, mut connection: Option<SendRequest<Full<Bytes>>>) -> WorkerTally {
    let mut tally = WorkerTally::default();
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.total {
            return tally;
        }
        let due = shared.start + Duration::from_secs_f64(index as f64 / shared.rate);
        let counted = index >= shared.warm;
        let from = if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
            let woke = Instant::now();
            if counted {
                tally.wake_lags_us.push(woke.duration_since(due).as_micros() as u64);
            }
            woke
        } else {
            due
        };
        if from > shared.stop_at {
            return tally;
        }
        let outcome = tokio::time::timeout(shared.timeout, send(&shared, &shared.endpoints[endpoint], &mut connection, index)).await;
        let done = Instant::now();
        let outcome = outcome.unwrap_or_else(|_| Err("timeout".to_owned()));
        if outcome.is_err() {
            // Its state is unknown (a half-read answer): start afresh.
            connection = None;
        }
        if !counted {
            continue;
        }
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                tally.samples.push(Sample {
                    start_us: from.saturating_duration_since(shared.window_start).as_micros() as u64,
                    latency_us: done.duration_since(from).as_micros() as u64,
                });
            }
            Err(kind) => *tally.errors.entry(kind).or_default() += 1,
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends request `index` and reads the whole answer; the error is its kind.
async fn send(
    shared: &Shared,
    endpoint: &Endpoint,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    index: u64,
) -> Result<(), String> {
    let mut sender = match connection.take() {
        Some(sender) if !sender.is_closed() => sender,
        _ => connect(endpoint.addr).await.map_err(|_| "connect".to_owned())?,
    };
    if sender.ready().await.is_err() {
        sender = connect(endpoint.addr).await.map_err(|_| "connect".to_owned())?;
    }
    let request = shared.request.build(endpoint, index).map_err(|_| "bad_request".to_owned())?;
    let response = sender.send_request(request).await.map_err(|_| "transport".to_owned())?;
    let status = response.status();
    let header_ok = shared.expect_header.as_ref().is_none_or(|expect| {
        response
            .headers()
            .get(expect.name.as_str())
            .is_some_and(|value| value.as_bytes() == expect.value.as_bytes())
    });
    response.into_body().collect().await.map_err(|_| "transport".to_owned())?;
    *connection = Some(sender);
    if !status.is_success() {
        return Err(format!("http_{}", status.as_u16()));
    }
    if !header_ok {
        return Err("unexpected_header".to_owned());
    }
    Ok(())
}
