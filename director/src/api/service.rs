//! The `Control` RPCs over a [`ControlState`].
//!
//! Implemented: services (add, edit, delete, clear, get, list), real
//! servers (add, edit, delete), counters, connections, timeouts and node
//! status, health, save/restore (`rules.rs`), failover (through the
//! daemon's pair side), which (`which.rs`) and watch (`watch.rs`). Rates
//! come from the estimators the daemon samples every 2 s
//! (`estimator.rs`).
//!
//! Listings show the real servers the dataplane runs — the configured
//! ones with their effective weights (0 while a health check holds one
//! down, as ipvsadm shows it under keepalived), without those a check took
//! out, and with the sorry server while it is in use; each entry's spec
//! carries the configured weight.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lb_proto::common as pb;
use lb_proto::control::{self as ctl, control_server::Control, rule_op::Op};
use tonic::{Request, Response, Status};

use super::ControlState;
use super::convert::{self, to_dest_spec, to_service_spec};
use crate::conn::{ConnState, TcpState};
use crate::dest::StatsSnapshot;
use crate::estimator::{RateKey, RateSnapshot};
use crate::service::Service;
use crate::service_table::ServiceSpec;

/// ipvsadm's longest settable timeout (`MAX_TIMEOUT`): 31 days.
const MAX_TIMEOUT_S: u32 = 86_400 * 31;

/// The gRPC service over a shared [`ControlState`].
#[derive(Debug, Clone)]
pub struct ControlService {
    state: Arc<ControlState>,
}

impl ControlService {
    /// The service over `state`.
    pub fn new(state: Arc<ControlState>) -> ControlService {
        ControlService { state }
    }

    /// One mutation RPC: the same op `ApplyRules` runs, alone, published
    /// as one new configuration version or refused with nothing changed.
    fn mutate(&self, op: Op) -> Result<Response<ctl::ConfigChange>, Status> {
        let op = ctl::RuleOp { op: Some(op) };
        let (_, version) = self.state.edit(|specs| {
            super::rules::apply_op(specs, &mut super::rules::TimeoutChange::default(), &op)
        })?;
        Ok(change(version))
    }
}

fn no_service() -> Status {
    Status::not_found("No such service")
}

fn to_stats(s: StatsSnapshot) -> pb::Stats {
    pb::Stats {
        conns: s.conns,
        in_packets: s.in_pkts,
        out_packets: s.out_pkts,
        in_bytes: s.in_bytes,
        out_bytes: s.out_bytes,
    }
}

fn to_rates(r: RateSnapshot) -> pb::Rates {
    pb::Rates {
        conns_per_sec: r.cps,
        in_packets_per_sec: r.in_pps,
        out_packets_per_sec: r.out_pps,
        in_bytes_per_sec: r.in_bps,
        out_bytes_per_sec: r.out_bps,
    }
}

fn change(version: u64) -> Response<ctl::ConfigChange> {
    Response::new(ctl::ConfigChange {
        config_version: version,
    })
}

/// A service as listed: its configuration from the specs, its real
/// servers as the dataplane runs them (`eff`), its live figures from the
/// running table.
fn service_info(
    state: &ControlState,
    spec: &ServiceSpec,
    eff: Option<&ServiceSpec>,
    live: Option<&Arc<Service>>,
    opts: &ctl::ListOptions,
) -> ctl::ServiceInfo {
    let mut info = ctl::ServiceInfo {
        spec: Some(to_service_spec(spec)),
        ..Default::default()
    };
    if opts.include_stats {
        info.stats = Some(to_stats(
            live.map(|s| s.stats.snapshot()).unwrap_or_default(),
        ));
    }
    if opts.include_rates {
        info.rates = Some(to_rates(state.rates.rates(RateKey {
            service: spec.key,
            dest: None,
        })));
    }
    let unix_now = unix_now_ms();
    for e in eff.map_or(&[][..], |s| &s.dests[..]) {
        // The configured spec (configured weight), or the sorry server's.
        let d = spec.dests.iter().find(|d| d.addr == e.addr).unwrap_or(e);
        let dest = live.and_then(|s| s.dest(d.addr));
        let active = dest.map_or(0, |d| d.active_conns());
        let inactive = dest.map_or(0, |d| d.inactive_conns());
        let persist = dest.map_or(0, |d| d.persist_conns());
        info.active_conns = info.active_conns.saturating_add(active);
        info.inactive_conns = info.inactive_conns.saturating_add(inactive);
        info.persistent_conns = info.persistent_conns.saturating_add(persist);
        if !opts.include_real_servers {
            continue;
        }
        let effective = u32::try_from(e.weight.max(0)).unwrap_or(0);
        info.real_servers.push(ctl::RealServerInfo {
            spec: Some(to_dest_spec(d)),
            active_conns: active,
            inactive_conns: inactive,
            persistent_conns: persist,
            overloaded: dest.is_some_and(|d| d.is_overloaded()),
            effective_weight: effective,
            stats: opts
                .include_stats
                .then(|| to_stats(dest.map(|d| d.stats.snapshot()).unwrap_or_default())),
            rates: opts.include_rates.then(|| {
                to_rates(state.rates.rates(RateKey {
                    service: spec.key,
                    dest: Some(d.addr),
                }))
            }),
            health: opts.include_health.then(|| {
                super::health::real_server_health(state, spec.key, d, effective, unix_now)
            }),
        });
    }
    info
}

/// Every service with its status, in listing order (`ListServices`, and
/// each `Watch` snapshot).
pub(super) fn list_services(
    state: &ControlState,
    opts: &ctl::ListOptions,
) -> ctl::ListServicesResponse {
    let mut specs = state.specs();
    specs.sort_by_key(|s| s.key);
    let effective = state.effective_specs();
    let table = state.dp.services();
    let services = specs
        .iter()
        .map(|s| {
            service_info(
                state,
                s,
                effective.iter().find(|e| e.key == s.key),
                table.get(s.key.protocol, s.key.vip),
                opts,
            )
        })
        .collect();
    ctl::ListServicesResponse {
        services,
        config_version: table.version(),
    }
}

/// The node's status (`GetNodeStatus`, and each `Watch` snapshot).
pub(super) fn node_status(st: &ControlState) -> ctl::NodeStatus {
    let table = st.dp.services();
    let conns = st.dp.conns();
    let (mut active, mut inactive) = (0u64, 0u64);
    for s in table.services() {
        for d in &s.dests {
            active += u64::from(d.active_conns());
            inactive += u64::from(d.inactive_conns());
        }
    }
    let io = st.dp.io_totals();
    let mut drops: Vec<ctl::DropCounter> = st
        .dp
        .drops()
        .snapshot()
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        // Frames lost below the dataplane: at a worker's full ring, and
        // sends the kernel refused.
        .chain(io.losses())
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| ctl::DropCounter {
            reason: r.to_owned(),
            packets: n,
        })
        .collect();
    drops.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.reason.cmp(&b.reason)));
    let (rx_packets, tx_packets) = (io.rx, io.tx);
    ctl::NodeStatus {
        node_name: st.node.clone(),
        // The sync protocol identifies a node by its configured name.
        node_id: st.node.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_ms: u64::try_from(st.uptime().as_millis()).unwrap_or(u64::MAX),
        now_unix_ms: unix_now_ms(),
        vrrp_instances: st.pair().map(|p| p.vrrp_instances()).unwrap_or_default(),
        sync: st.pair().and_then(|p| p.sync_status()),
        connections: Some(ctl::ConnectionCounts {
            total: conns.len() as u64,
            active,
            inactive,
            templates: conns.template_count() as u64,
            synced: conns.synced_count(st.now()) as u64,
        }),
        config_version: table.version(),
        dataplane: Some(ctl::DataplaneStatus {
            mode: if st.dp.is_active() {
                ctl::DataplaneMode::Active
            } else if st.dp.is_draining() {
                ctl::DataplaneMode::Draining
            } else {
                ctl::DataplaneMode::Standby
            } as i32,
            io_backend: "af_packet".to_owned(),
            workers: st.dp.workers() as u32,
            interfaces: st.dp.config().names.clone(),
            rx_packets,
            tx_packets,
            dropped_packets: st.dp.drops().total() + io.ring_drops + io.send_failures,
            drops,
        }),
    }
}

/// The wall clock, unix ms: the reference for the `*_unix_ms` fields the
/// API reports. The API is driver code, not the core; it reads no time for
/// any decision.
#[allow(clippy::disallowed_methods)]
pub(super) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timeouts_response(state: &ControlState, version: u64) -> ctl::TimeoutsResponse {
    let t = state.dp.conns().timeouts();
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let (tcp, fin, udp) = t.ipvsadm();
    let state_timeouts = TcpState::ALL
        .iter()
        .map(|s| ConnState::Tcp(*s))
        .chain([ConnState::Udp])
        .map(|s| ctl::StateTimeout {
            state: convert::to_conn_state(s) as i32,
            timeout_s: secs(t.get(s)),
        })
        .collect();
    ctl::TimeoutsResponse {
        timeouts: Some(pb::Timeouts {
            tcp_timeout_s: secs(tcp),
            tcp_fin_timeout_s: secs(fin),
            udp_timeout_s: secs(udp),
        }),
        state_timeouts,
        config_version: version,
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn add_service(
        &self,
        request: Request<ctl::AddServiceRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::AddService(request.into_inner()))
    }

    async fn edit_service(
        &self,
        request: Request<ctl::EditServiceRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::EditService(request.into_inner()))
    }

    async fn delete_service(
        &self,
        request: Request<ctl::DeleteServiceRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::DeleteService(request.into_inner()))
    }

    async fn clear_services(
        &self,
        request: Request<ctl::ClearServicesRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::ClearServices(request.into_inner()))
    }

    async fn get_service(
        &self,
        request: Request<ctl::GetServiceRequest>,
    ) -> Result<Response<ctl::ServiceInfo>, Status> {
        let req = request.into_inner();
        let key = convert::service_key(req.service.as_ref())?;
        let opts = req.options.unwrap_or_default();
        let specs = self.state.specs();
        let spec = specs.iter().find(|s| s.key == key).ok_or_else(no_service)?;
        let effective = self.state.effective_specs();
        let table = self.state.dp.services();
        Ok(Response::new(service_info(
            &self.state,
            spec,
            effective.iter().find(|e| e.key == key),
            table.get(key.protocol, key.vip),
            &opts,
        )))
    }

    async fn list_services(
        &self,
        request: Request<ctl::ListServicesRequest>,
    ) -> Result<Response<ctl::ListServicesResponse>, Status> {
        let opts = request.into_inner().options.unwrap_or_default();
        Ok(Response::new(list_services(&self.state, &opts)))
    }

    async fn add_real_server(
        &self,
        request: Request<ctl::AddRealServerRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::AddRealServer(request.into_inner()))
    }

    async fn edit_real_server(
        &self,
        request: Request<ctl::EditRealServerRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::EditRealServer(request.into_inner()))
    }

    async fn delete_real_server(
        &self,
        request: Request<ctl::DeleteRealServerRequest>,
    ) -> Result<Response<ctl::ConfigChange>, Status> {
        self.mutate(Op::DeleteRealServer(request.into_inner()))
    }

    async fn zero_counters(
        &self,
        request: Request<ctl::ZeroCountersRequest>,
    ) -> Result<Response<ctl::ZeroCountersResponse>, Status> {
        let table = self.state.dp.services();
        let zero = |s: &Service| {
            s.stats.zero();
            for d in &s.dests {
                d.stats.zero();
            }
        };
        let services_zeroed = match request.get_ref().service.as_ref() {
            Some(k) => {
                let key = convert::service_key(Some(k))?;
                let svc = table.get(key.protocol, key.vip).ok_or_else(no_service)?;
                zero(svc);
                1
            }
            None => {
                let all = table.services();
                all.iter().for_each(|s| zero(s));
                u32::try_from(all.len()).unwrap_or(u32::MAX)
            }
        };
        Ok(Response::new(ctl::ZeroCountersResponse { services_zeroed }))
    }

    async fn list_connections(
        &self,
        request: Request<ctl::ListConnectionsRequest>,
    ) -> Result<Response<ctl::ListConnectionsResponse>, Status> {
        // A page walks the whole table: keep that off the async workers.
        let state = Arc::clone(&self.state);
        let req = request.into_inner();
        tokio::task::spawn_blocking(move || super::conns::list(&state, &req))
            .await
            .map_err(|e| Status::internal(format!("listing connections failed: {e}")))?
            .map(Response::new)
    }

    async fn get_timeouts(
        &self,
        _request: Request<ctl::GetTimeoutsRequest>,
    ) -> Result<Response<ctl::TimeoutsResponse>, Status> {
        Ok(Response::new(timeouts_response(
            &self.state,
            self.state.config_version(),
        )))
    }

    async fn set_timeouts(
        &self,
        request: Request<ctl::SetTimeoutsRequest>,
    ) -> Result<Response<ctl::TimeoutsResponse>, Status> {
        let t = request.into_inner().timeouts.unwrap_or_default();
        for (name, v) in [
            ("tcp", t.tcp_timeout_s),
            ("tcpfin", t.tcp_fin_timeout_s),
            ("udp", t.udp_timeout_s),
        ] {
            if v > MAX_TIMEOUT_S {
                return Err(Status::invalid_argument(format!(
                    "{name} timeout {v} s is out of range 0..={MAX_TIMEOUT_S} (31 days; 0 = unchanged)"
                )));
            }
        }
        self.state.check_writable()?;
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        let version = self
            .state
            .bump_version(|| {
                self.state.dp.conns().timeouts().set_ipvsadm(
                    secs(t.tcp_timeout_s),
                    secs(t.tcp_fin_timeout_s),
                    secs(t.udp_timeout_s),
                );
            })
            .map_err(|e| Status::internal(format!("republishing the services failed: {e}")))?;
        Ok(Response::new(timeouts_response(&self.state, version)))
    }

    async fn get_node_status(
        &self,
        _request: Request<ctl::GetNodeStatusRequest>,
    ) -> Result<Response<ctl::NodeStatus>, Status> {
        Ok(Response::new(node_status(&self.state)))
    }

    async fn get_service_table(
        &self,
        _request: Request<ctl::GetServiceTableRequest>,
    ) -> Result<Response<pb::ServiceTable>, Status> {
        Ok(Response::new(super::rules::service_table(&self.state)))
    }

    async fn apply_rules(
        &self,
        request: Request<ctl::ApplyRulesRequest>,
    ) -> Result<Response<ctl::ApplyRulesResponse>, Status> {
        super::rules::apply(&self.state, request.get_ref()).map(Response::new)
    }

    async fn get_sync_status(
        &self,
        _request: Request<ctl::GetSyncStatusRequest>,
    ) -> Result<Response<ctl::SyncStatus>, Status> {
        self.state
            .pair()
            .and_then(|p| p.sync_status())
            .map(Response::new)
            .ok_or_else(|| {
                Status::failed_precondition(
                    "connection sync is not configured on this director (no [sync] table)",
                )
            })
    }

    async fn failover(
        &self,
        request: Request<ctl::FailoverRequest>,
    ) -> Result<Response<ctl::FailoverResponse>, Status> {
        let Some(pair) = self.state.pair().cloned() else {
            return Err(Status::failed_precondition(
                "this director runs no VRRP ([[vrrp_instance]]): there is no peer to fail over to",
            ));
        };
        pair.failover(request.into_inner()).await.map(Response::new)
    }

    async fn which(
        &self,
        request: Request<ctl::WhichRequest>,
    ) -> Result<Response<ctl::WhichResponse>, Status> {
        super::which::which(&self.state, request.get_ref()).map(Response::new)
    }

    /// Server stream of [`ctl::WatchSnapshot`]s.
    type WatchStream = tonic::codegen::BoxStream<ctl::WatchSnapshot>;

    async fn watch(
        &self,
        request: Request<ctl::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        super::watch::watch(Arc::clone(&self.state), request.into_inner()).map(Response::new)
    }

    async fn get_health(
        &self,
        request: Request<ctl::GetHealthRequest>,
    ) -> Result<Response<ctl::GetHealthResponse>, Status> {
        super::health::get_health(&self.state, request.get_ref(), unix_now_ms()).map(Response::new)
    }
}
