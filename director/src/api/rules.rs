//! Save and restore: `GetServiceTable` (what `ipvsadm -S` prints) and
//! `ApplyRules` (`ipvsadm -R`, but all or nothing).
//!
//! [`apply_ops`] runs a list of [`ctl::RuleOp`]s on a copy of the
//! configured services, each op meaning what its RPC means (`-A` of an
//! existing service is ALREADY_EXISTS, `-a` to a missing one NOT_FOUND,
//! ...), and checks the service each op touched, so a refusal names the op
//! that caused it: "op 3: No such service". [`apply`] publishes the result
//! as one new configuration version, or nothing at all. The daemon's
//! configuration loader runs the same [`apply_ops`] on the ops of an
//! ipvsadm rules file, so a rules file means the same thing at start-up as
//! through `dirctl -R`.

use std::time::Duration;

use lb_proto::common as pb;
use lb_proto::control::{self as ctl, rule_op::Op};
use tonic::Status;

use super::ControlState;
use super::convert;
use crate::health::HealthPlan;
use crate::service::ServiceKey;
use crate::service_table::{ServiceSpec, ServiceTable};

/// ipvsadm's longest settable timeout (`MAX_TIMEOUT`): 31 days.
const MAX_TIMEOUT_S: u32 = 86_400 * 31;

/// `--set tcp tcpfin udp` collected over a transaction: 0 = unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutChange {
    /// ESTABLISHED timeout, s.
    pub tcp: u32,
    /// FIN_WAIT timeout, s.
    pub tcpfin: u32,
    /// UDP timeout, s.
    pub udp: u32,
}

impl TimeoutChange {
    /// Whether any value is set.
    pub fn is_empty(&self) -> bool {
        *self == TimeoutChange::default()
    }

    fn merge(&mut self, t: &pb::Timeouts) -> Result<(), Status> {
        for (name, v, slot) in [
            ("tcp", t.tcp_timeout_s, &mut self.tcp),
            ("tcpfin", t.tcp_fin_timeout_s, &mut self.tcpfin),
            ("udp", t.udp_timeout_s, &mut self.udp),
        ] {
            if v > MAX_TIMEOUT_S {
                return Err(Status::invalid_argument(format!(
                    "{name} timeout {v} s is out of range 0..={MAX_TIMEOUT_S} (31 days; 0 = unchanged)"
                )));
            }
            if v != 0 {
                *slot = v;
            }
        }
        Ok(())
    }

    /// Apply to the connection table's timeouts (0 = unchanged).
    pub fn apply(&self, timeouts: &crate::conn::Timeouts) {
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        timeouts.set_ipvsadm(secs(self.tcp), secs(self.tcpfin), secs(self.udp));
    }
}

fn find(specs: &[ServiceSpec], key: ServiceKey) -> Result<usize, Status> {
    specs
        .iter()
        .position(|s| s.key == key)
        .ok_or_else(|| Status::not_found("No such service"))
}

/// Run one op on `specs`; returns the service it touched, if any. The
/// mutation RPCs are each one op run through this.
pub(crate) fn apply_op(
    specs: &mut Vec<ServiceSpec>,
    timeouts: &mut TimeoutChange,
    op: &ctl::RuleOp,
) -> Result<Option<ServiceKey>, Status> {
    let op = op
        .op
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("the operation is empty (no op set)"))?;
    match op {
        Op::AddService(req) => {
            let mut spec = convert::service_spec(req.spec.as_ref())?;
            spec.dests = req
                .real_servers
                .iter()
                .map(|rs| convert::dest_spec(spec.key, Some(rs)))
                .collect::<Result<_, _>>()?;
            if specs.iter().any(|s| s.key == spec.key) {
                return Err(Status::already_exists("Service already exists"));
            }
            let key = spec.key;
            specs.push(spec);
            Ok(Some(key))
        }
        Op::EditService(req) => {
            let spec = convert::service_spec(req.spec.as_ref())?;
            let i = find(specs, spec.key)?;
            let dests = std::mem::take(&mut specs[i].dests);
            specs[i] = ServiceSpec { dests, ..spec };
            Ok(Some(specs[i].key))
        }
        Op::DeleteService(req) => {
            let key = convert::service_key(req.service.as_ref())?;
            let i = find(specs, key)?;
            specs.remove(i);
            Ok(None)
        }
        Op::ClearServices(_) => {
            specs.clear();
            Ok(None)
        }
        Op::AddRealServer(req) => {
            let key = convert::service_key(req.service.as_ref())?;
            let dest = convert::dest_spec(key, req.real_server.as_ref())?;
            let i = find(specs, key)?;
            if specs[i].dests.iter().any(|d| d.addr == dest.addr) {
                return Err(Status::already_exists("Destination already exists"));
            }
            specs[i].dests.push(dest);
            Ok(Some(key))
        }
        Op::EditRealServer(req) => {
            let key = convert::service_key(req.service.as_ref())?;
            let dest = convert::dest_spec(key, req.real_server.as_ref())?;
            let i = find(specs, key)?;
            let d = specs[i]
                .dests
                .iter_mut()
                .find(|d| d.addr == dest.addr)
                .ok_or_else(|| Status::not_found("No such destination"))?;
            *d = dest;
            Ok(Some(key))
        }
        Op::DeleteRealServer(req) => {
            let key = convert::service_key(req.service.as_ref())?;
            let addr = convert::dest_addr(key, req.address.as_ref())?;
            let i = find(specs, key)?;
            let j = specs[i]
                .dests
                .iter()
                .position(|d| d.addr == addr)
                .ok_or_else(|| Status::not_found("No such destination"))?;
            specs[i].dests.remove(j);
            Ok(None)
        }
        Op::SetTimeouts(req) => {
            timeouts.merge(&req.timeouts.unwrap_or_default())?;
            Ok(None)
        }
    }
}

/// Run `ops` in order on `specs` (the sorry servers of `plan` may not
/// become real servers). The first refusal stops the run; its status keeps
/// its code and gets the message "op N: ..." (N from 0). `specs` is then
/// in an unspecified state: run this on a copy.
pub fn apply_ops(
    specs: &mut Vec<ServiceSpec>,
    timeouts: &mut TimeoutChange,
    plan: &HealthPlan,
    ops: &[ctl::RuleOp],
) -> Result<(), Status> {
    for (n, op) in ops.iter().enumerate() {
        let at = |s: Status| Status::new(s.code(), format!("op {n}: {}", s.message()));
        let touched = apply_op(specs, timeouts, op).map_err(at)?;
        if let Some(spec) = touched.and_then(|k| specs.iter().find(|s| s.key == k)) {
            ControlState::check_configured(std::slice::from_ref(spec), plan).map_err(at)?;
        }
    }
    Ok(())
}

fn counts(specs: &[ServiceSpec]) -> (u32, u32) {
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    (n(specs.len()), n(specs.iter().map(|s| s.dests.len()).sum()))
}

/// `GetServiceTable`: the configured services ordered by key (real
/// servers in configuration order, configured weights), the timeouts and
/// the version, taken together.
pub fn service_table(state: &ControlState) -> pb::ServiceTable {
    table_of(state, true)
}

/// The configured services (sorted by key, or in configuration order as
/// the sync master sends them), the timeouts and the version, taken
/// together.
pub fn table_of(state: &ControlState, sorted: bool) -> pb::ServiceTable {
    let cur = state.lock();
    let mut specs = cur.specs.clone();
    let version = state.config_version();
    drop(cur);
    if sorted {
        specs.sort_by_key(|s| s.key);
    }
    let (tcp, fin, udp) = state.dp.conns().timeouts().ipvsadm();
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    pb::ServiceTable {
        version,
        services: specs
            .iter()
            .map(|s| pb::ServiceConfig {
                spec: Some(convert::to_service_spec(s)),
                real_servers: s.dests.iter().map(convert::to_dest_spec).collect(),
            })
            .collect(),
        timeouts: Some(pb::Timeouts {
            tcp_timeout_s: secs(tcp),
            tcp_fin_timeout_s: secs(fin),
            udp_timeout_s: secs(udp),
        }),
    }
}

fn check_version(state: &ControlState, expected: u64) -> Result<(), Status> {
    let current = state.config_version();
    if expected != 0 && expected != current {
        return Err(Status::failed_precondition(format!(
            "the configuration changed: expected version {expected}, the director is at \
             {current}; nothing was applied (read the rules again and retry)"
        )));
    }
    Ok(())
}

/// `ApplyRules`: every op on a copy, then one publication, or nothing.
pub fn apply(
    state: &ControlState,
    req: &ctl::ApplyRulesRequest,
) -> Result<ctl::ApplyRulesResponse, Status> {
    let plan = state.health_plan();
    let ops_applied = u32::try_from(req.ops.len()).unwrap_or(u32::MAX);
    let run = |specs: &mut Vec<ServiceSpec>| -> Result<TimeoutChange, Status> {
        check_version(state, req.expected_config_version)?;
        if req.replace {
            specs.clear();
        }
        let mut timeouts = TimeoutChange::default();
        apply_ops(specs, &mut timeouts, &plan, &req.ops)?;
        Ok(timeouts)
    };
    if req.dry_run || (req.ops.is_empty() && !req.replace) {
        let mut next = state.specs();
        run(&mut next)?;
        ControlState::check_configured(&next, &plan)?;
        ServiceTable::empty()
            .rebuild(&next)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (services, real_servers) = counts(&next);
        return Ok(ctl::ApplyRulesResponse {
            config_version: state.config_version(),
            ops_applied,
            services,
            real_servers,
        });
    }
    // Timeouts go in with the services: set inside the transaction, put
    // back if the services are refused after all.
    let conn_timeouts = state.dp.conns().timeouts();
    let before = conn_timeouts.ipvsadm();
    let result = state.edit(|specs| {
        let timeouts = run(specs)?;
        timeouts.apply(conn_timeouts);
        Ok(counts(specs))
    });
    match result {
        Ok(((services, real_servers), version)) => Ok(ctl::ApplyRulesResponse {
            config_version: version,
            ops_applied,
            services,
            real_servers,
        }),
        Err(e) => {
            conn_timeouts.set_ipvsadm(before.0, before.1, before.2);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn key(port: u32) -> pb::ServiceKey {
        pb::ServiceKey {
            protocol: pb::Protocol::Tcp as i32,
            vip: Some(pb::Endpoint {
                ip: "10.0.0.1".into(),
                port,
            }),
            ..Default::default()
        }
    }

    fn add_service(port: u32) -> ctl::RuleOp {
        ctl::RuleOp {
            op: Some(Op::AddService(ctl::AddServiceRequest {
                spec: Some(pb::ServiceSpec {
                    key: Some(key(port)),
                    scheduler: "rr".into(),
                    ..Default::default()
                }),
                real_servers: Vec::new(),
            })),
        }
    }

    fn add_server(port: u32, ip: &str, rport: u32, method: pb::ForwardMethod) -> ctl::RuleOp {
        ctl::RuleOp {
            op: Some(Op::AddRealServer(ctl::AddRealServerRequest {
                service: Some(key(port)),
                real_server: Some(pb::RealServerSpec {
                    address: Some(pb::Endpoint {
                        ip: ip.into(),
                        port: rport,
                    }),
                    method: method as i32,
                    weight: Some(2),
                    ..Default::default()
                }),
            })),
        }
    }

    fn run(ops: &[ctl::RuleOp]) -> Result<(Vec<ServiceSpec>, TimeoutChange), Status> {
        let mut specs = Vec::new();
        let mut t = TimeoutChange::default();
        apply_ops(&mut specs, &mut t, &HealthPlan::none(), ops)?;
        Ok((specs, t))
    }

    #[test]
    fn ops_build_the_table_in_order() {
        let set = ctl::RuleOp {
            op: Some(Op::SetTimeouts(ctl::SetTimeoutsRequest {
                timeouts: Some(pb::Timeouts {
                    tcp_timeout_s: 3600,
                    tcp_fin_timeout_s: 0,
                    udp_timeout_s: 60,
                }),
            })),
        };
        let (specs, t) = run(&[
            add_service(80),
            add_server(80, "10.0.1.1", 0, pb::ForwardMethod::Dr),
            add_server(80, "10.0.1.2", 80, pb::ForwardMethod::Dr),
            set,
        ])
        .unwrap();
        assert_eq!(specs.len(), 1);
        let addrs: Vec<String> = specs[0].dests.iter().map(|d| d.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.1.1:80", "10.0.1.2:80"], "configuration order");
        assert_eq!(
            t,
            TimeoutChange {
                tcp: 3600,
                tcpfin: 0,
                udp: 60
            }
        );
    }

    #[test]
    fn a_refusal_names_its_op_and_keeps_its_code() {
        let e = run(&[
            add_service(80),
            add_server(443, "10.0.1.1", 0, pb::ForwardMethod::Dr),
        ])
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), "op 1: No such service");
        let e = run(&[add_service(80), add_service(80)]).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::AlreadyExists, "op 1: Service already exists")
        );
        // DR may not map ports: refused at the op that adds the server.
        let e = run(&[
            add_service(80),
            add_server(80, "10.0.1.1", 8080, pb::ForwardMethod::Dr),
        ])
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("op 1: "), "{}", e.message());
        let e = run(&[ctl::RuleOp { op: None }]).unwrap_err();
        assert!(e.message().starts_with("op 0: "), "{}", e.message());
    }
}
