//! all-MiniLM-L6-v2 on the CPU, in plain Rust over rten's kernels: the
//! node's CPU encoder.
//!
//! The network is the one in [`crate::minilm`] (which stays the GPU path and
//! the reference this one is tested against). It is written again here,
//! without a tensor framework, because on a CPU a short message is too small
//! for per-operation overhead to hide: burn's pass over a 34-token message
//! took ~10 ms on 2 cores, where its matrix products alone take ~3.7 ms
//! (f32) and ~1.5 ms (int8) in `rten-gemm` (BENCHMARKS.md, "Classifier
//! figures").
//!
//! - Products: `rten-gemm`, with every weight matrix packed once, at load.
//! - [`Precision::Int8`] (the default): each Linear's weights are 8-bit,
//!   symmetric, with one scale per output column; its input is quantized per
//!   row on the fly (asymmetric, u8), multiplied into i32 (AVX-512 VNNI where
//!   the CPU has it) and scaled back to f32. Sums, LayerNorm, GELU, softmax
//!   and attention stay in f32. A quarter of the weight bytes: the six
//!   layers (10.6 MB) stay in a shared L3 cache that their 42 MB in f32
//!   overflow.
//! - GELU (exact, erf), softmax, LayerNorm and quantization:
//!   `rten-vecmath`'s vectorised kernels.
//! - No padding: a batch's sequences are laid end to end, row after row, and
//!   attention runs per sequence over its own tokens, so a batch costs the
//!   tokens it has.

use rayon::prelude::*;
use rten_gemm::{BiasVector, GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix};
use rten_simd::{SimdOp, SimdUnaryOp};
use rten_tensor::NdTensorView;
use rten_vecmath::{ExtendInit, Gelu, MinMax, Normalize, NormalizeOptions, Quantize, Softmax, Sum, SumSquareSub};
use safetensors::SafeTensors;

use crate::EncoderError;
use crate::minilm::{
    Embeddings, FEED_FORWARD, HEAD_DIM, HEADS, HIDDEN, LAYER_NORM_EPS, LAYERS, MAX_POSITIONS, read_values,
};

/// How the encoder's Linear layers multiply on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 8-bit weights and activations, i32 sums (the default: ~2.5x faster
    /// products; embeddings within cosine 0.99 of f32, see the tests).
    #[default]
    Int8,
    /// The weights as published.
    F32,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::F32 => "f32",
        }
    }

    /// Passes of at most this many tokens run on the calling thread alone;
    /// larger ones on a pool of one thread per core.
    ///
    /// Measured on 2 cores (BENCHMARKS.md, "Classifier figures"): in int8 a
    /// 34-token pass is as fast on one core as on two, and after an idle
    /// gap, when the second core must be woken, faster on one; from ~128
    /// tokens two cores win (11.9 against 16.7 ms). In f32 the products are
    /// heavier and two cores win from the first token (32 tokens: 5.6
    /// against 9.8 ms).
    fn small_pass_tokens(self) -> usize {
        match self {
            Precision::Int8 => 64,
            Precision::F32 => 0,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Precision, String> {
        match text {
            "int8" => Ok(Precision::Int8),
            "f32" => Ok(Precision::F32),
            other => Err(format!("unknown precision `{other}`; expected int8 or f32")),
        }
    }
}

/// Largest magnitude of an 8-bit weight. Without VNNI, x86's `vpmaddubsw`
/// adds two u8×i8 products into an i16 that can saturate; weights of 7 bits
/// (±63) keep it exact, as ONNX Runtime's `reduce_range` does.
fn weight_limit(may_saturate: bool) -> f32 {
    if may_saturate { 63.0 } else { 127.0 }
}

fn gemm_error(err: rten_gemm::GemmError) -> EncoderError {
    EncoderError::Compute(format!("matrix product: {err}"))
}

/// The two product kernels; a packed matrix is used with the executor that
/// packed it.
struct Gemms {
    float: GemmExecutor<f32, f32, f32>,
    int8: GemmExecutor<u8, i8, i32>,
}

impl Gemms {
    /// The best kernels this CPU has (picked at run time).
    fn new() -> Gemms {
        Gemms {
            float: GemmExecutor::default(),
            int8: GemmExecutor::default(),
        }
    }
}

enum Weights {
    Float(PackedBMatrix<f32>),
    Int8 {
        packed: PackedBMatrix<i8>,
        /// One per output column: weight = scale · q.
        scales: Vec<f32>,
        /// Σ_k q[k, column]: the input zero points' share of each sum.
        column_sums: Vec<i32>,
    },
}

/// `y = x·W + b` with `W` as `[inputs, outputs]`.
struct Linear {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// From Hugging Face's `[outputs, inputs]` layout.
    fn new(gemms: &Gemms, precision: Precision, weight: &[f32], bias: Vec<f32>, inputs: usize, outputs: usize) -> Linear {
        let mut transposed = vec![0.0_f32; inputs * outputs];
        for (output, row) in weight.chunks_exact(inputs).enumerate() {
            for (input, &value) in row.iter().enumerate() {
                transposed[input * outputs + output] = value;
            }
        }
        let weights = match precision {
            Precision::F32 => {
                Weights::Float(gemms.float.prepack_b(NdTensorView::from_data([inputs, outputs], transposed.as_slice())))
            }
            Precision::Int8 => {
                let limit = weight_limit(gemms.int8.may_saturate());
                let scales: Vec<f32> = weight
                    .chunks_exact(inputs)
                    .map(|row| {
                        let largest = row.iter().fold(0.0_f32, |max, value| max.max(value.abs()));
                        if largest > 0.0 { largest / limit } else { 1.0 }
                    })
                    .collect();
                let quantized: Vec<i8> = transposed
                    .iter()
                    .enumerate()
                    .map(|(index, &value)| (value / scales[index % outputs]).round().clamp(-limit, limit) as i8)
                    .collect();
                let mut column_sums = vec![0_i32; outputs];
                for row in quantized.chunks_exact(outputs) {
                    for (sum, &q) in column_sums.iter_mut().zip(row) {
                        *sum += i32::from(q);
                    }
                }
                Weights::Int8 {
                    packed: gemms.int8.prepack_b(NdTensorView::from_data([inputs, outputs], quantized.as_slice())),
                    scales,
                    column_sums,
                }
            }
        };
        Linear {
            weights,
            bias,
            inputs,
            outputs,
        }
    }

    /// `input` is `[rows, inputs]`; returns `[rows, outputs]`.
    fn forward(&self, gemms: &Gemms, input: &[f32], rows: usize) -> Result<Vec<f32>, EncoderError> {
        let mut output = vec![0.0_f32; rows * self.outputs];
        match &self.weights {
            Weights::Float(packed) => {
                gemms
                    .float
                    .gemm(
                        &mut output,
                        GemmInputA::Unpacked(NdTensorView::from_data([rows, self.inputs], input)),
                        GemmInputB::Packed(packed),
                        GemmOptions {
                            bias: Some(BiasVector::Row(&self.bias)),
                            ..GemmOptions::default()
                        },
                    )
                    .map_err(gemm_error)?;
            }
            Weights::Int8 {
                packed,
                scales,
                column_sums,
            } => {
                let quantized = quantize_rows(input, self.inputs);
                // Raw sums Σ_k q_x·q_w, zero points left out: rten-gemm
                // 0.27 applies the first row tile's input zero points to
                // every row tile (rows 8-15 of a 16-row product came out
                // wrong), so they are subtracted here instead, exactly:
                // Σ_k (q_x − z)·q_w = Σ_k q_x·q_w − z·Σ_k q_w.
                let mut sums = vec![0_i32; rows * self.outputs];
                gemms
                    .int8
                    .gemm(
                        &mut sums,
                        GemmInputA::Unpacked(NdTensorView::from_data([rows, self.inputs], quantized.values.as_slice())),
                        GemmInputB::Packed(packed),
                        GemmOptions::default(),
                    )
                    .map_err(gemm_error)?;
                for (((out, sums), row_scale), &zero_point) in output
                    .chunks_exact_mut(self.outputs)
                    .zip(sums.chunks_exact(self.outputs))
                    .zip(&quantized.scales)
                    .zip(&quantized.zero_points)
                {
                    let zero_point = i32::from(zero_point);
                    for ((((out, &sum), column_scale), bias), column_sum) in
                        out.iter_mut().zip(sums).zip(scales).zip(&self.bias).zip(column_sums)
                    {
                        *out = (sum - zero_point * column_sum) as f32 * (row_scale * column_scale) + bias;
                    }
                }
            }
        }
        Ok(output)
    }
}

/// Rows quantized to u8: `x ≈ scale · (q − zero_point)`, each row on its own
/// range (which always holds 0, so that 0 is exact).
struct QuantizedRows {
    values: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<u8>,
}

fn quantize_rows(input: &[f32], width: usize) -> QuantizedRows {
    let rows = input.len() / width;
    let mut quantized = QuantizedRows {
        values: Vec::with_capacity(input.len()),
        scales: Vec::with_capacity(rows),
        zero_points: Vec::with_capacity(rows),
    };
    for row in input.chunks_exact(width) {
        let (low, high) = MinMax::new(row).dispatch();
        let (low, high) = (low.min(0.0), high.max(0.0));
        let scale = if high > low && (high - low).is_finite() { (high - low) / 255.0 } else { 1.0 };
        let zero_point = (-low / scale).round().clamp(0.0, 255.0) as u8;
        let inverse = 1.0 / scale;
        quantized
            .values
            .extend_init(|spare| Quantize::new(row, &mut spare[..width], inverse, zero_point).dispatch());
        quantized.scales.push(scale);
        quantized.zero_points.push(zero_point);
    }
    quantized
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNorm {
    fn read(weights: &SafeTensors<'_>, prefix: &str) -> Result<LayerNorm, EncoderError> {
        Ok(LayerNorm {
            gamma: read_values(weights, &format!("{prefix}.weight"), &[HIDDEN])?,
            beta: read_values(weights, &format!("{prefix}.bias"), &[HIDDEN])?,
        })
    }

    /// Normalises every `[HIDDEN]` row of `rows` in place.
    fn apply(&self, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(HIDDEN) {
            let mean = Sum::new(row).dispatch() / HIDDEN as f32;
            let variance = SumSquareSub::new(row, mean).dispatch() / HIDDEN as f32;
            Normalize::new_mut(
                row,
                NormalizeOptions {
                    pre_scale_bias: mean,
                    scale: 1.0 / (variance + LAYER_NORM_EPS as f32).sqrt(),
                    element_scale: Some(&self.gamma),
                    bias: 0.0,
                    element_bias: Some(&self.beta),
                },
            )
            .dispatch();
        }
    }
}

struct Layer {
    /// Query, key and value fused: `[HIDDEN, 3 · HIDDEN]`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
}

/// Where one sequence's tokens sit among the batch's rows.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Layer {
    fn read(weights: &SafeTensors<'_>, gemms: &Gemms, precision: Precision, index: usize) -> Result<Layer, EncoderError> {
        let prefix = format!("encoder.layer.{index}");
        let attention = format!("{prefix}.attention");
        let matrix = |name: &str, rows: usize, cols: usize| read_values(weights, &format!("{name}.weight"), &[rows, cols]);
        let vector = |name: &str, len: usize| read_values(weights, &format!("{name}.bias"), &[len]);
        let mut qkv_weight = Vec::with_capacity(3 * HIDDEN * HIDDEN);
        let mut qkv_bias = Vec::with_capacity(3 * HIDDEN);
        for part in ["query", "key", "value"] {
            let name = format!("{attention}.self.{part}");
            // [out, in] rows stack: the fused matrix's outputs are the
            // queries, then the keys, then the values.
            qkv_weight.extend(matrix(&name, HIDDEN, HIDDEN)?);
            qkv_bias.extend(vector(&name, HIDDEN)?);
        }
        let linear = |name: &str, inputs: usize, outputs: usize| -> Result<Linear, EncoderError> {
            Ok(Linear::new(
                gemms,
                precision,
                &matrix(name, outputs, inputs)?,
                vector(name, outputs)?,
                inputs,
                outputs,
            ))
        };
        Ok(Layer {
            qkv: Linear::new(gemms, precision, &qkv_weight, qkv_bias, HIDDEN, 3 * HIDDEN),
            attention_out: linear(&format!("{attention}.output.dense"), HIDDEN, HIDDEN)?,
            attention_norm: LayerNorm::read(weights, &format!("{attention}.output.LayerNorm"))?,
            up: linear(&format!("{prefix}.intermediate.dense"), HIDDEN, FEED_FORWARD)?,
            down: linear(&format!("{prefix}.output.dense"), FEED_FORWARD, HIDDEN)?,
            output_norm: LayerNorm::read(weights, &format!("{prefix}.output.LayerNorm"))?,
        })
    }

    fn forward(&self, gemms: &Gemms, hidden: &mut Vec<f32>, spans: &[Span]) -> Result<(), EncoderError> {
        let rows = hidden.len() / HIDDEN;
        let qkv = self.qkv.forward(gemms, hidden, rows)?;
        let context = attention(gemms, &qkv, spans, rows)?;
        let mut attended = self.attention_out.forward(gemms, &context, rows)?;
        add_into(&mut attended, hidden);
        self.attention_norm.apply(&mut attended);
        let mut inner = self.up.forward(gemms, &attended, rows)?;
        // GELU is element by element: split the work over the cores.
        inner
            .par_chunks_mut(FEED_FORWARD * 8)
            .for_each(|chunk| Gelu {}.map_mut(chunk));
        let mut output = self.down.forward(gemms, &inner, rows)?;
        add_into(&mut output, &attended);
        self.output_norm.apply(&mut output);
        *hidden = output;
        Ok(())
    }
}

fn add_into(target: &mut [f32], residual: &[f32]) {
    for (value, residual) in target.iter_mut().zip(residual) {
        *value += residual;
    }
}

/// Multi-head self-attention over each sequence's own tokens: `qkv` is
/// `[rows, 3 · HIDDEN]`, the result `[rows, HIDDEN]`, heads side by side.
fn attention(gemms: &Gemms, qkv: &[f32], spans: &[Span], rows: usize) -> Result<Vec<f32>, EncoderError> {
    let stride = 3 * HIDDEN;
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    let tasks: Vec<(Span, usize)> = spans
        .iter()
        .flat_map(|&span| (0..HEADS).map(move |head| (span, head)))
        .collect();
    // One (sequence, head) per task, each a [len, HEAD_DIM] block.
    let blocks = tasks
        .par_iter()
        .map(|&(span, head)| -> Result<Vec<f32>, EncoderError> {
            let view = |offset: usize, shape: [usize; 2], strides: [usize; 2]| {
                let start = span.start * stride + offset + head * HEAD_DIM;
                NdTensorView::from_data_with_strides(shape, &qkv[start..], strides)
                    .map_err(|err| EncoderError::Compute(format!("attention view: {err:?}")))
            };
            let len = span.len;
            let queries = view(0, [len, HEAD_DIM], [stride, 1])?;
            let keys_transposed = view(HIDDEN, [HEAD_DIM, len], [1, stride])?;
            let values = view(2 * HIDDEN, [len, HEAD_DIM], [stride, 1])?;
            let mut scores = vec![0.0_f32; len * len];
            gemms
                .float
                .gemm(
                    &mut scores,
                    GemmInputA::Unpacked(queries),
                    GemmInputB::Unpacked(keys_transposed),
                    GemmOptions {
                        alpha: scale,
                        ..GemmOptions::default()
                    },
                )
                .map_err(gemm_error)?;
            for row in scores.chunks_exact_mut(len) {
                Softmax::new_mut(row).dispatch();
            }
            let mut context = vec![0.0_f32; len * HEAD_DIM];
            gemms
                .float
                .gemm(
                    &mut context,
                    GemmInputA::Unpacked(NdTensorView::from_data([len, len], scores.as_slice())),
                    GemmInputB::Unpacked(values),
                    GemmOptions::default(),
                )
                .map_err(gemm_error)?;
            Ok(context)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut context = vec![0.0_f32; rows * HIDDEN];
    for (&(span, head), block) in tasks.iter().zip(&blocks) {
        for (position, values) in block.chunks_exact(HEAD_DIM).enumerate() {
            let start = (span.start + position) * HIDDEN + head * HEAD_DIM;
            context[start..start + HEAD_DIM].copy_from_slice(values);
        }
    }
    Ok(context)
}

/// The encoder, its weights packed for this CPU.
pub struct CpuMiniLm {
    gemms: Gemms,
    /// A one-thread pool made of the thread that loaded the model (the
    /// encoder thread), for small passes: inside it, rayon and rten see one
    /// thread and run everything in place. `None` if it could not be made.
    small: Option<rayon::ThreadPool>,
    /// A pool of one thread per core for larger passes: the whole pass
    /// goes to it at once, so each of its ~200 products and parallel loops
    /// is not handed from a foreign thread into rayon's pool one by one.
    large: Option<rayon::ThreadPool>,
    embeddings: Embeddings,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    precision: Precision,
}

impl std::fmt::Debug for CpuMiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuMiniLm")
            .field("precision", &self.precision)
            .field("int8_kernel", &self.gemms.int8.kernel_name())
            .field("f32_kernel", &self.gemms.float.kernel_name())
            .finish()
    }
}

impl CpuMiniLm {
    /// Loads and packs the weights from the bytes of `model.safetensors`.
    ///
    /// The calling thread becomes the one thread of the model's pool for
    /// small passes: load the model on the thread that will encode with it
    /// (the encoder thread does), and expect rayon work started from that
    /// thread afterwards to run there alone.
    pub fn load(bytes: &[u8], precision: Precision) -> Result<CpuMiniLm, EncoderError> {
        let weights = SafeTensors::deserialize(bytes)
            .map_err(|err| EncoderError::Weights(format!("not a safetensors file: {err}")))?;
        let gemms = Gemms::new();
        let layers = (0..LAYERS)
            .map(|index| Layer::read(&weights, &gemms, precision, index))
            .collect::<Result<Vec<_>, _>>()?;
        let small = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .use_current_thread()
            .thread_name(|_| "switchyard-encoder".to_owned())
            .build()
            .inspect_err(|err| tracing::warn!(error = %err, "no one-thread pool for small encoder passes"))
            .ok();
        let large = rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("switchyard-encoder-{index}"))
            .build()
            .inspect_err(|err| tracing::warn!(error = %err, "no thread pool for large encoder passes"))
            .ok();
        Ok(CpuMiniLm {
            small,
            large,
            embeddings: Embeddings::read(&weights)?,
            embedding_norm: LayerNorm::read(&weights, "embeddings.LayerNorm")?,
            layers,
            gemms,
            precision,
        })
    }

    /// The kernels this CPU got (`x86_64-u8i8i32-avx512`, say), for logs.
    pub fn kernels(&self) -> String {
        match self.precision {
            Precision::Int8 => format!("{} (f32: {})", self.gemms.int8.kernel_name(), self.gemms.float.kernel_name()),
            Precision::F32 => self.gemms.float.kernel_name().to_owned(),
        }
    }

    /// Encodes token-id sequences (each with its `[CLS]` and `[SEP]`) into
    /// L2-normalised sentence vectors, one per sequence.
    pub fn encode(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let tokens: usize = batch.iter().map(Vec::len).sum();
        let pool = if tokens <= self.precision.small_pass_tokens() { &self.small } else { &self.large };
        match pool {
            Some(pool) => pool.install(|| self.encode_here(batch)),
            None => self.encode_here(batch),
        }
    }

    fn encode_here(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut spans = Vec::with_capacity(batch.len());
        let mut start = 0;
        for sequence in batch {
            if sequence.len() > MAX_POSITIONS {
                return Err(EncoderError::TooLong { tokens: sequence.len() });
            }
            spans.push(Span {
                start,
                len: sequence.len(),
            });
            start += sequence.len();
        }
        let rows = start;
        if rows == 0 {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let mut hidden = vec![0.0_f32; rows * HIDDEN];
        for (sequence, span) in batch.iter().zip(&spans) {
            for (position, &id) in sequence.iter().enumerate() {
                let row = (span.start + position) * HIDDEN;
                self.embeddings.gather(id, position, &mut hidden[row..row + HIDDEN])?;
            }
        }
        self.embedding_norm.apply(&mut hidden);
        // Empty sequences take no rows; attention skips them.
        let real: Vec<Span> = spans.iter().copied().filter(|span| span.len > 0).collect();
        for layer in &self.layers {
            layer.forward(&self.gemms, &mut hidden, &real)?;
        }
        Ok(spans
            .iter()
            .map(|span| {
                if span.len == 0 {
                    return Vec::new();
                }
                let mut pooled = vec![0.0_f32; HIDDEN];
                for row in hidden[span.start * HIDDEN..(span.start + span.len) * HIDDEN].chunks_exact(HIDDEN) {
                    add_into(&mut pooled, row);
                }
                // The mean's direction is the sum's: normalising the sum
                // gives the same unit vector.
                let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                pooled.iter_mut().for_each(|v| *v /= norm);
                pooled
            })
            .collect())
    }
}

impl crate::BatchModel for CpuMiniLm {
    fn encode_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        self.encode(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_rows_reconstruct_within_half_a_step() {
        let input: Vec<f32> = (0..2 * 64).map(|i| ((i * 37) % 101) as f32 / 10.0 - 3.0).collect();
        let quantized = quantize_rows(&input, 64);
        assert_eq!(quantized.scales.len(), 2);
        for (index, row) in input.chunks_exact(64).enumerate() {
            let values = &quantized.values[index * 64..(index + 1) * 64];
            let (scale, zero) = (quantized.scales[index], quantized.zero_points[index]);
            for (x, &q) in row.iter().zip(values) {
                let back = scale * (f32::from(q) - f32::from(zero));
                assert!((back - x).abs() <= scale / 2.0 + 1e-6, "row {index}: {x} came back as {back}");
            }
        }
    }

    #[test]
    fn a_row_of_zeros_or_one_sign_keeps_zero_exact() {
        let zeros = quantize_rows(&[0.0; 8], 8);
        assert_eq!(zeros.scales, vec![1.0]);
        assert!(zeros.values.iter().all(|&q| q == zeros.zero_points[0]));
        let positive = quantize_rows(&[0.5, 1.0, 2.0, 4.0], 4);
        assert_eq!(positive.zero_points, vec![0], "the range is widened to hold 0");
        let negative = quantize_rows(&[-0.5, -1.0, -2.0, -4.0], 4);
        assert_eq!(negative.zero_points, vec![255]);
    }

    fn linear_pair(inputs: usize, outputs: usize) -> (Gemms, Vec<f32>, Vec<f32>) {
        let gemms = Gemms::new();
        let weight: Vec<f32> = (0..inputs * outputs).map(|i| (((i * 7919) % 97) as f32 - 48.0) / 50.0).collect();
        let bias: Vec<f32> = (0..outputs).map(|i| i as f32 / 10.0).collect();
        (gemms, weight, bias)
    }

    /// `x·Wᵀ + b` by hand, with `W` in `[outputs, inputs]`.
    fn reference(input: &[f32], weight: &[f32], bias: &[f32], inputs: usize) -> Vec<f32> {
        input
            .chunks_exact(inputs)
            .flat_map(|row| {
                weight
                    .chunks_exact(inputs)
                    .zip(bias)
                    .map(|(w, b)| row.iter().zip(w).map(|(x, w)| x * w).sum::<f32>() + b)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn float_linear_matches_the_product_by_hand() {
        let (gemms, weight, bias) = linear_pair(24, 10);
        let linear = Linear::new(&gemms, Precision::F32, &weight, bias.clone(), 24, 10);
        let input: Vec<f32> = (0..3 * 24).map(|i| (i as f32 * 0.37).sin()).collect();
        let ours = linear.forward(&gemms, &input, 3).unwrap();
        for (a, b) in ours.iter().zip(reference(&input, &weight, &bias, 24)) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn int8_linear_stays_close_to_the_product_by_hand() {
        let (gemms, weight, bias) = linear_pair(64, 16);
        let linear = Linear::new(&gemms, Precision::Int8, &weight, bias.clone(), 64, 16);
        let input: Vec<f32> = (0..4 * 64).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
        let ours = linear.forward(&gemms, &input, 4).unwrap();
        let expected = reference(&input, &weight, &bias, 64);
        let scale = expected.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&expected) {
            // Two 8-bit roundings over 64 terms: within 2% of the output's range.
            assert!((a - b).abs() < 0.02 * scale, "{a} vs {b} (range {scale})");
        }
    }
}
