//! The destination-address cache shared by lblc and lblcr
//! (`ip_vs_lblc.c`, `ip_vs_lblcr.c`): a 1024-bucket hash table keyed on the
//! packet's destination address, and its garbage collection.
//!
//! The kernel collects stale entries from a timer that fires every 60 s:
//! every 30th firing (so every 30 min) is a *full check* that drops every
//! entry not used for the expiration time (`lblc_expiration` /
//! `lblcr_expiration`, default 24 h); the other firings do nothing unless
//! the table holds more than 16384 entries, in which case they drop entries
//! idle for 6 min, walking buckets from a rover, until 4/3 of the excess
//! (at most 8192) is gone. Entries are *not* checked for age when looked
//! up: an entry past its expiration is still used until a full check
//! removes it.
//!
//! There is no timer here. The table runs every firing that is due,
//! at its own due time, before each lookup ([`LocalityTable::run_timers`]),
//! which gives the lookups exactly the results a timer would have. The
//! timer is armed by the first lookup (the kernel arms it when the service
//! is created).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::hash::fold_addr;
use crate::dest::Dest;
use crate::time::Millis;

/// log2 of the bucket count (`CONFIG_IP_VS_LBLC_TAB_BITS`).
pub(crate) const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// Entry count above which the periodic check collects idle entries.
pub(crate) const MAX_SIZE: usize = TAB_SIZE * 16;
/// Period of the garbage-collection timer (`CHECK_EXPIRE_INTERVAL`).
pub(crate) const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// Idle time after which an entry may go when the table is too full
/// (`ENTRY_TIMEOUT`).
pub(crate) const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Every this many timer firings, a full expiration check.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// One cached destination address.
#[derive(Debug, Clone)]
pub(crate) struct Entry<V> {
    /// The packet destination address this entry is for.
    pub(crate) addr: IpAddr,
    /// The server (lblc) or server set (lblcr).
    pub(crate) value: V,
    /// Last lookup.
    pub(crate) lastuse: Millis,
}

/// The hash table with the kernel's bucket layout and collection order.
/// A clone is a full copy (lblc/lblcr peek on one).
#[derive(Debug, Clone)]
pub(crate) struct LocalityTable<V> {
    buckets: Vec<Vec<Entry<V>>>,
    hash: fn(u32) -> usize,
    entries: usize,
    rover: usize,
    counter: u32,
    next_tick: Option<Millis>,
}

impl<V> LocalityTable<V> {
    /// An empty table whose bucket for a folded address is `hash(addr)`.
    pub(crate) fn new(hash: fn(u32) -> usize) -> Self {
        LocalityTable {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            hash,
            entries: 0,
            rover: 0,
            counter: 1,
            next_tick: None,
        }
    }

    /// Number of cached addresses.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    fn bucket(&self, addr: IpAddr) -> usize {
        (self.hash)(fold_addr(addr)) & TAB_MASK
    }

    /// The entry for `addr`.
    pub(crate) fn get_mut(&mut self, addr: IpAddr) -> Option<&mut Entry<V>> {
        let b = self.bucket(addr);
        self.buckets[b].iter_mut().find(|e| e.addr == addr)
    }

    /// Add an entry for `addr` (replacing any), last used `now`.
    pub(crate) fn insert(&mut self, addr: IpAddr, value: V, now: Millis) {
        let b = self.bucket(addr);
        let bucket = &mut self.buckets[b];
        if let Some(i) = bucket.iter().position(|e| e.addr == addr) {
            bucket.swap_remove(i);
            self.entries -= 1;
        }
        bucket.push(Entry {
            addr,
            value,
            lastuse: now,
        });
        self.entries += 1;
    }

    /// Keep only the entries for which `keep` says so (it may also edit
    /// them).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        for bucket in &mut self.buckets {
            let before = bucket.len();
            bucket.retain_mut(|e| keep(&mut e.value));
            self.entries -= before - bucket.len();
        }
    }

    /// Run every timer firing due at or before `now`, each at its own time.
    pub(crate) fn run_timers(&mut self, now: Millis, expiration: Duration) {
        let period = CHECK_EXPIRE_INTERVAL.as_millis() as u64;
        let mut tick = *self.next_tick.get_or_insert(now + CHECK_EXPIRE_INTERVAL);
        while tick <= now {
            if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
                self.full_check(tick, expiration);
                self.counter = 1;
                tick = tick + CHECK_EXPIRE_INTERVAL;
            } else if self.entries <= MAX_SIZE {
                // Firings that only count: nothing changes between them, so
                // step over all of them up to the next full check at once.
                let due = (now.0 - tick.0) / period + 1;
                let to_full =
                    u64::from(COUNT_FOR_FULL_EXPIRATION - self.counter % COUNT_FOR_FULL_EXPIRATION);
                let k = due.min(to_full);
                self.counter += k as u32;
                tick = Millis(tick.0.saturating_add(k * period));
            } else {
                self.collect_idle(tick);
                tick = tick + CHECK_EXPIRE_INTERVAL;
            }
        }
        self.next_tick = Some(tick);
    }

    /// `ip_vs_lblc_full_check`: drop entries unused for `expiration`.
    fn full_check(&mut self, now: Millis, expiration: Duration) {
        for bucket in &mut self.buckets {
            let before = bucket.len();
            bucket.retain(|e| now < e.lastuse + expiration);
            self.entries -= before - bucket.len();
        }
    }

    /// The over-full branch of `ip_vs_lblc_check_expire`.
    fn collect_idle(&mut self, now: Millis) {
        let excess = (self.entries - MAX_SIZE) as i64;
        let mut goal = (excess * 4 / 3).min(MAX_SIZE as i64 / 2);
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            let bucket = &mut self.buckets[j];
            let before = bucket.len();
            bucket.retain(|e| now < e.lastuse + ENTRY_TIMEOUT);
            let removed = before - bucket.len();
            self.entries -= removed;
            goal -= removed as i64;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

/// The lblc/lblcr `is_overloaded(dest, svc)` rule: the cached server has
/// more active connections than its weight *and* some server of the service
/// is below half of its weight.
pub(crate) fn overloaded_with_spare(dest: &Dest, dests: &[Arc<Dest>]) -> bool {
    i64::from(dest.active_conns()) > i64::from(dest.weight())
        && dests
            .iter()
            .any(|d| i64::from(d.active_conns()) * 2 < i64::from(d.weight()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sched::hash::golden_bucket;

    fn table() -> LocalityTable<u32> {
        LocalityTable::new(|a| golden_bucket(a, TAB_BITS))
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n))
    }

    const MIN: u64 = 60_000;

    #[test]
    fn full_check_every_30_minutes_drops_expired() {
        let exp = Duration::from_secs(24 * 3600);
        let mut t = table();
        t.run_timers(Millis(0), exp); // arms the first firing at 1 min
        t.insert(ip(1), 1, Millis(0));
        t.insert(ip(2), 2, Millis(10 * MIN));
        // Full checks at 30 min, 60 min, ... (the 30th firing and every
        // 30th after). At 24 h exactly, entry 1 (lastuse 0) is expired.
        t.run_timers(Millis(24 * 60 * MIN - 1), exp);
        assert_eq!(t.len(), 2, "before the 24 h full check both entries stay");
        t.run_timers(Millis(24 * 60 * MIN), exp);
        assert_eq!(
            t.len(),
            1,
            "full check at 24 h: now >= lastuse + expiration → dropped"
        );
        t.run_timers(Millis(24 * 60 * MIN + 29 * MIN), exp);
        assert_eq!(
            t.len(),
            1,
            "entry 2 expired at 24 h 10 min but waits for the next full check"
        );
        t.run_timers(Millis(24 * 60 * MIN + 30 * MIN), exp);
        assert_eq!(t.len(), 0, "full check at 24 h 30 min drops entry 2");
    }

    #[test]
    fn overfull_table_drops_idle_entries_down_to_goal() {
        let exp = Duration::from_secs(24 * 3600);
        let mut t = table();
        t.run_timers(Millis(0), exp);
        let n = MAX_SIZE + 300;
        for i in 0..n as u32 {
            t.insert(ip(i), i, Millis(0));
        }
        t.run_timers(Millis(5 * MIN), exp);
        assert_eq!(
            t.len(),
            n,
            "entries younger than ENTRY_TIMEOUT (6 min) are kept"
        );
        t.run_timers(Millis(7 * MIN), exp);
        let removed = n - t.len();
        // goal = 300 * 4 / 3 = 400, whole buckets of 16 or 17 at a time.
        assert!(
            (400..400 + 17).contains(&removed),
            "check_expire: removes ~4/3 of the excess ({removed})"
        );
    }

    #[test]
    fn overloaded_with_spare_rule() {
        let d = |w, a| {
            let d = Arc::new(Dest::new(
                "10.0.0.1:80".parse().unwrap(),
                crate::types::ForwardMethod::DirectRouting,
                w,
            ));
            d.set_counters(a, 0);
            d
        };
        let busy = d(2, 3);
        let idle = d(4, 1);
        assert!(
            overloaded_with_spare(&busy, &[busy.clone(), idle.clone()]),
            "active > weight and a server below half its weight"
        );
        idle.set_counters(2, 0);
        assert!(
            !overloaded_with_spare(&busy, &[busy.clone(), idle.clone()]),
            "no server below half: keep the cached one"
        );
        busy.set_counters(2, 0);
        idle.set_counters(0, 0);
        assert!(
            !overloaded_with_spare(&busy, &[busy.clone(), idle]),
            "active == weight is not overloaded"
        );
    }
}
