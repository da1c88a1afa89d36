//! Weighted least connection (`wlc`, `ip_vs_wlc.c`, the IPVS default).
//!
//! Picks the server with the smallest overhead per unit of weight,
//! `overhead / weight`, compared without division as the kernel does: a
//! later server `d` replaces the current least `l` only when
//! `l.overhead × d.weight > d.overhead × l.weight`, so ties go to the
//! first in list order. Quiesced (weight 0) and overloaded servers are
//! skipped. lblc and lblcr use the same choice when their cache misses.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The weighted least-connection scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Wlc;

/// The kernel's weighted least-connection choice over `dests`: the first
/// server that is not overloaded and has a positive weight starts as the
/// least; every later non-overloaded server replaces it when
/// `loh × dw > doh × lw`.
pub(crate) fn weighted_least(dests: &[Arc<Dest>]) -> Option<&Arc<Dest>> {
    let first = dests
        .iter()
        .position(|d| !d.is_overloaded() && d.weight() > 0)?;
    let mut least = &dests[first];
    let mut loh = least.overhead();
    let mut lw = weight(least);
    for d in &dests[first + 1..] {
        if d.is_overloaded() {
            continue;
        }
        let doh = d.overhead();
        let dw = weight(d);
        // Overheads stay below 2^40 and weights below 2^16: no overflow.
        if loh * dw > doh * lw {
            least = d;
            loh = doh;
            lw = dw;
        }
    }
    Some(least)
}

fn weight(d: &Dest) -> u64 {
    d.weight().max(0) as u64
}

impl Scheduler for Wlc {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wlc
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        weighted_least(dests).cloned()
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // `schedule` keeps no state: a pure function of the servers' weights and counters.
        self.schedule(dests, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req};

    fn pick(ds: &[Arc<Dest>]) -> Option<usize> {
        Wlc.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn compares_overhead_times_weight() {
        let ds = dests(&[1, 3, 2]);
        assert_eq!(pick(&ds), Some(0), "wlc: all idle → first in list");
        // A: 256/1; B: 3*256=768/3 = 256; C: 600/2 = 300.
        ds[0].set_counters(1, 0);
        ds[1].set_counters(3, 0);
        ds[2].set_counters(2, 88);
        assert_eq!(
            pick(&ds),
            Some(0),
            "wlc: 256*3 > 768*1 is false → tie keeps the first"
        );
        ds[1].set_counters(2, 255); // 767/3 < 256/1
        assert_eq!(pick(&ds), Some(1), "wlc: loh*dw > doh*lw → 256*3 > 767*1");
        ds[2].set_counters(1, 0); // 256/2 = 128
        assert_eq!(pick(&ds), Some(2), "wlc: 767*2 > 256*3");
    }

    #[test]
    fn inactive_counts_one_256th() {
        let ds = dests(&[1, 1]);
        ds[0].set_counters(0, 256);
        ds[1].set_counters(1, 0);
        assert_eq!(
            pick(&ds),
            Some(0),
            "wlc: 256 inactive weigh as much as one active; tie → first"
        );
        ds[0].set_counters(0, 257);
        assert_eq!(pick(&ds), Some(1));
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[0, 1, 4]);
        ds[1].set_counters(10, 0);
        ds[2].set_thresholds(1, 0);
        ds[2].bind(ConnClass::Active);
        assert_eq!(
            pick(&ds),
            Some(1),
            "wlc skips weight 0 and IP_VS_DEST_F_OVERLOAD"
        );
        ds[1].set_weight(0);
        assert_eq!(pick(&ds), None, "wlc: no destination available");
    }
}
