//! `dirctl status` (and, as they land, the other commands for the pair):
//! what ipvsadm never had — which director is master, why, and since when.
//!
//! Formatting is pure ([`format_status`]) so it is tested without a
//! server; [`status`] fetches and prints.

use std::fmt::Write as _;
use std::io::Write;

use lb_proto::common::VrrpState;
use lb_proto::control as ctl;

use super::client::{ClientError, connect};

/// A state as operators read it (keepalived's words).
pub fn state_name(state: i32) -> &'static str {
    match VrrpState::try_from(state) {
        Ok(VrrpState::Init) => "INIT",
        Ok(VrrpState::Backup) => "BACKUP",
        Ok(VrrpState::Master) => "MASTER",
        Ok(VrrpState::Fault) => "FAULT",
        _ => "UNKNOWN",
    }
}

/// A duration in ms as `1h02m`, `3m05s`, `4.2s` or `350ms`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn ago(now_unix_ms: u64, at_unix_ms: u64) -> String {
    human_ms(now_unix_ms.saturating_sub(at_unix_ms))
}

/// The status page of one node.
pub fn format_status(s: &ctl::NodeStatus) -> String {
    let mut o = String::new();
    let mode = s
        .dataplane
        .as_ref()
        .map(|d| match ctl::DataplaneMode::try_from(d.mode) {
            Ok(ctl::DataplaneMode::Active) => "active (owns VIPs, forwards)",
            Ok(ctl::DataplaneMode::Standby) => "standby (answers nothing)",
            Ok(ctl::DataplaneMode::Stopped) => "stopped",
            Ok(ctl::DataplaneMode::Draining) => {
                "draining (forwards its flows until the new master is heard)"
            }
            _ => "unknown",
        })
        .unwrap_or("unknown");
    let _ = writeln!(
        o,
        "node {}  version {}  up {}  config v{}",
        s.node_name,
        s.software_version,
        human_ms(s.uptime_ms),
        s.config_version
    );
    let _ = writeln!(o, "dataplane: {mode}");
    if let Some(d) = s.dataplane.as_ref().filter(|d| d.workers > 0) {
        let _ = writeln!(
            o,
            "  {} worker(s) on {} ({}), {} frames in, {} out",
            d.workers,
            d.interfaces.join(", "),
            d.io_backend,
            d.rx_packets,
            d.tx_packets
        );
    }
    if let Some(d) = s.dataplane.as_ref().filter(|d| d.dropped_packets > 0) {
        let reasons: Vec<String> = d
            .drops
            .iter()
            .filter(|r| r.packets > 0)
            .map(|r| format!("{} {}", r.reason, r.packets))
            .collect();
        let _ = writeln!(
            o,
            "  dropped {} frames: {}",
            d.dropped_packets,
            reasons.join(", ")
        );
    }
    if s.vrrp_instances.is_empty() {
        let _ = writeln!(o, "vrrp: not configured (role set by hand)");
    }
    for v in &s.vrrp_instances {
        let master = if v.master_address.is_empty() {
            "unknown".to_owned()
        } else {
            v.master_address.clone()
        };
        let _ = writeln!(
            o,
            "vrrp {}: {} on {} vrid {}  priority {} (advertising {})  since {} ago",
            v.name,
            state_name(v.state),
            v.interface,
            v.vrid,
            v.priority,
            v.effective_priority,
            ago(s.now_unix_ms, v.state_since_unix_ms)
        );
        let _ = writeln!(
            o,
            "  master {master}  advert {}ms (master's {}ms, down after {}ms)  preempt {}",
            v.advert_interval_ms,
            v.master_advert_interval_ms,
            v.master_down_interval_ms,
            if v.preempt { "on" } else { "off" }
        );
        let _ = writeln!(o, "  vips {}", v.vips.join(" "));
        let _ = writeln!(
            o,
            "  adverts sent {} received {}",
            v.adverts_sent, v.adverts_received
        );
        if let Some(t) = v.recent_transitions.last() {
            let _ = writeln!(
                o,
                "  last change {} ago: {} -> {}: {}",
                ago(s.now_unix_ms, t.at_unix_ms),
                state_name(t.from),
                state_name(t.to),
                t.reason
            );
        }
    }
    match &s.sync {
        None => {
            let _ = writeln!(o, "sync: not configured");
        }
        Some(y) => {
            let role = match ctl::SyncRole::try_from(y.role) {
                Ok(ctl::SyncRole::Master) => "master",
                Ok(ctl::SyncRole::Subscriber) => "subscriber",
                _ => "none",
            };
            let peer = if y.peer_node_id.is_empty() {
                y.peer_address.clone()
            } else {
                format!("{} ({})", y.peer_node_id, y.peer_address)
            };
            let _ = writeln!(
                o,
                "sync: {role} {} peer {peer}  lag {} entries {} ms  epoch {:#x} seq {}/{}  snapshots {}",
                if y.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                y.entries_behind,
                y.ms_behind,
                y.epoch,
                y.acked_sequence,
                y.last_sequence,
                y.snapshots
            );
            if !y.last_error.is_empty() {
                let _ = writeln!(o, "  last error: {}", y.last_error);
            }
            if y.peer_uptime_ms > 0 {
                let _ = writeln!(
                    o,
                    "peer {}: up {}, {} connections",
                    if y.peer_node_id.is_empty() {
                        &y.peer_address
                    } else {
                        &y.peer_node_id
                    },
                    human_ms(y.peer_uptime_ms),
                    y.peer_connections
                );
            }
            for p in &y.peer_instances {
                let _ = writeln!(
                    o,
                    "peer vrrp {}: {} vrid {}  priority {} (advertising {})",
                    p.name,
                    state_name(p.state),
                    p.vrid,
                    p.priority,
                    p.effective_priority
                );
            }
        }
    }
    if let Some(c) = &s.connections {
        let _ = writeln!(o, "{}", connections_line(c));
    }
    o
}

/// The connection-table line of `dirctl status` and `dirctl watch`.
pub fn connections_line(c: &ctl::ConnectionCounts) -> String {
    format!(
        "connections: {} (active {}, inactive {}, templates {}, synced {})",
        c.total, c.active, c.inactive, c.templates, c.synced
    )
}

/// `dirctl status`: fetch and print this node's status.
pub async fn status(server: &str, out: &mut dyn Write) -> Result<(), ClientError> {
    let mut c = connect(server).await?;
    let s = c
        .get_node_status(ctl::GetNodeStatusRequest {})
        .await
        .map_err(|e| super::client::status_error(server, e))?
        .into_inner();
    out.write_all(format_status(&s).as_bytes())?;
    Ok(())
}

pub use ctl::FailoverRequest;

/// What a failover came to, as operators read it.
pub fn format_failover(r: &ctl::FailoverResponse) -> String {
    use ctl::FailoverOutcome as O;
    let outcome = O::try_from(r.outcome).unwrap_or(O::Unspecified);
    let mut o = String::new();
    let what = match outcome {
        O::Completed => "failover completed",
        O::Forced => "failover forced",
        O::LagTimeout => "failover refused: the peer did not catch up",
        O::NoPeer => "failover refused: no healthy peer",
        O::NotMaster => "failover refused",
        O::TakeoverTimeout => "failover incomplete: no takeover seen",
        O::Unspecified => "failover: unknown outcome",
    };
    let _ = writeln!(o, "{what} in {} ms", r.took_ms);
    if !r.failure_reason.is_empty() {
        let _ = writeln!(o, "  {}", r.failure_reason);
    }
    if matches!(outcome, O::Completed | O::Forced | O::TakeoverTimeout) {
        let master = match (r.new_master.is_empty(), r.new_master_address.is_empty()) {
            (false, false) => format!("{} ({})", r.new_master, r.new_master_address),
            (false, true) => r.new_master.clone(),
            (true, false) => r.new_master_address.clone(),
            (true, true) => "unknown".into(),
        };
        let _ = writeln!(
            o,
            "  new master {master}  instances {}",
            r.instances.join(" ")
        );
    }
    let _ = writeln!(
        o,
        "  lag at the switch: {} entries, {} ms (sequence {}); waited {} ms for sync",
        r.lag_entries_at_switch, r.lag_ms_at_switch, r.sequence_at_switch, r.waited_for_sync_ms
    );
    o
}

/// `dirctl failover`: ask and print; `Ok(true)` when mastership moved.
pub async fn failover(
    server: &str,
    req: FailoverRequest,
    out: &mut dyn Write,
) -> Result<bool, ClientError> {
    let mut c = connect(server).await?;
    let r = c
        .failover(req)
        .await
        .map_err(|e| super::client::status_error(server, e))?
        .into_inner();
    out.write_all(format_failover(&r).as_bytes())?;
    Ok(matches!(
        ctl::FailoverOutcome::try_from(r.outcome),
        Ok(ctl::FailoverOutcome::Completed | ctl::FailoverOutcome::Forced)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_ms(350), "350ms");
        assert_eq!(human_ms(4_200), "4.2s");
        assert_eq!(human_ms(185_000), "3m05s");
        assert_eq!(human_ms(3_720_000), "1h02m");
    }

    #[test]
    fn status_shows_state_master_and_last_reason() {
        let s = ctl::NodeStatus {
            node_name: "director-a".into(),
            software_version: "0.1.0".into(),
            uptime_ms: 65_000,
            now_unix_ms: 100_000,
            config_version: 3,
            vrrp_instances: vec![ctl::VrrpInstanceStatus {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: VrrpState::Master as i32,
                priority: 150,
                effective_priority: 150,
                advert_interval_ms: 100,
                master_advert_interval_ms: 100,
                master_down_interval_ms: 341,
                master_address: "10.21.0.2".into(),
                preempt: true,
                vips: vec!["10.21.0.100".into()],
                state_since_unix_ms: 90_000,
                recent_transitions: vec![ctl::VrrpTransition {
                    at_unix_ms: 90_000,
                    from: VrrpState::Backup as i32,
                    to: VrrpState::Master as i32,
                    reason: "master down interval expired".into(),
                }],
                ..Default::default()
            }],
            dataplane: Some(ctl::DataplaneStatus {
                mode: ctl::DataplaneMode::Active as i32,
                io_backend: "af_packet".into(),
                workers: 2,
                interfaces: vec!["eth0".into(), "eth1".into()],
                rx_packets: 1200,
                tx_packets: 1193,
                dropped_packets: 7,
                drops: vec![
                    ctl::DropCounter {
                        reason: "standby".into(),
                        packets: 5,
                    },
                    ctl::DropCounter {
                        reason: "no_connection".into(),
                        packets: 2,
                    },
                ],
            }),
            sync: Some(ctl::SyncStatus {
                role: ctl::SyncRole::Master as i32,
                connected: true,
                peer_node_id: "director-b".into(),
                peer_address: "10.42.0.3:7401".into(),
                entries_behind: 2,
                ms_behind: 3,
                peer_uptime_ms: 3_720_000,
                peer_connections: 200,
                peer_instances: vec![ctl::PeerVrrpInstance {
                    name: "VI_1".into(),
                    vrid: 51,
                    state: VrrpState::Backup as i32,
                    priority: 100,
                    effective_priority: 100,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = format_status(&s);
        assert!(
            text.contains(
                "sync: master connected peer director-b (10.42.0.3:7401)  lag 2 entries 3 ms"
            ),
            "{text}"
        );
        assert!(
            text.contains("peer vrrp VI_1: BACKUP vrid 51  priority 100 (advertising 100)"),
            "{text}"
        );
        assert!(
            text.contains("peer director-b: up 1h02m, 200 connections"),
            "{text}"
        );
        assert!(
            text.contains("node director-a  version 0.1.0  up 1m05s  config v3"),
            "{text}"
        );
        assert!(text.contains("dataplane: active"), "{text}");
        assert!(
            text.contains("  2 worker(s) on eth0, eth1 (af_packet), 1200 frames in, 1193 out"),
            "{text}"
        );
        assert!(
            text.contains("  dropped 7 frames: standby 5, no_connection 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "vrrp VI_1: MASTER on eth0 vrid 51  priority 150 (advertising 150)  since 10.0s ago"
            ),
            "{text}"
        );
        assert!(text.contains("master 10.21.0.2"), "{text}");
        assert!(
            text.contains("last change 10.0s ago: BACKUP -> MASTER: master down interval expired"),
            "{text}"
        );
    }

    #[test]
    fn failover_report_names_outcome_master_and_lag() {
        let done = ctl::FailoverResponse {
            outcome: ctl::FailoverOutcome::Completed as i32,
            took_ms: 212,
            waited_for_sync_ms: 3,
            lag_entries_at_switch: 0,
            lag_ms_at_switch: 0,
            sequence_at_switch: 4711,
            new_master: "director-b".into(),
            new_master_address: "10.41.0.3".into(),
            instances: vec!["VI_1".into()],
            ..Default::default()
        };
        let text = format_failover(&done);
        assert!(text.starts_with("failover completed in 212 ms\n"), "{text}");
        assert!(
            text.contains("new master director-b (10.41.0.3)  instances VI_1"),
            "{text}"
        );
        assert!(
            text.contains("lag at the switch: 0 entries, 0 ms (sequence 4711); waited 3 ms"),
            "{text}"
        );
        let refused = ctl::FailoverResponse {
            outcome: ctl::FailoverOutcome::NoPeer as i32,
            failure_reason: "the peer (10.42.0.3:7500) is not connected".into(),
            ..Default::default()
        };
        let text = format_failover(&refused);
        assert!(
            text.starts_with("failover refused: no healthy peer"),
            "{text}"
        );
        assert!(text.contains("is not connected"), "{text}");
        assert!(!text.contains("new master"), "{text}");
    }
}
