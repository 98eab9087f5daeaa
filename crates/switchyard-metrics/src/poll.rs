//! What the signal sources share: a GET that keeps URLs out of errors, and
//! the refresh loop that hands each result (or failure) to the collector.

use std::time::Duration;

use ractor::ActorRef;

use crate::MetricsError;
use crate::actor::MetricsMsg;

/// GETs `url`; errors never carry the URL (it may hold a key).
pub(crate) async fn get(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Vec<u8>, MetricsError> {
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|err| MetricsError::Fetch(err.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(MetricsError::Fetch(format!("HTTP {status}")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|err| MetricsError::Fetch(err.without_url().to_string()))?;
    Ok(body.to_vec())
}

/// Runs `refresh` now and every `every` after, casting what it returns to
/// the collector (or, on error, `RefreshFailed` for `source`), until the
/// collector stops or the task is aborted.
pub(crate) async fn every<F, Fut>(every: Duration, source: &'static str, collector: ActorRef<MetricsMsg>, mut refresh: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<MetricsMsg, MetricsError>>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let message = refresh().await.unwrap_or_else(|error| MetricsMsg::RefreshFailed {
            source,
            error: error.to_string(),
        });
        if collector.cast(message).is_err() {
            return;
        }
    }
}
