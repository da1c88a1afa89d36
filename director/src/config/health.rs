//! Health checks in the configuration: `[service.health_check]` (the
//! check of every real server of the service), `[service.real_server.
//! health_check]` (a server's override, merged key by key over the
//! service's), and the service's `sorry_server`, `quorum`, `hysteresis`,
//! `quorum_up` and `quorum_down`.
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"
//! address = "10.11.0.100:80"
//! quorum_down = "logger -t lb quorum lost"
//!   [service.health_check]
//!   type = "http"          # tcp | http | udp | command | none
//!   path = "/health"
//!   status = [200, "300-399"]
//!   interval = 2           # seconds; fractions allowed (0.3)
//!   timeout = 1
//!   fall = 3
//!   rise = 2
//!   on_failure = "quiesce" # or "remove"
//!   [service.sorry_server]
//!   address = "10.12.0.99:80"
//!   method = "nat"
//!   [[service.real_server]]
//!   address = "10.12.0.11:80"
//!   method = "nat"
//!     [service.real_server.health_check]
//!     port = 8080          # the rest from the service's check
//! ```
//!
//! An override that changes `type` inherits only the keys every check has
//! (timing, port, on_failure, notify commands). A bad check refuses the
//! whole file, pointing at the key.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};
use crate::health::{
    CheckSpec, CommandCheck, CommandLine, HttpCheck, OnFailure, Pattern, Probe, ServiceHealth,
    Timing, UdpCheck,
};
use crate::service_table::{DestSpec, ServiceSpec};

/// Shortest check interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest interval, timeout or retry delay accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Largest fall or rise.
pub const MAX_COUNT: i64 = 1000;

/// What is wrong with a health-check setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthProblem {
    /// `type` is not one of the kinds.
    #[error("unknown check type {value:?} (expected tcp, http, udp, command or none)")]
    UnknownType {
        /// The text given.
        value: String,
    },
    /// No `type` anywhere.
    #[error(
        "the check has no type: add type = \"tcp\", \"http\", \"udp\" or \"command\" \
         (a real server's override inherits the service's)"
    )]
    NoType,
    /// A key of another kind of check.
    #[error("{key} only applies to {applies_to} checks, but this check is {kind}")]
    NotForType {
        /// The key.
        key: &'static str,
        /// The kinds it is for.
        applies_to: &'static str,
        /// The check's kind.
        kind: &'static str,
    },
    /// A key the kind needs is missing.
    #[error("a {kind} check needs {key}")]
    Missing {
        /// The check's kind.
        kind: &'static str,
        /// What to add.
        key: &'static str,
    },
    /// A duration out of range.
    #[error("{key} = {value} s is out of range {min}..={max} seconds")]
    DurationOutOfRange {
        /// The key.
        key: &'static str,
        /// The value given, in seconds.
        value: String,
        /// Least accepted, s.
        min: String,
        /// Most accepted, s.
        max: String,
    },
    /// `fall` or `rise` out of range.
    #[error("{key} = {value} is out of range 1..={MAX_COUNT} (consecutive checks)")]
    CountOutOfRange {
        /// The key.
        key: &'static str,
        /// The value given.
        value: i64,
    },
    /// A port out of range.
    #[error("port = {value} is out of range 1..=65535 (omit it to check the real server's port)")]
    PortOutOfRange {
        /// The value given.
        value: i64,
    },
    /// `on_failure` not quiesce or remove.
    #[error(
        "on_failure = {value:?}: expected \"quiesce\" (weight 0, connections drain; keepalived's \
         inhibit_on_failure) or \"remove\" (out of the service)"
    )]
    BadOnFailure {
        /// The text given.
        value: String,
    },
    /// An HTTP path that is not `/...` or has spaces.
    #[error("path {value:?} must start with '/' and contain no spaces or control characters")]
    BadPath {
        /// The text given.
        value: String,
    },
    /// A Host header with spaces.
    #[error("host {value:?} must be a non-empty host name without spaces")]
    BadHost {
        /// The text given.
        value: String,
    },
    /// A status that is neither a code nor a range.
    #[error("status {value} is not an HTTP status 100..=599 or a range such as \"200-299\"")]
    BadStatus {
        /// The value given.
        value: String,
    },
    /// A digest that is not 64 hex digits.
    #[error("digest {value:?} is not a SHA-256 in hex (64 hex digits, as sha256sum prints)")]
    BadDigest {
        /// The text given.
        value: String,
    },
    /// A pattern that does not compile.
    #[error("{key} is not a valid regular expression: {reason}")]
    BadPattern {
        /// The key.
        key: &'static str,
        /// The regex crate's reason, first line.
        reason: String,
    },
    /// `payload` and `payload_hex` both, or bad hex.
    #[error("{reason}")]
    BadPayload {
        /// What is wrong.
        reason: &'static str,
    },
    /// An empty command.
    #[error("{key} is empty: give a shell command line or an array [program, args...]")]
    EmptyCommand {
        /// The key.
        key: &'static str,
    },
    /// The sorry server is also a real server.
    #[error(
        "sorry server {addr} is also a real server of the service; the sorry server is \
         used only while the real servers are down, so it must be another server"
    )]
    SorryIsRealServer {
        /// Its address.
        addr: String,
    },
    /// Hysteresis above the quorum.
    #[error("hysteresis = {hysteresis} is above quorum = {quorum}")]
    HysteresisAboveQuorum {
        /// Quorum.
        quorum: i64,
        /// Hysteresis.
        hysteresis: i64,
    },
    /// Quorum or hysteresis out of range.
    #[error("{key} = {value} is out of range 0..=4294967295 (a total weight)")]
    QuorumOutOfRange {
        /// The key.
        key: &'static str,
        /// The value given.
        value: i64,
    },
}

/// Seconds, as an integer or a fraction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Secs(f64);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, such as 2 or 0.3")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                Ok(Secs(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                Ok(Secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a shell line or an argv array.
#[derive(Debug, Clone)]
pub(crate) struct RawCommand(CommandLine);

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command line (run by /bin/sh -c) or an array [program, args...]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Ok(RawCommand(if v.trim().is_empty() {
                    CommandLine { argv: Vec::new() }
                } else {
                    CommandLine::shell(v)
                }))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut argv = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    argv.push(s);
                }
                Ok(RawCommand(CommandLine { argv }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A status: a code or a `"a-b"` range.
#[derive(Debug, Clone)]
pub(crate) enum StatusValue {
    Code(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for StatusValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status such as 200, or a range such as \"200-299\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusValue, E> {
                Ok(StatusValue::Code(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusValue, E> {
                Ok(StatusValue::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusValue, E> {
                Ok(StatusValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `health_check` as written (of a service, or a real server's override).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    interval: Option<Spanned<Secs>>,
    timeout: Option<Spanned<Secs>>,
    retry_delay: Option<Spanned<Secs>>,
    fall: Option<Spanned<i64>>,
    rise: Option<Spanned<i64>>,
    port: Option<Spanned<i64>>,
    on_failure: Option<Spanned<String>>,
    notify_up: Option<Spanned<RawCommand>>,
    notify_down: Option<Spanned<RawCommand>>,
    // http
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    status: Option<Spanned<Vec<Spanned<StatusValue>>>>,
    digest: Option<Spanned<String>>,
    body: Option<Spanned<String>>,
    // udp
    payload: Option<Spanned<String>>,
    payload_hex: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    // command
    command: Option<Spanned<RawCommand>>,
    dynamic_weight: Option<Spanned<bool>>,
}

impl RawCheck {
    /// `self` (a real server's override) over `base` (the service's).
    fn over(&self, base: &RawCheck) -> RawCheck {
        let same_kind = match (&self.kind, &base.kind) {
            (Some(a), Some(b)) => a.get_ref() == b.get_ref(),
            _ => true,
        };
        macro_rules! pick {
            ($f:ident) => {
                self.$f.clone().or_else(|| base.$f.clone())
            };
        }
        macro_rules! kind_pick {
            ($f:ident) => {
                if same_kind {
                    pick!($f)
                } else {
                    self.$f.clone()
                }
            };
        }
        RawCheck {
            kind: pick!(kind),
            interval: pick!(interval),
            timeout: pick!(timeout),
            retry_delay: pick!(retry_delay),
            fall: pick!(fall),
            rise: pick!(rise),
            port: pick!(port),
            on_failure: pick!(on_failure),
            notify_up: pick!(notify_up),
            notify_down: pick!(notify_down),
            path: kind_pick!(path),
            host: kind_pick!(host),
            status: kind_pick!(status),
            digest: kind_pick!(digest),
            body: kind_pick!(body),
            payload: kind_pick!(payload),
            payload_hex: kind_pick!(payload_hex),
            expect: kind_pick!(expect),
            command: kind_pick!(command),
            dynamic_weight: kind_pick!(dynamic_weight),
        }
    }
}

/// The service-level health keys, as written.
#[derive(Debug, Default)]
pub(crate) struct RawServiceHealth<'a> {
    pub check: Option<&'a Spanned<RawCheck>>,
    pub sorry_server: Option<(DestSpec, Range<usize>)>,
    pub quorum: Option<&'a Spanned<i64>>,
    pub hysteresis: Option<&'a Spanned<i64>>,
    pub quorum_up: Option<&'a Spanned<RawCommand>>,
    pub quorum_down: Option<&'a Spanned<RawCommand>>,
    /// Per real server (in order, matching `spec.dests`): its override.
    pub overrides: Vec<Option<&'a Spanned<RawCheck>>>,
}

/// Validate a service's health configuration against its validated spec.
/// `None` if the service has none at all.
pub(crate) fn validate_service(
    raw: &RawServiceHealth<'_>,
    spec: &ServiceSpec,
    service: &str,
    src: &Source<'_>,
) -> Result<Option<ServiceHealth>, ConfigError> {
    let nothing = raw.check.is_none()
        && raw.sorry_server.is_none()
        && raw.quorum.is_none()
        && raw.hysteresis.is_none()
        && raw.quorum_up.is_none()
        && raw.quorum_down.is_none()
        && raw.overrides.iter().all(Option::is_none);
    if nothing {
        return Ok(None);
    }
    let subject = format!("virtual service {service}");
    let err = |span: Range<usize>, subject: &str, problem: HealthProblem| {
        src.invalid(
            span,
            Problem::Health {
                subject: subject.to_string(),
                problem,
            },
        )
    };
    let base = raw.check.map(|c| c.get_ref().clone()).unwrap_or_default();
    let check_subject = format!("health check of {subject}");
    let check = match raw.check {
        Some(c) => validate_check(&base, c.span(), &check_subject, src)?.map(Arc::new),
        None => None,
    };
    let mut health = ServiceHealth {
        check,
        quorum: 1,
        ..ServiceHealth::default()
    };
    for (d, over) in spec.dests.iter().zip(&raw.overrides) {
        let Some(over) = over else { continue };
        let merged = over.get_ref().over(&base);
        let subject = format!("health check of real server {} of {service}", d.addr);
        let c = validate_check(&merged, over.span(), &subject, src)?;
        health.overrides.insert(d.addr, c.map(Arc::new));
    }
    let range = |v: &Spanned<i64>, key: &'static str| {
        u32::try_from(*v.get_ref()).map_err(|_| {
            err(
                v.span(),
                &subject,
                HealthProblem::QuorumOutOfRange {
                    key,
                    value: *v.get_ref(),
                },
            )
        })
    };
    if let Some(q) = raw.quorum {
        health.quorum = range(q, "quorum")?;
    }
    if let Some(h) = raw.hysteresis {
        health.hysteresis = range(h, "hysteresis")?;
        if health.hysteresis > health.quorum {
            return Err(err(
                h.span(),
                &subject,
                HealthProblem::HysteresisAboveQuorum {
                    quorum: i64::from(health.quorum),
                    hysteresis: i64::from(health.hysteresis),
                },
            ));
        }
    }
    health.quorum_up = command(raw.quorum_up, "quorum_up", &subject, src)?;
    health.quorum_down = command(raw.quorum_down, "quorum_down", &subject, src)?;
    if let Some((sorry, span)) = &raw.sorry_server {
        if spec.dests.iter().any(|d| d.addr == sorry.addr) {
            return Err(err(
                span.clone(),
                &subject,
                HealthProblem::SorryIsRealServer {
                    addr: sorry.addr.to_string(),
                },
            ));
        }
        // The service table's own rules (port mapping, weight) for it.
        let alone = ServiceSpec {
            dests: vec![*sorry],
            ..spec.clone()
        };
        alone
            .validate()
            .map_err(|e| src.invalid(span.clone(), Problem::Service(e)))?;
        health.sorry_server = Some(*sorry);
    }
    Ok(Some(health))
}

fn command(
    raw: Option<&Spanned<RawCommand>>,
    key: &'static str,
    subject: &str,
    src: &Source<'_>,
) -> Result<Option<CommandLine>, ConfigError> {
    let Some(c) = raw else { return Ok(None) };
    let line = &c.get_ref().0;
    if line.argv.is_empty() || line.argv[0].is_empty() {
        return Err(src.invalid(
            c.span(),
            Problem::Health {
                subject: subject.to_string(),
                problem: HealthProblem::EmptyCommand { key },
            },
        ));
    }
    Ok(Some(line.clone()))
}

/// One check, validated; `None` for `type = "none"`.
fn validate_check(
    raw: &RawCheck,
    header: Range<usize>,
    subject: &str,
    src: &Source<'_>,
) -> Result<Option<CheckSpec>, ConfigError> {
    let err = |span: Range<usize>, problem: HealthProblem| {
        src.invalid(
            span,
            Problem::Health {
                subject: subject.to_string(),
                problem,
            },
        )
    };
    let Some(kind_v) = &raw.kind else {
        return Err(err(header, HealthProblem::NoType));
    };
    let kind: &'static str = match kind_v.get_ref().to_ascii_lowercase().as_str() {
        "none" => return Ok(None),
        "tcp" | "tcp_check" | "tcp-connect" => "tcp",
        "http" | "http_get" => "http",
        "udp" => "udp",
        "command" | "misc" | "misc_check" => "command",
        _ => {
            return Err(err(
                kind_v.span(),
                HealthProblem::UnknownType {
                    value: kind_v.get_ref().clone(),
                },
            ));
        }
    };
    // Keys of other kinds.
    let foreign: [(&'static str, &'static str, Option<Range<usize>>); 10] = [
        ("path", "http", raw.path.as_ref().map(Spanned::span)),
        ("host", "http", raw.host.as_ref().map(Spanned::span)),
        ("status", "http", raw.status.as_ref().map(Spanned::span)),
        ("digest", "http", raw.digest.as_ref().map(Spanned::span)),
        ("body", "http", raw.body.as_ref().map(Spanned::span)),
        ("payload", "udp", raw.payload.as_ref().map(Spanned::span)),
        (
            "payload_hex",
            "udp",
            raw.payload_hex.as_ref().map(Spanned::span),
        ),
        ("expect", "udp", raw.expect.as_ref().map(Spanned::span)),
        (
            "command",
            "command",
            raw.command.as_ref().map(Spanned::span),
        ),
        (
            "dynamic_weight",
            "command",
            raw.dynamic_weight.as_ref().map(Spanned::span),
        ),
    ];
    for (key, applies_to, span) in foreign {
        if let Some(span) = span
            && applies_to != kind
        {
            return Err(err(
                span,
                HealthProblem::NotForType {
                    key,
                    applies_to,
                    kind,
                },
            ));
        }
    }
    if kind == "command" && raw.port.is_some() {
        let span = raw
            .port
            .as_ref()
            .map(Spanned::span)
            .unwrap_or(header.clone());
        return Err(err(
            span,
            HealthProblem::NotForType {
                key: "port",
                applies_to: "tcp, http and udp",
                kind,
            },
        ));
    }

    let secs = |v: &Option<Spanned<Secs>>,
                key: &'static str,
                min: Duration,
                default: Duration|
     -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let s = v.get_ref().0;
        if !s.is_finite() || s < min.as_secs_f64() || s > MAX_DELAY.as_secs_f64() {
            return Err(err(
                v.span(),
                HealthProblem::DurationOutOfRange {
                    key,
                    value: s.to_string(),
                    min: min.as_secs_f64().to_string(),
                    max: MAX_DELAY.as_secs_f64().to_string(),
                },
            ));
        }
        Ok(Duration::from_millis((s * 1000.0).round() as u64))
    };
    let interval = secs(
        &raw.interval,
        "interval",
        MIN_INTERVAL,
        crate::health::DEFAULT_INTERVAL,
    )?;
    let timeout = secs(
        &raw.timeout,
        "timeout",
        Duration::from_millis(10),
        crate::health::DEFAULT_TIMEOUT,
    )?;
    let retry_delay = secs(&raw.retry_delay, "retry_delay", Duration::ZERO, interval)?;
    let count = |v: &Option<Spanned<i64>>, key: &'static str, default: u32| {
        let Some(v) = v else { return Ok(default) };
        match *v.get_ref() {
            n @ 1..=MAX_COUNT => Ok(n as u32),
            n => Err(err(
                v.span(),
                HealthProblem::CountOutOfRange { key, value: n },
            )),
        }
    };
    let fall = count(&raw.fall, "fall", crate::health::DEFAULT_FALL)?;
    let rise = count(&raw.rise, "rise", crate::health::DEFAULT_RISE)?;
    let port = match &raw.port {
        None => None,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(err(
                    p.span(),
                    HealthProblem::PortOutOfRange {
                        value: *p.get_ref(),
                    },
                ));
            }
        },
    };
    let on_failure = match &raw.on_failure {
        None => OnFailure::Quiesce,
        Some(v) => match v.get_ref().to_ascii_lowercase().as_str() {
            "quiesce" | "inhibit" => OnFailure::Quiesce,
            "remove" => OnFailure::Remove,
            _ => {
                return Err(err(
                    v.span(),
                    HealthProblem::BadOnFailure {
                        value: v.get_ref().clone(),
                    },
                ));
            }
        },
    };
    let pattern = |v: &Option<Spanned<String>>, key: &'static str| {
        let Some(v) = v else { return Ok(None) };
        regex::bytes::Regex::new(v.get_ref())
            .map(|r| Some(Pattern(r)))
            .map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().last().unwrap_or_default().trim().to_string();
                err(v.span(), HealthProblem::BadPattern { key, reason })
            })
    };

    let probe = match kind {
        "tcp" => Probe::Tcp,
        "http" => {
            let path = match &raw.path {
                None => "/".to_string(),
                Some(p) => {
                    let t = p.get_ref();
                    if !t.starts_with('/') || t.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(err(p.span(), HealthProblem::BadPath { value: t.clone() }));
                    }
                    t.clone()
                }
            };
            let host = match &raw.host {
                None => None,
                Some(h) => {
                    let t = h.get_ref();
                    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(err(h.span(), HealthProblem::BadHost { value: t.clone() }));
                    }
                    Some(t.clone())
                }
            };
            let status = match &raw.status {
                None => vec![200..=299],
                Some(list) => {
                    let mut out = Vec::new();
                    for s in list.get_ref() {
                        out.push(status_range(s.get_ref()).ok_or_else(|| {
                            err(
                                s.span(),
                                HealthProblem::BadStatus {
                                    value: match s.get_ref() {
                                        StatusValue::Code(c) => c.to_string(),
                                        StatusValue::Text(t) => format!("{t:?}"),
                                    },
                                },
                            )
                        })?);
                    }
                    if out.is_empty() {
                        return Err(err(
                            list.span(),
                            HealthProblem::BadStatus {
                                value: "[] (empty)".into(),
                            },
                        ));
                    }
                    out
                }
            };
            let digest = match &raw.digest {
                None => None,
                Some(d) => Some(parse_sha256(d.get_ref()).ok_or_else(|| {
                    err(
                        d.span(),
                        HealthProblem::BadDigest {
                            value: d.get_ref().clone(),
                        },
                    )
                })?),
            };
            Probe::Http(HttpCheck {
                path,
                host,
                status,
                digest,
                body: pattern(&raw.body, "body")?,
            })
        }
        "udp" => {
            let payload = match (&raw.payload, &raw.payload_hex) {
                (Some(_), Some(h)) => {
                    return Err(err(
                        h.span(),
                        HealthProblem::BadPayload {
                            reason: "give payload or payload_hex, not both",
                        },
                    ));
                }
                (Some(p), None) => p.get_ref().as_bytes().to_vec(),
                (None, Some(h)) => parse_hex(h.get_ref()).ok_or_else(|| {
                    err(
                        h.span(),
                        HealthProblem::BadPayload {
                            reason: "payload_hex is not an even number of hex digits",
                        },
                    )
                })?,
                (None, None) => {
                    return Err(err(
                        header,
                        HealthProblem::Missing {
                            kind,
                            key: "payload = \"...\" (or payload_hex) to send",
                        },
                    ));
                }
            };
            Probe::Udp(UdpCheck {
                payload,
                expect: pattern(&raw.expect, "expect")?,
            })
        }
        _ => {
            let Some(c) = &raw.command else {
                return Err(err(
                    header,
                    HealthProblem::Missing {
                        kind,
                        key: "command = \"...\" (exit 0 = up)",
                    },
                ));
            };
            let command = command(Some(c), "command", subject, src)?
                .unwrap_or_else(|| CommandLine { argv: Vec::new() });
            Probe::Command(CommandCheck {
                command,
                dynamic_weight: raw.dynamic_weight.as_ref().is_some_and(|d| *d.get_ref()),
            })
        }
    };
    Ok(Some(CheckSpec {
        probe,
        port,
        timing: Timing {
            interval,
            timeout,
            retry_delay,
            fall,
            rise,
        },
        on_failure,
        notify_up: command(raw.notify_up.as_ref(), "notify_up", subject, src)?,
        notify_down: command(raw.notify_down.as_ref(), "notify_down", subject, src)?,
    }))
}

fn status_range(v: &StatusValue) -> Option<RangeInclusive<u16>> {
    let ok = |n: i64| (100..=599).contains(&n).then_some(n as u16);
    match v {
        StatusValue::Code(c) => ok(*c).map(|c| c..=c),
        StatusValue::Text(t) => {
            let (a, b) = match t.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = t.trim().parse().ok()?;
                    (n, n)
                }
            };
            let (a, b) = (ok(a)?, ok(b)?);
            (a <= b).then_some(a..=b)
        }
    }
}

fn parse_hex(t: &str) -> Option<Vec<u8>> {
    let t: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    if !t.len().is_multiple_of(2) || !t.is_ascii() {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok())
        .collect()
}

fn parse_sha256(t: &str) -> Option<[u8; 32]> {
    parse_hex(t)?.try_into().ok()
}
