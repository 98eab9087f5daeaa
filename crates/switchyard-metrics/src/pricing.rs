//! Live prices: fetched from a pricing URL every `refresh_secs` and handed
//! to the collector, which merges them into the prices in force.
//!
//! Two JSON shapes are accepted, told apart by their content:
//!
//! - Switchyard's own, USD per million tokens or per hour:
//!   ```json
//!   { "as_of": "2026-11-26",
//!     "prices": { "gpt-5.2": { "input": 1.25, "output": 10.0 },
//!                 "llama-70b-dedicated": { "hourly": 2.5 } } }
//!   ```
//! - The models.dev catalogue (`https://models.dev/api.json`): providers
//!   keyed by id, each with `models` keyed by id, each with
//!   `cost: { input, output }` in USD per million tokens.
//!
//! A configured model is matched by its id, its aliases, then its upstream
//! name. A catalogue name may be `provider/model` (exact) or a bare model
//! name; a bare name listed by several providers matches the one named
//! like the model's configured provider, or none (ambiguous). Models the
//! catalogue does not price keep the price they had: a refresh never
//! empties the table.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::ActorRef;
use serde_json::Value;
use switchyard_config::{Config, Price};

use crate::MetricsError;
use crate::actor::MetricsMsg;

/// Prices read from one catalogue document, by configured model id.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceUpdate {
    pub prices: HashMap<String, Price>,
    pub as_of: Option<String>,
    /// Configured models the document did not price (they keep theirs).
    pub unpriced: Vec<String>,
}

/// One priced entry of a catalogue.
#[derive(Debug)]
struct Entry {
    provider: Option<String>,
    name: String,
    price: Price,
}

fn number(value: &Value, place: &str) -> Result<Option<f64>, MetricsError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => match number.as_f64() {
            Some(value) if value.is_finite() && value >= 0.0 => Ok(Some(value)),
            _ => Err(MetricsError::Catalogue(format!("{place}: not a price"))),
        },
        _ => Err(MetricsError::Catalogue(format!("{place}: not a number"))),
    }
}

fn ours(prices: &serde_json::Map<String, Value>) -> Result<Vec<Entry>, MetricsError> {
    let mut entries = Vec::with_capacity(prices.len());
    for (name, value) in prices {
        let field = |key: &str| number(value.get(key).unwrap_or(&Value::Null), &format!("prices.{name}.{key}"));
        let price = match (field("input")?, field("output")?, field("hourly")?) {
            (Some(input), Some(output), None) => Price::PerToken { input, output },
            (None, None, Some(usd_per_hour)) => Price::Hourly { usd_per_hour },
            _ => {
                return Err(MetricsError::Catalogue(format!(
                    "prices.{name}: give `input` and `output`, or `hourly`"
                )));
            }
        };
        entries.push(Entry {
            provider: None,
            name: name.clone(),
            price,
        });
    }
    Ok(entries)
}

fn models_dev(providers: &serde_json::Map<String, Value>) -> Result<Vec<Entry>, MetricsError> {
    let mut entries = Vec::new();
    for (provider, body) in providers {
        let Some(models) = body.get("models").and_then(Value::as_object) else {
            continue;
        };
        for (name, model) in models {
            let Some(cost) = model.get("cost") else {
                continue;
            };
            let place = format!("{provider}.models.{name}.cost");
            let input = number(cost.get("input").unwrap_or(&Value::Null), &format!("{place}.input"))?;
            let output = number(cost.get("output").unwrap_or(&Value::Null), &format!("{place}.output"))?;
            if let (Some(input), Some(output)) = (input, output) {
                entries.push(Entry {
                    provider: Some(provider.clone()),
                    name: name.clone(),
                    price: Price::PerToken { input, output },
                });
            }
        }
    }
    Ok(entries)
}

/// Reads a pricing document and matches it to the configured models.
pub fn parse_prices(body: &[u8], config: &Config) -> Result<PriceUpdate, MetricsError> {
    let document: Value =
        serde_json::from_slice(body).map_err(|err| MetricsError::Catalogue(format!("not JSON: {err}")))?;
    let Some(object) = document.as_object() else {
        return Err(MetricsError::Catalogue("expected a JSON object".to_owned()));
    };
    let (entries, as_of) = match object.get("prices") {
        Some(Value::Object(prices)) => (
            ours(prices)?,
            object.get("as_of").and_then(Value::as_str).map(str::to_owned),
        ),
        Some(_) => return Err(MetricsError::Catalogue("`prices` must be an object".to_owned())),
        None if object.values().any(|v| v.get("models").is_some_and(Value::is_object)) => {
            (models_dev(object)?, None)
        }
        None => {
            return Err(MetricsError::Catalogue(
                "neither Switchyard's shape (`prices`) nor the models.dev catalogue".to_owned(),
            ));
        }
    };
    let mut exact: HashMap<String, Price> = HashMap::new();
    let mut bare: HashMap<&str, Vec<(Option<&str>, Price)>> = HashMap::new();
    for entry in &entries {
        match &entry.provider {
            Some(provider) => {
                exact.insert(format!("{provider}/{}", entry.name), entry.price);
            }
            None => {
                exact.insert(entry.name.clone(), entry.price);
            }
        }
        bare.entry(entry.name.as_str()).or_default().push((entry.provider.as_deref(), entry.price));
    }
    let mut prices = HashMap::new();
    let mut unpriced = Vec::new();
    for model in &config.models {
        let names = std::iter::once(&model.id).chain(&model.aliases).chain(std::iter::once(&model.upstream));
        let mut found = None;
        for name in names {
            if let Some(price) = exact.get(name.as_str()) {
                found = Some(*price);
                break;
            }
            if let Some(listed) = bare.get(name.as_str()) {
                let same_provider = listed.iter().find(|(provider, _)| *provider == Some(model.provider.as_str()));
                match (same_provider, listed.as_slice()) {
                    (Some((_, price)), _) | (None, [(_, price)]) => {
                        found = Some(*price);
                        break;
                    }
                    _ => tracing::debug!(model = %model.id, name = %name, "catalogue name is ambiguous across providers"),
                }
            }
        }
        match found {
            Some(price) => {
                prices.insert(model.id.clone(), price);
            }
            None => unpriced.push(model.id.clone()),
        }
    }
    if prices.is_empty() {
        return Err(MetricsError::Catalogue(format!(
            "it prices none of the {} configured models (match by id, alias or upstream name)",
            config.models.len()
        )));
    }
    Ok(PriceUpdate { prices, as_of, unpriced })
}

/// The URL as logs and `/v1/models` show it: scheme, host and path only,
/// since a query string or user info may carry a key.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            // Both setters fail only for URLs that cannot have credentials.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Fetches the pricing URL now and every `refresh_secs` after.
pub(crate) async fn poll(config: Arc<Config>, url: String, collector: ActorRef<MetricsMsg>) {
    let client = reqwest::Client::new();
    let pricing = &config.signals.pricing;
    crate::poll::every(pricing.refresh, crate::actor::PRICING, collector, || async {
        let body = crate::poll::get(&client, &url, pricing.timeout).await?;
        parse_prices(&body, &config).map(MetricsMsg::Prices)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = r#"
providers:
  - { name: openai, kind: openai, base_url: "http://127.0.0.1:1/v1" }
  - { name: together, kind: openai, base_url: "http://127.0.0.1:1/v1" }
models:
  - { id: gpt-5.2, provider: openai, price: { input: 1.25, output: 10 } }
  - { id: mini, provider: openai, upstream: gpt-5-mini, price: { input: 0.25, output: 2 } }
  - { id: llama, provider: together, upstream: meta-llama/Llama-3.3-70B, aliases: [together/llama-3.3-70b], price: { input: 0.9, output: 0.9 } }
  - { id: gpu, provider: together, price: { hourly: 2 } }
routers:
  - name: r
    tasks:
      - { name: t, description: d, models: [gpt-5.2, mini] }
    fallback_models: [mini]
"#;
        Config::from_yaml(yaml, &HashMap::new()).unwrap()
    }

    #[test]
    fn switchyard_shape_by_id_alias_or_upstream_name() {
        let body = br#"{"as_of": "2026-11-26", "prices": {
            "gpt-5.2": {"input": 1.0, "output": 8.0},
            "gpt-5-mini": {"input": 0.2, "output": 1.6},
            "together/llama-3.3-70b": {"input": 0.8, "output": 0.8},
            "gpu": {"hourly": 3.5},
            "unrelated": {"input": 9, "output": 9}}}"#;
        let update = parse_prices(body, &config()).unwrap();
        assert_eq!(update.as_of.as_deref(), Some("2026-11-26"));
        assert_eq!(update.prices["gpt-5.2"], Price::PerToken { input: 1.0, output: 8.0 });
        assert_eq!(update.prices["mini"], Price::PerToken { input: 0.2, output: 1.6 });
        assert_eq!(update.prices["llama"], Price::PerToken { input: 0.8, output: 0.8 });
        assert_eq!(update.prices["gpu"], Price::Hourly { usd_per_hour: 3.5 });
        assert!(update.unpriced.is_empty());
    }

    #[test]
    fn models_dev_catalogue_prefers_the_models_own_provider() {
        let body = br#"{
          "openai": {"id": "openai", "models": {
             "gpt-5.2": {"id": "gpt-5.2", "cost": {"input": 1.1, "output": 9.0, "cache_read": 0.1}},
             "gpt-5-mini": {"id": "gpt-5-mini", "cost": {"input": 0.3, "output": 2.2}}}},
          "azure": {"id": "azure", "models": {
             "gpt-5.2": {"id": "gpt-5.2", "cost": {"input": 5, "output": 50}},
             "no-cost": {"id": "no-cost"}}}
        }"#;
        let update = parse_prices(body, &config()).unwrap();
        assert_eq!(update.prices["gpt-5.2"], Price::PerToken { input: 1.1, output: 9.0 });
        assert_eq!(update.prices["mini"], Price::PerToken { input: 0.3, output: 2.2 });
        assert_eq!(update.unpriced, vec!["llama".to_owned(), "gpu".to_owned()]);
    }

    #[test]
    fn bad_documents_are_errors_never_an_empty_table() {
        let config = config();
        for body in [
            &b"not json"[..],
            b"[]",
            br#"{"prices": []}"#,
            br#"{"prices": {"gpt-5.2": {"input": -1, "output": 2}}}"#,
            br#"{"prices": {"gpt-5.2": {"input": 1}}}"#,
            br#"{"prices": {"someone-else": {"input": 1, "output": 2}}}"#,
            br#"{"hello": "world"}"#,
        ] {
            assert!(parse_prices(body, &config).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn urls_are_shown_without_query_or_credentials() {
        assert_eq!(
            display_url("https://user:pw@prices.example.com:8443/v1/prices?key=sk-123#x"),
            "https://prices.example.com:8443/v1/prices"
        );
    }
}
