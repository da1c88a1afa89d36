//! Locality-based least connection (`lblc`, `ip_vs_lblc.c`).
//!
//! Meant for cache clusters: connections for the same *destination* address
//! (`req.dest`) should keep going to the same server. A cache maps each
//! destination address to the server last chosen for it. On a hit the
//! cached server is used unless it was removed, is quiesced, or is
//! "overloaded" in lblc's own sense — more active connections than its
//! weight while some server is below half of its weight. Otherwise (and on
//! a miss) the weighted-least-connection server is chosen and cached.
//!
//! As in the kernel, the cached server's upper-threshold overload flag is
//! *not* consulted on a hit (only the choice on a miss skips overloaded
//! servers), and cache entries age out only through the periodic collection
//! described in the `locality` module: a full check every 30 min drops
//! entries unused for `lblc_expiration` (default 24 h,
//! [`Lblc::with_expiration`]). Time is `req.now`; no clock is read.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::hash::golden_bucket;
use super::locality::{LocalityTable, TAB_BITS, overloaded_with_spare};
use super::wlc::weighted_least;
use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// Default cache-entry expiration of lblc and lblcr (sysctl
/// `lblc_expiration` / `lblcr_expiration`): 24 hours.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The locality-based least-connection scheduler.
pub struct Lblc {
    expiration: Duration,
    table: Mutex<LocalityTable<Arc<Dest>>>,
}

impl fmt::Debug for Lblc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lblc")
            .field("expiration", &self.expiration)
            .field("entries", &self.table.try_lock().map(|t| t.len()).ok())
            .finish()
    }
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc::new()
    }
}

impl Lblc {
    /// An lblc scheduler with the default 24 h expiration.
    pub fn new() -> Lblc {
        Lblc::with_expiration(DEFAULT_EXPIRATION)
    }

    /// An lblc scheduler whose cache entries expire after `expiration`
    /// without use (the `lblc_expiration` sysctl).
    pub fn with_expiration(expiration: Duration) -> Lblc {
        // The kernel's hash: (addr * 2654435761) & (1024 - 1).
        let table = LocalityTable::new(|a| golden_bucket(a, TAB_BITS));
        Lblc {
            expiration,
            table: Mutex::new(table),
        }
    }

    /// Number of cached destination addresses.
    pub fn cache_len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Scheduler for Lblc {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        // Entries of removed servers would only be replaced on their next
        // lookup (the kernel checks IP_VS_DEST_F_AVAILABLE); forget them now.
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|cached| dests.iter().any(|d| Arc::ptr_eq(d, cached)));
    }

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        pick(&mut t, self.expiration, dests, req)
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // The same lookup on a copy of the cache: no entry is made,
        // refreshed or collected.
        let mut copy = self.table.lock().unwrap_or_else(|e| e.into_inner()).clone();
        pick(&mut copy, self.expiration, dests, req)
    }
}

/// `ip_vs_lblc_schedule` over the cache `t`.
fn pick(
    t: &mut LocalityTable<Arc<Dest>>,
    expiration: Duration,
    dests: &[Arc<Dest>],
    req: &SchedRequest,
) -> Option<Arc<Dest>> {
    t.run_timers(req.now, expiration);
    let addr = req.dest.ip();
    if let Some(en) = t.get_mut(addr) {
        en.lastuse = req.now;
        let d = &en.value;
        if d.is_available() && d.weight() > 0 && !overloaded_with_spare(d, dests) {
            return Some(Arc::clone(d));
        }
    }
    let d = Arc::clone(weighted_least(dests)?);
    match t.get_mut(addr) {
        // ip_vs_lblc_new: same server → keep the entry as it is.
        Some(en) if Arc::ptr_eq(&en.value, &d) => {}
        _ => t.insert(addr, Arc::clone(&d), req.now),
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::sched::testutil::{dests, index_of, req_at};
    use crate::time::Millis;

    const H: u64 = 3_600_000;
    const MIN: u64 = 60_000;

    fn pick(s: &Lblc, ds: &[Arc<Dest>], vip: &str, now: u64) -> Option<usize> {
        let rq = req_at(
            "192.0.2.1:999".parse().unwrap(),
            vip.parse::<SocketAddr>().unwrap(),
            Millis(now),
        );
        s.schedule(ds, &rq).map(|d| index_of(ds, &d))
    }

    #[test]
    fn destination_sticks_to_its_server() {
        let ds = dests(&[10, 10]);
        let s = Lblc::new();
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", 0),
            Some(0),
            "lblc miss → wlc, tie → first"
        );
        ds[0].set_counters(5, 0);
        assert_eq!(
            pick(&s, &ds, "203.0.113.2:80", 0),
            Some(1),
            "another destination → wlc picks the lighter"
        );
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", 0),
            Some(0),
            "lblc hit: cached server although busier"
        );
        assert_eq!(
            s.cache_len(),
            2,
            "lblc caches one entry per destination address"
        );
    }

    #[test]
    fn repicks_when_quiesced_removed_or_overloaded_with_spare() {
        let ds = dests(&[2, 10]);
        let s = Lblc::new();
        let vip = "203.0.113.7:80";
        assert_eq!(pick(&s, &ds, vip, 0), Some(0));
        ds[0].set_counters(3, 0); // 3 > weight 2, server 1 has 0*2 < 10
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(1),
            "lblc is_overloaded: active > weight and a server below half"
        );
        assert_eq!(pick(&s, &ds, vip, 0), Some(1), "the new choice is cached");
        ds[1].set_weight(0);
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(0),
            "lblc: weight 0 cached server is re-picked"
        );
        ds[1].set_weight(10);
        // Server 0 is removed (unavailable, gone from the list) but the
        // cache was not told (no update yet).
        ds[0].set_available(false);
        ds[0].set_counters(0, 0);
        let rest = &ds[1..];
        assert_eq!(
            pick(&s, rest, vip, 0),
            Some(0),
            "lblc: !IP_VS_DEST_F_AVAILABLE cached server is re-picked"
        );
    }

    #[test]
    fn cached_server_over_threshold_is_still_used_as_in_kernel() {
        let ds = dests(&[10, 10]);
        let s = Lblc::new();
        let vip = "203.0.113.8:80";
        assert_eq!(pick(&s, &ds, vip, 0), Some(0));
        ds[0].set_thresholds(1, 0);
        ds[0].bind(crate::dest::ConnClass::Inactive);
        assert!(ds[0].is_overloaded());
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(0),
            "ip_vs_lblc_schedule does not test IP_VS_DEST_F_OVERLOAD on a hit"
        );
        assert_eq!(
            pick(&s, &ds, "203.0.113.9:80", 0),
            Some(1),
            "a miss skips the overloaded server"
        );
    }

    #[test]
    fn update_forgets_removed_servers() {
        let ds = dests(&[1, 1]);
        let s = Lblc::new();
        pick(&s, &ds, "203.0.113.1:80", 0);
        s.update(&ds[1..]);
        assert_eq!(
            s.cache_len(),
            0,
            "entries of a removed server are forgotten on update"
        );
    }

    /// The cached server is busier than the other, so a fresh choice would
    /// differ: a hit shows the entry survived.
    fn expiry_fixture(s: &Lblc) -> Vec<Arc<Dest>> {
        let ds = dests(&[10, 10]);
        assert_eq!(pick(s, &ds, "203.0.113.1:80", 0), Some(0));
        ds[0].set_counters(5, 0);
        ds
    }

    #[test]
    fn entry_survives_until_the_full_check_after_expiration() {
        let s = Lblc::new();
        let ds = expiry_fixture(&s);
        // Another destination keeps the scheduler busy; it does not touch
        // the entry under test.
        for h in 1..24 {
            pick(&s, &ds, "203.0.113.2:80", h * H);
        }
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", 24 * H - 1),
            Some(0),
            "lblc: unused < 24 h → still cached"
        );
    }

    #[test]
    fn entry_expires_at_the_full_check() {
        let s = Lblc::new();
        let ds = expiry_fixture(&s);
        // Full checks run at 30 min multiples after the first lookup (at 0);
        // the one at 24 h finds lastuse + 24 h <= now.
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", 24 * H),
            Some(1),
            "lblc_expiration (24 h): entry dropped, wlc re-picks"
        );
    }

    #[test]
    fn expired_entry_is_used_until_collected() {
        let s = Lblc::new();
        let ds = dests(&[10, 10]);
        assert_eq!(pick(&s, &ds, "203.0.113.5:80", 0), Some(0)); // arms timer at 0
        assert_eq!(pick(&s, &ds, "203.0.113.1:80", 10 * MIN), Some(0));
        ds[0].set_counters(5, 0);
        // Expired at 24 h 10 min, next full check at 24 h 30 min.
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", 24 * H + 20 * MIN),
            Some(0),
            "lblc: age is not checked on lookup"
        );
        let s2 = Lblc::new();
        let ds2 = dests(&[10, 10]);
        pick(&s2, &ds2, "203.0.113.5:80", 0);
        pick(&s2, &ds2, "203.0.113.1:80", 10 * MIN);
        ds2[0].set_counters(5, 0);
        assert_eq!(
            pick(&s2, &ds2, "203.0.113.1:80", 24 * H + 30 * MIN),
            Some(1),
            "lblc: the 24 h 30 min full check collected it"
        );
    }

    #[test]
    fn configurable_expiration() {
        let s = Lblc::with_expiration(Duration::from_secs(3600));
        let ds = expiry_fixture(&s);
        assert_eq!(
            pick(&s, &ds, "203.0.113.1:80", H),
            Some(1),
            "lblc_expiration 1 h: dropped at the 60 min full check"
        );
    }
}
