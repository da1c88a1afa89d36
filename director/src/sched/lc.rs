//! Least connection (`lc`, `ip_vs_lc.c`).
//!
//! Picks the server with the smallest overhead (`active × 256 + inactive`,
//! [`Dest::overhead`]) among those that are neither quiesced (weight 0) nor
//! overloaded. Weights other than 0 play no part. The comparison is strict,
//! so among equally loaded servers the first in list order wins.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The least-connection scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Lc;

impl Scheduler for Lc {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lc
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut least: Option<(&Arc<Dest>, u64)> = None;
        for d in dests {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            let doh = d.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((d, doh));
            }
        }
        least.map(|(d, _)| Arc::clone(d))
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
        Lc.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn least_overhead_wins_and_ties_go_to_the_first() {
        let ds = dests(&[1, 100, 1]);
        assert_eq!(
            pick(&ds),
            Some(0),
            "lc: equal load → first in list (strict <)"
        );
        ds[0].set_counters(1, 0); // 256
        ds[1].set_counters(0, 255); // 255
        ds[2].set_counters(0, 255); // 255
        assert_eq!(
            pick(&ds),
            Some(1),
            "lc: overhead = active*256 + inactive; tie → first"
        );
        ds[1].set_counters(0, 256);
        assert_eq!(pick(&ds), Some(2), "lc ignores weight: 255 < 256");
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[0, 1, 1]);
        ds[2].set_counters(5, 0);
        ds[1].set_thresholds(1, 0);
        ds[1].bind(ConnClass::Inactive);
        assert_eq!(
            pick(&ds),
            Some(2),
            "lc skips weight 0 and IP_VS_DEST_F_OVERLOAD"
        );
        ds[2].set_weight(0);
        assert_eq!(pick(&ds), None, "lc: no destination available");
    }
}
