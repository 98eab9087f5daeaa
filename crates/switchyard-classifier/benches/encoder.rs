//! Encoder and embedding-classifier benchmark; prints figures, asserts nothing.
//!
//!   cargo bench -p switchyard-classifier --bench encoder
//!
//! Needs the encoder files (`models/fetch.sh`). Reports, on this machine's
//! CPU backend:
//! - forward-pass latency (median) for 8/32/128/256-token messages at batch
//!   1 and 8, tokens/s, and achieved GFLOP/s beside the same matmuls run
//!   alone (the compute floor of the forward pass);
//! - one cached-conversation decision (6 turns, 10 routes, only the new turn
//!   encoded), p50 and p99.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark binary")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use switchyard_classifier::{Classifier, EmbeddingClassifier, RouteSpec};
use switchyard_encoder::{
    CpuBackend, CpuMiniLm, Device, Encoder, EncoderFiles, EncoderSettings, MiniLm, Precision, TextTokenizer,
    cpu_weight_blocks,
};
use switchyard_types::{Conversation, Role, Turn};

const HIDDEN: usize = 384;
const FFN: usize = 1536;
const LAYERS: usize = 6;

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_ENCODER_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache/all-minilm-l6-v2"),
        PathBuf::from,
    )
}

/// Floating-point operations of one forward pass over `seq` tokens.
fn forward_flops(seq: usize) -> f64 {
    let s = seq as f64;
    let h = HIDDEN as f64;
    let dense = 2.0 * s * (h * 3.0 * h + h * h + 2.0 * h * FFN as f64);
    let attention = 4.0 * s * s * h;
    LAYERS as f64 * (dense + attention)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect(),
    )
}

fn forward_table(name: &str, words: &[u32], encode: impl Fn(&[Vec<u32>]) -> Vec<Vec<f32>>) {
    println!("{name}:");
    println!(
        "{:>6} {:>6} {:>12} {:>12} {:>14}",
        "batch", "tokens", "median ms", "tokens/s", "model GFLOP/s"
    );
    for batch in [1usize, 8] {
        for seq in [8usize, 32, 128, 256] {
            let sequence: Vec<u32> = words.iter().copied().cycle().take(seq).collect();
            let inputs = vec![sequence; batch];
            let runs = if batch * seq >= 1024 { 5 } else { 15 };
            let forward = time(runs, || encode(&inputs));
            let flops = forward_flops(seq) * batch as f64;
            println!(
                "{batch:>6} {seq:>6} {:>12.2} {:>12.0} {:>14.1}",
                forward.as_secs_f64() * 1e3,
                (batch * seq) as f64 / forward.as_secs_f64(),
                flops / forward.as_secs_f64() / 1e9,
            );
        }
    }
    println!();
}

fn burn_table<Bk: Backend>(name: &str, blocks: usize, files: &EncoderFiles, words: &[u32]) {
    let model = MiniLm::<Bk>::load_in_blocks(&files.model, &Default::default(), blocks).unwrap();
    forward_table(name, words, |inputs| model.encode(inputs).unwrap());
}

fn cpu_table(name: &str, precision: Precision, files: &EncoderFiles, words: &[u32]) {
    // On a thread of its own, as in the node: the thread that loads the
    // model becomes its one-thread pool for small passes, and burn's tables
    // on this thread would then run on one core.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let model = CpuMiniLm::load(&files.model, precision).unwrap();
            forward_table(&format!("{name} [{}]", model.kernels()), words, |inputs| model.encode(inputs).unwrap());
        });
    });
}

fn main() {
    let dir = model_dir();
    let files = EncoderFiles::load(&dir).unwrap_or_else(|err| panic!("{err}"));
    let tokenizer = TextTokenizer::from_file(&files.tokenizer_path).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("encoder benchmark: all-MiniLM-L6-v2, {threads} hardware threads, medians");
    println!();
    let text = "The service fails with a timeout when the database connection pool is exhausted \
                after the nightly batch job starts and every worker retries at the same time";
    let words = tokenizer.ids(&text.repeat(8)).unwrap();
    // `SWITCHYARD_BENCH_BACKENDS=cuda` measures only the GPU (a build with
    // `--features cuda`); both run by default where both are built.
    let backends = std::env::var("SWITCHYARD_BENCH_BACKENDS").unwrap_or_else(|_| "cpu,cuda".to_owned());
    let cpu = backends.split(',').any(|b| b == "cpu");
    // `SWITCHYARD_BENCH_PARTS=decision` skips the forward-pass tables.
    let parts = std::env::var("SWITCHYARD_BENCH_PARTS").unwrap_or_else(|_| "forward,decision".to_owned());
    let forward = parts.split(',').any(|p| p == "forward");
    let decision = parts.split(',').any(|p| p == "decision");
    if cpu {
        if forward {
            let blocks = std::env::var("SWITCHYARD_BENCH_BLOCKS").ok().and_then(|b| b.parse().ok()).unwrap_or_else(cpu_weight_blocks);
            cpu_table("cpu encoder, int8 (the node's default)", Precision::Int8, &files, &words);
            cpu_table("cpu encoder, f32", Precision::F32, &files, &words);
            burn_table::<CpuBackend>(&format!("burn flex, layers in {blocks} parallel blocks"), blocks, &files, &words);
            burn_table::<CpuBackend>("burn flex, whole layers", 1, &files, &words);
        }
        if decision {
            cached_decision("cpu int8", Precision::Int8, &dir, Device::Cpu, &tokenizer);
            cached_decision("cpu f32", Precision::F32, &dir, Device::Cpu, &tokenizer);
        }
    }
    #[cfg(feature = "cuda")]
    if backends.split(',').any(|b| b == "cuda") {
        if forward {
            burn_table::<burn::backend::Cuda<f32>>("burn cuda (first NVIDIA GPU)", 1, &files, &words);
        }
        if decision {
            cached_decision("cuda", Precision::F32, &dir, Device::Cuda, &tokenizer);
        }
    }
}

/// One decision on a conversation whose history is cached: only the new
/// turn goes through the encoder.
fn cached_decision(
    label: &str,
    precision: Precision,
    dir: &std::path::Path,
    device: Device,
    tokenizer: &TextTokenizer,
) {
    let encoder = Arc::new(
        Encoder::load(&EncoderSettings {
            model_dir: dir.to_path_buf(),
            device,
            precision,
            ..EncoderSettings::default()
        })
        .unwrap(),
    );
    let classifier = EmbeddingClassifier::new(Arc::clone(&encoder), 1.0, 512);
    let routes: Vec<RouteSpec> = [
        ("code_generation", "New code from a specification - functions, classes, scripts"),
        ("debugging", "Bugs, errors, exceptions, stack traces and crashes"),
        ("code_review", "Code review of a diff or pull request"),
        ("architecture", "Software architecture and system design"),
        ("databases", "SQL queries, schemas, indexes and migrations"),
        ("devops", "Docker, Kubernetes, CI pipelines and cloud deployment"),
        ("documentation", "Docstrings, READMEs and explanations of code"),
        ("translation", "Translation of text between languages"),
        ("summarization", "Summaries of articles, meetings and documents"),
        ("math", "Arithmetic, algebra, calculus and statistics"),
    ]
    .into_iter()
    .map(|(name, description)| RouteSpec {
        name: name.to_owned(),
        description: description.to_owned(),
    })
    .collect();
    let index = classifier.prepare(&routes).unwrap();
    let history = [
        (Role::User, "Our checkout service started returning 500 errors after the last deploy."),
        (Role::Assistant, "Can you share the stack trace from the logs?"),
        (Role::User, "Here it is: NullPointerException at OrderService.java line 88 in applyDiscount."),
        (Role::Assistant, "The discount object is null when the coupon code is empty; add a guard."),
        (Role::User, "That fixed it locally. The integration tests still fail though."),
    ];
    let conversation = |last: String| Conversation {
        turns: history
            .iter()
            .map(|(role, text)| Turn {
                role: *role,
                text: (*text).to_owned(),
            })
            .chain(std::iter::once(Turn {
                role: Role::User,
                text: last,
            }))
            .collect(),
    };
    // Warm the cache with the history.
    index.classify(&conversation("warm up".to_owned())).unwrap();
    let new_turn = |i: usize| {
        format!(
            "Test number {i} in the payments suite fails with an assertion error on the refund total \
             after the retry; what should I check first?"
        )
    };
    let tokens = tokenizer.ids(&new_turn(1000)).unwrap().len() + 2;
    // More decisions (`SWITCHYARD_BENCH_DECISIONS`) make a steadier profile.
    let decisions = std::env::var("SWITCHYARD_BENCH_DECISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60usize);
    let mut samples: Vec<Duration> = (0..decisions)
        .map(|i| {
            let conversation = conversation(new_turn(i));
            let started = Instant::now();
            std::hint::black_box(index.classify(&conversation).unwrap());
            started.elapsed()
        })
        .collect();
    samples.sort();
    let stats = encoder.cache_stats();
    println!(
        "{label}: cached decision (6 turns, 10 routes, new turn of {tokens} tokens): p50 {:.2} ms, p99 {:.2} ms over {} decisions (cache hits {}, misses {})",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.len(),
        stats.hits,
        stats.misses,
    );
}
