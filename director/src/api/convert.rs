//! Conversions between the wire types of the control API (`lb.common.v1`)
//! and the dataplane's configuration types, with every refusal as a
//! `tonic::Status` whose message an operator can read as is.
//!
//! Wire → core is strict: a malformed address, a port above 65535, an
//! unknown enum value or scheduler is INVALID_ARGUMENT; a well-formed
//! request for something this director cannot do yet (firewall marks,
//! IPv6, one-packet scheduling, health checks set over the API, GUE/GRE tunnels) is
//! UNIMPLEMENTED, so that nothing is silently ignored.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lb_proto::common as pb;
use tonic::Status;

use crate::conn::{ConnRecord, ConnState, RecordFlags, TcpState, TemplateKey};
use crate::dest::MAX_WEIGHT;
use crate::sched::{SchedOptions, SchedulerKind};
use crate::service::{DEFAULT_PERSISTENCE, Persistence, ServiceKey};
use crate::service_table::{DestSpec, ServiceSpec};
use crate::types::{ForwardMethod, Protocol};

/// Longest persistence timeout the contract allows: 2^31 − 1 s.
const MAX_PERSISTENCE_S: u32 = i32::MAX as u32;

/// An IP address in textual form.
pub fn parse_ip(what: &str, s: &str) -> Result<IpAddr, Status> {
    s.parse().map_err(|_| {
        if s.is_empty() {
            Status::invalid_argument(format!("{what}: the IP address is missing"))
        } else {
            Status::invalid_argument(format!("{what}: {s:?} is not an IP address"))
        }
    })
}

/// A port held in a `uint32`.
pub fn parse_port(what: &str, port: u32) -> Result<u16, Status> {
    u16::try_from(port).map_err(|_| {
        Status::invalid_argument(format!("{what}: port {port} is out of range 0..=65535"))
    })
}

/// An endpoint as a socket address.
pub fn endpoint(what: &str, ep: &pb::Endpoint) -> Result<SocketAddr, Status> {
    Ok(SocketAddr::new(
        parse_ip(what, &ep.ip)?,
        parse_port(what, ep.port)?,
    ))
}

/// A socket address as an endpoint.
pub fn to_endpoint(addr: SocketAddr) -> pb::Endpoint {
    pb::Endpoint {
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
    }
}

/// The wire protocol of a core protocol.
pub fn to_protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
    }
}

/// The wire forwarding method of a core one.
pub fn to_method(m: ForwardMethod) -> pb::ForwardMethod {
    match m {
        ForwardMethod::DirectRouting => pb::ForwardMethod::Dr,
        ForwardMethod::Tunnel => pb::ForwardMethod::Tunnel,
        ForwardMethod::Masquerade => pb::ForwardMethod::Nat,
    }
}

/// The wire connection state of a core one.
pub fn to_conn_state(s: ConnState) -> pb::ConnState {
    match s {
        ConnState::Udp => pb::ConnState::Udp,
        ConnState::Tcp(t) => match t {
            TcpState::None => pb::ConnState::None,
            TcpState::Established => pb::ConnState::Established,
            TcpState::SynSent => pb::ConnState::SynSent,
            TcpState::SynRecv => pb::ConnState::SynRecv,
            TcpState::FinWait => pb::ConnState::FinWait,
            TcpState::TimeWait => pb::ConnState::TimeWait,
            TcpState::Close => pb::ConnState::Close,
            TcpState::CloseWait => pb::ConnState::CloseWait,
            TcpState::LastAck => pb::ConnState::LastAck,
            TcpState::Listen => pb::ConnState::Listen,
            TcpState::SynAck => pb::ConnState::Synack,
        },
    }
}

/// A service key from the wire. `None` is a missing key.
pub fn service_key(key: Option<&pb::ServiceKey>) -> Result<ServiceKey, Status> {
    let key = key.ok_or_else(|| {
        Status::invalid_argument("the service key is missing: give a protocol and a VIP:port")
    })?;
    if key.fwmark != 0 {
        return Err(Status::unimplemented(format!(
            "firewall-mark services (fwmark {}) are not supported by this director; \
             use a protocol and VIP:port",
            key.fwmark
        )));
    }
    let protocol = match pb::Protocol::try_from(key.protocol) {
        Ok(pb::Protocol::Tcp) => Protocol::Tcp,
        Ok(pb::Protocol::Udp) => Protocol::Udp,
        Ok(pb::Protocol::Unspecified) => {
            return Err(Status::invalid_argument(
                "the service protocol is missing: TCP (-t) or UDP (-u)",
            ));
        }
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown service protocol value {}",
                key.protocol
            )));
        }
    };
    let vip = key
        .vip
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("the service key has no virtual address (vip)"))?;
    let vip = endpoint("virtual service", vip)?;
    if vip.is_ipv6() {
        return Err(Status::unimplemented(format!(
            "IPv6 virtual services ({vip}) are not supported: the dataplane forwards IPv4 only"
        )));
    }
    Ok(ServiceKey { protocol, vip })
}

/// A core service key on the wire.
pub fn to_service_key(key: ServiceKey) -> pb::ServiceKey {
    pb::ServiceKey {
        protocol: to_protocol(key.protocol) as i32,
        vip: Some(to_endpoint(key.vip)),
        fwmark: 0,
        family: pb::AddressFamily::Unspecified as i32,
    }
}

fn scheduler(name: &str) -> Result<SchedulerKind, Status> {
    if name.is_empty() {
        return Ok(SchedulerKind::Wlc);
    }
    name.parse().map_err(Status::invalid_argument)
}

fn health_check_unsupported(hc: Option<&pb::HealthCheckSpec>) -> Result<(), Status> {
    match hc.map(|h| pb::HealthCheckType::try_from(h.r#type)) {
        None | Some(Ok(pb::HealthCheckType::Unspecified | pb::HealthCheckType::None)) => Ok(()),
        Some(_) => Err(Status::unimplemented(
            "health checks cannot be set over the control API yet; configure them in \
             directord's configuration file ([service.health_check]) and reload",
        )),
    }
}

/// A service configuration from the wire, without real servers.
pub fn service_spec(spec: Option<&pb::ServiceSpec>) -> Result<ServiceSpec, Status> {
    let spec =
        spec.ok_or_else(|| Status::invalid_argument("the service specification is missing"))?;
    let key = service_key(spec.key.as_ref())?;
    let scheduler = scheduler(&spec.scheduler)?;
    let mut sched_opts = SchedOptions::default();
    if let Some(f) = &spec.scheduler_flags {
        sched_opts.fallback = f.hash_fallback;
        sched_opts.port = f.hash_port;
        if f.mh_table_size != 0 {
            sched_opts.mh_table_size = f.mh_table_size;
        }
    }
    let persistence = spec
        .persistence
        .as_ref()
        .map(|p| persistence(key, p))
        .transpose()?;
    if spec.one_packet {
        return Err(Status::unimplemented(
            "one-packet scheduling (-o) is not supported by this director",
        ));
    }
    health_check_unsupported(spec.health_check.as_ref())?;
    Ok(ServiceSpec {
        key,
        scheduler,
        sched_opts,
        persistence,
        dests: Vec::new(),
    })
}

fn persistence(key: ServiceKey, p: &pb::Persistence) -> Result<Persistence, Status> {
    let timeout = match p.timeout_s {
        0 => DEFAULT_PERSISTENCE,
        t if t > MAX_PERSISTENCE_S => {
            return Err(Status::invalid_argument(format!(
                "virtual service {}: persistence timeout {t} s is out of range 1..={MAX_PERSISTENCE_S}",
                key.vip
            )));
        }
        t => Duration::from_secs(u64::from(t)),
    };
    let max = if key.vip.is_ipv4() { 32 } else { 128 };
    let prefix = p.netmask_prefix_len.unwrap_or(max);
    if prefix > max {
        return Err(Status::invalid_argument(format!(
            "virtual service {}: persistence netmask /{prefix} is longer than the address (/{max})",
            key.vip
        )));
    }
    Ok(Persistence {
        timeout,
        netmask_prefix: prefix as u8,
    })
}

/// A core service configuration on the wire (without real servers).
pub fn to_service_spec(spec: &ServiceSpec) -> pb::ServiceSpec {
    pb::ServiceSpec {
        key: Some(to_service_key(spec.key)),
        scheduler: spec.scheduler.name().to_owned(),
        scheduler_flags: Some(pb::SchedulerFlags {
            hash_fallback: spec.sched_opts.fallback,
            hash_port: spec.sched_opts.port,
            mh_table_size: spec.sched_opts.mh_table_size,
        }),
        persistence: spec.persistence.map(|p| pb::Persistence {
            timeout_s: u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX),
            netmask_prefix_len: Some(u32::from(p.netmask_prefix)),
        }),
        one_packet: false,
        health_check: None,
    }
}

/// A real server's address from the wire: port 0 is the virtual port.
pub fn dest_addr(key: ServiceKey, ep: Option<&pb::Endpoint>) -> Result<SocketAddr, Status> {
    let ep = ep.ok_or_else(|| Status::invalid_argument("the real server address is missing"))?;
    let mut addr = endpoint("real server", ep)?;
    if addr.port() == 0 {
        addr.set_port(key.vip.port());
    }
    Ok(addr)
}

/// A real server configuration from the wire, for service `key`.
pub fn dest_spec(key: ServiceKey, rs: Option<&pb::RealServerSpec>) -> Result<DestSpec, Status> {
    let rs =
        rs.ok_or_else(|| Status::invalid_argument("the real server specification is missing"))?;
    let addr = dest_addr(key, rs.address.as_ref())?;
    let method = match pb::ForwardMethod::try_from(rs.method) {
        Ok(pb::ForwardMethod::Unspecified | pb::ForwardMethod::Dr) => ForwardMethod::DirectRouting,
        Ok(pb::ForwardMethod::Tunnel) => ForwardMethod::Tunnel,
        Ok(pb::ForwardMethod::Nat) => ForwardMethod::Masquerade,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "real server {addr}: unknown forwarding method value {}",
                rs.method
            )));
        }
    };
    let weight = rs.weight.unwrap_or(1);
    if weight > MAX_WEIGHT as u32 {
        return Err(Status::invalid_argument(format!(
            "real server {addr} of {}: weight {weight} is out of range 0..={MAX_WEIGHT}",
            key.vip
        )));
    }
    if let Some(t) = &rs.tunnel {
        match pb::TunnelType::try_from(t.r#type) {
            Ok(pb::TunnelType::Unspecified | pb::TunnelType::Ipip) => {}
            Ok(other) => {
                return Err(Status::unimplemented(format!(
                    "real server {addr}: tunnel type {} is not supported; only IPIP is",
                    other.as_str_name()
                )));
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "real server {addr}: unknown tunnel type value {}",
                    t.r#type
                )));
            }
        }
    }
    health_check_unsupported(rs.health_check.as_ref())?;
    Ok(DestSpec {
        addr,
        method,
        weight: weight as i32,
        upper_threshold: rs.upper_threshold,
        lower_threshold: rs.lower_threshold,
    })
}

/// A core real server configuration on the wire.
pub fn to_dest_spec(d: &DestSpec) -> pb::RealServerSpec {
    pb::RealServerSpec {
        address: Some(to_endpoint(d.addr)),
        method: to_method(d.method) as i32,
        weight: Some(u32::try_from(d.weight.max(0)).unwrap_or(0)),
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
        tunnel: None,
        health_check: None,
    }
}

/// A connection-table record on the wire. `prefix` is the persistence
/// prefix of the record's service, for templates.
pub fn to_conn_entry(rec: &ConnRecord, prefix: Option<u8>, dest_removed: bool) -> pb::ConnEntry {
    let mut flags = 0u32;
    if rec.flags.template {
        flags |= pb::ConnFlag::Template as u32;
    }
    if rec.flags.no_output {
        flags |= pb::ConnFlag::NoOutput as u32;
    }
    if rec.flags.inactive {
        flags |= pb::ConnFlag::Inactive as u32;
    }
    if rec.client.port() == 0 {
        flags |= pb::ConnFlag::NoCport as u32;
    }
    if dest_removed {
        flags |= pb::ConnFlag::DestRemoved as u32;
    }
    if rec.flags.synced {
        flags |= pb::ConnFlag::Synced as u32;
    }
    pb::ConnEntry {
        protocol: to_protocol(rec.protocol) as i32,
        client: Some(to_endpoint(rec.client)),
        vip: Some(to_endpoint(rec.vip)),
        real_server: Some(to_endpoint(rec.real_server)),
        method: to_method(rec.method) as i32,
        state: to_conn_state(rec.state) as i32,
        remaining_timeout_ms: u32::try_from(rec.timeout_ms).unwrap_or(u32::MAX),
        flags,
        fwmark: 0,
        template: rec.template.map(|t| pb::TemplateKey {
            protocol: to_protocol(t.protocol) as i32,
            client_ip: t.client_net.to_string(),
            vip: Some(to_endpoint(SocketAddr::new(t.vip, t.vport))),
            fwmark: 0,
        }),
        persistence_prefix_len: if rec.flags.template {
            prefix.map(u32::from)
        } else {
            None
        },
    }
}

/// The core connection state of a wire one; UNSPECIFIED is refused.
pub fn conn_state(s: i32) -> Result<ConnState, String> {
    let tcp = |t| Ok(ConnState::Tcp(t));
    match pb::ConnState::try_from(s) {
        Ok(pb::ConnState::Udp) => Ok(ConnState::Udp),
        Ok(pb::ConnState::None) => tcp(TcpState::None),
        Ok(pb::ConnState::Established) => tcp(TcpState::Established),
        Ok(pb::ConnState::SynSent) => tcp(TcpState::SynSent),
        Ok(pb::ConnState::SynRecv) => tcp(TcpState::SynRecv),
        Ok(pb::ConnState::FinWait) => tcp(TcpState::FinWait),
        Ok(pb::ConnState::TimeWait) => tcp(TcpState::TimeWait),
        Ok(pb::ConnState::Close) => tcp(TcpState::Close),
        Ok(pb::ConnState::CloseWait) => tcp(TcpState::CloseWait),
        Ok(pb::ConnState::LastAck) => tcp(TcpState::LastAck),
        Ok(pb::ConnState::Listen) => tcp(TcpState::Listen),
        Ok(pb::ConnState::Synack) => tcp(TcpState::SynAck),
        _ => Err(format!("unknown connection state value {s}")),
    }
}

/// The core protocol of a wire one (TCP or UDP).
pub fn protocol(p: i32) -> Result<Protocol, String> {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(pb::Protocol::Udp) => Ok(Protocol::Udp),
        _ => Err(format!("protocol value {p} is not TCP or UDP")),
    }
}

fn required_endpoint(what: &str, ep: Option<&pb::Endpoint>) -> Result<SocketAddr, String> {
    let ep = ep.ok_or_else(|| format!("{what} is missing"))?;
    endpoint(what, ep).map_err(|s| s.message().to_owned())
}

/// A template key from the wire.
pub fn template_key(k: &pb::TemplateKey) -> Result<TemplateKey, String> {
    let vip = required_endpoint("template VIP", k.vip.as_ref())?;
    Ok(TemplateKey {
        protocol: protocol(k.protocol)?,
        client_net: parse_ip("template client network", &k.client_ip)
            .map_err(|s| s.message().to_owned())?,
        vip: vip.ip(),
        vport: vip.port(),
    })
}

/// A connection record from the wire (the sync stream), checked field by
/// field: the inverse of [`to_conn_entry`]. The method is the sender's;
/// importing resolves the real server locally and uses its method.
pub fn conn_record(e: &pb::ConnEntry) -> Result<ConnRecord, String> {
    let method = match pb::ForwardMethod::try_from(e.method) {
        Ok(pb::ForwardMethod::Dr) => ForwardMethod::DirectRouting,
        Ok(pb::ForwardMethod::Tunnel) => ForwardMethod::Tunnel,
        Ok(pb::ForwardMethod::Nat) => ForwardMethod::Masquerade,
        _ => {
            return Err(format!(
                "forwarding method value {} is not DR, TUN or NAT",
                e.method
            ));
        }
    };
    let flag = |f: pb::ConnFlag| e.flags & f as u32 != 0;
    Ok(ConnRecord {
        protocol: protocol(e.protocol)?,
        client: required_endpoint("client", e.client.as_ref())?,
        vip: required_endpoint("VIP", e.vip.as_ref())?,
        real_server: required_endpoint("real server", e.real_server.as_ref())?,
        method,
        state: conn_state(e.state)?,
        timeout_ms: u64::from(e.remaining_timeout_ms),
        flags: RecordFlags {
            template: flag(pb::ConnFlag::Template),
            inactive: flag(pb::ConnFlag::Inactive),
            no_output: flag(pb::ConnFlag::NoOutput),
            synced: flag(pb::ConnFlag::Synced),
        },
        template: e.template.as_ref().map(template_key).transpose()?,
    })
}

/// A connection key from the wire.
pub fn conn_key(k: &pb::ConnKey) -> Result<crate::conn::ConnKey, String> {
    Ok(crate::conn::ConnKey {
        protocol: protocol(k.protocol)?,
        client: required_endpoint("client", k.client.as_ref())?,
        vip: required_endpoint("VIP", k.vip.as_ref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn key(proto: pb::Protocol, ip: &str, port: u32) -> pb::ServiceKey {
        pb::ServiceKey {
            protocol: proto as i32,
            vip: Some(pb::Endpoint {
                ip: ip.into(),
                port,
            }),
            fwmark: 0,
            family: 0,
        }
    }

    #[test]
    fn service_keys_are_checked() {
        let k = service_key(Some(&key(pb::Protocol::Tcp, "10.0.0.1", 80))).unwrap();
        assert_eq!(k.vip, "10.0.0.1:80".parse().unwrap());
        let bad = service_key(Some(&key(pb::Protocol::Tcp, "10.0.0.300", 80))).unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().contains("10.0.0.300"), "{}", bad.message());
        let port = service_key(Some(&key(pb::Protocol::Tcp, "10.0.0.1", 70_000))).unwrap_err();
        assert_eq!(port.code(), Code::InvalidArgument);
        assert!(port.message().contains("70000"));
        let none = service_key(Some(&key(pb::Protocol::Unspecified, "10.0.0.1", 80))).unwrap_err();
        assert_eq!(none.code(), Code::InvalidArgument);
        let mut k = key(pb::Protocol::Tcp, "10.0.0.1", 80);
        k.protocol = 99;
        assert_eq!(
            service_key(Some(&k)).unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut fw = key(pb::Protocol::Tcp, "", 0);
        fw.fwmark = 3;
        assert_eq!(
            service_key(Some(&fw)).unwrap_err().code(),
            Code::Unimplemented
        );
        assert_eq!(service_key(None).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn service_spec_defaults_follow_ipvsadm() {
        let spec = pb::ServiceSpec {
            key: Some(key(pb::Protocol::Udp, "10.0.0.1", 53)),
            persistence: Some(pb::Persistence::default()),
            ..Default::default()
        };
        let s = service_spec(Some(&spec)).unwrap();
        assert_eq!(s.scheduler, SchedulerKind::Wlc);
        let p = s.persistence.unwrap();
        assert_eq!((p.timeout.as_secs(), p.netmask_prefix), (360, 32));
        let back = to_service_spec(&s);
        assert_eq!(back.scheduler, "wlc");
        assert_eq!(back.persistence.unwrap().netmask_prefix_len, Some(32));

        let mut bad = spec.clone();
        bad.scheduler = "fastest".into();
        let e = service_spec(Some(&bad)).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("fastest"), "{}", e.message());
        let mut mask = spec;
        mask.persistence = Some(pb::Persistence {
            timeout_s: 10,
            netmask_prefix_len: Some(33),
        });
        assert_eq!(
            service_spec(Some(&mask)).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn dest_specs_default_to_dr_weight_one_and_the_virtual_port() {
        let k = ServiceKey {
            protocol: Protocol::Tcp,
            vip: "10.0.0.1:80".parse().unwrap(),
        };
        let rs = pb::RealServerSpec {
            address: Some(pb::Endpoint {
                ip: "10.0.1.1".into(),
                port: 0,
            }),
            ..Default::default()
        };
        let d = dest_spec(k, Some(&rs)).unwrap();
        assert_eq!(d.addr, "10.0.1.1:80".parse().unwrap());
        assert_eq!((d.method, d.weight), (ForwardMethod::DirectRouting, 1));
        let mut heavy = rs.clone();
        heavy.weight = Some(70_000);
        let e = dest_spec(k, Some(&heavy)).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("70000"), "{}", e.message());
        let mut hc = rs;
        hc.health_check = Some(pb::HealthCheckSpec {
            r#type: pb::HealthCheckType::TcpConnect as i32,
            ..Default::default()
        });
        assert_eq!(
            dest_spec(k, Some(&hc)).unwrap_err().code(),
            Code::Unimplemented
        );
    }
}
