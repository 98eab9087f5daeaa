//! Cases → embedded examples → a trained head, and the head's figures on
//! a dev set (beside the `embedding` classifier's, computed from the same
//! similarity prior).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use switchyard_classifier::embedding::{DEFAULT_OTHER_THRESHOLD, route_text, standout_route};
use switchyard_classifier::moe::{
    CpuBackend, Example, ExpertMode, MoeHead, MoeHeadConfig, collate, decision_texts, probabilities, winner,
};
use switchyard_encoder::{EncoderError, TextTokenizer};
use switchyard_eval::{Case, Outcome, Report};
use switchyard_types::{Conversation, OTHER_ROUTE};

use crate::TrainError;
use crate::store::EmbeddingStore;

/// The autodiff backend training runs on (burn's CPU backend underneath).
pub type TrainBackend = burn::backend::Autodiff<CpuBackend>;

/// Weight of the load-balancing loss (Switch Transformer's 0.01).
const BALANCE_WEIGHT: f32 = 0.01;
/// Token budget of a conversation's context, as the node's default.
pub const CONTEXT_TOKENS: usize = 512;

/// Token counts by text, so a dialogue prefix is tokenized once.
#[derive(Debug)]
pub struct Counter<'t> {
    tokenizer: &'t TextTokenizer,
    counts: HashMap<String, usize>,
}

impl<'t> Counter<'t> {
    pub fn new(tokenizer: &'t TextTokenizer) -> Self {
        Counter {
            tokenizer,
            counts: HashMap::new(),
        }
    }

    pub fn count(&mut self, text: &str) -> Result<usize, EncoderError> {
        if let Some(&n) = self.counts.get(text) {
            return Ok(n);
        }
        let n = self.tokenizer.ids(text)?.len();
        self.counts.insert(text.to_owned(), n);
        Ok(n)
    }
}

/// Every text a case needs embedded (its route texts excluded).
pub fn case_texts(case: &Case, slots: usize, counter: &mut Counter<'_>) -> Result<Vec<String>, TrainError> {
    let conversation = Conversation::from_messages(&case.messages);
    let Some(texts) = decision_texts(&conversation, slots, CONTEXT_TOKENS, |t| counter.count(t))? else {
        return Ok(Vec::new());
    };
    Ok(texts
        .slots
        .iter()
        .map(|(t, _, _)| (*t).to_owned())
        .chain(texts.blend.iter().map(|(t, _)| (*t).to_owned()))
        .collect())
}

/// A case ready for the head: its example and the index of its answer
/// (`routes.len()` for `other`).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub example: Example,
    pub target: Option<usize>,
}

/// Embeds a case from the store. `None` when the case has no user turn.
pub fn prepare(
    case: &Case,
    slots: usize,
    store: &EmbeddingStore,
    counter: &mut Counter<'_>,
) -> Result<Option<Prepared>, TrainError> {
    let conversation = Conversation::from_messages(&case.messages);
    let Some(texts) = decision_texts(&conversation, slots, CONTEXT_TOKENS, |t| counter.count(t))? else {
        return Ok(None);
    };
    let routes = case
        .routes
        .iter()
        .map(|route| {
            let text = route_text(route);
            store.get(&text).ok_or(TrainError::NotEmbedded(text))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let example = Example::new(&texts, routes, |text| store.get(text).ok_or(EncoderError::Stopped))
        .map_err(|_| TrainError::NotEmbedded(case.id.clone()))?;
    let target = (case.expected != OTHER_ROUTE)
        .then(|| case.routes.iter().position(|r| r.name == case.expected))
        .flatten();
    Ok(Some(Prepared { example, target }))
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct FitSettings {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// Targets of a batch: the route index, or the `other` column (the
/// padded route count).
fn targets<B: Backend>(batch: &[&Prepared], device: &B::Device) -> Tensor<B, 2, Int> {
    let routes = batch.iter().map(|p| p.example.routes.len()).max().unwrap_or(1).max(1);
    let values: Vec<i64> = batch
        .iter()
        .map(|p| p.target.map_or(routes as i64, |t| t as i64))
        .collect();
    Tensor::from_data(TensorData::new(values, [batch.len(), 1]), device)
}

/// Learning rate at `step` of `total`: linear warm-up, then cosine decay
/// to a tenth.
fn learning_rate(base: f64, step: usize, total: usize) -> f64 {
    let warmup = (total / 20).max(1);
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// One training step's loss, for the progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub loss: f32,
}

/// Trains a head from scratch; `epoch_examples(epoch)` gives each epoch's
/// (shuffled) examples, `select(head)` scores a candidate for keeping (the
/// best epoch is kept), `on_step` sees every step.
pub fn fit(
    config: &MoeHeadConfig,
    settings: &FitSettings,
    mut epoch_examples: impl FnMut(usize) -> Result<Vec<Prepared>, TrainError>,
    mut select: impl FnMut(usize, &MoeHead<CpuBackend>) -> f64,
    mut on_step: impl FnMut(usize, usize, usize, Step),
) -> Result<(MoeHead<CpuBackend>, usize), TrainError> {
    let device = Default::default();
    TrainBackend::seed(&device, settings.seed);
    let mut model: MoeHead<TrainBackend> = config.init(&device);
    let mut optimizer = AdamWConfig::new().with_weight_decay(1e-4).init::<TrainBackend, MoeHead<TrainBackend>>();
    let mut best: Option<(f64, usize, MoeHead<CpuBackend>)> = None;
    let mut step = 0;
    let mut total_steps = None;
    for epoch in 0..settings.epochs {
        let examples = epoch_examples(epoch)?;
        let batches = examples.len().div_ceil(settings.batch.max(1));
        let total = *total_steps.get_or_insert(batches * settings.epochs);
        for (i, chunk) in examples.chunks(settings.batch.max(1)).enumerate() {
            let batch: Vec<&Prepared> = chunk.iter().collect();
            let refs: Vec<&Example> = batch.iter().map(|p| &p.example).collect();
            let input = collate::<TrainBackend>(&refs, config.turn_slots, &device);
            let output = model.forward(input, ExpertMode::Dense);
            let log_probs = log_softmax(output.logits, 1);
            let nll = log_probs.gather(1, targets(&batch, &device)).mean().neg();
            let loss = nll + output.balance_loss * BALANCE_WEIGHT;
            let value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(learning_rate(settings.learning_rate, step, total), model, grads);
            step += 1;
            on_step(epoch, i + 1, batches, Step { loss: value });
        }
        let candidate = model.valid();
        let score = select(epoch, &candidate);
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, epoch, candidate));
        }
    }
    best.map(|(_, epoch, head)| (head, epoch)).ok_or(TrainError::NoData)
}

/// The head's and the `embedding` classifier's answers on a dev set.
#[derive(Debug, Clone)]
pub struct DevResult {
    pub moe: Report,
    pub embedding: Report,
    /// Route tokens sent first to each expert, by case source.
    pub expert_load: BTreeMap<String, Vec<u64>>,
    /// Route tokens sent first to each expert, by expected route name.
    pub expert_routes: Vec<BTreeMap<String, u64>>,
    /// Head-only decision latency, p50 in ms (batch of one, sparse).
    pub head_p50_ms: f64,
    /// Per case, in order: the head's answer and the `embedding` answer.
    pub answers: Vec<(String, String)>,
}

/// Runs the head over `cases` (already `prepared`, same order).
/// `other_bias` is added to the `other` logit (the calibration being
/// tried; the head itself carries none while training).
pub fn evaluate(
    head: &MoeHead<CpuBackend>,
    config: &MoeHeadConfig,
    cases: &[Case],
    prepared: &[Option<Prepared>],
    other_bias: f32,
) -> DevResult {
    let device = Default::default();
    let mut moe = Vec::with_capacity(cases.len());
    let mut embedding = Vec::with_capacity(cases.len());
    let mut expert_load: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut expert_routes: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); config.experts];
    let mut latencies = Vec::new();
    let name = |case: &Case, index: Option<usize>| {
        index
            .and_then(|i| case.routes.get(i))
            .map_or_else(|| OTHER_ROUTE.to_owned(), |r| r.name.clone())
    };
    let indexed: Vec<(usize, &Prepared)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
        .collect();
    let mut answers: Vec<Option<(String, String)>> = vec![None; cases.len()];
    for chunk in indexed.chunks(256) {
        let refs: Vec<&Example> = chunk.iter().map(|(_, p)| &p.example).collect();
        let output = head.forward(collate::<CpuBackend>(&refs, config.turn_slots, &device), ExpertMode::Dense);
        let [batch, columns] = output.logits.dims();
        let logits: Vec<f32> = output.logits.into_data().into_vec().unwrap_or_default();
        let experts: Vec<i64> = output.route_experts.into_data().convert::<i64>().into_vec().unwrap_or_default();
        let padded_routes = columns - 1;
        for (row, (index, prepared)) in chunk.iter().enumerate().take(batch) {
            let case = &cases[*index];
            let routes = prepared.example.routes.len();
            let mut row_logits: Vec<f32> = logits[row * columns..row * columns + routes].to_vec();
            row_logits.push(logits[row * columns + columns - 1] + other_bias);
            let p = probabilities(&row_logits);
            let moe_answer = name(case, winner(&p, routes, 0.0));
            let embedding_answer = name(case, standout_route(&prepared.example.prior, DEFAULT_OTHER_THRESHOLD));
            answers[*index] = Some((moe_answer, embedding_answer));
            let load = expert_load.entry(case.source.clone()).or_insert_with(|| vec![0; config.experts]);
            for slot in 0..routes {
                if let Some(&e) = experts.get(row * padded_routes + slot) {
                    let e = e as usize;
                    if let Some(count) = load.get_mut(e) {
                        *count += 1;
                    }
                    if let (Some(map), Some(route)) = (expert_routes.get_mut(e), case.routes.get(slot)) {
                        *map.entry(route.name.clone()).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    let answers: Vec<(String, String)> = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| (OTHER_ROUTE.to_owned(), OTHER_ROUTE.to_owned())))
        .collect();
    for (m, e) in &answers {
        moe.push(Outcome { predicted: m.clone(), latency_ms: 0.0 });
        embedding.push(Outcome { predicted: e.clone(), latency_ms: 0.0 });
    }
    // Head latency: one decision at a time, as served (sparse experts).
    for (_, prepared) in indexed.iter().take(200) {
        let started = Instant::now();
        let input = collate::<CpuBackend>(&[&prepared.example], config.turn_slots, &device);
        let logits = head.forward(input, ExpertMode::Sparse).logits;
        std::hint::black_box(logits.into_data());
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    DevResult {
        moe: Report::build("moe", cases, &moe),
        embedding: Report::build("embedding", cases, &embedding),
        expert_load,
        expert_routes,
        head_p50_ms: latencies.get(latencies.len() / 2).copied().unwrap_or(0.0),
        answers,
    }
}

/// Parameters of a head: total and computed per token.
pub fn parameter_counts(config: &MoeHeadConfig) -> (usize, usize) {
    let total = config.init::<CpuBackend>(&Default::default()).num_params();
    (total, config.active_params(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_classifier::moe::Slot;
    use switchyard_encoder::{Embedding, HIDDEN};

    /// A unit vector pointing mostly along `axis`.
    fn vector(axis: usize, noise: f32) -> Embedding {
        let mut v = vec![noise; HIDDEN];
        v[axis % HIDDEN] = 1.0;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect::<Vec<_>>().into()
    }

    /// Toy decisions: the routed turn points at its route's axis.
    fn examples() -> Vec<Prepared> {
        (0..48)
            .map(|i| {
                let routes: Vec<Embedding> = (0..4).map(|r| vector(r, 0.01)).collect();
                let answer = i % 5;
                let turn = vector(if answer == 4 { 100 } else { answer }, 0.02 * (i % 3) as f32);
                let prior = routes.iter().map(|r| switchyard_encoder::cosine(&turn, r)).collect();
                Prepared {
                    example: Example {
                        slots: vec![Slot { vector: turn, role: 0, recency: 0 }],
                        routes,
                        prior,
                    },
                    target: (answer < 4).then_some(answer),
                }
            })
            .collect()
    }

    fn train(seed: u64) -> Vec<f32> {
        let config = MoeHeadConfig::new().with_hidden(32).with_expert_hidden(32).with_experts(4);
        let settings = FitSettings {
            epochs: 2,
            batch: 16,
            learning_rate: 3e-3,
            seed,
        };
        let (head, _) = fit(&config, &settings, |_| Ok(examples()), |_, _| 0.0, |_, _, _, _| {}).unwrap();
        let data = examples();
        let refs: Vec<&Example> = data.iter().map(|p| &p.example).collect();
        let input = collate::<CpuBackend>(&refs, config.turn_slots, &Default::default());
        head.forward(input, ExpertMode::Sparse).logits.into_data().into_vec().unwrap()
    }

    #[test]
    fn training_is_reproducible_with_a_seed() {
        let a = train(7);
        assert_eq!(a, train(7), "same seed, same head");
        assert_ne!(a, train(8), "another seed, another head");
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_a_tenth() {
        assert!(learning_rate(1.0, 0, 100) < learning_rate(1.0, 4, 100));
        assert!((learning_rate(1.0, 5, 100) - 1.0).abs() < 1e-9);
        assert!((learning_rate(1.0, 99, 100) - 0.1).abs() < 0.01);
    }
}
