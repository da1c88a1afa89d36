//! Locality-based least connection with replication (`lblcr`,
//! `ip_vs_lblcr.c`).
//!
//! Like lblc, but each destination address (`req.dest`) maps to a *set* of
//! servers. A hit picks the weighted-least-connection member of the set
//! (skipping quiesced, overloaded and removed ones). If there is none, or
//! it is "overloaded" in lblc's sense (active > weight while some server is
//! below half its weight), the weighted-least-connection server of the
//! whole service is chosen and added to the set. When a set has more than
//! one member and has not changed for `lblcr_expiration` (default 24 h),
//! its most loaded member is dropped, so sets shrink back after a burst.
//! Whole entries age out through the periodic collection of the `locality`
//! module. Time is `req.now`; no clock is read.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::hash::hash_32;
use super::lblc::DEFAULT_EXPIRATION;
use super::locality::{LocalityTable, TAB_BITS, overloaded_with_spare};
use super::wlc::weighted_least;
use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;
use crate::time::Millis;

/// The server set of one destination address.
#[derive(Debug, Clone)]
struct DestSet {
    /// Members, newest first (the kernel adds at the list head).
    members: Vec<Arc<Dest>>,
    /// Last time a member was added or dropped.
    lastmod: Millis,
}

fn weight(d: &Dest) -> u64 {
    d.weight().max(0) as u64
}

impl DestSet {
    /// `ip_vs_dest_set_insert` (with the duplicate check).
    fn insert(&mut self, d: &Arc<Dest>, now: Millis) {
        if self.members.iter().any(|m| Arc::ptr_eq(m, d)) {
            return;
        }
        self.members.insert(0, Arc::clone(d));
        self.lastmod = now;
    }

    /// `ip_vs_dest_set_min`: weighted least connection among members that
    /// are available, not overloaded, and (for the first) weight > 0.
    fn min(&self) -> Option<&Arc<Dest>> {
        let first = self
            .members
            .iter()
            .position(|d| !d.is_overloaded() && d.weight() > 0 && d.is_available())?;
        let mut least = &self.members[first];
        let (mut loh, mut lw) = (least.overhead(), weight(least));
        for d in &self.members[first + 1..] {
            if d.is_overloaded() {
                continue;
            }
            let (doh, dw) = (d.overhead(), weight(d));
            if loh * dw > doh * lw && d.is_available() {
                least = d;
                loh = doh;
                lw = dw;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: weighted most connection among members with
    /// weight > 0.
    fn max(&self) -> Option<Arc<Dest>> {
        let first = self.members.iter().position(|d| d.weight() > 0)?;
        let mut most = &self.members[first];
        let (mut moh, mut mw) = (most.overhead(), weight(most));
        for d in &self.members[first + 1..] {
            let (doh, dw) = (d.overhead(), weight(d));
            if moh * dw < doh * mw && dw > 0 {
                most = d;
                moh = doh;
                mw = dw;
            }
        }
        Some(Arc::clone(most))
    }

    /// `ip_vs_dest_set_erase`.
    fn erase(&mut self, d: &Arc<Dest>, now: Millis) {
        if let Some(i) = self.members.iter().position(|m| Arc::ptr_eq(m, d)) {
            self.members.remove(i);
            self.lastmod = now;
        }
    }
}

/// The locality-based least-connection-with-replication scheduler.
pub struct Lblcr {
    expiration: Duration,
    table: Mutex<LocalityTable<DestSet>>,
}

impl fmt::Debug for Lblcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lblcr")
            .field("expiration", &self.expiration)
            .field("entries", &self.table.try_lock().map(|t| t.len()).ok())
            .finish()
    }
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr::new()
    }
}

impl Lblcr {
    /// An lblcr scheduler with the default 24 h expiration.
    pub fn new() -> Lblcr {
        Lblcr::with_expiration(DEFAULT_EXPIRATION)
    }

    /// An lblcr scheduler whose entries expire after `expiration` without
    /// use and whose sets shrink after `expiration` without change (the
    /// `lblcr_expiration` sysctl).
    pub fn with_expiration(expiration: Duration) -> Lblcr {
        // The kernel's hash: hash_32(addr, 10).
        let table = LocalityTable::new(|a| hash_32(a, TAB_BITS) as usize);
        Lblcr {
            expiration,
            table: Mutex::new(table),
        }
    }

    /// Number of cached destination addresses.
    pub fn cache_len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Size of the server set cached for destination address `addr`.
    pub fn set_len(&self, addr: std::net::IpAddr) -> Option<usize> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.get_mut(addr).map(|e| e.value.members.len())
    }
}

impl Scheduler for Lblcr {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        // Drop removed servers from every set (the kernel leaves them to be
        // skipped as unavailable until the entry expires).
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|set| {
            set.members
                .retain(|m| dests.iter().any(|d| Arc::ptr_eq(d, m)));
            true
        });
    }

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        pick(&mut t, self.expiration, dests, req)
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // The same lookup on a copy of the cache: no set grows or shrinks,
        // no entry is made, refreshed or collected.
        let mut copy = self.table.lock().unwrap_or_else(|e| e.into_inner()).clone();
        pick(&mut copy, self.expiration, dests, req)
    }
}

/// `ip_vs_lblcr_schedule` over the cache `t`.
fn pick(
    t: &mut LocalityTable<DestSet>,
    expiration: Duration,
    dests: &[Arc<Dest>],
    req: &SchedRequest,
) -> Option<Arc<Dest>> {
    let now = req.now;
    t.run_timers(now, expiration);
    let addr = req.dest.ip();
    if let Some(en) = t.get_mut(addr) {
        en.lastuse = now;
        let set = &mut en.value;
        let chosen = set.min().cloned();
        // More than one member and unchanged for the expiration: drop
        // the most loaded one (time_after: strictly later).
        if set.members.len() > 1
            && now > set.lastmod + expiration
            && let Some(m) = set.max()
        {
            set.erase(&m, now);
        }
        if let Some(d) = chosen
            && !overloaded_with_spare(&d, dests)
        {
            return Some(d);
        }
        let d = Arc::clone(weighted_least(dests)?);
        set.insert(&d, now);
        return Some(d);
    }
    let d = Arc::clone(weighted_least(dests)?);
    t.insert(
        addr,
        DestSet {
            members: vec![Arc::clone(&d)],
            lastmod: now,
        },
        now,
    );
    Some(d)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req_at};

    const H: u64 = 3_600_000;

    fn pick(s: &Lblcr, ds: &[Arc<Dest>], vip: &str, now: u64) -> Option<usize> {
        let rq = req_at(
            "192.0.2.1:999".parse().unwrap(),
            vip.parse::<SocketAddr>().unwrap(),
            Millis(now),
        );
        s.schedule(ds, &rq).map(|d| index_of(ds, &d))
    }

    fn ip(vip: &str) -> IpAddr {
        vip.parse::<SocketAddr>().unwrap().ip()
    }

    #[test]
    fn set_grows_when_member_overloaded_then_picks_least_member() {
        let ds = dests(&[2, 2, 10]);
        let s = Lblcr::new();
        let vip = "203.0.113.1:80";
        assert_eq!(pick(&s, &ds, vip, 0), Some(0));
        ds[0].set_counters(3, 0); // 3 > 2 and server 2 is below half
        ds[2].set_counters(4, 0); // 1024/10 > 0/2 → wlc picks server 1
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(1),
            "lblcr: overloaded member → wlc over the service, added to the set"
        );
        assert_eq!(s.set_len(ip(vip)), Some(2));
        ds[1].set_counters(1, 0);
        ds[0].set_counters(1, 0);
        // Members newest first: [1, 0]; equal overhead/weight → first (1).
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(1),
            "ip_vs_dest_set_min: weighted least member, tie → first in set"
        );
        ds[1].set_counters(2, 0);
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(0),
            "ip_vs_dest_set_min: lighter member wins"
        );
        assert_eq!(
            s.set_len(ip(vip)),
            Some(2),
            "no growth while a member is fine"
        );
    }

    #[test]
    fn set_skips_quiesced_and_threshold_overloaded_members() {
        let ds = dests(&[5, 5]);
        let s = Lblcr::new();
        let vip = "203.0.113.2:80";
        assert_eq!(pick(&s, &ds, vip, 0), Some(0));
        ds[0].set_thresholds(1, 0);
        ds[0].bind(ConnClass::Active);
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(1),
            "ip_vs_dest_set_min skips IP_VS_DEST_F_OVERLOAD"
        );
        ds[0].set_thresholds(0, 0);
        ds[0].set_weight(0);
        ds[0].set_counters(0, 0);
        ds[1].set_counters(50, 0);
        assert_eq!(
            pick(&s, &ds, vip, 0),
            Some(1),
            "weight 0 member not chosen even though idle"
        );
    }

    #[test]
    fn set_shrinks_after_expiration_without_change() {
        let ds = dests(&[2, 2, 10]);
        let s = Lblcr::new();
        let vip = "203.0.113.3:80";
        pick(&s, &ds, vip, 0);
        ds[0].set_counters(3, 0);
        ds[2].set_counters(4, 0);
        assert_eq!(pick(&s, &ds, vip, 0), Some(1)); // set {1, 0}, lastmod 0
        ds[0].set_counters(0, 0);
        ds[1].set_counters(1, 0);
        // Keep the entry in use so it does not expire as a whole.
        pick(&s, &ds, vip, 12 * H);
        assert_eq!(
            pick(&s, &ds, vip, 24 * H),
            Some(0),
            "lblcr: at exactly lastmod + 24 h nothing is dropped (time_after)"
        );
        assert_eq!(s.set_len(ip(vip)), Some(2));
        assert_eq!(pick(&s, &ds, vip, 24 * H + 1), Some(0));
        assert_eq!(
            s.set_len(ip(vip)),
            Some(1),
            "lblcr_expiration passed: the most loaded member (1) is dropped"
        );
        assert_eq!(pick(&s, &ds, vip, 48 * H + 2), Some(0));
        assert_eq!(
            s.set_len(ip(vip)),
            Some(1),
            "a single member is never dropped"
        );
    }

    #[test]
    fn whole_entry_expires_at_full_check() {
        let ds = dests(&[10, 10]);
        let s = Lblcr::new();
        assert_eq!(pick(&s, &ds, "203.0.113.4:80", 0), Some(0));
        s.schedule(
            &ds,
            &req_at(
                "192.0.2.1:1".parse().unwrap(),
                "203.0.113.5:80".parse().unwrap(),
                Millis(24 * H - 1),
            ),
        );
        assert_eq!(s.cache_len(), 2);
        s.schedule(
            &ds,
            &req_at(
                "192.0.2.1:1".parse().unwrap(),
                "203.0.113.5:80".parse().unwrap(),
                Millis(24 * H),
            ),
        );
        assert_eq!(
            s.cache_len(),
            1,
            "lblcr full check at 24 h drops the entry unused since 0"
        );
    }

    #[test]
    fn update_drops_removed_members() {
        let ds = dests(&[1, 1]);
        let s = Lblcr::new();
        let vip = "203.0.113.6:80";
        pick(&s, &ds, vip, 0);
        s.update(&ds[1..]);
        assert_eq!(s.set_len(ip(vip)), Some(0));
        assert_eq!(
            pick(&s, &ds[1..], vip, 0),
            Some(0),
            "empty set → wlc over the service"
        );
    }
}
