//! `ListConnections`: the connection table, filtered and paged.
//!
//! Pages are cut from a total order on entries — templates first, then
//! flows, each by protocol, client and virtual address — and a page token
//! names the last entry returned. The next page is the smallest entries
//! after it, so a walk over a live table never returns an entry twice
//! (entries created behind the cursor meanwhile are missed, as the
//! contract allows). Each page walks the whole table once but keeps only
//! `page_size + 1` entries in memory.

use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};

use lb_proto::control as ctl;
use tonic::Status;

use super::ControlState;
use super::convert::{self, parse_ip, parse_port};
use crate::conn::{ConnRecord, FTP_PORT};
use crate::service::ServiceKey;
use crate::service_table::ServiceTable;

/// Entries in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Most entries in one page.
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// Position of an entry in the listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    /// 0 for templates, 1 for flows.
    kind: u8,
    /// IP protocol number.
    proto: u8,
    client: SocketAddr,
    vip: SocketAddr,
}

impl Pos {
    fn of(rec: &ConnRecord) -> Pos {
        Pos {
            kind: u8::from(!rec.flags.template),
            proto: rec.protocol.number(),
            client: rec.client,
            vip: rec.vip,
        }
    }
}

/// A record ordered by its position only.
struct Item(Pos, ConnRecord);

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The request's filters, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Filter {
    service: Option<ServiceKey>,
    real_server: Option<(IpAddr, u16)>,
    client: Option<(Option<IpAddr>, u16)>,
    include_templates: bool,
    only_synced: bool,
    only_local: bool,
}

impl Filter {
    fn from_request(req: &ctl::ListConnectionsRequest) -> Result<Filter, Status> {
        if req.only_synced && req.only_local {
            return Err(Status::invalid_argument(
                "only_synced and only_local exclude each other: set at most one",
            ));
        }
        let service = req
            .service
            .as_ref()
            .map(|k| convert::service_key(Some(k)))
            .transpose()?;
        let real_server = req
            .real_server
            .as_ref()
            .map(|ep| {
                Ok::<_, Status>((
                    parse_ip("real server filter", &ep.ip)?,
                    parse_port("real server filter", ep.port)?,
                ))
            })
            .transpose()?;
        let client = req
            .client
            .as_ref()
            .map(|ep| {
                let ip = if ep.ip.is_empty() {
                    None
                } else {
                    Some(parse_ip("client filter", &ep.ip)?)
                };
                Ok::<_, Status>((ip, parse_port("client filter", ep.port)?))
            })
            .transpose()?;
        Ok(Filter {
            service,
            real_server,
            client,
            include_templates: req.include_templates,
            only_synced: req.only_synced,
            only_local: req.only_local,
        })
    }

    fn matches(&self, rec: &ConnRecord) -> bool {
        if rec.flags.template && !self.include_templates {
            return false;
        }
        if (self.only_synced && !rec.flags.synced) || (self.only_local && rec.flags.synced) {
            return false;
        }
        if let Some(key) = self.service {
            let vport = rec.vip.port();
            let port_ok = vport == key.vip.port()
                || key.vip.port() == 0
                || (rec.flags.template && vport == 0 && key.vip.port() == FTP_PORT);
            if rec.protocol != key.protocol || rec.vip.ip() != key.vip.ip() || !port_ok {
                return false;
            }
        }
        if let Some((ip, port)) = self.real_server
            && (rec.real_server.ip() != ip || (port != 0 && rec.real_server.port() != port))
        {
            return false;
        }
        if let Some((ip, port)) = self.client {
            if ip.is_some_and(|ip| ip != rec.client.ip()) {
                return false;
            }
            if port != 0 && rec.client.port() != port {
                return false;
            }
        }
        true
    }

    /// A fingerprint of the filters, carried in page tokens (FNV-1a over
    /// their debug form: stable within one build, which is all a token
    /// needs).
    fn fingerprint(&self) -> u64 {
        let text = format!("{self:?}");
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

fn encode_token(filter: u64, pos: &Pos) -> String {
    format!(
        "{filter:016x}|{}|{}|{}|{}",
        pos.kind, pos.proto, pos.client, pos.vip
    )
}

fn decode_token(token: &str, filter: u64) -> Result<Pos, Status> {
    let bad = || Status::invalid_argument("page_token is not a token this server issued");
    let mut it = token.split('|');
    let mut next = || it.next().ok_or_else(bad);
    let fp = u64::from_str_radix(next()?, 16).map_err(|_| bad())?;
    let kind = next()?.parse().map_err(|_| bad())?;
    let proto = next()?.parse().map_err(|_| bad())?;
    let client = next()?.parse().map_err(|_| bad())?;
    let vip = next()?.parse().map_err(|_| bad())?;
    if fp != filter {
        return Err(Status::invalid_argument(
            "page_token belongs to a listing with other filters: \
             repeat the filters of the first page, or start again without a token",
        ));
    }
    Ok(Pos {
        kind,
        proto,
        client,
        vip,
    })
}

/// The service a record belongs to, if it is still configured.
fn service_of<'a>(
    table: &'a ServiceTable,
    rec: &ConnRecord,
) -> Option<&'a std::sync::Arc<crate::Service>> {
    let ip = rec.vip.ip();
    table
        .get(rec.protocol, rec.vip)
        .or_else(|| table.get(rec.protocol, SocketAddr::new(ip, 0)))
        .or_else(|| {
            (rec.flags.template && rec.vip.port() == 0)
                .then(|| table.get(rec.protocol, SocketAddr::new(ip, FTP_PORT)))
                .flatten()
        })
}

/// One page of the connection listing.
pub(super) fn list(
    state: &ControlState,
    req: &ctl::ListConnectionsRequest,
) -> Result<ctl::ListConnectionsResponse, Status> {
    let filter = Filter::from_request(req)?;
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(Status::invalid_argument(format!(
                "page_size {n} is out of range 1..={MAX_PAGE_SIZE}"
            )));
        }
        n => n,
    } as usize;
    let fp = filter.fingerprint();
    let after = if req.page_token.is_empty() {
        None
    } else {
        Some(decode_token(&req.page_token, fp)?)
    };

    let table = state.dp.services();
    let conns = state.dp.conns();
    let table_size = conns.len() as u64;
    // The page_size + 1 smallest entries after the cursor: a max-heap
    // whose top is evicted whenever it overflows.
    let mut heap: BinaryHeap<Item> = BinaryHeap::with_capacity(page_size + 1);
    conns.snapshot(state.now(), |rec| {
        let pos = Pos::of(&rec);
        if after.is_some_and(|a| pos <= a) || !filter.matches(&rec) {
            return;
        }
        if heap.len() > page_size && heap.peek().is_some_and(|top| pos >= top.0) {
            return;
        }
        heap.push(Item(pos, rec));
        if heap.len() > page_size + 1 {
            heap.pop();
        }
    });
    let mut items = heap.into_sorted_vec();
    let more = items.len() > page_size;
    items.truncate(page_size);
    let next_page_token = match (more, items.last()) {
        (true, Some(last)) => encode_token(fp, &last.0),
        _ => String::new(),
    };
    let connections = items
        .into_iter()
        .map(|Item(_, rec)| {
            let svc = service_of(&table, &rec);
            let removed = svc.is_none_or(|s| s.dest(rec.real_server).is_none());
            let prefix = svc.and_then(|s| s.persistence).map(|p| p.netmask_prefix);
            ctl::Connection {
                entry: Some(convert::to_conn_entry(&rec, prefix, removed)),
                from_sync: false,
                state_name: rec.state.name().to_owned(),
            }
        })
        .collect();
    Ok(ctl::ListConnectionsResponse {
        connections,
        next_page_token,
        table_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filters() {
        let pos = Pos {
            kind: 1,
            proto: 6,
            client: "[2001:db8::1]:4000".parse().unwrap(),
            vip: "10.0.0.1:80".parse().unwrap(),
        };
        let t = encode_token(42, &pos);
        assert_eq!(decode_token(&t, 42).unwrap(), pos);
        assert!(
            decode_token(&t, 43)
                .unwrap_err()
                .message()
                .contains("other filters")
        );
        for junk in ["", "x", "0|1|6|a|b", &t[..t.len() - 3]] {
            assert_eq!(
                decode_token(junk, 42).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{junk:?}"
            );
        }
    }
}
