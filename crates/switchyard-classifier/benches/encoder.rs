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
use burn::tensor::{Distribution, Tensor};
use switchyard_classifier::{Classifier, EmbeddingClassifier, RouteSpec};
use switchyard_encoder::{CpuBackend, Device, Encoder, EncoderFiles, EncoderSettings, MiniLm, TextTokenizer, cpu_weight_blocks};
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

/// The forward pass's matmuls alone, same shapes, random data made once
/// outside the timing. Each layer has its own weights, as in the model: at
/// small inputs the cost is streaming 42 MB of weights through the cache,
/// and one shared set would sit in cache and flatter the floor.
struct Matmuls<Bk: Backend> {
    x: Tensor<Bk, 2>,
    layers: Vec<[Tensor<Bk, 2>; 4]>,
    heads: Tensor<Bk, 4>,
}

impl<Bk: Backend> Matmuls<Bk> {
    fn new(batch: usize, seq: usize, device: &Bk::Device) -> Self {
        let random = |shape: [usize; 2]| Tensor::<Bk, 2>::random(shape, Distribution::Default, device);
        Matmuls {
            x: random([batch * seq, HIDDEN]),
            layers: (0..LAYERS)
                .map(|_| {
                    [
                        random([HIDDEN, 3 * HIDDEN]),
                        random([HIDDEN, HIDDEN]),
                        random([HIDDEN, FFN]),
                        random([FFN, HIDDEN]),
                    ]
                })
                .collect(),
            heads: Tensor::random([batch, 12, seq, 32], Distribution::Default, device),
        }
    }

    fn run(&self) -> Vec<Tensor<Bk, 2>> {
        let mut outputs = Vec::with_capacity(4 * LAYERS);
        for [qkv, out, up, down] in &self.layers {
            outputs.push(self.x.clone().matmul(qkv.clone()));
            outputs.push(self.x.clone().matmul(out.clone()));
            outputs.push(self.x.clone().matmul(up.clone()).matmul(down.clone()));
            let scores = self.heads.clone().matmul(self.heads.clone().swap_dims(2, 3));
            let context = scores.matmul(self.heads.clone());
            outputs.push(context.reshape([0, -1]).slice([0..1, 0..1]));
        }
        // Reading one value forces lazy backends to finish the work.
        for output in &outputs {
            std::hint::black_box(output.clone().slice([0..1, 0..1]).into_data());
        }
        outputs
    }
}

fn forward_table<Bk: Backend>(name: &str, blocks: usize, files: &EncoderFiles, words: &[u32]) {
    let device = Default::default();
    let model = MiniLm::<Bk>::load_in_blocks(&files.model, &device, blocks).unwrap();
    println!("backend {name}:");
    println!(
        "{:>6} {:>6} {:>12} {:>12} {:>14} {:>16} {:>8}",
        "batch", "tokens", "median ms", "tokens/s", "model GFLOP/s", "matmul GFLOP/s", "ratio"
    );
    for batch in [1usize, 8] {
        for seq in [8usize, 32, 128, 256] {
            let sequence: Vec<u32> = words.iter().copied().cycle().take(seq).collect();
            let inputs = vec![sequence; batch];
            let runs = if batch * seq >= 1024 { 5 } else { 15 };
            let forward = time(runs, || model.encode(&inputs).unwrap());
            let matmuls = Matmuls::<Bk>::new(batch, seq, &device);
            let matmul = time(runs, || matmuls.run());
            let flops = forward_flops(seq) * batch as f64;
            let model_gflops = flops / forward.as_secs_f64() / 1e9;
            let matmul_gflops = flops / matmul.as_secs_f64() / 1e9;
            println!(
                "{batch:>6} {seq:>6} {:>12.2} {:>12.0} {:>14.1} {:>16.1} {:>8.2}",
                forward.as_secs_f64() * 1e3,
                (batch * seq) as f64 / forward.as_secs_f64(),
                model_gflops,
                matmul_gflops,
                model_gflops / matmul_gflops,
            );
        }
    }
    println!();
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
            // Whole weights and weights in column blocks, side by side in
            // one run: the machine is shared and noisy.
            let blocks = std::env::var("SWITCHYARD_BENCH_BLOCKS").ok().and_then(|b| b.parse().ok()).unwrap_or_else(cpu_weight_blocks);
            forward_table::<CpuBackend>("flex, whole weights", 1, &files, &words);
            forward_table::<CpuBackend>(
                &format!("flex, layers in {blocks} parallel blocks (the node's CPU setting)"),
                blocks,
                &files,
                &words,
            );
        }
        if decision {
            cached_decision("flex, whole weights", Some(1), &dir, Device::Cpu, &tokenizer);
            cached_decision("flex, node setting", None, &dir, Device::Cpu, &tokenizer);
        }
    }
    #[cfg(feature = "cuda")]
    if backends.split(',').any(|b| b == "cuda") {
        if forward {
            forward_table::<burn::backend::Cuda<f32>>("cuda (first NVIDIA GPU)", 1, &files, &words);
        }
        if decision {
            cached_decision("cuda", None, &dir, Device::Cuda, &tokenizer);
        }
    }
}

/// One decision on a conversation whose history is cached: only the new
/// turn goes through the encoder.
fn cached_decision(
    label: &str,
    weight_blocks: Option<usize>,
    dir: &std::path::Path,
    device: Device,
    tokenizer: &TextTokenizer,
) {
    let encoder = Arc::new(
        Encoder::load(&EncoderSettings {
            model_dir: dir.to_path_buf(),
            device,
            weight_blocks,
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
