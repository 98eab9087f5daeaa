//! Our encoder against reference embeddings computed independently
//! (float64 numpy, matching published all-MiniLM-L6-v2 values).
//! Needs the weights: `models/fetch.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::path::PathBuf;

use serde_json::Value;
use switchyard_encoder::{
    CpuBackend, Device, Encoder, EncoderFiles, EncoderSettings, HIDDEN, MiniLm, ShapeLimit, TextTokenizer, cosine,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `SWITCHYARD_TEST_DEVICE=cuda` runs these tests on the GPU (a build with
/// `--features cuda`); the CPU otherwise.
fn device() -> Device {
    match std::env::var("SWITCHYARD_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda,
        _ => Device::Cpu,
    }
}

fn encoder() -> Encoder {
    encoder_in_blocks(None)
}

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_ENCODER_DIR").map_or_else(
        || workspace().join(switchyard_encoder::DEFAULT_MODEL_DIR),
        PathBuf::from,
    )
}

/// `blocks`: how the CPU model's layers are cut (`None`: this machine's default).
fn encoder_in_blocks(blocks: Option<usize>) -> Encoder {
    let settings = EncoderSettings {
        model_dir: model_dir(),
        device: device(),
        weight_blocks: blocks,
        ..EncoderSettings::default()
    };
    Encoder::load(&settings).unwrap_or_else(|err| panic!("{err}"))
}

fn reference() -> Vec<Value> {
    // The shared fixtures sit beside the repository (../shared), or where
    // SWITCHYARD_SHARED points.
    let shared = std::env::var_os("SWITCHYARD_SHARED")
        .map_or_else(|| workspace().join("../shared"), PathBuf::from);
    let path = shared.join("fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    fixture["sentences"].as_array().unwrap().clone()
}

#[test]
fn embeddings_match_the_reference_within_cosine_0_999() {
    let encoder = encoder();
    let sentences = reference();
    assert_eq!(sentences.len(), 5);
    for sentence in &sentences {
        let text = sentence["text"].as_str().unwrap();
        let expected_ids: Vec<u32> = sentence["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        let ids = encoder.tokenizer().model_input(text, 256).unwrap();
        assert_eq!(ids, expected_ids, "token ids of {text:?}");
        let expected: Vec<f32> = sentence["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = &encoder.embed(&[text]).unwrap()[0];
        assert_eq!(ours.len(), HIDDEN);
        let similarity = cosine(ours, &expected);
        let worst = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        println!("{:?} {text:?}: cosine {similarity:.7}, max |diff| {worst:.2e}", device());
        assert!(similarity >= 0.999, "{text:?}: cosine {similarity}");
    }
}

#[test]
fn every_block_layout_gives_the_same_vectors() {
    let sentences = reference();
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    let whole = encoder_in_blocks(Some(1)).embed(&texts).unwrap();
    // 5 and 7 divide neither 12 heads nor 1536: the nearest smaller divisors
    // are used.
    for blocks in [2, 3, 4, 5, 7, 8, 12, 16] {
        let cut = encoder_in_blocks(Some(blocks)).embed(&texts).unwrap();
        for ((text, a), b) in texts.iter().zip(&whole).zip(&cut) {
            let similarity = cosine(a, b);
            assert!(similarity > 0.99999, "{blocks} blocks, {text:?}: cosine {similarity}");
        }
    }
}

#[test]
fn shape_buckets_pad_without_changing_a_vector_and_warm_up_every_shape() {
    // The CUDA layout (buckets), checked on the CPU backend: the padding
    // arithmetic is the same on every backend.
    let files = EncoderFiles::load(&model_dir()).unwrap();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer_path).unwrap();
    let device = Default::default();
    let plain = MiniLm::<CpuBackend>::load(&files.model, &device).unwrap();
    let bucketed = MiniLm::<CpuBackend>::load(&files.model, &device)
        .unwrap()
        .with_shape_buckets(ShapeLimit { rows: 4, tokens: 20 });
    let sentences = reference();
    // Three sequences: padded to 4 rows, and to 16 or 32 tokens.
    let batch: Vec<Vec<u32>> = sentences
        .iter()
        .take(3)
        .map(|s| tokenizer.model_input(s["text"].as_str().unwrap(), 256).unwrap())
        .collect();
    let expected = plain.encode(&batch).unwrap();
    let ours = bucketed.encode(&batch).unwrap();
    assert_eq!(ours.len(), 3, "filler rows are dropped");
    for (a, b) in expected.iter().zip(&ours) {
        assert!(cosine(a, b) > 0.99999, "cosine {}", cosine(a, b));
    }
    // Rows 1, 2, 4 × lengths 8, 16, 32 (20 tokens round up to 32).
    assert_eq!(bucketed.warm_up().unwrap(), 9);
    assert_eq!(plain.warm_up().unwrap(), 0);
}

#[test]
fn padding_in_a_batch_does_not_change_a_vector() {
    let encoder = encoder();
    let sentences = reference();
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    // All at once: padded to the longest of the batch.
    let together = encoder.embed(&texts).unwrap();
    let fresh = self::encoder();
    for (text, batched) in texts.iter().zip(&together) {
        let alone = &fresh.embed(&[text]).unwrap()[0];
        assert!(cosine(alone, batched) > 0.99999, "{text:?}");
    }
}

#[test]
fn the_cache_encodes_each_message_once() {
    let encoder = encoder();
    encoder.embed(&["first turn", "second turn"]).unwrap();
    encoder.embed(&["first turn", "second turn", "third turn"]).unwrap();
    let stats = encoder.cache_stats();
    assert_eq!((stats.hits, stats.misses), (2, 3));
}

#[test]
fn token_counts_are_the_tokenizers_and_stay_so_when_cached() {
    let encoder = encoder();
    let text = "Counting tokens of a pasted stack trace: NullPointerException at line 88";
    let expected = encoder.tokenizer().ids(text).unwrap().len();
    assert_eq!(encoder.count_tokens(text).unwrap(), expected);
    assert_eq!(encoder.count_tokens(text).unwrap(), expected);
    assert_eq!(encoder.count_tokens("").unwrap(), 0);
}
