//! A real server ("destination" in IPVS) as the schedulers and the
//! connection table see it: its address, forwarding method, weight,
//! thresholds, and the live connection counters that the schedulers weigh.
//!
//! Counters follow IPVS exactly (`ip_vs_bind_dest` / `ip_vs_unbind_dest`
//! and the protocol state handlers): a TCP connection is *active* while its
//! state is SYN_SENT, SYN_RECV, ESTABLISHED or SYNACK (the kernel's
//! `tcp_state_active` table since 4.8) and *inactive* otherwise; a UDP flow
//! is bound inactive and stays so; persistence templates are counted apart. The overload flag is set when active + inactive reaches
//! the upper threshold and cleared when it falls below the lower threshold
//! (or below 3/4 of the upper one when no lower threshold is set).
//!
//! Every field the packet path touches is atomic: workers share one `Dest`
//! through an `Arc` and never take a lock to account a connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::types::ForwardMethod;

/// Largest weight ipvsadm accepts (`-w`, 0..=65535).
pub const MAX_WEIGHT: i32 = 65535;

/// Which counter a connection is accounted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnClass {
    /// A TCP connection in an active state (SYN_SENT, SYN_RECV,
    /// ESTABLISHED, SYNACK).
    Active,
    /// A TCP connection in any other state, or a UDP flow.
    Inactive,
    /// A persistence template (not a connection; counted in `persist`).
    Template,
}

/// Most worker threads that may count traffic at once: each owns one
/// counter slot (see [`StatSlot`]).
pub const STAT_SLOTS: usize = 32;

/// The counter slot of one worker thread. Only that thread writes the
/// slot, so counting is a plain load and store — no locked instruction and
/// no cache line bouncing between cores, as with the kernel's per-CPU IPVS
/// stats. Readers add the slots up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatSlot(u8);

impl StatSlot {
    /// Slot `n`; `None` if `n >= STAT_SLOTS`. Whoever hands slots out
    /// (the dataplane, to its workers) must never give one to two threads
    /// that count at the same time.
    pub fn new(n: usize) -> Option<StatSlot> {
        (n < STAT_SLOTS).then_some(StatSlot(n as u8))
    }

    /// Slot 0: for single-threaded callers (tests, tools).
    pub const FIRST: StatSlot = StatSlot(0);

    /// The slot's index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One worker's counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    conns: AtomicU64,
    in_pkts: AtomicU64,
    out_pkts: AtomicU64,
    in_bytes: AtomicU64,
    out_bytes: AtomicU64,
}

/// Add `n` to a counter only this thread writes: a plain load and store.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Traffic counters of a real server or a service (ipvsadm `--stats`),
/// one slot per worker.
#[derive(Debug)]
pub struct Stats {
    slots: Box<[Slot; STAT_SLOTS]>,
    /// Totals at the last [`Stats::zero`]; readers subtract them. Zeroing
    /// by baseline, not by writing the slots, never races a worker.
    baseline: std::sync::Mutex<StatsSnapshot>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            slots: Box::new(std::array::from_fn(|_| Slot::default())),
            baseline: std::sync::Mutex::new(StatsSnapshot::default()),
        }
    }
}

impl Stats {
    /// Account one new connection.
    #[inline]
    pub fn count_conn(&self, slot: StatSlot) {
        bump(&self.slots[slot.index()].conns, 1);
    }

    /// Account one packet of `len` bytes arriving from the client.
    #[inline]
    pub fn count_in(&self, slot: StatSlot, len: usize) {
        let s = &self.slots[slot.index()];
        bump(&s.in_pkts, 1);
        bump(&s.in_bytes, len as u64);
    }

    /// Account one packet of `len` bytes going back to the client.
    #[inline]
    pub fn count_out(&self, slot: StatSlot, len: usize) {
        let s = &self.slots[slot.index()];
        bump(&s.out_pkts, 1);
        bump(&s.out_bytes, len as u64);
    }

    fn totals(&self) -> StatsSnapshot {
        let mut t = StatsSnapshot::default();
        for s in self.slots.iter() {
            t.conns = t.conns.wrapping_add(s.conns.load(Relaxed));
            t.in_pkts = t.in_pkts.wrapping_add(s.in_pkts.load(Relaxed));
            t.out_pkts = t.out_pkts.wrapping_add(s.out_pkts.load(Relaxed));
            t.in_bytes = t.in_bytes.wrapping_add(s.in_bytes.load(Relaxed));
            t.out_bytes = t.out_bytes.wrapping_add(s.out_bytes.load(Relaxed));
        }
        t
    }

    /// Reset all counters (ipvsadm `-Z`).
    pub fn zero(&self) {
        let now = self.totals();
        *self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    /// The counters since the last [`Stats::zero`].
    pub fn snapshot(&self) -> StatsSnapshot {
        let b = *self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = self.totals();
        StatsSnapshot {
            conns: t.conns.wrapping_sub(b.conns),
            in_pkts: t.in_pkts.wrapping_sub(b.in_pkts),
            out_pkts: t.out_pkts.wrapping_sub(b.out_pkts),
            in_bytes: t.in_bytes.wrapping_sub(b.in_bytes),
            out_bytes: t.out_bytes.wrapping_sub(b.out_bytes),
        }
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub in_pkts: u64,
    /// Packets out.
    pub out_pkts: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
}

/// A real server of one virtual service.
#[derive(Debug)]
pub struct Dest {
    addr: SocketAddr,
    method: ForwardMethod,
    weight: AtomicI32,
    /// Upper connection threshold (`-x`), 0 = none.
    u_threshold: AtomicU32,
    /// Lower connection threshold (`-y`), 0 = none.
    l_threshold: AtomicU32,
    active: AtomicU32,
    inactive: AtomicU32,
    persist: AtomicU32,
    overloaded: AtomicBool,
    /// False once the server is removed from its service; connections
    /// bound to it keep forwarding until they expire, as in IPVS.
    available: AtomicBool,
    /// Traffic counters.
    pub stats: Stats,
}

impl Dest {
    /// A real server with the given weight and no thresholds.
    pub fn new(addr: SocketAddr, method: ForwardMethod, weight: i32) -> Dest {
        Dest {
            addr,
            method,
            weight: AtomicI32::new(weight.clamp(0, MAX_WEIGHT)),
            u_threshold: AtomicU32::new(0),
            l_threshold: AtomicU32::new(0),
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            persist: AtomicU32::new(0),
            overloaded: AtomicBool::new(false),
            available: AtomicBool::new(true),
            stats: Stats::default(),
        }
    }

    /// Builder-style thresholds (`-x upper -y lower`), 0 = none.
    pub fn with_thresholds(self, upper: u32, lower: u32) -> Dest {
        self.set_thresholds(upper, lower);
        self
    }

    /// Real server address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwarding method.
    pub fn method(&self) -> ForwardMethod {
        self.method
    }

    /// Current weight; 0 means quiesced (no new connections).
    #[inline]
    pub fn weight(&self) -> i32 {
        self.weight.load(Relaxed)
    }

    /// Change the weight (ipvsadm `-e -w`); clamped to 0..=65535.
    pub fn set_weight(&self, w: i32) {
        self.weight.store(w.clamp(0, MAX_WEIGHT), Relaxed);
    }

    /// `(upper, lower)` connection thresholds, 0 = none.
    pub fn thresholds(&self) -> (u32, u32) {
        (
            self.u_threshold.load(Relaxed),
            self.l_threshold.load(Relaxed),
        )
    }

    /// Change the thresholds. As IPVS does on edit, a raised or removed
    /// upper threshold clears the overload flag at once.
    pub fn set_thresholds(&self, upper: u32, lower: u32) {
        self.u_threshold.store(upper, Relaxed);
        self.l_threshold.store(lower, Relaxed);
        if upper == 0 || upper > self.total_conns() {
            self.overloaded.store(false, Relaxed);
        } else {
            self.overloaded.store(true, Relaxed);
        }
    }

    /// TCP connections in an active state.
    #[inline]
    pub fn active_conns(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// TCP connections in any other state, and UDP flows.
    #[inline]
    pub fn inactive_conns(&self) -> u32 {
        self.inactive.load(Relaxed)
    }

    /// Persistence templates pointing at this server.
    #[inline]
    pub fn persist_conns(&self) -> u32 {
        self.persist.load(Relaxed)
    }

    /// active + inactive, the figure thresholds are compared with.
    #[inline]
    pub fn total_conns(&self) -> u32 {
        self.active_conns().saturating_add(self.inactive_conns())
    }

    /// The load figure of lc/wlc/lblc/lblcr: `active × 256 + inactive`
    /// (IPVS `ip_vs_dest_conn_overhead`), so one active connection weighs
    /// as much as 256 idle ones.
    #[inline]
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active_conns()) << 8) + u64::from(self.inactive_conns())
    }

    /// Over its upper threshold (and not yet back under the lower one).
    #[inline]
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Relaxed)
    }

    /// Still part of its service.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.available.load(Relaxed)
    }

    /// Mark removed from (or re-added to) its service.
    pub fn set_available(&self, yes: bool) {
        self.available.store(yes, Relaxed);
    }

    /// May the scheduler give this server a new connection? Weight above
    /// zero and not overloaded — the test every IPVS scheduler applies.
    #[inline]
    pub fn accepts_new(&self) -> bool {
        self.weight() > 0 && !self.is_overloaded()
    }

    /// Account a new connection or template bound to this server
    /// (`ip_vs_bind_dest`).
    pub fn bind(&self, class: ConnClass) {
        match class {
            ConnClass::Active => self.active.fetch_add(1, Relaxed),
            ConnClass::Inactive => self.inactive.fetch_add(1, Relaxed),
            ConnClass::Template => self.persist.fetch_add(1, Relaxed),
        };
        let upper = self.u_threshold.load(Relaxed);
        if upper != 0 && self.total_conns() >= upper {
            self.overloaded.store(true, Relaxed);
        }
    }

    /// Account a connection or template that went away
    /// (`ip_vs_unbind_dest`), possibly clearing the overload flag.
    pub fn unbind(&self, class: ConnClass) {
        let counter = match class {
            ConnClass::Active => &self.active,
            ConnClass::Inactive => &self.inactive,
            ConnClass::Template => &self.persist,
        };
        // Never wrap below zero, even if a caller double-unbinds.
        let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        self.update_overload_on_release();
    }

    /// Move a connection between the active and inactive counters when its
    /// TCP state crosses the active/inactive line (the TCP state handler's
    /// bookkeeping).
    pub fn reclass(&self, from: ConnClass, to: ConnClass) {
        if from == to {
            return;
        }
        self.bind_counter_only(to);
        let counter = match from {
            ConnClass::Active => &self.active,
            ConnClass::Inactive => &self.inactive,
            ConnClass::Template => &self.persist,
        };
        let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }

    fn bind_counter_only(&self, class: ConnClass) {
        match class {
            ConnClass::Active => self.active.fetch_add(1, Relaxed),
            ConnClass::Inactive => self.inactive.fetch_add(1, Relaxed),
            ConnClass::Template => self.persist.fetch_add(1, Relaxed),
        };
    }

    fn update_overload_on_release(&self) {
        let (upper, lower) = self.thresholds();
        let total = u64::from(self.total_conns());
        let clear = if lower != 0 {
            total < u64::from(lower)
        } else if upper != 0 {
            total * 4 < u64::from(upper) * 3
        } else {
            true
        };
        if clear {
            self.overloaded.store(false, Relaxed);
        }
    }

    /// Test helper and sync import: set the counters directly.
    pub fn set_counters(&self, active: u32, inactive: u32) {
        self.active.store(active, Relaxed);
        self.inactive.store(inactive, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> Dest {
        Dest::new(
            "10.0.0.1:80".parse().unwrap(),
            ForwardMethod::DirectRouting,
            1,
        )
    }

    #[test]
    fn overhead_weighs_active_256_times() {
        let d = dest();
        d.set_counters(2, 3);
        assert_eq!(d.overhead(), 2 * 256 + 3);
    }

    #[test]
    fn upper_threshold_sets_overload_and_three_quarters_clears_it() {
        // ip_vs_bind_dest: total >= u_threshold sets OVERLOAD.
        let d = dest().with_thresholds(4, 0);
        for _ in 0..4 {
            assert!(!d.is_overloaded());
            d.bind(ConnClass::Active);
        }
        assert!(d.is_overloaded());
        // ip_vs_unbind_dest without l_threshold: clear when total*4 < u*3.
        d.unbind(ConnClass::Active); // 3*4=12 < 12? no
        assert!(d.is_overloaded());
        d.unbind(ConnClass::Active); // 2*4=8 < 12
        assert!(!d.is_overloaded());
    }

    #[test]
    fn lower_threshold_gives_hysteresis() {
        let d = dest().with_thresholds(3, 1);
        (0..3).for_each(|_| d.bind(ConnClass::Inactive));
        assert!(d.is_overloaded());
        d.unbind(ConnClass::Inactive);
        d.unbind(ConnClass::Inactive);
        assert!(d.is_overloaded(), "total 1 is not below lower threshold 1");
        d.unbind(ConnClass::Inactive);
        assert!(!d.is_overloaded());
    }

    #[test]
    fn templates_do_not_count_toward_thresholds() {
        let d = dest().with_thresholds(1, 0);
        d.bind(ConnClass::Template);
        assert!(!d.is_overloaded());
        assert_eq!(d.persist_conns(), 1);
    }

    #[test]
    fn stats_add_up_across_slots_and_zero_by_baseline() {
        let st = Stats::default();
        let (a, b) = (
            StatSlot::new(0).unwrap(),
            StatSlot::new(STAT_SLOTS - 1).unwrap(),
        );
        assert!(StatSlot::new(STAT_SLOTS).is_none());
        st.count_conn(a);
        st.count_in(a, 100);
        st.count_in(b, 60);
        st.count_out(b, 40);
        let s = st.snapshot();
        assert_eq!(
            (s.conns, s.in_pkts, s.in_bytes, s.out_pkts, s.out_bytes),
            (1, 2, 160, 1, 40)
        );
        st.zero();
        assert_eq!(st.snapshot(), StatsSnapshot::default(), "ipvsadm -Z");
        st.count_in(a, 10);
        assert_eq!(st.snapshot().in_bytes, 10, "counting resumes from zero");
    }

    #[test]
    fn weight_zero_quiesces() {
        let d = dest();
        assert!(d.accepts_new());
        d.set_weight(0);
        assert!(!d.accepts_new());
        d.set_weight(1_000_000);
        assert_eq!(d.weight(), MAX_WEIGHT);
    }

    #[test]
    fn reclass_moves_between_counters() {
        let d = dest();
        d.bind(ConnClass::Inactive);
        d.reclass(ConnClass::Inactive, ConnClass::Active);
        assert_eq!((d.active_conns(), d.inactive_conns()), (1, 0));
        d.reclass(ConnClass::Active, ConnClass::Inactive);
        assert_eq!((d.active_conns(), d.inactive_conns()), (0, 1));
        d.unbind(ConnClass::Inactive);
        d.unbind(ConnClass::Inactive);
        assert_eq!(d.inactive_conns(), 0, "never wraps below zero");
    }
}
