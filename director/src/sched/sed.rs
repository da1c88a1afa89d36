//! Shortest expected delay (`sed`, `ip_vs_sed.c`).
//!
//! The expected delay of a new connection on a server is
//! `(active + 1) / weight`: only active connections count, plus the new
//! one. The server with the smallest value wins, compared as
//! `(l.active + 1) × d.weight > (d.active + 1) × l.weight` so that ties go
//! to the first in list order. Quiesced and overloaded servers are skipped.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The shortest-expected-delay scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sed;

/// `(active + 1)`, the sed/nq overhead.
pub(crate) fn expected(d: &Dest) -> u64 {
    u64::from(d.active_conns()) + 1
}

/// A positive weight as u64 (0 for a quiesced server).
pub(crate) fn weight(d: &Dest) -> u64 {
    d.weight().max(0) as u64
}

impl Scheduler for Sed {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sed
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let first = dests
            .iter()
            .position(|d| !d.is_overloaded() && d.weight() > 0)?;
        let mut least = &dests[first];
        let (mut loh, mut lw) = (expected(least), weight(least));
        for d in &dests[first + 1..] {
            if d.is_overloaded() {
                continue;
            }
            let (doh, dw) = (expected(d), weight(d));
            if loh * dw > doh * lw {
                least = d;
                loh = doh;
                lw = dw;
            }
        }
        Some(Arc::clone(least))
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
        Sed.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn active_plus_one_over_weight() {
        // A w1, B w3: idle → A (1/1) vs B (1/3): B wins.
        let ds = dests(&[1, 3]);
        assert_eq!(pick(&ds), Some(1), "sed: (0+1)/3 < (0+1)/1");
        // B with 2 active: 3/3 = 1 vs A 1/1 = 1 → tie → first (A).
        ds[1].set_counters(2, 0);
        assert_eq!(
            pick(&ds),
            Some(0),
            "sed: tie (1*3 > 3*1 false) keeps the first"
        );
        // Inactive connections do not count.
        ds[0].set_counters(0, 1000);
        assert_eq!(pick(&ds), Some(0), "sed counts only active connections");
        ds[0].set_counters(1, 0); // 2/1 vs 3/3
        assert_eq!(pick(&ds), Some(1), "sed: 2*3 > 3*1");
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[10, 0, 1]);
        ds[0].set_thresholds(1, 0);
        ds[0].bind(ConnClass::Active);
        assert_eq!(
            pick(&ds),
            Some(2),
            "sed skips IP_VS_DEST_F_OVERLOAD and weight 0"
        );
        ds[2].set_weight(0);
        assert_eq!(pick(&ds), None);
    }
}
