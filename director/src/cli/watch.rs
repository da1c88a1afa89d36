//! `dirctl watch`: the node at a glance, refreshed in place — VRRP state
//! per instance, sync role and lag, connection counts, and per service and
//! real server the weight, connections and rates.
//!
//! ```text
//! node director-a  snapshot 12  up 3m05s  config v4  dataplane active
//! vrrp VI_1: MASTER on eth1 vrid 51  priority 150
//! sync: master connected  lag 0 entries 0 ms
//! connections: 41 (active 12, inactive 28, templates 1, synced 0)
//!
//! Prot VirtualService / RealServer         Weight  ActConn InActConn    CPS  InPPS OutPPS  InBPS OutBPS
//! TCP  192.0.2.10:80 wlc                                12        28      4     96     90    12K   1.1M
//!   -> 10.0.0.2:80                              1        6        14      2     48     45   6000   550K
//! ```
//!
//! On a terminal each snapshot replaces the last (ANSI clear and home).
//! Elsewhere (a pipe, a file, a test) each snapshot is a block of lines,
//! blocks separated by a blank line, and `--count N` stops after N.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use lb_proto::common as pb;
use lb_proto::control as ctl;

use super::args::ServiceArg;
use super::client::{ClientError, connect, status_error};
use super::format::{addr_port, endpoint};
use super::pair::{human_ms, state_name};
use crate::api::convert::to_protocol;

/// Clear the screen and move to its top left corner.
const CLEAR_HOME: &str = "\x1b[H\x1b[2J";

/// What `dirctl watch` asks for and how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Time between snapshots (the server raises it to at least 100 ms).
    pub interval: Duration,
    /// Only this service.
    pub service: Option<ServiceArg>,
    /// Stop after this many snapshots.
    pub count: Option<u64>,
    /// Refresh in place (stdout is a terminal).
    pub in_place: bool,
}

/// The request for `opts`.
pub fn request(opts: &WatchOptions) -> ctl::WatchRequest {
    ctl::WatchRequest {
        interval_ms: u32::try_from(opts.interval.as_millis()).unwrap_or(u32::MAX),
        include_services: true,
        service: opts.service.map(|s| pb::ServiceKey {
            protocol: to_protocol(s.protocol) as i32,
            vip: Some(endpoint(s.vip)),
            fwmark: 0,
            family: 0,
        }),
    }
}

/// A rate or count in at most 6 characters: `950`, `12K`, `1.1M`.
fn short(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000_000, "T"),
        (1_000_000_000, "G"),
        (1_000_000, "M"),
        (1_000, "K"),
    ];
    if n < 10_000 {
        return n.to_string();
    }
    for (unit, suffix) in UNITS {
        if n >= unit {
            let v = n as f64 / unit as f64;
            return if v < 10.0 {
                format!("{v:.1}{suffix}")
            } else {
                format!("{}{suffix}", n / unit)
            };
        }
    }
    n.to_string()
}

fn protocol_name(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => "TCP",
        Ok(pb::Protocol::Udp) => "UDP",
        _ => "?",
    }
}

fn rates(o: &mut String, r: Option<&pb::Rates>) {
    let r = r.copied().unwrap_or_default();
    let _ = write!(
        o,
        " {:>6} {:>6} {:>6} {:>6} {:>6}",
        short(r.conns_per_sec),
        short(r.in_packets_per_sec),
        short(r.out_packets_per_sec),
        short(r.in_bytes_per_sec),
        short(r.out_bytes_per_sec)
    );
}

/// The title of the service table, its columns aligned with the rows.
pub fn table_title() -> String {
    format!(
        "{:<40} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "Prot VirtualService / RealServer",
        "Weight",
        "ActConn",
        "InActConn",
        "CPS",
        "InPPS",
        "OutPPS",
        "InBPS",
        "OutBPS"
    )
}

/// One snapshot as a block of lines.
pub fn format_snapshot(s: &ctl::WatchSnapshot) -> String {
    let mut o = String::new();
    let default_node = ctl::NodeStatus::default();
    let n = s.node.as_ref().unwrap_or(&default_node);
    let mode = match n
        .dataplane
        .as_ref()
        .map(|d| ctl::DataplaneMode::try_from(d.mode))
    {
        Some(Ok(ctl::DataplaneMode::Active)) => "active",
        Some(Ok(ctl::DataplaneMode::Standby)) => "standby",
        Some(Ok(ctl::DataplaneMode::Stopped)) => "stopped",
        _ => "unknown",
    };
    let _ = writeln!(
        o,
        "node {}  snapshot {}  up {}  config v{}  dataplane {mode}",
        n.node_name,
        s.sequence,
        human_ms(n.uptime_ms),
        n.config_version
    );
    if n.vrrp_instances.is_empty() {
        let _ = writeln!(o, "vrrp: not configured");
    }
    for v in &n.vrrp_instances {
        let _ = writeln!(
            o,
            "vrrp {}: {} on {} vrid {}  priority {}",
            v.name,
            state_name(v.state),
            v.interface,
            v.vrid,
            v.effective_priority
        );
    }
    match &n.sync {
        None => {
            let _ = writeln!(o, "sync: not configured");
        }
        Some(y) => {
            let role = match ctl::SyncRole::try_from(y.role) {
                Ok(ctl::SyncRole::Master) => "master",
                Ok(ctl::SyncRole::Subscriber) => "subscriber",
                _ => "none",
            };
            let link = if y.connected {
                "connected"
            } else {
                "disconnected"
            };
            let _ = writeln!(
                o,
                "sync: {role} {link}  lag {} entries {} ms",
                y.entries_behind, y.ms_behind
            );
        }
    }
    if let Some(c) = &n.connections {
        let _ = writeln!(o, "{}", super::pair::connections_line(c));
    }
    if s.services.is_empty() {
        return o;
    }
    let _ = writeln!(o, "\n{}", table_title());
    for svc in &s.services {
        let default_spec = pb::ServiceSpec::default();
        let spec = svc.spec.as_ref().unwrap_or(&default_spec);
        let key = spec.key.clone().unwrap_or_default();
        let name = format!(
            "{:<4} {} {}",
            protocol_name(key.protocol),
            addr_port(key.vip.as_ref()),
            spec.scheduler
        );
        let _ = write!(
            o,
            "{name:<40} {:>6} {:>8} {:>9}",
            "", svc.active_conns, svc.inactive_conns
        );
        rates(&mut o, svc.rates.as_ref());
        o.push('\n');
        for rs in &svc.real_servers {
            let addr = rs.spec.as_ref().and_then(|s| s.address.as_ref());
            let name = format!("  -> {}", addr_port(addr));
            let _ = write!(
                o,
                "{name:<40} {:>6} {:>8} {:>9}",
                rs.effective_weight, rs.active_conns, rs.inactive_conns
            );
            rates(&mut o, rs.rates.as_ref());
            o.push('\n');
        }
    }
    o
}

/// `dirctl watch`: print snapshots until `opts.count` or the stream ends.
pub async fn watch(
    server: &str,
    opts: &WatchOptions,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut c = connect(server).await?;
    let mut stream = c
        .watch(request(opts))
        .await
        .map_err(|s| status_error(server, s))?
        .into_inner();
    let mut shown = 0u64;
    while opts.count.is_none_or(|n| shown < n) {
        let Some(snap) = stream
            .message()
            .await
            .map_err(|s| status_error(server, s))?
        else {
            break;
        };
        let block = format_snapshot(&snap);
        if opts.in_place {
            write!(out, "{CLEAR_HOME}{block}")?;
        } else {
            if shown > 0 {
                writeln!(out)?;
            }
            out.write_all(block.as_bytes())?;
        }
        out.flush()?;
        shown += 1;
    }
    // Dropping the stream cancels the call; the server's task ends.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_six_columns() {
        assert_eq!(short(950), "950");
        assert_eq!(short(9_999), "9999");
        assert_eq!(short(12_345), "12K");
        assert_eq!(short(1_100_000), "1.1M");
        assert_eq!(short(123_456_789_000), "123G");
    }

    #[test]
    fn a_snapshot_shows_node_vrrp_sync_and_each_server() {
        let rs = |ip: &str, w, a, i| ctl::RealServerInfo {
            spec: Some(pb::RealServerSpec {
                address: Some(pb::Endpoint {
                    ip: ip.into(),
                    port: 80,
                }),
                ..Default::default()
            }),
            effective_weight: w,
            active_conns: a,
            inactive_conns: i,
            rates: Some(pb::Rates {
                conns_per_sec: 2,
                in_packets_per_sec: 48,
                out_packets_per_sec: 45,
                in_bytes_per_sec: 6_000,
                out_bytes_per_sec: 550_000,
            }),
            ..Default::default()
        };
        let snap = ctl::WatchSnapshot {
            sequence: 12,
            at_unix_ms: 0,
            node: Some(ctl::NodeStatus {
                node_name: "director-a".into(),
                uptime_ms: 185_000,
                config_version: 4,
                dataplane: Some(ctl::DataplaneStatus {
                    mode: ctl::DataplaneMode::Active as i32,
                    ..Default::default()
                }),
                vrrp_instances: vec![ctl::VrrpInstanceStatus {
                    name: "VI_1".into(),
                    state: pb::VrrpState::Master as i32,
                    interface: "eth1".into(),
                    vrid: 51,
                    effective_priority: 150,
                    ..Default::default()
                }],
                sync: Some(ctl::SyncStatus {
                    role: ctl::SyncRole::Master as i32,
                    connected: true,
                    entries_behind: 3,
                    ms_behind: 20,
                    ..Default::default()
                }),
                connections: Some(ctl::ConnectionCounts {
                    total: 41,
                    active: 12,
                    inactive: 28,
                    templates: 1,
                    synced: 0,
                }),
                ..Default::default()
            }),
            services: vec![ctl::ServiceInfo {
                spec: Some(pb::ServiceSpec {
                    key: Some(pb::ServiceKey {
                        protocol: pb::Protocol::Tcp as i32,
                        vip: Some(pb::Endpoint {
                            ip: "192.0.2.10".into(),
                            port: 80,
                        }),
                        ..Default::default()
                    }),
                    scheduler: "wlc".into(),
                    ..Default::default()
                }),
                active_conns: 12,
                inactive_conns: 28,
                real_servers: vec![rs("10.0.0.2", 1, 6, 14), rs("10.0.0.3", 2, 6, 14)],
                ..Default::default()
            }],
        };
        let text = format_snapshot(&snap);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "node director-a  snapshot 12  up 3m05s  config v4  dataplane active",
                "vrrp VI_1: MASTER on eth1 vrid 51  priority 150",
                "sync: master connected  lag 3 entries 20 ms",
                "connections: 41 (active 12, inactive 28, templates 1, synced 0)",
            ]
        );
        assert_eq!(lines[4], "");
        assert_eq!(lines[5], table_title());
        assert_eq!(
            lines[6],
            "TCP  192.0.2.10:80 wlc                                12        28      0      0      0      0      0"
        );
        assert_eq!(
            lines[7],
            "  -> 10.0.0.2:80                              1        6        14      2     48     45   6000   550K"
        );
        // Every column of the rows lines up under the title.
        for l in &lines[6..] {
            assert_eq!(l.len(), table_title().len(), "{l:?}");
        }
    }
}
