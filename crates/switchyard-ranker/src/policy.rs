//! Ranking policies as pure functions: easy to test, nothing to mock.

use std::time::{Duration, Instant};

use switchyard_config::{Config, Price, Router, SelectionPolicy};
use switchyard_types::{OTHER_ROUTE, RankedCandidates, Signals};

use crate::RankerError;

/// Cheapest first by input + output price per million tokens. Models priced
/// by the hour have no per-token price to compare and are excluded; ties
/// keep the declared order.
pub fn cheapest(candidates: &[String], price_of: impl Fn(&str) -> Option<Price>) -> Vec<&str> {
    let mut priced: Vec<(&str, f64)> = candidates
        .iter()
        .filter_map(|id| price_of(id).and_then(|price| price.per_million()).map(|per| (id.as_str(), per)))
        .collect();
    // A stable sort keeps declared order among equal prices.
    priced.sort_by(|a, b| a.1.total_cmp(&b.1));
    priced.into_iter().map(|(id, _)| id).collect()
}

/// Fastest first by measured time to first token; models without data
/// follow those with data, in declared order.
pub fn fastest(candidates: &[String], ttft_of: impl Fn(&str) -> Option<Duration>) -> Vec<&str> {
    let mut measured: Vec<(&str, Duration)> = Vec::new();
    let mut unmeasured: Vec<&str> = Vec::new();
    for id in candidates {
        match ttft_of(id) {
            Some(ttft) => measured.push((id, ttft)),
            None => unmeasured.push(id),
        }
    }
    measured.sort_by_key(|&(_, ttft)| ttft);
    measured.into_iter().map(|(id, _)| id).chain(unmeasured).collect()
}

/// The operator's declared order.
pub fn manual(candidates: &[String]) -> Vec<&str> {
    candidates.iter().map(String::as_str).collect()
}

/// What a ranking needs besides the config: the live signals, the time
/// (for cooldowns), a session's pinned model, and the routing budget.
#[derive(Debug, Clone, Copy)]
pub struct RankInputs<'a> {
    pub signals: &'a Signals,
    pub now: Instant,
    /// The model a session is pinned to: first, unless it is cooling down.
    pub pinned: Option<&'a str>,
    /// Highest price ratio (candidate / pinned) a pinned session may move to.
    pub switch_budget: Option<f64>,
}

/// Ranks `route` of `router`:
/// 1. the task's candidates by its policy (`other`: none), then the router's
///    fallback models not already listed;
/// 2. models cooling down moved to the end, keeping their relative order;
/// 3. a pinned session's model first (unless it is cooling down), and,
///    with a routing budget, models pricier than the budget allows left out.
///
/// Models for which `usable` is false (their provider has no key) are left
/// out.
pub fn rank_route(
    config: &Config,
    router: &Router,
    route: &str,
    inputs: RankInputs<'_>,
    usable: impl Fn(&str) -> bool,
) -> Result<RankedCandidates, RankerError> {
    let signals = inputs.signals;
    let ranked: Vec<&str> = if route == OTHER_ROUTE {
        Vec::new()
    } else {
        let task = router.task(route).ok_or_else(|| RankerError::UnknownRoute {
            router: router.name.clone(),
            route: route.to_owned(),
        })?;
        match task.policy {
            SelectionPolicy::Cheapest => cheapest(&task.models, |id| {
                signals.price(id).or_else(|| config.model(id).map(|model| model.price))
            }),
            SelectionPolicy::Fastest => fastest(&task.models, |id| signals.ttft(id)),
            SelectionPolicy::Manual => manual(&task.models),
        }
    };
    let mut primary: Vec<String> = Vec::with_capacity(ranked.len());
    let mut fallback: Vec<String> = Vec::with_capacity(router.fallback_models.len());
    let mut cooling: Vec<String> = Vec::new();
    let candidates = ranked
        .into_iter()
        .map(|id| (id, false))
        .chain(router.fallback_models.iter().map(|id| (id.as_str(), true)));
    for (id, is_fallback) in candidates {
        let seen = primary.iter().chain(&fallback).chain(&cooling).any(|m| m == id);
        if seen || !usable(id) {
            continue;
        }
        if signals.cooling(id, inputs.now) {
            cooling.push(id.to_owned());
        } else if is_fallback {
            fallback.push(id.to_owned());
        } else {
            primary.push(id.to_owned());
        }
    }
    let mut result = RankedCandidates {
        fallback_from: primary.len(),
        models: primary.into_iter().chain(fallback).chain(cooling.iter().cloned()).collect(),
        cooling,
        over_budget: Vec::new(),
    };
    if let Some(pinned) = inputs.pinned {
        if !signals.cooling(pinned, inputs.now) {
            put_first(&mut result, pinned);
        }
        if let Some(ratio) = inputs.switch_budget {
            apply_budget(&mut result, pinned, ratio, |id| {
                signals.price(id).or_else(|| config.model(id).map(|model| model.price))
            });
        }
    }
    Ok(result)
}

/// Moves (or inserts) the pinned model to the front, so the session keeps
/// its model and the rest of the ranking stays as failover.
pub fn put_first(candidates: &mut RankedCandidates, model: &str) {
    match candidates.models.iter().position(|m| m == model) {
        Some(0) => {}
        Some(index) => {
            let pinned = candidates.models.remove(index);
            candidates.models.insert(0, pinned);
            if index >= candidates.fallback_from {
                candidates.fallback_from += 1;
            }
        }
        None => {
            candidates.models.insert(0, model.to_owned());
            candidates.fallback_from += 1;
        }
    }
}

/// Leaves out every model other than `pinned` whose per-token price is
/// above `ratio` times the pinned model's. Hourly capacity costs nothing
/// per request and always fits; a pinned model priced by the hour sets no
/// cap.
fn apply_budget(candidates: &mut RankedCandidates, pinned: &str, ratio: f64, price_of: impl Fn(&str) -> Option<Price>) {
    let Some(cap) = price_of(pinned).and_then(|price| price.per_million()).map(|per| per * ratio) else {
        return;
    };
    let over = |id: &str| id != pinned && price_of(id).and_then(|price| price.per_million()).is_some_and(|per| per > cap);
    let mut index = 0;
    while index < candidates.models.len() {
        if over(&candidates.models[index]) {
            let removed = candidates.models.remove(index);
            if index < candidates.fallback_from {
                candidates.fallback_from -= 1;
            }
            candidates.cooling.retain(|m| *m != removed);
            candidates.over_budget.push(removed);
        } else {
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

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
        assert_eq!(cheapest(&candidates, |id| prices.get(id).copied()), vec!["d", "b", "e", "a"]);
    }

    #[test]
    fn fastest_puts_unmeasured_models_last_in_declared_order() {
        let ttft = HashMap::from([("b", Duration::from_millis(300)), ("d", Duration::from_millis(120))]);
        let candidates = ids(&["a", "b", "c", "d"]);
        assert_eq!(fastest(&candidates, |id| ttft.get(id).copied()), vec!["d", "b", "a", "c"]);
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
  - { id: gpu, provider: p, price: { hourly: 2 } }
routers:
  - name: r
    tasks:
      - { name: t, description: "things", models: [pricey, cheap, mid], selection_policy: cheapest }
    fallback_models: [mid, spare]
"#;
        Config::from_yaml(yaml, &HashMap::new()).unwrap()
    }

    fn inputs(signals: &Signals) -> RankInputs<'_> {
        RankInputs {
            signals,
            now: Instant::now(),
            pinned: None,
            switch_budget: None,
        }
    }

    #[test]
    fn fallbacks_follow_the_ranked_pool_without_repeats() {
        let config = config();
        let router = config.router("r").unwrap();
        let ranked = rank_route(&config, router, "t", inputs(&Signals::default()), |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["cheap", "mid", "pricey", "spare"]));
        assert_eq!(ranked.fallback_from, 3);
    }

    #[test]
    fn other_gets_the_fallback_pool_and_unusable_models_are_skipped() {
        let config = config();
        let router = config.router("r").unwrap();
        let ranked = rank_route(&config, router, OTHER_ROUTE, inputs(&Signals::default()), |id| id != "mid").unwrap();
        assert_eq!(ranked.models, ids(&["spare"]));
        assert_eq!(ranked.fallback_from, 0);
        let unknown = rank_route(&config, router, "nope", inputs(&Signals::default()), |_| true);
        assert!(matches!(unknown, Err(RankerError::UnknownRoute { .. })));
    }

    #[test]
    fn live_prices_override_the_configured_ones() {
        let config = config();
        let router = config.router("r").unwrap();
        let signals = Signals {
            prices: Arc::new(HashMap::from([("pricey".to_owned(), Price::PerToken { input: 0.01, output: 0.01 })])),
            ..Signals::default()
        };
        let ranked = rank_route(&config, router, "t", inputs(&signals), |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["pricey", "cheap", "mid", "spare"]));
    }

    #[test]
    fn cooling_models_go_last_and_come_back_when_the_cooldown_ends() {
        let config = config();
        let router = config.router("r").unwrap();
        let now = Instant::now();
        let signals = Signals {
            cooldowns: Arc::new(HashMap::from([
                ("cheap".to_owned(), now + Duration::from_secs(30)),
                ("spare".to_owned(), now - Duration::from_secs(1)),
            ])),
            ..Signals::default()
        };
        let ranked = rank_route(&config, router, "t", RankInputs { now, ..inputs(&signals) }, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["mid", "pricey", "spare", "cheap"]));
        assert_eq!(ranked.fallback_from, 2);
        assert_eq!(ranked.cooling, ids(&["cheap"]));
        let later = RankInputs {
            now: now + Duration::from_secs(31),
            ..inputs(&signals)
        };
        let ranked = rank_route(&config, router, "t", later, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["cheap", "mid", "pricey", "spare"]));
        assert!(ranked.cooling.is_empty());
    }

    #[test]
    fn a_pinned_model_goes_first_unless_it_is_cooling() {
        let config = config();
        let router = config.router("r").unwrap();
        let now = Instant::now();
        let healthy = Signals::default();
        let pinned = RankInputs {
            pinned: Some("pricey"),
            now,
            ..inputs(&healthy)
        };
        let ranked = rank_route(&config, router, "t", pinned, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["pricey", "cheap", "mid", "spare"]));
        let cooling = Signals {
            cooldowns: Arc::new(HashMap::from([("pricey".to_owned(), now + Duration::from_secs(5))])),
            ..Signals::default()
        };
        let ranked = rank_route(&config, router, "t", RankInputs { signals: &cooling, ..pinned }, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["cheap", "mid", "spare", "pricey"]));
    }

    #[test]
    fn the_switch_budget_keeps_a_pinned_session_off_pricier_models() {
        let config = config();
        let router = config.router("r").unwrap();
        let signals = Signals::default();
        // Pinned to `mid` (3 USD per million in + out); a 1.5 budget allows
        // up to 4.5: `pricey` (40) is left out, cheaper ones stay.
        let budget = RankInputs {
            pinned: Some("mid"),
            switch_budget: Some(1.5),
            ..inputs(&signals)
        };
        let ranked = rank_route(&config, router, "t", budget, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["mid", "cheap", "spare"]));
        assert_eq!(ranked.fallback_from, 2);
        assert_eq!(ranked.over_budget, ids(&["pricey"]));
        // Without a budget, nothing is left out.
        let free = RankInputs { switch_budget: None, ..budget };
        assert!(rank_route(&config, router, "t", free, |_| true).unwrap().over_budget.is_empty());
        // A pin on hourly capacity sets no cap.
        let hourly = RankInputs { pinned: Some("gpu"), ..budget };
        let ranked = rank_route(&config, router, "t", hourly, |_| true).unwrap();
        assert_eq!(ranked.models, ids(&["gpu", "cheap", "mid", "pricey", "spare"]));
    }

    #[test]
    fn put_first_keeps_the_rest_in_order() {
        let ranked = |models: &[&str], fallback_from| RankedCandidates {
            models: ids(models),
            fallback_from,
            ..RankedCandidates::default()
        };
        let mut candidates = ranked(&["a", "b", "c", "f"], 3);
        put_first(&mut candidates, "c");
        assert_eq!(candidates, ranked(&["c", "a", "b", "f"], 3));
        let mut candidates = ranked(&["a", "b", "f"], 2);
        put_first(&mut candidates, "f");
        assert_eq!(candidates, ranked(&["f", "a", "b"], 3));
        let mut candidates = ranked(&["a", "b"], 2);
        put_first(&mut candidates, "z");
        assert_eq!(candidates, ranked(&["z", "a", "b"], 3));
    }
}
