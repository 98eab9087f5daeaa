//! Time to first token per model, as an exponentially weighted moving
//! average over this node's own traffic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_types::{LatencySnapshot, SharedLatency};

/// Weight of the newest sample. 0.2 follows a shift in an upstream's speed
/// within a handful of requests while one slow outlier moves it little.
const ALPHA: f64 = 0.2;

/// Keeps the estimates and publishes them as an immutable snapshot.
#[derive(Debug)]
pub struct LatencyTracker {
    ewma_secs: HashMap<String, f64>,
    published: SharedLatency,
}

impl LatencyTracker {
    pub fn new(published: SharedLatency) -> LatencyTracker {
        LatencyTracker {
            ewma_secs: HashMap::new(),
            published,
        }
    }

    /// Folds in one measurement and publishes the new snapshot.
    pub fn observe(&mut self, model: &str, ttft: Duration) {
        let sample = ttft.as_secs_f64();
        let estimate = match self.ewma_secs.get(model) {
            Some(previous) => previous + ALPHA * (sample - previous),
            None => sample,
        };
        self.ewma_secs.insert(model.to_owned(), estimate);
        let snapshot = LatencySnapshot {
            ttft: self
                .ewma_secs
                .iter()
                .map(|(model, secs)| (model.clone(), Duration::from_secs_f64(*secs)))
                .collect(),
        };
        self.published.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use switchyard_types::empty_latency;

    use super::*;

    #[test]
    fn first_sample_is_taken_as_is_then_smoothed() {
        let shared = empty_latency();
        let mut tracker = LatencyTracker::new(shared.clone());
        tracker.observe("m", Duration::from_millis(100));
        assert_eq!(shared.load().ttft["m"], Duration::from_millis(100));
        tracker.observe("m", Duration::from_millis(600));
        // 100 + 0.2 * (600 - 100) = 200 ms
        let estimate = shared.load().ttft["m"].as_secs_f64();
        assert!((estimate - 0.2).abs() < 1e-9, "{estimate}");
    }
}
