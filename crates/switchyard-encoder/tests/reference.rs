//! Our encoders against reference embeddings computed independently
//! (float64 numpy, matching published all-MiniLM-L6-v2 values; the fixture
//! is a copy of `shared/fixtures/minilm_reference.json`), and against each
//! other: the CPU encoder in f32 and int8, and burn's (the GPU path).
//! Needs the weights: `models/fetch.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::path::PathBuf;

use serde_json::Value;
use switchyard_encoder::{
    CpuBackend, CpuMiniLm, Device, Encoder, EncoderFiles, EncoderSettings, HIDDEN, MiniLm, Precision, ShapeLimit,
    TextTokenizer, cosine,
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
    encoder_with(Precision::default())
}

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_ENCODER_DIR").map_or_else(
        || workspace().join(switchyard_encoder::DEFAULT_MODEL_DIR),
        PathBuf::from,
    )
}

/// `precision`: how the CPU encoder multiplies (the GPU ignores it).
fn encoder_with(precision: Precision) -> Encoder {
    let settings = EncoderSettings {
        model_dir: model_dir(),
        device: device(),
        precision,
        ..EncoderSettings::default()
    };
    Encoder::load(&settings).unwrap_or_else(|err| panic!("{err}"))
}

fn reference() -> Vec<Value> {
    // SWITCHYARD_SHARED (a directory with `fixtures/`) overrides the copy
    // kept beside this test, for runs from an unpacked test binary.
    let path = std::env::var_os("SWITCHYARD_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json"),
        |shared| PathBuf::from(shared).join("fixtures/minilm_reference.json"),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    fixture["sentences"].as_array().unwrap().clone()
}

/// Checks `encoder`'s token ids and vectors against the fixture; returns
/// the lowest cosine similarity.
fn lowest_cosine_to_reference(encoder: &Encoder, label: &str) -> f32 {
    let sentences = reference();
    assert_eq!(sentences.len(), 5);
    let mut lowest = f32::MAX;
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
        println!("{:?} {label} {text:?}: cosine {similarity:.7}, max |diff| {worst:.2e}", device());
        lowest = lowest.min(similarity);
    }
    lowest
}

#[test]
fn embeddings_match_the_reference_within_cosine_0_999() {
    // On the GPU both settings run burn's f32 model.
    let lowest = lowest_cosine_to_reference(&encoder_with(Precision::F32), "f32");
    assert!(lowest >= 0.999, "lowest cosine {lowest}");
}

#[test]
fn int8_embeddings_stay_within_cosine_0_99_of_the_reference() {
    let lowest = lowest_cosine_to_reference(&encoder_with(Precision::Int8), "int8");
    assert!(lowest >= 0.99, "lowest cosine {lowest}");
}

/// Texts of the kinds the router sees, of several lengths.
fn sample_texts() -> Vec<String> {
    let mut texts: Vec<String> = reference().iter().map(|s| s["text"].as_str().unwrap().to_owned()).collect();
    texts.extend(
        [
            "fix it",
            "do the same for London",
            "Write a Python function that parses an ISO-8601 timestamp and returns the number of seconds since the epoch; handle time zones.",
            "Why does my Rust code fail with `borrowed value does not live long enough` when I push a &str into a Vec inside the loop?",
            "Book a table for four at an Italian restaurant in San Jose tomorrow at 7pm, somewhere with outdoor seating if possible.",
            "Summarise the attached quarterly report in three bullet points for the board, focusing on revenue, churn and hiring.",
            "what's the weather like in Paris this weekend",
            "Translate into French: the meeting is moved to Thursday afternoon, please bring the signed contracts.",
        ]
        .map(str::to_owned),
    );
    texts.push("a long message that repeats itself. ".repeat(30));
    texts
}

fn cpu_model(precision: Precision) -> (CpuMiniLm, TextTokenizer) {
    let files = EncoderFiles::load(&model_dir()).unwrap();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer_path).unwrap();
    (CpuMiniLm::load(&files.model, precision).unwrap(), tokenizer)
}

#[test]
fn the_cpu_encoder_in_f32_matches_burns_model() {
    let (native, tokenizer) = cpu_model(Precision::F32);
    let files = EncoderFiles::load(&model_dir()).unwrap();
    let burn = MiniLm::<CpuBackend>::load(&files.model, &Default::default()).unwrap();
    let batch: Vec<Vec<u32>> = sample_texts().iter().map(|t| tokenizer.model_input(t, 256).unwrap()).collect();
    let ours = native.encode(&batch).unwrap();
    let theirs = burn.encode(&batch).unwrap();
    assert_eq!(ours.len(), batch.len());
    for ((a, b), ids) in ours.iter().zip(&theirs).zip(&batch) {
        let similarity = cosine(a, b);
        assert!(similarity > 0.99999, "{} tokens: cosine {similarity}", ids.len());
    }
}

#[test]
fn int8_stays_within_cosine_0_99_of_f32_on_router_texts() {
    let (float, tokenizer) = cpu_model(Precision::F32);
    let (int8, _) = cpu_model(Precision::Int8);
    let batch: Vec<Vec<u32>> = sample_texts().iter().map(|t| tokenizer.model_input(t, 256).unwrap()).collect();
    let exact = float.encode(&batch).unwrap();
    let quantized = int8.encode(&batch).unwrap();
    let lowest = exact
        .iter()
        .zip(&quantized)
        .map(|(a, b)| cosine(a, b))
        .fold(f32::MAX, f32::min);
    println!("int8 against f32: lowest cosine {lowest:.5} over {} texts", batch.len());
    assert!(lowest >= 0.99, "lowest cosine {lowest}");
}

#[test]
fn the_cpu_encoder_gives_a_sequence_the_same_vector_alone_or_in_a_batch() {
    for precision in [Precision::F32, Precision::Int8] {
        let (model, tokenizer) = cpu_model(precision);
        let mut batch: Vec<Vec<u32>> = sample_texts().iter().map(|t| tokenizer.model_input(t, 256).unwrap()).collect();
        // An empty sequence takes no rows and gets an empty vector.
        batch.insert(2, Vec::new());
        let together = model.encode(&batch).unwrap();
        assert_eq!(together.len(), batch.len());
        assert!(together[2].is_empty());
        for (ids, batched) in batch.iter().zip(&together).filter(|(ids, _)| !ids.is_empty()) {
            let alone = &model.encode(std::slice::from_ref(ids)).unwrap()[0];
            // Int8 rows are quantized one by one: a row's neighbours never
            // change it, so batching is exact in both precisions.
            assert!(cosine(alone, batched) > 0.99999, "{precision:?}, {} tokens", ids.len());
            let norm: f32 = batched.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        }
    }
}

#[test]
fn the_cpu_encoder_refuses_what_the_model_cannot_read() {
    let (model, _) = cpu_model(Precision::Int8);
    let too_long = vec![101_u32; 513];
    assert!(matches!(
        model.encode(&[too_long]),
        Err(switchyard_encoder::EncoderError::TooLong { tokens: 513 })
    ));
    assert!(matches!(
        model.encode(&[vec![101, 40_000, 102]]),
        Err(switchyard_encoder::EncoderError::Tokenizer(_))
    ));
    assert_eq!(model.encode(&[]).unwrap(), Vec::<Vec<f32>>::new());
}

#[test]
fn every_block_layout_of_burns_model_gives_the_same_vectors() {
    let files = EncoderFiles::load(&model_dir()).unwrap();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer_path).unwrap();
    let device = Default::default();
    let batch: Vec<Vec<u32>> = reference()
        .iter()
        .map(|s| tokenizer.model_input(s["text"].as_str().unwrap(), 256).unwrap())
        .collect();
    let whole = MiniLm::<CpuBackend>::load(&files.model, &device).unwrap().encode(&batch).unwrap();
    // 5 and 7 divide neither 12 heads nor 1536: the nearest smaller divisors
    // are used.
    for blocks in [2, 3, 5, 7, 8, 16] {
        let cut = MiniLm::<CpuBackend>::load_in_blocks(&files.model, &device, blocks)
            .unwrap()
            .encode(&batch)
            .unwrap();
        for (a, b) in whole.iter().zip(&cut) {
            let similarity = cosine(a, b);
            assert!(similarity > 0.99999, "{blocks} blocks: cosine {similarity}");
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
    // All at once (burn's model, on the GPU, pads to the longest).
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
