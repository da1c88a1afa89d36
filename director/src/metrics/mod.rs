//! Prometheus metrics, rendered at scrape time from what the daemon
//! already counts: nothing here keeps a counter of its own, so a scrape
//! shows exactly what `dirctl -Ln --stats`, `dirctl status` and
//! `dirctl health` show.
//!
//! [`DirectorCollector`] is a `prometheus-client` collector over the
//! [`ControlState`] (services, real servers, the dataplane's counters,
//! health checks) and its [`PairView`](crate::api::PairView) (VRRP, sync);
//! [`render`] produces the text exposition, and [`http`] serves it on
//! `GET /metrics`.
//!
//! Every name starts with `lvs_`. Counters end in `_total`; times are in
//! seconds; labels:
//! - `protocol` (`tcp`/`udp`), `vip` (`ip:port`): a virtual service;
//!   `real_server` (`ip:port`) and `method` (`dr`/`tun`/`nat`): one of its
//!   real servers (a sorry server in use appears as one).
//! - `vrrp_instance`, `vrid`, `interface`: a VRRP instance (not
//!   `instance`, which Prometheus gives every scraped target).
//! - `reason`: why the dataplane dropped a frame (the stable names of
//!   [`DropReason::as_str`](crate::forward::DropReason::as_str)).
//!
//! State-like values are one series per possible state with value 1 for
//! the current one (`lvs_vrrp_state{state="master"} 1`), so a dashboard
//! can both show and alert on them.
//!
//! Scheduler decisions: the dataplane counts every new connection the
//! scheduler sends to a real server (IPVS's `conns`), so
//! `lvs_real_server_connections_total` is the count of scheduler
//! decisions for that server; there is no separate counter.
//!
//! Traffic counters are zeroed by `dirctl -Z`, as ipvsadm's are; Prometheus
//! sees that as a counter reset, which `rate()` handles.

pub mod http;

use std::fmt;
use std::sync::Arc;

use lb_proto::common::VrrpState;
use lb_proto::control as ctl;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::api::ControlState;
use crate::dest::StatsSnapshot;
use crate::forward::DropReason;
use crate::health::state::Health;
use crate::service_table::{DestSpec, ServiceSpec};

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything the director exports, read from `state` at each scrape.
#[derive(Debug)]
pub struct DirectorCollector {
    state: Arc<ControlState>,
}

impl DirectorCollector {
    /// A collector over `state`.
    pub fn new(state: Arc<ControlState>) -> DirectorCollector {
        DirectorCollector { state }
    }
}

/// A registry holding only the director's collector.
pub fn registry(state: Arc<ControlState>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(DirectorCollector::new(state)));
    r
}

/// The text exposition (OpenMetrics, which Prometheus reads) of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug
    // in a collector, and an empty page says so plainly enough.
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// One metric family: the descriptor, then its series.
fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            m.encode_gauge(&v)?;
        } else {
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// A counter family; `name` without `_total` (the encoder adds it).
fn counter<V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
    }
    Ok(())
}

fn bool_value(b: bool) -> i64 {
    i64::from(b)
}

fn secs_from_ms(ms: impl Into<u64>) -> f64 {
    ms.into() as f64 / 1000.0
}

/// One real server as exported.
struct RealServerRow {
    labels: Labels,
    configured_weight: i32,
    effective_weight: i32,
    active: u32,
    inactive: u32,
    persistent: u32,
    overloaded: bool,
    stats: StatsSnapshot,
    health: &'static str,
}

/// One service as exported.
struct ServiceRow {
    labels: Labels,
    active: u64,
    inactive: u64,
    persistent: u64,
    stats: StatsSnapshot,
    quorum_up: Option<bool>,
    sorry_active: bool,
    servers: Vec<RealServerRow>,
}

/// The health label of `d` of `spec`: `unchecked`, or the check's state.
fn health_of(state: &ControlState, spec: &ServiceSpec, d: &DestSpec) -> &'static str {
    if state.health_plan().check_for(&spec.key, d.addr).is_none() {
        return "unchecked";
    }
    let h = state
        .health
        .get(spec.key, d.addr)
        .map(|c| {
            c.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .health()
        })
        .unwrap_or(Health::Unknown);
    match h {
        Health::Unknown => "unknown",
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// The services and their real servers: configured ones (with their
/// configured weight) and any the health overlay added (a sorry server).
fn service_rows(state: &ControlState) -> Vec<ServiceRow> {
    let mut specs = state.specs();
    specs.sort_by_key(|s| s.key);
    let effective = state.effective_specs();
    let table = state.dp.services();
    specs
        .iter()
        .map(|spec| {
            let eff = effective.iter().find(|e| e.key == spec.key);
            let live = table.get(spec.key.protocol, spec.key.vip);
            let svc_labels: Labels = vec![
                (
                    "protocol",
                    spec.key.protocol.to_string().to_ascii_lowercase(),
                ),
                ("vip", spec.key.vip.to_string()),
            ];
            let extra = eff
                .map(|e| &e.dests[..])
                .unwrap_or_default()
                .iter()
                .filter(|e| spec.dests.iter().all(|d| d.addr != e.addr));
            let servers: Vec<RealServerRow> = spec
                .dests
                .iter()
                .chain(extra)
                .map(|d| {
                    let dest = live.and_then(|s| s.dest(d.addr));
                    let effective_weight = eff
                        .and_then(|e| e.dests.iter().find(|x| x.addr == d.addr))
                        .map_or(0, |x| x.weight.max(0));
                    let mut labels = svc_labels.clone();
                    labels.push(("real_server", d.addr.to_string()));
                    labels.push(("method", d.method.to_string()));
                    RealServerRow {
                        labels,
                        configured_weight: d.weight,
                        effective_weight,
                        active: dest.map_or(0, |x| x.active_conns()),
                        inactive: dest.map_or(0, |x| x.inactive_conns()),
                        persistent: dest.map_or(0, |x| x.persist_conns()),
                        overloaded: dest.is_some_and(|x| x.is_overloaded()),
                        stats: dest.map(|x| x.stats.snapshot()).unwrap_or_default(),
                        health: health_of(state, spec, d),
                    }
                })
                .collect();
            let quorum = state.quorum(spec.key);
            ServiceRow {
                active: servers.iter().map(|r| u64::from(r.active)).sum(),
                inactive: servers.iter().map(|r| u64::from(r.inactive)).sum(),
                persistent: servers.iter().map(|r| u64::from(r.persistent)).sum(),
                stats: live.map(|s| s.stats.snapshot()).unwrap_or_default(),
                quorum_up: state
                    .health_plan()
                    .service(&spec.key)
                    .map(|_| quorum.is_some_and(|q| q.0)),
                sorry_active: quorum.is_some_and(|q| q.2),
                labels: svc_labels,
                servers,
            }
        })
        .collect()
}

fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key, value.to_owned()));
    l
}

/// Packets or bytes in both directions, one series each.
fn directions(labels: &Labels, s: &StatsSnapshot, bytes: bool) -> [(Labels, u64); 2] {
    let (i, o) = if bytes {
        (s.in_bytes, s.out_bytes)
    } else {
        (s.in_pkts, s.out_pkts)
    };
    [
        (with(labels, "direction", "in"), i),
        (with(labels, "direction", "out"), o),
    ]
}

fn encode_node(state: &ControlState, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    gauge(
        enc,
        "lvs_build_info",
        "Always 1; the node name and the directord version as labels.",
        [(
            vec![
                ("node", state.node.clone()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ],
            1i64,
        )],
    )?;
    gauge(
        enc,
        "lvs_forwarding",
        "1 while the dataplane forwards (this node owns VIPs, or is active by hand), 0 on standby.",
        [(vec![], bool_value(state.dp.is_active()))],
    )?;
    gauge(
        enc,
        "lvs_config_version",
        "Version of the service table in force; bumped by every change.",
        [(vec![], state.config_version())],
    )?;
    gauge(
        enc,
        "lvs_uptime_seconds",
        "Time since the control state was created (daemon start).",
        [(vec![], state.uptime().as_secs_f64())],
    )?;
    let conns = state.dp.conns();
    gauge(
        enc,
        "lvs_connection_table_entries",
        "Entries in the connection table, by kind (connections, persistence templates).",
        [
            (
                vec![("kind", "connection".to_owned())],
                conns.conn_count() as u64,
            ),
            (
                vec![("kind", "template".to_owned())],
                conns.template_count() as u64,
            ),
        ],
    )?;
    gauge(
        enc,
        "lvs_connection_table_max_entries",
        "Bound of the connection table ([dataplane] max_connections).",
        [(vec![], conns.max_entries() as u64)],
    )?;
    let io = state.dp.io_totals();
    let (rx, tx) = (io.rx, io.tx);
    counter(
        enc,
        "lvs_dataplane_frames",
        "Frames the dataplane workers received from their rings (in) and the kernel accepted from them (out).",
        [
            (vec![("direction", "in".to_owned())], rx),
            (vec![("direction", "out".to_owned())], tx),
        ],
    )?;
    gauge(
        enc,
        "lvs_dataplane_workers",
        "Dataplane worker threads running.",
        [(vec![], state.dp.workers() as u64)],
    )?;
    counter(
        enc,
        "lvs_dataplane_drops",
        "Frames the dataplane dropped (or answered with ICMP instead of forwarding), by reason.",
        state
            .dp
            .drops()
            .snapshot()
            .map(|(r, n): (DropReason, u64)| (r.as_str(), n))
            .into_iter()
            .chain(io.losses())
            .map(|(r, n)| (vec![("reason", r.to_owned())], n)),
    )
}

fn encode_services(state: &ControlState, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let rows = service_rows(state);
    let svc = |f: fn(&ServiceRow) -> u64| -> Vec<(Labels, u64)> {
        rows.iter().map(|r| (r.labels.clone(), f(r))).collect()
    };
    gauge(
        enc,
        "lvs_service_connections_active",
        "Active connections of a virtual service (TCP SYN_RECV/ESTABLISHED..., as ipvsadm ActiveConn).",
        svc(|r| r.active),
    )?;
    gauge(
        enc,
        "lvs_service_connections_inactive",
        "Inactive connections of a virtual service (other TCP states, UDP flows; ipvsadm InActConn).",
        svc(|r| r.inactive),
    )?;
    gauge(
        enc,
        "lvs_service_persistence_templates",
        "Persistence templates of a virtual service.",
        svc(|r| r.persistent),
    )?;
    counter(
        enc,
        "lvs_service_connections",
        "Connections scheduled by a virtual service (ipvsadm --stats Conns).",
        svc(|r| r.stats.conns),
    )?;
    counter(
        enc,
        "lvs_service_packets",
        "Packets of a virtual service, in (from clients) and out (to clients, NAT only).",
        rows.iter()
            .flat_map(|r| directions(&r.labels, &r.stats, false)),
    )?;
    counter(
        enc,
        "lvs_service_bytes",
        "Bytes of a virtual service, in (from clients) and out (to clients, NAT only).",
        rows.iter()
            .flat_map(|r| directions(&r.labels, &r.stats, true)),
    )?;
    gauge(
        enc,
        "lvs_service_quorum_up",
        "1 while a health-checked service has its quorum of weight up, 0 when it lost it.",
        rows.iter()
            .filter_map(|r| r.quorum_up.map(|q| (r.labels.clone(), bool_value(q)))),
    )?;
    gauge(
        enc,
        "lvs_service_sorry_server_active",
        "1 while a service sends new connections to its sorry server.",
        rows.iter()
            .map(|r| (r.labels.clone(), bool_value(r.sorry_active))),
    )?;

    let servers: Vec<&RealServerRow> = rows.iter().flat_map(|r| &r.servers).collect();
    let rs = |f: fn(&RealServerRow) -> i64| -> Vec<(Labels, i64)> {
        servers.iter().map(|r| (r.labels.clone(), f(r))).collect()
    };
    gauge(
        enc,
        "lvs_real_server_connections_active",
        "Active connections of a real server (ipvsadm ActiveConn).",
        rs(|r| i64::from(r.active)),
    )?;
    gauge(
        enc,
        "lvs_real_server_connections_inactive",
        "Inactive connections of a real server (ipvsadm InActConn).",
        rs(|r| i64::from(r.inactive)),
    )?;
    gauge(
        enc,
        "lvs_real_server_persistence_templates",
        "Persistence templates pointing at a real server.",
        rs(|r| i64::from(r.persistent)),
    )?;
    counter(
        enc,
        "lvs_real_server_connections",
        "New connections the scheduler sent to a real server: the scheduler's decisions \
         (ipvsadm --stats Conns).",
        servers.iter().map(|r| (r.labels.clone(), r.stats.conns)),
    )?;
    counter(
        enc,
        "lvs_real_server_packets",
        "Packets forwarded to (in) and, for NAT, from (out) a real server.",
        servers
            .iter()
            .flat_map(|r| directions(&r.labels, &r.stats, false)),
    )?;
    counter(
        enc,
        "lvs_real_server_bytes",
        "Bytes forwarded to (in) and, for NAT, from (out) a real server.",
        servers
            .iter()
            .flat_map(|r| directions(&r.labels, &r.stats, true)),
    )?;
    gauge(
        enc,
        "lvs_real_server_weight",
        "Configured weight of a real server (the operator's intent).",
        rs(|r| i64::from(r.configured_weight)),
    )?;
    gauge(
        enc,
        "lvs_real_server_effective_weight",
        "Weight the scheduler uses: the configured one with the health checks applied \
         (0 while down or removed).",
        rs(|r| i64::from(r.effective_weight)),
    )?;
    gauge(
        enc,
        "lvs_real_server_overloaded",
        "1 while a real server is over its upper connection threshold.",
        rs(|r| bool_value(r.overloaded)),
    )?;
    gauge(
        enc,
        "lvs_real_server_health",
        "Health-check state of a real server: 1 for the current state (unchecked, unknown, up, down).",
        servers.iter().flat_map(|r| {
            ["unchecked", "unknown", "up", "down"]
                .map(|s| (with(&r.labels, "state", s), bool_value(r.health == s)))
        }),
    )?;

    let h = state.health.counters.snapshot();
    counter(
        enc,
        "lvs_health_checks",
        "Health checks run.",
        [(vec![], h.checks)],
    )?;
    counter(
        enc,
        "lvs_health_check_failures",
        "Health checks that failed (timeouts included).",
        [(vec![], h.failures)],
    )?;
    counter(
        enc,
        "lvs_health_check_timeouts",
        "Health checks that ran out of time.",
        [(vec![], h.timeouts)],
    )?;
    gauge(
        enc,
        "lvs_health_checks_in_flight",
        "Health checks running now.",
        [(vec![], h.in_flight)],
    )?;
    counter(
        enc,
        "lvs_health_transitions",
        "Real servers that went up or down.",
        [
            (vec![("to", "up".to_owned())], h.went_up),
            (vec![("to", "down".to_owned())], h.went_down),
        ],
    )?;
    counter(
        enc,
        "lvs_health_quorum_changes",
        "Services that gained or lost their quorum.",
        [(vec![], h.quorum_changes)],
    )?;
    counter(
        enc,
        "lvs_health_commands",
        "Notify and quorum commands run, and those that failed or were killed.",
        [
            (vec![("result", "run".to_owned())], h.commands),
            (vec![("result", "failed".to_owned())], h.commands_failed),
        ],
    )
}

fn vrrp_state_name(s: i32) -> &'static str {
    match VrrpState::try_from(s).unwrap_or(VrrpState::Unspecified) {
        VrrpState::Init => "init",
        VrrpState::Backup => "backup",
        VrrpState::Master => "master",
        VrrpState::Fault => "fault",
        VrrpState::Unspecified => "unknown",
    }
}

fn encode_vrrp(state: &ControlState, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let (instances, counters) = match state.pair() {
        Some(p) => (p.vrrp_instances(), p.counters()),
        None => (Vec::new(), Default::default()),
    };
    let labels = |i: &ctl::VrrpInstanceStatus| -> Labels {
        vec![
            ("vrrp_instance", i.name.clone()),
            ("vrid", i.vrid.to_string()),
            ("interface", i.interface.clone()),
        ]
    };
    gauge(
        enc,
        "lvs_vrrp_state",
        "VRRP state of an instance: 1 for the current state (init, backup, master, fault).",
        instances.iter().flat_map(|i| {
            let now = vrrp_state_name(i.state);
            ["init", "backup", "master", "fault"]
                .map(|s| (with(&labels(i), "state", s), bool_value(now == s)))
        }),
    )?;
    gauge(
        enc,
        "lvs_vrrp_master",
        "1 while this node is MASTER of the instance (owns its VIPs).",
        instances
            .iter()
            .map(|i| (labels(i), bool_value(vrrp_state_name(i.state) == "master"))),
    )?;
    gauge(
        enc,
        "lvs_vrrp_priority",
        "Configured VRRP priority of an instance (255 = address owner).",
        instances.iter().map(|i| (labels(i), i64::from(i.priority))),
    )?;
    gauge(
        enc,
        "lvs_vrrp_effective_priority",
        "Priority advertised now (0 while stepping down).",
        instances
            .iter()
            .map(|i| (labels(i), i64::from(i.effective_priority))),
    )?;
    gauge(
        enc,
        "lvs_vrrp_advert_interval_seconds",
        "This node's advertisement interval.",
        instances
            .iter()
            .map(|i| (labels(i), secs_from_ms(i.advert_interval_ms))),
    )?;
    gauge(
        enc,
        "lvs_vrrp_master_down_interval_seconds",
        "Master_Down_Interval in force (3 x the master's advertisement interval + Skew_Time).",
        instances
            .iter()
            .map(|i| (labels(i), secs_from_ms(i.master_down_interval_ms))),
    )?;
    counter(
        enc,
        "lvs_vrrp_transitions",
        "VRRP state transitions of an instance since start.",
        counters
            .vrrp_transitions
            .iter()
            .map(|(name, n)| (vec![("vrrp_instance", name.clone())], *n)),
    )?;
    let driver = |name: &str| {
        counters
            .vrrp_driver
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    let node_counter = |name: &str| driver(name).map(|v| (Labels::new(), v));
    counter(
        enc,
        "lvs_vrrp_adverts_sent",
        "VRRP advertisements sent, all instances of this node together.",
        node_counter("adverts_sent"),
    )?;
    counter(
        enc,
        "lvs_vrrp_adverts_received",
        "Valid VRRP advertisements received, all instances together.",
        node_counter("adverts_received"),
    )?;
    counter(
        enc,
        "lvs_vrrp_errors",
        "VRRP socket errors, by operation (send, recv).",
        [("send", "send_errors"), ("recv", "recv_errors")]
            .into_iter()
            .filter_map(|(op, name)| driver(name).map(|v| (vec![("op", op.to_owned())], v))),
    )?;
    counter(
        enc,
        "lvs_vrrp_rejected",
        "VRRP packets received and dropped, by reason (own adverts included).",
        counters
            .vrrp_driver
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    *n,
                    "adverts_sent" | "adverts_received" | "send_errors" | "recv_errors"
                )
            })
            .map(|(n, v)| (vec![("reason", (*n).to_owned())], *v)),
    )
}

fn sync_role_name(r: i32) -> &'static str {
    match ctl::SyncRole::try_from(r).unwrap_or(ctl::SyncRole::Unspecified) {
        ctl::SyncRole::Master => "master",
        ctl::SyncRole::Subscriber => "subscriber",
        ctl::SyncRole::None | ctl::SyncRole::Unspecified => "none",
    }
}

fn encode_sync(state: &ControlState, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let s = state.pair().and_then(|p| p.sync_status());
    let one = |f: &dyn Fn(&ctl::SyncStatus) -> u64| s.as_ref().map(|s| (Labels::new(), f(s)));
    let secs = |f: &dyn Fn(&ctl::SyncStatus) -> u64| {
        s.as_ref().map(|s| (Labels::new(), secs_from_ms(f(s))))
    };
    gauge(
        enc,
        "lvs_sync_role",
        "Connection-sync role: 1 for the current one (master serves, subscriber follows, none).",
        s.iter().flat_map(|s| {
            let now = sync_role_name(s.role);
            ["master", "subscriber", "none"]
                .map(|r| (vec![("role", r.to_owned())], bool_value(now == r)))
        }),
    )?;
    gauge(
        enc,
        "lvs_sync_connected",
        "1 while a sync stream with the peer is established.",
        one(&|s| u64::from(s.connected)),
    )?;
    gauge(
        enc,
        "lvs_sync_behind_entries",
        "Events the subscriber has not applied yet (unacked batches and the rest of a snapshot).",
        one(&|s| s.entries_behind),
    )?;
    gauge(
        enc,
        "lvs_sync_behind_seconds",
        "Age of the oldest unacked batch; 0 when caught up.",
        secs(&|s| u64::from(s.ms_behind)),
    )?;
    gauge(
        enc,
        "lvs_sync_behind_window_seconds",
        "Median and 99th percentile of the lag over the recent window.",
        s.iter().flat_map(|s| {
            [
                (
                    vec![("quantile", "0.5".to_owned())],
                    secs_from_ms(s.ms_behind_p50),
                ),
                (
                    vec![("quantile", "0.99".to_owned())],
                    secs_from_ms(s.ms_behind_p99),
                ),
            ]
        }),
    )?;
    gauge(
        enc,
        "lvs_sync_epoch",
        "Stream epoch of the master (new at each takeover); 0 = none.",
        one(&|s| s.epoch),
    )?;
    gauge(
        enc,
        "lvs_sync_last_sequence",
        "Master: last batch sequence produced; subscriber: last received.",
        one(&|s| s.last_sequence),
    )?;
    gauge(
        enc,
        "lvs_sync_acked_sequence",
        "Highest contiguous batch sequence the subscriber has applied.",
        one(&|s| s.acked_sequence),
    )?;
    gauge(
        enc,
        "lvs_sync_heartbeat_age_seconds",
        "Time since the last heartbeat from the peer over the sync stream.",
        secs(&|s| u64::from(s.heartbeat_age_ms)),
    )?;
    counter(
        enc,
        "lvs_sync_deltas_sent",
        "Delta events sent (master).",
        one(&|s| s.deltas_sent),
    )?;
    counter(
        enc,
        "lvs_sync_deltas_applied",
        "Delta events applied (subscriber), or acked by the subscriber (master).",
        one(&|s| s.deltas_applied),
    )?;
    counter(
        enc,
        "lvs_sync_batches",
        "Delta batches sent (master) or applied (subscriber). The meaning follows the role, \
         so a role change may look like a counter reset.",
        one(&|s| s.batches),
    )?;
    counter(
        enc,
        "lvs_sync_bytes",
        "Bytes sent (master) or received (subscriber) on sync streams.",
        one(&|s| s.bytes),
    )?;
    counter(
        enc,
        "lvs_sync_snapshots",
        "Snapshots sent (master) or received (subscriber).",
        one(&|s| s.snapshots),
    )?;
    counter(
        enc,
        "lvs_sync_reconnects",
        "Sync streams re-established after the first one.",
        one(&|s| s.reconnects),
    )?;
    gauge(
        enc,
        "lvs_sync_last_snapshot_entries",
        "Entries in the last complete snapshot.",
        one(&|s| s.last_snapshot_entries),
    )?;
    gauge(
        enc,
        "lvs_sync_last_snapshot_bytes",
        "Encoded size of the last complete snapshot.",
        one(&|s| s.last_snapshot_bytes),
    )?;
    gauge(
        enc,
        "lvs_sync_last_snapshot_duration_seconds",
        "Time the last snapshot took, from its start to the subscriber's ack of its end.",
        secs(&|s| u64::from(s.last_snapshot_duration_ms)),
    )
}

impl Collector for DirectorCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        encode_node(&self.state, &mut enc)?;
        encode_services(&self.state, &mut enc)?;
        encode_vrrp(&self.state, &mut enc)?;
        encode_sync(&self.state, &mut enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{Dataplane, DataplaneConfig};
    use crate::forward::MacAddr;
    use crate::sched::{SchedOptions, SchedulerKind};
    use crate::service::ServiceKey;
    use crate::service_table::DestSpec;
    use crate::time::Millis;
    use crate::types::{ForwardMethod, Protocol};

    fn state() -> Arc<ControlState> {
        let dest = |addr: &str, weight| DestSpec {
            addr: addr.parse().unwrap(),
            method: ForwardMethod::DirectRouting,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        let spec = ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                vip: "10.0.0.100:80".parse().unwrap(),
            },
            scheduler: SchedulerKind::Wrr,
            sched_opts: SchedOptions::default(),
            persistence: None,
            dests: vec![dest("10.0.0.11:80", 3), dest("10.0.0.12:80", 1)],
        };
        let dp = Arc::new(Dataplane::new(DataplaneConfig::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            "10.0.0.1".parse().unwrap(),
        )));
        dp.apply(std::slice::from_ref(&spec)).unwrap();
        Arc::new(ControlState::new(
            "node-a",
            dp,
            vec![spec],
            Arc::new(|| Millis(5_000)),
        ))
    }

    #[test]
    fn a_scrape_shows_the_services_in_prometheus_text() {
        let text = render(&registry(state()));
        for line in [
            "# HELP lvs_real_server_weight Configured weight of a real server (the operator's intent).",
            "# TYPE lvs_real_server_connections counter",
            "lvs_real_server_weight{protocol=\"tcp\",vip=\"10.0.0.100:80\",real_server=\"10.0.0.11:80\",method=\"dr\"} 3",
            "lvs_real_server_effective_weight{protocol=\"tcp\",vip=\"10.0.0.100:80\",real_server=\"10.0.0.12:80\",method=\"dr\"} 1",
            "lvs_real_server_connections_total{protocol=\"tcp\",vip=\"10.0.0.100:80\",real_server=\"10.0.0.11:80\",method=\"dr\"} 0",
            "lvs_real_server_health{protocol=\"tcp\",vip=\"10.0.0.100:80\",real_server=\"10.0.0.11:80\",method=\"dr\",state=\"unchecked\"} 1",
            "lvs_service_packets_total{protocol=\"tcp\",vip=\"10.0.0.100:80\",direction=\"in\"} 0",
            "lvs_dataplane_drops_total{reason=\"standby\"} 0",
            "lvs_dataplane_frames_total{direction=\"in\"} 0",
            "lvs_dataplane_workers 0",
            "lvs_forwarding 0",
            "lvs_build_info{node=\"node-a\",version=\"0.1.0\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in:\n{text}");
        }
        assert!(!text.contains("{}"), "no empty label sets:\n{text}");
        assert!(
            !text.contains("lvs_vrrp_state{"),
            "no VRRP, no VRRP series:\n{text}"
        );
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_names() {
        let text = render(&registry(state()));
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let dash = include_str!("../../../deploy/grafana/director.json");
        let mut used = 0;
        for (i, _) in dash.match_indices("lvs_") {
            let name: String = dash[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name == "lvs_" {
                continue; // prose: "lvs_*"
            }
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(
                families.contains(&family),
                "the dashboard uses {name}, which the exporter does not have"
            );
            used += 1;
        }
        assert!(used > 20, "the dashboard queries the lvs_ metrics");
    }

    #[test]
    fn the_endpoint_answers_metrics_and_nothing_else() {
        let r = registry(state());
        let ok = http::respond(&r, &hyper::Method::GET, "/metrics");
        assert_eq!(ok.status(), hyper::StatusCode::OK);
        assert_eq!(
            ok.headers()[hyper::header::CONTENT_TYPE],
            CONTENT_TYPE,
            "Prometheus reads OpenMetrics"
        );
        assert_eq!(
            http::respond(&r, &hyper::Method::GET, "/x").status(),
            hyper::StatusCode::NOT_FOUND
        );
        assert_eq!(
            http::respond(&r, &hyper::Method::POST, "/metrics").status(),
            hyper::StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
