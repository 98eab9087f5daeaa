//! The `DecisionLog` actor: the single writer of the on-disk decision log
//! ([`crate::decisions::DecisionRing`]).
//!
//! Ingress casts one record per finished request (never waiting on it);
//! queries go through the same mailbox, after the writes before them, so a
//! query sees every decision already reported. Writes are buffered and
//! flushed every second, on every query, and when the actor stops.

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_types::DecisionRecord;

use crate::MetricsError;
use crate::decisions::{DecisionQuery, DecisionRing};

/// How long a record may sit in the write buffer.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Messages the decision log accepts.
#[derive(Debug)]
pub enum DecisionLogMsg {
    /// Append one decision.
    Record(Box<DecisionRecord>),
    /// The stored decisions matching a query, oldest first, as JSON lines.
    Query {
        query: DecisionQuery,
        reply: RpcReplyPort<Result<Vec<String>, MetricsError>>,
    },
    /// Write buffered records out (sent by the actor's own timer).
    Flush,
}

/// Where and how much to keep.
#[derive(Debug, Clone)]
pub struct DecisionLogArgs {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segments: usize,
}

#[derive(Debug, Default)]
pub struct DecisionLog;

impl Actor for DecisionLog {
    type Msg = DecisionLogMsg;
    type State = DecisionRing;
    type Arguments = DecisionLogArgs;

    async fn pre_start(&self, myself: ActorRef<DecisionLogMsg>, args: DecisionLogArgs) -> Result<DecisionRing, ActorProcessingErr> {
        let ring = DecisionRing::open(&args.dir, args.max_bytes, args.segments)?;
        myself.send_interval(FLUSH_EVERY, || DecisionLogMsg::Flush);
        Ok(ring)
    }

    async fn handle(
        &self,
        _myself: ActorRef<DecisionLogMsg>,
        message: DecisionLogMsg,
        ring: &mut DecisionRing,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DecisionLogMsg::Record(record) => {
                // A full disk loses log lines, never requests.
                if let Err(err) = ring.append(&record) {
                    tracing::warn!(error = %err, "decision not logged");
                }
            }
            DecisionLogMsg::Query { query, reply } => {
                let _ = reply.send(ring.query(&query));
            }
            DecisionLogMsg::Flush => {
                if let Err(err) = ring.flush() {
                    tracing::warn!(error = %err, "decision log not flushed");
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<DecisionLogMsg>, ring: &mut DecisionRing) -> Result<(), ActorProcessingErr> {
        ring.flush()?;
        Ok(())
    }
}

/// Asks the log for the decisions matching `query`.
pub async fn query_decisions(log: &ActorRef<DecisionLogMsg>, query: DecisionQuery) -> Result<Vec<String>, MetricsError> {
    match log
        .call(|reply| DecisionLogMsg::Query { query, reply }, Some(Duration::from_secs(30)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(result)) => result,
        Ok(_) => Err(MetricsError::Unavailable("the decision log did not answer".to_owned())),
        Err(err) => Err(MetricsError::Unavailable(err.to_string())),
    }
}
