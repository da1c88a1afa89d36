//! Manual failover (`dirctl failover`, the Failover RPC): move mastership
//! to the peer without losing a flow.
//!
//! On the master: refuse unless the peer is subscribed to the sync stream
//! and not in FAULT; hand over through sync (the peer acks everything
//! produced so far, bounded by `max_wait`) — `force` skips both the checks
//! and the wait, reporting the lag as it was; then advertise
//! priority 0 on each MASTER instance, so the peer takes over after its
//! Skew_Time instead of Master_Down_Interval; then wait until the peer's
//! adverts are heard. This node stays held (no preemption back) for
//! `hold_ms`, or until the peer fails or mastership comes back by a later
//! failover.
//!
//! On a backup: ask the master over the sync stream; the master runs the
//! same handover and steps down (`Pair::start` wires that), and this node
//! waits to become master.

use std::time::Duration;

use lb_proto::common::VrrpState;
use lb_proto::control::{self as ctl, FailoverOutcome};
use syncd::HandoverError;
use tokio::time::Instant;
use tonic::Status;
use vrrp::State;

use super::pair::PairStatus;
use super::vrrp_side::VrrpSide;

/// Default bound on waiting for the peer's lag to reach zero.
const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(5000);
/// Longest wait or hold a request may ask for, ms.
const MAX_BOUND_MS: u32 = 600_000;
/// How often the takeover is checked.
const POLL: Duration = Duration::from_millis(10);

/// Advertise priority 0 on every MASTER instance (a handover the peer
/// asked for).
pub(super) async fn step_down_masters(vrrp: &VrrpSide) -> Result<(), String> {
    for i in vrrp.handle().status() {
        if i.state == State::Master {
            vrrp.handle().step_down(Some(&i.name)).await?;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// An outcome where nothing changed.
fn refused(outcome: FailoverOutcome, reason: String, started: Instant) -> ctl::FailoverResponse {
    ctl::FailoverResponse {
        outcome: outcome as i32,
        failure_reason: reason,
        took_ms: ms(started.elapsed()),
        ..Default::default()
    }
}

/// The instances the request names (all of this node's when empty).
fn selected(p: &PairStatus, name: &str) -> Result<Vec<vrrp::machine::Status>, Status> {
    let all = p.vrrp.handle().status();
    if name.is_empty() {
        return Ok(all);
    }
    let names: Vec<String> = all.iter().map(|i| i.name.clone()).collect();
    let chosen: Vec<_> = all.into_iter().filter(|i| i.name == name).collect();
    if chosen.is_empty() {
        return Err(Status::invalid_argument(format!(
            "no VRRP instance named {name:?} on this director (it has: {})",
            names.join(", ")
        )));
    }
    Ok(chosen)
}

/// Default takeover bound: 3 advert intervals (the peer's Master_Down
/// would also do) plus a second.
fn takeover_bound(req: &ctl::FailoverRequest, instances: &[vrrp::machine::Status]) -> Duration {
    if req.takeover_timeout_ms > 0 {
        return Duration::from_millis(u64::from(req.takeover_timeout_ms));
    }
    let cs = instances
        .iter()
        .map(|i| i.advert_interval_cs.max(i.master_adver_interval_cs))
        .max()
        .unwrap_or(100);
    Duration::from_millis(u64::from(cs) * 30 + 1000)
}

/// Poll until `done` holds for every named instance, or `bound` passes.
async fn wait_for(
    p: &PairStatus,
    names: &[String],
    bound: Duration,
    done: impl Fn(&vrrp::machine::Status) -> bool,
) -> Option<Vec<vrrp::machine::Status>> {
    let deadline = Instant::now() + bound;
    loop {
        let now: Vec<_> = p
            .vrrp
            .handle()
            .status()
            .into_iter()
            .filter(|i| names.contains(&i.name))
            .collect();
        if now.iter().all(&done) {
            return Some(now);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The end of a failover: the master's address once the takeover is seen
/// (`after`), else TAKEOVER_TIMEOUT with `why`.
fn took_over(
    resp: &mut ctl::FailoverResponse,
    after: Option<Vec<vrrp::machine::Status>>,
    why: String,
) {
    match after {
        Some(now) => {
            resp.new_master_address = now
                .iter()
                .find_map(|i| i.master_addr)
                .map(|a| a.to_string())
                .unwrap_or_default();
        }
        None => {
            resp.outcome = FailoverOutcome::TakeoverTimeout as i32;
            resp.failure_reason = why;
        }
    }
}

/// The Failover RPC.
pub(super) async fn run(
    p: &PairStatus,
    req: ctl::FailoverRequest,
) -> Result<ctl::FailoverResponse, Status> {
    let started = Instant::now();
    let Ok(_one) = p.failing_over.try_lock() else {
        return Err(Status::aborted(
            "a failover is already in progress on this director",
        ));
    };
    for (what, v) in [
        ("max_wait_ms", req.max_wait_ms),
        ("hold_ms", req.hold_ms),
        ("takeover_timeout_ms", req.takeover_timeout_ms),
    ] {
        if v > MAX_BOUND_MS {
            return Err(Status::invalid_argument(format!(
                "{what} {v} is out of range 0..={MAX_BOUND_MS} (10 minutes)"
            )));
        }
    }
    let instances = selected(p, &req.instance)?;
    let max_wait = match req.max_wait_ms {
        0 => DEFAULT_MAX_WAIT,
        n => Duration::from_millis(u64::from(n)),
    };
    let masters: Vec<_> = instances
        .iter()
        .filter(|i| i.state == State::Master)
        .cloned()
        .collect();
    if masters.is_empty() {
        from_backup(p, &req, &instances, max_wait, started).await
    } else {
        from_master(p, &req, &masters, max_wait, started).await
    }
}

/// Why the peer cannot take over, from its heartbeats; `None` if it can.
fn peer_unfit(p: &PairStatus, masters: &[vrrp::machine::Status]) -> Option<String> {
    let Some(server) = &p.server else {
        return Some(
            "connection sync is not configured: the peer has no copy of the connection \
             table and every established flow would break"
                .into(),
        );
    };
    let st = server.status();
    let Some(sub) = super::pair::live_subscriber(&st) else {
        return Some(format!(
            "the peer ({}) is not connected to the sync stream: it has no up-to-date \
             copy of the connection table",
            p.peer.as_deref().unwrap_or("not configured")
        ));
    };
    for m in masters {
        if let Some(b) = sub
            .peer
            .instances
            .iter()
            .find(|b| b.vrid == u32::from(m.vrid))
            && b.state != VrrpState::Backup as i32
        {
            return Some(format!(
                "the peer {} reports instance {} in state {} (not BACKUP): it cannot take over",
                sub.node_name,
                b.name,
                crate::cli::pair::state_name(b.state)
            ));
        }
    }
    None
}

async fn from_master(
    p: &PairStatus,
    req: &ctl::FailoverRequest,
    masters: &[vrrp::machine::Status],
    max_wait: Duration,
    started: Instant,
) -> Result<ctl::FailoverResponse, Status> {
    let names: Vec<String> = masters.iter().map(|i| i.name.clone()).collect();
    let unfit = peer_unfit(p, masters);
    if let Some(why) = &unfit
        && !req.force
    {
        return Ok(refused(
            FailoverOutcome::NoPeer,
            format!("{why}; nothing changed (--force fails over anyway)"),
            started,
        ));
    }
    let reason = format!("manual failover requested on {}", p.node);
    // --force skips the wait: step down now, with the lag as it is.
    let lag_now = p
        .server
        .as_ref()
        .and_then(|s| super::pair::live_subscriber(&s.status()).cloned());
    let report = match &p.server {
        Some(server) if !req.force => match server.handover(max_wait, req.force, reason).await {
            Ok(r) => Some(r),
            Err(HandoverError::LagTimeout {
                waited,
                entries_behind,
                ms_behind,
            }) => {
                return Ok(ctl::FailoverResponse {
                    lag_entries_at_switch: entries_behind,
                    lag_ms_at_switch: ms_behind,
                    waited_for_sync_ms: ms(waited),
                    ..refused(
                        FailoverOutcome::LagTimeout,
                        format!(
                            "the peer was still {entries_behind} entries / {ms_behind} ms \
                                 behind after {} ms; nothing changed (--force fails over anyway)",
                            waited.as_millis()
                        ),
                        started,
                    )
                });
            }
            Err(e @ HandoverError::NotServing) => {
                return Ok(refused(FailoverOutcome::NotMaster, e.to_string(), started));
            }
            Err(e) => {
                return Ok(refused(
                    FailoverOutcome::NoPeer,
                    format!("{e}; nothing changed"),
                    started,
                ));
            }
        },
        _ => None,
    };
    for n in &names {
        p.vrrp
            .handle()
            .step_down(Some(n))
            .await
            .map_err(|e| Status::internal(format!("VRRP step-down of {n}: {e}")))?;
    }
    if req.hold_ms > 0 {
        let vrrp = p.vrrp.clone();
        let hold = Duration::from_millis(u64::from(req.hold_ms));
        let names = names.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            for n in &names {
                let _ = vrrp.handle().release(Some(n)).await;
            }
        });
    }
    let forced = req.force;
    let bound = takeover_bound(req, masters);
    let after = wait_for(p, &names, bound, |i| {
        i.state == State::Backup && i.master_addr.is_some()
    })
    .await;
    let mut resp = ctl::FailoverResponse {
        outcome: if forced {
            FailoverOutcome::Forced
        } else {
            FailoverOutcome::Completed
        } as i32,
        took_ms: ms(started.elapsed()),
        instances: names,
        ..Default::default()
    };
    if let Some(l) = lag_now.filter(|_| report.is_none()) {
        resp.lag_entries_at_switch = l.entries_behind;
        resp.lag_ms_at_switch = l.ms_behind;
        resp.sequence_at_switch = l.acked_sequence;
        resp.new_master = l.node_name;
    }
    if let Some(r) = &report {
        resp.waited_for_sync_ms = ms(r.waited);
        resp.lag_entries_at_switch = r.entries_behind_at_switch;
        resp.lag_ms_at_switch = r.ms_behind_at_switch;
        resp.sequence_at_switch = r.acked_sequence;
        resp.new_master = r.peer.clone();
    }
    took_over(
        &mut resp,
        after,
        format!(
            "stepped down, but the peer was not heard as master within {} ms; \
             this node takes back over by VRRP rules if the peer stays silent",
            bound.as_millis()
        ),
    );
    Ok(resp)
}

async fn from_backup(
    p: &PairStatus,
    req: &ctl::FailoverRequest,
    instances: &[vrrp::machine::Status],
    max_wait: Duration,
    started: Instant,
) -> Result<ctl::FailoverResponse, Status> {
    if let Some(f) = instances.iter().find(|i| i.state == State::Fault) {
        return Ok(refused(
            FailoverOutcome::NotMaster,
            format!(
                "instance {} of this node is in FAULT: it cannot take over",
                f.name
            ),
            started,
        ));
    }
    let Some(requester) = p.requester() else {
        return Ok(refused(
            FailoverOutcome::NotMaster,
            "this node is not master and not subscribed to a sync master, so it cannot \
             ask for a handover; run dirctl failover on the master"
                .into(),
            started,
        ));
    };
    let reason = format!("failover requested by the backup {}", p.node);
    if let Err(e) = requester.request(max_wait, req.force, reason).await {
        return Ok(refused(
            FailoverOutcome::NotMaster,
            format!("the master did not hand over: {e}; nothing changed"),
            started,
        ));
    }
    let lag = p.subscriber_status();
    let names: Vec<String> = instances.iter().map(|i| i.name.clone()).collect();
    let bound = max_wait + takeover_bound(req, instances);
    let after = wait_for(p, &names, bound, |i| i.state == State::Master).await;
    let mut resp = ctl::FailoverResponse {
        outcome: FailoverOutcome::Completed as i32,
        took_ms: ms(started.elapsed()),
        instances: names,
        new_master: p.node.clone(),
        ..Default::default()
    };
    if let Some(l) = lag {
        resp.lag_entries_at_switch = l.entries_behind;
        resp.lag_ms_at_switch = l.ms_behind;
        resp.sequence_at_switch = l.applied_sequence;
    }
    took_over(
        &mut resp,
        after,
        format!(
            "the master agreed to hand over, but this node did not become master \
             within {} ms",
            bound.as_millis()
        ),
    );
    Ok(resp)
}
