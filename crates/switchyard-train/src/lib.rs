//! `switchyard train`: trains the `moe` classifier's head.
//!
//! Off the request path: it reads the shared datasets' `train` and `dev`
//! splits and our corpus (`corpus/`), embeds every text once with the
//! node's own encoder (kept in an on-disk store so later runs encode only
//! new texts), trains the head on burn's autodiff CPU backend, keeps the
//! epoch that scores best on the in-distribution dev sets, and writes
//! `head.json`, `head.mpk` and `MODEL_CARD.md` for the node to load.
//! Seeded: the same inputs and seed give the same head.
//!
//! - [`data`]: which cases train and which measure.
//! - [`store`]: the encoder-output cache.
//! - [`fit`]: examples, the training loop, dev figures.
//! - [`card`]: the model card.

pub mod card;
pub mod data;
pub mod fit;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::config::Config;
use burn::module::Module;
use indicatif::{ProgressBar, ProgressStyle};
use switchyard_classifier::moe::{self, CpuBackend, MoeHead, MoeHeadConfig};
use switchyard_encoder::{Encoder, EncoderSettings, Precision};
use switchyard_eval::Case;

pub use data::{Sizes, TrainingData};
pub use fit::{DevResult, FitSettings, Prepared};

use crate::fit::Counter;
use crate::store::EmbeddingStore;

/// Why training could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Eval(#[from] switchyard_eval::EvalError),
    #[error(transparent)]
    Encoder(#[from] switchyard_encoder::EncoderError),
    #[error(transparent)]
    Classifier(#[from] switchyard_classifier::ClassifierError),
    #[error("embedding store: {0}")]
    Store(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("text was not embedded before training: {0:.80}")]
    NotEmbedded(String),
    #[error("no training data")]
    NoData,
    #[error("cannot save the head: {0}")]
    Save(String),
}

/// What to train and where things are.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The shared datasets (`sgd/`, `clinc150/`, `natinst/`).
    pub datasets: PathBuf,
    pub corpus: PathBuf,
    /// Where the head and its card are written.
    pub out: PathBuf,
    pub encoder_dir: PathBuf,
    /// The encoder-output cache.
    pub store: PathBuf,
    pub sizes: Sizes,
    pub head: MoeHeadConfig,
    pub fit: FitSettings,
    /// Also train the dense twin (one expert of the same active size) and
    /// report both on the dev sets.
    pub ablation: bool,
}

/// Everything the card reports.
#[derive(Debug)]
pub struct TrainSummary {
    pub options: TrainOptions,
    pub train_cases: usize,
    pub train_by_source: Vec<(String, usize)>,
    pub texts_embedded: usize,
    pub encode_time: Duration,
    pub train_time: Duration,
    pub best_epoch: usize,
    pub params: (usize, usize),
    pub dev_seen: DevResult,
    pub dev_unseen: DevResult,
    pub shared_dev: DevResult,
    /// The dense twin: parameters, dev-seen and dev-unseen figures.
    pub dense: Option<((usize, usize), DevResult, DevResult)>,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} ({{per_sec}}, eta {{eta}}) {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Prepares cases, skipping those without a user turn.
fn prepare_all(
    cases: &[Case],
    slots: usize,
    store: &EmbeddingStore,
    counter: &mut Counter<'_>,
) -> Result<Vec<Option<Prepared>>, TrainError> {
    cases.iter().map(|case| fit::prepare(case, slots, store, counter)).collect()
}

/// Trains one head and measures it on the dev sets.
fn train_head(
    config: &MoeHeadConfig,
    options: &TrainOptions,
    data: &TrainingData,
    store: &EmbeddingStore,
    counter: &mut Counter<'_>,
    selection: &[(&[Case], &[Option<Prepared>])],
    label: &str,
) -> Result<(MoeHead<CpuBackend>, usize), TrainError> {
    let slots = config.turn_slots;
    let progress = bar(0, label);
    let head = fit::fit(
        config,
        &options.fit,
        |epoch| {
            let cases = data.epoch_cases(options.fit.seed, epoch);
            Ok(prepare_all(&cases, slots, store, counter)?.into_iter().flatten().collect())
        },
        |epoch, head| {
            let mut sum = 0.0;
            for (cases, prepared) in selection {
                sum += fit::evaluate(head, config, cases, prepared, 0.0).moe.accuracy;
            }
            let score = sum / selection.len().max(1) as f64;
            progress.println(format!("{label}: epoch {} dev accuracy {:.2}%", epoch + 1, score * 100.0));
            score
        },
        |epoch, step, steps, s| {
            if step == 1 {
                progress.set_length(steps as u64);
                progress.set_position(0);
            }
            progress.inc(1);
            if step % 20 == 0 {
                progress.set_message(format!("epoch {}/{} loss {:.4}", epoch + 1, options.fit.epochs, s.loss));
            }
        },
    )?;
    progress.finish_and_clear();
    Ok(head)
}

/// Biases of the `other` logit tried by [`calibrate`].
const OTHER_BIASES: [f32; 11] = [-4.0, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0];

/// The `other` bias with the best mean accuracy on the selection dev sets:
/// `other` calibrated after training, on dev data only.
fn calibrate(
    head: &MoeHead<CpuBackend>,
    config: &MoeHeadConfig,
    selection: &[(&[Case], &[Option<Prepared>])],
) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.0);
    for bias in OTHER_BIASES {
        let score = selection
            .iter()
            .map(|(cases, prepared)| fit::evaluate(head, config, cases, prepared, bias).moe.accuracy)
            .sum::<f64>()
            / selection.len().max(1) as f64;
        tracing::info!(bias, accuracy = score, "other calibration");
        if score > best.0 {
            best = (score, bias);
        }
    }
    best.1
}

/// The whole run: data, embeddings, training, figures, files.
pub fn run(options: TrainOptions) -> Result<TrainSummary, TrainError> {
    let data = TrainingData::load(&options.datasets, &options.corpus, &options.sizes, options.fit.seed)?;
    let encoder = Arc::new(Encoder::load(&EncoderSettings {
        model_dir: options.encoder_dir.clone(),
        max_batch: 32,
        cache_entries: 1024,
        // The head learns on the published weights' embeddings; the node's
        // int8 encoder stays within cosine 0.995 of them, and `switchyard
        // eval --precision` measures what that costs in accuracy.
        precision: Precision::F32,
        ..EncoderSettings::default()
    })?);
    let slots = options.head.turn_slots;
    let mut counter = Counter::new(encoder.tokenizer());

    // Every text any epoch can need: turns of every case (a corpus case's
    // turns do not depend on its phrasing) and every route phrasing.
    let started = Instant::now();
    let mut texts: Vec<String> = data.route_texts();
    let corpus_all: Vec<Case> = data.epoch_cases(options.fit.seed, 0);
    for case in corpus_all
        .iter()
        .chain(&data.shared_dev)
        .chain(&data.dev_seen)
        .chain(&data.dev_unseen)
    {
        texts.extend(fit::case_texts(case, slots, &mut counter)?);
    }
    let mut store = EmbeddingStore::open(&options.store)?;
    let encoding = bar(0, "encoding");
    store.fill(&encoder, texts.iter().map(String::as_str), |done, total| {
        encoding.set_length(total as u64);
        encoding.set_position(done as u64);
    })?;
    encoding.finish_and_clear();
    let encode_time = started.elapsed();
    tracing::info!(texts = store.len(), encoded = store.encoded, "embeddings ready");

    let seen = prepare_all(&data.dev_seen, slots, &store, &mut counter)?;
    let unseen = prepare_all(&data.dev_unseen, slots, &store, &mut counter)?;
    let shared = prepare_all(&data.shared_dev, slots, &store, &mut counter)?;
    let selection: Vec<(&[Case], &[Option<Prepared>])> = vec![(&data.dev_seen, &seen), (&data.shared_dev, &shared)];

    let started = Instant::now();
    let (head, best_epoch) = train_head(&options.head, &options, &data, &store, &mut counter, &selection, "moe")?;
    let train_time = started.elapsed();
    let other_bias = calibrate(&head, &options.head, &selection);
    let dev_seen = fit::evaluate(&head, &options.head, &data.dev_seen, &seen, other_bias);
    let dev_unseen = fit::evaluate(&head, &options.head, &data.dev_unseen, &unseen, other_bias);
    let shared_dev = fit::evaluate(&head, &options.head, &data.shared_dev, &shared, other_bias);
    let mut options = options;
    options.head.other_bias = f64::from(other_bias);

    let dense = if options.ablation {
        let dense_config = options
            .head
            .clone()
            .with_experts(1)
            .with_top_k(1)
            .with_expert_hidden(options.head.expert_hidden * options.head.top_k)
            .with_other_bias(0.0);
        let (dense_head, _) = train_head(&dense_config, &options, &data, &store, &mut counter, &selection, "dense")?;
        let dense_bias = calibrate(&dense_head, &dense_config, &selection);
        Some((
            fit::parameter_counts(&dense_config),
            fit::evaluate(&dense_head, &dense_config, &data.dev_seen, &seen, dense_bias),
            fit::evaluate(&dense_head, &dense_config, &data.dev_unseen, &unseen, dense_bias),
        ))
    } else {
        None
    };

    std::fs::create_dir_all(&options.out).map_err(|err| TrainError::Io(options.out.display().to_string(), err))?;
    options
        .head
        .save(options.out.join(moe::CONFIG_FILE))
        .map_err(|err| TrainError::Save(err.to_string()))?;
    head.save_file(options.out.join(moe::WEIGHTS_FILE), &moe::recorder())
        .map_err(|err| TrainError::Save(err.to_string()))?;

    let mut by_source: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for case in &corpus_all {
        *by_source.entry(case.source.clone()).or_insert(0) += 1;
    }
    let summary = TrainSummary {
        train_cases: corpus_all.len(),
        train_by_source: by_source.into_iter().collect(),
        texts_embedded: store.len(),
        encode_time,
        train_time,
        best_epoch,
        params: fit::parameter_counts(&options.head),
        dev_seen,
        dev_unseen,
        shared_dev,
        dense,
        options,
    };
    let card = card::render(&summary, &data);
    let path = summary.options.out.join("MODEL_CARD.md");
    std::fs::write(&path, card).map_err(|err| TrainError::Io(path.display().to_string(), err))?;
    Ok(summary)
}
