//! `Watch`: a stream of status snapshots for `dirctl watch`, one every
//! `interval_ms`, until the client goes away.
//!
//! Each snapshot is built by the same functions as `GetNodeStatus` and
//! `ListServices` (with every option), so a watch shows exactly what those
//! RPCs would. One task per stream takes the snapshots; it waits on the
//! interval *or* on the channel closing, so a client that cancels (or
//! drops its connection) ends the task at once, not at the next tick.

use std::sync::Arc;
use std::time::Duration;

use lb_proto::control as ctl;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::ControlState;
use super::convert;
use super::service::{list_services, node_status, unix_now_ms};
use crate::service::ServiceKey;

/// Interval when the request gives none (0).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// Shortest interval served; shorter requests are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The interval a request asks for, within the contract's bounds.
fn interval(ms: u32) -> Duration {
    match ms {
        0 => DEFAULT_INTERVAL,
        ms => Duration::from_millis(u64::from(ms)).max(MIN_INTERVAL),
    }
}

/// Every `ListOptions` flag: what a watch shows of each service.
fn all_options() -> ctl::ListOptions {
    ctl::ListOptions {
        include_real_servers: true,
        include_stats: true,
        include_rates: true,
        include_health: true,
    }
}

/// Snapshot number `sequence` of the node (and its services).
fn snapshot(
    state: &ControlState,
    sequence: u64,
    services: Option<Option<ServiceKey>>,
) -> ctl::WatchSnapshot {
    let services = match services {
        None => Vec::new(),
        Some(only) => {
            let mut all = list_services(state, &all_options()).services;
            if let Some(key) = only {
                let want = convert::to_service_key(key);
                all.retain(|s| s.spec.as_ref().and_then(|sp| sp.key.as_ref()) == Some(&want));
            }
            all
        }
    };
    ctl::WatchSnapshot {
        sequence,
        at_unix_ms: unix_now_ms(),
        node: Some(node_status(state)),
        services,
    }
}

/// Start a watch: check the request, spawn the task that feeds the stream.
pub(super) fn watch(
    state: Arc<ControlState>,
    req: ctl::WatchRequest,
) -> Result<tonic::codegen::BoxStream<ctl::WatchSnapshot>, Status> {
    let every = interval(req.interval_ms);
    let only = req
        .service
        .as_ref()
        .map(|k| convert::service_key(Some(k)))
        .transpose()?;
    if let Some(key) = only
        && !state.specs().iter().any(|s| s.key == key)
    {
        return Err(Status::not_found("No such service"));
    }
    let services = req.include_services.then_some(only);
    // One snapshot in flight: a slow reader delays the next one instead of
    // queueing stale ones.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = 0u64;
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = tick.tick() => {}
            }
            sequence += 1;
            let snap = snapshot(&state, sequence, services);
            if tx.send(Ok(snap)).await.is_err() {
                break;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_default_to_a_second_and_stay_above_100_ms() {
        assert_eq!(interval(0), Duration::from_millis(1000));
        assert_eq!(interval(10), Duration::from_millis(100));
        assert_eq!(interval(250), Duration::from_millis(250));
    }
}
