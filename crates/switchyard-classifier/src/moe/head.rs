//! The trained routing head: a small transformer over the conversation's
//! turn embeddings, a per-route scorer, and an `other` scorer, with
//! Mixture-of-Experts feed-forward layers.
//!
//! The head never sees raw text: it reads frozen sentence embeddings of the
//! recent turns (with role and recency) and of each route's
//! "name: description", so a new route set needs no retraining.
//!
//! A route's logit is `cosine / τ + bound · tanh(residual)`. The first term
//! is the `embedding` classifier's score, fixed and not learnable; the
//! learned residual is bounded, so training can reorder routes whose
//! cosines are close but cannot unlearn the similarity prior on route sets
//! it never saw. `other` gets its own logit from set-relative features (the
//! leader's margin over the runner-up in the set's spread, the pooled
//! route states), and competes with the routes in one softmax.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, IndexingUpdateOp, Int, Tensor, TensorData};

/// Roles a turn slot can have; the index is the role embedding's row.
pub const ROLE_USER: i64 = 0;
pub const ROLE_ASSISTANT: i64 = 1;
pub const ROLE_SYSTEM: i64 = 2;
pub const ROLE_TOOL: i64 = 3;
const ROLES: usize = 4;

/// Logit given to padded route slots.
const MASKED_LOGIT: f32 = -1.0e4;

/// Shape and behaviour of the head; saved beside the weights.
#[derive(Config, Debug, PartialEq)]
pub struct MoeHeadConfig {
    /// Width of the sentence embeddings read.
    #[config(default = 384)]
    pub embedding: usize,
    /// Width of the head's own states.
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = 4)]
    pub attention_heads: usize,
    /// Experts per MoE layer (1 = the dense ablation).
    #[config(default = 8)]
    pub experts: usize,
    /// Experts computed per token.
    #[config(default = 2)]
    pub top_k: usize,
    /// Inner width of one expert.
    #[config(default = 256)]
    pub expert_hidden: usize,
    /// Turn slots: the routed turn, the turns before it, and the system
    /// prompt's slot (always the last).
    #[config(default = 7)]
    pub turn_slots: usize,
    /// τ of the similarity prior: logit = cosine / τ.
    #[config(default = 0.05)]
    pub prior_temperature: f64,
    /// Largest correction the learned residual can add to a route's logit.
    #[config(default = 2.0)]
    pub residual_bound: f64,
    /// Added to the `other` logit at inference: the calibration that
    /// `switchyard train` picks on the in-distribution dev sets after
    /// training (0 while training).
    #[config(default = 0.0)]
    pub other_bias: f64,
}

impl MoeHeadConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> MoeHead<B> {
        let d = self.hidden;
        let moe = |device: &B::Device| MoeFeedForward::new(d, self.expert_hidden, self.experts, self.top_k, device);
        MoeHead {
            turn_in: LinearConfig::new(self.embedding, d).init(device),
            role: EmbeddingConfig::new(ROLES, d).init(device),
            recency: EmbeddingConfig::new(self.turn_slots, d).init(device),
            attention_norm: LayerNormConfig::new(d).init(device),
            attention: MultiHeadAttentionConfig::new(d, self.attention_heads)
                .with_dropout(0.0)
                .init(device),
            turn_norm: LayerNormConfig::new(d).init(device),
            turn_ffn: moe(device),
            route_in: LinearConfig::new(self.embedding, d).init(device),
            cross_norm: LayerNormConfig::new(d).init(device),
            cross: MultiHeadAttentionConfig::new(d, self.attention_heads)
                .with_dropout(0.0)
                .init(device),
            pair_in: LinearConfig::new(3 * d + SCORE_FEATURES, d).init(device),
            pair_norm: LayerNormConfig::new(d).init(device),
            pair_ffn: moe(device),
            pair_out: LinearConfig::new(d, 1).init(device),
            other_in: LinearConfig::new(2 * d + SET_FEATURES, d).init(device),
            other_out: LinearConfig::new(d, 1).init(device),
            prior_scale: (1.0 / self.prior_temperature) as f32,
            residual_bound: self.residual_bound as f32,
            other_bias: self.other_bias as f32,
        }
    }

    /// Parameters computed for one token: everything but the experts that
    /// the gate leaves out.
    pub fn active_params(&self, total: usize) -> usize {
        let expert = 2 * self.hidden * self.expert_hidden + self.expert_hidden + self.hidden;
        let idle = self.experts.saturating_sub(self.top_k) * expert;
        // Two MoE layers: the turn transformer's and the route scorer's.
        total.saturating_sub(2 * idle)
    }
}

/// Per-route score features fed to the scorer: the cosine, its distance to
/// the set's best, and its z-score within the set.
const SCORE_FEATURES: usize = 3;
/// Per-set features fed to the `other` scorer.
const SET_FEATURES: usize = 5;

/// A batch of routing decisions, padded. `T` turn slots, `R` route slots.
#[derive(Debug, Clone)]
pub struct HeadInput<B: Backend> {
    /// `[batch, T, embedding]`; slot 0 is the routed user turn.
    pub turns: Tensor<B, 3>,
    /// `[batch, T]` role of each slot (`ROLE_*`).
    pub roles: Tensor<B, 2, Int>,
    /// `[batch, T]` recency index of each slot.
    pub recency: Tensor<B, 2, Int>,
    /// `[batch, T]`, true where the slot is padding.
    pub turn_pad: Tensor<B, 2, Bool>,
    /// `[batch, R, embedding]`.
    pub routes: Tensor<B, 3>,
    /// `[batch, R]`, true where the slot is padding.
    pub route_pad: Tensor<B, 2, Bool>,
    /// `[batch, R]` cosine of the context vector with each route (0 on padding).
    pub prior: Tensor<B, 2>,
}

/// What a forward pass gives back.
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// `[batch, R + 1]`: one logit per route slot, then `other`.
    pub logits: Tensor<B, 2>,
    /// The load-balancing loss summed over the MoE layers (scalar).
    pub balance_loss: Tensor<B, 1>,
    /// `[batch * R]` the expert each route token was sent to first, in the
    /// scorer's MoE layer (for load and specialisation reports).
    pub route_experts: Tensor<B, 1, Int>,
}

/// The routing head.
#[derive(Module, Debug)]
pub struct MoeHead<B: Backend> {
    turn_in: Linear<B>,
    role: Embedding<B>,
    recency: Embedding<B>,
    attention_norm: LayerNorm<B>,
    attention: MultiHeadAttention<B>,
    turn_norm: LayerNorm<B>,
    turn_ffn: MoeFeedForward<B>,
    route_in: Linear<B>,
    cross_norm: LayerNorm<B>,
    cross: MultiHeadAttention<B>,
    pair_in: Linear<B>,
    pair_norm: LayerNorm<B>,
    pair_ffn: MoeFeedForward<B>,
    pair_out: Linear<B>,
    other_in: Linear<B>,
    other_out: Linear<B>,
    prior_scale: f32,
    residual_bound: f32,
    other_bias: f32,
}

/// How the MoE layers compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertMode {
    /// Every expert runs on every token and is weighted by the (sparse)
    /// gate: what training differentiates through.
    Dense,
    /// Only the experts the gate picked run on each token: inference.
    Sparse,
}

impl<B: Backend> MoeHead<B> {
    pub fn forward(&self, input: HeadInput<B>, mode: ExpertMode) -> HeadOutput<B> {
        let [batch, slots, _] = input.turns.dims();
        let [_, routes, _] = input.routes.dims();
        let d = self.pair_out.weight.dims()[0];

        // Turns: content + role + recency, one pre-norm transformer block.
        let turns = self.turn_in.forward(input.turns)
            + self.role.forward(input.roles)
            + self.recency.forward(input.recency);
        let attended = self
            .attention
            .forward(MhaInput::self_attn(self.attention_norm.forward(turns.clone())).mask_pad(input.turn_pad.clone()))
            .context;
        let turns = turns + attended;
        let turn_moe = self.turn_ffn.forward(self.turn_norm.forward(turns.clone()).reshape([batch * slots, d]), mode);
        let turns = turns + turn_moe.output.reshape([batch, slots, d]);
        // The routed turn after reading its context.
        let query = turns.clone().slice([0..batch, 0..1, 0..d]); // [B, 1, d]

        // Routes read the conversation through cross-attention.
        let route_states = self.route_in.forward(input.routes);
        let read = self
            .cross
            .forward(
                MhaInput::new(self.cross_norm.forward(route_states.clone()), turns.clone(), turns)
                    .mask_pad(input.turn_pad),
            )
            .context;
        let score_features = score_features(input.prior.clone(), input.route_pad.clone());
        let pair = Tensor::cat(
            vec![
                route_states.clone() * query.clone(),
                read * route_states.clone(),
                (route_states - query.clone()).abs(),
                score_features,
            ],
            2,
        );
        let pair = self.pair_in.forward(pair);
        let pair_moe = self.pair_ffn.forward(self.pair_norm.forward(pair.clone()).reshape([batch * routes, d]), mode);
        let pair = pair + pair_moe.output.reshape([batch, routes, d]);
        let residual = self.pair_out.forward(pair.clone()).reshape([batch, routes]);
        let route_logits = input.prior.clone() * self.prior_scale + residual.tanh() * self.residual_bound;
        let route_logits = route_logits.mask_fill(input.route_pad.clone(), MASKED_LOGIT);

        // `other`: from the routed turn, the pooled route states, and how
        // much the best route stands out in this set.
        let keep = input.route_pad.clone().bool_not().float().unsqueeze_dim::<3>(2); // [B, R, 1]
        let count = keep.clone().sum_dim(1).clamp_min(1.0); // [B, 1, 1]
        let pooled = (pair * keep).sum_dim(1) / count; // [B, 1, d]
        let set = set_features(input.prior, input.route_pad).unsqueeze_dim::<3>(1); // [B, 1, F]
        let other = Tensor::cat(vec![query, pooled, set], 2).reshape([batch, 2 * d + SET_FEATURES]);
        let other_logit = self.other_out.forward(gelu(self.other_in.forward(other))) + self.other_bias;

        HeadOutput {
            logits: Tensor::cat(vec![route_logits, other_logit], 1),
            balance_loss: turn_moe.balance_loss + pair_moe.balance_loss,
            route_experts: pair_moe.first_choice,
        }
    }
}

/// `[B, R]` cosines → `[B, R, 3]`: the cosine, its gap to the set's best,
/// and its z-score within the set (padding excluded).
fn score_features<B: Backend>(prior: Tensor<B, 2>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
    let (mean, std, best, _) = set_statistics(prior.clone(), pad);
    let gap = prior.clone() - best;
    let z = (prior.clone() - mean) / std;
    Tensor::stack(vec![prior, gap, z], 2)
}

/// `[B, R]` cosines → `[B, 5]`: best, runner-up, mean, spread, and the
/// best's lead over the runner-up in spreads (the `embedding`
/// classifier's `other` rule, as a feature).
fn set_features<B: Backend>(prior: Tensor<B, 2>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
    let (mean, std, best, second) = set_statistics(prior, pad);
    let lead = (best.clone() - second.clone()) / std.clone();
    Tensor::cat(vec![best, second, mean, std, lead], 1)
}

/// Mean, standard deviation (floored), best and runner-up of each row's
/// unpadded scores, each `[B, 1]`.
fn set_statistics<B: Backend>(
    prior: Tensor<B, 2>,
    pad: Tensor<B, 2, Bool>,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let keep = pad.clone().bool_not().float();
    let count = keep.clone().sum_dim(1).clamp_min(1.0);
    let mean = (prior.clone() * keep.clone()).sum_dim(1) / count.clone();
    let centred = (prior.clone() - mean.clone()) * keep;
    let std = (centred.powi_scalar(2).sum_dim(1) / count).sqrt().clamp_min(1e-3);
    let masked = prior.mask_fill(pad, -2.0);
    let (best, _, leader) = arg_max(masked.clone());
    let second = masked.mask_fill(leader, -2.0).max_dim(1);
    // A set of one route has no runner-up: it leads by nothing.
    let second = second.clone().mask_where(second.clone().lower_equal_elem(-1.5), best.clone());
    (mean, std, best, second)
}

/// Each row's largest value `[rows, 1]`, its column `[rows, 1]` and a
/// mask of that column `[rows, cols]` (the first one on ties). Built from
/// `argmax` and `gather` because burn's autodiff has no `topk`.
fn arg_max<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let [rows, cols] = x.dims();
    let index = x.clone().detach().argmax(1); // [rows, 1]
    let value = x.gather(1, index.clone());
    let columns = Tensor::<B, 1, Int>::arange(0..cols as i64, &index.device())
        .unsqueeze_dim::<2>(0)
        .repeat_dim(0, rows);
    let mask = columns.equal(index.clone().repeat_dim(1, cols));
    (value, index, mask)
}

/// Values `[rows, k]`, columns `[rows, k]` and one-hot masks of the columns.
type TopK<B> = (Tensor<B, 2>, Tensor<B, 2, Int>, Vec<Tensor<B, 2, Bool>>);

/// The `k` largest values of each row and their columns, `[rows, k]` each,
/// plus the one-hot masks of the columns, largest first.
fn top_k<B: Backend>(x: Tensor<B, 2>, k: usize) -> TopK<B> {
    let mut remaining = x.clone();
    let mut values = Vec::with_capacity(k);
    let mut indices = Vec::with_capacity(k);
    let mut masks = Vec::with_capacity(k);
    for _ in 0..k {
        let (_, index, mask) = arg_max(remaining.clone());
        // Values from the original rows, so gradients flow to the gate.
        values.push(x.clone().gather(1, index.clone()));
        remaining = remaining.mask_fill(mask.clone(), f32::NEG_INFINITY);
        indices.push(index);
        masks.push(mask);
    }
    (Tensor::cat(values, 1), Tensor::cat(indices, 1), masks)
}

/// What an MoE layer gives back.
#[derive(Debug, Clone)]
pub struct MoeOutput<B: Backend> {
    /// `[tokens, d]`.
    pub output: Tensor<B, 2>,
    /// Switch-style load-balancing loss: `experts · Σ_e f_e · P_e`, where
    /// `f_e` is the share of tokens whose first choice is `e` and `P_e` the
    /// mean gate probability of `e` (scalar, 1 when perfectly balanced).
    pub balance_loss: Tensor<B, 1>,
    /// `[tokens]` each token's first-choice expert.
    pub first_choice: Tensor<B, 1, Int>,
}

/// A Mixture-of-Experts feed-forward layer: a learned gate picks `top_k`
/// of `experts` two-layer GELU networks per token, weighted by the gate's
/// renormalised probabilities.
#[derive(Module, Debug)]
pub struct MoeFeedForward<B: Backend> {
    gate: Linear<B>,
    up: Vec<Linear<B>>,
    down: Vec<Linear<B>>,
    top_k: usize,
}

impl<B: Backend> MoeFeedForward<B> {
    fn new(d: usize, inner: usize, experts: usize, top_k: usize, device: &B::Device) -> Self {
        MoeFeedForward {
            gate: LinearConfig::new(d, experts).init(device),
            up: (0..experts).map(|_| LinearConfig::new(d, inner).init(device)).collect(),
            down: (0..experts).map(|_| LinearConfig::new(inner, d).init(device)).collect(),
            top_k: top_k.clamp(1, experts.max(1)),
        }
    }

    fn expert(&self, index: usize, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.down[index].forward(gelu(self.up[index].forward(x)))
    }

    pub fn forward(&self, x: Tensor<B, 2>, mode: ExpertMode) -> MoeOutput<B> {
        let [tokens, d] = x.dims();
        let experts = self.up.len();
        let device = x.device();
        let probs = softmax(self.gate.forward(x.clone()), 1); // [T, E]
        let (top_values, top_indices, masks) = top_k(probs.clone(), self.top_k); // [T, k]
        let top_weights = top_values.clone() / top_values.sum_dim(1);
        let first_choice = top_indices.clone().slice([0..tokens, 0..1]).reshape([tokens]);

        let output = match mode {
            ExpertMode::Dense => {
                // The sparse gate as a dense [T, E] matrix: each token's
                // renormalised weight at its chosen experts, 0 elsewhere.
                let mut weights = Tensor::<B, 2>::zeros([tokens, experts], &device);
                for (slot, mask) in masks.into_iter().enumerate() {
                    let weight = top_weights.clone().slice([0..tokens, slot..slot + 1]);
                    weights = weights + mask.float() * weight;
                }
                let mut output = Tensor::<B, 2>::zeros([tokens, d], &device);
                for expert in 0..experts {
                    let weight = weights.clone().slice([0..tokens, expert..expert + 1]);
                    output = output + self.expert(expert, x.clone()) * weight;
                }
                output
            }
            ExpertMode::Sparse => self.sparse(x, top_indices, top_weights),
        };

        // f_e: share of first choices (a count, no gradient); P_e: mean
        // gate probability (differentiable).
        let expert_ids = Tensor::<B, 1, Int>::arange(0..experts as i64, &device).unsqueeze_dim::<2>(0);
        let share = first_choice
            .clone()
            .unsqueeze_dim::<2>(1)
            .equal(expert_ids)
            .float()
            .mean_dim(0)
            .detach(); // [1, E]
        let mean_prob = probs.mean_dim(0); // [1, E]
        let balance_loss = (share * mean_prob).sum() * experts as f32;
        MoeOutput {
            output,
            balance_loss,
            first_choice,
        }
    }

    /// Runs each expert only on the tokens that picked it.
    fn sparse(&self, x: Tensor<B, 2>, indices: Tensor<B, 2, Int>, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        let [tokens, d] = x.dims();
        let device = x.device();
        let indices: Vec<i64> = indices.into_data().convert::<i64>().into_vec().unwrap_or_default();
        let weights: Vec<f32> = weights.into_data().convert::<f32>().into_vec().unwrap_or_default();
        let k = self.top_k;
        let mut output = Tensor::<B, 2>::zeros([tokens, d], &device);
        for expert in 0..self.up.len() {
            let mut rows = Vec::new();
            let mut row_weights = Vec::new();
            for token in 0..tokens {
                for slot in 0..k {
                    let at = token * k + slot;
                    if indices.get(at).copied() == Some(expert as i64) {
                        rows.push(token as i64);
                        row_weights.push(weights.get(at).copied().unwrap_or(0.0));
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device);
            let row_weights = Tensor::<B, 1>::from_data(TensorData::new(row_weights, [n]), &device);
            let y = self.expert(expert, x.clone().select(0, rows.clone())) * row_weights.unsqueeze_dim(1);
            output = output.select_assign(0, rows, y, IndexingUpdateOp::Add);
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::moe::CpuBackend;

    fn input(batch: usize, slots: usize, routes: usize, device: &burn::backend::flex::FlexDevice) -> HeadInput<B> {
        use burn::tensor::Distribution;
        let mut turn_pad = vec![false; batch * slots];
        // The second example has only its routed turn.
        if batch > 1 {
            for slot in 1..slots {
                turn_pad[slots + slot] = true;
            }
        }
        let mut route_pad = vec![false; batch * routes];
        if batch > 1 {
            route_pad[2 * routes - 1] = true;
        }
        HeadInput {
            turns: Tensor::random([batch, slots, 384], Distribution::Normal(0.0, 0.05), device),
            roles: Tensor::zeros([batch, slots], device),
            recency: Tensor::<B, 1, Int>::arange(0..slots as i64, device)
                .unsqueeze_dim::<2>(0)
                .repeat_dim(0, batch),
            turn_pad: Tensor::from_data(TensorData::new(turn_pad, [batch, slots]), device),
            routes: Tensor::random([batch, routes, 384], Distribution::Normal(0.0, 0.05), device),
            route_pad: Tensor::from_data(TensorData::new(route_pad, [batch, routes]), device),
            prior: Tensor::random([batch, routes], Distribution::Uniform(-0.2, 0.8), device),
        }
    }

    #[test]
    fn sparse_experts_compute_what_the_dense_mixture_computes() {
        let device = Default::default();
        let head = MoeHeadConfig::new().init::<B>(&device);
        let input = input(2, 7, 5, &device);
        let dense = head.forward(input.clone(), ExpertMode::Dense).logits;
        let sparse = head.forward(input, ExpertMode::Sparse).logits;
        assert_eq!(dense.dims(), [2, 6]);
        let diff: f32 = (dense - sparse).abs().max().into_scalar();
        assert!(diff < 1e-4, "dense and sparse differ by {diff}");
    }

    #[test]
    fn padded_routes_never_win_and_the_prior_bounds_the_logits() {
        let device = Default::default();
        let config = MoeHeadConfig::new();
        let head = config.init::<B>(&device);
        let input = input(2, 7, 5, &device);
        let prior: Vec<f32> = input.prior.clone().into_data().into_vec().unwrap();
        let logits: Vec<f32> = head.forward(input, ExpertMode::Sparse).logits.into_data().into_vec().unwrap();
        // Example 1's last route slot is padding.
        assert!(logits[6 + 4] <= MASKED_LOGIT);
        for example in 0..2 {
            for route in 0..5 {
                if example == 1 && route == 4 {
                    continue;
                }
                let logit = logits[example * 6 + route];
                let base = prior[example * 5 + route] / config.prior_temperature as f32;
                assert!((logit - base).abs() <= config.residual_bound as f32 + 1e-4);
            }
        }
    }

    #[test]
    fn balance_loss_is_one_for_a_single_expert() {
        let device = Default::default();
        let layer = MoeFeedForward::<B>::new(16, 32, 1, 1, &device);
        let x = Tensor::<B, 2>::ones([5, 16], &device);
        let out = layer.forward(x, ExpertMode::Sparse);
        let loss: f32 = out.balance_loss.into_scalar();
        assert!((loss - 1.0).abs() < 1e-5);
    }

    #[test]
    fn active_parameters_leave_out_idle_experts() {
        let device = Default::default();
        let config = MoeHeadConfig::new();
        let total = config.init::<B>(&device).num_params();
        let active = config.active_params(total);
        let expert = 2 * 128 * 256 + 256 + 128;
        assert_eq!(total - active, 2 * 6 * expert);
    }
}
