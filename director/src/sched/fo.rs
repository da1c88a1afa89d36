//! Weighted failover (`fo`, `ip_vs_fo.c`).
//!
//! Every new connection goes to the available server with the highest
//! weight; the others only take over when it is quiesced or overloaded.
//! Among servers of equal weight the first in list order wins (the
//! comparison is strict). Load does not matter.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The weighted-failover scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fo;

impl Scheduler for Fo {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Fo
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut best: Option<&Arc<Dest>> = None;
        let mut hw = 0;
        for d in dests {
            let w = d.weight();
            if !d.is_overloaded() && w > hw {
                best = Some(d);
                hw = w;
            }
        }
        best.cloned()
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // `schedule` keeps no state: a pure function of the servers' weights.
        self.schedule(dests, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req};

    fn pick(ds: &[Arc<Dest>]) -> Option<usize> {
        Fo.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn highest_weight_then_next() {
        let ds = dests(&[2, 5, 5, 3]);
        ds[1].set_counters(1000, 0);
        assert_eq!(
            pick(&ds),
            Some(1),
            "fo: highest weight wins regardless of load; tie → first"
        );
        ds[1].set_thresholds(1, 0);
        ds[1].bind(ConnClass::Active);
        assert_eq!(
            pick(&ds),
            Some(2),
            "fo: overloaded server fails over to the next highest"
        );
        ds[2].set_weight(0);
        assert_eq!(pick(&ds), Some(3), "fo: quiesced server is never picked");
        ds[0].set_weight(0);
        ds[3].set_weight(0);
        assert_eq!(pick(&ds), None, "fo: no destination available");
    }
}
