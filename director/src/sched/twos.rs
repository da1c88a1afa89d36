//! Weighted random twos choice (`twos`, `ip_vs_twos.c`).
//!
//! Two servers are drawn at random, each with probability proportional to
//! its weight, and the one with the lower `overhead / weight` wins; on a tie
//! the first draw wins. As in the kernel, each draw is a number in
//! `0..=total_weight` (note the inclusive bound: the first available server
//! gets one extra chance), walked down the list subtracting weights until it
//! reaches zero or below. Quiesced and overloaded servers take no part.
//!
//! The scheduler draws no randomness of its own: the low 32 bits of
//! [`SchedRequest::entropy`] are the first draw and the high 32 bits the
//! second, so a test (or a replay) decides every pick.

use std::sync::Arc;

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The weighted twos-choice scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Twos;

fn eligible(d: &Dest) -> Option<u64> {
    let w = d.weight();
    (!d.is_overloaded() && w > 0).then_some(w as u64)
}

impl Scheduler for Twos {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Twos
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut total: u64 = 0;
        let mut fallback = None;
        for d in dests {
            if let Some(w) = eligible(d) {
                total += w;
                fallback = Some(d);
            }
        }
        let fallback = fallback?;
        let span = total + 1;
        let mut r1 = i64::try_from(u64::from(req.entropy as u32) % span).unwrap_or(i64::MAX);
        let mut r2 =
            i64::try_from(u64::from((req.entropy >> 32) as u32) % span).unwrap_or(i64::MAX);
        let mut c1: Option<(&Arc<Dest>, u64, u64)> = None;
        let mut c2: Option<(&Arc<Dest>, u64, u64)> = None;
        for d in dests {
            let Some(w) = eligible(d) else { continue };
            r1 -= w as i64;
            r2 -= w as i64;
            if r1 <= 0 && c1.is_none() {
                c1 = Some((d, w, d.overhead()));
            }
            if r2 <= 0 && c2.is_none() {
                c2 = Some((d, w, d.overhead()));
            }
            if c1.is_some() && c2.is_some() {
                break;
            }
        }
        // Weights can change between the two walks; the kernel then keeps
        // the last available server as its first choice.
        let (d1, w1, oh1) = c1.unwrap_or((fallback, 0, 0));
        match c2 {
            Some((d2, w2, oh2)) if w2 * oh1 > w1 * oh2 => Some(Arc::clone(d2)),
            _ => Some(Arc::clone(d1)),
        }
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // `schedule` keeps no state: the pick is a function of the
        // servers' figures and `req.entropy`. The same bits give the same
        // pick; another packet brings other bits and may land elsewhere.
        self.schedule(dests, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req};

    fn pick(ds: &[Arc<Dest>], r1: u32, r2: u32) -> Option<usize> {
        let mut rq = req(0);
        rq.entropy = u64::from(r1) | (u64::from(r2) << 32);
        Twos.schedule(ds, &rq).map(|d| index_of(ds, &d))
    }

    #[test]
    fn draws_walk_the_weights() {
        // Weights 2,3 → total 5, draws in 0..=5.
        // r=0,1,2 → A (0-2<=0, 1-2, 2-2); r=3,4,5 → B.
        let ds = dests(&[2, 3]);
        for r in 0..=5u32 {
            let want = if r <= 2 { 0 } else { 1 };
            assert_eq!(
                pick(&ds, r, r),
                Some(want),
                "twos: draw {r} → server {want}"
            );
        }
        assert_eq!(
            pick(&ds, 6, 6),
            Some(0),
            "twos: draws are taken modulo total_weight + 1"
        );
    }

    #[test]
    fn lower_overhead_per_weight_wins_tie_to_first_draw() {
        let ds = dests(&[2, 3]);
        // Equal load: first draw wins.
        assert_eq!(pick(&ds, 0, 5), Some(0), "twos: equal overhead → choice1");
        ds[0].set_counters(1, 0); // 256/2 = 128 vs 0
        assert_eq!(
            pick(&ds, 0, 5),
            Some(1),
            "twos: weight2*overhead1 > weight1*overhead2 → choice2"
        );
        ds[1].set_counters(1, 128); // 384/3 = 128 vs 128 → tie
        assert_eq!(pick(&ds, 0, 5), Some(0), "twos: tie keeps choice1");
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[4, 0, 1]);
        ds[0].set_thresholds(1, 0);
        ds[0].bind(ConnClass::Active);
        for r in 0..10 {
            assert_eq!(
                pick(&ds, r, r * 7),
                Some(2),
                "twos: only non-overloaded weight > 0 servers are drawn"
            );
        }
        ds[2].set_weight(0);
        assert_eq!(pick(&ds, 0, 0), None);
    }
}
