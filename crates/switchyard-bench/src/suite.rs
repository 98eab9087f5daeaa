//! The side-by-side suite: for every target, in rounds, the highest rate
//! whose p99 stays within a budget, and the latency at common rates, added
//! over the baseline (the fake upstream hit directly) in the same round.
//! One table of medians over the rounds.
//!
//! Within a round the targets take turns (the order rotates each round), so
//! every target sees the same machine, noise included.
//!
//! With an added budget (`--added-budget switchyard-model:1`) the suite also
//! finds, each round, the highest rate at which that target's p99 is at
//! most the budget above the baseline's, each candidate rate measured on
//! both back to back: the load up to which a proxy keeps its latency
//! promise, rather than the latency at one load picked beforehand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::load::{self, ExpectHeader, LoadReport, LoadSpec};
use crate::stats::median;

/// The targets file (written by `bench/run.sh`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// The target others' latency is compared with.
    pub baseline: String,
    pub targets: Vec<Target>,
    /// `[a, b]`: print the ratio of a's highest rate to b's.
    #[serde(default)]
    pub ratios: Vec<(String, String)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Short name (`--rates max:NAME` refers to it).
    pub name: String,
    /// As printed in the table.
    pub label: String,
    /// One URL, or a list to spread the connections over (a cluster's nodes).
    pub url: Urls,
    /// The request body (JSON); a string value may hold `{n}` for a unique token.
    pub body: serde_json::Value,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub expect_header: Option<ExpectHeader>,
    /// Processes whose memory is the target's (the server's pid).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Where the first round's search starts.
    #[serde(default = "default_start_rate")]
    pub start_rate: f64,
}

/// A target's `url`: a string or a list of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub fn list(&self) -> Vec<String> {
        match self {
            Urls::One(url) => vec![url.clone()],
            Urls::Many(urls) => urls.clone(),
        }
    }
}

fn default_start_rate() -> f64 {
    100.0
}

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteParams {
    pub rounds: usize,
    /// A rate is sustained when every request got its answer and the p99 is
    /// at most this.
    pub p99_budget_ms: f64,
    pub step: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub timeout: Duration,
    /// Geometric bisections between the last sustained and first failed rate.
    pub bisections: usize,
    pub max_rate: f64,
    /// Common rates: a number, or `max:NAME`, that target's highest sustained
    /// rate in the same round.
    pub rates: Vec<RateSpec>,
    /// Targets whose highest rate within an added p99 budget is searched.
    pub added_budgets: Vec<AddedBudget>,
}

/// `NAME:MS`: the highest rate at which NAME's p99 is at most MS above the
/// baseline's at the same rate (and NAME sustains it).
#[derive(Debug, Clone, PartialEq)]
pub struct AddedBudget {
    pub target: String,
    pub ms: f64,
}

impl std::str::FromStr for AddedBudget {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.rsplit_once(':').and_then(|(target, ms)| {
            let ms = ms.parse::<f64>().ok().filter(|ms| ms.is_finite() && *ms > 0.0)?;
            (!target.is_empty()).then(|| AddedBudget { target: target.to_owned(), ms })
        });
        parsed.ok_or_else(|| format!("expected TARGET:MS (a positive budget in milliseconds), got `{text}`"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RateSpec {
    Fixed(f64),
    /// `F*max:NAME` (F defaults to 1): F times NAME's highest sustained rate.
    MaxOf(f64, String),
}

impl std::str::FromStr for RateSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (factor, rest) = match text.split_once('*') {
            Some((factor, rest)) => (factor.parse::<f64>().ok().filter(|f| *f > 0.0), rest),
            None => (Some(1.0), text),
        };
        match (factor, rest.strip_prefix("max:")) {
            (Some(factor), Some(name)) => Ok(Self::MaxOf(factor, name.to_owned())),
            (None, _) => Err(format!("expected F*max:TARGET, got `{text}`")),
            (Some(_), None) => text
                .parse::<f64>()
                .ok()
                .filter(|rate| *rate > 0.0)
                .map(Self::Fixed)
                .ok_or_else(|| format!("expected a rate or max:TARGET, got `{text}`")),
        }
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(rate) => write!(f, "{rate}/s"),
            Self::MaxOf(factor, name) if *factor == 1.0 => write!(f, "max({name})"),
            Self::MaxOf(factor, name) => write!(f, "{factor}*max({name})"),
        }
    }
}

/// One load step, kept for the JSON record.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub round: usize,
    pub target: String,
    /// `search` or `common`.
    pub phase: &'static str,
    pub sustained: bool,
    pub report: LoadReport,
}

/// Everything measured, medians included (written as JSON with `--out`).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteResult {
    pub p99_budget_ms: f64,
    pub rounds: usize,
    pub steps: Vec<Step>,
    /// Per target, per round: the highest sustained rate (0 if none).
    pub max_rate: BTreeMap<String, Vec<f64>>,
    /// Per common rate (index into `rates`), per round: the rate used.
    pub common_rates: Vec<Vec<f64>>,
    /// Per added budget (index into `added_budgets`), per round: the highest
    /// rate within it (0 if none).
    pub within_added: Vec<Vec<f64>>,
    pub rows: Vec<Row>,
    pub table: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub label: String,
    pub max_rate_median: Option<f64>,
    /// Per common rate: medians of p50, p99, and of the per-round added p50, p99.
    pub at_rates: Vec<Option<[Option<f64>; 4]>>,
    /// Errors and requests over every step at or below the round's highest
    /// sustained rate (so: of the common-rate and added-budget steps;
    /// sustained search steps have none by definition).
    pub errors: u64,
    pub requests: u64,
    /// The same, over the steps above it (overload: errors expected there).
    pub overload_errors: u64,
    pub overload_requests: u64,
    pub rss_peak_mib: Option<f64>,
}

/// Whether a step kept up: no errors, p99 within the budget, nearly every
/// request answered in the window, and at least one (a window with no
/// request due in it shows nothing, so it does not pass).
fn sustained(report: &LoadReport, budget_ms: f64) -> bool {
    report.ok > 0
        && report.error_count == 0
        && report.latency.p99_ms <= budget_ms
        && report.ok as f64 >= 0.97 * report.scheduled as f64
}

/// `name`'s highest sustained rate in the round being run (0 if none).
fn this_round(max_rate: &BTreeMap<String, Vec<f64>>, name: &str) -> f64 {
    max_rate.get(name).and_then(|rates| rates.last().copied()).unwrap_or(0.0)
}

/// Rates to two significant figures (at least 1): the steps of a search.
fn round_rate(rate: f64) -> f64 {
    if rate < 10.0 {
        return rate.round().max(1.0);
    }
    let magnitude = 10f64.powf(rate.log10().floor() - 1.0);
    (rate / magnitude).round() * magnitude
}

pub async fn run(file: &SuiteFile, params: &SuiteParams) -> anyhow::Result<SuiteResult> {
    let baseline = file
        .targets
        .iter()
        .find(|t| t.name == file.baseline)
        .with_context(|| format!("baseline `{}` is not a target", file.baseline))?;
    for spec in &params.rates {
        if let RateSpec::MaxOf(_, name) = spec {
            anyhow::ensure!(file.targets.iter().any(|t| &t.name == name), "--rates: no target `{name}`");
        }
    }
    let mut budgeted = Vec::new();
    for budget in &params.added_budgets {
        let target = file.targets.iter().find(|t| t.name == budget.target);
        budgeted.push(target.with_context(|| format!("--added-budget: no target `{}`", budget.target))?);
    }
    let mut steps = Vec::new();
    let mut max_rate: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut common_rates = vec![Vec::new(); params.rates.len()];
    let mut within_added = vec![Vec::new(); params.added_budgets.len()];
    let count = file.targets.len();
    for round in 0..params.rounds {
        eprintln!("== round {}/{}", round + 1, params.rounds);
        let order: Vec<&Target> = (0..count).map(|k| &file.targets[(k + round) % count]).collect();
        for target in &order {
            let start = match median(max_rate.get(&target.name).map_or(&[][..], Vec::as_slice)) {
                Some(known) if known > 0.0 => round_rate(known / 2.0),
                _ => target.start_rate,
            };
            let best = search(start, params.max_rate, params.bisections, async |rate| {
                let record = probe(target, rate, round, params).await?;
                let ok = record.sustained;
                steps.push(record);
                Ok(ok)
            })
            .await?;
            eprintln!("   {:<28} sustained {:>8.0} req/s", target.name, best);
            max_rate.entry(target.name.clone()).or_default().push(best);
        }
        for ((budget, target), found) in params.added_budgets.iter().zip(&budgeted).zip(&mut within_added) {
            let top = this_round(&max_rate, &target.name);
            if top <= 0.0 {
                found.push(0.0);
                continue;
            }
            let start = match median(found) {
                Some(known) if known > 0.0 => known.min(top),
                _ => top / 2.0,
            };
            let best = search(start, top, params.bisections, async |rate| {
                let base = step(baseline, rate, params).await?;
                let own = step(target, rate, params).await?;
                let added = own.latency.p99_ms - base.latency.p99_ms;
                let ok = sustained(&own, params.p99_budget_ms) && base.ok > 0 && added <= budget.ms;
                eprintln!(
                    "   {:<28} within +{} ms? {:>8.0}/s: p99 {:.3} ms vs {:.3} ms ({added:+.3}), errors {} -> {}",
                    target.name,
                    budget.ms,
                    rate,
                    own.latency.p99_ms,
                    base.latency.p99_ms,
                    own.error_count,
                    if ok { "within" } else { "over" }
                );
                for (who, report) in [(baseline, base), (*target, own)] {
                    steps.push(Step {
                        round,
                        target: who.name.clone(),
                        phase: "added-budget",
                        sustained: sustained(&report, params.p99_budget_ms),
                        report,
                    });
                }
                Ok(ok)
            })
            .await?;
            eprintln!("   {:<28} within +{} ms p99 up to {:>8.0} req/s", target.name, budget.ms, best);
            found.push(best);
        }
        for (index, spec) in params.rates.iter().enumerate() {
            let rate = match spec {
                RateSpec::Fixed(rate) => *rate,
                RateSpec::MaxOf(factor, name) => {
                    let top = this_round(&max_rate, name);
                    if top > 0.0 { round_rate(factor * top) } else { 0.0 }
                }
            };
            common_rates[index].push(rate);
            if rate <= 0.0 {
                continue;
            }
            for target in &order {
                let own = this_round(&max_rate, &target.name);
                // A target is compared only at rates it sustained this round
                // (the baseline always runs: it is the reference).
                if target.name != file.baseline && own < rate {
                    continue;
                }
                let report = step(target, rate, params).await?;
                eprintln!(
                    "   {:<28} at {:>8.0}/s: p50 {:.3} ms, p99 {:.3} ms, errors {}",
                    target.name, rate, report.latency.p50_ms, report.latency.p99_ms, report.error_count
                );
                steps.push(Step {
                    round,
                    target: target.name.clone(),
                    phase: "common",
                    sustained: sustained(&report, params.p99_budget_ms),
                    report,
                });
            }
        }
    }
    let rows = rows(file, &steps, &max_rate, &common_rates);
    let table = render(file, params, &rows, &max_rate, &common_rates, &within_added);
    Ok(SuiteResult {
        p99_budget_ms: params.p99_budget_ms,
        rounds: params.rounds,
        steps,
        max_rate,
        common_rates,
        within_added,
        rows,
        table,
    })
}

async fn step(target: &Target, rate: f64, params: &SuiteParams) -> anyhow::Result<LoadReport> {
    let body = match &target.body {
        serde_json::Value::String(text) => text.clone(),
        value => serde_json::to_string(value)?,
    };
    let spec = LoadSpec {
        urls: target.url.list(),
        rate,
        duration: params.step,
        warmup: params.warmup,
        connections: params.connections,
        timeout: params.timeout,
        grace: params.timeout,
        headers: target.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        body,
        expect_header: target.expect_header.clone(),
        pids: target.pids.clone(),
    };
    let report = load::run(&spec).await.with_context(|| format!("target {}", target.name))?;
    // Let a server that fell behind drain before the next step.
    let pause = if sustained(&report, params.p99_budget_ms) { 300 } else { 2000 };
    tokio::time::sleep(Duration::from_millis(pause)).await;
    Ok(report)
}

/// Doubles (or halves) from `start` to bracket the highest rate that
/// `passes`, never above `cap`, then bisects geometrically; returns it (0
/// when not even 1 request/s passes). Rates are rounded to two figures.
async fn search(
    start: f64,
    cap: f64,
    bisections: usize,
    mut passes: impl AsyncFnMut(f64) -> anyhow::Result<bool>,
) -> anyhow::Result<f64> {
    let cap = round_rate(cap);
    let mut passed: Option<f64> = None;
    let mut failed: Option<f64> = None;
    let mut rate = round_rate(start).min(cap);
    for _ in 0..24 {
        if passes(rate).await? {
            passed = Some(rate);
            if failed.is_some() || rate >= cap {
                break;
            }
            rate = round_rate(rate * 2.0).min(cap);
        } else {
            failed = Some(rate);
            if passed.is_some() || rate <= 1.0 {
                break;
            }
            rate = round_rate(rate / 2.0);
        }
    }
    for _ in 0..bisections {
        let (Some(low), Some(high)) = (passed, failed) else { break };
        let middle = round_rate((low * high).sqrt());
        if middle <= low || middle >= high {
            break;
        }
        if passes(middle).await? {
            passed = Some(middle);
        } else {
            failed = Some(middle);
        }
    }
    Ok(passed.unwrap_or(0.0))
}

async fn probe(target: &Target, rate: f64, round: usize, params: &SuiteParams) -> anyhow::Result<Step> {
    let report = step(target, rate, params).await?;
    let ok = sustained(&report, params.p99_budget_ms);
    eprintln!(
        "   {:<28} try {:>8.0}/s: p99 {:>9.3} ms, ok {}/{}, errors {:?} -> {}",
        target.name,
        rate,
        report.latency.p99_ms,
        report.ok,
        report.scheduled,
        report.errors,
        if ok { "sustained" } else { "not sustained" }
    );
    Ok(Step { round, target: target.name.clone(), phase: "search", sustained: ok, report })
}

fn rows(
    file: &SuiteFile,
    steps: &[Step],
    max_rate: &BTreeMap<String, Vec<f64>>,
    common_rates: &[Vec<f64>],
) -> Vec<Row> {
    let common = |round: usize, target: &str, rate: f64| {
        steps.iter().find(|s| {
            s.phase == "common" && s.round == round && s.target == target && s.report.target_rate == rate
        })
    };
    file.targets
        .iter()
        .map(|target| {
            let at_rates = common_rates
                .iter()
                .map(|per_round| {
                    let (mut p50, mut p99, mut add50, mut add99) = (vec![], vec![], vec![], vec![]);
                    for (round, &rate) in per_round.iter().enumerate() {
                        let Some(own) = common(round, &target.name, rate) else { continue };
                        p50.push(own.report.latency.p50_ms);
                        p99.push(own.report.latency.p99_ms);
                        if target.name == file.baseline {
                            continue;
                        }
                        if let Some(base) = common(round, &file.baseline, rate) {
                            add50.push(own.report.latency.p50_ms - base.report.latency.p50_ms);
                            add99.push(own.report.latency.p99_ms - base.report.latency.p99_ms);
                        }
                    }
                    (!p50.is_empty()).then(|| [median(&p50), median(&p99), median(&add50), median(&add99)])
                })
                .collect();
            let best = max_rate.get(&target.name).cloned().unwrap_or_default();
            let (mut errors, mut requests, mut overload_errors, mut overload_requests) = (0, 0, 0, 0);
            for s in steps.iter().filter(|s| s.target == target.name) {
                if best.get(s.round).is_some_and(|&top| s.report.target_rate <= top) {
                    errors += s.report.error_count;
                    requests += s.report.scheduled;
                } else {
                    overload_errors += s.report.error_count;
                    overload_requests += s.report.scheduled;
                }
            }
            let rss = steps
                .iter()
                .filter(|s| s.target == target.name)
                .filter_map(|s| s.report.rss_peak_kib)
                .max();
            Row {
                target: target.name.clone(),
                label: target.label.clone(),
                max_rate_median: median(&best),
                at_rates,
                errors,
                requests,
                overload_errors,
                overload_requests,
                rss_peak_mib: rss.map(|kib| kib as f64 / 1024.0),
            }
        })
        .collect()
}

fn render(
    file: &SuiteFile,
    params: &SuiteParams,
    rows: &[Row],
    max_rate: &BTreeMap<String, Vec<f64>>,
    common_rates: &[Vec<f64>],
    within_added: &[Vec<f64>],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} round(s), medians; steps of {} s (+{} s warm-up), {} connections, open loop; \
         sustained = no errors and p99 <= {} ms",
        params.rounds,
        params.step.as_secs_f64(),
        params.warmup.as_secs_f64(),
        params.connections,
        params.p99_budget_ms
    );
    for (spec, per_round) in params.rates.iter().zip(common_rates) {
        let rates: Vec<String> = per_round.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(out, "@{spec}: {} req/s in rounds {}", median(per_round).unwrap_or(0.0), rates.join(", "));
    }
    let label_width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(6).max(6);
    let mut header = format!("{:<label_width$} | {:>10}", "target", "max req/s");
    let mut rule = format!("{:-<label_width$}-+-{:->10}", "", "");
    for spec in &params.rates {
        let _ = write!(header, " | {:^37}", format!("@{spec}: p50 / p99 (added) ms"));
        let _ = write!(rule, "-+-{:-<37}", "");
    }
    let _ = write!(header, " | {:>12} | {:>14} | {:>7}", "errors <=max", "errors over", "RSS MiB");
    let _ = write!(rule, "-+-{:-<12}-+-{:-<14}-+-{:-<7}", "", "", "");
    let _ = writeln!(out, "{header}\n{rule}");
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let added = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:+.2}"));
    for row in rows {
        let mut line = format!(
            "{:<label_width$} | {:>10}",
            row.label,
            row.max_rate_median.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
        );
        for cell in &row.at_rates {
            let text = match cell {
                None => "not sustained".to_owned(),
                Some([p50, p99, _, _]) if row.target == file.baseline => {
                    format!("{} / {} (baseline)", ms(*p50), ms(*p99))
                }
                Some([p50, p99, add50, add99]) => {
                    format!("{} / {} ({} / {})", ms(*p50), ms(*p99), added(*add50), added(*add99))
                }
            };
            let _ = write!(line, " | {text:>37}");
        }
        let _ = write!(
            line,
            " | {:>12} | {:>14} | {:>7}",
            format!("{}/{}", row.errors, row.requests),
            format!("{}/{}", row.overload_errors, row.overload_requests),
            row.rss_peak_mib.map_or_else(|| "-".to_owned(), |m| format!("{m:.0}"))
        );
        let _ = writeln!(out, "{line}");
    }
    let baseline = rows.iter().find(|r| r.target == file.baseline).map_or(file.baseline.as_str(), |r| r.label.as_str());
    let _ = writeln!(
        out,
        "(added): minus the baseline's ({baseline}) p50 / p99 at the same rate in the same round, median over rounds; \
         errors over: in steps above the target's highest sustained rate"
    );
    for (a, b) in &file.ratios {
        let (Some(mine), Some(theirs)) = (max_rate.get(a), max_rate.get(b)) else { continue };
        let per_round: Vec<f64> = mine
            .iter()
            .zip(theirs)
            .filter(|(_, t)| **t > 0.0)
            .map(|(m, t)| m / t)
            .collect();
        let text = median(&per_round).map_or_else(|| "-".to_owned(), |r| format!("{r:.1}x"));
        let _ = writeln!(out, "max req/s ratio {a} / {b}: {text} (median of per-round ratios)");
    }
    let baseline_max = max_rate.get(&file.baseline).and_then(|v| median(v));
    for (budget, per_round) in params.added_budgets.iter().zip(within_added) {
        let rates: Vec<String> = per_round.iter().map(|r| format!("{r:.0}")).collect();
        let best = median(per_round).unwrap_or(0.0);
        let own_max = max_rate.get(&budget.target).and_then(|v| median(v));
        let share = |of: Option<f64>| of.filter(|m| *m > 0.0).map_or_else(|| "-".to_owned(), |m| format!("{:.0}%", 100.0 * best / m));
        let _ = writeln!(
            out,
            "{} within +{} ms p99 of the baseline up to {best:.0} req/s (median; rounds {}): {} of its own max, {} of the baseline's",
            budget.target,
            budget.ms,
            rates.join(", "),
            share(own_max),
            share(baseline_max),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_to_two_figures() {
        assert_eq!(round_rate(9051.0), 9100.0);
        assert_eq!(round_rate(141.4), 140.0);
        assert_eq!(round_rate(3.4), 3.0);
        assert_eq!(round_rate(0.2), 1.0);
    }

    #[test]
    fn added_budgets_parse() {
        let budget = "switchyard-model:1".parse::<AddedBudget>().unwrap();
        assert_eq!(budget, AddedBudget { target: "switchyard-model".to_owned(), ms: 1.0 });
        assert_eq!("a:b:0.5".parse::<AddedBudget>().unwrap().target, "a:b");
        for bad in ["switchyard-model", ":1", "x:0", "x:-1", "x:ms", "x:inf"] {
            assert!(bad.parse::<AddedBudget>().is_err(), "{bad}");
        }
    }

    fn searched(start: f64, cap: f64, limit: f64) -> (f64, Vec<f64>) {
        let mut tried = Vec::new();
        let found = block_on(search(start, cap, 2, async |rate| {
            tried.push(rate);
            Ok(rate <= limit)
        }));
        (found, tried)
    }

    /// Runs a future that never waits (the searches below probe nothing).
    fn block_on<F: std::future::Future<Output = anyhow::Result<f64>>>(future: F) -> f64 {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future).unwrap()
    }

    #[test]
    fn the_search_brackets_then_bisects_and_respects_its_cap() {
        // Up from 1000 by doubling until 8000 fails, then two bisections.
        let (found, tried) = searched(1000.0, 100_000.0, 7300.0);
        assert_eq!(tried, [1000.0, 2000.0, 4000.0, 8000.0, 5700.0, 6800.0]);
        assert_eq!(found, 6800.0);
        // Down by halving when the start fails.
        let (found, tried) = searched(8000.0, 100_000.0, 1500.0);
        assert_eq!(tried, [8000.0, 4000.0, 2000.0, 1000.0, 1400.0, 1700.0]);
        assert_eq!(found, 1400.0);
        // Never above the cap; a pass at the cap ends the search.
        let (found, tried) = searched(4000.0, 6000.0, 1e9);
        assert_eq!(tried, [4000.0, 6000.0]);
        assert_eq!(found, 6000.0);
        // Nothing passes: 0.
        assert_eq!(searched(4.0, 100.0, 0.5).0, 0.0);
    }

    #[test]
    fn rate_specs_parse() {
        assert_eq!("250".parse(), Ok(RateSpec::Fixed(250.0)));
        assert_eq!("max:switchyard-model".parse(), Ok(RateSpec::MaxOf(1.0, "switchyard-model".to_owned())));
        assert_eq!("0.5*max:fake".parse(), Ok(RateSpec::MaxOf(0.5, "fake".to_owned())));
        assert!("x*max:fake".parse::<RateSpec>().is_err());
        assert!("fast".parse::<RateSpec>().is_err());
        assert!("0".parse::<RateSpec>().is_err());
    }
}
