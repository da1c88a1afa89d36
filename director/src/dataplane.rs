//! The packet path of one director, from a frame in to a verdict out.
//!
//! ```text
//!  frame ─ ethertype/proto? ── not IPv4 TCP/UDP ──────────────→ NotOurs (ARP, VRRP, ...)
//!     │
//!  classify ── malformed ─────────────────────────────────────→ Drop(reason)
//!     │
//!  dst is a VIP:port? ── yes → conn table (hit, or schedule a new flow)
//!     │                          → DR: MACs · TUN: outer IPv4 · NAT: DNAT
//!     │
//!     └─ no → NAT reply from RIP:rport? ── yes → SNAT back to VIP:vport
//!                                       └─ no ─────────────────→ NotOurs
//! ```
//!
//! [`Dataplane`] is shared by every worker: the service table is an
//! immutable snapshot read through `ArcSwap` (no lock), the connection
//! table is sharded. Each worker thread owns a [`Worker`] with its own
//! small state (IP ID counter for tunnels, random bits for `twos`), so
//! the path from frame to verdict takes no global lock. Nothing here does
//! I/O or reads a clock: the driver passes `now` and sends what comes back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::conn::{self, ConnEvent, ConnTable, Miss, ReplyKey, TableConfig};
use crate::dest::{STAT_SLOTS, StatSlot};
use crate::forward::{
    self, DropCounters, DropReason, L4Csum, MacAddr, MacPair, OuterTtl, TunParams, Verdict,
};
use crate::service_table::{ServiceSpec, ServiceTable, SpecError};
use crate::time::Millis;
use crate::types::{ForwardMethod, Protocol};

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_HEADER: usize = 14;

/// Index of a data interface in [`DataplaneConfig::ifaces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IfaceId(pub u8);

/// Where to send a frame for some address: out of which interface, to
/// which MAC (the host itself when on-link, else its router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface.
    pub iface: IfaceId,
    /// Destination MAC.
    pub mac: MacAddr,
}

/// Where the layer-2 next hop for an address is: routing plus the
/// neighbour cache.
///
/// The daemon answers from its own ARP cache (real servers on the same
/// link, routers for TUN real servers and off-link clients); tests and
/// benches use [`StaticNeighbours`]. `None` means "not resolved yet": the
/// packet is dropped and counted as [`DropReason::NoNeighbour`], as the
/// kernel drops what overflows its ARP queue.
pub trait Neighbours {
    /// The next hop for frames to `ip`.
    fn next_hop(&self, ip: IpAddr) -> Option<NextHop>;
}

/// A fixed neighbour table with an optional default route.
#[derive(Debug, Clone, Default)]
pub struct StaticNeighbours {
    /// Directly reachable hosts.
    pub hosts: FxHashMap<IpAddr, NextHop>,
    /// Where everything else goes.
    pub gateway: Option<NextHop>,
}

impl StaticNeighbours {
    /// Add an on-link host on interface 0.
    pub fn host(&mut self, ip: IpAddr, mac: MacAddr) -> &mut Self {
        self.hosts.insert(
            ip,
            NextHop {
                iface: IfaceId(0),
                mac,
            },
        );
        self
    }
}

impl Neighbours for StaticNeighbours {
    fn next_hop(&self, ip: IpAddr) -> Option<NextHop> {
        self.hosts.get(&ip).copied().or(self.gateway)
    }
}

/// One data interface of the director.
#[derive(Debug, Clone, Copy)]
pub struct Interface {
    /// Its MAC: the source of every frame we send out of it.
    pub mac: MacAddr,
    /// The director's own address on it: the outer source of IPIP tunnels
    /// leaving through it.
    pub ip: Ipv4Addr,
    /// Its MTU: tunnelled packets must fit it.
    pub mtu: u16,
}

/// How the director's data interfaces are set up.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The data interfaces, indexed by [`IfaceId`]: one for DR and TUN,
    /// an outside and an inside one for classic two-NIC NAT.
    pub ifaces: Vec<Interface>,
    /// TTL of the outer tunnel header.
    pub tun_ttl: OuterTtl,
    /// Connection table sizing.
    pub table: TableConfig,
    /// The interfaces' names, by [`IfaceId`], for status pages (empty
    /// where the caller has none, e.g. in benches).
    pub names: Vec<String>,
}

impl DataplaneConfig {
    /// Defaults for one interface with this MAC and address: MTU 1500,
    /// outer TTL 64, a table of 2^20 entries.
    pub fn new(mac: MacAddr, ip: Ipv4Addr) -> DataplaneConfig {
        DataplaneConfig {
            ifaces: vec![Interface { mac, ip, mtu: 1500 }],
            tun_ttl: OuterTtl::default(),
            table: TableConfig::default(),
            names: Vec::new(),
        }
    }
}

/// What the driver does with a frame after [`Worker::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A virtual-service packet or a NAT reply: send out of `egress`, reply
    /// or drop as the verdict says (drops are already counted).
    Handled {
        /// What to send, or why nothing.
        verdict: Verdict,
        /// The interface to send it out of.
        egress: IfaceId,
    },
    /// Not for the dataplane (ARP, VRRP, traffic to the director itself):
    /// hand it to the control path, or ignore it.
    NotOurs,
}

/// State shared by every worker of one director.
#[derive(Debug)]
pub struct Dataplane {
    services: ArcSwap<ServiceTable>,
    /// Version of `services`, bumped after each store: workers keep their
    /// own `Arc` of the table and reload it only when this moves, so the
    /// packet path pays one relaxed load instead of an `ArcSwap` guard.
    services_version: AtomicU64,
    /// Counter slots not held by a worker.
    free_slots: Mutex<Vec<StatSlot>>,
    /// Serialises configuration changes so that two concurrent edits cannot
    /// both rebuild from the same old table and lose one of them.
    config_lock: Mutex<()>,
    conns: ConnTable,
    drops: DropCounters,
    /// Active (master: forwards) or standby (holds state, forwards
    /// nothing). Starts standby: VRRP decides.
    active: AtomicBool,
    /// Standby that still forwards packets of flows it has entries for
    /// (never creating one) while the new master's gratuitous ARP reaches
    /// the clients: a packet sent to our MAC in that window is not lost.
    draining: AtomicBool,
    /// Frames received and sent by each worker, by counter slot.
    io: Box<[IoSlot; STAT_SLOTS]>,
    cfg: DataplaneConfig,
}

/// One worker's frame counters, on a cache line of its own so that
/// workers never write the same line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct IoSlot {
    rx: AtomicU64,
    tx: AtomicU64,
    ring_drops: AtomicU64,
    send_failures: AtomicU64,
}

/// The workers' frame counters, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoTotals {
    /// Frames taken from the receive rings.
    pub rx: u64,
    /// Frames the kernel accepted for sending.
    pub tx: u64,
    /// Frames lost at a worker's ring: dropped by the kernel because it
    /// was full (`PACKET_STATISTICS`: the worker fell behind), or cut
    /// because one was larger than its slot.
    pub ring_drops: u64,
    /// Frames a send failed for (no buffer space, too big, link down).
    pub send_failures: u64,
}

impl IoTotals {
    /// The frames lost below the dataplane, under the reason names that
    /// `dirctl status` and the metrics report them by, after the
    /// dataplane's own drop reasons.
    pub fn losses(&self) -> [(&'static str, u64); 2] {
        [
            ("rx_ring_overflow", self.ring_drops),
            ("tx_failed", self.send_failures),
        ]
    }
}

impl Dataplane {
    /// A dataplane with no services.
    pub fn new(cfg: DataplaneConfig) -> Dataplane {
        Dataplane {
            services: ArcSwap::from_pointee(ServiceTable::empty()),
            services_version: AtomicU64::new(0),
            free_slots: Mutex::new((0..STAT_SLOTS).rev().filter_map(StatSlot::new).collect()),
            config_lock: Mutex::new(()),
            conns: ConnTable::new(cfg.table),
            drops: DropCounters::new(),
            active: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            io: Box::new(std::array::from_fn(|_| IoSlot::default())),
            cfg,
        }
    }

    /// Worker threads running now (each holds a counter slot).
    pub fn workers(&self) -> usize {
        STAT_SLOTS
            - self
                .free_slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }

    /// Frames the workers have received, sent and lost since start, in all.
    pub fn io_totals(&self) -> IoTotals {
        self.io.iter().fold(IoTotals::default(), |t, s| IoTotals {
            rx: t.rx + s.rx.load(Ordering::Relaxed),
            tx: t.tx + s.tx.load(Ordering::Relaxed),
            ring_drops: t.ring_drops + s.ring_drops.load(Ordering::Relaxed),
            send_failures: t.send_failures + s.send_failures.load(Ordering::Relaxed),
        })
    }

    /// Replace the service configuration with `specs`, all or nothing.
    /// Running counters, scheduler state and connections are kept for
    /// services and real servers that still exist. Returns the new version.
    pub fn apply(&self, specs: &[ServiceSpec]) -> Result<u64, SpecError> {
        let _guard = self
            .config_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = self.services.load().rebuild(specs)?;
        let version = next.version();
        self.services.store(Arc::new(next));
        self.services_version.store(version, Ordering::Release);
        Ok(version)
    }

    /// The current service table.
    pub fn services(&self) -> Arc<ServiceTable> {
        self.services.load_full()
    }

    /// The connection table.
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// Frames dropped, by reason.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Make this node active (forward) or standby (drop VIP traffic,
    /// counted as [`DropReason::Standby`], without touching the table).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    /// Whether this node forwards.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// While standby, keep forwarding the flows in the table (no new
    /// ones): for the moment after this node lost mastership, until the
    /// clients have the new master's address. Ignored while active.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    /// Whether a standby node still forwards its existing flows.
    pub fn is_draining(&self) -> bool {
        !self.is_active() && self.draining.load(Ordering::Acquire)
    }

    /// The interface configuration.
    pub fn config(&self) -> &DataplaneConfig {
        &self.cfg
    }

    /// The next hop for `ip` and the interface it leaves by, if both are
    /// known.
    fn resolve(&self, neighbours: &impl Neighbours, ip: IpAddr) -> Option<(NextHop, &Interface)> {
        let hop = neighbours.next_hop(ip)?;
        let iface = self.cfg.ifaces.get(usize::from(hop.iface.0))?;
        Some((hop, iface))
    }
}

/// One worker thread's view of the dataplane.
#[derive(Debug)]
pub struct Worker {
    dp: Arc<Dataplane>,
    /// This worker's copy of the service table and its version.
    services: Arc<ServiceTable>,
    services_version: u64,
    /// This worker's traffic-counter slot, returned on drop.
    slot: StatSlot,
    local: Local,
}

/// More workers than [`STAT_SLOTS`] at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at most {STAT_SLOTS} dataplane workers can run at once")]
pub struct TooManyWorkers;

impl Drop for Worker {
    fn drop(&mut self) {
        self.dp
            .free_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.slot);
    }
}

/// A worker's private counters.
#[derive(Debug)]
struct Local {
    /// IPv4 ID of the next tunnel header. Per worker, seeded apart, so
    /// workers never contend on it.
    ip_id: u16,
    /// xorshift64* state for the random bits schedulers may use.
    rng: u64,
}

impl Local {
    fn entropy(&mut self) -> u64 {
        // xorshift64*: plenty for spreading `twos` picks; never a secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }
}

impl Worker {
    /// A worker, with a traffic-counter slot of its own; give each one a
    /// different `seed`.
    pub fn new(dp: Arc<Dataplane>, seed: u64) -> Result<Worker, TooManyWorkers> {
        let slot = dp
            .free_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or(TooManyWorkers)?;
        let services_version = dp.services_version.load(Ordering::Acquire);
        Ok(Worker {
            slot,
            services: dp.services.load_full(),
            services_version,
            dp,
            local: Local {
                ip_id: (seed as u16).wrapping_mul(0x9e37),
                rng: seed | 1,
            },
        })
    }

    /// Count frames this worker received and sent (once per batch, not per
    /// frame: two relaxed adds on a line no other worker writes).
    pub fn count_io(&self, received: u64, sent: u64) {
        let s = &self.dp.io[self.slot.index()];
        s.rx.fetch_add(received, Ordering::Relaxed);
        s.tx.fetch_add(sent, Ordering::Relaxed);
    }

    /// Count frames lost on this worker's I/O: dropped by the kernel at
    /// its full ring, and sends that failed.
    pub fn count_io_losses(&self, ring_drops: u64, send_failures: u64) {
        let s = &self.dp.io[self.slot.index()];
        s.ring_drops.fetch_add(ring_drops, Ordering::Relaxed);
        s.send_failures.fetch_add(send_failures, Ordering::Relaxed);
    }

    /// The shared dataplane.
    pub fn dataplane(&self) -> &Arc<Dataplane> {
        &self.dp
    }

    /// Handle one frame received on `ingress`, rewriting it in place. `csum` says
    /// whether its L4 checksum can be verified (the I/O layer knows when a
    /// veth handed over a packet with a partial checksum). Connection-table
    /// changes go to `on_event` (for sync).
    pub fn process(
        &mut self,
        now: Millis,
        ingress: IfaceId,
        frame: &mut [u8],
        csum: L4Csum,
        neighbours: &impl Neighbours,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Action {
        if !is_ipv4_tcp_or_udp(frame) {
            return Action::NotOurs;
        }
        // A frame we sent ourselves (seen again through a tap, a hairpin or
        // a switch loop) must never be forwarded a second time.
        if let Some(iface) = self.dp.cfg.ifaces.get(usize::from(ingress.0))
            && frame[6..12] == iface.mac.0
        {
            return Action::Handled {
                verdict: Verdict::Drop(DropReason::OwnFrame).counted(&self.dp.drops),
                egress: ingress,
            };
        }
        // Two loads per packet at most: `active`, then `draining` only
        // when not active.
        let active = self.dp.is_active();
        let draining = !active && self.dp.draining.load(Ordering::Acquire);
        let standby = !active && !draining;
        let version = self.dp.services_version.load(Ordering::Acquire);
        if version != self.services_version {
            self.services = self.dp.services.load_full();
            self.services_version = version;
        }
        let (verdict, egress) = match forward::classify(frame, csum) {
            Err(reason) => (Verdict::Drop(reason), ingress),
            Ok(pkt) => {
                let dst = SocketAddr::new(pkt.dst, pkt.dst_port);
                // A port-0 service takes every port of its VIP.
                let services = &*self.services;
                let svc = services.for_packet(pkt.protocol, dst);
                let ctx = Ctx {
                    dp: &self.dp,
                    slot: self.slot,
                    now,
                    neighbours,
                };
                match svc {
                    Some(_) if standby => (Verdict::Drop(DropReason::Standby), ingress),
                    Some(svc) => ctx.inbound(
                        &mut self.local,
                        ingress,
                        frame,
                        &pkt,
                        svc,
                        draining,
                        on_event,
                    ),
                    None => match ctx.nat_reply(ingress, frame, &pkt, services, on_event) {
                        Some(_) if standby => (Verdict::Drop(DropReason::Standby), ingress),
                        Some(v) => v,
                        None => return Action::NotOurs,
                    },
                }
            }
        };
        Action::Handled {
            verdict: verdict.counted(&self.dp.drops),
            egress,
        }
    }
}

/// What the per-packet helpers share: the dataplane, the time and the
/// neighbour cache.
struct Ctx<'a, N> {
    dp: &'a Dataplane,
    slot: StatSlot,
    now: Millis,
    neighbours: &'a N,
}

impl<N> Clone for Ctx<'_, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<N> Copy for Ctx<'_, N> {}

impl<N: Neighbours> Ctx<'_, N> {
    /// A packet from a client to a virtual service; `existing_only` while
    /// draining (a miss is a standby drop).
    #[allow(clippy::too_many_arguments)]
    fn inbound(
        &self,
        local: &mut Local,
        ingress: IfaceId,
        frame: &mut [u8],
        pkt: &forward::Packet,
        svc: &crate::Service,
        existing_only: bool,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> (Verdict, IfaceId) {
        let Ctx {
            dp,
            slot,
            now,
            neighbours,
        } = *self;
        let len = usize::from(pkt.ip_len);
        let cpkt = conn::Packet {
            protocol: pkt.protocol,
            client: SocketAddr::new(pkt.src, pkt.src_port),
            vip: SocketAddr::new(pkt.dst, pkt.dst_port),
            tcp_flags: pkt.tcp_flags,
            len: 0,
            stat_slot: slot,
        }
        .with_len(len);
        let out = if existing_only {
            match dp.conns.process_existing(&cpkt, now, on_event) {
                Some(out) => out,
                None => return (Verdict::Drop(DropReason::Standby), ingress),
            }
        } else {
            let entropy = local.entropy();
            match dp.conns.process_in(svc, &cpkt, now, entropy, on_event) {
                Ok(out) => out,
                Err(miss) => return (Verdict::Drop(miss_reason(miss)), ingress),
            }
        };
        svc.stats.count_in(slot, len);
        let rs = out.real_server;
        let Some((hop, iface)) = dp.resolve(neighbours, rs.ip()) else {
            return (Verdict::Drop(DropReason::NoNeighbour), ingress);
        };
        let macs = MacPair {
            src: iface.mac,
            dst: hop.mac,
        };
        let verdict = match out.method {
            ForwardMethod::DirectRouting => forward::dr::rewrite(frame, pkt, macs),
            ForwardMethod::Tunnel => {
                let params = TunParams {
                    local: iface.ip,
                    macs,
                    mtu: iface.mtu,
                    ttl: dp.cfg.tun_ttl,
                };
                forward::tun::encapsulate(frame, pkt, rs.ip(), &params, local.next_ip_id())
            }
            ForwardMethod::Masquerade => forward::nat::rewrite_in(frame, pkt, rs, macs),
        };
        (verdict, hop.iface)
    }

    /// A packet that is not to a VIP: a NAT reply from a real server, or
    /// `None` when it is nobody's business of ours.
    fn nat_reply(
        &self,
        ingress: IfaceId,
        frame: &mut [u8],
        pkt: &forward::Packet,
        services: &ServiceTable,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Option<(Verdict, IfaceId)> {
        let Ctx {
            dp,
            slot,
            now,
            neighbours,
        } = *self;
        let key = ReplyKey {
            protocol: pkt.protocol,
            real_server: SocketAddr::new(pkt.src, pkt.src_port),
            client: SocketAddr::new(pkt.dst, pkt.dst_port),
        };
        let len = usize::from(pkt.ip_len);
        let out = dp
            .conns
            .process_reply(&key, pkt.tcp_flags, len, slot, now, on_event)
            .ok()?;
        if let Some(svc) = services.get(pkt.protocol, out.vip) {
            svc.stats.count_out(slot, len);
        }
        let Some((hop, iface)) = dp.resolve(neighbours, pkt.dst) else {
            return Some((Verdict::Drop(DropReason::NoNeighbour), ingress));
        };
        let macs = MacPair {
            src: iface.mac,
            dst: hop.mac,
        };
        Some((
            forward::nat::rewrite_out(frame, pkt, out.vip, macs),
            hop.iface,
        ))
    }
}

/// IPv4 carrying TCP or UDP: the only frames the dataplane balances. The
/// rest (ARP, VRRP, ICMP to the director) belongs to other handlers and is
/// neither forwarded nor counted as a drop here.
fn is_ipv4_tcp_or_udp(frame: &[u8]) -> bool {
    frame.len() > ETH_HEADER + 9
        && frame[12..14] == ETHERTYPE_IPV4
        && Protocol::from_number(frame[ETH_HEADER + 9]).is_some()
}

/// The drop reason a connection-table miss is counted under.
fn miss_reason(miss: Miss) -> DropReason {
    match miss {
        Miss::NoConnection => DropReason::NoConnection,
        Miss::TableFull => DropReason::ConnTableFull,
        // Port-zero services without persistence are refused by the
        // configuration, and the service lookup matched the packet, so
        // these two only arise if no real server can take the flow.
        Miss::NoDestAvailable | Miss::NotThisService | Miss::PortZeroWithoutPersistence => {
            DropReason::NoDestAvailable
        }
    }
}
