//! A classifier node's side of registration: every period it registers with
//! the seeds and with every node they named, so each ingress node learns of
//! it (and forgets it within three periods once it stops).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;

use super::proto;
use super::proto::registry_client::RegistryClient;
use crate::actor::{ClassifierPool, pool_size};

/// What a classifier node announces.
#[derive(Debug, Clone)]
pub struct Announce {
    /// This node's gRPC address, as ingress nodes dial it.
    pub addr: String,
    pub classifier: String,
    pub seeds: Vec<String>,
    pub every: Duration,
    /// The cluster's shared secret, presented to the nodes registered with.
    pub secret: switchyard_cluster::PeerSecret,
}

/// Registers until `stop` turns true. Failures are logged and retried on
/// the next period: a node that comes up before the cluster does simply
/// registers once the cluster is there.
///
/// `registered` carries how many nodes took the last round's registration
/// (readiness: a node is ready once one did).
pub async fn run(
    announce: Announce,
    pool: ClassifierPool,
    mut stop: watch::Receiver<bool>,
    registered: watch::Sender<usize>,
) {
    let mut known: BTreeSet<String> = announce.seeds.iter().cloned().collect();
    // Warned once per outage, not every period.
    let mut was_registered = true;
    let mut ticker = tokio::time::interval(announce.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let size = match pool_size(&pool).await {
            Ok(size) => size,
            Err(err) => {
                tracing::warn!(error = %err, "classifier pool not answering; not registering");
                continue;
            }
        };
        let registration = proto::Registration {
            addr: announce.addr.clone(),
            workers: size.workers as u32,
            busy: size.busy as u32,
            classifier: announce.classifier.clone(),
            ttl_ms: (announce.every * 3).as_millis() as u64,
        };
        let mut learned: BTreeSet<String> = announce.seeds.iter().cloned().collect();
        let mut took = 0;
        for node in &known {
            match register_with(node, registration.clone(), announce.every, &announce.secret).await {
                Ok(nodes) => {
                    took += 1;
                    learned.insert(node.clone());
                    learned.extend(nodes);
                }
                Err(err) => tracing::debug!(%node, error = %err, "registration failed"),
            }
        }
        let _ = registered.send(took);
        if took == 0 && was_registered {
            tracing::warn!(seeds = ?announce.seeds, "no cluster node took this classifier node's registration; retrying every period");
        } else if took > 0 && !was_registered {
            tracing::info!(nodes = took, "classifier node registered with the cluster");
        }
        was_registered = took > 0;
        // Nodes that left the cluster drop out; seeds always stay.
        known = learned;
    }
}

async fn register_with(
    node: &str,
    registration: proto::Registration,
    timeout: Duration,
    secret: &switchyard_cluster::PeerSecret,
) -> Result<Vec<String>, String> {
    let channel = switchyard_cluster::peer_auth::link(node, secret).map_err(|err| err.to_string())?;
    let mut request = tonic::Request::new(registration);
    request.set_timeout(timeout);
    RegistryClient::new(channel)
        .register(request)
        .await
        .map(|reply| reply.into_inner().nodes)
        .map_err(|status| status.message().to_owned())
}
