//! Round robin (`rr`, `ip_vs_rr.c`).
//!
//! The scheduler remembers the server it picked last and, for each new
//! connection, walks the list from the one after it, wrapping around once,
//! and takes the first server that is neither quiesced (weight 0) nor
//! overloaded; the last pick itself is the final candidate. Before any pick
//! the walk starts at the head of the list. When the remembered server is
//! removed from the service, the kernel moves the position back to the
//! server before it, so the walk resumes with the removed server's
//! successor; [`Rr`] does the same in [`Scheduler::update`].

use std::sync::{Arc, Mutex};

use super::{SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The round-robin scheduler.
#[derive(Debug, Default)]
pub struct Rr {
    state: Mutex<RrState>,
}

#[derive(Debug, Default, Clone)]
struct RrState {
    /// The servers as of the last `update`, to find a removed server's
    /// predecessor.
    known: Vec<Arc<Dest>>,
    /// The last pick (the kernel's `sched_data` list position); `None` is
    /// the list head.
    last: Option<Arc<Dest>>,
    /// Where `last` sat in the list the last time we looked (a hint that
    /// saves a search on every pick).
    hint: usize,
}

impl Rr {
    /// A round-robin scheduler positioned at the head of the list.
    pub fn new() -> Rr {
        Rr::default()
    }
}

impl Scheduler for Rr {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = st.last.clone()
            && !dests.iter().any(|d| Arc::ptr_eq(d, &last))
        {
            // ip_vs_rr_del_dest: the position falls back to the removed
            // server's predecessor (or the head).
            let old = st.known.iter().position(|d| Arc::ptr_eq(d, &last));
            st.last = old.and_then(|i| {
                st.known[..i]
                    .iter()
                    .rev()
                    .find(|p| dests.iter().any(|d| Arc::ptr_eq(d, p)))
                    .cloned()
            });
            st.hint = 0;
        }
        st.known = dests.to_vec();
    }

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(dests)
    }

    fn peek(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        // The pick on a copy of the position: the walk stays where it is.
        let mut copy = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        copy.pick(dests)
    }
}

impl RrState {
    /// `ip_vs_rr_schedule`: walk on from the last pick.
    fn pick(&mut self, dests: &[Arc<Dest>]) -> Option<Arc<Dest>> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        // Index of the last pick, or n - 1 so that the walk starts at 0
        // when there is none (the kernel's single pass from the head).
        let last = match &self.last {
            None => n - 1,
            Some(l) if self.hint < n && Arc::ptr_eq(&dests[self.hint], l) => self.hint,
            Some(l) => dests
                .iter()
                .position(|d| Arc::ptr_eq(d, l))
                .unwrap_or(n - 1),
        };
        for k in 1..=n {
            let i = (last + k) % n;
            let d = &dests[i];
            if !d.is_overloaded() && d.weight() > 0 {
                self.last = Some(Arc::clone(d));
                self.hint = i;
                return Some(Arc::clone(d));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::ConnClass;
    use crate::sched::testutil::{dests, index_of, req};

    fn picks(s: &Rr, ds: &[Arc<Dest>], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| index_of(ds, &s.schedule(ds, &req(0)).unwrap()))
            .collect()
    }

    #[test]
    fn cycles_in_list_order_from_the_head() {
        let ds = dests(&[1, 5, 1]);
        let s = Rr::new();
        s.update(&ds);
        assert_eq!(
            picks(&s, &ds, 7),
            [0, 1, 2, 0, 1, 2, 0],
            "ip_vs_rr_schedule: the walk starts after the last pick, weights other than 0 do not matter"
        );
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let ds = dests(&[1, 0, 1, 1]);
        let s = Rr::new();
        s.update(&ds);
        ds[2].set_thresholds(1, 0);
        ds[2].bind(ConnClass::Active);
        assert!(ds[2].is_overloaded());
        assert_eq!(
            picks(&s, &ds, 4),
            [0, 3, 0, 3],
            "ip_vs_rr_schedule skips weight 0 and IP_VS_DEST_F_OVERLOAD"
        );
    }

    #[test]
    fn last_pick_is_the_final_candidate() {
        let ds = dests(&[1, 1, 1]);
        let s = Rr::new();
        s.update(&ds);
        assert_eq!(picks(&s, &ds, 2), [0, 1]);
        ds[0].set_weight(0);
        ds[2].set_weight(0);
        assert_eq!(
            picks(&s, &ds, 2),
            [1, 1],
            "rr: the walk ends on the last pick itself"
        );
        ds[1].set_weight(0);
        assert!(
            s.schedule(&ds, &req(0)).is_none(),
            "rr: no destination available"
        );
    }

    #[test]
    fn removing_the_last_pick_resumes_with_its_successor() {
        let ds = dests(&[1, 1, 1, 1]);
        let s = Rr::new();
        s.update(&ds);
        assert_eq!(picks(&s, &ds, 2), [0, 1]);
        // Remove server 1 (the last pick): ip_vs_rr_del_dest moves the
        // position to server 0, so server 2 comes next.
        let after: Vec<_> = [&ds[0], &ds[2], &ds[3]].into_iter().cloned().collect();
        s.update(&after);
        let got = s.schedule(&after, &req(0)).unwrap();
        assert!(
            Arc::ptr_eq(&got, &ds[2]),
            "ip_vs_rr_del_dest: next pick is the removed server's successor"
        );
    }

    #[test]
    fn removing_the_head_pick_restarts_at_the_head() {
        let ds = dests(&[1, 1, 1]);
        let s = Rr::new();
        s.update(&ds);
        assert_eq!(picks(&s, &ds, 1), [0]);
        let after = ds[1..].to_vec();
        s.update(&after);
        let got = s.schedule(&after, &req(0)).unwrap();
        assert!(
            Arc::ptr_eq(&got, &ds[1]),
            "rr: removed first server → position is the list head"
        );
    }
}
