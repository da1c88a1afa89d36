//! `Which`: which real server serves a client's flow — or would serve it —
//! and why, asked the way the packet path would ask it.
//!
//! The answer follows `ConnTable::process_in` step by step, reading only:
//! 1. the service the packet would reach ([`ServiceTable::for_packet`]:
//!    its VIP:port, else a port-zero service on the VIP);
//! 2. a live connection entry for the exact 5-tuple (client port 0 means
//!    "any port" and skips this step);
//! 3. for a persistent service, the client's template, keyed as the
//!    packet path keys it ([`TemplateKey::for_client`]: netmask, port 0
//!    for FTP and port-zero services) and used only while its real server
//!    is still in the service;
//! 4. otherwise the scheduler's [`Scheduler::peek`]: its pick for a new
//!    flow now, without advancing it.
//!
//! Nothing is created, refreshed or advanced: no entry, no template, no
//! scheduler position, no counter.
//!
//! [`ServiceTable::for_packet`]: crate::service_table::ServiceTable::for_packet
//! [`Scheduler::peek`]: crate::sched::Scheduler::peek

use std::net::{IpAddr, SocketAddr};

use lb_proto::control as ctl;
use tonic::Status;

use super::ControlState;
use super::convert::{self, to_conn_entry, to_endpoint, to_method, to_service_key};
use crate::conn::{ConnKey, ConnRecord, ConnState, TcpState, TemplateKey};
use crate::sched::{self, SchedRequest};
use crate::service::Service;
use crate::time::Millis;
use crate::types::Protocol;

/// The checked request.
#[derive(Debug, Clone, Copy)]
struct Query {
    protocol: Protocol,
    client: SocketAddr,
    vip: SocketAddr,
}

fn query(req: &ctl::WhichRequest) -> Result<Query, Status> {
    let protocol = convert::protocol(req.protocol)
        .map_err(|e| Status::invalid_argument(format!("which: {e}: give TCP (-t) or UDP (-u)")))?;
    let client = req.client.as_ref().ok_or_else(|| {
        Status::invalid_argument("which: the client address is missing (--client IP[:PORT])")
    })?;
    let client = convert::endpoint("client", client)?;
    let vip = req.vip.as_ref().ok_or_else(|| {
        Status::invalid_argument("which: the virtual service is missing (--service VIP:PORT)")
    })?;
    let vip = convert::endpoint("virtual service", vip)?;
    for (what, a) in [("client", client), ("virtual service", vip)] {
        if a.is_ipv6() {
            return Err(Status::invalid_argument(format!(
                "{what} {a}: IPv6 is not supported, the dataplane forwards IPv4 only"
            )));
        }
    }
    Ok(Query {
        protocol,
        client,
        vip,
    })
}

/// `10.1.2.0/24`, with "(every port)" for templates that cover all ports.
fn template_name(k: &TemplateKey, prefix: u8) -> String {
    let all = if k.vport == 0 { " (every port)" } else { "" };
    format!("{}/{prefix}{all}", k.client_net)
}

fn secs_left(rec: &ConnRecord) -> u64 {
    rec.timeout_ms.div_ceil(1000)
}

/// A TIME_WAIT/CLOSE TCP connection no template controls: a new SYN from
/// the same port replaces it (the packet path's `reusable`).
fn reusable(rec: &ConnRecord) -> bool {
    rec.template.is_none()
        && matches!(
            rec.state,
            ConnState::Tcp(TcpState::TimeWait | TcpState::Close)
        )
}

/// Random bits for twos, as a worker would draw them: varied per query,
/// never a secret (splitmix64 of the time and the client).
fn entropy(now: Millis, client: SocketAddr) -> u64 {
    let ip = match client.ip() {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a) as u64,
    };
    let mut x = now.0 ^ (ip << 16) ^ u64::from(client.port());
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Answer a `Which` request from the running dataplane at its clock.
pub(super) fn which(
    state: &ControlState,
    req: &ctl::WhichRequest,
) -> Result<ctl::WhichResponse, Status> {
    let q = query(req)?;
    if req.fwmark != 0 {
        return Ok(ctl::WhichResponse {
            source: ctl::WhichSource::NoService as i32,
            reason: format!(
                "no firewall-mark service (fwmark {}): this director has none, \
                 the packet would be dropped",
                req.fwmark
            ),
            ..Default::default()
        });
    }
    let table = state.dp.services();
    let Some(svc) = table.for_packet(q.protocol, q.vip) else {
        return Ok(ctl::WhichResponse {
            source: ctl::WhichSource::NoService as i32,
            reason: format!(
                "no virtual service {} {} (nor a port-zero one on {}): \
                 the packet would be dropped",
                q.protocol,
                q.vip,
                q.vip.ip()
            ),
            ..Default::default()
        });
    };
    let mut resp = answer(state, svc, table.sched_opts(svc.key), &q);
    resp.service = Some(to_service_key(svc.key));
    resp.scheduler = svc.scheduler.kind().name().to_owned();
    if !state.dp.is_active() {
        resp.reason
            .push_str("; this director is standby: it forwards nothing until it is master");
    }
    Ok(resp)
}

/// The answer for a packet that reaches `svc`.
fn answer(
    state: &ControlState,
    svc: &Service,
    opts: sched::SchedOptions,
    q: &Query,
) -> ctl::WhichResponse {
    let now = state.now();
    let conns = state.dp.conns();
    let prefix = svc.persistence.map(|p| p.netmask_prefix);
    let removed = |rs: SocketAddr| svc.dest(rs).is_none();

    // 1. The flow's own entry.
    let key = ConnKey {
        protocol: q.protocol,
        client: q.client,
        vip: q.vip,
    };
    if q.client.port() != 0
        && let Some(rec) = conns.get(&key, now)
    {
        let tpl = rec.template.and_then(|tk| conns.get_template(&tk, now));
        let mut reason = format!(
            "existing {} connection, {} s left",
            rec.state.name(),
            secs_left(&rec)
        );
        if let (Some(tk), Some(p)) = (rec.template, prefix) {
            reason.push_str(&format!(", under template {}", template_name(&tk, p)));
        }
        if removed(rec.real_server) {
            reason.push_str(
                "; its real server left the service, the connection forwards until it expires",
            );
        }
        if q.protocol == Protocol::Tcp && reusable(&rec) {
            reason.push_str("; a new SYN from this port would replace it and be scheduled afresh");
        }
        return ctl::WhichResponse {
            real_server: Some(to_endpoint(rec.real_server)),
            method: to_method(rec.method) as i32,
            source: ctl::WhichSource::Connection as i32,
            reason,
            connection: Some(to_conn_entry(&rec, prefix, removed(rec.real_server))),
            template: tpl.map(|t| to_conn_entry(&t, prefix, removed(t.real_server))),
            ..Default::default()
        };
    }

    // 2. The client's persistence template.
    if svc.key.vip.port() == 0 && svc.persistence.is_none() {
        return ctl::WhichResponse {
            source: ctl::WhichSource::NoRealServer as i32,
            reason: "a port-zero service without persistence cannot schedule: \
                     the packet would be dropped"
                .to_owned(),
            ..Default::default()
        };
    }
    let mut note = String::new();
    let mut after = String::new();
    if let Some(p) = svc.persistence {
        let tk = TemplateKey::for_client(q.protocol, q.client.ip(), p.netmask_prefix, svc.key.vip);
        let name = template_name(&tk, p.netmask_prefix);
        match conns.get_template(&tk, now) {
            Some(t) => match svc.dest(t.real_server).filter(|d| d.is_available()) {
                Some(d) => {
                    let mut reason = format!(
                        "template {name} -> {}, {} s left",
                        t.real_server,
                        secs_left(&t)
                    );
                    if d.weight() <= 0 {
                        reason.push_str(
                            "; the real server is quiesced (weight 0), which stops only new clients",
                        );
                    }
                    return ctl::WhichResponse {
                        real_server: Some(to_endpoint(t.real_server)),
                        method: to_method(d.method()) as i32,
                        source: ctl::WhichSource::Template as i32,
                        reason,
                        template: Some(to_conn_entry(&t, prefix, false)),
                        ..Default::default()
                    };
                }
                None => {
                    note = format!(
                        "template {name} -> {} is retired (its real server left the service); ",
                        t.real_server
                    );
                }
            },
            None => note = format!("no template for {name} yet; "),
        }
        after = format!(
            "; a new connection would pin {name} to it for {} s",
            p.timeout.as_secs()
        );
    }

    // 3. The scheduler, peeked.
    let sreq = SchedRequest {
        protocol: q.protocol,
        client: q.client,
        dest: q.vip,
        now,
        entropy: entropy(now, q.client),
    };
    let kind = svc.scheduler.kind();
    match svc.scheduler.peek(&svc.dests, &sreq) {
        Some(d) => ctl::WhichResponse {
            real_server: Some(to_endpoint(d.addr())),
            method: to_method(d.method()) as i32,
            source: ctl::WhichSource::Scheduler as i32,
            reason: format!(
                "{note}{}{after}",
                sched::explain(kind, opts, &svc.dests, &d, &sreq)
            ),
            ..Default::default()
        },
        None => ctl::WhichResponse {
            source: ctl::WhichSource::NoRealServer as i32,
            reason: format!(
                "{note}{}: the packet would be dropped",
                sched::explain_none(kind, opts, &svc.dests)
            ),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_named_by_network_and_ports() {
        let k = TemplateKey::for_client(
            Protocol::Tcp,
            "10.1.2.77".parse().unwrap(),
            24,
            "192.0.2.1:80".parse().unwrap(),
        );
        assert_eq!(template_name(&k, 24), "10.1.2.0/24");
        let ftp = TemplateKey::for_client(
            Protocol::Tcp,
            "10.1.2.77".parse().unwrap(),
            32,
            "192.0.2.1:21".parse().unwrap(),
        );
        assert_eq!(template_name(&ftp, 32), "10.1.2.77/32 (every port)");
    }

    #[test]
    fn bad_requests_are_refused_with_a_sentence() {
        let ep = |ip: &str, port| {
            Some(lb_proto::common::Endpoint {
                ip: ip.into(),
                port,
            })
        };
        let good = ctl::WhichRequest {
            protocol: lb_proto::common::Protocol::Tcp as i32,
            client: ep("192.0.2.7", 4000),
            vip: ep("198.51.100.1", 80),
            fwmark: 0,
        };
        assert!(query(&good).is_ok());
        for (req, says) in [
            (
                ctl::WhichRequest {
                    client: None,
                    ..good.clone()
                },
                "client address is missing",
            ),
            (
                ctl::WhichRequest {
                    client: ep("2001:db8::1", 1),
                    ..good.clone()
                },
                "IPv6 is not supported",
            ),
            (
                ctl::WhichRequest {
                    vip: ep("198.51.100.1", 70000),
                    ..good.clone()
                },
                "port 70000 is out of range",
            ),
            (
                ctl::WhichRequest {
                    protocol: 0,
                    ..good.clone()
                },
                "give TCP (-t) or UDP (-u)",
            ),
        ] {
            let e = query(&req).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(says), "{}", e.message());
        }
    }
}
