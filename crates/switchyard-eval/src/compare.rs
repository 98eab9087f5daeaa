//! Routed against baseline, through a running node: `switchyard compare`.
//!
//! Where [`evaluate`](crate::evaluate) checks the classifier alone, this
//! measures what a client gets: each prompt of a dataset is sent to a node's
//! `POST /v1/chat/completions` twice, once as `router:<NAME>` and once to the
//! baseline model by id (non-streaming), and the two answers are set side by
//! side: route and model, wall-clock latency, tokens, and the cost the node
//! reports in `x-model-router-cost-usd` (usage × the prices in force; the
//! node sets it for a model named directly too). Whatever stands behind the
//! node, real upstreams or the fake, is what gets measured.
//!
//! A failed call is a finding, not a fault: it is reported on its row (HTTP
//! status and the error's message) and the run goes on. Only an unreadable
//! dataset, a node that cannot be reached at all, or a failed write stop it.
//!
//! Output: [`Comparison::write_csv`] (one row per prompt, with a header),
//! [`Comparison::summary_table`] (totals), [`Comparison::prompt_table`]
//! (per prompt, for the terminal) and [`Comparison::to_json`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

/// The node's response header naming the route (absent for a model id).
const ROUTE_HEADER: &str = "x-model-router-selected-route";
/// The node's response header with the response's cost in USD.
const COST_HEADER: &str = "x-model-router-cost-usd";
/// The node's response header present when a built-in demo upstream answered.
const DEMO_HEADER: &str = "x-model-router-demo";

/// Where [`CompareOptions::node`] points unless told otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";
/// Prompts in flight at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Client timeout per call unless told otherwise: a long completion from a
/// slow upstream must not count as a failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest error message kept per call: an upstream's HTML error page must
/// not flood the table.
const ERROR_CHARS: usize = 300;

/// Why a comparison could not run (failed calls are not errors: they are
/// reported on their rows).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path} holds no prompts")]
    Empty { path: String },
    #[error("node URL `{url}` must start with http:// or https://")]
    NodeUrl { url: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("node {node} cannot be reached: {message}")]
    Unreachable { node: String, message: String },
    #[error("cannot write the comparison: {0}")]
    Write(#[from] std::io::Error),
}

/// How to run a comparison.
#[derive(Clone)]
pub struct CompareOptions {
    /// Base URL of a running node, e.g. `http://127.0.0.1:8080` (a trailing
    /// `/` or `/v1`, as OpenAI SDK base URLs have it, is accepted).
    pub node: String,
    /// The router, `NAME` or `router:NAME`.
    pub router: String,
    /// The model id (or alias) every prompt is also sent to directly.
    pub baseline: String,
    /// Only the first N prompts of the dataset.
    pub limit: Option<usize>,
    /// Prompts in flight at once (each sends its two calls one after the
    /// other); 0 counts as 1.
    pub concurrency: usize,
    /// Per call, connect to last byte: past it the call is a failure.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer` when set (a gateway in front of the
    /// node); never printed, not even by `Debug`.
    pub api_key: Option<String>,
}

impl CompareOptions {
    /// The defaults for a router and a baseline.
    pub fn new(router: impl Into<String>, baseline: impl Into<String>) -> CompareOptions {
        CompareOptions {
            node: DEFAULT_NODE.to_owned(),
            router: router.into(),
            baseline: baseline.into(),
            limit: None,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            api_key: None,
        }
    }

    /// `router:NAME`, whichever way the router was given.
    fn router_model(&self) -> String {
        if self.router.starts_with("router:") {
            self.router.clone()
        } else {
            format!("router:{}", self.router)
        }
    }

    /// The node's base URL without a trailing `/` or `/v1`.
    fn node_base(&self) -> Result<String, CompareError> {
        let trimmed = self.node.trim().trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CompareError::NodeUrl {
                url: self.node.clone(),
            });
        }
        Ok(base.to_owned())
    }
}

impl fmt::Debug for CompareOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareOptions")
            .field("node", &self.node)
            .field("router", &self.router)
            .field("baseline", &self.baseline)
            .field("limit", &self.limit)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One prompt of the dataset: what is sent, and what the route should be.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub id: String,
    /// Sent as they are (tool calls, content parts and all).
    pub messages: Vec<Value>,
    /// The dataset's label; compared with the route the node chose when the
    /// dataset's route names are the router's task names.
    pub expected: Option<String>,
}

/// Reads up to `limit` prompts from a JSONL file in the shared dataset
/// format. Only `messages` (a non-empty array of objects) is required; `id`
/// defaults to `line-N` and `expected` is optional; other fields (`routes`,
/// `source`...) are ignored.
pub fn read_prompts(path: &Path, limit: Option<usize>) -> Result<Vec<Prompt>, CompareError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| CompareError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut prompts = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|limit| prompts.len() >= limit) {
            break;
        }
        let line = line.map_err(|source| CompareError::Read {
            path: shown.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parse_error = |message: &str| CompareError::Parse {
            path: shown.clone(),
            line: number + 1,
            message: message.to_owned(),
        };
        let value: Value =
            serde_json::from_str(&line).map_err(|err| parse_error(&err.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(parse_error("a line must be a JSON object"));
        };
        let messages = match fields.remove("messages") {
            Some(Value::Array(messages)) if messages.is_empty() => {
                return Err(parse_error("`messages` is empty"));
            }
            Some(Value::Array(messages)) => messages,
            Some(_) => return Err(parse_error("`messages` must be an array")),
            None => return Err(parse_error("`messages` is missing")),
        };
        if !messages.iter().all(Value::is_object) {
            return Err(parse_error("every message must be an object"));
        }
        let id = match fields.remove("id") {
            Some(Value::String(id)) => id,
            Some(Value::Number(id)) => id.to_string(),
            None | Some(Value::Null) => format!("line-{}", number + 1),
            Some(_) => return Err(parse_error("`id` must be a string")),
        };
        let expected = match fields.remove("expected") {
            Some(Value::String(expected)) => Some(expected),
            None | Some(Value::Null) => None,
            Some(_) => return Err(parse_error("`expected` must be a string")),
        };
        prompts.push(Prompt {
            id,
            messages,
            expected,
        });
    }
    if prompts.is_empty() {
        return Err(CompareError::Empty { path: shown });
    }
    Ok(prompts)
}

/// What one chat completion call gave back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Call {
    /// The HTTP status; `None` when no response came (connect error, timeout).
    pub status: Option<u16>,
    /// The body's `model`: the model that answered.
    pub model: Option<String>,
    /// `x-model-router-selected-route` (task name or `other`); `None` for a
    /// model named directly.
    pub route: Option<String>,
    /// Wall clock, request sent to body read.
    pub latency_ms: f64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// `x-model-router-cost-usd`; `None` when the node sent none (an hourly
    /// priced model, no usage in the answer, or a failed call).
    pub cost_usd: Option<f64>,
    /// `x-model-router-demo: true`: a built-in demo upstream answered.
    pub demo: bool,
    /// Why the call failed: `status code: message`, or the transport error.
    pub error: Option<String>,
}

impl Call {
    /// A 2xx with a readable body.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// One prompt, routed and on the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub expected: Option<String>,
    pub routed: Call,
    pub baseline: Call,
    /// Baseline cost minus routed cost, when both are known.
    pub saving_usd: Option<f64>,
    /// `saving_usd` as a share of the baseline cost (0.9 = 90% saved).
    pub saving_fraction: Option<f64>,
}

impl Row {
    fn new(prompt: &Prompt, routed: Call, baseline: Call) -> Row {
        let saving_usd = match (routed.cost_usd, baseline.cost_usd) {
            (Some(routed), Some(baseline)) => Some(baseline - routed),
            _ => None,
        };
        let saving_fraction = match (saving_usd, baseline.cost_usd) {
            (Some(saving), Some(baseline)) if baseline > 0.0 => Some(saving / baseline),
            _ => None,
        };
        Row {
            id: prompt.id.clone(),
            expected: prompt.expected.clone(),
            routed,
            baseline,
            saving_usd,
            saving_fraction,
        }
    }

    /// Either call failed.
    pub fn failed(&self) -> bool {
        !self.routed.succeeded() || !self.baseline.succeeded()
    }
}

/// Wall-clock latency of the successful calls of one side.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// One side's totals: routed, or baseline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    pub calls: usize,
    pub failures: usize,
    /// Summed over every call with a known cost.
    pub cost_usd: f64,
    /// Successful calls without a cost header (hourly prices, no usage).
    pub cost_unknown: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Over successful calls only: a fast refusal is not a fast answer.
    pub latency: Latency,
    pub demo_answers: usize,
}

impl Side {
    fn build<'a>(calls: impl Iterator<Item = &'a Call>) -> Side {
        let mut side = Side::default();
        let mut latencies = Vec::new();
        for call in calls {
            side.calls += 1;
            if !call.succeeded() {
                side.failures += 1;
                continue;
            }
            latencies.push(call.latency_ms);
            match call.cost_usd {
                Some(cost) => side.cost_usd += cost,
                None => side.cost_unknown += 1,
            }
            side.prompt_tokens += call.prompt_tokens.unwrap_or(0);
            side.completion_tokens += call.completion_tokens.unwrap_or(0);
            side.demo_answers += usize::from(call.demo);
        }
        latencies.sort_by(f64::total_cmp);
        side.latency = Latency {
            p50_ms: percentile(&latencies, 0.50),
            p95_ms: percentile(&latencies, 0.95),
        };
        side
    }
}

/// How often the chosen route matched the dataset's `expected`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RouteAccuracy {
    /// Prompts with both an `expected` label and a known route.
    pub checked: usize,
    pub correct: usize,
}

/// The whole run, summed up.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub prompts: usize,
    /// Prompts where either call failed.
    pub failures: usize,
    pub routed: Side,
    pub baseline: Side,
    /// Prompts with a cost on both sides: the saving is measured on these
    /// alone, so both sums cover the same prompts.
    pub paired: usize,
    pub paired_routed_cost_usd: f64,
    pub paired_baseline_cost_usd: f64,
    /// `paired_baseline_cost_usd - paired_routed_cost_usd`.
    pub saving_usd: f64,
    /// `saving_usd` as a share of the paired baseline cost; `None` when that is 0.
    pub saving_fraction: Option<f64>,
    /// Prompts per route the router chose (routed calls that named one).
    pub routes: BTreeMap<String, usize>,
    /// Prompts per model that answered the routed call.
    pub models: BTreeMap<String, usize>,
    pub route_accuracy: Option<RouteAccuracy>,
}

impl Totals {
    fn build(rows: &[Row]) -> Totals {
        let mut paired = 0;
        let (mut paired_routed, mut paired_baseline) = (0.0, 0.0);
        let mut routes = BTreeMap::new();
        let mut models = BTreeMap::new();
        let (mut checked, mut correct) = (0, 0);
        for row in rows {
            if let (Some(routed), Some(baseline)) = (row.routed.cost_usd, row.baseline.cost_usd) {
                paired += 1;
                paired_routed += routed;
                paired_baseline += baseline;
            }
            if let Some(route) = &row.routed.route {
                *routes.entry(route.clone()).or_insert(0) += 1;
                if let Some(expected) = &row.expected {
                    checked += 1;
                    correct += usize::from(expected == route);
                }
            }
            if let Some(model) = &row.routed.model {
                *models.entry(model.clone()).or_insert(0) += 1;
            }
        }
        let saving_usd = paired_baseline - paired_routed;
        Totals {
            prompts: rows.len(),
            failures: rows.iter().filter(|row| row.failed()).count(),
            routed: Side::build(rows.iter().map(|row| &row.routed)),
            baseline: Side::build(rows.iter().map(|row| &row.baseline)),
            paired,
            paired_routed_cost_usd: paired_routed,
            paired_baseline_cost_usd: paired_baseline,
            saving_usd,
            saving_fraction: (paired_baseline > 0.0).then(|| saving_usd / paired_baseline),
            routes,
            models,
            route_accuracy: (checked > 0).then_some(RouteAccuracy { checked, correct }),
        }
    }
}

/// A finished comparison: one row per prompt, in dataset order, and totals.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The node's base URL as called.
    pub node: String,
    /// `router:NAME`.
    pub router: String,
    pub baseline: String,
    pub rows: Vec<Row>,
    pub totals: Totals,
}

/// Reads the dataset and compares every prompt (see [`compare_prompts`]).
pub async fn compare(dataset: &Path, options: &CompareOptions) -> Result<Comparison, CompareError> {
    let prompts = read_prompts(dataset, options.limit)?;
    compare_prompts(&prompts, options, |_| {}).await
}

/// Sends each prompt routed and then to the baseline, `options.concurrency`
/// prompts at a time; `progress` is called as each prompt finishes (in
/// completion order). Fails only when the node cannot be reached at all.
pub async fn compare_prompts(
    prompts: &[Prompt],
    options: &CompareOptions,
    mut progress: impl FnMut(&Row),
) -> Result<Comparison, CompareError> {
    let node = options.node_base()?;
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .build()
        .map_err(CompareError::Client)?;
    let caller = Caller {
        client,
        url: format!("{node}/v1/chat/completions"),
        api_key: options.api_key.as_deref(),
    };
    // One cheap call first: a wrong address is one clear error, not a
    // table of identical failed rows.
    let mut probe = caller.client.get(format!("{node}/healthz"));
    if let Some(key) = caller.api_key {
        probe = probe.bearer_auth(key);
    }
    if let Err(err) = probe.send().await {
        return Err(CompareError::Unreachable {
            node,
            message: transport_error(&err, options.timeout),
        });
    }
    let router = options.router_model();
    let caller = &caller;
    let router = router.as_str();
    let mut finished = futures_util::stream::iter(prompts.iter().enumerate())
        .map(|(index, prompt)| async move {
            let routed = caller.call(router, &prompt.messages, options.timeout).await;
            let baseline = caller
                .call(&options.baseline, &prompt.messages, options.timeout)
                .await;
            (index, Row::new(prompt, routed, baseline))
        })
        .buffer_unordered(options.concurrency.max(1));
    let mut indexed = Vec::with_capacity(prompts.len());
    while let Some((index, row)) = finished.next().await {
        progress(&row);
        indexed.push((index, row));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let rows: Vec<Row> = indexed.into_iter().map(|(_, row)| row).collect();
    Ok(Comparison {
        node,
        router: router.to_owned(),
        baseline: options.baseline.clone(),
        totals: Totals::build(&rows),
        rows,
    })
}

/// The shared client and where it posts.
struct Caller<'a> {
    client: reqwest::Client,
    url: String,
    api_key: Option<&'a str>,
}

impl Caller<'_> {
    /// One non-streaming chat completion for `model`; never fails, the
    /// failure is written into the [`Call`].
    async fn call(&self, model: &str, messages: &[Value], timeout: Duration) -> Call {
        let body = json!({"model": model, "messages": messages});
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = self.api_key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Call {
                    latency_ms: elapsed_ms(started),
                    error: Some(transport_error(&err, timeout)),
                    ..Call::default()
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await;
        let latency_ms = elapsed_ms(started);
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let mut call = Call {
            status: Some(status.as_u16()),
            route: header(ROUTE_HEADER),
            cost_usd: header(COST_HEADER).and_then(|cost| cost.trim().parse().ok()),
            demo: header(DEMO_HEADER).is_some_and(|demo| demo == "true"),
            latency_ms,
            ..Call::default()
        };
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                call.error = Some(transport_error(&err, timeout));
                return call;
            }
        };
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            call.error = Some(http_error(status.as_u16(), parsed.as_ref(), &body));
            return call;
        }
        let Some(parsed) = parsed else {
            call.error = Some(format!("{}: the body is not JSON", status.as_u16()));
            return call;
        };
        call.model = parsed
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let usage = parsed.get("usage");
        let tokens = |field: &str| {
            usage
                .and_then(|usage| usage.get(field))
                .and_then(Value::as_u64)
        };
        call.prompt_tokens = tokens("prompt_tokens");
        call.completion_tokens = tokens("completion_tokens");
        call
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// A transport failure in a few words (the URL is the node's: no secrets).
fn transport_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!("timed out after {} s", timeout.as_secs_f64())
    } else if err.is_connect() {
        format!("cannot connect: {err}")
    } else {
        err.to_string()
    }
}

/// `STATUS code: message` from an OpenAI-shaped error body, or the start
/// of whatever body came.
fn http_error(status: u16, parsed: Option<&Value>, body: &[u8]) -> String {
    let error = parsed.and_then(|value| value.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message: String = message.chars().take(ERROR_CHARS).collect();
    match code {
        Some(code) => format!("{status} {code}: {message}"),
        None => format!("{status}: {message}"),
    }
}

/// The value at quantile `q` of sorted `values` (nearest rank); 0 when empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 19] = [
    "id",
    "expected",
    "route",
    "routed_model",
    "routed_status",
    "routed_latency_ms",
    "routed_prompt_tokens",
    "routed_completion_tokens",
    "routed_cost_usd",
    "baseline_model",
    "baseline_status",
    "baseline_latency_ms",
    "baseline_prompt_tokens",
    "baseline_completion_tokens",
    "baseline_cost_usd",
    "saving_usd",
    "saving_pct",
    "routed_error",
    "baseline_error",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, with its quotes doubled.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// USD with the node's precision: enough places for one cheap token.
fn usd(value: f64) -> String {
    format!("{value:.8}")
}

fn or_empty<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map(show).unwrap_or_default()
}

impl Comparison {
    /// One row per prompt after a header row ([`CSV_HEADER`]); an unknown
    /// value is an empty field, latencies are in ms and `saving_pct` in
    /// percent of the baseline cost.
    pub fn write_csv(&self, mut out: impl std::io::Write) -> Result<(), CompareError> {
        writeln!(out, "{}", CSV_HEADER.join(","))?;
        for row in &self.rows {
            let (routed, baseline) = (&row.routed, &row.baseline);
            let fields = [
                row.id.clone(),
                row.expected.clone().unwrap_or_default(),
                routed.route.clone().unwrap_or_default(),
                routed.model.clone().unwrap_or_default(),
                or_empty(routed.status, |s| s.to_string()),
                format!("{:.3}", routed.latency_ms),
                or_empty(routed.prompt_tokens, |t| t.to_string()),
                or_empty(routed.completion_tokens, |t| t.to_string()),
                or_empty(routed.cost_usd, usd),
                baseline.model.clone().unwrap_or_default(),
                or_empty(baseline.status, |s| s.to_string()),
                format!("{:.3}", baseline.latency_ms),
                or_empty(baseline.prompt_tokens, |t| t.to_string()),
                or_empty(baseline.completion_tokens, |t| t.to_string()),
                or_empty(baseline.cost_usd, usd),
                or_empty(row.saving_usd, usd),
                or_empty(row.saving_fraction, |f| format!("{:.2}", f * 100.0)),
                routed.error.clone().unwrap_or_default(),
                baseline.error.clone().unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            writeln!(out, "{}", line.join(","))?;
        }
        out.flush()?;
        Ok(())
    }

    /// The totals as a text table: cost both ways and the saving, latency
    /// percentiles, tokens, failures, then prompts per route and per model.
    pub fn summary_table(&self) -> String {
        let t = &self.totals;
        let pct = |part: usize| {
            if t.prompts == 0 {
                0.0
            } else {
                part as f64 * 100.0 / t.prompts as f64
            }
        };
        let mut out = format!(
            "{} vs {} via {}: {} prompts, {} with a failed call\n\n",
            self.router, self.baseline, self.node, t.prompts, t.failures
        );
        out.push_str(&format!("{:<22} {:>14} {:>14}\n", "", "routed", "baseline"));
        let mut line = |name: &str, routed: String, baseline: String| {
            out.push_str(&format!("{name:<22} {routed:>14} {baseline:>14}\n"));
        };
        line(
            "calls failed",
            t.routed.failures.to_string(),
            t.baseline.failures.to_string(),
        );
        line(
            "cost USD (all)",
            usd(t.routed.cost_usd),
            usd(t.baseline.cost_usd),
        );
        line(
            "cost USD (paired)",
            usd(t.paired_routed_cost_usd),
            usd(t.paired_baseline_cost_usd),
        );
        line(
            "latency p50 ms",
            format!("{:.1}", t.routed.latency.p50_ms),
            format!("{:.1}", t.baseline.latency.p50_ms),
        );
        line(
            "latency p95 ms",
            format!("{:.1}", t.routed.latency.p95_ms),
            format!("{:.1}", t.baseline.latency.p95_ms),
        );
        line(
            "tokens in",
            t.routed.prompt_tokens.to_string(),
            t.baseline.prompt_tokens.to_string(),
        );
        line(
            "tokens out",
            t.routed.completion_tokens.to_string(),
            t.baseline.completion_tokens.to_string(),
        );
        if t.routed.cost_unknown + t.baseline.cost_unknown > 0 {
            line(
                "answers without cost",
                t.routed.cost_unknown.to_string(),
                t.baseline.cost_unknown.to_string(),
            );
        }
        let saving = match t.saving_fraction {
            Some(fraction) => format!("{} USD ({:.1}%)", usd(t.saving_usd), fraction * 100.0),
            None => "- (no baseline cost)".to_owned(),
        };
        out.push_str(&format!(
            "\nsaving: {saving} on {} prompts with a cost both ways\n",
            t.paired
        ));
        if let Some(accuracy) = t.route_accuracy {
            out.push_str(&format!(
                "route accuracy: {}/{} ({:.1}%) against `expected`\n",
                accuracy.correct,
                accuracy.checked,
                accuracy.correct as f64 * 100.0 / accuracy.checked as f64
            ));
        }
        if t.routed.demo_answers + t.baseline.demo_answers > 0 {
            out.push_str(
                "note: demo upstreams answered some calls; their costs are not real spend\n",
            );
        }
        for (title, counts) in [("route", &t.routes), ("model", &t.models)] {
            out.push_str(&format!("\n{title:<22} {:>8} {:>8}\n", "prompts", "share"));
            for (name, count) in counts {
                out.push_str(&format!("{name:<22} {count:>8} {:>7.1}%\n", pct(*count)));
            }
        }
        out
    }

    /// One line per prompt: route, models, latency, cost both ways and the
    /// saving, or the error of a failed call.
    pub fn prompt_table(&self) -> String {
        let mut out = format!(
            "{:<24} {:<16} {:<16} {:>9} {:>12} {:<16} {:>9} {:>12} {:>7}\n",
            "id", "route", "routed model", "ms", "USD", "baseline", "ms", "USD", "saved"
        );
        let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
        for row in &self.rows {
            let (routed, baseline) = (&row.routed, &row.baseline);
            out.push_str(&format!(
                "{:<24} {:<16} {:<16} {:>9.1} {:>12} {:<16} {:>9.1} {:>12} {:>7}\n",
                row.id,
                text(&routed.route),
                text(&routed.model),
                routed.latency_ms,
                routed.cost_usd.map_or_else(|| "-".to_owned(), usd),
                text(&baseline.model),
                baseline.latency_ms,
                baseline.cost_usd.map_or_else(|| "-".to_owned(), usd),
                row.saving_fraction
                    .map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0)),
            ));
            for (side, call) in [("routed", routed), ("baseline", baseline)] {
                if let Some(error) = &call.error {
                    out.push_str(&format!("  {side} failed: {error}\n"));
                }
            }
        }
        out
    }

    /// Everything, rows and totals, as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "tests: a failed unwrap is a failed test"
    )]

    use super::*;

    fn call(route: Option<&str>, model: &str, cost: Option<f64>, latency_ms: f64) -> Call {
        Call {
            status: Some(200),
            model: Some(model.to_owned()),
            route: route.map(str::to_owned),
            latency_ms,
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            cost_usd: cost,
            ..Call::default()
        }
    }

    fn failed(status: u16, message: &str) -> Call {
        Call {
            status: Some(status),
            error: Some(message.to_owned()),
            ..Call::default()
        }
    }

    fn prompt(id: &str, expected: Option<&str>) -> Prompt {
        Prompt {
            id: id.to_owned(),
            messages: vec![json!({"role": "user", "content": "hi"})],
            expected: expected.map(str::to_owned),
        }
    }

    fn comparison(rows: Vec<Row>) -> Comparison {
        Comparison {
            node: "http://n".to_owned(),
            router: "router:r".to_owned(),
            baseline: "big".to_owned(),
            totals: Totals::build(&rows),
            rows,
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
    }

    #[test]
    fn totals_pair_costs_and_count_routes() {
        let rows = vec![
            Row::new(
                &prompt("a", Some("x")),
                call(Some("x"), "cheap", Some(1.0), 10.0),
                call(None, "big", Some(4.0), 30.0),
            ),
            Row::new(
                &prompt("b", Some("x")),
                call(Some("y"), "cheap", Some(2.0), 20.0),
                failed(404, "404 model_not_found: nope"),
            ),
            Row::new(
                &prompt("c", None),
                call(Some("x"), "mid", None, 40.0),
                call(None, "big", Some(8.0), 50.0),
            ),
        ];
        assert_eq!(rows[0].saving_usd, Some(3.0));
        assert_eq!(rows[0].saving_fraction, Some(0.75));
        assert_eq!(rows[1].saving_usd, None);
        let totals = comparison(rows).totals;
        assert_eq!(totals.prompts, 3);
        assert_eq!(totals.failures, 1);
        assert_eq!(totals.paired, 1);
        assert_eq!(totals.saving_usd, 3.0);
        assert_eq!(totals.routed.cost_usd, 3.0);
        assert_eq!(totals.routed.cost_unknown, 1);
        assert_eq!(totals.baseline.cost_usd, 12.0);
        assert_eq!(totals.baseline.failures, 1);
        assert_eq!(totals.routed.latency.p50_ms, 20.0);
        assert_eq!(totals.routed.latency.p95_ms, 40.0);
        assert_eq!(totals.routes.get("x"), Some(&2));
        assert_eq!(totals.models.get("cheap"), Some(&2));
        let accuracy = totals.route_accuracy.unwrap();
        assert_eq!((accuracy.correct, accuracy.checked), (1, 2));
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let rows = vec![Row::new(
            &prompt("with,comma", None),
            call(Some("x"), "cheap", Some(0.5), 1.0),
            failed(502, "502 all_models_failed: \"quoted\", and\nsplit"),
        )];
        let mut out = Vec::new();
        comparison(rows).write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), CSV_HEADER.join(","));
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("\"with,comma\",,x,cheap,200,1.000,10,5,0.50000000,,502,"),
            "{row}"
        );
        assert!(
            text.ends_with(",\"502 all_models_failed: \"\"quoted\"\", and\nsplit\"\n"),
            "{text}"
        );
    }

    #[test]
    fn options_hide_the_api_key_and_normalise_the_node() {
        let mut options = CompareOptions::new("eng", "big");
        options.api_key = Some("sk-secret-123".to_owned());
        options.node = "http://h:1/v1/".to_owned();
        assert!(!format!("{options:?}").contains("sk-secret"));
        assert_eq!(options.node_base().unwrap(), "http://h:1");
        assert_eq!(options.router_model(), "router:eng");
        options.router = "router:eng".to_owned();
        assert_eq!(options.router_model(), "router:eng");
        options.node = "h:1".to_owned();
        assert!(matches!(
            options.node_base(),
            Err(CompareError::NodeUrl { .. })
        ));
    }

    #[test]
    fn prompts_need_messages_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompts.jsonl");
        std::fs::write(
            &path,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n\n{\"id\":\"b\",\"expected\":\"x\",\"routes\":[],\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}\n",
        )
        .unwrap();
        let prompts = read_prompts(&path, None).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].id, "line-1");
        assert_eq!(prompts[1].expected.as_deref(), Some("x"));
        assert_eq!(read_prompts(&path, Some(1)).unwrap().len(), 1);
        std::fs::write(&path, "{\"id\":\"a\",\"messages\":[]}\n").unwrap();
        let err = read_prompts(&path, None).unwrap_err().to_string();
        assert!(err.ends_with(":1: `messages` is empty"), "{err}");
    }
}
