//! The packet path into the table: the kernel's `ip_vs_in` connection
//! lookup, `tcp_conn_schedule` / `udp_conn_schedule`, `ip_vs_schedule` and
//! `ip_vs_sched_persist`, without the packet itself.
//!
//! * A packet of a live connection updates it (state by its TCP flags in the
//!   INPUT table, or INPUT_ONLY for DR/TUN; timer re-armed) and is
//!   forwarded to the connection's real server.
//! * Otherwise only a packet that may start a connection creates one: for
//!   TCP a SYN without RST (the kernel's rule with the default
//!   `sloppy_tcp = 0`; SYN+ACK is allowed, as the kernel does for active
//!   FTP), for UDP any packet. Anything else is [`Miss::NoConnection`] —
//!   exactly what a mid-stream packet meets on a director that took over
//!   without the connection having been synced.
//! * A SYN that hits a connection in TIME_WAIT or CLOSE that no template
//!   controls expires it and schedules afresh (the kernel's default
//!   `conn_reuse_mode = 1`).
//! * A persistent service looks up the client's template first: a template
//!   whose real server is still in the service pins the client to it, even
//!   a quiesced (weight 0) one — the kernel's `expire_quiescent_template`
//!   defaults to 0, so weight 0 only stops *new* clients. A template whose
//!   real server was removed is retired (it keeps controlling its existing
//!   connections until they end) and the client is scheduled again. Each new
//!   connection through a template re-arms it for the persistence timeout.
//! * Connections to a real server that was removed keep forwarding until
//!   they expire (`expire_nodest_conn = 0`).
//!
//! New connections are bound to their real server as inactive (the kernel
//! puts `IP_VS_CONN_F_INACTIVE` in every dest's connection flags) and the
//! first packet's transition then applies: a TCP SYN moves NONE → SYN_RECV,
//! which counts as active, so a new TCP connection counts as **active**; a
//! UDP flow has no transitions and counts as **inactive** for its whole life.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::key::{ConnKey, FlowKey, TemplateKey};
use super::record::template_state;
use super::state::{ConnState, Direction, TcpFlags, TcpState, UDP_CODE, next_tcp_state};
use super::table::{
    ConnTable, Entry, F_INACTIVE, F_NOOUTPUT, K_NAT, K_TEMPLATE, K_TPL_ALLPORTS, Link, NO_LINK,
    STATE_MASK,
};
use super::{ConnEvent, Miss};
use crate::dest::{ConnClass, Dest, StatSlot};
use crate::sched::SchedRequest;
use crate::service::{Persistence, Service};
use crate::time::Millis;
use crate::types::{ForwardMethod, Protocol};

/// What the connection table needs to know about a packet from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Source address and port.
    pub client: SocketAddr,
    /// Destination address and port (the VIP).
    pub vip: SocketAddr,
    /// TCP flags ([`TcpFlags::NONE`] for UDP).
    pub tcp_flags: TcpFlags,
    /// Bytes of the IP packet, for the real server's traffic counters.
    pub len: u32,
    /// The counter slot of the worker handling the packet.
    pub stat_slot: StatSlot,
}

impl Packet {
    /// A TCP segment.
    pub fn tcp(client: SocketAddr, vip: SocketAddr, flags: TcpFlags) -> Packet {
        Packet {
            protocol: Protocol::Tcp,
            client,
            vip,
            tcp_flags: flags,
            len: 0,
            stat_slot: StatSlot::FIRST,
        }
    }

    /// A UDP datagram.
    pub fn udp(client: SocketAddr, vip: SocketAddr) -> Packet {
        Packet {
            protocol: Protocol::Udp,
            client,
            vip,
            tcp_flags: TcpFlags::NONE,
            len: 0,
            stat_slot: StatSlot::FIRST,
        }
    }

    /// The same packet, `len` bytes long (IP header included).
    pub fn with_len(mut self, len: usize) -> Packet {
        self.len = u32::try_from(len).unwrap_or(u32::MAX);
        self
    }

    /// The same packet, counted in the worker's slot `slot`.
    pub fn in_slot(mut self, slot: StatSlot) -> Packet {
        self.stat_slot = slot;
        self
    }

    /// The connection this packet belongs to.
    pub fn key(&self) -> ConnKey {
        ConnKey {
            protocol: self.protocol,
            client: self.client,
            vip: self.vip,
        }
    }

    /// May this packet create a connection (`tcp_conn_schedule`: SYN and
    /// no RST; `udp_conn_schedule`: any)?
    pub fn may_create(&self) -> bool {
        match self.protocol {
            Protocol::Tcp => self.tcp_flags.syn() && !self.tcp_flags.rst(),
            Protocol::Udp => true,
        }
    }
}

/// Where to send a client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InOutcome {
    /// Real server address and port.
    pub real_server: SocketAddr,
    /// How to reach it.
    pub method: ForwardMethod,
    /// The connection's state after this packet.
    pub state: ConnState,
    /// This packet created the connection.
    pub created: bool,
}

/// A TIME_WAIT/CLOSE TCP connection with no controlling template, which a
/// new SYN may replace (`is_new_conn_expected`).
fn reusable(e: &Entry) -> bool {
    e.link().is_none()
        && matches!(
            e.conn_state(),
            ConnState::Tcp(TcpState::TimeWait | TcpState::Close)
        )
}

/// The template chosen for a new connection of a persistent service.
struct Pinned {
    dest: Arc<Dest>,
    link: Link,
    prefix: u8,
    all_ports: bool,
}

impl ConnTable {
    /// The live entry of this packet's flow, touched as
    /// [`ConnTable::process_in`] would; `None` on a miss (nothing is
    /// created). A SYN for an entry in TIME_WAIT/CLOSE is a miss: it starts
    /// a new connection.
    fn hit(
        &self,
        pkt: &Packet,
        fk: &FlowKey,
        shard: usize,
        fh: u64,
        now: Millis,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Option<InOutcome> {
        let syn = pkt.protocol == Protocol::Tcp && pkt.tcp_flags.syn();
        // The read lock is enough, the entry's fields are atomics.
        let g = self.read(shard);
        let e = g.find_fwd(fh, fk, false).and_then(|i| g.entry(i))?;
        if !e.is_live(now) || (syn && reusable(e)) {
            return None;
        }
        let change = self.touch(e, Direction::Input, pkt.tcp_flags, now);
        e.dest.stats.count_in(pkt.stat_slot, pkt.len as usize);
        let out = outcome(e, false);
        drop(g);
        self.report_change(pkt, change, on_event);
        Some(out)
    }

    /// Handle a packet from a client only if its flow already has a live
    /// entry; never creates one (a node draining after it lost the VIP).
    pub fn process_existing(
        &self,
        pkt: &Packet,
        now: Millis,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Option<InOutcome> {
        let fk = FlowKey::from_conn(&pkt.key());
        let (shard, fh) = self.locate(&fk);
        self.hit(pkt, &fk, shard, fh, now, on_event)
    }

    /// Handle a packet from a client to `svc`: use its connection, or
    /// create one (scheduling a real server, through the client's
    /// persistence template if the service has persistence). Creations,
    /// state changes and entries it replaced go to `on_event`. `entropy`
    /// is handed to the scheduler.
    pub fn process_in(
        &self,
        svc: &Service,
        pkt: &Packet,
        now: Millis,
        entropy: u64,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Result<InOutcome, Miss> {
        let fk = FlowKey::from_conn(&pkt.key());
        let (shard, fh) = self.locate(&fk);
        let syn = pkt.protocol == Protocol::Tcp && pkt.tcp_flags.syn();

        if let Some(out) = self.hit(pkt, &fk, shard, fh, now, on_event) {
            return Ok(out);
        }

        if !pkt.may_create() {
            return Err(Miss::NoConnection);
        }
        if pkt.protocol != svc.key.protocol || pkt.vip.ip() != svc.key.vip.ip() {
            return Err(Miss::NotThisService);
        }
        let svc_port = svc.key.vip.port();
        if svc_port != 0 && pkt.vip.port() != svc_port {
            return Err(Miss::NotThisService);
        }
        if svc_port == 0 && svc.persistence.is_none() {
            return Err(Miss::PortZeroWithoutPersistence);
        }

        self.reserve()?;
        let pinned = match &svc.persistence {
            Some(p) => self.pin(svc, p, pkt, now, entropy, on_event),
            None => svc
                .scheduler
                .schedule(&svc.dests, &sched_request(pkt, now, entropy))
                .map(|dest| Pinned {
                    dest,
                    link: Link {
                        shard: 0,
                        slot: NO_LINK,
                    },
                    prefix: 0,
                    all_ports: false,
                })
                .ok_or(Miss::NoDestAvailable),
        };
        let pinned = match pinned {
            Ok(p) => p,
            Err(miss) => {
                self.release();
                return Err(miss);
            }
        };
        let entry = self.new_entry(fk, &pinned, pkt.tcp_flags, now);
        let dest = pinned.dest;
        let link = (pinned.link.slot != NO_LINK).then_some(pinned.link);

        let mut replaced = None;
        let mut raced = None;
        {
            let mut g = self.write(shard);
            if let Some(slot) = g.find_fwd(fh, &fk, false) {
                match g.entry(slot) {
                    Some(e) if e.is_live(now) && !(syn && reusable(e)) => {
                        // Another worker created this flow first: join it.
                        let change = self.touch(e, Direction::Input, pkt.tcp_flags, now);
                        e.dest.stats.count_in(pkt.stat_slot, pkt.len as usize);
                        raced = Some((outcome(e, false), change));
                    }
                    _ => {
                        if let Some(old) = g.remove(self.hasher(), slot) {
                            replaced = Some((old.to_record(now), self.forget(&old)));
                        }
                    }
                }
            }
            if raced.is_none() {
                let record = entry.to_record(now);
                let out = outcome(&entry, true);
                dest.bind(entry.class());
                g.insert(self.hasher(), entry);
                drop(g);
                svc.stats.count_conn(pkt.stat_slot);
                dest.stats.count_conn(pkt.stat_slot);
                dest.stats.count_in(pkt.stat_slot, pkt.len as usize);
                if let Some((old, old_link)) = replaced {
                    if let Some(l) = old_link {
                        self.release_link(l);
                    }
                    on_event(ConnEvent::Expired(old));
                }
                on_event(ConnEvent::Created(record));
                return Ok(out);
            }
        }
        // Lost the race: give back what this attempt took.
        self.release();
        if let Some(l) = link {
            self.release_link(l);
        }
        let (out, change) = raced.unwrap_or_else(|| unreachable!("raced is set on this path"));
        self.report_change(pkt, change, on_event);
        Ok(out)
    }

    fn report_change(
        &self,
        pkt: &Packet,
        change: Option<(ConnState, ConnState)>,
        on_event: &mut impl FnMut(ConnEvent),
    ) {
        if let Some((from, to)) = change {
            on_event(ConnEvent::StateChanged {
                key: pkt.key(),
                from,
                to,
                timeout: self.timeouts().get(to),
            });
        }
    }

    /// A new connection's entry, with the first packet's transition
    /// already applied.
    fn new_entry(&self, key: FlowKey, p: &Pinned, flags: TcpFlags, now: Millis) -> Entry {
        let nat = p.dest.method() == ForwardMethod::Masquerade;
        let mut kind = if nat { K_NAT } else { 0 };
        if p.link.slot != NO_LINK && p.all_ports {
            kind |= K_TPL_ALLPORTS;
        }
        let state = if key.proto == Protocol::Udp.number() {
            UDP_CODE | F_INACTIVE
        } else {
            let no_output = if nat { 0 } else { F_NOOUTPUT };
            let dir = if nat {
                Direction::Input
            } else {
                Direction::InputOnly
            };
            let next = next_tcp_state(dir, flags, TcpState::None);
            let inactive = if next == TcpState::None || !next.is_active() {
                F_INACTIVE
            } else {
                0
            };
            next as u8 | inactive | no_output
        };
        let timeout = self.timeouts().ms_of(state & STATE_MASK);
        Entry {
            dest: p.dest.clone(),
            expires: AtomicU64::new(now.0.saturating_add(timeout)),
            key,
            aux: AtomicU32::new(p.link.slot),
            link_shard: p.link.shard,
            link_prefix: p.prefix,
            state: AtomicU8::new(state),
            kind,
        }
    }

    /// `ip_vs_sched_persist`: find or create the client's template and count
    /// the new connection on it.
    fn pin(
        &self,
        svc: &Service,
        p: &Persistence,
        pkt: &Packet,
        now: Millis,
        entropy: u64,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Result<Pinned, Miss> {
        let tk =
            TemplateKey::for_client(pkt.protocol, pkt.client.ip(), p.netmask_prefix, svc.key.vip);
        let fk = FlowKey::from_template(&tk);
        let (shard, fh) = self.locate(&fk);
        let expires = (now + p.timeout).0;
        let all_ports = tk.vport == 0;
        let pinned = |t: &Entry, slot: u32| {
            t.aux.fetch_add(1, Relaxed);
            t.expires.store(expires, Relaxed);
            Pinned {
                dest: t.dest.clone(),
                link: Link {
                    shard: shard as u16,
                    slot,
                },
                prefix: p.netmask_prefix,
                all_ports,
            }
        };
        {
            let g = self.read(shard);
            if let Some(slot) = g.find_fwd(fh, &fk, true)
                && let Some(t) = g.entry(slot)
                && t.is_live(now)
                && t.dest.is_available()
            {
                return Ok(pinned(t, slot));
            }
        }
        let mut g = self.write(shard);
        let mut expired = None;
        if let Some(slot) = g.find_fwd(fh, &fk, true) {
            let (live, available) = match g.entry(slot) {
                Some(t) => (t.is_live(now), t.dest.is_available()),
                None => (false, false),
            };
            match (live, available) {
                (true, true) => {
                    let t = g.entry(slot).unwrap_or_else(|| unreachable!("just found"));
                    return Ok(pinned(t, slot));
                }
                // ip_vs_check_template: the real server left the service.
                (true, false) => g.retire(self.hasher(), slot),
                (false, _) => {
                    if let Some(old) = g.remove(self.hasher(), slot) {
                        self.forget(&old);
                        expired = Some(old.to_record(now));
                    }
                }
            }
        }
        let result = (|| {
            let dest = svc
                .scheduler
                .schedule(&svc.dests, &sched_request(pkt, now, entropy))
                .ok_or(Miss::NoDestAvailable)?;
            self.reserve()?;
            let t = Entry {
                dest: dest.clone(),
                expires: AtomicU64::new(expires),
                key: fk,
                aux: AtomicU32::new(1),
                link_shard: 0,
                link_prefix: 0,
                state: AtomicU8::new(template_state(pkt.protocol).code()),
                kind: K_TEMPLATE,
            };
            let record = t.to_record(now);
            dest.bind(ConnClass::Template);
            let slot = g.insert(self.hasher(), t);
            self.template_added();
            Ok((
                Pinned {
                    dest,
                    link: Link {
                        shard: shard as u16,
                        slot,
                    },
                    prefix: p.netmask_prefix,
                    all_ports,
                },
                record,
            ))
        })();
        drop(g);
        if let Some(old) = expired {
            on_event(ConnEvent::Expired(old));
        }
        let (pinned, record) = result?;
        on_event(ConnEvent::Created(record));
        Ok(pinned)
    }
}

fn sched_request(pkt: &Packet, now: Millis, entropy: u64) -> SchedRequest {
    SchedRequest {
        protocol: pkt.protocol,
        client: pkt.client,
        dest: pkt.vip,
        now,
        entropy,
    }
}

fn outcome(e: &Entry, created: bool) -> InOutcome {
    InOutcome {
        real_server: e.real_server(),
        method: e.dest.method(),
        state: e.conn_state(),
        created,
    }
}
