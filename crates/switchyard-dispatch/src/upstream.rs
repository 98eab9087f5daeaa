//! Where each model lives: URL, upstream model name, credentials.

use std::collections::HashMap;

use switchyard_config::{Config, DispatchConfig, Secret};

use crate::DispatchError;

/// One model's endpoint, resolved from the config once at start.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The id clients see (and the response's `model`).
    pub model: String,
    /// The name the provider knows the model by.
    pub upstream_name: String,
    /// `{base_url}/chat/completions`.
    pub url: String,
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
            upstreams.insert(
                model.id.clone(),
                Upstream {
                    model: model.id.clone(),
                    upstream_name: model.upstream.clone(),
                    url: format!("{}/chat/completions", provider.base_url),
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
