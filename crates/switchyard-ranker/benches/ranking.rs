//! Ranking benchmark: one decision with the signals snapshot loaded, as the
//! `Ranker` actor makes it per request (`rank_now`), on the embedded
//! default config's routers with live prices, latency for every model and
//! two models cooling down. Each case is timed call by call, interleaved
//! round-robin so machine noise hits all cases alike; prints p50 and p99.
//! The actor round trip (ractor call) is timed too, for scale.
//!
//! `cargo bench -p switchyard-ranker --bench ranking`
//! Target (issue 6): a ranking decision, snapshot read included, under 5 µs p99.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark: a failed unwrap is a failed run")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use switchyard_config::{Config, Price, SelectionPolicy};
use switchyard_ranker::{RankerActor, RankerArgs, rank, rank_now};
use switchyard_types::{ModelLatency, Signals, shared_signals};

const ROUNDS: usize = 200_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, samples: &mut [Duration]) {
    println!(
        "{label:<52} p50 {:>7.3} µs   p99 {:>7.3} µs   ({} samples)",
        percentile(samples, 0.5).as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Demo mode off so every provider counts as usable with a key present.
    let env: HashMap<String, String> = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "TOGETHER_API_KEY"]
        .into_iter()
        .map(|key| (key.to_owned(), "sk-bench".to_owned()))
        .collect();
    let config = Arc::new(Config::embedded_default(&env).unwrap());
    let ids: Vec<String> = config.models.iter().map(|model| model.id.clone()).collect();
    let now = Instant::now();
    let signals = shared_signals(Signals {
        prices: Arc::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), Price::PerToken { input: 0.1 * (i + 1) as f64, output: 0.3 * (i + 1) as f64 }))
                .collect(),
        ),
        latency: Arc::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    let ttft = Duration::from_millis(100 + 37 * i as u64 % 400);
                    (id.clone(), ModelLatency { ttft, ..ModelLatency::default() })
                })
                .collect(),
        ),
        cooldowns: Arc::new(ids.iter().take(2).map(|id| (id.clone(), now + Duration::from_secs(3600))).collect()),
        ..Signals::default()
    });
    // One case per policy present in the default routers, plus a pinned
    // session (pin first, budget applied).
    let mut cases: Vec<(String, String, String, Option<String>)> = Vec::new();
    for policy in [SelectionPolicy::Cheapest, SelectionPolicy::Fastest, SelectionPolicy::Manual] {
        let found = config
            .routers
            .iter()
            .flat_map(|router| router.tasks.iter().map(move |task| (router, task)))
            .find(|(_, task)| task.policy == policy);
        if let Some((router, task)) = found {
            cases.push((format!("{} ({} models)", policy.as_str(), task.models.len()), router.name.clone(), task.name.clone(), None));
        }
    }
    let (router, task) = (&config.routers[0], &config.routers[0].tasks[0]);
    cases.push((
        "pinned session, switch budget".to_owned(),
        router.name.clone(),
        task.name.clone(),
        task.models.last().cloned(),
    ));
    let mut config_with_budget = (*config).clone();
    config_with_budget.affinity.switch_budget = Some(1.5);

    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (case, (_, router, route, pinned)) in cases.iter().enumerate() {
            let config = if pinned.is_some() { &config_with_budget } else { &*config };
            let started = Instant::now();
            let ranked = rank_now(config, &signals, router, route, pinned.as_deref());
            let elapsed = started.elapsed();
            std::hint::black_box(ranked.unwrap());
            samples[case].push(elapsed);
        }
    }
    println!("ranking decision with the snapshot read (rank_now), {ROUNDS} rounds, cases interleaved:");
    for ((label, _, _, _), samples) in cases.iter().zip(samples.iter_mut()) {
        report(label, samples);
    }

    let (ranker, handle) = Actor::spawn(
        None,
        RankerActor,
        RankerArgs {
            config: switchyard_config::live((*config).clone()),
            signals: Arc::clone(&signals),
        },
    )
    .await
    .unwrap();
    let (_, router, route, _) = &cases[0];
    let mut round_trips = Vec::with_capacity(ROUNDS / 10);
    for _ in 0..ROUNDS / 10 {
        let started = Instant::now();
        let ranked = rank(&ranker, router, route, None).await;
        round_trips.push(started.elapsed());
        std::hint::black_box(ranked.unwrap());
    }
    report("through the Ranker actor (ractor call, for scale)", &mut round_trips);
    ranker.stop(None);
    handle.await.unwrap();
}
