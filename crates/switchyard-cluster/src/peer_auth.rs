//! Who may call a node's internal gRPC services (raft, pin forwarding,
//! classifier nodes): peers that present the cluster's shared secret
//! (`auth.cluster_secret_env`).
//!
//! Every client channel attaches the secret to each call ([`Link`]); every
//! server checks it ([`verify_layer`]) before any service sees the call, so
//! a stranger who reaches the port can neither vote, write pins nor read
//! prompts sent for classification. Without a configured secret both sides
//! pass calls through: right for a single node on loopback, which is the
//! default, and warned about at start when the gRPC port is not loopback.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::service::interceptor::{InterceptedService, InterceptorLayer};
use tonic::transport::{Channel, Endpoint};

/// The metadata key that carries the secret.
pub const SECRET_HEADER: &str = "x-switchyard-cluster-secret";

/// How long a connection attempt to a peer may take: peers are on a LAN.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The cluster's shared secret, or none. Cheap to clone; its `Debug`
/// never shows the value.
#[derive(Clone, Default)]
pub struct PeerSecret(Option<Arc<PeerSecretInner>>);

struct PeerSecretInner {
    header: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    digest: [u8; 32],
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "PeerSecret(***)" } else { "PeerSecret(none)" })
    }
}

impl PeerSecret {
    /// No secret: calls pass unauthenticated.
    pub fn none() -> PeerSecret {
        PeerSecret(None)
    }

    /// The secret every node of the cluster shares. `None` when it cannot
    /// travel as gRPC metadata (visible ASCII only).
    pub fn new(secret: &str) -> Option<PeerSecret> {
        let header = secret.parse().ok()?;
        Some(PeerSecret(Some(Arc::new(PeerSecretInner {
            header,
            digest: Sha256::digest(secret.as_bytes()).into(),
        }))))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a call carrying `presented` may proceed.
    fn admits(&self, presented: Option<&[u8]>) -> bool {
        let Some(inner) = &self.0 else { return true };
        let Some(presented) = presented else { return false };
        // Digests compared in full: timing says nothing of the secret.
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.iter().zip(inner.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Client side: attaches the secret to every call.
#[derive(Debug, Clone)]
pub struct Attach(PeerSecret);

impl Interceptor for Attach {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(inner) = &self.0.0 {
            request.metadata_mut().insert(SECRET_HEADER, inner.header.clone());
        }
        Ok(request)
    }
}

/// Server side: refuses calls without the secret.
#[derive(Debug, Clone)]
pub struct Verify(PeerSecret);

impl Interceptor for Verify {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let presented = request.metadata().get(SECRET_HEADER).map(|value| value.as_bytes());
        if self.0.admits(presented) {
            Ok(request)
        } else {
            tracing::warn!(peer = ?request.remote_addr(), "gRPC call without the cluster secret refused");
            Err(tonic::Status::unauthenticated("this call needs the cluster secret (auth.cluster_secret_env)"))
        }
    }
}

/// The layer a node's gRPC server puts in front of every service.
pub fn verify_layer(secret: PeerSecret) -> InterceptorLayer<Verify> {
    InterceptorLayer::new(Verify(secret))
}

/// A channel to a peer that presents the secret on every call.
pub type Link = InterceptedService<Channel, Attach>;

/// A lazily connecting [`Link`] to `addr` (`host:port`).
pub fn link(addr: &str, secret: &PeerSecret) -> Result<Link, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(InterceptedService::new(channel, Attach(secret.clone())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn a_secret_admits_only_itself() {
        let secret = PeerSecret::new("s3cret-s3cret-s3cret").unwrap();
        assert!(secret.admits(Some(b"s3cret-s3cret-s3cret")));
        assert!(!secret.admits(Some(b"s3cret-s3cret-s3creT")));
        assert!(!secret.admits(Some(b"")));
        assert!(!secret.admits(None));
        assert!(PeerSecret::none().admits(None), "no secret: open");
        assert_eq!(format!("{secret:?}"), "PeerSecret(***)");
    }

    #[test]
    fn attach_and_verify_agree() {
        let secret = PeerSecret::new("s3cret-s3cret-s3cret").unwrap();
        let attached = Attach(secret.clone()).call(tonic::Request::new(())).unwrap();
        assert!(Verify(secret.clone()).call(attached).is_ok());
        let bare = tonic::Request::new(());
        let refused = Verify(secret).call(bare).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
}
