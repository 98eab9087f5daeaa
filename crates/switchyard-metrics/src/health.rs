//! Which models are failing: N failures within a window cool a model down
//! for a while (the ranker then tries it last); once the cooldown is over
//! the next request probes it, and a probe that fails cools it down again
//! at once while one that succeeds clears its record.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use switchyard_config::HealthConfig;
use switchyard_types::AttemptFailure;

/// Whether a failed attempt says something about the model's health. A
/// model without a usable provider was never tried.
pub fn counts_against_health(failure: &AttemptFailure) -> bool {
    match failure {
        AttemptFailure::Status { status } => *status == 408 || *status == 429 || *status >= 500,
        AttemptFailure::Connect | AttemptFailure::Timeout { .. } | AttemptFailure::Broken { .. } => true,
        AttemptFailure::Unavailable { .. } => false,
    }
}

#[derive(Debug)]
pub struct HealthTracker {
    config: HealthConfig,
    failures: HashMap<String, VecDeque<Instant>>,
    cooldowns: HashMap<String, Instant>,
    /// Models whose cooldown has ended but that have not answered since.
    probing: HashSet<String>,
}

impl HealthTracker {
    pub fn new(config: HealthConfig) -> HealthTracker {
        HealthTracker {
            config,
            failures: HashMap::new(),
            cooldowns: HashMap::new(),
            probing: HashSet::new(),
        }
    }

    /// Records a failure; returns when the new cooldown ends if this
    /// failure starts one.
    pub fn failure(&mut self, model: &str, now: Instant) -> Option<Instant> {
        if self.config.failures == 0 || self.cooling(model, now) {
            return None;
        }
        let probe_failed = self.probing.remove(model);
        let window = self.failures.entry(model.to_owned()).or_default();
        window.push_back(now);
        while window.front().is_some_and(|at| now.duration_since(*at) > self.config.window) {
            window.pop_front();
        }
        if !probe_failed && window.len() < self.config.failures as usize {
            return None;
        }
        window.clear();
        let until = now + self.config.cooldown;
        self.cooldowns.insert(model.to_owned(), until);
        Some(until)
    }

    /// Records a success: a probe that worked ends the model's trouble.
    pub fn success(&mut self, model: &str, now: Instant) {
        if self.probing.remove(model) || self.cooldowns.get(model).is_some_and(|until| *until <= now) {
            self.cooldowns.remove(model);
            self.failures.remove(model);
        }
    }

    /// Ends the cooldowns that are over by `now`; returns their models,
    /// which are probed from now on.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let over: Vec<String> = self
            .cooldowns
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(model, _)| model.clone())
            .collect();
        for model in &over {
            self.cooldowns.remove(model);
            self.probing.insert(model.clone());
        }
        over
    }

    pub fn cooling(&self, model: &str, now: Instant) -> bool {
        self.cooldowns.get(model).is_some_and(|until| *until > now)
    }

    /// The cooldowns in force, for the ranker's snapshot.
    pub fn cooldowns(&self) -> HashMap<String, Instant> {
        self.cooldowns.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn tracker() -> HealthTracker {
        HealthTracker::new(HealthConfig {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn n_failures_within_the_window_start_a_cooldown() {
        let mut health = tracker();
        let t0 = Instant::now();
        assert_eq!(health.failure("m", t0), None);
        // The first failure leaves the window before the third arrives.
        assert_eq!(health.failure("m", t0 + Duration::from_secs(8)), None);
        assert_eq!(health.failure("m", t0 + Duration::from_secs(12)), None);
        let t = t0 + Duration::from_secs(13);
        assert_eq!(health.failure("m", t), Some(t + Duration::from_secs(30)));
        assert!(health.cooling("m", t));
        assert!(!health.cooling("other", t));
        // Failures while cooling (requests already in flight) change nothing.
        assert_eq!(health.failure("m", t + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_failed_probe_cools_again_at_once_and_a_good_one_clears() {
        let mut health = tracker();
        let t0 = Instant::now();
        for i in 0..3 {
            health.failure("m", t0 + Duration::from_secs(i));
        }
        let over = t0 + Duration::from_secs(40);
        assert_eq!(health.expire(t0 + Duration::from_secs(20)), Vec::<String>::new());
        assert_eq!(health.expire(over), vec!["m".to_owned()]);
        assert!(!health.cooling("m", over));
        // The probe fails: one failure is enough.
        assert_eq!(health.failure("m", over), Some(over + Duration::from_secs(30)));
        let later = over + Duration::from_secs(31);
        health.expire(later);
        health.success("m", later);
        // Healthy again: it takes three failures once more.
        assert_eq!(health.failure("m", later), None);
        assert_eq!(health.failure("m", later), None);
        assert!(health.failure("m", later).is_some());
    }

    #[test]
    fn zero_failures_turns_cooldowns_off() {
        let mut health = HealthTracker::new(HealthConfig {
            failures: 0,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        });
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(health.failure("m", now), None);
        }
    }

    #[test]
    fn only_upstream_trouble_counts() {
        assert!(counts_against_health(&AttemptFailure::Status { status: 503 }));
        assert!(counts_against_health(&AttemptFailure::Status { status: 429 }));
        assert!(!counts_against_health(&AttemptFailure::Status { status: 400 }));
        assert!(counts_against_health(&AttemptFailure::Connect));
        assert!(!counts_against_health(&AttemptFailure::Unavailable { detail: String::new() }));
    }
}
