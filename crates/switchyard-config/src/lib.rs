//! Switchyard's configuration: one YAML file, read once at start.
//!
//! Sits before the request path: the composition root loads a [`Config`]
//! and hands each stage the part it needs. Loading is two steps, as in
//! every config that operators edit by hand:
//!
//! 1. [`raw`]: the file's shape, `deny_unknown_fields` everywhere, so a typo
//!    is an error instead of a silently ignored setting.
//! 2. [`validate`]: cross-references (models named by tasks exist, names are
//!    unique, pools are not empty) and the environment (API keys), giving
//!    the validated [`Config`] the node runs on. Every refusal names its
//!    place in the file (`routers[1].tasks[0].models[2]`).
//!
//! Without a file, [`Config::embedded_default`] serves four preset routers
//! over real model ids with their public list prices.

mod model;
pub mod raw;
mod validate;

pub use model::{
    AffinityConfig, ClassifierConfig, ClusterConfig, Config, PeerConfig, DemoMode, DispatchConfig, EncoderBackend, Model,
    Price, Provider,
    ProviderKind, Router, Secret, SelectionPolicy, ServerConfig, Task,
};

use std::collections::HashMap;

/// The embedded default configuration, served when `--config` is not given.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../default.yaml");

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config is not valid YAML for Switchyard: {0}")]
    Parse(String),
    #[error("config {place}: {message}")]
    Invalid { place: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(place: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Parses and validates YAML text. `env` supplies provider API keys (the
    /// process environment in production, a map in tests).
    pub fn from_yaml(text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig =
            serde_yaml_ng::from_str(text).map_err(|err| ConfigError::Parse(err.to_string()))?;
        validate::validate(raw, env)
    }

    /// Reads, parses and validates a config file.
    pub fn from_file(
        path: &std::path::Path,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text, env)
    }

    /// The embedded single-node default with four preset routers.
    pub fn embedded_default(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_yaml(DEFAULT_CONFIG_YAML, env)
    }
}
