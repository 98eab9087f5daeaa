//! Classifier decision latency, the figures of issue 11; prints, asserts
//! nothing.
//!
//!   cargo bench -p switchyard-classifier --bench decisions
//!
//! Needs the encoder files (`models/fetch.sh`) and the MoE head
//! (`models/moe-router`). For the `moe` classifier (the default) and, beside
//! it, `embedding`, on this machine's CPU with the node's settings:
//!
//! - decision latency p50/p99 by conversation length (1, 6, 20 turns) and
//!   by route count (4, 10, 30), with the encoder's cache **cold** (every
//!   turn of every decision is new text: all of it is encoded) and **warm**
//!   (the history was seen before, as on a session's next turn: only the
//!   new turn is encoded);
//! - concurrent decisions (1, 4, 16 threads, warm), which the encoder
//!   batches into shared forward passes: per-decision latency and
//!   decisions per second;
//! - encoder throughput in tokens per second at batch 1, 8 and 32;
//! - the warm new turn after an idle gap (0, 10, 50, 200 ms), as a node
//!   sees it at low request rates, when the CPU had time to go quiet.
//!
//! `SWITCHYARD_BENCH_DECISIONS` sets the decisions per cell (30);
//! `SWITCHYARD_BENCH_PRECISION` the CPU encoder's precision (`int8`, the
//! node's default, or `f32`);
//! `SWITCHYARD_BENCH_PARTS` picks parts, comma-separated, from `grid`,
//! `concurrent`, `throughput` and `idle` (all by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark binary")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_classifier::{Classifier, ClassifierSpec, RouteSpec, build_sharing};
use switchyard_encoder::{Encoder, EncoderSettings, Precision};
use switchyard_types::{Conversation, Role, Turn};

/// The node's allocator (crates/switchyard/src/main.rs), so the figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Thirty plain-language task descriptions, as operators write them.
const TASKS: [(&str, &str); 30] = [
    ("code_generation", "New code from a specification - functions, classes, scripts, modules, programs"),
    ("debugging", "Bugs, errors, exceptions, stack traces, crashes and failing tests - diagnosis and fixes"),
    ("code_review", "Code review of a diff or pull request - correctness, readability, security"),
    ("databases", "SQL queries, database schemas, indexes and migrations"),
    ("devops", "Docker, Kubernetes, CI pipelines, cloud deployment and shell commands"),
    ("documentation", "Docstrings, READMEs, API references and explanations of code"),
    ("architecture", "Software architecture, system design, scalability and trade-offs"),
    ("translation", "Translation of text between natural languages"),
    ("summarization", "Summaries of articles, meetings, papers and long documents"),
    ("math", "Arithmetic, algebra, calculus, probability and statistics problems"),
    ("travel", "Flights, hotels, trains and trip itineraries"),
    ("restaurants", "Restaurant recommendations, table reservations and menus"),
    ("weather", "Weather forecasts and current conditions for a place"),
    ("banking", "Bank accounts, balances, transfers, cards and payments"),
    ("calendar", "Meetings, events, reminders and scheduling"),
    ("music", "Songs, artists, playlists and playing music"),
    ("movies", "Films, showtimes, cinema tickets and reviews"),
    ("shopping", "Products, prices, orders, deliveries and returns"),
    ("health", "Symptoms, medications, appointments with doctors"),
    ("legal", "Contracts, terms, regulations and legal questions"),
    ("marketing", "Marketing copy, slogans, campaigns and ad text"),
    ("email", "Drafting and replying to emails and letters"),
    ("data_analysis", "Analysis of datasets, spreadsheets, charts and trends"),
    ("security", "Vulnerabilities, threat models, authentication and encryption"),
    ("frontend", "HTML, CSS, React components and browser user interfaces"),
    ("mobile", "iOS and Android apps, Swift and Kotlin"),
    ("machine_learning", "Training models, features, evaluation metrics and datasets"),
    ("education", "Explaining concepts to a student, lessons and quizzes"),
    ("creative_writing", "Stories, poems, song lyrics and fiction"),
    ("customer_support", "Complaints, refunds and help with an account or order"),
];

fn routes(count: usize) -> Vec<RouteSpec> {
    TASKS[..count]
        .iter()
        .map(|(name, description)| RouteSpec {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
        })
        .collect()
}

/// A conversation of `turns` turns (alternating, ending with the user's),
/// its texts made unique by `tag` so that a new tag misses the cache.
fn conversation(turns: usize, tag: &str, last: &str) -> Conversation {
    let lines = [
        "Our checkout service started returning 500 errors after the last deploy.",
        "Can you share the stack trace from the logs?",
        "Here it is: NullPointerException at OrderService.java line 88 in applyDiscount.",
        "The discount object is null when the coupon code is empty; add a guard.",
    ];
    let mut turns: Vec<Turn> = (0..turns - 1)
        .map(|i| Turn {
            role: if i % 2 == 0 { Role::User } else { Role::Assistant },
            text: format!("{} ({tag}, turn {i})", lines[i % lines.len()]),
        })
        .collect();
    turns.push(Turn {
        role: Role::User,
        text: last.to_owned(),
    });
    Conversation { turns }
}

/// A new user turn, unique per `tag` and `i`: never in the cache.
fn new_turn(tag: &str, i: usize) -> String {
    format!("Test {i} ({tag}) of the payments suite fails with an assertion error on the refund total after the retry; what should I check first?")
}

fn main() {
    let decisions: usize = std::env::var("SWITCHYARD_BENCH_DECISIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let precision: Precision = std::env::var("SWITCHYARD_BENCH_PRECISION")
        .ok()
        .map_or(Ok(Precision::default()), |p| p.parse())
        .unwrap_or_else(|err: String| panic!("SWITCHYARD_BENCH_PRECISION: {err}"));
    let settings = EncoderSettings {
        model_dir: repo("models/cache/all-minilm-l6-v2"),
        precision,
        ..EncoderSettings::default()
    };
    let parts = std::env::var("SWITCHYARD_BENCH_PARTS").unwrap_or_else(|_| "grid,concurrent,throughput,idle".to_owned());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let mut shared: Option<Arc<Encoder>> = None;
    println!(
        "decision latency, CPU: encoder {} (rten kernels), moe head on burn flex; node settings; {decisions} decisions per cell",
        precision.as_str()
    );
    for kind in ["moe", "embedding"] {
        let spec = ClassifierSpec {
            encoder: settings.clone(),
            head_dir: repo("models/moe-router"),
            ..ClassifierSpec::new(kind, None)
        };
        let classifier = build_sharing(&spec, &mut shared).unwrap();
        if part("idle") && kind == "moe" {
            idle_gaps(classifier.as_ref(), decisions);
        }
        if part("grid") {
            grid(classifier.as_ref(), kind, decisions);
        }
        if part("concurrent") {
            concurrent(classifier.as_ref(), kind, decisions);
        }
    }
    if part("throughput") {
        throughput(&shared.expect("the encoder was loaded"), decisions);
    }
}

/// The warm new turn (6 turns, 10 routes) after an idle gap.
fn idle_gaps(classifier: &dyn Classifier, decisions: usize) {
    let index = classifier.prepare(&routes(10)).unwrap();
    let history = "idle-gaps";
    index.classify(&conversation(6, history, "warming the history")).unwrap();
    println!("\nmoe: warm new turn after an idle gap (6 turns, 10 routes)");
    println!("| idle gap ms | p50 ms | p99 ms |");
    println!("|---:|---:|---:|");
    for gap in [0, 10, 50, 200] {
        let mut samples: Vec<Duration> = (0..decisions)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(gap));
                let conversation = conversation(6, history, &new_turn(&format!("{history}-{gap}"), i));
                let started = Instant::now();
                std::hint::black_box(index.classify(&conversation).unwrap());
                started.elapsed()
            })
            .collect();
        samples.sort();
        println!("| {gap} | {:.2} | {:.2} |", ms(percentile(&samples, 0.5)), ms(percentile(&samples, 0.99)));
    }
}

/// Decision latency by conversation length and route count, cold and warm.
fn grid(classifier: &dyn Classifier, kind: &str, decisions: usize) {
    println!("\n{kind}: p50 / p99 ms per decision");
    println!("| turns | routes | cold p50 | cold p99 | warm p50 | warm p99 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for turns in [1, 6, 20] {
        for route_count in [4, 10, 30] {
            let index = classifier.prepare(&routes(route_count)).unwrap();
            // Warm-up: the first pass at a shape costs more.
            index.classify(&conversation(turns, "warm-up", "hello")).unwrap();
            let mut cold: Vec<Duration> = (0..decisions)
                .map(|i| {
                    let tag = format!("{kind}-{turns}-{route_count}-cold-{i}");
                    let conversation = conversation(turns, &tag, &new_turn(&tag, i));
                    let started = Instant::now();
                    std::hint::black_box(index.classify(&conversation).unwrap());
                    started.elapsed()
                })
                .collect();
            let history = format!("{kind}-{turns}-{route_count}-warm");
            index.classify(&conversation(turns, &history, "warming the history")).unwrap();
            let mut warm: Vec<Duration> = (0..decisions)
                .map(|i| {
                    let conversation = conversation(turns, &history, &new_turn(&history, i));
                    let started = Instant::now();
                    std::hint::black_box(index.classify(&conversation).unwrap());
                    started.elapsed()
                })
                .collect();
            cold.sort();
            warm.sort();
            println!(
                "| {turns} | {route_count} | {:.2} | {:.2} | {:.2} | {:.2} |",
                ms(percentile(&cold, 0.5)),
                ms(percentile(&cold, 0.99)),
                ms(percentile(&warm, 0.5)),
                ms(percentile(&warm, 0.99)),
            );
        }
    }
}

/// Concurrent decisions: the encoder batches the new turns of decisions
/// that arrive together into one forward pass.
fn concurrent(classifier: &dyn Classifier, kind: &str, decisions: usize) {
    let index = classifier.prepare(&routes(10)).unwrap();
    let history = format!("{kind}-concurrent");
    index.classify(&conversation(6, &history, "warming the history")).unwrap();
    println!("\n{kind}: concurrent decisions (6 turns, 10 routes, warm)");
    println!("| threads | p50 ms | p99 ms | decisions/s |");
    println!("|---:|---:|---:|---:|");
    for threads in [1, 4, 16] {
        let per_thread = decisions.max(threads * 4) / threads;
        let started = Instant::now();
        let mut samples: Vec<Duration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (index, history) = (Arc::clone(&index), history.clone());
                    scope.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let conversation = conversation(6, &history, &new_turn(&format!("{history}-{threads}-{t}"), i));
                                let started = Instant::now();
                                std::hint::black_box(index.classify(&conversation).unwrap());
                                started.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|handle| handle.join().unwrap()).collect()
        });
        let elapsed = started.elapsed();
        samples.sort();
        println!(
            "| {threads} | {:.2} | {:.2} | {:.0} |",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99)),
            samples.len() as f64 / elapsed.as_secs_f64(),
        );
    }
}

/// Encoder throughput: unique 30-token texts, `batch` per call.
fn throughput(encoder: &Encoder, decisions: usize) {
    println!("\nencoder throughput (unique texts, no cache hits)");
    println!("| batch | tokens per text | tokens/s | ms per call |");
    println!("|---:|---:|---:|---:|");
    for batch in [1, 8, 32] {
        let calls = (decisions * 4 / batch).max(3);
        let mut tokens = 0usize;
        let mut per_call = Vec::with_capacity(calls);
        let started = Instant::now();
        for call in 0..calls {
            let texts: Vec<String> = (0..batch).map(|i| new_turn(&format!("throughput {batch}-{call}"), i)).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            tokens += refs.iter().map(|text| encoder.count_tokens(text).unwrap()).sum::<usize>();
            let call_started = Instant::now();
            std::hint::black_box(encoder.embed(&refs).unwrap());
            per_call.push(call_started.elapsed());
        }
        let elapsed = started.elapsed();
        per_call.sort();
        println!(
            "| {batch} | {} | {:.0} | {:.2} |",
            tokens / (calls * batch),
            tokens as f64 / elapsed.as_secs_f64(),
            ms(percentile(&per_call, 0.5)),
        );
    }
}
