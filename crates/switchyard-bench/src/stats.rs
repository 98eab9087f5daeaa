//! Latency percentiles of one run, and medians over rounds.

use serde::{Deserialize, Serialize};

/// Percentiles of a run's successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests the figures are over.
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank percentile `q` (0..=1) of ascending samples: the
/// smallest sample with at least `q` of all samples at or below it.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises latencies given in microseconds.
pub fn summarize(mut samples_us: Vec<u64>) -> Latency {
    samples_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let total: u64 = samples_us.iter().sum();
    Latency {
        count: samples_us.len() as u64,
        p50_ms: ms(percentile(&samples_us, 0.50)),
        p90_ms: ms(percentile(&samples_us, 0.90)),
        p99_ms: ms(percentile(&samples_us, 0.99)),
        max_ms: ms(samples_us.last().copied().unwrap_or(0)),
        mean_ms: if samples_us.is_empty() {
            0.0
        } else {
            ms(total) / samples_us.len() as f64
        },
    }
}

/// The median of some values (the mean of the middle two for an even
/// count); `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let latency = summarize(samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p90_ms, 90.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(latency.mean_ms, 50.5);
    }

    #[test]
    fn a_single_slow_request_in_a_hundred_is_the_max_not_the_p99() {
        let mut samples = vec![1000; 99];
        samples.push(500_000);
        let latency = summarize(samples);
        assert_eq!(latency.p99_ms, 1.0);
        assert_eq!(latency.max_ms, 500.0);
    }

    #[test]
    fn empty_and_tiny_runs() {
        assert_eq!(summarize(Vec::new()), Latency::default());
        let one = summarize(vec![2500]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (2.5, 2.5, 2.5));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
