//! `[[service]]` and its `[[service.real_server]]`s: turned into
//! [`ServiceSpec`]s and checked by the service table's own validation, with
//! every refusal pointed back at the entry or value it came from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};
use super::health;
use super::interface::{InterfaceConfig, check_unicast};
use super::timeouts::MAX_TIMEOUT_SECS;
use crate::health::HealthPlan;
use crate::sched::{self, SchedOptions, SchedulerKind};
use crate::service::{DEFAULT_PERSISTENCE, Persistence, ServiceKey};
use crate::service_table::{DestSpec, ServiceSpec, ServiceTable, SpecError};
use crate::types::{ForwardMethod, Protocol};

/// `[[service]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    protocol: Spanned<String>,
    address: Spanned<String>,
    scheduler: Option<Spanned<String>>,
    #[serde(default)]
    flags: Vec<Spanned<String>>,
    mh_table_size: Option<Spanned<i64>>,
    persistence: Option<Spanned<PersistenceValue>>,
    persistence_netmask: Option<Spanned<i64>>,
    #[serde(default)]
    real_server: Vec<Spanned<RawRealServer>>,
    // Health checking (config/health.rs).
    health_check: Option<Spanned<health::RawCheck>>,
    sorry_server: Option<Spanned<RawRealServer>>,
    quorum: Option<Spanned<i64>>,
    hysteresis: Option<Spanned<i64>>,
    quorum_up: Option<Spanned<health::RawCommand>>,
    quorum_down: Option<Spanned<health::RawCommand>>,
}

/// `[[service.real_server]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealServer {
    address: Spanned<String>,
    method: Spanned<String>,
    weight: Option<Spanned<i64>>,
    upper_threshold: Option<u32>,
    lower_threshold: Option<u32>,
    health_check: Option<Spanned<health::RawCheck>>,
}

/// `persistence` as written: seconds, or a boolean.
#[derive(Debug, Clone, Copy)]
enum PersistenceValue {
    Off,
    Default,
    Secs(i64),
}

impl<'de> Deserialize<'de> for PersistenceValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PersistenceValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, or true for the IPVS default of 360 s")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PersistenceValue, E> {
                Ok(if v {
                    PersistenceValue::Default
                } else {
                    PersistenceValue::Off
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PersistenceValue, E> {
                Ok(PersistenceValue::Secs(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PersistenceValue, E> {
                Ok(PersistenceValue::Secs(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A service spec with the spans its refusals point at.
#[derive(Debug)]
struct Checked {
    spec: ServiceSpec,
    /// The `[[service]]` header.
    span: Range<usize>,
    address: Range<usize>,
    persistence: Option<Range<usize>>,
    netmask: Option<Range<usize>>,
    mh_table_size: Option<Range<usize>>,
    /// Per real server: its header and its weight value.
    dests: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// Checks, sorry server, quorum; `None` if none configured.
    health: Option<crate::health::ServiceHealth>,
}

/// Validate every service, alone and together, and return their specs and
/// their health configuration.
pub(crate) fn validate_all(
    raw: Vec<Spanned<RawService>>,
    interfaces: &[InterfaceConfig],
    src: &Source<'_>,
) -> Result<(Vec<ServiceSpec>, HealthPlan), ConfigError> {
    let mut checked = Vec::with_capacity(raw.len());
    for entry in raw {
        let span = entry.span();
        let c = entry.into_inner().validate(span, src)?;
        if let IpAddr::V4(vip) = c.spec.key.vip.ip()
            && let Some(owner) = interfaces.iter().find(|i| i.address == vip)
        {
            return Err(src.invalid(
                c.address.clone(),
                Problem::VipIsInterfaceAddress {
                    what: format!("virtual service {}: the VIP", describe(&c.spec.key)),
                    address: vip,
                    interface: owner.name.clone(),
                },
            ));
        }
        checked.push(c);
    }
    let specs: Vec<ServiceSpec> = checked.iter().map(|c| c.spec.clone()).collect();
    // The set as a whole, exactly as the running table will check it.
    if let Err(e) = ServiceTable::empty().rebuild(&specs) {
        let span = match &e {
            SpecError::DuplicateService { protocol, vip } => {
                let key = ServiceKey {
                    protocol: *protocol,
                    vip: *vip,
                };
                checked
                    .iter()
                    .filter(|c| c.spec.key == key)
                    .nth(1)
                    .map(|c| c.span.clone())
            }
            other => checked
                .iter()
                .find(|c| spec_error_vip(other) == c.spec.key.vip)
                .map(|c| c.locate(other)),
        };
        let at = span.map_or_else(|| src.whole_file(), |s| src.at(s));
        return Err(ConfigError::Invalid {
            at,
            problem: Box::new(Problem::Service(e)),
        });
    }
    let mut plan = HealthPlan::none();
    for c in checked {
        if let Some(h) = c.health {
            plan.services.insert(c.spec.key, h);
        }
    }
    Ok((specs, plan))
}

/// `TCP 10.11.0.100:80`, as the service table's messages name services.
fn describe(key: &ServiceKey) -> String {
    format!("{} {}", key.protocol, key.vip)
}

fn spec_error_vip(e: &SpecError) -> SocketAddr {
    match e {
        SpecError::DuplicateService { vip, .. }
        | SpecError::DuplicateDest { vip, .. }
        | SpecError::PortMappingNeedsNat { vip, .. }
        | SpecError::WeightOutOfRange { vip, .. }
        | SpecError::BadThresholds { vip, .. }
        | SpecError::AddressFamilyMismatch { vip, .. }
        | SpecError::BadNetmask { vip, .. }
        | SpecError::AllPortsNeedPersistence { vip, .. }
        | SpecError::ZeroPersistence { vip }
        | SpecError::Scheduler { vip, .. } => *vip,
    }
}

impl Checked {
    /// Where a refusal of this service points: the offending real server
    /// or value, else the service header.
    fn locate(&self, e: &SpecError) -> Range<usize> {
        let dest_span = |addr: SocketAddr, nth: usize| {
            self.spec
                .dests
                .iter()
                .zip(&self.dests)
                .filter(|(d, _)| d.addr == addr)
                .nth(nth)
                .map(|(_, s)| s.clone())
        };
        let found = match e {
            SpecError::DuplicateDest { dest, .. } => dest_span(*dest, 1).map(|s| s.0),
            SpecError::PortMappingNeedsNat { dest, .. }
            | SpecError::BadThresholds { dest, .. }
            | SpecError::AddressFamilyMismatch { dest, .. } => dest_span(*dest, 0).map(|s| s.0),
            SpecError::WeightOutOfRange { dest, .. } => {
                dest_span(*dest, 0).map(|(header, weight)| weight.unwrap_or(header))
            }
            SpecError::BadNetmask { .. } => self.netmask.clone(),
            SpecError::ZeroPersistence { .. } => self.persistence.clone(),
            SpecError::Scheduler { .. } => self.mh_table_size.clone(),
            SpecError::AllPortsNeedPersistence { .. } => Some(self.address.clone()),
            SpecError::DuplicateService { .. } => None,
        };
        found.unwrap_or_else(|| self.span.clone())
    }
}

impl RawService {
    fn validate(self, span: Range<usize>, src: &Source<'_>) -> Result<Checked, ConfigError> {
        let protocol = match self.protocol.get_ref().to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => {
                return Err(src.invalid(
                    self.protocol.span(),
                    Problem::UnknownProtocol {
                        value: self.protocol.get_ref().clone(),
                    },
                ));
            }
        };
        let vip = parse_service_address(&self.address, src)?;
        let key = ServiceKey {
            protocol,
            vip: SocketAddr::V4(vip),
        };
        let service = describe(&key);

        let scheduler = match &self.scheduler {
            None => SchedulerKind::Wlc,
            Some(s) => s.get_ref().parse::<SchedulerKind>().map_err(|reason| {
                src.invalid(
                    s.span(),
                    Problem::UnknownScheduler {
                        service: service.clone(),
                        reason,
                    },
                )
            })?,
        };

        let mut sched_opts = SchedOptions::default();
        for flag in &self.flags {
            let (fallback, applies_to) = match flag.get_ref().as_str() {
                "sh-fallback" => (true, "sh"),
                "sh-port" => (false, "sh"),
                "mh-fallback" => (true, "mh"),
                "mh-port" => (false, "mh"),
                "flag-1" => (true, "sh or mh"),
                "flag-2" => (false, "sh or mh"),
                other => {
                    return Err(src.invalid(
                        flag.span(),
                        Problem::UnknownFlag {
                            service,
                            flag: other.to_string(),
                        },
                    ));
                }
            };
            let fits = match scheduler {
                SchedulerKind::Sh => applies_to != "mh",
                SchedulerKind::Mh => applies_to != "sh",
                _ => false,
            };
            if !fits {
                return Err(src.invalid(
                    flag.span(),
                    Problem::FlagNotForScheduler {
                        service,
                        flag: flag.get_ref().clone(),
                        applies_to,
                        scheduler: scheduler.to_string(),
                    },
                ));
            }
            if fallback {
                sched_opts.fallback = true;
            } else {
                sched_opts.port = true;
            }
        }

        if let Some(size) = &self.mh_table_size {
            if scheduler != SchedulerKind::Mh {
                return Err(src.invalid(
                    size.span(),
                    Problem::MhTableSizeWithoutMh {
                        service,
                        scheduler: scheduler.to_string(),
                    },
                ));
            }
            sched_opts.mh_table_size = u32::try_from(*size.get_ref()).map_err(|_| {
                src.invalid(
                    size.span(),
                    Problem::MhTableSizeOutOfRange {
                        service: service.clone(),
                        value: *size.get_ref(),
                    },
                )
            })?;
        }

        let timeout = match self.persistence.as_ref().map(|p| *p.get_ref()) {
            None | Some(PersistenceValue::Off) => None,
            Some(PersistenceValue::Default) => Some(DEFAULT_PERSISTENCE),
            Some(PersistenceValue::Secs(secs)) => match u64::try_from(secs) {
                Ok(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Some(Duration::from_secs(s)),
                _ => {
                    let span = self.persistence.as_ref().map(Spanned::span).unwrap_or(span);
                    return Err(src.invalid(
                        span,
                        Problem::PersistenceOutOfRange {
                            service,
                            secs,
                            max: MAX_TIMEOUT_SECS,
                        },
                    ));
                }
            },
        };
        let netmask_prefix = match &self.persistence_netmask {
            None => 32,
            Some(m) => {
                if timeout.is_none() {
                    return Err(
                        src.invalid(m.span(), Problem::NetmaskWithoutPersistence { service })
                    );
                }
                match u8::try_from(*m.get_ref()) {
                    Ok(p) if p <= 32 => p,
                    _ => {
                        return Err(src.invalid(
                            m.span(),
                            Problem::NetmaskOutOfRange {
                                service,
                                prefix: *m.get_ref(),
                            },
                        ));
                    }
                }
            }
        };
        let persistence = timeout.map(|timeout| Persistence {
            timeout,
            netmask_prefix,
        });

        let mut dests = Vec::with_capacity(self.real_server.len());
        let mut dest_spans = Vec::with_capacity(self.real_server.len());
        for rs in &self.real_server {
            dests.push(validate_dest(rs.get_ref(), &key, &service, src)?);
            dest_spans.push((rs.span(), rs.get_ref().weight.as_ref().map(Spanned::span)));
        }

        let mut checked = Checked {
            spec: ServiceSpec {
                key,
                scheduler,
                sched_opts,
                persistence,
                dests,
            },
            span,
            address: self.address.span(),
            persistence: self.persistence.as_ref().map(Spanned::span),
            netmask: self.persistence_netmask.as_ref().map(Spanned::span),
            mh_table_size: self.mh_table_size.as_ref().map(Spanned::span),
            dests: dest_spans,
            health: None,
        };
        // The service table's own checks, then the scheduler's (mh table
        // size), so each refusal points into this service.
        let refuse = |e: SpecError| ConfigError::Invalid {
            at: src.at(checked.locate(&e)),
            problem: Box::new(Problem::Service(e)),
        };
        checked.spec.validate().map_err(refuse)?;
        sched::new(scheduler, sched_opts).map_err(|e| {
            refuse(SpecError::Scheduler {
                vip: key.vip,
                reason: e.to_string(),
            })
        })?;
        let sorry_server = match &self.sorry_server {
            Some(s) => Some((validate_dest(s.get_ref(), &key, &service, src)?, s.span())),
            None => None,
        };
        let raw_health = health::RawServiceHealth {
            check: self.health_check.as_ref(),
            sorry_server,
            quorum: self.quorum.as_ref(),
            hysteresis: self.hysteresis.as_ref(),
            quorum_up: self.quorum_up.as_ref(),
            quorum_down: self.quorum_down.as_ref(),
            overrides: self
                .real_server
                .iter()
                .map(|rs| rs.get_ref().health_check.as_ref())
                .collect(),
        };
        checked.health = health::validate_service(&raw_health, &checked.spec, &service, src)?;
        Ok(checked)
    }
}

fn validate_dest(
    rs: &RawRealServer,
    key: &ServiceKey,
    service: &str,
    src: &Source<'_>,
) -> Result<DestSpec, ConfigError> {
    let text = rs.address.get_ref();
    let addr = match (text.parse::<SocketAddr>(), text.parse::<Ipv4Addr>()) {
        (Ok(SocketAddr::V4(a)), _) => a,
        (_, Ok(ip)) => SocketAddrV4::new(ip, key.vip.port()),
        (Ok(SocketAddr::V6(_)), _) => return Err(ipv6(&rs.address, "real server", src)),
        _ if text.parse::<std::net::Ipv6Addr>().is_ok() => {
            return Err(ipv6(&rs.address, "real server", src));
        }
        _ => {
            return Err(src.invalid(
                rs.address.span(),
                Problem::BadRealServerAddress {
                    service: service.to_string(),
                    value: text.clone(),
                },
            ));
        }
    };
    let subject = format!("real server {addr} of {service}");
    check_unicast(*addr.ip(), subject).map_err(|p| src.invalid(rs.address.span(), p))?;
    let dest = SocketAddr::V4(addr);
    let method_text = rs.method.get_ref();
    // ipvsadm's option letters: -g, -i, -m.
    let method = method_text
        .strip_prefix('-')
        .unwrap_or(method_text)
        .parse::<ForwardMethod>()
        .map_err(|_| {
            src.invalid(
                rs.method.span(),
                Problem::UnknownMethod {
                    service: service.to_string(),
                    dest: dest.to_string(),
                    reason: format!(
                        "unknown forwarding method {method_text:?} (expected dr, tun or nat)"
                    ),
                },
            )
        })?;
    let weight = match &rs.weight {
        None => 1,
        Some(w) => i32::try_from(*w.get_ref()).map_err(|_| {
            src.invalid(
                w.span(),
                Problem::WeightOutOfRange {
                    service: service.to_string(),
                    dest: dest.to_string(),
                    weight: *w.get_ref(),
                },
            )
        })?,
    };
    Ok(DestSpec {
        addr: dest,
        method,
        weight,
        upper_threshold: rs.upper_threshold.unwrap_or(0),
        lower_threshold: rs.lower_threshold.unwrap_or(0),
    })
}

fn parse_service_address(
    value: &Spanned<String>,
    src: &Source<'_>,
) -> Result<SocketAddrV4, ConfigError> {
    let text = value.get_ref();
    let vip = match text.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => a,
        Ok(SocketAddr::V6(_)) => return Err(ipv6(value, "virtual service", src)),
        Err(_) if text.parse::<std::net::Ipv6Addr>().is_ok() => {
            return Err(ipv6(value, "virtual service", src));
        }
        Err(_) => {
            return Err(src.invalid(
                value.span(),
                Problem::BadServiceAddress {
                    value: text.clone(),
                },
            ));
        }
    };
    check_unicast(*vip.ip(), format!("virtual service {vip}"))
        .map_err(|p| src.invalid(value.span(), p))?;
    Ok(vip)
}

fn ipv6(value: &Spanned<String>, what: &str, src: &Source<'_>) -> ConfigError {
    src.invalid(
        value.span(),
        Problem::Ipv6Unsupported {
            what: what.to_string(),
            value: value.get_ref().clone(),
        },
    )
}
