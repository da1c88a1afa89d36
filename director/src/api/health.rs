//! The health side of the control API: `GetHealth`, and the health detail
//! of a listing (`ListOptions.include_health`), from the monitor's
//! registry and the verdicts in [`ControlState`].

use std::net::SocketAddr;

use lb_proto::common as pb;
use lb_proto::control as ctl;
use tonic::Status;

use super::ControlState;
use super::convert::{self, to_endpoint, to_service_key};
use crate::health::{CheckSpec, Health, OnFailure, Probe};
use crate::service::ServiceKey;
use crate::service_table::{DestSpec, ServiceSpec};
use crate::time::Millis;

/// A check on the wire.
pub fn to_check_spec(c: &CheckSpec) -> pb::HealthCheckSpec {
    let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let mut spec = pb::HealthCheckSpec {
        r#type: match c.probe {
            Probe::Tcp => pb::HealthCheckType::TcpConnect,
            Probe::Http(_) => pb::HealthCheckType::HttpGet,
            Probe::Udp(_) => pb::HealthCheckType::Udp,
            Probe::Command(_) => pb::HealthCheckType::Command,
        } as i32,
        interval_ms: ms(c.timing.interval),
        timeout_ms: ms(c.timing.timeout),
        rise: c.timing.rise,
        fall: c.timing.fall,
        port: c.port.map_or(0, u32::from),
        on_failure: match c.on_failure {
            OnFailure::Quiesce => pb::HealthFailureAction::Quiesce,
            OnFailure::Remove => pb::HealthFailureAction::Remove,
        } as i32,
        ..Default::default()
    };
    if let Probe::Http(h) = &c.probe {
        spec.http_path = h.path.clone();
        spec.http_host = h.host.clone().unwrap_or_default();
        if let [r] = h.status.as_slice()
            && r.start() == r.end()
        {
            spec.http_expected_status = u32::from(*r.start());
        }
    }
    spec
}

fn to_state(h: Health) -> ctl::HealthState {
    match h {
        Health::Unknown => ctl::HealthState::Unknown,
        Health::Up => ctl::HealthState::Up,
        Health::Down => ctl::HealthState::Down,
    }
}

/// Turns the daemon's monotonic [`Millis`] into unix ms, by the distance
/// from now.
struct WallClock {
    now: Millis,
    unix_now: u64,
}

impl WallClock {
    fn unix(&self, t: Millis) -> u64 {
        let ago = u64::try_from(self.now.saturating_since(t).as_millis()).unwrap_or(u64::MAX);
        self.unix_now.saturating_sub(ago)
    }
}

/// The health of `d` (configured) of service `key`, whose effective
/// weight is `effective`.
pub(super) fn real_server_health(
    state: &ControlState,
    key: ServiceKey,
    d: &DestSpec,
    effective: u32,
    unix_now: u64,
) -> ctl::RealServerHealth {
    let configured = u32::try_from(d.weight.max(0)).unwrap_or(0);
    let Some(checked) = state.health.get(key, d.addr) else {
        return ctl::RealServerHealth {
            state: ctl::HealthState::Unchecked as i32,
            configured_weight: configured,
            effective_weight: effective,
            checker: "none".into(),
            ..Default::default()
        };
    };
    let clock = WallClock {
        now: state.now(),
        unix_now,
    };
    let st = checked
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let (failure_at, failure) = st
        .last_failure()
        .map_or((0, String::new()), |(t, r)| (clock.unix(t), r.to_string()));
    ctl::RealServerHealth {
        state: to_state(st.health()) as i32,
        check: Some(to_check_spec(&checked.spec)),
        configured_weight: configured,
        effective_weight: effective,
        state_since_unix_ms: clock.unix(st.since()),
        last_check_unix_ms: st.last_check().map_or(0, |t| clock.unix(t)),
        last_check_duration_ms: u32::try_from(st.last_duration().as_millis()).unwrap_or(u32::MAX),
        last_failure_reason: failure,
        last_failure_unix_ms: failure_at,
        consecutive_successes: st.successes(),
        consecutive_failures: st.failures(),
        checks_total: st.checks_total(),
        failures_total: st.failures_total(),
        recent_transitions: st
            .recent()
            .map(|t| ctl::HealthTransition {
                at_unix_ms: clock.unix(t.at),
                from: to_state(t.from) as i32,
                to: to_state(t.to) as i32,
                reason: t.reason.clone(),
            })
            .collect(),
        checker: checked.spec.describe(),
    }
}

/// The effective weight of `addr` in `eff` (0 if not there: removed).
pub(super) fn effective_weight(eff: Option<&ServiceSpec>, addr: SocketAddr) -> u32 {
    eff.and_then(|s| s.dests.iter().find(|d| d.addr == addr))
        .map_or(0, |d| u32::try_from(d.weight.max(0)).unwrap_or(0))
}

/// `GetHealth`.
pub(super) fn get_health(
    state: &ControlState,
    req: &ctl::GetHealthRequest,
    unix_now: u64,
) -> Result<ctl::GetHealthResponse, Status> {
    let only_service = req
        .service
        .as_ref()
        .map(|k| convert::service_key(Some(k)))
        .transpose()?;
    let only_server = req
        .real_server
        .as_ref()
        .map(|ep| convert::endpoint("real server", ep))
        .transpose()?;
    let (mut specs, plan) = state.health_config();
    specs.sort_by_key(|s| s.key);
    if let Some(k) = only_service
        && !specs.iter().any(|s| s.key == k)
    {
        return Err(Status::not_found("No such service"));
    }
    let effective = state.effective_specs();
    let mut out = ctl::GetHealthResponse::default();
    for spec in specs
        .iter()
        .filter(|s| only_service.is_none_or(|k| k == s.key))
    {
        let eff = effective.iter().find(|e| e.key == spec.key);
        for d in &spec.dests {
            if let Some(want) = only_server
                && (want.ip() != d.addr.ip() || (want.port() != 0 && want.port() != d.addr.port()))
            {
                continue;
            }
            out.entries.push(ctl::RealServerHealthEntry {
                service: Some(to_service_key(spec.key)),
                real_server: Some(to_endpoint(d.addr)),
                health: Some(real_server_health(
                    state,
                    spec.key,
                    d,
                    effective_weight(eff, d.addr),
                    unix_now,
                )),
            });
        }
        if let Some(h) = plan.service(&spec.key)
            && let Some((quorum_up, weight_up, sorry_active)) = state.quorum(spec.key)
        {
            out.services.push(ctl::ServiceHealth {
                service: Some(to_service_key(spec.key)),
                quorum_up,
                weight_up,
                quorum: h.quorum,
                hysteresis: h.hysteresis,
                sorry_server: h.sorry_server.map(|s| to_endpoint(s.addr)),
                sorry_server_active: sorry_active,
            });
        }
    }
    Ok(out)
}
