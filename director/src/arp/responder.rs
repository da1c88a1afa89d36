//! The ARP responder of one data interface: answers "who-has VIP" while
//! this director is active, learns neighbours from the ARP it sees, notices
//! other stations claiming our addresses, announces the VIPs with
//! gratuitous ARP on becoming active, and sends the neighbour cache's
//! requests. Sans-IO: `handle(now, frame)`, `poll_timeout()`,
//! `poll_transmit(now)`.
//!
//! Decisions, and why:
//!
//! - **The director's own address is not answered here.** The kernel owns
//!   it (it is configured on the interface, the VIPs are not) and answers
//!   ARP for it itself; a second answer from us would be a duplicate at
//!   best and, if our MAC or timing ever differed, a flapping entry in the
//!   neighbours' caches. Such requests are still learned from.
//! - **VIPs are answered only while active**, on both broadcast and
//!   unicast requests: a router re-verifying its entry with a unicast
//!   request after a failover must not get an answer from the old master.
//! - **RFC 5227 probes (sender 0.0.0.0) for an active VIP are answered**,
//!   as Linux answers probes for its own addresses: the prober is about to
//!   take an address we are using and the answer is what stops it. Nothing
//!   is learned from a probe (it has no sender address).
//! - **Anyone else claiming a VIP as its sender address while we are
//!   active is a [`Conflict`]**: the peer's gratuitous ARP (split brain),
//!   or a real server whose ARP is not suppressed (arp_announce=2 missing)
//!   and which is poisoning the router's cache. While standby, the same
//!   frame is the active peer doing its job. A gratuitous request is not
//!   answered: a unicast reply to the claimant would fix nothing; what to
//!   do (step down, re-announce with [`ArpResponder::announce`]) is the
//!   VRRP layer's call.
//! - **Learning follows RFC 826's merge**, with Linux's caution: every
//!   frame with a sender address updates an existing entry, but only a
//!   request aimed at one of our (currently owned) addresses creates one.
//!   Unsolicited replies and gratuitous ARP never create entries (Linux
//!   `arp_accept=0`), so a flood of them cannot fill the cache.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::error::{ArpCounters, ArpError, ArpStat};
use super::garp::{GarpConfig, GarpSchedule, garp_burst};
use super::neighbour::{LearnOutcome, NeighbourCache, NeighbourConfig, NeighbourView, valid_ip};
use super::wire::{ArpFrame, ArpOp, ArpRepr};
use crate::forward::MacAddr;
use crate::time::Millis;

/// How one interface answers and asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpConfig {
    /// The interface's MAC: source of our requests and, unless `vip_mac`
    /// is set, of our replies and announcements.
    pub mac: MacAddr,
    /// The director's own address on this interface (kernel-owned): the
    /// sender address of our requests. Never answered for here.
    pub own_ip: Ipv4Addr,
    /// The addresses answered for while active: the VIPs on this
    /// interface and, for NAT, the inner gateway VIP.
    pub vips: Vec<Ipv4Addr>,
    /// A virtual MAC (VRRP's 00:00:5e:00:01:VRID) to answer and announce
    /// the VIPs with, so that a failover needs no cache update, only a
    /// switch port move. `None`: use `mac`. Frames from this MAC count
    /// as our own, so with a shared virtual MAC a split brain cannot be
    /// seen in ARP (only in VRRP).
    pub vip_mac: Option<MacAddr>,
    /// The gratuitous ARP schedule on becoming active.
    pub garp: GarpConfig,
    /// The neighbour cache's timers.
    pub neighbour: NeighbourConfig,
}

impl ArpConfig {
    /// Defaults (keepalived's GARP schedule, Linux's neighbour timers) for
    /// an interface with this MAC, own address and VIPs.
    pub fn new(mac: MacAddr, own_ip: Ipv4Addr, vips: Vec<Ipv4Addr>) -> ArpConfig {
        ArpConfig {
            mac,
            own_ip,
            vips,
            vip_mac: None,
            garp: GarpConfig::default(),
            neighbour: NeighbourConfig::default(),
        }
    }
}

/// What [`ArpResponder::handle`] decided about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// Send this frame: the answer to a request for one of our VIPs.
    Reply(ArpFrame),
    /// Another station claims one of our addresses. Nothing to send; tell
    /// the VRRP layer and the operator.
    Conflict(Conflict),
    /// Nothing to send, for this reason (any learning is already done).
    Silent(Silent),
    /// Not an Ethernet/IPv4 ARP frame, or a malformed one.
    Malformed(ArpError),
}

impl ArpOutcome {
    /// The frame to transmit, if any.
    pub fn frame(&self) -> Option<&ArpFrame> {
        match self {
            ArpOutcome::Reply(f) => Some(f),
            _ => None,
        }
    }
}

/// Another station using one of our addresses as its sender address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conflict {
    /// The address claimed.
    pub ip: Ipv4Addr,
    /// The claimant's hardware address (ARP sender).
    pub mac: MacAddr,
    /// Whose address it is.
    pub kind: ConflictKind,
    /// The claim was a gratuitous ARP (an announcement), not a request or
    /// reply that merely used the address as its source.
    pub gratuitous: bool,
}

/// Which of our addresses a [`Conflict`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// A VIP while we are active: split brain, or a real server leaking
    /// ARP for the VIP.
    Vip,
    /// The director's own address: a duplicate address on the segment.
    OwnAddress,
}

/// Why a well-formed frame needed no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Silent {
    /// A request for one of our VIPs while standby.
    Standby,
    /// A request for the director's own address: the kernel answers.
    OwnAddress,
    /// A request about some other host's address.
    NotForUs,
    /// An ARP reply (to our request, or unsolicited).
    ReplyReceived,
    /// A neighbour's gratuitous ARP for its own address.
    Announcement,
    /// Another station announcing one of our VIPs while we are standby:
    /// the active peer.
    PeerClaim,
    /// A frame with our MAC as source: our own, looped back.
    OwnFrame,
    /// Unicast to another station's MAC.
    OtherHost,
    /// Multicast, broadcast or loopback sender or target address.
    BadAddress,
}

impl Silent {
    /// The counter it is counted under.
    pub fn stat(self) -> ArpStat {
        match self {
            Silent::Standby => ArpStat::Standby,
            Silent::OwnAddress => ArpStat::OwnAddress,
            Silent::NotForUs => ArpStat::NotForUs,
            Silent::ReplyReceived => ArpStat::ReplyReceived,
            Silent::Announcement => ArpStat::Announcement,
            Silent::PeerClaim => ArpStat::PeerClaim,
            Silent::OwnFrame => ArpStat::OwnFrame,
            Silent::OtherHost => ArpStat::OtherHost,
            Silent::BadAddress => ArpStat::BadAddress,
        }
    }
}

/// The ARP side of one interface: responder, announcer and neighbour
/// cache. Owned by one control thread; starts standby.
#[derive(Debug)]
pub struct ArpResponder {
    cfg: ArpConfig,
    /// `cfg.vips`, sorted and deduplicated for binary search.
    vips: Vec<Ipv4Addr>,
    active: bool,
    garp: Option<GarpSchedule>,
    cache: NeighbourCache,
    counters: Arc<ArpCounters>,
}

impl ArpResponder {
    /// A standby responder for `cfg`.
    pub fn new(cfg: ArpConfig) -> ArpResponder {
        let cache = NeighbourCache::new(cfg.neighbour);
        let mut r = ArpResponder {
            vips: Vec::new(),
            cfg,
            active: false,
            garp: None,
            cache,
            counters: Arc::new(ArpCounters::new()),
        };
        r.vips = sorted(&r.cfg.vips);
        r
    }

    /// The configuration (VIPs as last set).
    pub fn config(&self) -> &ArpConfig {
        &self.cfg
    }

    /// Whether VIPs are being answered.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Becomes active (starts answering for the VIPs and starts the
    /// gratuitous ARP schedule at `now`) or standby (stops both at once).
    /// Setting the current role again changes nothing.
    pub fn set_active(&mut self, now: Millis, active: bool) {
        if active == self.active {
            return;
        }
        self.active = active;
        self.garp = active.then(|| GarpSchedule::from_config(now, &self.cfg.garp));
    }

    /// Restarts the gratuitous ARP schedule at `now`, if active: after a
    /// [`Conflict`], or when the VIP set changed. No-op when standby.
    pub fn announce(&mut self, now: Millis) {
        if self.active {
            self.garp = Some(GarpSchedule::from_config(now, &self.cfg.garp));
        }
    }

    /// Replaces the addresses answered for. If active and an address was
    /// added, announces the set again (keepalived does the same on reload).
    pub fn set_vips(&mut self, now: Millis, vips: Vec<Ipv4Addr>) {
        let new = sorted(&vips);
        let added = new.iter().any(|v| self.vips.binary_search(v).is_err());
        self.vips = new;
        self.cfg.vips = vips;
        if added {
            self.announce(now);
        }
    }

    /// Whether `ip` is one of the addresses answered for while active.
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.binary_search(&ip).is_ok()
    }

    /// Decides what to do with one received frame, learns from it, and
    /// counts it (exactly once, plus any cache event).
    pub fn handle(&mut self, now: Millis, frame: &[u8]) -> ArpOutcome {
        let outcome = match ArpRepr::parse(frame) {
            Ok(r) => self.decide(now, &r),
            Err(e) => ArpOutcome::Malformed(e),
        };
        match outcome {
            ArpOutcome::Reply(_) => self.counters.stat(ArpStat::Replied),
            ArpOutcome::Conflict(_) => self.counters.stat(ArpStat::Conflict),
            ArpOutcome::Silent(s) => self.counters.stat(s.stat()),
            ArpOutcome::Malformed(e) => self.counters.error(e),
        }
        outcome
    }

    fn decide(&mut self, now: Millis, r: &ArpRepr) -> ArpOutcome {
        if self.is_our_mac(r.eth_src) || self.is_our_mac(r.sender_mac) {
            return ArpOutcome::Silent(Silent::OwnFrame);
        }
        // Only promiscuous mode shows us these; a NIC would have dropped
        // them, and learning from them would be eavesdropping.
        if !r.eth_dst.is_multicast() && !self.is_our_mac(r.eth_dst) {
            return ArpOutcome::Silent(Silent::OtherHost);
        }
        let sender_ok = valid_ip(r.sender_ip) || r.is_probe();
        let t = r.target_ip;
        if !sender_ok || t.is_multicast() || t.is_broadcast() || t.is_loopback() {
            return ArpOutcome::Silent(Silent::BadAddress);
        }
        let conflict = |kind| {
            ArpOutcome::Conflict(Conflict {
                ip: r.sender_ip,
                mac: r.sender_mac,
                kind,
                gratuitous: r.is_gratuitous(),
            })
        };
        // Never learn a mapping for an address of ours.
        if self.is_vip(r.sender_ip) {
            return if self.active {
                conflict(ConflictKind::Vip)
            } else {
                ArpOutcome::Silent(Silent::PeerClaim)
            };
        }
        if r.sender_ip == self.cfg.own_ip {
            return conflict(ConflictKind::OwnAddress);
        }

        let for_vip = self.is_vip(t);
        if !r.is_probe() {
            // RFC 826: "Am I the target protocol address?" A VIP is ours
            // only while active.
            let targets_us =
                r.op == ArpOp::Request && (t == self.cfg.own_ip || (for_vip && self.active));
            self.learn_from(now, r.sender_ip, r.sender_mac, targets_us);
        }

        match r.op {
            ArpOp::Request if for_vip && self.active => {
                ArpOutcome::Reply(r.reply_to(self.announce_mac()).emit())
            }
            ArpOp::Request if for_vip => ArpOutcome::Silent(Silent::Standby),
            ArpOp::Request if t == self.cfg.own_ip => ArpOutcome::Silent(Silent::OwnAddress),
            _ if r.is_gratuitous() => ArpOutcome::Silent(Silent::Announcement),
            ArpOp::Request => ArpOutcome::Silent(Silent::NotForUs),
            ArpOp::Reply => ArpOutcome::Silent(Silent::ReplyReceived),
        }
    }

    fn learn_from(&mut self, now: Millis, ip: Ipv4Addr, mac: MacAddr, create: bool) {
        let outcome = if create {
            Some(self.cache.learn(ip, mac, now))
        } else {
            self.cache.merge(ip, mac, now)
        };
        let stat = match outcome {
            None | Some(LearnOutcome::Invalid) => return,
            Some(LearnOutcome::New) => ArpStat::LearnedNew,
            Some(LearnOutcome::Resolved | LearnOutcome::Confirmed) => ArpStat::LearnedUpdate,
            Some(LearnOutcome::Changed { .. }) => ArpStat::MacChanged,
            Some(LearnOutcome::CacheFull) => ArpStat::CacheFull,
        };
        self.counters.stat(stat);
    }

    /// When [`ArpResponder::poll_transmit`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let garp = self.garp.as_ref().and_then(GarpSchedule::poll_timeout);
        match (garp, self.cache.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The frames due at `now`: gratuitous ARP bursts (only while active),
    /// then the neighbour cache's requests.
    pub fn poll_transmit(&mut self, now: Millis) -> Vec<ArpFrame> {
        let mut out = Vec::new();
        if let Some(s) = self.garp.as_mut() {
            let bursts = s.poll(now);
            if s.is_stopped() {
                self.garp = None;
            }
            for burst in bursts {
                out.extend(self.garp_frames(burst.repeat));
            }
        }
        for s in self.cache.poll_requests(now) {
            out.push(ArpRepr::request(self.cfg.mac, self.cfg.own_ip, s.ip, s.unicast).emit());
        }
        out
    }

    /// `repeat` gratuitous ARPs for every VIP, in the configured form,
    /// whatever the schedule says (for a driver with its own timing).
    pub fn garp_frames(&self, repeat: u32) -> Vec<ArpFrame> {
        garp_burst(self.announce_mac(), &self.vips, repeat, self.cfg.garp.form)
    }

    /// The MAC the VIPs are answered and announced with.
    pub fn announce_mac(&self) -> MacAddr {
        self.cfg.vip_mac.unwrap_or(self.cfg.mac)
    }

    /// Asks the neighbour cache to resolve `ip` and keep it resolved (a
    /// real server or gateway); see [`NeighbourCache::want`].
    pub fn want(&mut self, now: Millis, ip: Ipv4Addr) -> bool {
        self.cache.want(ip, now)
    }

    /// The neighbour cache.
    pub fn neighbours(&self) -> &NeighbourCache {
        &self.cache
    }

    /// The neighbour cache, to seed, want or remove entries.
    pub fn neighbours_mut(&mut self) -> &mut NeighbourCache {
        &mut self.cache
    }

    /// The workers' read-only neighbour view of this interface.
    pub fn view(&self) -> NeighbourView {
        self.cache.view()
    }

    /// The counters, shareable with a metrics thread.
    pub fn counters(&self) -> &Arc<ArpCounters> {
        &self.counters
    }

    fn is_our_mac(&self, mac: MacAddr) -> bool {
        mac == self.cfg.mac || self.cfg.vip_mac == Some(mac)
    }
}

fn sorted(vips: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut v = vips.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}
