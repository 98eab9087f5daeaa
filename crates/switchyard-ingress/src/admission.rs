//! The door of the public API: who is calling (client keys), how often
//! (per-key rate limits), how many at once (load shedding), and how long
//! they may take to send their request.
//!
//! Every refusal here is cheap and comes before any routing work, so a
//! flood of bad or excess requests costs the node little; each is counted
//! in `switchyard_refused_total{reason}`. Requests beyond the concurrency
//! limit are refused with 503 and `Retry-After` at once rather than
//! queued: an unbounded queue only turns overload into timeouts for
//! everyone.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use governor::{Quota, RateLimiter, clock::Clock};
use http_body_util::BodyExt;
use ractor::ActorRef;
use switchyard_config::{AuthConfig, KeyHash, LimitsConfig, RateLimit};
use switchyard_metrics::{Admission, MetricsMsg};
use tokio::sync::Semaphore;

use crate::error::IngressError;

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// A client key with its token bucket.
struct Key {
    name: String,
    hash: KeyHash,
    limit: Option<(RateLimit, Limiter)>,
}

/// The admission state of one node, shared by every request.
pub struct Door {
    keys: Vec<Key>,
    clock: governor::clock::DefaultClock,
    in_flight: Arc<Semaphore>,
    max_concurrent: usize,
    max_body_bytes: usize,
    body_timeout: Duration,
    metrics: ActorRef<MetricsMsg>,
}

impl std::fmt::Debug for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("keys", &self.keys.len())
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl Door {
    pub fn new(auth: &AuthConfig, limits: &LimitsConfig, max_body_bytes: usize, metrics: ActorRef<MetricsMsg>) -> Door {
        let keys = auth
            .keys
            .iter()
            .map(|key| Key {
                name: key.name.clone(),
                hash: key.hash,
                limit: key.rate_limit.map(|limit| (limit, RateLimiter::direct(quota(limit)))),
            })
            .collect();
        Door {
            keys,
            clock: governor::clock::DefaultClock::default(),
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            max_concurrent: limits.max_concurrent_requests,
            max_body_bytes,
            body_timeout: limits.body_timeout,
            metrics,
        }
    }

    /// Who is calling, when keys are configured: `Ok(None)` on an open
    /// node, the key's name otherwise. Applies the key's rate limit.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Option<&str>, IngressError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let presented = presented_key(headers).ok_or(IngressError::MissingKey)?;
        let hash = KeyHash::of(presented);
        let key = self
            .keys
            .iter()
            .find(|key| key.hash.matches(&hash))
            .ok_or(IngressError::InvalidKey)?;
        if let Some((limit, limiter)) = &key.limit
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(IngressError::RateLimited {
                key: key.name.clone(),
                per_minute: limit.per_minute,
                // Rounded up: a client retrying at the advertised second
                // must find a token.
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        Ok(Some(&key.name))
    }

    fn refuse(&self, error: IngressError, anthropic: bool) -> Response {
        let reason = match &error {
            IngressError::MissingKey => "missing_key",
            IngressError::InvalidKey => "invalid_key",
            IngressError::RateLimited { .. } => "rate_limited",
            IngressError::Overloaded { .. } => "overloaded",
            IngressError::BodyTimeout { .. } => "body_timeout",
            IngressError::TooLarge { .. } => "too_large",
            _ => "other",
        };
        let _ = self.metrics.cast(MetricsMsg::Admission(Admission::Refused(reason)));
        if anthropic {
            error.into_anthropic_response()
        } else {
            error.into_response()
        }
    }
}

fn quota(limit: RateLimit) -> Quota {
    let per_minute = NonZeroU32::new(limit.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme's
/// case does not matter (RFC 9110, 11.1). Shared by client keys and the
/// admin key, so both read the header the same way.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The key a client presented: `Authorization: Bearer <key>` (OpenAI
/// SDKs) or `x-api-key: <key>` (Anthropic SDKs).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers).or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|key| !key.is_empty())
    })
}

/// The middleware in front of the public API (see the module docs).
pub async fn admit(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    let anthropic = request.uri().path() == "/v1/messages";
    match door.identify(request.headers()) {
        Ok(Some(name)) => {
            let _ = door.metrics.cast(MetricsMsg::Admission(Admission::Key(name.to_owned())));
        }
        Ok(None) => {}
        Err(error) => return door.refuse(error, anthropic),
    }
    let Ok(permit) = Arc::clone(&door.in_flight).try_acquire_owned() else {
        return door.refuse(IngressError::Overloaded { limit: door.max_concurrent }, anthropic);
    };
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body, door.max_body_bytes, door.body_timeout).await {
        Ok(bytes) => bytes,
        Err(error) => return door.refuse(error, anthropic),
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return response;
    }
    // A stream counts against the limit until its last byte is sent.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        }))
    })
}

/// The whole request body, within the size limit and the time limit.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, IngressError> {
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(IngressError::BodyTimeout {
            secs: timeout.as_secs_f64(),
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(IngressError::TooLarge { limit })
        }
        Ok(Err(error)) => Err(IngressError::Body(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        assert_eq!(presented_key(&headers("authorization", "Bearer sk-1")), Some("sk-1"));
        assert_eq!(presented_key(&headers("x-api-key", "sk-2")), Some("sk-2"));
        assert_eq!(presented_key(&headers("authorization", "Basic abc")), None);
        assert_eq!(presented_key(&headers("authorization", "Bearer  ")), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_an_empty_token_is_none() {
        assert_eq!(bearer_token(&headers("authorization", "bearer sk-1")), Some("sk-1"));
        assert_eq!(bearer_token(&headers("authorization", "BEARER  sk-1 ")), Some("sk-1"));
        assert_eq!(bearer_token(&headers("authorization", "Bearer")), None);
        assert_eq!(bearer_token(&headers("authorization", "Bearer   ")), None);
        assert_eq!(bearer_token(&headers("authorization", "Token sk-1")), None);
        // x-api-key is a client-key header only.
        assert_eq!(bearer_token(&headers("x-api-key", "sk-2")), None);
    }

    #[tokio::test]
    async fn a_slow_body_times_out_and_a_big_one_is_too_large() {
        let (mut sender, body) = {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            (tx, Body::from_stream(tokio_stream_from(rx)))
        };
        let _keep = &mut sender;
        let slow = read_body(body, 1024, Duration::from_millis(50)).await;
        assert!(matches!(slow, Err(IngressError::BodyTimeout { .. })), "{slow:?}");
        let big = read_body(Body::from(vec![b'x'; 2048]), 1024, Duration::from_secs(5)).await;
        assert!(matches!(big, Err(IngressError::TooLarge { limit: 1024 })), "{big:?}");
        let fine = read_body(Body::from("{}"), 1024, Duration::from_secs(5)).await.unwrap();
        assert_eq!(&fine[..], b"{}");
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
