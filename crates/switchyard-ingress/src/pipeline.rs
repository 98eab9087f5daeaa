//! One request through the stages: affinity → classifier → ranker → dispatch.
//!
//! Plain async functions over actor handles, so the order of the path reads
//! top to bottom here and the HTTP layer only translates.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use switchyard_affinity::{AffinityMsg, Pin, PinKey};
use switchyard_classifier::ClassifierError;
use switchyard_classifier::remote::Spread;
use sha2::{Digest, Sha256};
use switchyard_config::{Config, ImplicitSessions, LiveConfig};
use switchyard_types::{ChatMessage, Role, Turn};
use switchyard_dispatch::Dispatcher;
use switchyard_metrics::{DecisionLogMsg, MetricsMsg};
use switchyard_ranker::RankerMsg;
use switchyard_types::{
    AffinityStatus, ChatRequest, Conversation, DecisionRecord, DispatchOutcome, OTHER_ROUTE, RankedCandidates, RouteDecision,
    SharedSignals,
};
use tokio::time::Instant;

use crate::error::IngressError;

/// Route label used in metrics when a client names a model directly. The
/// parentheses keep it apart from any task name a config may use.
pub const DIRECT_ROUTE: &str = "(direct)";

/// Handles to every stage; one per node, shared by all requests.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The config in force; routers change through the admin API.
    pub config: LiveConfig,
    /// This node's workers and the classifier nodes it spreads over.
    pub classifier: Spread,
    pub ranker: ActorRef<RankerMsg>,
    pub affinity: ActorRef<AffinityMsg>,
    pub metrics: ActorRef<MetricsMsg>,
    pub dispatcher: Dispatcher,
    /// Prices in force, latency and cooldowns (published by the metrics
    /// collector): read for cost headers and `/v1/route`, `/v1/models`.
    pub signals: SharedSignals,
    /// This node's cluster membership: status and admin endpoints.
    pub cluster: Arc<switchyard_cluster::Shared>,
    /// The admin key's hash (`auth`): the admin and cluster endpoints need
    /// it; without one, they accept only loopback callers.
    pub admin: Option<switchyard_config::KeyHash>,
    /// The router version (log index of the last router change) whose
    /// routers are in force here; the routers API waits on it so that its
    /// answer means "served on this node".
    pub routers_applied: tokio::sync::watch::Receiver<u64>,
    /// Whether this node serves the public API (`ingress` role).
    pub ingress: bool,
    /// The decision log (`None` when `decisions.enabled` is false).
    pub decisions: Option<ActorRef<DecisionLogMsg>>,
}

/// What the client's `model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `router:<name>`: classify, rank, fail over.
    Router(String),
    /// A model id or alias (resolved to the id): no classifier, no failover.
    Model(String),
}

/// Everything decided before dispatch.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    /// Task name, `other`, or [`DIRECT_ROUTE`].
    pub route: String,
    /// The classifier's decision, when it ran (not on an affinity hit).
    pub decision: Option<RouteDecision>,
    pub candidates: RankedCandidates,
    pub affinity: AffinityStatus,
    /// The session's key and its pin before this request, if any.
    pub session: Option<(PinKey, Option<Pin>)>,
    /// Affinity + classifier + ranker time.
    pub decision_time: Duration,
    /// The routed message as the decision log keeps it.
    pub prompt: PromptDigest,
    /// Why the classifier gave no decision on purpose (`queue_full`,
    /// `timeout`): the request goes to the fallback models, unpinned.
    pub shed: Option<&'static str>,
}

/// The routed user message, as the decision log may keep it: a hash, and a
/// short preview unless `decisions.preview_chars` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptDigest {
    pub sha256: String,
    pub preview: Option<String>,
}

impl PromptDigest {
    /// The last user message's digest (the last message's when none is
    /// from the user).
    pub fn of(messages: &[ChatMessage], preview_chars: usize) -> PromptDigest {
        let text = messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .or_else(|| messages.last())
            .map(ChatMessage::text)
            .unwrap_or_default();
        // `{:x}` of the digest writes the hex in one pass (a `format!` per
        // byte was 32 allocations on every request).
        let sha256 = format!("{:x}", Sha256::digest(text.as_bytes()));
        let preview = (preview_chars > 0).then(|| {
            let mut preview: String = text.chars().take(preview_chars).collect();
            if text.chars().nth(preview_chars).is_some() {
                preview.push('…');
            }
            preview
        });
        PromptDigest { sha256, preview }
    }
}

impl Plan {
    pub fn router(&self) -> Option<&str> {
        match &self.target {
            Target::Router(name) => Some(name),
            Target::Model(_) => None,
        }
    }

    /// Whether `model` serves this request from the router's fallback pool
    /// rather than as one of the task's own candidates.
    pub fn is_fallback_model(&self, config: &Config, model: &str) -> bool {
        let Some(router) = self.router().and_then(|name| config.router(name)) else {
            return false;
        };
        let own = self.route != OTHER_ROUTE
            && router.task(&self.route).is_some_and(|task| task.models.iter().any(|m| m == model));
        !own && router.fallback_models.iter().any(|m| m == model)
    }
}

impl Pipeline {
    /// Resolves the request's `model` to a router or a model id.
    pub fn target(&self, model: &str) -> Result<Target, IngressError> {
        let config = self.config.load();
        if let Some(name) = model.strip_prefix("router:") {
            return match config.router(name) {
                Some(router) => Ok(Target::Router(router.name.clone())),
                None => Err(IngressError::UnknownRouter(name.to_owned())),
            };
        }
        match config.model(model) {
            Some(found) => Ok(Target::Model(found.id.clone())),
            None => Err(IngressError::UnknownModel(model.to_owned())),
        }
    }

    /// Decides route and candidate order for a request; no upstream call.
    pub async fn plan(
        &self,
        request: &ChatRequest,
        session: Option<String>,
    ) -> Result<Plan, IngressError> {
        let started = Instant::now();
        let target = self.target(&request.model)?;
        let prompt = PromptDigest::of(&request.messages, self.config.load().decisions.preview_chars);
        let router = match &target {
            Target::Model(id) => {
                return Ok(Plan {
                    prompt,
                    route: DIRECT_ROUTE.to_owned(),
                    decision: None,
                    candidates: RankedCandidates {
                        models: vec![id.clone()],
                        fallback_from: 1,
                        ..RankedCandidates::default()
                    },
                    affinity: AffinityStatus::None,
                    session: None,
                    decision_time: started.elapsed(),
                    target,
                    shed: None,
                });
            }
            Target::Router(router) => router.clone(),
        };

        let session = session.or_else(|| self.implicit_session(request)).map(|session| PinKey {
            router: router.clone(),
            session,
        });
        let pin = match &session {
            Some(key) => self.live_pin(key).await,
            None => None,
        };
        let status = if session.is_some() {
            AffinityStatus::Miss
        } else {
            AffinityStatus::None
        };
        let mut shed = None;
        let (route, decision, affinity) = match &pin {
            Some(pin) => (pin.route.clone(), None, AffinityStatus::Hit),
            None => {
                let config = self.config.load();
                let on_user_only = config.router(&router).is_none_or(|r| r.route_on_user_only);
                let conversation = routed_conversation(&request.messages, on_user_only, config.limits.max_message_chars);
                match self.classifier.classify(&router, conversation).await {
                    Ok(classified) => {
                        let _ = self.metrics.cast(MetricsMsg::Classified {
                            target: classified.target.as_str(),
                            fallback: classified.fallback.map(|reason| reason.as_str()),
                            seconds: classified.elapsed.as_secs_f64(),
                            nodes: self.classifier.registry().len(std::time::Instant::now()),
                        });
                        let decision = classified.decision;
                        let _ = self
                            .metrics
                            .cast(MetricsMsg::Decision(Box::new(decision.clone())));
                        (decision.route.clone(), Some(decision), status)
                    }
                    // A saturated classifier must not stall requests: the
                    // fallback models serve this one without a decision.
                    Err(ClassifierError::Shed(reason)) => {
                        tracing::warn!(router = %router, reason = reason.as_str(), "classifier saturated; serving from the fallback models");
                        let _ = self.metrics.cast(MetricsMsg::Shed { reason: reason.as_str() });
                        shed = Some(reason.as_str());
                        (OTHER_ROUTE.to_owned(), None, status)
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        let _ = self.metrics.cast(MetricsMsg::Affinity {
            router: router.clone(),
            status: affinity,
        });

        let pinned = pin.as_ref().map(|pin| pin.model.as_str());
        let candidates = switchyard_ranker::rank(&self.ranker, &router, &route, pinned).await?;
        if candidates.models.is_empty() {
            return Err(IngressError::NoCandidates(format!(
                "every model of route `{route}` of router `{router}` belongs to a provider without a key"
            )));
        }
        Ok(Plan {
            prompt,
            target,
            route,
            decision,
            candidates,
            affinity,
            session: session.map(|key| (key, pin)),
            decision_time: started.elapsed(),
            shed,
        })
    }

    /// The session key of a request that sent no `X-Model-Affinity`, when
    /// `affinity.implicit_sessions` gives it one: a hash of its system
    /// prompt, tool names and first user message, which every step of an
    /// agent loop re-sends unchanged.
    fn implicit_session(&self, request: &ChatRequest) -> Option<String> {
        let tools: Vec<&str> = request
            .extra
            .get("tools")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|tool| {
                tool.pointer("/function/name")
                    .or_else(|| tool.get("name"))
                    .and_then(serde_json::Value::as_str)
            })
            .collect();
        match self.config.load().affinity.implicit_sessions {
            ImplicitSessions::Off => return None,
            ImplicitSessions::Auto if tools.is_empty() => return None,
            ImplicitSessions::Auto | ImplicitSessions::Always => {}
        }
        Some(implicit_key(&request.messages, &tools))
    }

    /// A session's pin, if live and still pointing at a configured model and
    /// an existing task. A store failure degrades to "no pin": routing
    /// without the pin is better than failing the request.
    async fn live_pin(&self, key: &PinKey) -> Option<Pin> {
        match switchyard_affinity::lookup(&self.affinity, key.clone()).await {
            Ok(Some(pin)) => {
                let config = self.config.load();
                let router = config.router(&key.router)?;
                let route_exists = pin.route == switchyard_types::OTHER_ROUTE
                    || router.task(&pin.route).is_some();
                (route_exists && config.model(&pin.model).is_some()).then_some(pin)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "affinity lookup failed; routing without the pin");
                None
            }
        }
    }

    /// Records the model that served a session's turn (pin on the first
    /// turn, move the pin after a failover).
    pub async fn pin(&self, plan: &Plan, model: &str) {
        let Some((key, previous)) = &plan.session else {
            return;
        };
        if plan.shed.is_some() {
            // A fallback model that stood in while the classifier was
            // saturated is no choice to keep the session on.
            return;
        }
        if previous.as_ref().is_some_and(|pin| pin.model == model) {
            return;
        }
        let started = std::time::Instant::now();
        let result = switchyard_affinity::pin_served(
            &self.affinity,
            key.clone(),
            plan.route.clone(),
            model.to_owned(),
            previous.as_ref(),
        )
        .await;
        let label = match &result {
            Ok(_) if previous.is_some() => "moved",
            Ok(pin) if pin.model == model => "written",
            Ok(_) => "existing",
            Err(err) => {
                tracing::warn!(error = %err, "could not pin the session");
                "error"
            }
        };
        let _ = self.metrics.cast(MetricsMsg::PinWrite {
            result: label,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    /// Reports a finished request: to the decision log (when on) and the
    /// metrics collector. Fire and forget: neither is on the client's path.
    pub fn report(&self, plan: &Plan, outcome: DispatchOutcome) {
        if let Some(log) = &self.decisions {
            let _ = log.cast(DecisionLogMsg::Record(Box::new(decision_record(plan, &outcome))));
        }
        let _ = self.metrics.cast(MetricsMsg::Outcome(Box::new(outcome)));
    }

    /// Logs a decision that was not dispatched (`POST /v1/route`): outcome
    /// `dry_run`, the first-ranked model as its model.
    pub fn log_dry_run(&self, plan: &Plan) {
        if let Some(log) = &self.decisions {
            let outcome = DispatchOutcome {
                router: plan.router().map(str::to_owned),
                route: plan.route.clone(),
                model: plan.candidates.models.first().cloned(),
                outcome: switchyard_types::Outcome::Success,
                served_by_fallback: false,
                attempts: Vec::new(),
                usage: None,
                cost: None,
                ttft: None,
                total: Duration::ZERO,
            };
            let mut record = decision_record(plan, &outcome);
            record.outcome = "dry_run".to_owned();
            let _ = log.cast(DecisionLogMsg::Record(Box::new(record)));
        }
    }
}

/// One decision log line from a plan and how its request ended.
pub fn decision_record(plan: &Plan, outcome: &DispatchOutcome) -> DecisionRecord {
    let now = std::time::SystemTime::now();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    DecisionRecord {
        time: humantime::format_rfc3339_millis(now).to_string(),
        unix_ms: now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        router: outcome.router.clone(),
        route: outcome.route.clone(),
        model: outcome.model.clone(),
        outcome: outcome.outcome.as_str().to_owned(),
        scores: plan.decision.as_ref().map(|decision| decision.scores.clone()).unwrap_or_default(),
        classifier: plan.decision.as_ref().map(|decision| decision.classifier.clone()),
        affinity: plan.affinity.as_str().to_owned(),
        fallback: outcome.served_by_fallback,
        failed: outcome.attempts.iter().map(|attempt| attempt.model.clone()).collect(),
        decision_ms: ms(plan.decision_time),
        ttft_ms: outcome.ttft.map(ms),
        latency_ms: ms(outcome.total),
        prompt_tokens: outcome.usage.map(|usage| usage.prompt_tokens),
        completion_tokens: outcome.usage.map(|usage| usage.completion_tokens),
        cost_usd: outcome.cost.map(|cost| cost.usd),
        savings_usd: outcome.cost.and_then(|cost| cost.savings_usd()),
        prompt_sha256: plan.prompt.sha256.clone(),
        preview: plan.prompt.preview.clone(),
    }
}

/// `auto:` and the first 32 hex digits of SHA-256 over the system prompt,
/// the tool names and the first user message (each length-prefixed, so
/// no two different inputs hash the same text).
pub fn implicit_key(messages: &[ChatMessage], tools: &[&str]) -> String {
    let system: Vec<String> = messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .map(ChatMessage::text)
        .collect();
    let first_user = messages.iter().find(|m| m.role == Role::User).map(ChatMessage::text).unwrap_or_default();
    let mut hasher = Sha256::new();
    for part in system.iter().map(String::as_str).chain(std::iter::once("\u{0}tools")).chain(tools.iter().copied()).chain([first_user.as_str()]) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut key = format!("auto:{:x}", hasher.finalize());
    // The first 16 bytes (32 hex digits, all ASCII) name the session.
    key.truncate("auto:".len() + 32);
    key
}

/// The conversation the classifier reads. With `on_user_only`, it ends at
/// the last user message: the tool calls and tool results of an agent loop
/// that follow it do not move the route. Without it, a trailing tool
/// result is read as the turn to route.
/// Each message's text is cut to `max_chars` (head and tail kept): what a
/// classifier reads is bounded whatever a client sends.
pub fn routed_conversation(messages: &[ChatMessage], on_user_only: bool, max_chars: usize) -> Conversation {
    let mut conversation = match messages.iter().rposition(|m| m.role == Role::User) {
        Some(last_user) if on_user_only => Conversation::from_messages(&messages[..=last_user]),
        _ => Conversation::from_messages(messages),
    };
    for turn in &mut conversation.turns {
        if let std::borrow::Cow::Owned(cut) = switchyard_types::limits::truncate_middle(&turn.text, max_chars) {
            turn.text = cut;
        }
    }
    if !on_user_only
        && let Some(last) = conversation.turns.last_mut()
        && matches!(last.role, Role::Tool | Role::Function)
    {
        *last = Turn {
            role: Role::User,
            text: std::mem::take(&mut last.text),
        };
    }
    conversation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(json: &str) -> Vec<ChatMessage> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_implicit_key_follows_system_tools_and_first_user_message_only() {
        let step1 = messages(r#"[{"role":"system","content":"You are an agent."},{"role":"user","content":"fix the bug"}]"#);
        let step2 = messages(
            r#"[{"role":"system","content":"You are an agent."},{"role":"user","content":"fix the bug"},
                {"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"ok"}]"#,
        );
        let key = implicit_key(&step1, &["read_file", "edit"]);
        assert!(key.starts_with("auto:") && key.len() == 5 + 32, "{key}");
        assert_eq!(key, implicit_key(&step2, &["read_file", "edit"]), "later steps keep the key");
        assert_ne!(key, implicit_key(&step1, &["read_file"]), "other tools, other session");
        let other = messages(r#"[{"role":"system","content":"You are an agent."},{"role":"user","content":"add tests"}]"#);
        assert_ne!(key, implicit_key(&other, &["read_file", "edit"]));
    }

    #[test]
    fn tool_turns_route_like_the_user_turn_unless_told_otherwise() {
        let loop_step = messages(
            r#"[{"role":"user","content":"weather in Paris?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"w","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c","content":"SELECT * FROM forecasts"}]"#,
        );
        let on_user = routed_conversation(&loop_step, true, 8192);
        assert_eq!(on_user.turns.len(), 1);
        assert_eq!(on_user.user_turns_newest_first().next().unwrap().text, "weather in Paris?");
        let on_everything = routed_conversation(&loop_step, false, 8192);
        assert_eq!(on_everything.turns.len(), 3);
        assert_eq!(on_everything.user_turns_newest_first().next().unwrap().text, "SELECT * FROM forecasts");
    }
}
