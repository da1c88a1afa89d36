//! Weighted overflow (`ovf`, `ip_vs_ovf.c`).
//!
//! Connections go to the highest-weight server until its *active*
//! connections exceed its weight, then overflow to the next highest. As in
//! the kernel, a server is skipped when `active > weight`, so it takes
//! connections while `active <= weight` (the weight is a soft cap of
//! `weight + 1` simultaneous active connections). Quiesced and overloaded
//! servers are skipped; ties go to the first in list order.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The weighted-overflow scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ovf;

impl Scheduler for Ovf {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ovf
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut best: Option<(&Arc<Dest>, i32)> = None;
        for d in dests {
            let w = d.weight();
            if d.is_overloaded() || w == 0 || i64::from(d.active_conns()) > i64::from(w) {
                continue;
            }
            if best.is_none_or(|(_, hw)| w > hw) {
                best = Some((d, w));
            }
        }
        best.map(|(d, _)| Arc::clone(d))
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
        Ovf.schedule(ds, &req(0)).map(|d| index_of(ds, &d))
    }

    #[test]
    fn overflows_when_active_exceeds_weight() {
        let ds = dests(&[2, 3, 3]);
        assert_eq!(pick(&ds), Some(1), "ovf: highest weight, tie → first");
        ds[1].set_counters(3, 100);
        assert_eq!(
            pick(&ds),
            Some(1),
            "ovf: active == weight still accepted (kernel skips only active > weight)"
        );
        ds[1].set_counters(4, 0);
        assert_eq!(
            pick(&ds),
            Some(2),
            "ovf: active > weight overflows to the next"
        );
        ds[2].set_counters(4, 0);
        assert_eq!(pick(&ds), Some(0));
        ds[0].set_counters(3, 0);
        assert_eq!(pick(&ds), None, "ovf: every server over its weight → none");
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[5, 0, 1]);
        ds[0].set_thresholds(1, 0);
        ds[0].bind(ConnClass::Inactive);
        assert_eq!(
            pick(&ds),
            Some(2),
            "ovf skips IP_VS_DEST_F_OVERLOAD and weight 0"
        );
    }
}
