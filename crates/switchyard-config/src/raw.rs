//! The configuration file's shape, exactly as written by an operator.
//!
//! Every struct denies unknown fields: a misspelt `selection_polcy` must
//! stop the node at start, not silently fall back to a default.

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    /// Date the listed prices were checked, e.g. `2025-11-24`; shown in `/v1/models`.
    #[serde(default)]
    pub prices_as_of: Option<String>,
    /// `auto` (default): demo upstreams when no provider key is set; `on`; `off`.
    #[serde(default)]
    pub demo: Option<String>,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub routers: Vec<RawRouter>,
    #[serde(default)]
    pub classifier: RawClassifier,
    #[serde(default)]
    pub affinity: RawAffinity,
    #[serde(default)]
    pub dispatch: RawDispatch,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub signals: RawSignals,
    #[serde(default)]
    pub decisions: RawDecisions,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub limits: RawLimits,
}

/// Who may call the node (`auth`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Client API keys. When any is configured, the public API
    /// (`/v1/chat/completions`, `/v1/messages`, `/v1/route`, `/v1/models`)
    /// requires one, as `Authorization: Bearer <key>` or `x-api-key`.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// An environment variable holding more keys, `name=key` pairs
    /// separated by commas or newlines; hashed as they are read.
    pub keys_env: Option<String>,
    /// The rate limit of keys that set none of their own; unlimited when unset.
    pub rate_limit: Option<RawRateLimit>,
    /// SHA-256 (hex) of the admin key, for the admin and cluster endpoints.
    pub admin_key_sha256: Option<String>,
    /// An environment variable holding the admin key itself
    /// (`cluster.admin_token_env` is the older name of this setting).
    pub admin_key_env: Option<String>,
    /// An environment variable holding the secret every node of the cluster
    /// shares: the internal gRPC services refuse calls without it.
    pub cluster_secret_env: Option<String>,
}

/// One client API key: its hash (at rest in the file) or the variable
/// holding the key itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Shown in logs, metrics and the decision log instead of the key.
    pub name: String,
    /// SHA-256 of the key, 64 hex digits (`switchyard hash-key` prints it).
    pub sha256: Option<String>,
    /// An environment variable holding the key.
    pub key_env: Option<String>,
    pub rate_limit: Option<RawRateLimit>,
}

/// A token bucket: `requests_per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_minute: u32,
    /// Requests a key may make at once after a quiet spell; a second's
    /// worth (at least 1) by default.
    pub burst: Option<u32>,
}

/// Bounds on what requests may make a node do (`limits`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Messages in one request (400 above); 2048 by default.
    pub max_messages: Option<usize>,
    /// Characters of one message the classifier reads; a longer message is
    /// cut in the middle for classification only (the upstream gets it
    /// whole). 8192 by default.
    pub max_message_chars: Option<usize>,
    /// Public API requests in flight on this node, streams included;
    /// above it requests are shed with 503 and `Retry-After`. 1024 by default.
    pub max_concurrent_requests: Option<usize>,
    /// Seconds a client may take to send its request body (408 after); 30
    /// by default.
    pub body_timeout_secs: Option<f64>,
    /// Seconds a client may take to send a request's headers, and an idle
    /// keep-alive connection may wait for its next request, before the
    /// connection is closed; 10 by default.
    pub header_timeout_secs: Option<f64>,
    /// Decisions waiting for this node's classifier workers beyond one per
    /// worker; above it a request is served by its router's fallback
    /// models instead of waiting. 256 by default.
    pub classifier_queue: Option<usize>,
    /// The longest a request waits for its classifier decision before it
    /// is served by the fallback models; 2000 ms by default.
    pub classify_timeout_ms: Option<u64>,
}

/// The decision log (`GET /v1/decisions`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisions {
    /// On by default.
    pub enabled: Option<bool>,
    /// Where the log's segment files go; `<server.data_dir>/decisions` by default.
    pub dir: Option<String>,
    /// The most the log keeps on disk, in bytes (64 MiB by default); the
    /// oldest decisions go first.
    pub max_bytes: Option<u64>,
    /// Files the budget is split over (8 by default).
    pub segments: Option<usize>,
    /// Characters of the routed message kept as a preview (80 by default);
    /// 0 keeps none (only its SHA-256).
    pub preview_chars: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// HTTP listen address, `127.0.0.1:8080` by default.
    pub listen: Option<String>,
    /// Directory for node state, `./data` by default.
    pub data_dir: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: Option<usize>,
    /// How long shutdown waits for in-flight requests to finish.
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    /// `openai` (any OpenAI-compatible endpoint).
    pub kind: String,
    pub base_url: String,
    /// Name of the environment variable holding the API key; omit for
    /// endpoints that take none (a local vLLM, say).
    pub api_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The id clients and routers use.
    pub id: String,
    pub provider: String,
    /// The model name sent upstream; the id when omitted.
    pub upstream: Option<String>,
    pub price: RawPrice,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// USD per million input and output tokens, or USD per hour for capacity
/// that is paid whether used or not (self-hosted GPUs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub hourly: Option<f64>,
}

/// A router as the file writes it; also the body of `POST /v1/routers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub tasks: Vec<RawTask>,
    #[serde(default)]
    pub fallback_models: Vec<String>,
    /// Classify on the conversation up to its last user message (default
    /// true): an agent's tool-result turns then keep the route, and the
    /// model, of the user's turn.
    pub route_on_user_only: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: String,
    pub description: String,
    pub models: Vec<String>,
    /// `cheapest`, `fastest` or `manual` (default).
    #[serde(default)]
    pub selection_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    /// `moe` (the trained head), `embedding`, or `lexical` (the BM25
    /// baseline; `bm25` also accepted).
    pub kind: Option<String>,
    /// Worker actors in the classifier pool.
    pub workers: Option<usize>,
    /// Below this score the request goes to `other` (each classifier has
    /// its own scale and default).
    pub other_threshold: Option<f32>,
    /// Where the encoder runs: `cpu` (default) or `cuda`.
    pub backend: Option<String>,
    /// How the CPU encoder multiplies: `int8` (default on the CPU) or
    /// `f32` (the only choice with `cuda`).
    pub precision: Option<String>,
    /// Directory of the encoder's files (fetched by `models/fetch.sh`).
    pub model_dir: Option<String>,
    /// Directory of the trained MoE head (`moe`; made by `switchyard train`).
    pub head_dir: Option<String>,
    /// Most messages encoded in one forward pass.
    pub max_batch: Option<usize>,
    /// How long a message waits for others to share its batch.
    pub max_wait_ms: Option<u64>,
    /// Message embeddings kept in the LRU cache.
    pub cache_entries: Option<usize>,
    /// Token budget of the turns that make up a conversation's context.
    pub context_tokens: Option<usize>,
    /// Longest encoder input per message, in tokens.
    pub max_message_tokens: Option<usize>,
    /// Classification spread over classifier nodes.
    #[serde(default)]
    pub remote: RawRemoteClassifier,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteClassifier {
    /// How long an ingress node waits for a remote classifier node before
    /// it classifies locally instead; 250 by default.
    pub timeout_ms: Option<u64>,
    /// Most conversations sent to a classifier node in one call; 32 by default.
    pub max_batch: Option<usize>,
    /// How often a classifier node renews its registration; 1000 by
    /// default. A registration not renewed for three periods expires.
    pub register_every_ms: Option<u64>,
    /// The classifier an ingress node without the `classifier` role keeps
    /// for when no classifier node answers in time: `embedding` (default),
    /// `lexical` or `moe`.
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinity {
    /// How long a session keeps its model after its first turn.
    pub ttl_secs: Option<u64>,
    /// Most sessions held at once; the oldest expire first beyond it.
    pub max_sessions: Option<usize>,
    /// Routing budget: a pinned session that has to leave its model (it
    /// failed, or is cooling down) may move only to a model at most this
    /// many times as expensive (input + output per million tokens). Unset:
    /// no cap.
    pub switch_budget: Option<f64>,
    /// Requests without `X-Model-Affinity` get a session key hashed from
    /// their system prompt, tool names and first user message: `auto`
    /// (default; only requests that declare tools, i.e. agents), `always`,
    /// or `off`.
    pub implicit_sessions: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDispatch {
    pub connect_timeout_ms: Option<u64>,
    /// Until the upstream's response headers and first body byte arrive.
    pub first_byte_timeout_ms: Option<u64>,
    /// Whole response, stream included.
    pub total_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This node's id, unique in the cluster (> 0); 1 by default.
    pub node_id: Option<u64>,
    /// Internal gRPC address (raft and cluster services), for peers only.
    /// `127.0.0.1:0` (any free loopback port) by default: right for a
    /// single node.
    pub listen: Option<String>,
    /// The gRPC address peers dial; the bound `listen` address by default.
    pub advertise: Option<String>,
    /// The public HTTP address reported to peers and in status; the bound
    /// `server.listen` address by default.
    pub http_advertise: Option<String>,
    /// The initial members, this node included.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// Whether this node forms a new cluster from `peers`. Default: the
    /// peer with the smallest id does (a lone node always does). Set
    /// `false` on a node that will join with `switchyard cluster add`.
    pub bootstrap: Option<bool>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    /// Applied entries between snapshots.
    pub snapshot_every: Option<u64>,
    /// Name of the environment variable holding the bearer token of the
    /// cluster admin endpoints; without it they accept only loopback callers.
    pub admin_token_env: Option<String>,
    /// What this node does: any of `ingress` (serves the public API),
    /// `voter` (a raft member holding the replicated pins and routers) and
    /// `classifier` (runs classifier workers, and serves them over gRPC to
    /// the ingress nodes). All three by default.
    pub roles: Option<Vec<String>>,
    /// Cluster gRPC addresses (`host:port`) a node registers its classifier
    /// workers with; the nodes answering tell it the rest of the cluster.
    /// Required on a node whose only role is `classifier`.
    #[serde(default)]
    pub seeds: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub id: u64,
    /// Its internal gRPC address.
    pub raft: String,
    /// Its public HTTP address.
    pub http: String,
}

/// Live inputs of ranking and cost accounting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignals {
    #[serde(default)]
    pub pricing: RawPricing,
    #[serde(default)]
    pub latency: RawLatency,
    #[serde(default)]
    pub health: RawHealth,
    /// Model whose prices the savings are measured against: what the same
    /// tokens would have cost there.
    pub baseline_model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// A URL returning prices as JSON (Switchyard's shape or the models.dev
    /// catalogue); unset: the static prices of `models`.
    pub url: Option<String>,
    /// Seconds between fetches (fractions allowed); 300 by default.
    pub refresh_secs: Option<f64>,
    /// Per fetch, 10000 by default.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    /// `internal` (default: measured from this node's traffic) or `prometheus`.
    pub source: Option<String>,
    /// The Prometheus server, e.g. `http://127.0.0.1:9090` (`prometheus` only).
    pub url: Option<String>,
    /// An instant PromQL query returning seconds per model (`prometheus` only).
    pub query: Option<String>,
    /// The label holding the model id; `model` by default.
    pub model_label: Option<String>,
    /// Seconds between queries (fractions allowed); 15 by default.
    pub refresh_secs: Option<f64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Failures within `window_secs` that start a cooldown; 5 by default,
    /// 0 turns cooldowns off.
    pub failures: Option<u32>,
    /// 60 by default.
    pub window_secs: Option<u64>,
    /// How long a failing model is ranked last before it is probed again;
    /// 30 by default.
    pub cooldown_secs: Option<u64>,
}
