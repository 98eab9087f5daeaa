//! Raw file → validated [`Config`]: references, uniqueness, environment.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_types::OTHER_ROUTE;

use crate::ConfigError;
use crate::model::{
    AffinityConfig, ClassifierConfig, ClusterConfig, Config, DecisionsConfig, DemoMode, DispatchConfig, EncoderBackend, EncoderPrecision, HealthConfig,
    ImplicitSessions, LatencySource, Model, PeerConfig, Price, PricingConfig, Provider, ProviderKind, RemoteClassifierConfig, Roles, Router,
    Secret, SelectionPolicy, ServerConfig, SignalsConfig, Task, AuthConfig, ClientKey, KeyHash, LimitsConfig, RateLimit,
};
use crate::raw::{RawConfig, RawModel, RawPrice, RawProvider, RawRouter};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Classifier kinds a node can run (`bm25` is the lexical baseline by its
/// algorithm's name).
const CLASSIFIERS: &[&str] = &["moe", "embedding", "lexical", "bm25"];
const DEFAULT_AFFINITY_TTL_SECS: u64 = 3600;
const DEFAULT_MAX_SESSIONS: usize = 100_000;

pub(crate) fn validate(
    raw: RawConfig,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let server = server(&raw)?;
    let demo = match raw.demo.as_deref() {
        None | Some("auto") => DemoMode::Auto,
        Some("on") => DemoMode::On,
        Some("off") => DemoMode::Off,
        Some(other) => {
            return Err(ConfigError::invalid(
                "demo",
                format!("unknown value `{other}`; expected auto, on or off"),
            ));
        }
    };
    let mut providers = providers(&raw.providers, env)?;
    let demo_active = match demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => providers.iter().all(|provider| !provider.available),
    };
    if demo_active {
        for provider in &mut providers {
            provider.demo = true;
        }
    }
    let (models, model_names) = models(&raw.models, &providers)?;
    let routers = routers(&raw.routers, &models, &model_names)?;
    let classifier = classifier(&raw)?;
    let affinity = AffinityConfig {
        ttl: Duration::from_secs(positive(
            raw.affinity.ttl_secs,
            DEFAULT_AFFINITY_TTL_SECS,
            "affinity.ttl_secs",
        )?),
        max_sessions: positive(
            raw.affinity.max_sessions.map(|n| n as u64),
            DEFAULT_MAX_SESSIONS as u64,
            "affinity.max_sessions",
        )? as usize,
        implicit_sessions: match raw.affinity.implicit_sessions.as_deref() {
            None | Some("auto") => ImplicitSessions::Auto,
            Some("always") => ImplicitSessions::Always,
            Some("off") => ImplicitSessions::Off,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "affinity.implicit_sessions",
                    format!("unknown value `{other}`; expected auto, always or off"),
                ));
            }
        },
        switch_budget: match raw.affinity.switch_budget {
            None => None,
            Some(ratio) if ratio.is_finite() && ratio >= 1.0 => Some(ratio),
            Some(_) => {
                return Err(ConfigError::invalid(
                    "affinity.switch_budget",
                    "must be a ratio of at least 1 (1.5: at most 50% more expensive)",
                ));
            }
        },
    };
    let dispatch = DispatchConfig {
        connect_timeout: Duration::from_millis(positive(
            raw.dispatch.connect_timeout_ms,
            5_000,
            "dispatch.connect_timeout_ms",
        )?),
        first_byte_timeout: Duration::from_millis(positive(
            raw.dispatch.first_byte_timeout_ms,
            120_000,
            "dispatch.first_byte_timeout_ms",
        )?),
        total_timeout: Duration::from_millis(positive(
            raw.dispatch.total_timeout_ms,
            600_000,
            "dispatch.total_timeout_ms",
        )?),
    };
    if dispatch.first_byte_timeout > dispatch.total_timeout {
        return Err(ConfigError::invalid(
            "dispatch.first_byte_timeout_ms",
            "must not exceed dispatch.total_timeout_ms",
        ));
    }
    let cluster = cluster(&raw)?;
    let signals = signals(&raw, &model_names, &models)?;
    let decisions = DecisionsConfig {
        enabled: raw.decisions.enabled.unwrap_or(true),
        dir: raw.decisions.dir.as_deref().map(PathBuf::from),
        max_bytes: positive(raw.decisions.max_bytes, 64 * 1024 * 1024, "decisions.max_bytes")?,
        segments: match raw.decisions.segments {
            None => 8,
            Some(n) if (2..=1024).contains(&n) => n,
            Some(_) => return Err(ConfigError::invalid("decisions.segments", "must be 2 to 1024")),
        },
        preview_chars: raw.decisions.preview_chars.unwrap_or(80),
    };
    let auth = auth(&raw, env)?;
    let limits = limits(&raw)?;
    Ok(Config {
        server,
        prices_as_of: raw.prices_as_of,
        demo,
        providers,
        models,
        file_routers: routers.clone(),
        routers,
        classifier,
        affinity,
        dispatch,
        cluster,
        signals,
        decisions,
        auth,
        limits,
        model_names,
    })
}

/// Shortest key accepted from the environment: a key is only as strong as
/// its entropy, and SHA-256 at rest protects only keys that cannot be guessed.
const MIN_KEY_CHARS: usize = 16;

fn env_secret(env: &HashMap<String, String>, name: &str, place: &str) -> Result<String, ConfigError> {
    match env.get(name).map(|value| value.trim()) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ConfigError::invalid(place, format!("the environment variable `{name}` is not set"))),
    }
}

fn strong_key(key: &str, place: &str) -> Result<(), ConfigError> {
    if key.chars().count() < MIN_KEY_CHARS {
        return Err(ConfigError::invalid(
            place,
            format!("the key must have at least {MIN_KEY_CHARS} characters (use a random one)"),
        ));
    }
    Ok(())
}

fn rate_limit(raw: Option<crate::raw::RawRateLimit>, place: &str) -> Result<Option<RateLimit>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.requests_per_minute == 0 {
        return Err(ConfigError::invalid(format!("{place}.requests_per_minute"), "must be greater than 0"));
    }
    let burst = raw.burst.unwrap_or_else(|| raw.requests_per_minute.div_ceil(60));
    if burst == 0 {
        return Err(ConfigError::invalid(format!("{place}.burst"), "must be greater than 0"));
    }
    Ok(Some(RateLimit {
        per_minute: raw.requests_per_minute,
        burst,
    }))
}

fn auth(raw: &RawConfig, env: &HashMap<String, String>) -> Result<AuthConfig, ConfigError> {
    let a = &raw.auth;
    let default_limit = rate_limit(a.rate_limit, "auth.rate_limit")?;
    let mut keys: Vec<ClientKey> = Vec::new();
    let mut add = |key: ClientKey, place: &str| -> Result<(), ConfigError> {
        if key.name.trim().is_empty() {
            return Err(ConfigError::invalid(place, "a key needs a `name`"));
        }
        if keys.iter().any(|other| other.name == key.name) {
            return Err(ConfigError::invalid(place, format!("key name `{}` is used twice", key.name)));
        }
        if keys.iter().any(|other| other.hash == key.hash) {
            return Err(ConfigError::invalid(place, format!("key `{}` is the same key as another", key.name)));
        }
        keys.push(key);
        Ok(())
    };
    for (index, key) in a.keys.iter().enumerate() {
        let place = format!("auth.keys[{index}]");
        let hash = match (&key.sha256, &key.key_env) {
            (Some(hex), None) => KeyHash::from_hex(hex).ok_or_else(|| {
                ConfigError::invalid(format!("{place}.sha256"), "must be 64 hex digits (`switchyard hash-key` prints them)")
            })?,
            (None, Some(name)) => {
                let value = env_secret(env, name, &format!("{place}.key_env"))?;
                strong_key(&value, &format!("{place}.key_env"))?;
                KeyHash::of(&value)
            }
            _ => return Err(ConfigError::invalid(place, "set exactly one of `sha256` and `key_env`")),
        };
        let limit = rate_limit(key.rate_limit, &format!("{place}.rate_limit"))?.or(default_limit);
        add(
            ClientKey {
                name: key.name.clone(),
                hash,
                rate_limit: limit,
            },
            &place,
        )?;
    }
    if let Some(name) = &a.keys_env {
        let text = env_secret(env, name, "auth.keys_env")?;
        for pair in text.split([',', '\n']).map(str::trim).filter(|pair| !pair.is_empty()) {
            // Never echo the pair: it holds a key.
            let Some((key_name, value)) = pair.split_once('=') else {
                return Err(ConfigError::invalid(
                    "auth.keys_env",
                    format!("`{name}` must hold `name=key` pairs separated by commas or newlines"),
                ));
            };
            let (key_name, value) = (key_name.trim(), value.trim());
            strong_key(value, &format!("auth.keys_env ({key_name})"))?;
            add(
                ClientKey {
                    name: key_name.to_owned(),
                    hash: KeyHash::of(value),
                    rate_limit: default_limit,
                },
                &format!("auth.keys_env ({key_name})"),
            )?;
        }
    }
    let admin_env = match (&a.admin_key_env, &raw.cluster.admin_token_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "auth.admin_key_env",
                "set either it or its older name cluster.admin_token_env, not both",
            ));
        }
        (Some(name), None) => Some((name, "auth.admin_key_env")),
        (None, Some(name)) => Some((name, "cluster.admin_token_env")),
        (None, None) => None,
    };
    let admin = match (&a.admin_key_sha256, admin_env) {
        (Some(_), Some((_, place))) => {
            return Err(ConfigError::invalid(place, "set either it or auth.admin_key_sha256, not both"));
        }
        (Some(hex), None) => Some(KeyHash::from_hex(hex).ok_or_else(|| {
            ConfigError::invalid("auth.admin_key_sha256", "must be 64 hex digits (`switchyard hash-key` prints them)")
        })?),
        (None, Some((name, place))) => {
            let value = env_secret(env, name, place)?;
            strong_key(&value, place)?;
            Some(KeyHash::of(&value))
        }
        (None, None) => None,
    };
    if let Some(admin) = &admin
        && let Some(key) = keys.iter().find(|key| key.hash == *admin)
    {
        return Err(ConfigError::invalid(
            "auth",
            format!("the admin key must not also be a client key (it is the same as key `{}`)", key.name),
        ));
    }
    let cluster_secret = match &a.cluster_secret_env {
        None => None,
        Some(name) => {
            let value = env_secret(env, name, "auth.cluster_secret_env")?;
            strong_key(&value, "auth.cluster_secret_env")?;
            if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    "auth.cluster_secret_env",
                    "the secret travels as gRPC metadata: visible ASCII only (`openssl rand -hex 32` makes one)",
                ));
            }
            Some(Secret::new(value))
        }
    };
    Ok(AuthConfig {
        keys,
        admin,
        cluster_secret,
    })
}

fn limits(raw: &RawConfig) -> Result<LimitsConfig, ConfigError> {
    let l = &raw.limits;
    let defaults = LimitsConfig::default();
    let count = |value: Option<usize>, default: usize, place: &str| -> Result<usize, ConfigError> {
        Ok(positive(value.map(|n| n as u64), default as u64, place)? as usize)
    };
    Ok(LimitsConfig {
        max_messages: count(l.max_messages, defaults.max_messages, "limits.max_messages")?,
        max_message_chars: count(l.max_message_chars, defaults.max_message_chars, "limits.max_message_chars")?,
        max_concurrent_requests: count(
            l.max_concurrent_requests,
            defaults.max_concurrent_requests,
            "limits.max_concurrent_requests",
        )?,
        body_timeout: seconds(l.body_timeout_secs, defaults.body_timeout.as_secs_f64(), "limits.body_timeout_secs")?,
        header_timeout: seconds(l.header_timeout_secs, defaults.header_timeout.as_secs_f64(), "limits.header_timeout_secs")?,
        // 0 is allowed: no waiting beyond one decision per worker.
        classifier_queue: l.classifier_queue.unwrap_or(defaults.classifier_queue),
        classify_timeout: Duration::from_millis(positive(
            l.classify_timeout_ms,
            defaults.classify_timeout.as_millis() as u64,
            "limits.classify_timeout_ms",
        )?),
    })
}

/// PromQL used when `signals.latency.query` is unset: the median time to
/// first token per model over the last five minutes, from the histogram
/// every node exports.
pub const DEFAULT_LATENCY_QUERY: &str =
    "histogram_quantile(0.5, sum by (model, le) (rate(switchyard_ttft_seconds_bucket[5m])))";

fn seconds(value: Option<f64>, default: f64, place: &str) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(ConfigError::invalid(place, "must be a number of seconds above 0 and at most 86400"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn http_url(value: &str, place: &str) -> Result<String, ConfigError> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(ConfigError::invalid(place, "must be an http:// or https:// URL"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn signals(raw: &RawConfig, names: &HashMap<String, usize>, models: &[Model]) -> Result<SignalsConfig, ConfigError> {
    let s = &raw.signals;
    let pricing = PricingConfig {
        url: s.pricing.url.as_deref().map(|url| http_url(url, "signals.pricing.url")).transpose()?,
        refresh: seconds(s.pricing.refresh_secs, 300.0, "signals.pricing.refresh_secs")?,
        timeout: Duration::from_millis(positive(s.pricing.timeout_ms, 10_000, "signals.pricing.timeout_ms")?),
    };
    let latency = match s.latency.source.as_deref() {
        None | Some("internal") => {
            if s.latency.url.is_some() || s.latency.query.is_some() {
                return Err(ConfigError::invalid(
                    "signals.latency",
                    "`url` and `query` need `source: prometheus`",
                ));
            }
            LatencySource::Internal
        }
        Some("prometheus") => LatencySource::Prometheus {
            url: http_url(
                s.latency.url.as_deref().ok_or_else(|| {
                    ConfigError::invalid("signals.latency.url", "is required with `source: prometheus`")
                })?,
                "signals.latency.url",
            )?,
            query: s.latency.query.clone().unwrap_or_else(|| DEFAULT_LATENCY_QUERY.to_owned()),
            model_label: s.latency.model_label.clone().unwrap_or_else(|| "model".to_owned()),
            refresh: seconds(s.latency.refresh_secs, 15.0, "signals.latency.refresh_secs")?,
            timeout: Duration::from_millis(positive(s.latency.timeout_ms, 5_000, "signals.latency.timeout_ms")?),
        },
        Some(other) => {
            return Err(ConfigError::invalid(
                "signals.latency.source",
                format!("unknown value `{other}`; expected internal or prometheus"),
            ));
        }
    };
    let health = HealthConfig {
        failures: s.health.failures.unwrap_or(5),
        window: Duration::from_secs(positive(s.health.window_secs, 60, "signals.health.window_secs")?),
        cooldown: Duration::from_secs(positive(s.health.cooldown_secs, 30, "signals.health.cooldown_secs")?),
    };
    let baseline_model = match &s.baseline_model {
        None => None,
        Some(name) => {
            let model = names
                .get(name)
                .and_then(|&index| models.get(index))
                .ok_or_else(|| ConfigError::invalid("signals.baseline_model", format!("unknown model `{name}`")))?;
            Some(model.id.clone())
        }
    };
    Ok(SignalsConfig {
        pricing,
        latency,
        health,
        baseline_model,
    })
}

/// Heartbeat and election timeouts for a LAN: a follower that hears
/// nothing for 400–800 ms starts an election, so a dead leader is replaced
/// (and pins accepted again) within about a second, while a heartbeat every
/// 100 ms leaves a wide margin against false elections on a busy machine.
const DEFAULT_HEARTBEAT_MS: u64 = 100;
const DEFAULT_ELECTION_MIN_MS: u64 = 400;
const DEFAULT_ELECTION_MAX_MS: u64 = 800;
const DEFAULT_SNAPSHOT_EVERY: u64 = 5_000;

fn cluster(raw: &RawConfig) -> Result<ClusterConfig, ConfigError> {
    let c = &raw.cluster;
    let roles = roles(c)?;
    let node_id = positive(c.node_id, 1, "cluster.node_id")?;
    let listen_text = c.listen.as_deref().unwrap_or("127.0.0.1:0");
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::invalid(
            "cluster.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:9081"),
        )
    })?;
    let mut ids = std::collections::BTreeSet::new();
    for peer in &c.peers {
        if peer.id == 0 {
            return Err(ConfigError::invalid("cluster.peers", "peer ids must be greater than 0"));
        }
        if !ids.insert(peer.id) {
            return Err(ConfigError::invalid("cluster.peers", format!("peer id {} is listed twice", peer.id)));
        }
        for (field, value) in [("raft", &peer.raft), ("http", &peer.http)] {
            if value.trim().is_empty() || !value.contains(':') {
                return Err(ConfigError::invalid(
                    "cluster.peers",
                    format!("peer {}: `{field}` must be a host:port address, got `{value}`", peer.id),
                ));
            }
        }
    }
    if !c.peers.is_empty() && !ids.contains(&node_id) {
        return Err(ConfigError::invalid(
            "cluster.peers",
            format!("must include this node (cluster.node_id {node_id})"),
        ));
    }
    let bootstrap = c
        .bootstrap
        .unwrap_or_else(|| ids.first().is_none_or(|first| *first == node_id));
    let heartbeat = positive(c.heartbeat_ms, DEFAULT_HEARTBEAT_MS, "cluster.heartbeat_ms")?;
    let election_min = positive(c.election_timeout_min_ms, DEFAULT_ELECTION_MIN_MS, "cluster.election_timeout_min_ms")?;
    let election_max = positive(c.election_timeout_max_ms, DEFAULT_ELECTION_MAX_MS, "cluster.election_timeout_max_ms")?;
    if election_min <= heartbeat {
        return Err(ConfigError::invalid(
            "cluster.election_timeout_min_ms",
            "must exceed cluster.heartbeat_ms (followers would elect between heartbeats)",
        ));
    }
    if election_max <= election_min {
        return Err(ConfigError::invalid(
            "cluster.election_timeout_max_ms",
            "must exceed cluster.election_timeout_min_ms",
        ));
    }
    Ok(ClusterConfig {
        node_id,
        listen,
        advertise: c.advertise.clone(),
        http_advertise: c.http_advertise.clone(),
        peers: c
            .peers
            .iter()
            .map(|peer| PeerConfig {
                id: peer.id,
                raft: peer.raft.clone(),
                http: peer.http.clone(),
            })
            .collect(),
        bootstrap,
        heartbeat: Duration::from_millis(heartbeat),
        election_timeout_min: Duration::from_millis(election_min),
        election_timeout_max: Duration::from_millis(election_max),
        snapshot_every: positive(c.snapshot_every, DEFAULT_SNAPSHOT_EVERY, "cluster.snapshot_every")?,
        roles,
        seeds: c.seeds.clone(),
    })
}

fn roles(c: &crate::raw::RawCluster) -> Result<Roles, ConfigError> {
    let Some(names) = &c.roles else {
        return Ok(Roles::ALL);
    };
    let mut roles = Roles {
        ingress: false,
        voter: false,
        classifier: false,
    };
    for name in names {
        let slot = match name.as_str() {
            "ingress" => &mut roles.ingress,
            "voter" => &mut roles.voter,
            "classifier" => &mut roles.classifier,
            other => {
                return Err(ConfigError::invalid(
                    "cluster.roles",
                    format!("unknown role `{other}`; expected ingress, voter or classifier"),
                ));
            }
        };
        if *slot {
            return Err(ConfigError::invalid("cluster.roles", format!("`{name}` is listed twice")));
        }
        *slot = true;
    }
    if names.is_empty() {
        return Err(ConfigError::invalid("cluster.roles", "a node needs at least one role"));
    }
    if roles.ingress && !roles.voter {
        return Err(ConfigError::invalid(
            "cluster.roles",
            "`ingress` needs `voter`: an ingress node answers pins and routers from its own replica",
        ));
    }
    if roles.classifier_only() && c.seeds.is_empty() {
        return Err(ConfigError::invalid(
            "cluster.seeds",
            "a classifier-only node needs the cluster gRPC address of at least one node to register with",
        ));
    }
    for seed in &c.seeds {
        if seed.trim().is_empty() || !seed.contains(':') {
            return Err(ConfigError::invalid(
                "cluster.seeds",
                format!("`{seed}` is not a host:port address"),
            ));
        }
    }
    Ok(roles)
}

fn positive(value: Option<u64>, default: u64, place: &str) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(place, "must be greater than 0")),
        Some(value) => Ok(value),
    }
}

fn server(raw: &RawConfig) -> Result<ServerConfig, ConfigError> {
    let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::invalid(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        )
    })?;
    let max_body_bytes = positive(
        raw.server.max_body_bytes.map(|n| n as u64),
        DEFAULT_MAX_BODY_BYTES as u64,
        "server.max_body_bytes",
    )? as usize;
    Ok(ServerConfig {
        listen,
        data_dir: PathBuf::from(raw.server.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR)),
        max_body_bytes,
        shutdown_grace: Duration::from_secs(
            raw.server
                .shutdown_grace_secs
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
        ),
    })
}

fn check_name(place: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            place,
            format!("`{name}` must be non-empty and use only letters, digits and - _ . / :"),
        ))
    }
}

fn unique<'a>(seen: &mut HashSet<&'a str>, place: &str, name: &'a str) -> Result<(), ConfigError> {
    if seen.insert(name) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            place,
            format!("duplicate name `{name}`"),
        ))
    }
}

fn providers(
    raw: &[RawProvider],
    env: &HashMap<String, String>,
) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::invalid("providers", "at least one provider is required"));
    }
    let mut seen = HashSet::new();
    let mut providers = Vec::with_capacity(raw.len());
    for (index, provider) in raw.iter().enumerate() {
        let place = format!("providers[{index}]");
        check_name(&format!("{place}.name"), &provider.name)?;
        unique(&mut seen, &format!("{place}.name"), &provider.name)?;
        let kind = match provider.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            other => {
                return Err(ConfigError::invalid(
                    format!("{place}.kind"),
                    format!("unknown provider kind `{other}`; expected openai, anthropic or gemini"),
                ));
            }
        };
        let base_url = provider.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                format!("{place}.base_url"),
                format!("`{}` must start with http:// or https://", provider.base_url),
            ));
        }
        let api_key = provider
            .api_key_env
            .as_ref()
            .and_then(|var| env.get(var))
            .filter(|value| !value.trim().is_empty())
            .map(|value| Secret::new(value.trim()));
        let available = provider.api_key_env.is_none() || api_key.is_some();
        providers.push(Provider {
            name: provider.name.clone(),
            kind,
            base_url,
            api_key_env: provider.api_key_env.clone(),
            api_key,
            available,
            demo: false,
        });
    }
    Ok(providers)
}

fn price(place: &str, raw: &RawPrice) -> Result<Price, ConfigError> {
    let valid = |value: f64| value.is_finite() && value >= 0.0;
    match (raw.input, raw.output, raw.hourly) {
        (Some(input), Some(output), None) if valid(input) && valid(output) => {
            Ok(Price::PerToken { input, output })
        }
        (None, None, Some(hourly)) if valid(hourly) => Ok(Price::Hourly {
            usd_per_hour: hourly,
        }),
        _ => Err(ConfigError::invalid(
            place,
            "give either `input` and `output` (USD per million tokens) or `hourly` (USD per hour), as non-negative numbers",
        )),
    }
}

fn models(
    raw: &[RawModel],
    providers: &[Provider],
) -> Result<(Vec<Model>, HashMap<String, usize>), ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::invalid("models", "at least one model is required"));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut models = Vec::with_capacity(raw.len());
    for (index, model) in raw.iter().enumerate() {
        let place = format!("models[{index}]");
        check_name(&format!("{place}.id"), &model.id)?;
        if model.id.starts_with("router:") {
            return Err(ConfigError::invalid(
                format!("{place}.id"),
                "must not start with `router:`, which names routers",
            ));
        }
        if !providers.iter().any(|provider| provider.name == model.provider) {
            return Err(ConfigError::invalid(
                format!("{place}.provider"),
                format!("unknown provider `{}`", model.provider),
            ));
        }
        let price = price(&format!("{place}.price"), &model.price)?;
        let all_names = std::iter::once((format!("{place}.id"), &model.id)).chain(
            model
                .aliases
                .iter()
                .enumerate()
                .map(|(i, alias)| (format!("{place}.aliases[{i}]"), alias)),
        );
        for (name_place, name) in all_names {
            check_name(&name_place, name)?;
            if names.insert(name.clone(), index).is_some() {
                return Err(ConfigError::invalid(
                    name_place,
                    format!("`{name}` is already a model id or alias"),
                ));
            }
        }
        models.push(Model {
            id: model.id.clone(),
            provider: model.provider.clone(),
            upstream: model.upstream.clone().unwrap_or_else(|| model.id.clone()),
            price,
            aliases: model.aliases.clone(),
        });
    }
    Ok((models, names))
}

/// Resolves a list of model ids or aliases to canonical ids, refusing
/// empty lists (when `required`), unknown names and repeats.
fn model_list(
    place: &str,
    names: &[String],
    models: &[Model],
    index: &HashMap<String, usize>,
    required: bool,
) -> Result<Vec<String>, ConfigError> {
    if required && names.is_empty() {
        return Err(ConfigError::invalid(place, "the model pool is empty"));
    }
    let mut ids = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let model = index
            .get(name)
            .and_then(|&m| models.get(m))
            .ok_or_else(|| {
                ConfigError::invalid(format!("{place}[{i}]"), format!("unknown model `{name}`"))
            })?;
        if ids.contains(&model.id) {
            return Err(ConfigError::invalid(
                format!("{place}[{i}]"),
                format!("model `{}` is listed twice", model.id),
            ));
        }
        ids.push(model.id.clone());
    }
    Ok(ids)
}

/// One router, checked as strictly as the file's routers are; refusals
/// name their place from `router` (`router.tasks[0].models[1]`).
pub(crate) fn one_router(raw: &RawRouter, config: &Config) -> Result<Router, ConfigError> {
    routers(std::slice::from_ref(raw), &config.models, &config.model_names)
        .map_err(|err| match err {
            ConfigError::Invalid { place, message } => ConfigError::Invalid {
                place: place.replacen("routers[0]", "router", 1),
                message,
            },
            other => other,
        })?
        .pop()
        .ok_or_else(|| ConfigError::invalid("router", "no router given"))
}

fn routers(
    raw: &[RawRouter],
    models: &[Model],
    index: &HashMap<String, usize>,
) -> Result<Vec<Router>, ConfigError> {
    let mut seen = HashSet::new();
    let mut routers = Vec::with_capacity(raw.len());
    for (r, router) in raw.iter().enumerate() {
        let place = format!("routers[{r}]");
        check_name(&format!("{place}.name"), &router.name)?;
        unique(&mut seen, &format!("{place}.name"), &router.name)?;
        if router.tasks.is_empty() {
            return Err(ConfigError::invalid(
                format!("{place}.tasks"),
                "a router needs at least one task",
            ));
        }
        let mut task_names = HashSet::new();
        let mut tasks = Vec::with_capacity(router.tasks.len());
        for (t, task) in router.tasks.iter().enumerate() {
            let task_place = format!("{place}.tasks[{t}]");
            check_name(&format!("{task_place}.name"), &task.name)?;
            if task.name == OTHER_ROUTE {
                return Err(ConfigError::invalid(
                    format!("{task_place}.name"),
                    "`other` is reserved for requests no task fits",
                ));
            }
            unique(&mut task_names, &format!("{task_place}.name"), &task.name)?;
            if task.description.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{task_place}.description"),
                    "must describe the task in plain language",
                ));
            }
            let policy = match task.selection_policy.as_deref() {
                None | Some("manual") => SelectionPolicy::Manual,
                Some("cheapest") => SelectionPolicy::Cheapest,
                Some("fastest") => SelectionPolicy::Fastest,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("{task_place}.selection_policy"),
                        format!("unknown policy `{other}`; expected cheapest, fastest or manual"),
                    ));
                }
            };
            let task_models =
                model_list(&format!("{task_place}.models"), &task.models, models, index, true)?;
            let priced_per_token = task_models.iter().any(|id| {
                index
                    .get(id)
                    .and_then(|&m| models.get(m))
                    .is_some_and(|model| matches!(model.price, Price::PerToken { .. }))
            });
            if policy == SelectionPolicy::Cheapest && !priced_per_token {
                return Err(ConfigError::invalid(
                    format!("{task_place}.selection_policy"),
                    "`cheapest` ranks by per-token price, and every model of this task is priced by the hour",
                ));
            }
            tasks.push(Task {
                name: task.name.clone(),
                description: task.description.trim().to_owned(),
                models: task_models,
                policy,
            });
        }
        routers.push(Router {
            name: router.name.clone(),
            description: router.description.clone(),
            tasks,
            fallback_models: model_list(
                &format!("{place}.fallback_models"),
                &router.fallback_models,
                models,
                index,
                true,
            )?,
            route_on_user_only: router.route_on_user_only.unwrap_or(true),
        });
    }
    Ok(routers)
}

fn classifier(raw: &RawConfig) -> Result<ClassifierConfig, ConfigError> {
    let kind = raw.classifier.kind.clone().unwrap_or_else(|| "moe".to_owned());
    if !CLASSIFIERS.contains(&kind.as_str()) {
        return Err(ConfigError::invalid(
            "classifier.kind",
            format!("unknown classifier `{kind}`; expected one of {}", CLASSIFIERS.join(", ")),
        ));
    }
    let workers = positive(
        raw.classifier.workers.map(|n| n as u64),
        2,
        "classifier.workers",
    )? as usize;
    let other_threshold = raw.classifier.other_threshold;
    if other_threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(ConfigError::invalid(
            "classifier.other_threshold",
            "must be a non-negative number",
        ));
    }
    let backend = match raw.classifier.backend.as_deref() {
        None | Some("cpu") => EncoderBackend::Cpu,
        Some("cuda") => EncoderBackend::Cuda,
        Some(other) => {
            return Err(ConfigError::invalid(
                "classifier.backend",
                format!("unknown backend `{other}`; expected cpu or cuda"),
            ));
        }
    };
    let precision = match (raw.classifier.precision.as_deref(), backend) {
        (None, EncoderBackend::Cpu) | (Some("int8"), EncoderBackend::Cpu) => EncoderPrecision::Int8,
        (None | Some("f32"), _) => EncoderPrecision::F32,
        (Some("int8"), EncoderBackend::Cuda) => {
            return Err(ConfigError::invalid(
                "classifier.precision",
                "int8 runs on the CPU encoder only; use f32 (the default) with backend cuda",
            ));
        }
        (Some(other), _) => {
            return Err(ConfigError::invalid(
                "classifier.precision",
                format!("unknown precision `{other}`; expected int8 or f32"),
            ));
        }
    };
    let max_message_tokens = positive(
        raw.classifier.max_message_tokens.map(|n| n as u64),
        256,
        "classifier.max_message_tokens",
    )? as usize;
    if !(8..=512).contains(&max_message_tokens) {
        return Err(ConfigError::invalid(
            "classifier.max_message_tokens",
            "must be between 8 and 512 (the encoder's positions)",
        ));
    }
    Ok(ClassifierConfig {
        kind,
        workers,
        other_threshold,
        backend,
        precision,
        model_dir: PathBuf::from(
            raw.classifier
                .model_dir
                .as_deref()
                .unwrap_or("models/cache/all-minilm-l6-v2"),
        ),
        head_dir: PathBuf::from(raw.classifier.head_dir.as_deref().unwrap_or("models/moe-router")),
        max_batch: positive(raw.classifier.max_batch.map(|n| n as u64), 16, "classifier.max_batch")?
            as usize,
        max_wait: Duration::from_millis(raw.classifier.max_wait_ms.unwrap_or(2)),
        cache_entries: positive(
            raw.classifier.cache_entries.map(|n| n as u64),
            20_000,
            "classifier.cache_entries",
        )? as usize,
        context_tokens: positive(
            raw.classifier.context_tokens.map(|n| n as u64),
            512,
            "classifier.context_tokens",
        )? as usize,
        max_message_tokens,
        remote: remote_classifier(&raw.classifier.remote)?,
    })
}

fn remote_classifier(raw: &crate::raw::RawRemoteClassifier) -> Result<RemoteClassifierConfig, ConfigError> {
    let fallback = raw.fallback.clone().unwrap_or_else(|| "embedding".to_owned());
    if !CLASSIFIERS.contains(&fallback.as_str()) {
        return Err(ConfigError::invalid(
            "classifier.remote.fallback",
            format!("unknown classifier `{fallback}`; expected one of {}", CLASSIFIERS.join(", ")),
        ));
    }
    Ok(RemoteClassifierConfig {
        timeout: Duration::from_millis(positive(raw.timeout_ms, 250, "classifier.remote.timeout_ms")?),
        max_batch: positive(raw.max_batch.map(|n| n as u64), 32, "classifier.remote.max_batch")? as usize,
        register_every: Duration::from_millis(positive(
            raw.register_every_ms,
            1_000,
            "classifier.remote.register_every_ms",
        )?),
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use std::time::Duration;

    use crate::{Config, ConfigError, DEFAULT_LATENCY_QUERY, DemoMode, LatencySource, Price, SelectionPolicy};

    const VALID: &str = r#"
providers:
  - { name: p, kind: openai, base_url: "http://127.0.0.1:9/v1/", api_key_env: P_KEY }
  - { name: local, kind: openai, base_url: "http://127.0.0.1:8000/v1" }
models:
  - { id: a, provider: p, upstream: vendor/a, price: { input: 1, output: 2 }, aliases: [alpha] }
  - { id: b, provider: p, price: { input: 0.5, output: 1 } }
  - { id: gpu, provider: local, price: { hourly: 2.5 } }
routers:
  - name: r
    tasks:
      - { name: t1, description: "Things", models: [alpha, b], selection_policy: cheapest }
      - { name: t2, description: "Other things", models: [gpu] }
    fallback_models: [b]
"#;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, &HashMap::from([("P_KEY".to_owned(), "k".to_owned())]))
    }

    fn refusal(yaml: &str) -> String {
        load(yaml).unwrap_err().to_string()
    }

    #[test]
    fn encoder_precision_defaults_per_backend_and_int8_is_cpu_only() {
        use crate::{EncoderBackend, EncoderPrecision};
        let with = |classifier: &str| format!("{VALID}classifier:\n{classifier}");
        let config = load(VALID).unwrap();
        assert_eq!(
            (config.classifier.backend, config.classifier.precision),
            (EncoderBackend::Cpu, EncoderPrecision::Int8)
        );
        let float = load(&with("  precision: f32\n")).unwrap();
        assert_eq!(float.classifier.precision, EncoderPrecision::F32);
        let cuda = load(&with("  backend: cuda\n")).unwrap();
        assert_eq!(cuda.classifier.precision, EncoderPrecision::F32);
        let refused = refusal(&with("  backend: cuda\n  precision: int8\n"));
        assert!(refused.contains("classifier.precision") && refused.contains("CPU"), "{refused}");
        let unknown = refusal(&with("  precision: fp16\n"));
        assert!(unknown.contains("unknown precision `fp16`"), "{unknown}");
    }

    #[test]
    fn roles_default_to_all_and_are_checked() {
        let config = load(VALID).unwrap();
        assert_eq!(config.cluster.roles, crate::Roles::ALL);
        assert!(!config.cluster.roles.classifier_only());
        let with = |cluster: &str| format!("{VALID}cluster:\n{cluster}");
        let classifier = load(&with("  roles: [classifier]\n  seeds: [\"10.0.0.1:9081\"]\n")).unwrap();
        assert!(classifier.cluster.roles.classifier_only());
        assert_eq!(classifier.cluster.seeds, vec!["10.0.0.1:9081".to_owned()]);
        assert_eq!(classifier.classifier.remote.fallback, "embedding");
        assert_eq!(classifier.classifier.remote.timeout, Duration::from_millis(250));
        for (cluster, fault) in [
            ("  roles: [classifier]\n", "cluster.seeds"),
            ("  roles: [ingress]\n", "needs `voter`"),
            ("  roles: []\n", "at least one role"),
            ("  roles: [voter, voter]\n", "listed twice"),
            ("  roles: [router]\n", "unknown role `router`"),
            ("  roles: [classifier]\n  seeds: [nowhere]\n", "host:port"),
        ] {
            let refusal = refusal(&with(cluster));
            assert!(refusal.contains(fault), "{cluster}: {refusal}");
        }
        let bad_fallback = format!("{VALID}classifier:\n  remote: {{ fallback: oracle }}\n");
        assert!(refusal(&bad_fallback).contains("classifier.remote.fallback"));
    }

    #[test]
    fn an_api_router_is_checked_like_the_files_and_replaces_or_joins_them() {
        let config = load(VALID).unwrap();
        let raw = |json: &str| serde_json::from_str::<crate::raw::RawRouter>(json).unwrap();
        let router = config
            .validate_router(&raw(r#"{"name": "s", "tasks": [{"name": "t", "description": "d", "models": ["alpha"]}], "fallback_models": ["b"]}"#))
            .unwrap();
        assert_eq!(router.tasks[0].models, vec!["a".to_owned()], "aliases resolve to ids");
        let refusal = config
            .validate_router(&raw(r#"{"name": "s", "tasks": [{"name": "t", "description": "d", "models": ["a", "zz"]}], "fallback_models": ["b"]}"#))
            .unwrap_err();
        assert!(
            matches!(&refusal, ConfigError::Invalid { place, .. } if place == "router.tasks[0].models[1]"),
            "{refusal}"
        );
        let cheap_hourly = raw(r#"{"name": "s", "tasks": [{"name": "t", "description": "d", "models": ["gpu"], "selection_policy": "cheapest"}], "fallback_models": ["b"]}"#);
        assert!(config.validate_router(&cheap_hourly).is_err());
        let replaced = config.with_api_routers(vec![crate::Router { name: "r".to_owned(), ..router.clone() }, router]);
        assert_eq!(replaced.routers.len(), 2);
        assert_eq!(replaced.routers[0].tasks[0].name, "t", "the API's `r` replaces the file's in place");
        assert_eq!(replaced.routers[1].name, "s");
        assert_eq!(replaced.file_routers[0].tasks[0].name, "t1");
        assert!(replaced.is_file_router("r") && !replaced.is_file_router("s"));
    }

    #[test]
    fn signals_default_to_static_prices_internal_latency_and_cooldowns() {
        let config = load(VALID).unwrap();
        assert_eq!(config.signals.pricing.url, None);
        assert_eq!(config.signals.latency, LatencySource::Internal);
        assert_eq!(config.signals.health.failures, 5);
        assert_eq!(config.signals.health.cooldown, Duration::from_secs(30));
        assert_eq!(config.affinity.switch_budget, None);
        let yaml = format!(
            "{VALID}signals:\n  pricing: {{ url: \"https://prices.example/p?key=1\", refresh_secs: 0.5 }}\n  latency: {{ source: prometheus, url: \"http://prom:9090/\" }}\n  baseline_model: alpha\naffinity: {{ switch_budget: 1.5 }}\n"
        );
        let config = load(&yaml).unwrap();
        assert_eq!(config.signals.pricing.refresh, Duration::from_millis(500));
        assert_eq!(config.signals.baseline_model.as_deref(), Some("a"), "an alias resolves to the id");
        assert_eq!(config.affinity.switch_budget, Some(1.5));
        match &config.signals.latency {
            LatencySource::Prometheus { url, query, model_label, .. } => {
                assert_eq!(url, "http://prom:9090");
                assert_eq!(query, DEFAULT_LATENCY_QUERY);
                assert_eq!(model_label, "model");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_signals_are_refused_with_their_place() {
        for (extra, place) in [
            ("signals: { latency: { source: graphite } }", "signals.latency.source"),
            ("signals: { latency: { source: prometheus } }", "signals.latency.url"),
            ("signals: { latency: { url: \"http://p:9090\" } }", "signals.latency"),
            ("signals: { pricing: { url: \"ftp://x\" } }", "signals.pricing.url"),
            ("signals: { pricing: { refresh_secs: 0 } }", "signals.pricing.refresh_secs"),
            ("signals: { baseline_model: gpt-9 }", "signals.baseline_model"),
            ("signals: { health: { window_secs: 0 } }", "signals.health.window_secs"),
            ("affinity: { switch_budget: 0.5 }", "affinity.switch_budget"),
        ] {
            let message = refusal(&format!("{VALID}{extra}\n"));
            assert!(message.contains(place), "{extra}: {message}");
        }
    }

    #[test]
    fn a_valid_config_resolves_names_and_defaults() {
        let config = load(VALID).unwrap();
        let router = config.router("r").unwrap();
        assert_eq!(router.tasks[0].models, ["a", "b"], "aliases resolve to ids");
        assert_eq!(router.tasks[0].policy, SelectionPolicy::Cheapest);
        assert_eq!(router.tasks[1].policy, SelectionPolicy::Manual, "manual by default");
        assert_eq!(config.model("alpha").unwrap().upstream, "vendor/a");
        assert_eq!(config.model("b").unwrap().upstream, "b");
        assert_eq!(config.model("gpu").unwrap().price, Price::Hourly { usd_per_hour: 2.5 });
        assert_eq!(config.provider("p").unwrap().base_url, "http://127.0.0.1:9/v1");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.affinity.ttl.as_secs(), 3600);
        assert!(!config.demo_active());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_place() {
        let yaml = VALID.replace("selection_policy: cheapest", "selection_polcy: cheapest");
        let message = refusal(&yaml);
        assert!(message.contains("selection_polcy"), "{message}");
        assert!(message.contains("routers[0].tasks[0]"), "{message}");
        let message = refusal(&format!("{VALID}\nlisten: 1.2.3.4:5\n"));
        assert!(message.contains("unknown field `listen`"), "{message}");
    }

    #[test]
    fn dangling_references_name_their_place() {
        let message = refusal(&VALID.replace("[alpha, b]", "[alpha, c]"));
        assert_eq!(message, "config routers[0].tasks[0].models[1]: unknown model `c`");
        let message = refusal(&VALID.replace("fallback_models: [b]", "fallback_models: [zz]"));
        assert_eq!(message, "config routers[0].fallback_models[0]: unknown model `zz`");
        let message = refusal(&VALID.replace("provider: local", "provider: nowhere"));
        assert_eq!(message, "config models[2].provider: unknown provider `nowhere`");
    }

    #[test]
    fn duplicates_are_refused() {
        let message = refusal(&VALID.replace("id: b,", "id: a,"));
        assert!(message.contains("models[1].id") && message.contains("already"), "{message}");
        let message = refusal(&VALID.replace("aliases: [alpha]", "aliases: [b]"));
        assert!(message.contains("models[1].id"), "{message}");
        let message = refusal(&VALID.replace("name: t2", "name: t1"));
        assert_eq!(message, "config routers[0].tasks[1].name: duplicate name `t1`");
        let message = refusal(&VALID.replace("[alpha, b]", "[alpha, a]"));
        assert_eq!(message, "config routers[0].tasks[0].models[1]: model `a` is listed twice");
        let twice = format!("{VALID}  - name: r\n    tasks: [{{ name: x, description: y, models: [a] }}]\n    fallback_models: [b]\n");
        assert_eq!(refusal(&twice), "config routers[1].name: duplicate name `r`");
    }

    #[test]
    fn empty_pools_and_bad_values_are_refused() {
        let message = refusal(&VALID.replace("models: [gpu]", "models: []"));
        assert_eq!(message, "config routers[0].tasks[1].models: the model pool is empty");
        let message = refusal(&VALID.replace("fallback_models: [b]", "fallback_models: []"));
        assert_eq!(message, "config routers[0].fallback_models: the model pool is empty");
        let message = refusal(&VALID.replace("name: t2", "name: other"));
        assert!(message.contains("reserved"), "{message}");
        let message = refusal(&VALID.replace("{ input: 0.5, output: 1 }", "{ input: 0.5 }"));
        assert!(message.starts_with("config models[1].price:"), "{message}");
        let message = refusal(&VALID.replace("{ hourly: 2.5 }", "{ hourly: 2.5, input: 1, output: 1 }"));
        assert!(message.starts_with("config models[2].price:"), "{message}");
        let message = refusal(&VALID.replace("models: [gpu]", "models: [gpu], selection_policy: cheapest"));
        assert!(message.starts_with("config routers[0].tasks[1].selection_policy:"), "{message}");
        let message = refusal(&VALID.replace("selection_policy: cheapest", "selection_policy: random"));
        assert!(message.contains("unknown policy `random`"), "{message}");
        let message = refusal(&VALID.replace("kind: openai, base_url: \"http://127.0.0.1:9", "kind: openai, base_url: \"ftp://x"));
        assert!(message.starts_with("config providers[0].base_url"), "{message}");
    }

    #[test]
    fn keys_come_from_the_environment_and_never_print() {
        let config = load(VALID).unwrap();
        let provider = config.provider("p").unwrap();
        assert_eq!(provider.api_key.as_ref().unwrap().expose(), "k");
        assert!(!format!("{config:?}").contains("\"k\""));
        let without_key = Config::from_yaml(VALID, &HashMap::new()).unwrap();
        assert!(!without_key.provider("p").unwrap().available);
        assert!(without_key.provider("local").unwrap().available, "no key needed");
        assert!(!without_key.demo_active(), "a keyless provider still serves");
    }

    #[test]
    fn embedded_default_is_valid_and_goes_demo_without_keys() {
        let config = Config::embedded_default(&HashMap::new()).unwrap();
        assert_eq!(config.demo, DemoMode::Auto);
        assert!(config.demo_active());
        let names: Vec<&str> = config.routers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["software-engineering", "writing", "knowledge-base", "general"]);
        for router in &config.routers {
            assert!((4..=8).contains(&router.tasks.len()), "{}", router.name);
        }
        let with_key =
            Config::embedded_default(&HashMap::from([("OPENAI_API_KEY".to_owned(), "k".to_owned())]))
                .unwrap();
        assert!(!with_key.demo_active());
        assert!(with_key.provider("openai").unwrap().available);
        assert!(!with_key.provider("anthropic").unwrap().available);
    }
}

#[cfg(test)]
mod shipped_configs {
    use std::collections::HashMap;

    use crate::Config;

    #[test]
    fn the_single_node_example_in_cluster_is_valid() {
        let yaml = include_str!("../../../cluster/single-node.yaml");
        let config = Config::from_yaml(yaml, &HashMap::new()).unwrap();
        assert!(!config.demo_active(), "demo: off");
        assert!(config.provider("vllm").unwrap().available, "keyless");
        assert!(!config.provider("openai").unwrap().available, "no key in this test");
    }
}
