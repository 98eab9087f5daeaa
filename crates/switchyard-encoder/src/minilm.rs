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
pub(crate) const HEADS: usize = 12;
pub(crate) const HEAD_DIM: usize = HIDDEN / HEADS;
pub(crate) const FEED_FORWARD: usize = 4 * HIDDEN;
pub(crate) const LAYERS: usize = 6;
pub(crate) const LAYER_NORM_EPS: f64 = 1e-12;
/// Positions the model was trained with.
pub const MAX_POSITIONS: usize = 512;
/// Added to attention scores of padding positions: softmax sends them to 0.
const MASKED: f32 = -1.0e9;

/// Runs `forward` on every block (in parallel when there are several) and
/// sums their partial outputs; `None` only for an empty slice.
fn sum_blocks<T: Sync, B: Backend>(
    blocks: &[T],
    forward: impl Fn(&T) -> Tensor<B, 2> + Sync,
) -> Option<Tensor<B, 2>> {
    use rayon::prelude::*;
    let partials: Vec<Tensor<B, 2>> = if blocks.len() < 2 {
        blocks.iter().map(&forward).collect()
    } else {
        blocks.par_iter().map(&forward).collect()
    };
    partials.into_iter().reduce(|sum, partial| sum + partial)
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

/// A group of attention heads: their query, key and value columns fused
/// into one matmul, and the rows of the output projection that read them.
#[derive(Debug)]
struct HeadGroup<B: Backend> {
    heads: usize,
    /// `[HIDDEN, 3 · heads · HEAD_DIM]`: queries, then keys, then values.
    qkv: Tensor<B, 2>,
    qkv_bias: Tensor<B, 1>,
    /// `[heads · HEAD_DIM, HIDDEN]`.
    out: Tensor<B, 2>,
}

impl<B: Backend> HeadGroup<B> {
    /// This group's share of the attention output (before the bias).
    fn forward(&self, hidden: &Tensor<B, 2>, key_bias: &Tensor<B, 4>, rows: usize, seq: usize) -> Tensor<B, 2> {
        let width = self.heads * HEAD_DIM;
        let qkv = hidden.clone().matmul(self.qkv.clone()) + self.qkv_bias.clone().unsqueeze_dim(0);
        let split = |part: usize| {
            qkv.clone()
                .slice([0..rows * seq, part * width..(part + 1) * width])
                .reshape([rows, seq, self.heads, HEAD_DIM])
                .swap_dims(1, 2)
        };
        let (query, key, value) = (split(0), split(1), split(2));
        let scale = 1.0 / (HEAD_DIM as f64).sqrt();
        let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(scale) + key_bias.clone();
        let context = softmax(scores, 3)
            .matmul(value)
            .swap_dims(1, 2)
            .reshape([rows * seq, width]);
        context.matmul(self.out.clone())
    }
}

/// A block of the feed-forward's inner width: its columns of the up
/// projection and its rows of the down projection. GELU works element by
/// element, so blocks never need each other's values.
#[derive(Debug)]
struct FeedForwardBlock<B: Backend> {
    /// `[HIDDEN, width]`.
    up: Tensor<B, 2>,
    up_bias: Tensor<B, 1>,
    /// `[width, HIDDEN]`.
    down: Tensor<B, 2>,
}

impl<B: Backend> FeedForwardBlock<B> {
    /// This block's share of the feed-forward output (before the bias).
    fn forward(&self, hidden: &Tensor<B, 2>) -> Tensor<B, 2> {
        let inner = gelu(hidden.clone().matmul(self.up.clone()) + self.up_bias.clone().unsqueeze_dim(0));
        inner.matmul(self.down.clone())
    }
}

/// One transformer layer, its weights cut into blocks that run in
/// parallel (Megatron-style): each block computes a partial output from the
/// whole input, and the partials are summed. One block is the plain layer.
#[derive(Debug)]
struct Layer<B: Backend> {
    attention: Vec<HeadGroup<B>>,
    attention_bias: Tensor<B, 1>,
    attention_norm: LayerNorm<B>,
    feed_forward: Vec<FeedForwardBlock<B>>,
    output_bias: Tensor<B, 1>,
    output_norm: LayerNorm<B>,
}

impl<B: Backend> Layer<B> {
    fn forward(&self, hidden: Tensor<B, 2>, key_bias: &Tensor<B, 4>, rows: usize, seq: usize) -> Option<Tensor<B, 2>> {
        let attended = sum_blocks(&self.attention, |group| group.forward(&hidden, key_bias, rows, seq))?;
        let hidden = self
            .attention_norm
            .forward(attended + self.attention_bias.clone().unsqueeze_dim(0) + hidden);
        let expanded = sum_blocks(&self.feed_forward, |block| block.forward(&hidden))?;
        Some(
            self.output_norm
                .forward(expanded + self.output_bias.clone().unsqueeze_dim(0) + hidden),
        )
    }
}

/// The encoder with its weights on one device.
///
/// The embedding tables stay in host memory: a batch needs a few hundred of
/// their 30,522 rows, and gathering those rows in plain Rust costs
/// microseconds where a tensor `select` over the 47 MB table cost
/// milliseconds per request.
pub struct MiniLm<B: Backend> {
    embeddings: Embeddings,
    embedding_norm: LayerNorm<B>,
    layers: Vec<Layer<B>>,
    device: B::Device,
    /// Set for backends that compile kernels per input shape (CUDA): the
    /// largest batch and message the node sends, whose bucketed shapes
    /// [`MiniLm::warm_up`] compiles before the first request.
    buckets: Option<ShapeLimit>,
}

/// Upper bounds of the shapes a bucketed model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimit {
    pub rows: usize,
    pub tokens: usize,
}

/// Sequence lengths a bucketed batch is padded to.
const LENGTH_BUCKETS: [usize; 7] = [8, 16, 32, 64, 128, 256, MAX_POSITIONS];
/// `[CLS]` and `[SEP]` in the model's vocabulary: the filler row that pads a
/// bucketed batch to its row count, and the ends of warm-up sequences.
const CLS: u32 = 101;
const SEP: u32 = 102;

/// The bucketed length for `seq` tokens.
fn length_bucket(seq: usize) -> usize {
    LENGTH_BUCKETS.iter().copied().find(|&bucket| bucket >= seq).unwrap_or(seq)
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

/// The embedding tables, in host memory: a token's input vector is its
/// word's row plus its position's row plus segment A's row.
pub(crate) struct Embeddings {
    /// `[VOCAB, HIDDEN]`, row-major.
    word: Vec<f32>,
    /// `[MAX_POSITIONS, HIDDEN]`, row-major.
    position: Vec<f32>,
    /// Row 0 of the token-type table: every token is segment A.
    token_type: Vec<f32>,
}

impl Embeddings {
    pub(crate) fn read(weights: &SafeTensors<'_>) -> Result<Embeddings, EncoderError> {
        let mut token_type = read_values(weights, "embeddings.token_type_embeddings.weight", &[2, HIDDEN])?;
        token_type.truncate(HIDDEN);
        Ok(Embeddings {
            word: read_values(weights, "embeddings.word_embeddings.weight", &[VOCAB, HIDDEN])?,
            position: read_values(weights, "embeddings.position_embeddings.weight", &[MAX_POSITIONS, HIDDEN])?,
            token_type,
        })
    }

    /// Writes the input vector of token `id` at `position` into `out`
    /// (`HIDDEN` long).
    pub(crate) fn gather(&self, id: u32, position: usize, out: &mut [f32]) -> Result<(), EncoderError> {
        let id = id as usize;
        if id >= VOCAB {
            return Err(EncoderError::Tokenizer(format!("token id {id} is outside the vocabulary")));
        }
        if position >= MAX_POSITIONS {
            return Err(EncoderError::TooLong { tokens: position + 1 });
        }
        let word = &self.word[id * HIDDEN..(id + 1) * HIDDEN];
        let place = &self.position[position * HIDDEN..(position + 1) * HIDDEN];
        for (((value, w), p), t) in out.iter_mut().zip(word).zip(place).zip(&self.token_type) {
            *value = w + p + t;
        }
        Ok(())
    }
}

/// Reads one f32 tensor's values, checking its shape.
pub(crate) fn read_values(
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

/// A Linear layer's weight, transposed to `[in, out]`, and its bias.
fn linear<B: Backend>(
    weights: &SafeTensors<'_>,
    prefix: &str,
    inputs: usize,
    outputs: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 2>, Tensor<B, 1>), EncoderError> {
    // Hugging Face stores Linear weights as [out, in]. Transpose once and
    // materialise the result (blocks are cut from it and made contiguous):
    // a transposed *view* would be copied by every matmul, on every request.
    let weight: Tensor<B, 2> = read(weights, &format!("{prefix}.weight"), [outputs, inputs], device)?;
    Ok((
        weight.transpose(),
        read(weights, &format!("{prefix}.bias"), [outputs], device)?,
    ))
}

/// The largest divisor of `n` that is at most `limit` (at least 1).
fn largest_divisor_at_most(n: usize, limit: usize) -> usize {
    (1..=limit.max(1)).rev().find(|d| n.is_multiple_of(*d)).unwrap_or(1)
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
    /// Loads the weights from the bytes of `model.safetensors`, each layer
    /// whole (one block): the layout for GPUs.
    pub fn load(bytes: &[u8], device: &B::Device) -> Result<MiniLm<B>, EncoderError> {
        MiniLm::load_in_blocks(bytes, device, 1)
    }

    /// Loads the weights with each layer cut into about `blocks` blocks that
    /// run in parallel: attention by groups of heads (a divisor of 12), the
    /// feed-forward by slices of its inner width. For CPU backends, whose
    /// matmuls keep the small products of one message on one core.
    pub fn load_in_blocks(bytes: &[u8], device: &B::Device, blocks: usize) -> Result<MiniLm<B>, EncoderError> {
        let weights = SafeTensors::deserialize(bytes)
            .map_err(|err| EncoderError::Weights(format!("not a safetensors file: {err}")))?;
        let groups = largest_divisor_at_most(HEADS, blocks);
        let heads = HEADS / groups;
        let head_width = heads * HEAD_DIM;
        let slices = largest_divisor_at_most(FEED_FORWARD, blocks);
        let slice_width = FEED_FORWARD / slices;
        let mut layers = Vec::with_capacity(LAYERS);
        for index in 0..LAYERS {
            let prefix = format!("encoder.layer.{index}");
            let attention = format!("{prefix}.attention");
            let (query, query_bias) = linear::<B>(&weights, &format!("{attention}.self.query"), HIDDEN, HIDDEN, device)?;
            let (key, key_bias) = linear::<B>(&weights, &format!("{attention}.self.key"), HIDDEN, HIDDEN, device)?;
            let (value, value_bias) = linear::<B>(&weights, &format!("{attention}.self.value"), HIDDEN, HIDDEN, device)?;
            let (out, attention_bias) =
                linear::<B>(&weights, &format!("{attention}.output.dense"), HIDDEN, HIDDEN, device)?;
            let (up, up_bias) =
                linear::<B>(&weights, &format!("{prefix}.intermediate.dense"), HIDDEN, FEED_FORWARD, device)?;
            let (down, output_bias) =
                linear::<B>(&weights, &format!("{prefix}.output.dense"), FEED_FORWARD, HIDDEN, device)?;
            let attention_groups = (0..groups)
                .map(|group| {
                    let columns = group * head_width..(group + 1) * head_width;
                    let cut = |weight: &Tensor<B, 2>| weight.clone().slice([0..HIDDEN, columns.clone()]);
                    let cut_bias = |bias: &Tensor<B, 1>| bias.clone().slice([columns.clone()]);
                    HeadGroup {
                        heads,
                        qkv: contiguous(Tensor::cat(vec![cut(&query), cut(&key), cut(&value)], 1), device),
                        qkv_bias: contiguous(
                            Tensor::cat(vec![cut_bias(&query_bias), cut_bias(&key_bias), cut_bias(&value_bias)], 0),
                            device,
                        ),
                        out: contiguous(out.clone().slice([columns.clone(), 0..HIDDEN]), device),
                    }
                })
                .collect();
            let feed_forward = (0..slices)
                .map(|slice| {
                    let inner = slice * slice_width..(slice + 1) * slice_width;
                    FeedForwardBlock {
                        up: contiguous(up.clone().slice([0..HIDDEN, inner.clone()]), device),
                        up_bias: contiguous(up_bias.clone().slice([inner.clone()]), device),
                        down: contiguous(down.clone().slice([inner, 0..HIDDEN]), device),
                    }
                })
                .collect();
            layers.push(Layer {
                attention: attention_groups,
                attention_bias,
                attention_norm: layer_norm(&weights, &format!("{attention}.output.LayerNorm"), device)?,
                feed_forward,
                output_bias,
                output_norm: layer_norm(&weights, &format!("{prefix}.output.LayerNorm"), device)?,
            });
        }
        Ok(MiniLm {
            embeddings: Embeddings::read(&weights)?,
            embedding_norm: layer_norm(&weights, "embeddings.LayerNorm", device)?,
            layers,
            device: device.clone(),
            buckets: None,
        })
    }

    /// Pads every batch to a few shapes: rows to a power of two, tokens to
    /// 8, 16, 32, ... 512. For backends that compile and autotune kernels
    /// the first time they meet a shape (burn's CUDA backend): without
    /// buckets, every new message length compiled new kernels inside a
    /// request (a 223 ms p99 on an H100). `limit` bounds the shapes that
    /// [`MiniLm::warm_up`] compiles ahead.
    pub fn with_shape_buckets(mut self, limit: ShapeLimit) -> MiniLm<B> {
        self.buckets = Some(limit);
        self
    }

    /// Runs one pass at every bucketed shape up to the limit, so that no
    /// request pays for compiling kernels. Returns the number of shapes; 0
    /// for a model without buckets.
    pub fn warm_up(&self) -> Result<usize, EncoderError> {
        let Some(limit) = self.buckets else {
            return Ok(0);
        };
        let max_rows = limit.rows.max(1).next_power_of_two();
        let max_tokens = length_bucket(limit.tokens.clamp(2, MAX_POSITIONS));
        let mut shapes = 0;
        let mut rows = 1;
        while rows <= max_rows {
            for &tokens in LENGTH_BUCKETS.iter().filter(|&&bucket| bucket <= max_tokens) {
                let mut sequence = vec![CLS; tokens];
                sequence[tokens - 1] = SEP;
                self.encode(&vec![sequence; rows])?;
                shapes += 1;
            }
            rows *= 2;
        }
        Ok(shapes)
    }

    /// Encodes a batch of token-id sequences (each with its `[CLS]` and
    /// `[SEP]`) into L2-normalised sentence vectors, one per sequence.
    /// Sequences are padded to the batch's longest, not to a fixed length:
    /// cost grows with the tokens actually there.
    pub fn encode(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let wanted = batch.len();
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        if wanted == 0 || longest == 0 {
            return Ok(vec![Vec::new(); wanted]);
        }
        if longest > MAX_POSITIONS {
            return Err(EncoderError::TooLong { tokens: longest });
        }
        let (rows, seq) = match self.buckets {
            Some(_) => (wanted.next_power_of_two(), length_bucket(longest)),
            None => (wanted, longest),
        };
        let filler = [CLS, SEP];
        let sequences = batch
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::repeat_n(&filler[..], rows - wanted));
        // Embeddings gathered on the host: word + position + segment A for
        // every (sequence, position), flattened to [rows * seq, hidden].
        // Padding positions get zeros; the mask keeps them out of attention
        // and pooling.
        let mut embedded = vec![0.0_f32; rows * seq * HIDDEN];
        let mut mask = Vec::with_capacity(rows * seq);
        for (sequence, out) in sequences.zip(embedded.chunks_exact_mut(seq * HIDDEN)) {
            for (position, slot) in out.chunks_exact_mut(HIDDEN).enumerate() {
                let Some(&id) = sequence.get(position) else {
                    mask.push(0.0_f32);
                    continue;
                };
                self.embeddings.gather(id, position, slot)?;
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
        for layer in &self.layers {
            hidden = layer
                .forward(hidden, &key_bias, rows, seq)
                .ok_or_else(|| EncoderError::Weights("a layer without blocks".to_owned()))?;
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
        // Filler rows of a bucketed batch are dropped.
        Ok(values.chunks_exact(HIDDEN).take(wanted).map(<[f32]>::to_vec).collect())
    }
}
