//! Time to first token from a Prometheus server: an instant PromQL query
//! against its HTTP API (`GET /api/v1/query`), polled every
//! `refresh_secs`. Each series of the result is one model: its `model`
//! label (configurable) names the model by id or alias, its value is
//! seconds. The default query is the fleet-wide median TTFT per model from
//! the histogram every node exports, so all nodes rank alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde::Deserialize;
use switchyard_config::{Config, LatencySource};

use crate::MetricsError;
use crate::actor::MetricsMsg;

#[derive(Debug, Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: Vec<Series>,
}

#[derive(Debug, Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    /// `[unix_time, "value"]`.
    value: (f64, String),
}

/// Reads a query response: seconds per configured model id. Series without
/// the label, for unknown models, or with no finite value (`NaN` when a
/// model had no traffic in the range) are skipped.
pub fn parse_latency(body: &[u8], label: &str, config: &Config) -> Result<HashMap<String, Duration>, MetricsError> {
    let response: QueryResponse = serde_json::from_slice(body)
        .map_err(|err| MetricsError::Prometheus(format!("unexpected response: {err}")))?;
    if response.status != "success" {
        return Err(MetricsError::Prometheus(response.error.unwrap_or(response.status)));
    }
    let data = response
        .data
        .ok_or_else(|| MetricsError::Prometheus("no `data` in the response".to_owned()))?;
    if data.result_type != "vector" {
        return Err(MetricsError::Prometheus(format!(
            "the query returns a {}, not an instant vector",
            data.result_type
        )));
    }
    let mut latency = HashMap::new();
    for series in data.result {
        let Some(model) = series.metric.get(label).and_then(|name| config.model(name)) else {
            continue;
        };
        match series.value.1.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                latency.insert(model.id.clone(), Duration::from_secs_f64(seconds));
            }
            _ => {}
        }
    }
    Ok(latency)
}

/// Queries Prometheus now and every `refresh` after, until the collector
/// stops (the task is aborted then).
pub(crate) async fn poll(config: Arc<Config>, collector: ActorRef<MetricsMsg>) {
    let LatencySource::Prometheus {
        url,
        query,
        model_label,
        refresh,
        timeout,
    } = &config.signals.latency
    else {
        return;
    };
    let client = reqwest::Client::new();
    let endpoint = match reqwest::Url::parse_with_params(&format!("{url}/api/v1/query"), [("query", query)]) {
        Ok(endpoint) => endpoint,
        Err(err) => {
            let _ = collector.cast(MetricsMsg::RefreshFailed {
                source: crate::actor::PROMETHEUS,
                error: format!("bad Prometheus URL: {err}"),
            });
            return;
        }
    };
    crate::poll::every(*refresh, crate::actor::PROMETHEUS, collector, || async {
        let body = crate::poll::get(&client, endpoint.as_str(), *timeout)
            .await
            .map_err(|err| MetricsError::Prometheus(err.to_string()))?;
        parse_latency(&body, model_label, &config).map(MetricsMsg::PrometheusLatency)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = r#"
providers:
  - { name: p, kind: openai, base_url: "http://127.0.0.1:1/v1" }
models:
  - { id: fast, provider: p, price: { input: 1, output: 1 } }
  - { id: slow, provider: p, aliases: [slow-alias], price: { input: 1, output: 1 } }
routers:
  - name: r
    tasks:
      - { name: t, description: d, models: [fast, slow] }
    fallback_models: [fast]
"#;
        Config::from_yaml(yaml, &HashMap::new()).unwrap()
    }

    #[test]
    fn a_vector_maps_model_labels_to_seconds() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"model":"fast"},"value":[1764115200.5,"0.12"]},
            {"metric":{"model":"slow-alias"},"value":[1764115200.5,"0.8"]},
            {"metric":{"model":"gone"},"value":[1764115200.5,"0.3"]},
            {"metric":{"job":"x"},"value":[1764115200.5,"0.3"]},
            {"metric":{"model":"fast"},"value":[1764115200.5,"NaN"]}]}}"#;
        let latency = parse_latency(body, "model", &config()).unwrap();
        assert_eq!(latency.len(), 2);
        assert_eq!(latency["fast"], Duration::from_millis(120));
        assert_eq!(latency["slow"], Duration::from_millis(800));
    }

    #[test]
    fn errors_and_other_result_types_are_refused() {
        let config = config();
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(parse_latency(error, "model", &config).unwrap_err().to_string().contains("parse error"));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_latency(matrix, "model", &config).is_err());
        assert!(parse_latency(b"<html>", "model", &config).is_err());
    }
}
