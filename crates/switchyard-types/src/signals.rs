//! Live signals the ranker reads on every decision.
//!
//! The metrics collector publishes a fresh immutable snapshot after each
//! outcome; readers load it without a lock (`ArcSwap`), so ranking never
//! waits on the collector.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

/// Per-model latency estimates measured from this node's own traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Exponentially weighted moving average of time to first token.
    pub ttft: HashMap<String, Duration>,
}

/// The handle both sides share: the collector stores, the ranker loads.
pub type SharedLatency = Arc<ArcSwap<LatencySnapshot>>;

/// A snapshot with no measurements yet.
pub fn empty_latency() -> SharedLatency {
    Arc::new(ArcSwap::from_pointee(LatencySnapshot::default()))
}
