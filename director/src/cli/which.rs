//! `dirctl which`: which real server serves a client, and why — katran's
//! "which real server would take this flow?", the first question when a
//! user complains.
//!
//! ```text
//! $ dirctl which --client 198.51.100.7:40000 -t 192.0.2.10:443
//! TCP 198.51.100.7:40000 -> 192.0.2.10:443 => 10.0.0.3:443 Route
//!   source     template
//!   reason     template 198.51.100.0/24 -> 10.0.0.3:443, 300 s left
//!   service    TCP 192.0.2.10:443 rr
//!   template   198.51.100.0/24 -> 10.0.0.3:443, expires in 5m00s
//! ```
//!
//! The answer is read from the director without changing anything: no
//! connection or template is made, no scheduler advances. Exit status 0
//! when a real server would take the flow, 1 when the packet would be
//! dropped (no service, no available real server) or on an error.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;

use lb_proto::common as pb;
use lb_proto::control as ctl;

use super::args::{self, ServiceArg};
use super::client::{ClientError, connect, status_error};
use super::format::{addr_port, endpoint};
use super::pair::human_ms;
use crate::api::convert::to_protocol;
use crate::types::Protocol;

/// An address given on the command line, as `dirctl` reads addresses.
pub fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, String> {
    args::parse_addr(what, s).map_err(|e| e.0)
}

/// The service of `dirctl which`/`watch` from `--service VIP:PORT [-u]`,
/// `-t VIP:PORT` or `-u VIP:PORT` (exactly one of them). `udp` is `-u`:
/// `Some(None)` when given without an address.
pub fn service_arg(
    service: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    udp: Option<Option<SocketAddr>>,
) -> Result<Option<ServiceArg>, String> {
    let given = [
        service.is_some(),
        tcp.is_some(),
        matches!(udp, Some(Some(_))),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err("give the service once: --service VIP:PORT, -t VIP:PORT or -u VIP:PORT".into());
    }
    Ok(match (service, tcp, udp) {
        (_, Some(vip), _) => Some(ServiceArg {
            protocol: Protocol::Tcp,
            vip,
        }),
        (_, _, Some(Some(vip))) => Some(ServiceArg {
            protocol: Protocol::Udp,
            vip,
        }),
        (Some(vip), _, udp) => Some(ServiceArg {
            protocol: if udp.is_some() {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            vip,
        }),
        (None, None, _) => None,
    })
}

/// The request for `client` to `service`.
pub fn request(client: SocketAddr, service: ServiceArg) -> ctl::WhichRequest {
    ctl::WhichRequest {
        protocol: to_protocol(service.protocol) as i32,
        client: Some(endpoint(client)),
        vip: Some(endpoint(service.vip)),
        fwmark: 0,
    }
}

fn protocol_name(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => "TCP",
        Ok(pb::Protocol::Udp) => "UDP",
        _ => "?",
    }
}

/// The forwarding method as ipvsadm lists it.
fn method_name(m: i32) -> &'static str {
    match pb::ForwardMethod::try_from(m) {
        Ok(pb::ForwardMethod::Dr) => "Route",
        Ok(pb::ForwardMethod::Tunnel) => "Tunnel",
        Ok(pb::ForwardMethod::Nat) => "Masq",
        _ => "?",
    }
}

fn source_name(s: i32) -> &'static str {
    match ctl::WhichSource::try_from(s) {
        Ok(ctl::WhichSource::Connection) => "connection",
        Ok(ctl::WhichSource::Template) => "template",
        Ok(ctl::WhichSource::Scheduler) => "scheduler",
        Ok(ctl::WhichSource::NoService) => "no service",
        Ok(ctl::WhichSource::NoRealServer) => "no real server",
        _ => "unknown",
    }
}

/// Would a real server take the flow?
pub fn forwarded(r: &ctl::WhichResponse) -> bool {
    r.real_server.is_some()
}

/// The answer as `dirctl which` prints it.
pub fn format(req: &ctl::WhichRequest, r: &ctl::WhichResponse) -> String {
    let mut o = String::new();
    let target = match &r.real_server {
        Some(rs) => format!("{} {}", addr_port(Some(rs)), method_name(r.method)),
        None => match ctl::WhichSource::try_from(r.source) {
            Ok(ctl::WhichSource::NoService) => "dropped: no service".to_owned(),
            _ => "dropped: no real server".to_owned(),
        },
    };
    let _ = writeln!(
        o,
        "{} {} -> {} => {target}",
        protocol_name(req.protocol),
        addr_port(req.client.as_ref()),
        addr_port(req.vip.as_ref()),
    );
    let _ = writeln!(o, "  source     {}", source_name(r.source));
    let _ = writeln!(o, "  reason     {}", r.reason);
    if let Some(k) = &r.service {
        let _ = writeln!(
            o,
            "  service    {} {} {}",
            protocol_name(k.protocol),
            addr_port(k.vip.as_ref()),
            r.scheduler
        );
    }
    if let Some(c) = &r.connection {
        let state = pb::ConnState::try_from(c.state)
            .map(|s| s.as_str_name().trim_start_matches("CONN_STATE_"))
            .unwrap_or("?");
        let _ = writeln!(
            o,
            "  entry      {} -> {}, {state}, expires in {}",
            addr_port(c.client.as_ref()),
            addr_port(c.real_server.as_ref()),
            human_ms(u64::from(c.remaining_timeout_ms))
        );
    }
    if let Some(t) = &r.template {
        let net = t.client.as_ref().map_or("?", |e| e.ip.as_str());
        let prefix = t
            .persistence_prefix_len
            .map_or(String::new(), |p| format!("/{p}"));
        let _ = writeln!(
            o,
            "  template   {net}{prefix} -> {}, expires in {}",
            addr_port(t.real_server.as_ref()),
            human_ms(u64::from(t.remaining_timeout_ms))
        );
    }
    o
}

/// `dirctl which`: ask and print. `Ok(true)` when a real server would take
/// the flow.
pub async fn which(
    server: &str,
    req: ctl::WhichRequest,
    out: &mut dyn Write,
) -> Result<bool, ClientError> {
    let mut c = connect(server).await?;
    let resp = c
        .which(req.clone())
        .await
        .map_err(|s| status_error(server, s))?
        .into_inner();
    out.write_all(format(&req, &resp).as_bytes())?;
    out.flush()?;
    Ok(forwarded(&resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_service_is_given_once_in_any_of_three_ways() {
        let vip = sa("192.0.2.10:53");
        let t = |p, vip| Ok(Some(ServiceArg { protocol: p, vip }));
        assert_eq!(service_arg(Some(vip), None, None), t(Protocol::Tcp, vip));
        assert_eq!(
            service_arg(Some(vip), None, Some(None)),
            t(Protocol::Udp, vip)
        );
        assert_eq!(service_arg(None, Some(vip), None), t(Protocol::Tcp, vip));
        assert_eq!(
            service_arg(None, None, Some(Some(vip))),
            t(Protocol::Udp, vip)
        );
        assert_eq!(service_arg(None, None, None), Ok(None));
        assert!(service_arg(Some(vip), Some(vip), None).is_err());
    }

    #[test]
    fn answers_print_target_source_reason_and_entries() {
        let req = request(
            sa("198.51.100.7:40000"),
            ServiceArg {
                protocol: Protocol::Tcp,
                vip: sa("192.0.2.10:443"),
            },
        );
        let resp = ctl::WhichResponse {
            service: Some(pb::ServiceKey {
                protocol: pb::Protocol::Tcp as i32,
                vip: Some(endpoint(sa("192.0.2.10:443"))),
                ..Default::default()
            }),
            real_server: Some(endpoint(sa("10.0.0.3:443"))),
            method: pb::ForwardMethod::Dr as i32,
            source: ctl::WhichSource::Template as i32,
            reason: "template 198.51.100.0/24 -> 10.0.0.3:443, 300 s left".into(),
            connection: None,
            template: Some(pb::ConnEntry {
                client: Some(endpoint(sa("198.51.100.0:0"))),
                real_server: Some(endpoint(sa("10.0.0.3:443"))),
                remaining_timeout_ms: 300_000,
                persistence_prefix_len: Some(24),
                ..Default::default()
            }),
            scheduler: "rr".into(),
        };
        assert_eq!(
            format(&req, &resp),
            "TCP 198.51.100.7:40000 -> 192.0.2.10:443 => 10.0.0.3:443 Route\n\
             \x20 source     template\n\
             \x20 reason     template 198.51.100.0/24 -> 10.0.0.3:443, 300 s left\n\
             \x20 service    TCP 192.0.2.10:443 rr\n\
             \x20 template   198.51.100.0/24 -> 10.0.0.3:443, expires in 5m00s\n"
        );
        let none = ctl::WhichResponse {
            source: ctl::WhichSource::NoService as i32,
            reason: "no virtual service".into(),
            ..Default::default()
        };
        assert!(!forwarded(&none));
        assert!(
            format(&req, &none)
                .starts_with("TCP 198.51.100.7:40000 -> 192.0.2.10:443 => dropped: no service\n"),
            "{}",
            format(&req, &none)
        );
    }
}
