//! The validated configuration the node runs on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An API key. Its `Debug` never shows the value, so a key cannot reach a
/// log line through `{:?}` of a config struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The key itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The SHA-256 of a key: all a node keeps of client and admin keys, so a
/// config file, a core dump or a debug print holds no usable key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of a presented key.
    pub fn of(key: &str) -> KeyHash {
        use sha2::Digest;
        KeyHash(sha2::Sha256::digest(key.as_bytes()).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<KeyHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(KeyHash(bytes))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Equality in time independent of where the hashes differ.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to tell keys apart in a debug print.
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A token bucket: on average `per_minute` requests a minute, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// A client API key, by its hash.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// Shown instead of the key wherever a key must be named.
    pub name: String,
    pub hash: KeyHash,
    pub rate_limit: Option<RateLimit>,
}

/// Who may call the node (`auth`).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Empty: the public API is open (to whoever reaches the listen address).
    pub keys: Vec<ClientKey>,
    /// The admin key's hash; unset: admin endpoints take loopback callers only.
    pub admin: Option<KeyHash>,
    /// Shared by every node; gRPC calls without it are refused.
    pub cluster_secret: Option<Secret>,
}

impl AuthConfig {
    /// The client key with this hash.
    pub fn key(&self, hash: &KeyHash) -> Option<&ClientKey> {
        self.keys.iter().find(|key| key.hash.matches(hash))
    }
}

/// Bounds on what requests may make a node do (`limits`).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_messages: usize,
    pub max_message_chars: usize,
    pub max_concurrent_requests: usize,
    pub body_timeout: Duration,
    pub header_timeout: Duration,
    pub classifier_queue: usize,
    pub classify_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_messages: 2048,
            max_message_chars: 8192,
            max_concurrent_requests: 1024,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            classifier_queue: 256,
            classify_timeout: Duration::from_millis(2000),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI's chat-completions API (`{base_url}/chat/completions`), or any
    /// endpoint that speaks it (vLLM, llama.cpp, Ollama, Together, ...).
    OpenAi,
    /// Anthropic's Messages API (`{base_url}/messages`, `x-api-key`).
    Anthropic,
    /// Google's Gemini API (`{base_url}/models/{model}:generateContent`,
    /// `x-goog-api-key`).
    Gemini,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoMode {
    /// Demo upstreams only when no provider has a key.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub api_key: Option<Secret>,
    /// False when the provider needs a key that the environment lacks; its
    /// models are skipped by dispatch rather than sent unauthenticated.
    pub available: bool,
    /// True when a built-in demo upstream stands in for the real endpoint.
    pub demo: bool,
}

pub use switchyard_types::Price;

#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub provider: String,
    pub upstream: String,
    pub price: Price,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionPolicy {
    /// Lowest input + output price per million tokens first.
    Cheapest,
    /// Lowest measured time-to-first-token first.
    Fastest,
    /// The declared order.
    Manual,
}

impl SelectionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionPolicy::Cheapest => "cheapest",
            SelectionPolicy::Fastest => "fastest",
            SelectionPolicy::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub description: String,
    pub models: Vec<String>,
    pub policy: SelectionPolicy,
}

#[derive(Debug, Clone)]
pub struct Router {
    pub name: String,
    pub description: Option<String>,
    pub tasks: Vec<Task>,
    pub fallback_models: Vec<String>,
    /// Classify on the conversation up to its last user message, so the
    /// tool-result turns of an agent loop route (and keep the model) as
    /// the user's turn did. Off: a trailing tool result is read as the turn.
    pub route_on_user_only: bool,
}

impl Router {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.name == name)
    }
}

/// Where the sentence encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderBackend {
    Cpu,
    Cuda,
}

/// How the CPU encoder multiplies (`classifier.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderPrecision {
    /// 8-bit weights and activations (the CPU default).
    Int8,
    /// The published f32 weights (the only choice on CUDA).
    F32,
}

#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    pub kind: String,
    pub workers: usize,
    pub backend: EncoderBackend,
    pub precision: EncoderPrecision,
    pub model_dir: PathBuf,
    pub head_dir: PathBuf,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub cache_entries: usize,
    pub context_tokens: usize,
    pub max_message_tokens: usize,
    /// Score below which a request goes to `other`; each classifier has its
    /// own scale and default.
    pub other_threshold: Option<f32>,
    pub remote: RemoteClassifierConfig,
}

/// How an ingress node uses classifier nodes (`classifier.remote`).
#[derive(Debug, Clone)]
pub struct RemoteClassifierConfig {
    pub timeout: Duration,
    pub max_batch: usize,
    pub register_every: Duration,
    /// Classifier kind kept by an ingress node without the `classifier` role.
    pub fallback: String,
}

/// When a request without `X-Model-Affinity` gets a session key of its own
/// (a hash of its system prompt, tool names and first user message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplicitSessions {
    /// Only requests that declare tools: agent loops, which re-send the
    /// same opening turns with every step.
    Auto,
    /// Every routed request.
    Always,
    Off,
}

#[derive(Debug, Clone)]
pub struct AffinityConfig {
    pub ttl: Duration,
    pub max_sessions: usize,
    pub implicit_sessions: ImplicitSessions,
    /// Highest price ratio (new / pinned model) a pinned session may move
    /// to when it must leave its model; `None`: no cap.
    pub switch_budget: Option<f64>,
}

/// Where prices come from.
#[derive(Debug, Clone, PartialEq)]
pub struct PricingConfig {
    /// `None`: the static prices of `models`.
    pub url: Option<String>,
    pub refresh: Duration,
    pub timeout: Duration,
}

/// Where the `fastest` policy's time to first token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencySource {
    /// Measured from this node's own traffic.
    Internal,
    /// An instant PromQL query against a Prometheus server's HTTP API.
    Prometheus {
        url: String,
        query: String,
        model_label: String,
        refresh: Duration,
        timeout: Duration,
    },
}

/// When a failing model is cooled down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// 0: never.
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct SignalsConfig {
    pub pricing: PricingConfig,
    pub latency: LatencySource,
    pub health: HealthConfig,
    /// Model id savings are measured against.
    pub baseline_model: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
}

/// How this node takes part in the cluster (a lone node is a cluster of one).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub http_advertise: Option<String>,
    /// The initial members, this node included (empty: this node alone).
    pub peers: Vec<PeerConfig>,
    pub bootstrap: bool,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    pub snapshot_every: u64,
    pub roles: Roles,
    /// Cluster gRPC addresses to register classifier workers with.
    pub seeds: Vec<String>,
}

/// The decision log (`decisions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionsConfig {
    pub enabled: bool,
    /// `None`: `<server.data_dir>/decisions` (see [`Config::decisions_dir`]).
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub segments: usize,
    /// 0: no preview, only the prompt's hash.
    pub preview_chars: usize,
}

/// What a node does (`cluster.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves the public API.
    pub ingress: bool,
    /// A raft member: holds the replicated pins and routers.
    pub voter: bool,
    /// Runs classifier workers and serves them over gRPC.
    pub classifier: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        ingress: true,
        voter: true,
        classifier: true,
    };

    /// Only `classifier`: no raft, no public API.
    pub fn classifier_only(self) -> bool {
        self.classifier && !self.ingress && !self.voter
    }

    /// The role names, for logs and status.
    pub fn names(self) -> Vec<&'static str> {
        [(self.ingress, "ingress"), (self.voter, "voter"), (self.classifier, "classifier")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: u64,
    pub raft: String,
    pub http: String,
}

/// A validated configuration: every reference resolves, every name is unique.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub prices_as_of: Option<String>,
    pub demo: DemoMode,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    /// The routers in force: the file's, with those made through the admin
    /// API replacing or joining them.
    pub routers: Vec<Router>,
    /// The routers as the file defines them.
    pub file_routers: Vec<Router>,
    pub classifier: ClassifierConfig,
    pub affinity: AffinityConfig,
    pub dispatch: DispatchConfig,
    pub cluster: ClusterConfig,
    pub signals: SignalsConfig,
    pub decisions: DecisionsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    /// Model id or alias → index in `models`.
    pub(crate) model_names: HashMap<String, usize>,
}

impl Config {
    /// A model by id or alias.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.model_names
            .get(name)
            .and_then(|&index| self.models.get(index))
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|provider| provider.name == name)
    }

    pub fn router(&self, name: &str) -> Option<&Router> {
        self.routers.iter().find(|router| router.name == name)
    }

    /// Validates a router definition against this config's models, as
    /// strictly as the file's routers are validated.
    pub fn validate_router(&self, raw: &crate::raw::RawRouter) -> Result<Router, crate::ConfigError> {
        crate::validate::one_router(raw, self)
    }

    /// This config with `api` routers (made through the admin API) in
    /// force: each replaces the file's router of its name, or joins the
    /// list after the file's routers.
    pub fn with_api_routers(&self, api: Vec<Router>) -> Config {
        let mut routers = self.file_routers.clone();
        for router in api {
            match routers.iter_mut().find(|existing| existing.name == router.name) {
                Some(existing) => *existing = router,
                None => routers.push(router),
            }
        }
        Config {
            routers,
            ..self.clone()
        }
    }

    /// Where the decision log lives: `decisions.dir`, or `decisions` under
    /// the data directory (resolved here, so a data directory changed after
    /// loading, e.g. by `serve --data-dir`, carries the log with it).
    pub fn decisions_dir(&self) -> PathBuf {
        self.decisions.dir.clone().unwrap_or_else(|| self.server.data_dir.join("decisions"))
    }

    /// Whether `name` is one of the file's routers.
    pub fn is_file_router(&self, name: &str) -> bool {
        self.file_routers.iter().any(|router| router.name == name)
    }

    /// True when built-in demo upstreams serve every provider.
    pub fn demo_active(&self) -> bool {
        self.providers.iter().all(|provider| provider.demo)
    }

    /// Points every provider at a demo upstream (used by the composition
    /// root once it has started one).
    pub fn use_demo_upstream(&mut self, base_url: &str) {
        for provider in &mut self.providers {
            provider.base_url = base_url.to_owned();
            provider.api_key = None;
            provider.available = true;
            provider.demo = true;
        }
    }
}
