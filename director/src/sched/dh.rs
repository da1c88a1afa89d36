//! Destination hashing (`dh`, `ip_vs_dh.c`).
//!
//! A 256-bucket table is filled in [`Scheduler::update`] by dealing the
//! servers out in list order, one bucket each, round and round (weights do
//! not matter). A new connection is sent to the bucket of its *destination*
//! address (`req.dest`, the address the client asked for — useful for cache
//! clusters), hashed with the kernel's `(addr × 2654435761) & 255`. If that
//! server is removed, quiesced or overloaded there is no fallback: the
//! connection gets no server.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::hash::{fold_addr, golden_bucket};
use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// log2 of the table size (`CONFIG_IP_VS_DH_TAB_BITS`).
const TAB_BITS: u32 = 8;
/// Number of buckets.
const TAB_SIZE: usize = 1 << TAB_BITS;

/// The destination-hashing scheduler.
#[derive(Default)]
pub struct Dh {
    /// The buckets; `None` until the first update. Read without a lock.
    table: ArcSwapOption<Vec<Option<Arc<Dest>>>>,
}

impl fmt::Debug for Dh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dh")
            .field("built", &self.table.load().is_some())
            .finish()
    }
}

impl Dh {
    /// A destination-hashing scheduler with an empty table.
    pub fn new() -> Dh {
        Dh::default()
    }

    fn build(dests: &[Arc<Dest>]) -> Vec<Option<Arc<Dest>>> {
        (0..TAB_SIZE)
            .map(|i| (!dests.is_empty()).then(|| Arc::clone(&dests[i % dests.len()])))
            .collect()
    }
}

impl Scheduler for Dh {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Dh
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        self.table.store(Some(Arc::new(Dh::build(dests))));
    }

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let guard = self.table.load();
        let table = match guard.as_ref() {
            Some(t) => Arc::clone(t),
            None => {
                let t = Arc::new(Dh::build(dests));
                self.table.store(Some(Arc::clone(&t)));
                t
            }
        };
        pick(&table, req)
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // The lookup is pure; only a table not built yet would be kept by
        // `schedule`: build a throwaway one instead.
        let table = self
            .table
            .load_full()
            .unwrap_or_else(|| Arc::new(Dh::build(dests)));
        pick(&table, req)
    }
}

/// `ip_vs_dh_schedule` over `table`.
fn pick(table: &[Option<Arc<Dest>>], req: &SchedRequest) -> Option<Arc<Dest>> {
    let bucket = golden_bucket(fold_addr(req.dest.ip()), TAB_BITS);
    let d = table[bucket].as_ref()?;
    (d.is_available() && d.weight() > 0 && !d.is_overloaded()).then(|| Arc::clone(d))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::sched::testutil::{dests, index_of, req_at};
    use crate::time::Millis;

    fn to(ds: &[Arc<Dest>], s: &Dh, vip: Ipv4Addr) -> Option<usize> {
        let rq = req_at(
            "192.0.2.1:1234".parse().unwrap(),
            SocketAddr::from((vip, 80)),
            Millis::ZERO,
        );
        s.schedule(ds, &rq).map(|d| index_of(ds, &d))
    }

    #[test]
    fn bucket_is_kernel_hash_of_destination_and_servers_deal_round() {
        let ds = dests(&[1, 7, 1]);
        let s = Dh::new();
        s.update(&ds);
        for last in 0..=255u8 {
            let vip = Ipv4Addr::new(203, 0, 113, last);
            let bucket = (u32::from(vip).wrapping_mul(2_654_435_761) & 255) as usize;
            assert_eq!(
                to(&ds, &s, vip),
                Some(bucket % 3),
                "ip_vs_dh_assign deals one bucket per server; bucket = (daddr*2654435761)&255"
            );
        }
    }

    #[test]
    fn client_does_not_matter() {
        let ds = dests(&[1, 1, 1, 1]);
        let s = Dh::new();
        s.update(&ds);
        let dst: SocketAddr = "203.0.113.9:443".parse().unwrap();
        let picks: Vec<_> = (1..50u16)
            .map(|p| {
                let rq = req_at(
                    SocketAddr::from(([192, 0, 2, p as u8], p)),
                    dst,
                    Millis::ZERO,
                );
                index_of(&ds, &s.schedule(&ds, &rq).unwrap())
            })
            .collect();
        assert!(
            picks.windows(2).all(|w| w[0] == w[1]),
            "dh hashes the destination only"
        );
    }

    #[test]
    fn unavailable_bucket_has_no_fallback() {
        let ds = dests(&[1, 1]);
        let s = Dh::new();
        s.update(&ds);
        let vip = (0..=255u8)
            .map(|l| Ipv4Addr::new(203, 0, 113, l))
            .find(|v| to(&ds, &s, *v) == Some(0))
            .unwrap();
        ds[0].set_weight(0);
        assert_eq!(
            to(&ds, &s, vip),
            None,
            "ip_vs_dh_schedule: weight <= 0 → NULL, no fallback"
        );
        ds[0].set_weight(1);
        ds[0].set_available(false);
        assert_eq!(
            to(&ds, &s, vip),
            None,
            "ip_vs_dh_schedule: !IP_VS_DEST_F_AVAILABLE → NULL"
        );
    }

    #[test]
    fn empty_service_is_none() {
        let s = Dh::new();
        s.update(&[]);
        assert_eq!(
            to(&[], &s, Ipv4Addr::new(1, 2, 3, 4)),
            None,
            "dh: empty table → NULL"
        );
    }
}
