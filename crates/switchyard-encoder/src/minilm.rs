//! all-MiniLM-L6-v2, a 6-layer BERT sentence encoder, written with burn.
//!
//! Inference only: the weights are frozen, so the model is a plain struct
//! of tensors rather than a trainable `Module`. Shapes: hidden 384, 12
//! heads of 32, feed-forward 1536, LayerNorm eps 1e-12, exact (erf) GELU;
//! the sentence vector is the mean of the last hidden states over the
//! attention mask, L2-normalised.

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::SafeTensors;

use crate::EncoderError;

/// Width of the sentence vectors.
pub const HIDDEN: usize = 384;
const HEADS: usize = 12;
const HEAD_DIM: usize = HIDDEN / HEADS;
const LAYERS: usize = 6;
const LAYER_NORM_EPS: f64 = 1e-12;
/// Positions the model was trained with.
pub const MAX_POSITIONS: usize = 512;
/// Added to attention scores of padding positions: softmax sends them to 0.
const MASKED: f32 = -1.0e9;

/// `x · W + b` with `W` stored `[in, out]` (transposed once at load).
#[derive(Debug)]
struct Linear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    /// `W` and `b` cut into column blocks, one per CPU thread, when the
    /// model runs split (see [`MiniLm::split_for_threads`]).
    parts: Vec<(Tensor<B, 2>, Tensor<B, 1>)>,
}

impl<B: Backend> Linear<B> {
    /// `x`: `[rows, in]` → `[rows, out]`.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        if self.parts.len() < 2 {
            return x.matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0);
        }
        // One column block per thread: each thread streams only its share
        // of the weights, which is what bounds a pass over a few tokens.
        use rayon::prelude::*;
        let blocks: Vec<Tensor<B, 2>> = self
            .parts
            .par_iter()
            .map(|(weight, bias)| x.clone().matmul(weight.clone()) + bias.clone().unsqueeze_dim(0))
            .collect();
        Tensor::cat(blocks, 1)
    }

    /// Cuts the weights into `parts` column blocks.
    fn split(&mut self, parts: usize, device: &B::Device) {
        let [inputs, outputs] = self.weight.dims();
        if parts < 2 || outputs % parts != 0 {
            self.parts.clear();
            return;
        }
        let width = outputs / parts;
        self.parts = (0..parts)
            .map(|part| {
                let columns = part * width..(part + 1) * width;
                (
                    contiguous(self.weight.clone().slice([0..inputs, columns.clone()]), device),
                    contiguous(self.bias.clone().slice([columns]), device),
                )
            })
            .collect();
    }
}

#[derive(Debug)]
struct LayerNorm<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
}

impl<B: Backend> LayerNorm<B> {
    /// Normalises the last dimension of `[rows, hidden]`.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (variance, mean) = x.clone().var_mean_bias(1);
        let normalised = (x - mean) / (variance + LAYER_NORM_EPS).sqrt();
        normalised * self.gamma.clone().unsqueeze_dim(0) + self.beta.clone().unsqueeze_dim(0)
    }
}

#[derive(Debug)]
struct Layer<B: Backend> {
    /// Query, key and value projections fused into one `[384, 1152]` matmul.
    qkv: Linear<B>,
    attention_out: Linear<B>,
    attention_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
}

/// The encoder with its weights on one device.
///
/// The embedding tables stay in host memory: a batch needs a few hundred of
/// their 30,522 rows, and gathering those rows in plain Rust costs
/// microseconds where a tensor `select` over the 47 MB table cost
/// milliseconds per request.
pub struct MiniLm<B: Backend> {
    /// `[VOCAB, HIDDEN]`, row-major.
    word_embeddings: Vec<f32>,
    /// `[MAX_POSITIONS, HIDDEN]`, row-major.
    position_embeddings: Vec<f32>,
    /// Row 0 of the token-type table: every token is segment A.
    token_type: Vec<f32>,
    embedding_norm: LayerNorm<B>,
    layers: Vec<Layer<B>>,
    device: B::Device,
}

impl<B: Backend> std::fmt::Debug for MiniLm<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("layers", &self.layers.len())
            .field("hidden", &HIDDEN)
            .finish()
    }
}

/// Size of the vocabulary (rows of the word-embedding table).
const VOCAB: usize = 30522;

/// Reads one f32 tensor's values, checking its shape.
fn read_values(
    weights: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, EncoderError> {
    let view = weights
        .tensor(name)
        .map_err(|err| EncoderError::Weights(format!("tensor `{name}`: {err}")))?;
    if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
        return Err(EncoderError::Weights(format!(
            "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
            view.dtype(),
            view.shape()
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect())
}

/// Reads one f32 tensor onto `device`, checking its shape.
fn read<B: Backend, const D: usize>(
    weights: &SafeTensors<'_>,
    name: &str,
    shape: [usize; D],
    device: &B::Device,
) -> Result<Tensor<B, D>, EncoderError> {
    let values = read_values(weights, name, &shape)?;
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

fn linear<B: Backend>(
    weights: &SafeTensors<'_>,
    prefix: &str,
    inputs: usize,
    outputs: usize,
    device: &B::Device,
) -> Result<Linear<B>, EncoderError> {
    // Hugging Face stores Linear weights as [out, in]. Transpose once and
    // materialise the result: a transposed *view* would be copied into a
    // contiguous buffer by every matmul, on every request.
    let weight: Tensor<B, 2> = read(weights, &format!("{prefix}.weight"), [outputs, inputs], device)?;
    Ok(Linear {
        weight: contiguous(weight.transpose(), device),
        bias: read(weights, &format!("{prefix}.bias"), [outputs], device)?,
        parts: Vec::new(),
    })
}

/// A copy of `tensor` laid out row-major in its logical order.
fn contiguous<B: Backend, const D: usize>(tensor: Tensor<B, D>, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(tensor.into_data(), device)
}

fn layer_norm<B: Backend>(
    weights: &SafeTensors<'_>,
    prefix: &str,
    device: &B::Device,
) -> Result<LayerNorm<B>, EncoderError> {
    Ok(LayerNorm {
        gamma: read(weights, &format!("{prefix}.weight"), [HIDDEN], device)?,
        beta: read(weights, &format!("{prefix}.bias"), [HIDDEN], device)?,
    })
}

impl<B: Backend> MiniLm<B> {
    /// Loads the weights from the bytes of `model.safetensors`.
    pub fn load(bytes: &[u8], device: &B::Device) -> Result<MiniLm<B>, EncoderError> {
        let weights = SafeTensors::deserialize(bytes)
            .map_err(|err| EncoderError::Weights(format!("not a safetensors file: {err}")))?;
        let word_embeddings =
            read_values(&weights, "embeddings.word_embeddings.weight", &[VOCAB, HIDDEN])?;
        let position_embeddings = read_values(
            &weights,
            "embeddings.position_embeddings.weight",
            &[MAX_POSITIONS, HIDDEN],
        )?;
        let mut token_type =
            read_values(&weights, "embeddings.token_type_embeddings.weight", &[2, HIDDEN])?;
        token_type.truncate(HIDDEN);
        let mut layers = Vec::with_capacity(LAYERS);
        for index in 0..LAYERS {
            let prefix = format!("encoder.layer.{index}");
            let attention = format!("{prefix}.attention");
            let query = linear::<B>(&weights, &format!("{attention}.self.query"), HIDDEN, HIDDEN, device)?;
            let key = linear::<B>(&weights, &format!("{attention}.self.key"), HIDDEN, HIDDEN, device)?;
            let value = linear::<B>(&weights, &format!("{attention}.self.value"), HIDDEN, HIDDEN, device)?;
            layers.push(Layer {
                qkv: Linear {
                    weight: contiguous(
                        Tensor::cat(vec![query.weight, key.weight, value.weight], 1),
                        device,
                    ),
                    bias: Tensor::cat(vec![query.bias, key.bias, value.bias], 0),
                    parts: Vec::new(),
                },
                attention_out: linear(&weights, &format!("{attention}.output.dense"), HIDDEN, HIDDEN, device)?,
                attention_norm: layer_norm(&weights, &format!("{attention}.output.LayerNorm"), device)?,
                intermediate: linear(&weights, &format!("{prefix}.intermediate.dense"), HIDDEN, 4 * HIDDEN, device)?,
                output: linear(&weights, &format!("{prefix}.output.dense"), 4 * HIDDEN, HIDDEN, device)?,
                output_norm: layer_norm(&weights, &format!("{prefix}.output.LayerNorm"), device)?,
            });
        }
        Ok(MiniLm {
            word_embeddings,
            position_embeddings,
            token_type,
            embedding_norm: layer_norm(&weights, "embeddings.LayerNorm", device)?,
            layers,
            device: device.clone(),
        })
    }

    /// Splits every Linear into `threads` column blocks computed in
    /// parallel. For CPU backends whose matmuls do not use every core on
    /// small inputs; a GPU gains nothing from it.
    pub fn split_for_threads(&mut self, threads: usize) {
        for layer in &mut self.layers {
            for linear in [
                &mut layer.qkv,
                &mut layer.attention_out,
                &mut layer.intermediate,
                &mut layer.output,
            ] {
                linear.split(threads, &self.device);
            }
        }
    }

    /// Encodes a batch of token-id sequences (each with its `[CLS]` and
    /// `[SEP]`) into L2-normalised sentence vectors, one per sequence.
    /// Sequences are padded to the batch's longest, not to a fixed length:
    /// cost grows with the tokens actually there.
    pub fn encode(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let rows = batch.len();
        let seq = batch.iter().map(Vec::len).max().unwrap_or(0);
        if rows == 0 || seq == 0 {
            return Ok(vec![Vec::new(); rows]);
        }
        if seq > MAX_POSITIONS {
            return Err(EncoderError::TooLong { tokens: seq });
        }
        // Embeddings gathered on the host: word + position + segment A for
        // every (sequence, position), flattened to [rows * seq, hidden].
        // Padding positions get zeros; the mask keeps them out of attention
        // and pooling.
        let mut embedded = vec![0.0_f32; rows * seq * HIDDEN];
        let mut mask = Vec::with_capacity(rows * seq);
        for (sequence, out) in batch.iter().zip(embedded.chunks_exact_mut(seq * HIDDEN)) {
            for (position, slot) in out.chunks_exact_mut(HIDDEN).enumerate() {
                let Some(&id) = sequence.get(position) else {
                    mask.push(0.0_f32);
                    continue;
                };
                let id = id as usize;
                if id >= VOCAB {
                    return Err(EncoderError::Tokenizer(format!("token id {id} is outside the vocabulary")));
                }
                let word = &self.word_embeddings[id * HIDDEN..(id + 1) * HIDDEN];
                let place = &self.position_embeddings[position * HIDDEN..(position + 1) * HIDDEN];
                for (((value, w), p), t) in slot.iter_mut().zip(word).zip(place).zip(&self.token_type) {
                    *value = w + p + t;
                }
                mask.push(1.0);
            }
        }
        let device = &self.device;
        let mask: Tensor<B, 2> = Tensor::from_data(TensorData::new(mask, [rows, seq]), device);
        let embedded: Tensor<B, 2> =
            Tensor::from_data(TensorData::new(embedded, [rows * seq, HIDDEN]), device);
        let mut hidden = self.embedding_norm.forward(embedded);

        // Padding keys get a large negative score in every head.
        let key_bias = (mask.clone().neg() + 1.0)
            .mul_scalar(MASKED)
            .reshape([rows, 1, 1, seq]);
        let scale = 1.0 / (HEAD_DIM as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(hidden.clone());
            let heads = |part: usize| {
                qkv.clone()
                    .slice([0..rows * seq, part * HIDDEN..(part + 1) * HIDDEN])
                    .reshape([rows, seq, HEADS, HEAD_DIM])
                    .swap_dims(1, 2)
            };
            let (query, key, value) = (heads(0), heads(1), heads(2));
            let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(scale) + key_bias.clone();
            let context = softmax(scores, 3)
                .matmul(value)
                .swap_dims(1, 2)
                .reshape([rows * seq, HIDDEN]);
            hidden = layer
                .attention_norm
                .forward(layer.attention_out.forward(context) + hidden);
            let expanded = gelu(layer.intermediate.forward(hidden.clone()));
            hidden = layer
                .output_norm
                .forward(layer.output.forward(expanded) + hidden);
        }

        // Mean over real tokens, then unit length.
        let hidden: Tensor<B, 3> = hidden.reshape([rows, seq, HIDDEN]);
        let weights: Tensor<B, 3> = mask.clone().unsqueeze_dim(2);
        let summed = (hidden * weights).sum_dim(1).reshape([rows, HIDDEN]);
        let counts = mask.sum_dim(1);
        let pooled = summed / counts;
        let norms = pooled.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
        let normalised = pooled / norms;
        let values: Vec<f32> = normalised
            .into_data()
            .into_vec()
            .map_err(|err| EncoderError::Weights(format!("reading the output: {err:?}")))?;
        Ok(values.chunks_exact(HIDDEN).map(<[f32]>::to_vec).collect())
    }
}
