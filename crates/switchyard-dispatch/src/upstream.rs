//! Where each model lives: URL, upstream model name, credentials.

use std::collections::HashMap;

use switchyard_config::{Config, DispatchConfig, ProviderKind, Secret};

use crate::DispatchError;

/// One model's endpoint, resolved from the config once at start.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The id clients see (and the response's `model`).
    pub model: String,
    /// The name the provider knows the model by.
    pub upstream_name: String,
    /// The API the provider speaks.
    pub kind: ProviderKind,
    /// Where requests go: the provider's base URL and the kind's path,
    /// parsed once here rather than on every request (with its IDNA pass, a
    /// visible share of a proxied request's CPU).
    pub url: reqwest::Url,
    /// Where streaming requests go (differs for Gemini).
    pub stream_url: reqwest::Url,
    pub api_key: Option<Secret>,
    /// Set when the provider needs a key the environment lacks: the model
    /// is skipped instead of being sent an unauthenticated request.
    pub missing_key: Option<String>,
}

/// Sends requests upstream over one pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub(crate) client: reqwest::Client,
    pub(crate) upstreams: HashMap<String, Upstream>,
    pub(crate) timeouts: DispatchConfig,
}

impl Dispatcher {
    pub fn new(config: &Config) -> Result<Dispatcher, DispatchError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.dispatch.connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            // An LLM API answers a POST; it does not redirect it. A 3xx goes
            // back as the upstream's answer rather than being followed (and
            // reqwest's redirect layer parsed the URL again on every request).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| DispatchError::Client(err.to_string()))?;
        let mut upstreams = HashMap::with_capacity(config.models.len());
        for model in &config.models {
            let Some(provider) = config.provider(&model.provider) else {
                continue;
            };
            let missing_key = if provider.available || provider.demo {
                None
            } else {
                Some(format!(
                    "provider `{}` has no key ({} is not set)",
                    provider.name,
                    provider.api_key_env.as_deref().unwrap_or("no key variable")
                ))
            };
            let parse = |stream: bool| {
                let url = crate::kinds::url(provider.kind, &provider.base_url, &model.upstream, stream);
                reqwest::Url::parse(&url).map_err(|err| DispatchError::Url {
                    model: model.id.clone(),
                    url,
                    reason: err.to_string(),
                })
            };
            upstreams.insert(
                model.id.clone(),
                Upstream {
                    model: model.id.clone(),
                    upstream_name: model.upstream.clone(),
                    kind: provider.kind,
                    url: parse(false)?,
                    stream_url: parse(true)?,
                    api_key: provider.api_key.clone(),
                    missing_key,
                },
            );
        }
        Ok(Dispatcher {
            client,
            upstreams,
            timeouts: config.dispatch.clone(),
        })
    }

    pub fn upstream(&self, model: &str) -> Option<&Upstream> {
        self.upstreams.get(model)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use switchyard_mock::{Failure, MockConfig, MockServer};
    use switchyard_types::{AttemptFailure, ChatRequest, RankedCandidates};

    use super::*;
    use crate::{DispatchFailure, ServedBody};

    async fn setup(failures: &[(&str, Failure)]) -> (MockServer, Dispatcher) {
        let mock = MockServer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            MockConfig {
                failures: failures
                    .iter()
                    .map(|(model, failure)| ((*model).to_owned(), failure.clone()))
                    .collect(),
                ..MockConfig::default()
            },
        )
        .await
        .unwrap();
        let yaml = format!(
            r#"
providers:
  - {{ name: p, kind: openai, base_url: "{}" }}
  - {{ name: keyed, kind: openai, base_url: "{}", api_key_env: NOT_SET }}
models:
  - {{ id: a, provider: p, price: {{ input: 1, output: 1 }} }}
  - {{ id: b, provider: p, price: {{ input: 1, output: 1 }} }}
  - {{ id: c, provider: p, price: {{ input: 1, output: 1 }} }}
  - {{ id: k, provider: keyed, price: {{ input: 1, output: 1 }} }}
routers: []
"#,
            mock.base_url(),
            mock.base_url()
        );
        let config = Config::from_yaml(&yaml, &HashMap::new()).unwrap();
        (mock, Dispatcher::new(&config).unwrap())
    }

    fn candidates(models: &[&str]) -> RankedCandidates {
        RankedCandidates {
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            fallback_from: 2,
            ..RankedCandidates::default()
        }
    }

    fn request() -> ChatRequest {
        ChatRequest::from_json(br#"{"model":"router:r","messages":[{"role":"user","content":"hi there"}]}"#)
            .unwrap()
    }

    #[tokio::test]
    async fn tries_candidates_in_order_and_skips_models_without_a_key() {
        let (mock, dispatcher) = setup(&[("a", Failure::Status(503))]).await;
        let served = dispatcher
            .dispatch(&request(), &candidates(&["a", "k", "b", "c"]))
            .await
            .unwrap();
        assert_eq!((served.model.as_str(), served.index), ("b", 2));
        let failures: Vec<_> = served.attempts.iter().map(|a| (a.model.as_str(), &a.failure)).collect();
        assert_eq!(failures[0], ("a", &AttemptFailure::Status { status: 503 }));
        assert!(matches!(failures[1], ("k", AttemptFailure::Unavailable { .. })));
        let ServedBody::Json { value, usage, .. } = served.body else {
            panic!("expected JSON");
        };
        assert_eq!(value["model"], "b");
        assert_eq!(usage.unwrap().completion_tokens, 12);
        assert_eq!((mock.requests("a"), mock.requests("b"), mock.requests("c")), (1, 1, 0));
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn stops_at_a_request_error() {
        let (mock, dispatcher) = setup(&[("a", Failure::Status(422))]).await;
        let failure = dispatcher
            .dispatch(&request(), &candidates(&["a", "b"]))
            .await
            .unwrap_err();
        let DispatchFailure::Rejected { model, status, body, .. } = failure else {
            panic!("expected a rejection");
        };
        assert_eq!((model.as_str(), status), ("a", 422));
        assert!(body["error"]["message"].is_string());
        assert_eq!(mock.requests("b"), 0);
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn reports_every_attempt_when_all_fail() {
        let (mock, dispatcher) =
            setup(&[("a", Failure::Status(500)), ("b", Failure::Status(429))]).await;
        let failure = dispatcher
            .dispatch(&request(), &candidates(&["a", "b"]))
            .await
            .unwrap_err();
        let DispatchFailure::AllFailed { attempts } = failure else {
            panic!("expected all to fail");
        };
        let statuses: Vec<_> = attempts.iter().map(|a| (a.model.as_str(), a.failure.clone())).collect();
        assert_eq!(
            statuses,
            [
                ("a", AttemptFailure::Status { status: 500 }),
                ("b", AttemptFailure::Status { status: 429 })
            ]
        );
        mock.shutdown().await;
    }
}
