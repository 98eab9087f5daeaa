//! The sentence encoder behind the learned classifiers.
//!
//! Sits inside the classifier stage: it turns messages and route
//! descriptions into 384-dimensional unit vectors with all-MiniLM-L6-v2:
//! on the CPU (the default) in plain Rust over rten's kernels, 8-bit by
//! default; on an NVIDIA GPU (the `cuda` feature) in burn.
//!
//! # Layout
//! - [`files`]: finding and checksumming the weights fetched by `models/fetch.sh`.
//! - [`tokenize`]: the model's own tokenizer, and truncation that keeps a
//!   long message's start and end.
//! - [`cpu`]: the encoder on the CPU (int8 or f32 products).
//! - [`minilm`]: the encoder in burn: the GPU path, and the reference the
//!   CPU path is tested against.
//! - [`batcher`]: the encoder thread, batching jobs that arrive together.
//! - [`Encoder`]: the facade the classifier uses, with a bounded LRU of
//!   embeddings keyed by content hash, so a conversation's next turn encodes
//!   only its new message.

pub mod batcher;
pub mod cpu;
pub mod files;
pub mod minilm;
pub mod tokenize;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;

pub use batcher::{BatchModel, Batcher};
pub use cpu::{CpuMiniLm, Precision};
pub use files::{DEFAULT_MODEL_DIR, EncoderFiles, FETCH_COMMAND};
pub use minilm::{HIDDEN, MiniLm, ShapeLimit};
pub use tokenize::{TextTokenizer, keep_head_and_tail, recent_turns_within};

/// burn's CPU backend, for [`MiniLm`] on the CPU (tests and benchmarks:
/// the node's CPU encoder is [`CpuMiniLm`]). `flex` measured faster than
/// `ndarray`, and as fast as `ndarray` with OpenBLAS, which would need a
/// system library (README, "Encoder benchmark").
pub type CpuBackend = burn::backend::Flex<f32>;

/// How many blocks each layer of burn's encoder is cut into on the CPU
/// ([`MiniLm::load_in_blocks`]); the setting the node used before
/// [`CpuMiniLm`], kept for the benchmark that compares them.
///
/// burn's CPU matmul keeps a small product on one core, and the products of
/// one message (a few dozen rows) are small. Cut into blocks that rayon
/// spreads over the cores, with GELU and attention inside each block, a
/// 32-token pass measured 15.8 → 11.1 ms and a 128-token pass 42.6 → 27.7 ms
/// on 2 cores (README, "Encoder benchmark"). More blocks than cores lets
/// rayon balance them.
pub fn cpu_weight_blocks() -> usize {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    (threads * 4).clamp(4, 16)
}

/// Why the encoder could not load or encode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EncoderError {
    #[error("encoder file {path} is missing ({reason}); run `{FETCH_COMMAND}` to fetch it", path = path.display())]
    MissingFile { path: PathBuf, reason: String },
    #[error("encoder file {path} does not match its pinned sha256 (expected {expected}, found {actual}); run `{FETCH_COMMAND}` to fetch it again", path = path.display())]
    CorruptFile {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("encoder weights: {0}")]
    Weights(String),
    #[error("encoder computation: {0}")]
    Compute(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("a sequence of {tokens} tokens exceeds the encoder's 512 positions")]
    TooLong { tokens: usize },
    #[error("this build has no CUDA support; build with `--features cuda`")]
    NoCuda,
    #[error("cannot start the encoder thread: {0}")]
    Thread(String),
    #[error("the encoder thread has stopped")]
    Stopped,
}

/// Where the encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The first NVIDIA GPU (needs the `cuda` feature).
    Cuda,
}

/// How the encoder is loaded and fed.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    pub model_dir: PathBuf,
    pub device: Device,
    /// Most sequences in one forward pass.
    pub max_batch: usize,
    /// How long the first job of a batch waits for company.
    pub max_wait: Duration,
    /// Embeddings kept in the LRU.
    pub cache_entries: usize,
    /// Longest model input per message, `[CLS]` and `[SEP]` included
    /// (all-MiniLM-L6-v2 was trained on 256).
    pub max_message_tokens: usize,
    /// How the CPU encoder multiplies (the GPU always runs f32).
    pub precision: Precision,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            device: Device::Cpu,
            max_batch: 16,
            max_wait: Duration::from_millis(2),
            cache_entries: 20_000,
            max_message_tokens: 256,
            precision: Precision::default(),
        }
    }
}

impl<B: burn::tensor::backend::Backend> BatchModel for MiniLm<B> {
    fn encode_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        self.encode(batch)
    }

    fn warm_up(&self) -> Result<usize, EncoderError> {
        MiniLm::warm_up(self)
    }
}

/// Cache counters, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// An embedding, shared between the cache and its readers.
pub type Embedding = Arc<[f32]>;

/// Texts in, unit vectors out: cached, batched, off the async runtime.
pub struct Encoder {
    tokenizer: TextTokenizer,
    batcher: Batcher,
    cache: Mutex<LruCache<u64, Embedding>>,
    /// Token counts of whole messages, for the context budget: without
    /// them every request would re-tokenize its whole history only to count.
    counts: Mutex<LruCache<u64, usize>>,
    max_message_tokens: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("max_message_tokens", &self.max_message_tokens)
            .field("cache", &self.cache_stats())
            .finish()
    }
}

/// The cache key of a text: a 64-bit hash of its content and of the
/// truncation it is encoded with.
fn key(text: &str, max_tokens: usize) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    max_tokens.hash(&mut hasher);
    hasher.finish()
}

impl Encoder {
    /// Checks and loads the files, then starts the encoder thread.
    pub fn load(settings: &EncoderSettings) -> Result<Encoder, EncoderError> {
        let files = EncoderFiles::load(&settings.model_dir)?;
        let tokenizer = TextTokenizer::from_file(&files.tokenizer_path)?;
        let batcher = match settings.device {
            Device::Cpu => {
                // Its kernels stay on one thread: built on the encoder's.
                let precision = settings.precision;
                let weights = files.model;
                let build = move || {
                    let model = CpuMiniLm::load(&weights, precision)?;
                    tracing::info!(precision = precision.as_str(), kernels = %model.kernels(), "CPU encoder loaded");
                    Ok(model)
                };
                Batcher::start_with(build, settings.max_batch, settings.max_wait)?
            }
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                let device = burn::backend::cuda::CudaDevice::default();
                // Kernels compile per input shape on CUDA: pad to a few
                // shapes and compile them all before the first request.
                let model = MiniLm::<burn::backend::Cuda<f32>>::load(&files.model, &device)?.with_shape_buckets(
                    ShapeLimit {
                        rows: settings.max_batch,
                        tokens: settings.max_message_tokens,
                    },
                );
                Batcher::start(model, settings.max_batch, settings.max_wait)?
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => return Err(EncoderError::NoCuda),
        };
        let capacity = NonZeroUsize::new(settings.cache_entries).unwrap_or(NonZeroUsize::MIN);
        Ok(Encoder {
            tokenizer,
            batcher,
            cache: Mutex::new(LruCache::new(capacity)),
            counts: Mutex::new(LruCache::new(capacity)),
            max_message_tokens: settings.max_message_tokens,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token count of `text` without special tokens, cached by content.
    pub fn count_tokens(&self, text: &str) -> Result<usize, EncoderError> {
        let key = key(text, usize::MAX);
        let lock = || self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&count) = lock().get(&key) {
            return Ok(count);
        }
        let count = self.tokenizer.ids(text)?.len();
        lock().put(key, count);
        Ok(count)
    }

    fn cached(&self, key: u64) -> Option<Embedding> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(&key).cloned()
    }

    /// Embeds `texts`, encoding only those not in the cache. Blocking: call
    /// from a blocking thread, never from async code.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EncoderError> {
        let keys: Vec<u64> = texts
            .iter()
            .map(|text| key(text, self.max_message_tokens))
            .collect();
        let mut found: HashMap<u64, Embedding> = HashMap::with_capacity(texts.len());
        let mut missing: Vec<(u64, &str)> = Vec::new();
        for (&key, &text) in keys.iter().zip(texts) {
            if found.contains_key(&key) || missing.iter().any(|(k, _)| *k == key) {
                continue;
            }
            match self.cached(key) {
                Some(embedding) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    found.insert(key, embedding);
                }
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    missing.push((key, text));
                }
            }
        }
        if !missing.is_empty() {
            let inputs = missing
                .iter()
                .map(|(_, text)| self.tokenizer.model_input(text, self.max_message_tokens))
                .collect::<Result<Vec<_>, _>>()?;
            let vectors = self.batcher.submit(inputs)?.wait()?;
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((key, _), vector) in missing.into_iter().zip(vectors) {
                let embedding: Embedding = vector.into();
                cache.put(key, Arc::clone(&embedding));
                found.insert(key, embedding);
            }
        }
        keys.iter()
            .map(|key| found.get(key).cloned().ok_or(EncoderError::Stopped))
            .collect()
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
