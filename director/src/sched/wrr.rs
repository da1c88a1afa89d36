//! Weighted round robin (`wrr`, `ip_vs_wrr.c`).
//!
//! The kernel's gcd stepping: `di` is the gcd of the positive weights, `mw`
//! the largest weight less `di - 1`, and `cw` the current weight bar. A
//! pick walks the list from the server after the last pick and takes the
//! first one that is not overloaded and whose weight is at least `cw`; at
//! the end of the list `cw` drops by `di` and the walk restarts at the head;
//! when `cw` falls to zero or below it starts again at `mw`. With weights
//! 4:3:2 one cycle is `A A B A B C A B C`. Quiesced servers (weight 0) never
//! reach the bar. The walk gives up ("all destinations are overloaded")
//! only after every server was checked against a bar of 1.
//!
//! Any change to the servers (add, remove, weight or threshold edit —
//! `ip_vs_wrr_dest_changed`) moves the position back to the head,
//! recomputes `di` and `mw`, and keeps `cw` where possible: reset to `mw`
//! if it is above it (or zero), otherwise rounded down to a multiple of the
//! new `di`, plus one.

use std::sync::{Arc, Mutex};

use super::hash::gcd;
use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The weighted round-robin scheduler.
#[derive(Debug, Default)]
pub struct Wrr {
    state: Mutex<WrrState>,
}

#[derive(Debug, Default, Clone)]
struct WrrState {
    /// Servers with the weight and thresholds they had at the last update;
    /// an identical update is not a change and keeps the position.
    known: Vec<(Arc<Dest>, i32, (u32, u32))>,
    /// Whether `update` (or a first schedule) has set the mark up.
    initialized: bool,
    /// Index of the last pick; `None` is the list head.
    cl: Option<usize>,
    /// Current weight bar.
    cw: i32,
    /// Maximum weight less (di - 1).
    mw: i32,
    /// Step: gcd of the positive weights.
    di: i32,
}

impl Wrr {
    /// A weighted round-robin scheduler with no servers yet.
    pub fn new() -> Wrr {
        Wrr::default()
    }
}

impl WrrState {
    /// `ip_vs_wrr_dest_changed` (and, from a zero mark, `init_svc`).
    fn dest_changed(&mut self, dests: &[Arc<Dest>]) {
        let weights = dests.iter().map(|d| d.weight());
        let g = weights
            .clone()
            .filter(|&w| w > 0)
            .fold(0u32, |g, w| gcd(w as u32, g));
        let di = if g == 0 { 1 } else { g as i32 };
        let max = weights.max().unwrap_or(0).max(0);
        self.cl = None;
        self.di = di;
        self.mw = max - (di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if di > 1 {
            self.cw = (self.cw / di) * di + 1;
        }
        self.known = dests
            .iter()
            .map(|d| (Arc::clone(d), d.weight(), d.thresholds()))
            .collect();
        self.initialized = true;
    }

    fn same_as_known(&self, dests: &[Arc<Dest>]) -> bool {
        self.initialized
            && self.known.len() == dests.len()
            && self
                .known
                .iter()
                .zip(dests)
                .all(|((k, w, t), d)| Arc::ptr_eq(k, d) && *w == d.weight() && *t == d.thresholds())
    }

    /// `ip_vs_wrr_schedule`.
    fn pick(&mut self, dests: &[Arc<Dest>]) -> Option<Arc<Dest>> {
        let n = dests.len();
        if self.cl.is_some_and(|i| i >= n) {
            // A list shorter than the one the mark was set up for: start
            // over at the head rather than index past the end.
            self.cl = None;
        }
        if self.mw == 0 {
            return None;
        }
        let last = self.cl;
        let mut pos = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let from = pos.map_or(0, |i| i + 1);
            for (i, d) in dests.iter().enumerate().skip(from) {
                if !d.is_overloaded() && d.weight() >= self.cw {
                    self.cl = Some(i);
                    return Some(Arc::clone(d));
                }
                if stop == Some(i) {
                    self.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Every server was already checked against a bar of 1.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first pass at bar 1 only covered the servers after
                // `last`; finish with those up to and including it.
                stop = last;
            }
        }
    }
}

impl Scheduler for Wrr {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.same_as_known(dests) {
            st.dest_changed(dests);
        }
    }

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.initialized {
            st.dest_changed(dests);
        }
        st.pick(dests)
    }

    fn peek(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        // The same steps on a copy of the mark: position and bar stay.
        let mut copy = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !copy.initialized {
            copy.dest_changed(dests);
        }
        copy.pick(dests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req};

    fn picks(s: &Wrr, ds: &[Arc<Dest>], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| index_of(ds, &s.schedule(ds, &req(0)).unwrap()))
            .collect()
    }

    #[test]
    fn weights_4_3_2_give_the_kernel_sequence() {
        let ds = dests(&[4, 3, 2]);
        let s = Wrr::new();
        s.update(&ds);
        let seq = picks(&s, &ds, 18);
        assert_eq!(
            seq,
            [0, 0, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 1, 2],
            "ip_vs_wrr_schedule: cw steps 4,3,2,1 by gcd 1, each pass takes servers with weight >= cw"
        );
        let count = |k| seq[..9].iter().filter(|&&i| i == k).count();
        assert_eq!(
            (count(0), count(1), count(2)),
            (4, 3, 2),
            "one wrr cycle gives each server its weight"
        );
    }

    #[test]
    fn gcd_steps_skip_empty_passes() {
        // Weights 4:2 → di 2, mw 4 - 1 = 3; bars 3, 1.
        let ds = dests(&[4, 2]);
        let s = Wrr::new();
        s.update(&ds);
        assert_eq!(
            picks(&s, &ds, 6),
            [0, 0, 1, 0, 0, 1],
            "wrr: mw = max - (di - 1), cw steps by di"
        );
    }

    #[test]
    fn update_resets_position_to_head_and_adjusts_cw() {
        let ds = dests(&[4, 3, 2]);
        let s = Wrr::new();
        s.update(&ds);
        assert_eq!(picks(&s, &ds, 3), [0, 0, 1]); // cw now 3, cl = B
        // Identical update: not a change, position kept.
        s.update(&ds);
        assert_eq!(
            picks(&s, &ds, 1),
            [0],
            "an update without a change keeps the wrr mark"
        );
        // cw = 2 and cl = A here. Change C's weight to 4: di 1, mw 4;
        // cw 2 <= mw and di == 1 → cw stays 2; cl back to head, so the
        // walk restarts at A with bar 2 (A B C), then bar 1 (A B ...).
        ds[2].set_weight(4);
        s.update(&ds);
        assert_eq!(
            picks(&s, &ds, 5),
            [0, 1, 2, 0, 1],
            "ip_vs_wrr_dest_changed: cl := head, cw kept when <= mw"
        );
    }

    #[test]
    fn update_rounds_cw_to_the_new_gcd() {
        // 6:3 → di 3, mw 4 (bars 4, 1). Start, pick once (A at cw 4).
        let ds = dests(&[6, 3]);
        let s = Wrr::new();
        s.update(&ds);
        assert_eq!(picks(&s, &ds, 1), [0]);
        // Weights 6:4 → di 2, mw 5. cw 4 <= 5 and di > 1 → cw = 4/2*2+1 = 5.
        ds[1].set_weight(4);
        s.update(&ds);
        let st = s.state.lock().unwrap();
        assert_eq!(
            (st.di, st.mw, st.cw, st.cl),
            (2, 5, 5, None),
            "wrr: cw = (cw / di) * di + 1"
        );
    }

    #[test]
    fn cw_above_new_mw_resets_to_mw() {
        let ds = dests(&[8, 1]);
        let s = Wrr::new();
        s.update(&ds);
        ds[0].set_weight(2);
        s.update(&ds);
        let st = s.state.lock().unwrap();
        assert_eq!((st.mw, st.cw), (2, 2), "wrr: cw > mw → cw = mw");
    }

    #[test]
    fn overloaded_and_quiesced_are_skipped_and_all_out_is_none() {
        let ds = dests(&[4, 3, 2]);
        let s = Wrr::new();
        s.update(&ds);
        ds[0].set_thresholds(1, 0);
        ds[0].bind(ConnClass::Active);
        let seq = picks(&s, &ds, 5);
        assert!(
            !seq.contains(&0),
            "wrr skips IP_VS_DEST_F_OVERLOAD: {seq:?}"
        );
        ds[1].set_weight(0);
        s.update(&ds);
        let seq = picks(&s, &ds, 3);
        assert_eq!(seq, [2, 2, 2], "wrr: weight 0 never reaches cw >= 1");
        ds[2].set_thresholds(1, 0);
        ds[2].bind(ConnClass::Active);
        assert!(
            s.schedule(&ds, &req(0)).is_none(),
            "wrr: all destinations are overloaded"
        );
        assert!(
            s.schedule(&ds, &req(0)).is_none(),
            "wrr: stays None, no endless loop"
        );
    }

    #[test]
    fn all_zero_weights_is_none() {
        let ds = dests(&[0, 0]);
        let s = Wrr::new();
        s.update(&ds);
        assert!(
            s.schedule(&ds, &req(0)).is_none(),
            "wrr: mw == 0 → no destination available"
        );
    }

    #[test]
    fn schedule_before_update_sets_up_from_the_list() {
        let ds = dests(&[2, 1]);
        let s = Wrr::new();
        assert_eq!(picks(&s, &ds, 3), [0, 0, 1]);
    }
}
