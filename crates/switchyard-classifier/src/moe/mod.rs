//! The `moe` classifier: the trained Mixture-of-Experts head ([`head`])
//! over the sentence encoder's embeddings.
//!
//! Per request: the routed turn, the turns before it (with role and
//! recency) and the system prompt are embedded (cached per message, so a
//! next turn encodes only itself); the `embedding` classifier's context
//! vector gives each route its similarity prior; the head scores every
//! route plus `other` in one softmax. Route embeddings are computed once
//! per configuration. The head runs on the CPU; it is tiny next to the
//! encoder.
//!
//! The weights (`head.mpk`) and shape (`head.json`) come from
//! `switchyard train`, under `models/moe-router/` by default.

pub mod head;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::config::Config;
use burn::module::Module;
use burn::record::{HalfPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use switchyard_encoder::{Embedding, Encoder, EncoderError, HIDDEN, cosine};
use switchyard_types::{Conversation, Role};

use crate::context::{blend, blend_weight, blended_roles, recent_turns, system_prompt};
use crate::{Classification, Classifier, ClassifierError, RouteIndex, RouteSpec};

pub use head::{ExpertMode, HeadInput, HeadOutput, MoeHead, MoeHeadConfig};

/// The backend the head runs on when serving and training: `flex`, whatever
/// backend the encoder uses (the head's matrices are small and stay in cache).
pub type CpuBackend = burn::backend::Flex<f32>;

/// Where `switchyard train` writes the head, relative to the working
/// directory (the repository root when run from a checkout).
pub const DEFAULT_HEAD_DIR: &str = "models/moe-router";
/// The head's shape, next to its weights.
pub const CONFIG_FILE: &str = "head.json";
/// The head's weights (burn's named MessagePack, half precision).
pub const WEIGHTS_FILE: &str = "head.mpk";

/// The recorder the head is saved and loaded with.
pub fn recorder() -> NamedMpkFileRecorder<HalfPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// The texts one decision needs embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTexts<'a> {
    /// The head's turn slots: text, role (`head::ROLE_*`), recency index.
    /// Slot 0 is the routed user turn; the system prompt, if any, is last.
    pub slots: Vec<(&'a str, i64, i64)>,
    /// The similarity prior's blend: text and weight.
    pub blend: Vec<(&'a str, f32)>,
}

fn role_index(role: Role) -> i64 {
    match role {
        Role::User => head::ROLE_USER,
        Role::Assistant => head::ROLE_ASSISTANT,
        Role::System | Role::Developer => head::ROLE_SYSTEM,
        Role::Tool | Role::Function => head::ROLE_TOOL,
    }
}

/// What the head reads of a conversation: up to `turn_slots - 1` recent
/// turns (user, assistant, tool) within `budget` tokens, plus the system
/// prompt in the last slot. `None` when there is no user turn.
pub fn decision_texts<'a>(
    conversation: &'a Conversation,
    turn_slots: usize,
    budget: usize,
    mut count: impl FnMut(&str) -> Result<usize, EncoderError>,
) -> Result<Option<DecisionTexts<'a>>, EncoderError> {
    let recent = recent_turns(
        conversation,
        budget,
        |role| matches!(role, Role::User | Role::Assistant | Role::Tool | Role::Function),
        &mut count,
    )?;
    if recent.is_empty() {
        return Ok(None);
    }
    let turn_room = turn_slots.saturating_sub(1).max(1);
    let mut slots: Vec<(&str, i64, i64)> = recent
        .iter()
        .take(turn_room)
        .map(|turn| (turn.text, role_index(turn.role), turn.distance as i64))
        .collect();
    if let Some(system) = system_prompt(conversation) {
        slots.push((system, head::ROLE_SYSTEM, turn_slots.saturating_sub(1) as i64));
    }
    let blend = recent_turns(conversation, budget, blended_roles, &mut count)?
        .iter()
        .map(|turn| (turn.text, blend_weight(turn)))
        .collect();
    Ok(Some(DecisionTexts { slots, blend }))
}

/// One turn slot, embedded.
#[derive(Debug, Clone)]
pub struct Slot {
    pub vector: Embedding,
    pub role: i64,
    pub recency: i64,
}

/// One decision, embedded: what the head reads.
#[derive(Debug, Clone)]
pub struct Example {
    pub slots: Vec<Slot>,
    pub routes: Vec<Embedding>,
    /// Cosine of the context vector with each route.
    pub prior: Vec<f32>,
}

impl Example {
    /// Embeds a decision's texts with `embed` (cached by the caller) and
    /// computes the prior against `routes`.
    pub fn new(
        texts: &DecisionTexts<'_>,
        routes: Vec<Embedding>,
        mut embed: impl FnMut(&str) -> Result<Embedding, EncoderError>,
    ) -> Result<Example, EncoderError> {
        let slots = texts
            .slots
            .iter()
            .map(|&(text, role, recency)| Ok(Slot { vector: embed(text)?, role, recency }))
            .collect::<Result<Vec<_>, EncoderError>>()?;
        let blended = texts
            .blend
            .iter()
            .map(|&(text, weight)| Ok((weight, embed(text)?)))
            .collect::<Result<Vec<_>, EncoderError>>()?;
        let context = blend(blended.iter().map(|(weight, vector)| (*weight, &vector[..])));
        let prior = routes.iter().map(|route| cosine(&context, route)).collect();
        Ok(Example { slots, routes, prior })
    }
}

/// Pads a batch of examples into the head's input tensors.
pub fn collate<B: Backend>(examples: &[&Example], turn_slots: usize, device: &B::Device) -> HeadInput<B> {
    let batch = examples.len();
    let routes = examples.iter().map(|e| e.routes.len()).max().unwrap_or(1).max(1);
    let slots = turn_slots.max(1);
    let mut turns = vec![0.0_f32; batch * slots * HIDDEN];
    let mut roles = vec![0_i64; batch * slots];
    let mut recency = vec![0_i64; batch * slots];
    let mut turn_pad = vec![true; batch * slots];
    let mut route_vectors = vec![0.0_f32; batch * routes * HIDDEN];
    let mut route_pad = vec![true; batch * routes];
    let mut prior = vec![0.0_f32; batch * routes];
    for (b, example) in examples.iter().enumerate() {
        for (s, slot) in example.slots.iter().take(slots).enumerate() {
            let at = b * slots + s;
            turns[at * HIDDEN..(at + 1) * HIDDEN].copy_from_slice(&slot.vector[..HIDDEN]);
            roles[at] = slot.role;
            recency[at] = slot.recency.clamp(0, slots as i64 - 1);
            turn_pad[at] = false;
        }
        for (r, route) in example.routes.iter().enumerate() {
            let at = b * routes + r;
            route_vectors[at * HIDDEN..(at + 1) * HIDDEN].copy_from_slice(&route[..HIDDEN]);
            route_pad[at] = false;
            prior[at] = example.prior.get(r).copied().unwrap_or(0.0);
        }
    }
    HeadInput {
        turns: Tensor::from_data(TensorData::new(turns, [batch, slots, HIDDEN]), device),
        roles: Tensor::<B, 2, Int>::from_data(TensorData::new(roles, [batch, slots]), device),
        recency: Tensor::<B, 2, Int>::from_data(TensorData::new(recency, [batch, slots]), device),
        turn_pad: Tensor::<B, 2, Bool>::from_data(TensorData::new(turn_pad, [batch, slots]), device),
        routes: Tensor::from_data(TensorData::new(route_vectors, [batch, routes, HIDDEN]), device),
        route_pad: Tensor::<B, 2, Bool>::from_data(TensorData::new(route_pad, [batch, routes]), device),
        prior: Tensor::from_data(TensorData::new(prior, [batch, routes]), device),
    }
}

/// Softmax over one example's logits (routes, then `other`).
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    exps.iter().map(|e| e / sum).collect()
}

/// The winning route of one example's probabilities (`routes` of them,
/// then `other`): the most probable, if it beats `other` and reaches
/// `min_probability`; `None` (other) otherwise.
pub fn winner(probabilities: &[f32], routes: usize, min_probability: f32) -> Option<usize> {
    let other = probabilities.get(routes).copied().unwrap_or(0.0);
    let (best, p) = probabilities
        .iter()
        .take(routes)
        .copied()
        .enumerate()
        .fold(None, |acc: Option<(usize, f32)>, (i, p)| match acc {
            Some((_, top)) if top >= p => acc,
            _ => Some((i, p)),
        })?;
    (p > other && p >= min_probability).then_some(best)
}

/// Loads a trained head from `dir` (`head.json` + `head.mpk`).
pub fn load_head<B: Backend>(dir: &Path, device: &B::Device) -> Result<(MoeHead<B>, MoeHeadConfig), ClassifierError> {
    let missing = |what: &Path, err: String| ClassifierError::Head {
        path: what.to_path_buf(),
        reason: err,
    };
    let config_path = dir.join(CONFIG_FILE);
    let config = MoeHeadConfig::load(&config_path).map_err(|err| missing(&config_path, err.to_string()))?;
    let weights = dir.join(WEIGHTS_FILE);
    let head = config
        .init::<B>(device)
        .load_file(weights.clone(), &recorder(), device)
        .map_err(|err| missing(&weights, err.to_string()))?;
    Ok((head, config))
}

/// The `moe` classifier: shared encoder + trained head.
#[derive(Debug, Clone)]
pub struct MoeClassifier {
    encoder: Arc<Encoder>,
    head: Arc<MoeHead<CpuBackend>>,
    config: Arc<MoeHeadConfig>,
    min_probability: f32,
    context_tokens: usize,
}

impl MoeClassifier {
    /// Loads the head from `head_dir` onto the CPU.
    pub fn load(
        encoder: Arc<Encoder>,
        head_dir: &Path,
        min_probability: f32,
        context_tokens: usize,
    ) -> Result<MoeClassifier, ClassifierError> {
        let device = Default::default();
        let (head, config) = load_head::<CpuBackend>(head_dir, &device)?;
        Ok(MoeClassifier {
            encoder,
            head: Arc::new(head),
            config: Arc::new(config),
            min_probability,
            context_tokens,
        })
    }

    /// The default head directory, or `SWITCHYARD_HEAD_DIR`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("SWITCHYARD_HEAD_DIR").map_or_else(|| PathBuf::from(DEFAULT_HEAD_DIR), PathBuf::from)
    }
}

impl Classifier for MoeClassifier {
    fn name(&self) -> &'static str {
        "moe"
    }

    fn prepare(&self, routes: &[RouteSpec]) -> Result<Arc<dyn RouteIndex>, ClassifierError> {
        let vectors = crate::embedding::embed_routes(&self.encoder, routes)?;
        Ok(Arc::new(MoeIndex {
            routes: routes.to_vec(),
            vectors,
            classifier: self.clone(),
        }))
    }
}

#[derive(Debug)]
struct MoeIndex {
    routes: Vec<RouteSpec>,
    vectors: Vec<Embedding>,
    classifier: MoeClassifier,
}

impl RouteIndex for MoeIndex {
    fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    fn classify(&self, conversation: &Conversation) -> Result<Classification, ClassifierError> {
        let classifier = &self.classifier;
        let encoder = &classifier.encoder;
        let slots = classifier.config.turn_slots;
        let Some(texts) = decision_texts(conversation, slots, classifier.context_tokens, |text| {
            encoder.count_tokens(text)
        })?
        else {
            return Ok(Classification {
                route: None,
                scores: vec![0.0; self.routes.len()],
            });
        };
        // One encoder call for every text the decision needs: the cache
        // answers the turns it has seen, the rest go out as one batch.
        let all: Vec<&str> = texts
            .slots
            .iter()
            .map(|(text, _, _)| *text)
            .chain(texts.blend.iter().map(|(text, _)| *text))
            .collect();
        let vectors = encoder.embed(&all)?;
        let lookup: HashMap<&str, Embedding> = all.iter().copied().zip(vectors).collect();
        let example = Example::new(&texts, self.vectors.clone(), |text| {
            lookup.get(text).cloned().ok_or(EncoderError::Stopped)
        })?;
        let device = Default::default();
        let input = collate::<CpuBackend>(&[&example], slots, &device);
        let logits: Vec<f32> = classifier
            .head
            .forward(input, ExpertMode::Sparse)
            .logits
            .into_data()
            .into_vec()
            .map_err(|err| ClassifierError::Head {
                path: PathBuf::from(WEIGHTS_FILE),
                reason: format!("{err:?}"),
            })?;
        let probabilities = probabilities(&logits);
        let routes = self.routes.len();
        Ok(Classification {
            route: winner(&probabilities, routes, classifier.min_probability),
            scores: probabilities.into_iter().take(routes).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::conversation;

    #[test]
    fn the_winner_must_beat_other_and_the_floor() {
        assert_eq!(winner(&[0.6, 0.1, 0.3], 2, 0.0), Some(0));
        assert_eq!(winner(&[0.2, 0.1, 0.7], 2, 0.0), None);
        assert_eq!(winner(&[0.45, 0.1, 0.45], 2, 0.0), None);
        assert_eq!(winner(&[0.5, 0.3, 0.2], 2, 0.6), None);
        let p = probabilities(&[1.0, 1.0]);
        assert!((p[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn slots_hold_recent_turns_then_the_system_prompt() {
        let chat = conversation(&[
            (Role::System, "You are a coding agent."),
            (Role::User, "write a parser"),
            (Role::Assistant, "done"),
            (Role::Tool, "tests: 3 failed"),
            (Role::User, "fix it"),
        ]);
        let texts = decision_texts(&chat, 7, 512, |t| Ok(t.len())).unwrap().unwrap();
        let slots: Vec<(&str, i64, i64)> = texts.slots.clone();
        assert_eq!(slots[0], ("fix it", head::ROLE_USER, 0));
        assert_eq!(slots[1], ("tests: 3 failed", head::ROLE_TOOL, 1));
        assert_eq!(slots.last().copied(), Some(("You are a coding agent.", head::ROLE_SYSTEM, 6)));
        // The prior blends user and assistant turns only.
        let blended: Vec<&str> = texts.blend.iter().map(|(t, _)| *t).collect();
        assert_eq!(blended, ["fix it", "done", "write a parser"]);
    }

    #[test]
    fn collate_pads_routes_and_slots() {
        let v: Embedding = vec![0.1_f32; HIDDEN].into();
        let slot = |recency| Slot { vector: v.clone(), role: 0, recency };
        let a = Example { slots: vec![slot(0), slot(1)], routes: vec![v.clone(); 3], prior: vec![0.5, 0.2, 0.1] };
        let b = Example { slots: vec![slot(0)], routes: vec![v.clone(); 2], prior: vec![0.3, 0.4] };
        let input = collate::<CpuBackend>(&[&a, &b], 4, &Default::default());
        assert_eq!(input.turns.dims(), [2, 4, HIDDEN]);
        assert_eq!(input.routes.dims(), [2, 3, HIDDEN]);
        let pad: Vec<bool> = input.route_pad.into_data().into_vec().unwrap();
        assert_eq!(pad, [false, false, false, false, false, true]);
        let turn_pad: Vec<bool> = input.turn_pad.into_data().into_vec().unwrap();
        assert_eq!(turn_pad, [false, false, true, true, false, true, true, true]);
    }
}
