//! Never queue (`nq`, `ip_vs_nq.c`).
//!
//! The first server in list order with no active connection takes the new
//! one at once, whatever its weight. When every server is busy, nq chooses
//! as sed does: the smallest `(active + 1) / weight`, ties to the first.
//! Quiesced and overloaded servers are skipped.

use std::sync::Arc;

use super::sed::{expected, weight};
use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The never-queue scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Nq;

impl Scheduler for Nq {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Nq
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut least: Option<(&Arc<Dest>, u64, u64)> = None;
        for d in dests {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            if d.active_conns() == 0 {
                return Some(Arc::clone(d));
            }
            let (doh, dw) = (expected(d), weight(d));
            if least.is_none_or(|(_, loh, lw)| loh * dw > doh * lw) {
                least = Some((d, doh, dw));
            }
        }
        least.map(|(d, _, _)| Arc::clone(d))
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
        Nq.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn idle_server_first_then_sed() {
        let ds = dests(&[1, 100, 1]);
        ds[0].set_counters(1, 0);
        ds[1].set_counters(1, 0);
        assert_eq!(
            pick(&ds),
            Some(2),
            "nq: an idle server is returned directly, whatever the weights"
        );
        ds[2].set_counters(0, 50);
        assert_eq!(
            pick(&ds),
            Some(2),
            "nq: idle means no active connection; inactive ones do not count"
        );
        ds[2].set_counters(1, 0);
        // All busy: (1+1)/1, (1+1)/100, (1+1)/1 → B.
        assert_eq!(
            pick(&ds),
            Some(1),
            "nq falls back to sed's (active+1)/weight"
        );
        ds[1].set_counters(199, 0); // 200/100 = 2 = A's 2/1 → tie → A
        assert_eq!(pick(&ds), Some(0), "nq: tie keeps the first");
    }

    #[test]
    fn skips_quiesced_and_overloaded_even_when_idle() {
        let ds = dests(&[0, 1, 1]);
        ds[1].set_thresholds(1, 0);
        ds[1].bind(ConnClass::Inactive);
        ds[2].set_counters(3, 0);
        assert_eq!(
            pick(&ds),
            Some(2),
            "nq: idle but quiesced/overloaded servers are skipped"
        );
        ds[2].set_weight(0);
        assert_eq!(pick(&ds), None);
    }
}
