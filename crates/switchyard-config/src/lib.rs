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
    AuthConfig, ClientKey, KeyHash, LimitsConfig, RateLimit,
    AffinityConfig, ClassifierConfig, ClusterConfig, Config, DecisionsConfig, DemoMode, DispatchConfig, EncoderBackend, EncoderPrecision, HealthConfig,
    ImplicitSessions, LatencySource, Model, PeerConfig, Price, PricingConfig, Provider, ProviderKind, RemoteClassifierConfig, Roles, Router,
    Secret, SelectionPolicy, ServerConfig, SignalsConfig, Task,
};

pub use validate::DEFAULT_LATENCY_QUERY;

use std::collections::HashMap;

/// The configuration in force on a running node. Readers load it per
/// request; it is swapped whole when routers change through the admin API,
/// so a request never sees half of one router set and half of another.
pub type LiveConfig = std::sync::Arc<arc_swap::ArcSwap<Config>>;

/// A [`LiveConfig`] starting at `config`.
pub fn live(config: Config) -> LiveConfig {
    std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config))
}

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

    /// Parses YAML layers, each over the ones before it, and validates the
    /// result. Mappings merge key by key, recursively; any other value
    /// (lists included) replaces the one below. This lets a node's file say
    /// only what differs from a shared base: its listen address, its
    /// cluster id and peers.
    pub fn from_layers(layers: &[&str], env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut merged = serde_yaml_ng::Value::Null;
        for text in layers {
            let layer: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|err| ConfigError::Parse(err.to_string()))?;
            merge(&mut merged, layer);
        }
        let raw: raw::RawConfig =
            serde_yaml_ng::from_value(merged).map_err(|err| ConfigError::Parse(err.to_string()))?;
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

/// Lays `top` over `base` (see [`Config::from_layers`]).
fn merge(base: &mut serde_yaml_ng::Value, top: serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match (base, top) {
        (Value::Mapping(base), Value::Mapping(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        // An empty layer (a file of comments) changes nothing.
        (_, Value::Null) => {}
        (base, top) => *base = top,
    }
}

#[cfg(test)]
mod layer_tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn a_layer_overrides_keys_and_keeps_the_rest_of_the_base() {
        let node = "server: { listen: 127.0.0.1:8082 }\ncluster: { node_id: 2, peers: [{ id: 1, raft: 127.0.0.1:9081, http: 127.0.0.1:8081 }, { id: 2, raft: 127.0.0.1:9082, http: 127.0.0.1:8082 }] }\n";
        let config = Config::from_layers(&[DEFAULT_CONFIG_YAML, node, "# nothing\n"], &HashMap::new()).unwrap();
        assert_eq!(config.server.listen.port(), 8082);
        assert_eq!(config.server.max_body_bytes, 8_388_608, "kept from the base");
        assert_eq!(config.routers.len(), 4, "kept from the base");
        assert_eq!(config.cluster.node_id, 2);
        assert_eq!(config.cluster.peers.len(), 2);
        assert!(!config.cluster.bootstrap, "node 1 has the smallest id: it bootstraps");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let cases = [
            ("cluster: { node_id: 3, peers: [{ id: 1, raft: a:1, http: a:2 }] }", "must include this node"),
            ("cluster: { peers: [{ id: 1, raft: a:1, http: a:2 }, { id: 1, raft: b:1, http: b:2 }] }", "listed twice"),
            ("cluster: { heartbeat_ms: 500, election_timeout_min_ms: 400 }", "must exceed cluster.heartbeat_ms"),
            ("cluster: { election_timeout_min_ms: 900, election_timeout_max_ms: 800 }", "must exceed cluster.election_timeout_min_ms"),
            ("cluster: { listen: nowhere }", "is not an address"),
            ("cluster: { admin_token_env: NO_SUCH_VAR }", "is not set"),
        ];
        for (layer, expected) in cases {
            let err = Config::from_layers(&[DEFAULT_CONFIG_YAML, layer], &HashMap::new()).unwrap_err();
            assert!(err.to_string().contains(expected), "{layer}: {err}");
        }
        let lone = Config::embedded_default(&HashMap::new()).unwrap();
        assert!(lone.cluster.bootstrap, "a lone node forms its own cluster");
        assert_eq!(lone.cluster.node_id, 1);
    }

    fn with(layer: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_layers(&[DEFAULT_CONFIG_YAML, layer], &env)
    }

    #[test]
    fn keys_are_kept_only_as_hashes() {
        let hash = KeyHash::of("sk-team-a-0123456789abcdef").to_hex();
        let layer = format!(
            "auth:\n  keys:\n    - {{ name: a, sha256: {hash}, rate_limit: {{ requests_per_minute: 120 }} }}\n    - {{ name: b, key_env: KEY_B }}\n  keys_env: MORE\n  admin_key_env: ADMIN\n  rate_limit: {{ requests_per_minute: 60, burst: 10 }}\n  cluster_secret_env: SECRET\n"
        );
        let config = with(&layer, &[
            ("KEY_B", "sk-team-b-0123456789abcdef"),
            ("MORE", "c=sk-team-c-0123456789abcdef,\n d = sk-team-d-0123456789abcdef"),
            ("ADMIN", "admin-0123456789abcdef"),
            ("SECRET", "cluster-0123456789abcdef"),
        ])
        .unwrap();
        let names: Vec<&str> = config.auth.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let a = config.auth.key(&KeyHash::of("sk-team-a-0123456789abcdef")).unwrap();
        assert_eq!(a.rate_limit, Some(RateLimit { per_minute: 120, burst: 2 }), "burst defaults to a second's worth");
        let d = config.auth.key(&KeyHash::of("sk-team-d-0123456789abcdef")).unwrap();
        assert_eq!(d.rate_limit, Some(RateLimit { per_minute: 60, burst: 10 }), "the default limit");
        assert!(config.auth.key(&KeyHash::of("sk-team-e-0123456789abcdef")).is_none());
        assert!(config.auth.admin.unwrap().matches(&KeyHash::of("admin-0123456789abcdef")));
        let debug = format!("{config:?}");
        for secret in ["sk-team-b-0123456789abcdef", "sk-team-c", "admin-0123456789abcdef", "cluster-0123456789abcdef"] {
            assert!(!debug.contains(secret), "{secret} in the config's debug print");
        }
    }

    #[test]
    fn auth_and_limits_are_checked() {
        let cases = [
            ("auth: { keys: [{ name: a, sha256: abc }] }", "64 hex digits"),
            ("auth: { keys: [{ name: a }] }", "exactly one of"),
            ("auth: { keys: [{ name: a, key_env: SHORT }] }", "at least 16 characters"),
            ("auth: { keys: [{ name: a, key_env: NO_SUCH_VAR }] }", "is not set"),
            ("auth: { keys: [{ name: a, key_env: LONG }, { name: a, key_env: LONG2 }] }", "used twice"),
            ("auth: { keys: [{ name: a, key_env: LONG }, { name: b, key_env: LONG }] }", "same key"),
            ("auth: { keys_env: PAIRS_BAD }", "name=key"),
            ("auth: { keys: [{ name: a, key_env: LONG }], admin_key_env: LONG }", "must not also be a client key"),
            ("auth: { admin_key_env: LONG }\ncluster: { admin_token_env: LONG }", "not both"),
            ("auth: { rate_limit: { requests_per_minute: 0 } }", "greater than 0"),
            ("auth: { cluster_secret_env: SHORT }", "at least 16"),
            ("limits: { max_messages: 0 }", "limits.max_messages"),
            ("limits: { body_timeout_secs: -1 }", "limits.body_timeout_secs"),
            ("limits: { bogus: 1 }", "unknown field"),
        ];
        let env = [
            ("SHORT", "short"),
            ("LONG", "a-long-enough-key-0123456789"),
            ("LONG2", "another-long-key-0123456789"),
            ("PAIRS_BAD", "just-a-key-without-a-name-0123"),
        ];
        for (layer, expected) in cases {
            let err = with(layer, &env).unwrap_err().to_string();
            assert!(err.contains(expected), "{layer}: {err}");
            assert!(!err.contains("a-long-enough-key") && !err.contains("just-a-key"), "{layer}: a key in the error: {err}");
        }
        let defaults = Config::embedded_default(&HashMap::new()).unwrap();
        assert!(defaults.auth.keys.is_empty() && defaults.auth.admin.is_none());
        assert_eq!(defaults.limits.max_messages, 2048);
        let old_name = with("cluster: { admin_token_env: LONG }", &env).unwrap();
        assert!(old_name.auth.admin.unwrap().matches(&KeyHash::of("a-long-enough-key-0123456789")));
    }

    #[test]
    fn key_hashes_parse_from_hex_of_either_case() {
        let hash = KeyHash::of("x");
        assert_eq!(KeyHash::from_hex(&hash.to_hex().to_uppercase()), Some(hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"é".repeat(32)), None);
        // `u8::from_str_radix` reads "+f" as 15: a signed pair is no hex digit.
        assert_eq!(KeyHash::from_hex(&"+f".repeat(32)), None);
        assert_eq!(KeyHash::from_hex(&format!(" {} ", hash.to_hex())), Some(hash));
        assert_eq!(KeyHash::from_hex(&hash.to_hex()[..62]), None);
        // The known SHA-256 of "x".
        assert_eq!(hash.to_hex(), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
    }
}
