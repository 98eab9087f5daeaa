//! Ranking policies as pure functions: easy to test, nothing to mock.

use std::time::Duration;

use switchyard_config::{Config, Price, Router, SelectionPolicy};
use switchyard_types::{LatencySnapshot, OTHER_ROUTE, RankedCandidates};

use crate::RankerError;

/// Cheapest first by input + output price per million tokens. Models priced
/// by the hour have no per-token price to compare and are excluded; ties
/// keep the declared order.
pub fn cheapest(
    candidates: &[String],
    price_of: impl Fn(&str) -> Option<Price>,
) -> Vec<&str> {
    let mut priced: Vec<(&str, f64)> = candidates
        .iter()
        .filter_map(|id| match price_of(id) {
            Some(Price::PerToken { input, output }) => Some((id.as_str(), input + output)),
            _ => None,
        })
        .collect();
    // A stable sort keeps declared order among equal prices.
    priced.sort_by(|a, b| a.1.total_cmp(&b.1));
    priced.into_iter().map(|(id, _)| id).collect()
}

/// Fastest first by measured time to first token; models without data
/// follow those with data, in declared order.
pub fn fastest(
    candidates: &[String],
    ttft_of: impl Fn(&str) -> Option<Duration>,
) -> Vec<&str> {
    let mut measured: Vec<(&str, Duration)> = Vec::new();
    let mut unmeasured: Vec<&str> = Vec::new();
    for id in candidates {
        match ttft_of(id) {
            Some(ttft) => measured.push((id, ttft)),
            None => unmeasured.push(id),
        }
    }
    measured.sort_by_key(|&(_, ttft)| ttft);
    measured
        .into_iter()
        .map(|(id, _)| id)
        .chain(unmeasured)
        .collect()
}

/// The operator's declared order.
pub fn manual(candidates: &[String]) -> Vec<&str> {
    candidates.iter().map(String::as_str).collect()
}

/// Ranks `route` of `router`: the task's candidates by its policy, then the
/// router's fallback models not already listed. `other` gets the fallback
/// pool alone. Models for which `usable` is false (their provider has no
/// key) are left out.
pub fn rank_route(
    config: &Config,
    router: &Router,
    route: &str,
    latency: &LatencySnapshot,
    usable: impl Fn(&str) -> bool,
) -> Result<RankedCandidates, RankerError> {
    let ranked: Vec<&str> = if route == OTHER_ROUTE {
        Vec::new()
    } else {
        let task = router.task(route).ok_or_else(|| RankerError::UnknownRoute {
            router: router.name.clone(),
            route: route.to_owned(),
        })?;
        match task.policy {
            SelectionPolicy::Cheapest => {
                cheapest(&task.models, |id| config.model(id).map(|model| model.price))
            }
            SelectionPolicy::Fastest => fastest(&task.models, |id| latency.ttft.get(id).copied()),
            SelectionPolicy::Manual => manual(&task.models),
        }
    };
    let mut models: Vec<String> = Vec::with_capacity(ranked.len() + router.fallback_models.len());
    for id in ranked {
        if usable(id) && !models.iter().any(|m| m == id) {
            models.push(id.to_owned());
        }
    }
    let fallback_from = models.len();
    for id in &router.fallback_models {
        if usable(id) && !models.contains(id) {
            models.push(id.clone());
        }
    }
    Ok(RankedCandidates {
        models,
        fallback_from,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cheapest_orders_by_input_plus_output_and_drops_hourly() {
        let prices: HashMap<&str, Price> = HashMap::from([
            ("a", Price::PerToken { input: 3.0, output: 15.0 }),
            ("b", Price::PerToken { input: 0.25, output: 2.0 }),
            ("c", Price::Hourly { usd_per_hour: 2.0 }),
            ("d", Price::PerToken { input: 1.25, output: 0.75 }),
            ("e", Price::PerToken { input: 0.25, output: 2.0 }),
        ]);
        let candidates = ids(&["a", "b", "c", "d", "e"]);
        assert_eq!(
            cheapest(&candidates, |id| prices.get(id).copied()),
            vec!["d", "b", "e", "a"]
        );
    }

    #[test]
    fn fastest_puts_unmeasured_models_last_in_declared_order() {
        let ttft = HashMap::from([
            ("b", Duration::from_millis(300)),
            ("d", Duration::from_millis(120)),
        ]);
        let candidates = ids(&["a", "b", "c", "d"]);
        assert_eq!(
            fastest(&candidates, |id| ttft.get(id).copied()),
            vec!["d", "b", "a", "c"]
        );
    }

    #[test]
    fn manual_keeps_declared_order() {
        assert_eq!(manual(&ids(&["z", "a", "m"])), vec!["z", "a", "m"]);
    }

    fn config() -> Config {
        let yaml = r#"
providers:
  - { name: p, kind: openai, base_url: "http://127.0.0.1:1/v1" }
models:
  - { id: pricey, provider: p, price: { input: 10, output: 30 } }
  - { id: cheap, provider: p, price: { input: 0.1, output: 0.4 } }
  - { id: mid, provider: p, price: { input: 1, output: 2 } }
  - { id: spare, provider: p, price: { input: 1, output: 1 } }
routers:
  - name: r
    tasks:
      - { name: t, description: "things", models: [pricey, cheap, mid], selection_policy: cheapest }
    fallback_models: [mid, spare]
"#;
        Config::from_yaml(yaml, &HashMap::new()).unwrap()
    }

    #[test]
    fn fallbacks_follow_the_ranked_pool_without_repeats() {
        let config = config();
        let router = config.router("r").unwrap();
        let ranked = rank_route(&config, router, "t", &LatencySnapshot::default(), |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["cheap", "mid", "pricey", "spare"]));
        assert_eq!(ranked.fallback_from, 3);
        assert!(ranked.is_fallback(3));
    }

    #[test]
    fn other_gets_the_fallback_pool_and_unusable_models_are_skipped() {
        let config = config();
        let router = config.router("r").unwrap();
        let ranked =
            rank_route(&config, router, OTHER_ROUTE, &LatencySnapshot::default(), |id| id != "mid")
                .unwrap();
        assert_eq!(ranked.models, ids(&["spare"]));
        assert_eq!(ranked.fallback_from, 0);
        let unknown = rank_route(&config, router, "nope", &LatencySnapshot::default(), |_| true);
        assert!(matches!(unknown, Err(RankerError::UnknownRoute { .. })));
    }
}
