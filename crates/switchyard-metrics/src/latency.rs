//! Latency per model from this node's own traffic: a decaying average of
//! time to first token (what `fastest` ranks by) and percentiles of time to
//! first token and total latency over the most recent requests.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use switchyard_types::ModelLatency;

/// Weight of the newest sample. 0.2 follows a shift in an upstream's speed
/// within a handful of requests while one slow outlier moves it little.
const ALPHA: f64 = 0.2;
/// Samples per model the percentiles are taken over.
const WINDOW: usize = 512;

#[derive(Debug, Default)]
struct PerModel {
    ewma_secs: f64,
    samples: u64,
    ttft: VecDeque<Duration>,
    total: VecDeque<Duration>,
}

/// Keeps the estimates; the collector publishes [`LatencyTracker::snapshot`].
#[derive(Debug, Default)]
pub struct LatencyTracker {
    models: HashMap<String, PerModel>,
}

fn push(window: &mut VecDeque<Duration>, sample: Duration) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(sample);
}

/// Nearest-rank p50 and p95 of unsorted samples (one sort for both).
fn p50_p95(samples: &VecDeque<Duration>) -> (Option<Duration>, Option<Duration>) {
    let mut sorted: Vec<Duration> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied()
    };
    (at(0.5), at(0.95))
}

impl LatencyTracker {
    pub fn new() -> LatencyTracker {
        LatencyTracker::default()
    }

    /// Folds in one request served by `model`.
    pub fn observe(&mut self, model: &str, ttft: Duration, total: Duration) {
        let entry = self.models.entry(model.to_owned()).or_default();
        let sample = ttft.as_secs_f64();
        entry.ewma_secs = if entry.samples == 0 {
            sample
        } else {
            entry.ewma_secs + ALPHA * (sample - entry.ewma_secs)
        };
        entry.samples += 1;
        push(&mut entry.ttft, ttft);
        push(&mut entry.total, total);
    }

    /// The current estimates of one model.
    pub fn model(&self, model: &str) -> Option<ModelLatency> {
        self.models.get(model).map(|entry| {
            let (ttft_p50, ttft_p95) = p50_p95(&entry.ttft);
            let (latency_p50, latency_p95) = p50_p95(&entry.total);
            ModelLatency {
                ttft: Duration::from_secs_f64(entry.ewma_secs),
                ttft_p50,
                ttft_p95,
                latency_p50,
                latency_p95,
                samples: entry.samples,
            }
        })
    }

    /// Every model's estimates.
    pub fn snapshot(&self) -> HashMap<String, ModelLatency> {
        self.models
            .keys()
            .filter_map(|model| self.model(model).map(|latency| (model.clone(), latency)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_taken_as_is_then_smoothed() {
        let mut tracker = LatencyTracker::new();
        tracker.observe("m", Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(tracker.model("m").unwrap().ttft, Duration::from_millis(100));
        tracker.observe("m", Duration::from_millis(600), Duration::from_millis(900));
        // 100 + 0.2 * (600 - 100) = 200 ms
        let estimate = tracker.model("m").unwrap().ttft.as_secs_f64();
        assert!((estimate - 0.2).abs() < 1e-9, "{estimate}");
    }

    #[test]
    fn percentiles_cover_the_recent_window_only() {
        let mut tracker = LatencyTracker::new();
        for ms in 1..=100 {
            tracker.observe("m", Duration::from_millis(ms), Duration::from_millis(ms * 10));
        }
        let latency = tracker.model("m").unwrap();
        assert_eq!(latency.ttft_p50, Some(Duration::from_millis(50)));
        assert_eq!(latency.ttft_p95, Some(Duration::from_millis(95)));
        assert_eq!(latency.latency_p95, Some(Duration::from_millis(950)));
        assert_eq!(latency.samples, 100);
        // A full window of fast requests pushes the slow ones out.
        for _ in 0..WINDOW {
            tracker.observe("m", Duration::from_millis(7), Duration::from_millis(70));
        }
        assert_eq!(tracker.model("m").unwrap().ttft_p95, Some(Duration::from_millis(7)));
        assert!(tracker.model("other").is_none());
    }
}
