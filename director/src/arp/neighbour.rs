//! The neighbour cache of one interface: which MAC each on-link IPv4
//! address (real server, gateway, client router) is at, kept fresh the way
//! Linux's neighbour subsystem does it, on a clock the caller passes in.
//!
//! ```text
//!   want ──► INCOMPLETE ──(reply)──► REACHABLE ──(reachable_time)──► STALE
//!              │  broadcast request       ▲                          │ used or wanted
//!              │  every retrans_time      │ (reply)                  ▼
//!              │  mcast_probes times      └──────────────────────── PROBE
//!              ▼                                   unicast request every retrans_time,
//!            FAILED ◄──────────────────────────── ucast_probes times, still usable
//!              │ wanted, or missed again: back to INCOMPLETE after a doubling back-off
//!              └ otherwise: removed
//! ```
//!
//! Unused STALE entries that nobody wants are removed after
//! `gc_stale_time`, as Linux's garbage collector does, so that a host that
//! went quiet is neither probed nor kept forever.
//! Linux waits `delay_first_probe_time` in a DELAY state for an upper
//! layer to confirm reachability; a forwarder has no upper layer, so a
//! used STALE entry goes straight to PROBE (and `delay_first_probe` is how
//! often the owner looks at the workers' use marks instead).
//!
//! One control thread owns the [`NeighbourCache`] and feeds it ARP and
//! time. Dataplane workers only read a [`NeighbourView`]: an immutable map
//! that the owner rebuilds and swaps (arc-swap) whenever a MAC appears,
//! changes or goes away. A worker's lookup sets a per-entry "used" flag
//! (one relaxed store, only when not already set, so no cache-line
//! ping-pong on the hot path); the owner collects the flags to decide
//! which stale entries are worth re-verifying.
//!
//! No I/O, no clock: [`NeighbourCache::poll_requests`] says which ARP
//! requests to send now, [`NeighbourCache::poll_timeout`] when to call
//! again.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::forward::MacAddr;
use crate::time::Millis;

/// Timers and limits. Defaults are Linux's (`/proc/sys/net/ipv4/neigh/*`)
/// where it has the knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// How long a confirmed mapping is trusted (base_reachable_time,
    /// 30 s). Linux randomises it to 0.5–1.5×; we do not, so that the
    /// virtual-clock tests are exact.
    pub reachable_time: Duration,
    /// Interval between requests for one address (retrans_time, 1 s).
    pub retrans_time: Duration,
    /// Broadcast requests before an unresolved address fails
    /// (mcast_solicit, 3).
    pub mcast_probes: u32,
    /// Unicast requests re-verifying a stale entry before it fails
    /// (ucast_solicit, 3).
    pub ucast_probes: u32,
    /// How often the owner checks whether workers used a stale entry
    /// (the role of Linux's delay_first_probe_time, 5 s).
    pub delay_first_probe: Duration,
    /// An unused stale entry that is not wanted is removed after this
    /// (gc_stale_time, 60 s).
    pub gc_stale_time: Duration,
    /// First wait before a failed, wanted address is tried again; doubles
    /// per failure up to `failed_backoff_max`, reset when it resolves.
    /// Linux has no equivalent (it retries on the next packet); without a
    /// floor, a dead real server would be asked for in a tight loop.
    pub failed_backoff: Duration,
    /// Ceiling of the back-off.
    pub failed_backoff_max: Duration,
    /// Entry bound (gc_thresh3, 1024): ARP from random senders must not
    /// grow the cache without limit.
    pub max_entries: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            reachable_time: Duration::from_secs(30),
            retrans_time: Duration::from_secs(1),
            mcast_probes: 3,
            ucast_probes: 3,
            delay_first_probe: Duration::from_secs(5),
            gc_stale_time: Duration::from_secs(60),
            failed_backoff: Duration::from_secs(5),
            failed_backoff_max: Duration::from_secs(60),
            max_entries: 1024,
        }
    }
}

/// The state of one entry (Linux's NUD states, minus DELAY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighbourState {
    /// Being resolved by broadcast requests; no MAC yet.
    Incomplete {
        /// Requests sent so far.
        probes_sent: u32,
        /// When the next request is due (or, once all are sent, when the
        /// entry fails).
        next_at: Millis,
    },
    /// Confirmed recently.
    Reachable {
        /// Where it is.
        mac: MacAddr,
        /// When the confirmation runs out.
        until: Millis,
    },
    /// Not confirmed recently, still used for sending.
    Stale {
        /// Where it was last seen.
        mac: MacAddr,
        /// When it became stale.
        since: Millis,
    },
    /// Being re-verified by unicast requests; still used for sending.
    Probe {
        /// Where it was last seen (and where the probes go).
        mac: MacAddr,
        /// Probes sent so far.
        probes_sent: u32,
        /// When the next probe is due (or the entry fails).
        next_at: Millis,
    },
    /// Did not answer; lookups miss until a retry or an ARP from it.
    Failed {
        /// When it is tried again (wanted entries) or removed.
        retry_at: Millis,
    },
}

impl NeighbourState {
    /// The MAC lookups return, if any (Reachable, Stale, Probe).
    pub fn mac(&self) -> Option<MacAddr> {
        match *self {
            NeighbourState::Reachable { mac, .. }
            | NeighbourState::Stale { mac, .. }
            | NeighbourState::Probe { mac, .. } => Some(mac),
            NeighbourState::Incomplete { .. } | NeighbourState::Failed { .. } => None,
        }
    }

    /// A stable lower-case name, as `ip neigh` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            NeighbourState::Incomplete { .. } => "incomplete",
            NeighbourState::Reachable { .. } => "reachable",
            NeighbourState::Stale { .. } => "stale",
            NeighbourState::Probe { .. } => "probe",
            NeighbourState::Failed { .. } => "failed",
        }
    }
}

/// An ARP request the cache wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Solicit {
    /// The address to resolve (the request's target protocol address).
    pub ip: Ipv4Addr,
    /// `None`: broadcast (resolving). `Some(mac)`: unicast to the MAC we
    /// believe in (re-verifying), as Linux does, so that a healthy
    /// neighbour costs the segment no broadcast.
    pub unicast: Option<MacAddr>,
}

/// What [`NeighbourCache::learn`] (and friends) did with a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnOutcome {
    /// A new entry.
    New,
    /// An entry without a MAC (incomplete, failed) now has one.
    Resolved,
    /// The known MAC, confirmed again.
    Confirmed,
    /// The address moved to a different MAC (a replaced NIC, a failover
    /// of the neighbour, or spoofing: worth a log line).
    Changed {
        /// The MAC it had before.
        old: MacAddr,
    },
    /// Not stored: the cache is full of entries worth more.
    CacheFull,
    /// Not stored: no host can have this address or MAC (unspecified,
    /// broadcast, multicast, loopback; a group or zero MAC).
    Invalid,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: NeighbourState,
    /// The control plane needs this address (a real server, a gateway):
    /// keep it resolved even when no packet is using it.
    wanted: bool,
    /// Looked up since it was last confirmed or probed.
    used: bool,
    /// The wait after the next failure.
    backoff: Duration,
}

/// One interface's neighbour cache. Owned by one control thread; see the
/// module documentation for the states and the published view.
pub struct NeighbourCache {
    cfg: NeighbourConfig,
    entries: HashMap<Ipv4Addr, Entry>,
    view: Arc<ArcSwap<Published>>,
    version: u64,
    /// A MAC appeared, changed or went away since the last publication.
    dirty: bool,
    /// When the workers' use marks were last collected.
    last_check: Millis,
}

impl NeighbourCache {
    /// An empty cache.
    pub fn new(cfg: NeighbourConfig) -> NeighbourCache {
        NeighbourCache {
            cfg,
            entries: HashMap::new(),
            view: Arc::new(ArcSwap::from_pointee(Published::default())),
            version: 0,
            dirty: false,
            last_check: Millis::ZERO,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NeighbourConfig {
        &self.cfg
    }

    /// The read-only view for dataplane workers. Clone it freely; every
    /// clone follows the owner's updates.
    pub fn view(&self) -> NeighbourView {
        NeighbourView {
            inner: Arc::clone(&self.view),
        }
    }

    /// The MAC to send to `ip`, if known (Reachable, Stale or Probe), and
    /// a note that it is in use: a stale entry in use is re-verified at
    /// once. The owner-side lookup; workers use [`NeighbourView::lookup`].
    pub fn lookup(&mut self, ip: Ipv4Addr, now: Millis) -> Option<MacAddr> {
        let e = self.entries.get_mut(&ip)?;
        e.used = true;
        if let NeighbourState::Stale { mac, .. } = e.state {
            e.state = probe(mac, now);
            e.used = false;
        }
        e.state.mac()
    }

    /// Asks for `ip` to be resolved and kept resolved: a real server or a
    /// gateway the dataplane will send to. A new address is requested at
    /// once (see [`NeighbourCache::poll_requests`]); a known one is kept
    /// fresh from now on. Idempotent and cheap, so the caller can call it
    /// on every configuration change; a failed address keeps its back-off.
    /// Returns false if the address is invalid or the cache is full of
    /// other wanted addresses.
    pub fn want(&mut self, ip: Ipv4Addr, now: Millis) -> bool {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.wanted = true;
            if let NeighbourState::Stale { mac, .. } = e.state {
                e.state = probe(mac, now);
            }
            return true;
        }
        if !valid_ip(ip) || !self.make_room(true) {
            self.publish_if_dirty();
            return false;
        }
        self.entries.insert(
            ip,
            Entry {
                state: NeighbourState::Incomplete {
                    probes_sent: 0,
                    next_at: now,
                },
                wanted: true,
                used: false,
                backoff: self.cfg.failed_backoff,
            },
        );
        self.publish_if_dirty();
        true
    }

    /// A packet needs `ip` now (a dataplane miss): resolve it, without
    /// pinning it the way [`NeighbourCache::want`] does. It then ages like
    /// a learned entry and stays fresh only while workers use it. Calling
    /// it on every miss is fine: an address being resolved is not asked for
    /// again, and a failed one waits out its back-off. Returns false if
    /// the address is invalid or there is no room.
    pub fn resolve(&mut self, ip: Ipv4Addr, now: Millis) -> bool {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.used = true;
            if let NeighbourState::Stale { mac, .. } = e.state {
                e.state = probe(mac, now);
                e.used = false;
            }
            return true;
        }
        if !valid_ip(ip) || !self.make_room(false) {
            self.publish_if_dirty();
            return false;
        }
        self.entries.insert(
            ip,
            Entry {
                state: NeighbourState::Incomplete {
                    probes_sent: 0,
                    next_at: now,
                },
                wanted: false,
                used: false,
                backoff: self.cfg.failed_backoff,
            },
        );
        self.publish_if_dirty();
        true
    }

    /// The control plane no longer needs `ip` (a real server removed): the
    /// entry ages out like any learned one.
    pub fn unwant(&mut self, ip: Ipv4Addr) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.wanted = false;
        }
    }

    /// Forgets `ip` at once. Returns whether it was there.
    pub fn remove(&mut self, ip: Ipv4Addr) -> bool {
        let Some(e) = self.entries.remove(&ip) else {
            return false;
        };
        self.dirty |= e.state.mac().is_some();
        self.publish_if_dirty();
        true
    }

    /// `ip` has just shown itself at `mac` (an ARP reply, or an ARP packet
    /// it sent): the entry becomes Reachable, created if needed.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Millis) -> LearnOutcome {
        self.learn_inner(ip, mac, now, true)
            .unwrap_or(LearnOutcome::CacheFull)
    }

    /// RFC 826's merge step: update `ip` only if it already has an entry.
    /// `None` if it has none (nothing is created).
    pub fn merge(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Millis) -> Option<LearnOutcome> {
        self.learn_inner(ip, mac, now, false)
    }

    /// A mapping from elsewhere (the kernel's table, `ip neigh`), of
    /// unknown age: usable at once but Stale, so that it is verified as
    /// soon as it is used (or at once if wanted). Never overrides a MAC we
    /// already know. Returns what happened; `Confirmed` means "kept ours".
    pub fn seed(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Millis) -> LearnOutcome {
        if !valid_ip(ip) || !valid_mac(mac) {
            return LearnOutcome::Invalid;
        }
        let outcome = if let Some(e) = self.entries.get_mut(&ip) {
            if e.state.mac().is_some() {
                LearnOutcome::Confirmed
            } else {
                e.state = if e.wanted {
                    probe(mac, now)
                } else {
                    NeighbourState::Stale { mac, since: now }
                };
                self.dirty = true;
                LearnOutcome::Resolved
            }
        } else if !self.make_room(false) {
            LearnOutcome::CacheFull
        } else {
            self.entries.insert(
                ip,
                Entry {
                    state: NeighbourState::Stale { mac, since: now },
                    wanted: false,
                    used: false,
                    backoff: self.cfg.failed_backoff,
                },
            );
            self.dirty = true;
            LearnOutcome::New
        };
        self.publish_if_dirty();
        outcome
    }

    /// Applies every timer due at `now`: Reachable → Stale, used or
    /// wanted Stale → Probe, probes run out → Failed, Failed → retry or
    /// removal, unused Stale → removal. Also collects the workers' use
    /// marks. [`NeighbourCache::poll_requests`] calls it first.
    pub fn expire(&mut self, now: Millis) {
        self.harvest();
        self.last_check = now;
        let cfg = self.cfg;
        let mut dead = Vec::new();
        for (&ip, e) in &mut self.entries {
            if let NeighbourState::Reachable { mac, until } = e.state
                && now >= until
            {
                e.state = NeighbourState::Stale { mac, since: until };
            }
            match e.state {
                NeighbourState::Stale { mac, since } => {
                    if e.used || e.wanted {
                        e.state = probe(mac, now);
                        e.used = false;
                    } else if now >= since + cfg.gc_stale_time {
                        dead.push(ip);
                    }
                }
                NeighbourState::Incomplete {
                    probes_sent,
                    next_at,
                } if probes_sent >= cfg.mcast_probes && now >= next_at => {
                    e.state = NeighbourState::Failed {
                        retry_at: now + e.backoff,
                    };
                    e.used = false;
                }
                NeighbourState::Probe {
                    probes_sent,
                    next_at,
                    ..
                } if probes_sent >= cfg.ucast_probes && now >= next_at => {
                    e.state = NeighbourState::Failed {
                        retry_at: now + e.backoff,
                    };
                    e.used = false;
                    self.dirty = true;
                }
                NeighbourState::Failed { retry_at } if now >= retry_at => {
                    if e.wanted || e.used {
                        e.state = NeighbourState::Incomplete {
                            probes_sent: 0,
                            next_at: now,
                        };
                        e.used = false;
                        e.backoff = (e.backoff * 2).min(cfg.failed_backoff_max);
                    } else {
                        dead.push(ip);
                    }
                }
                _ => {}
            }
        }
        for ip in dead {
            if let Some(e) = self.entries.remove(&ip) {
                self.dirty |= e.state.mac().is_some();
            }
        }
        self.publish_if_dirty();
    }

    /// The ARP requests to send now, in address order, after applying the
    /// timers due at `now`. Each returned request counts as sent.
    pub fn poll_requests(&mut self, now: Millis) -> Vec<Solicit> {
        self.expire(now);
        let cfg = self.cfg;
        let mut out = Vec::new();
        for (&ip, e) in &mut self.entries {
            match &mut e.state {
                NeighbourState::Incomplete {
                    probes_sent,
                    next_at,
                } if now >= *next_at && *probes_sent < cfg.mcast_probes => {
                    out.push(Solicit { ip, unicast: None });
                    *probes_sent += 1;
                    *next_at = now + cfg.retrans_time;
                }
                NeighbourState::Probe {
                    mac,
                    probes_sent,
                    next_at,
                } if now >= *next_at && *probes_sent < cfg.ucast_probes => {
                    out.push(Solicit {
                        ip,
                        unicast: Some(*mac),
                    });
                    *probes_sent += 1;
                    *next_at = now + cfg.retrans_time;
                }
                _ => {}
            }
        }
        out.sort_unstable_by_key(|s| s.ip);
        out
    }

    /// When [`NeighbourCache::poll_requests`] next has something to do;
    /// `None` when the cache is empty.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.entries
            .values()
            .map(|e| match e.state {
                NeighbourState::Incomplete { next_at, .. }
                | NeighbourState::Probe { next_at, .. } => next_at,
                NeighbourState::Reachable { until, .. } => until,
                NeighbourState::Stale { since, .. } if e.used || e.wanted => since,
                // Workers may start using a stale entry at any time: look
                // at their marks every delay_first_probe rather than never.
                NeighbourState::Stale { since, .. } => (since + self.cfg.gc_stale_time)
                    .min(since.max(self.last_check) + self.cfg.delay_first_probe),
                NeighbourState::Failed { retry_at } => retry_at,
            })
            .min()
    }

    /// The state of `ip`'s entry.
    pub fn state(&self, ip: Ipv4Addr) -> Option<NeighbourState> {
        self.entries.get(&ip).map(|e| e.state)
    }

    /// Whether `ip` was asked for with [`NeighbourCache::want`].
    pub fn is_wanted(&self, ip: Ipv4Addr) -> bool {
        self.entries.get(&ip).is_some_and(|e| e.wanted)
    }

    /// Whether `ip` has an entry in any state.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.entries.contains_key(&ip)
    }

    /// Number of entries, all states.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry in address order (for the CLI, `ip neigh` style).
    pub fn entries(&self) -> Vec<(Ipv4Addr, NeighbourState)> {
        let mut v: Vec<_> = self.entries.iter().map(|(&ip, e)| (ip, e.state)).collect();
        v.sort_unstable_by_key(|(ip, _)| *ip);
        v
    }

    /// Publications so far: bumped each time the view changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn learn_inner(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: Millis,
        create: bool,
    ) -> Option<LearnOutcome> {
        if !valid_ip(ip) || !valid_mac(mac) {
            return Some(LearnOutcome::Invalid);
        }
        let reachable = NeighbourState::Reachable {
            mac,
            until: now + self.cfg.reachable_time,
        };
        let outcome = if let Some(e) = self.entries.get_mut(&ip) {
            let old = e.state.mac();
            e.state = reachable;
            e.used = false;
            e.backoff = self.cfg.failed_backoff;
            match old {
                None => LearnOutcome::Resolved,
                Some(o) if o == mac => LearnOutcome::Confirmed,
                Some(old) => LearnOutcome::Changed { old },
            }
        } else if !create {
            return None;
        } else if !self.make_room(false) {
            LearnOutcome::CacheFull
        } else {
            self.entries.insert(
                ip,
                Entry {
                    state: reachable,
                    wanted: false,
                    used: false,
                    backoff: self.cfg.failed_backoff,
                },
            );
            LearnOutcome::New
        };
        self.dirty |= !matches!(outcome, LearnOutcome::Confirmed | LearnOutcome::CacheFull);
        self.publish_if_dirty();
        Some(outcome)
    }

    /// Frees a slot if the cache is full. Wanted entries are never
    /// evicted. A learned mapping may only displace an entry nobody is
    /// relying on (failed or stale); a wanted address may displace any
    /// learned one. Among candidates: failed first, then stale, oldest
    /// first.
    fn make_room(&mut self, for_want: bool) -> bool {
        if self.entries.len() < self.cfg.max_entries {
            return true;
        }
        let rank = |s: &NeighbourState| match *s {
            NeighbourState::Failed { retry_at } => (0, retry_at),
            NeighbourState::Stale { since, .. } => (1, since),
            NeighbourState::Incomplete { next_at, .. } => (2, next_at),
            NeighbourState::Probe { next_at, .. } => (3, next_at),
            NeighbourState::Reachable { until, .. } => (4, until),
        };
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| !e.wanted)
            .filter(|(_, e)| {
                for_want
                    || matches!(
                        e.state,
                        NeighbourState::Failed { .. } | NeighbourState::Stale { .. }
                    )
            })
            .min_by_key(|(ip, e)| (rank(&e.state), **ip))
            .map(|(ip, _)| *ip);
        match victim {
            Some(ip) => {
                if let Some(e) = self.entries.remove(&ip) {
                    self.dirty |= e.state.mac().is_some();
                }
                true
            }
            None => false,
        }
    }

    /// Moves the workers' use marks from the published view into the
    /// entries.
    fn harvest(&mut self) {
        let cur = self.view.load();
        for (ip, v) in &cur.map {
            // Load first: the common case (unused) then costs no write.
            if v.used.load(Relaxed)
                && v.used.swap(false, Relaxed)
                && let Some(e) = self.entries.get_mut(ip)
            {
                e.used = true;
            }
        }
    }

    fn publish_if_dirty(&mut self) {
        if !self.dirty {
            return;
        }
        // Collect marks from the outgoing map first; a worker marking it
        // between here and the swap loses one mark, which its next lookup
        // on the new map restores.
        self.harvest();
        self.version += 1;
        let map = self
            .entries
            .iter()
            .filter_map(|(&ip, e)| {
                e.state.mac().map(|mac| {
                    (
                        ip,
                        ViewEntry {
                            mac,
                            used: AtomicBool::new(false),
                        },
                    )
                })
            })
            .collect();
        self.view.store(Arc::new(Published {
            map,
            version: self.version,
        }));
        self.dirty = false;
    }
}

impl Default for NeighbourCache {
    fn default() -> Self {
        NeighbourCache::new(NeighbourConfig::default())
    }
}

impl fmt::Debug for NeighbourCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeighbourCache")
            .field("entries", &self.entries())
            .field("version", &self.version)
            .finish()
    }
}

fn probe(mac: MacAddr, now: Millis) -> NeighbourState {
    NeighbourState::Probe {
        mac,
        probes_sent: 0,
        next_at: now,
    }
}

/// An address a neighbour on the segment can have.
pub(crate) fn valid_ip(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

fn valid_mac(mac: MacAddr) -> bool {
    !mac.is_multicast() && mac != MacAddr::ZERO
}

#[derive(Default)]
struct Published {
    /// FxHash: looked up on every forwarded packet; the keys are on-link
    /// addresses and the cache is bounded, so hash flooding buys nothing.
    map: FxHashMap<Ipv4Addr, ViewEntry>,
    version: u64,
}

struct ViewEntry {
    mac: MacAddr,
    used: AtomicBool,
}

/// What dataplane workers read: the usable (ip → MAC) mappings of one
/// interface, swapped whole by the cache's owner after every change.
/// `Send + Sync`, cheap to clone; reads take no lock.
#[derive(Clone)]
pub struct NeighbourView {
    inner: Arc<ArcSwap<Published>>,
}

impl NeighbourView {
    /// The MAC to send to `ip`, and a note for the owner that the entry
    /// is in use (so that it is re-verified rather than aged out).
    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        let cur = self.inner.load();
        let e = cur.map.get(&ip)?;
        if !e.used.load(Relaxed) {
            e.used.store(true, Relaxed);
        }
        Some(e.mac)
    }

    /// The MAC for `ip` without marking it used (CLI, tests).
    pub fn peek(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.inner.load().map.get(&ip).map(|e| e.mac)
    }

    /// The publication this view currently shows (0 before the first).
    pub fn version(&self) -> u64 {
        self.inner.load().version
    }

    /// Number of usable mappings.
    pub fn len(&self) -> usize {
        self.inner.load().map.len()
    }

    /// No usable mapping.
    pub fn is_empty(&self) -> bool {
        self.inner.load().map.is_empty()
    }

    /// Every usable mapping, in address order.
    pub fn snapshot(&self) -> Vec<(Ipv4Addr, MacAddr)> {
        let cur = self.inner.load();
        let mut v: Vec<_> = cur.map.iter().map(|(&ip, e)| (ip, e.mac)).collect();
        v.sort_unstable();
        v
    }
}

impl fmt::Debug for NeighbourView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeighbourView")
            .field("version", &self.version())
            .field("entries", &self.snapshot())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x21]);

    #[test]
    fn arp_cache_rejects_impossible_neighbours() {
        let mut c = NeighbourCache::default();
        let t = Millis(0);
        for ip in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 18),
            Ipv4Addr::LOCALHOST,
        ] {
            assert_eq!(c.learn(ip, MAC, t), LearnOutcome::Invalid, "{ip}");
            assert!(!c.want(ip, t), "{ip}");
        }
        assert_eq!(c.learn(IP, MacAddr::BROADCAST, t), LearnOutcome::Invalid);
        assert_eq!(c.learn(IP, MacAddr::ZERO, t), LearnOutcome::Invalid);
        assert!(c.is_empty());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn arp_cache_view_marks_use_once() {
        let mut c = NeighbourCache::default();
        c.learn(IP, MAC, Millis(0));
        let v = c.view();
        assert_eq!(v.peek(IP), Some(MAC));
        c.harvest();
        assert!(!c.entries[&IP].used, "peek does not mark");
        assert_eq!(v.lookup(IP), Some(MAC));
        c.harvest();
        assert!(c.entries[&IP].used, "lookup marks");
    }
}
