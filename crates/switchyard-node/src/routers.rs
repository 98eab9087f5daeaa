//! Routers made through the admin API come into force here: whenever this
//! node applies a router change from the raft log, the routers in force
//! are rebuilt (the file's, with the API's replacing or joining them), the
//! changed route sets are prepared, and both are swapped in.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchyard_classifier::SharedIndexes;
use switchyard_cluster::Shared;
use switchyard_config::raw::RawRouter;
use switchyard_config::{LiveConfig, Router};
use tokio::sync::watch;

/// Follows the log until raft stops; `applied` carries the version in force.
pub(crate) async fn follow(shared: Arc<Shared>, live: LiveConfig, indexes: SharedIndexes, applied: watch::Sender<u64>) {
    let mut changes = shared.metrics_watch();
    loop {
        let table = shared.routers();
        if table.version != *applied.borrow() {
            match apply(&table, &live, &indexes).await {
                Ok(count) => {
                    tracing::info!(version = table.version, api_routers = count, "routers from the log in force");
                }
                Err(err) => tracing::error!(version = table.version, error = %err, "router change not applied"),
            }
            // Even a change this node could not apply is passed: waiting
            // on it would hold the admin API until its deadline for nothing.
            let _ = applied.send(table.version);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The API routers of `table` that are valid against this node's models.
/// One that is not (a node with a different model list) is skipped with an
/// error in the log, and the file's router of that name, if any, stays.
fn valid_routers(table: &switchyard_cluster::RouterTable, config: &switchyard_config::Config) -> Vec<Router> {
    table
        .routers
        .iter()
        .filter_map(|(name, stored)| {
            let checked = serde_json::from_str::<RawRouter>(&stored.definition)
                .map_err(|err| err.to_string())
                .and_then(|raw| config.validate_router(&raw).map_err(|err| err.to_string()));
            match checked {
                Ok(router) => Some(router),
                Err(err) => {
                    tracing::error!(router = %name, error = %err, "router from the log is not valid on this node; skipped");
                    None
                }
            }
        })
        .collect()
}

async fn apply(
    table: &switchyard_cluster::RouterTable,
    live: &LiveConfig,
    indexes: &SharedIndexes,
) -> Result<usize, switchyard_classifier::ClassifierError> {
    let current = live.load_full();
    let api = valid_routers(table, &current);
    let count = api.len();
    let next = Arc::new(current.with_api_routers(api));
    // While the swap happens, requests may hold either config: the interim
    // indexes serve every router of both, so neither finds its router
    // missing. The final indexes drop the removed ones.
    let names: BTreeSet<&str> = next.routers.iter().map(|router| router.name.as_str()).collect();
    let mut interim: Vec<Router> = next.routers.clone();
    interim.extend(current.routers.iter().filter(|router| !names.contains(router.name.as_str())).cloned());
    let old = indexes.load_full();
    let final_routers = next.routers.clone();
    let (interim, last) = tokio::task::spawn_blocking(move || {
        // Route sets seen before are reused by digest: only a changed
        // router's descriptions are encoded.
        let interim = old.with_routers(&interim)?;
        let last = interim.with_routers(&final_routers)?;
        Ok::<_, switchyard_classifier::ClassifierError>((interim, last))
    })
    .await
    .map_err(|err| switchyard_classifier::ClassifierError::Unavailable(err.to_string()))??;
    indexes.store(Arc::new(interim));
    live.store(next);
    indexes.store(Arc::new(last));
    Ok(count)
}
