//! Operator sentences for a scheduler's pick: why [`Scheduler::peek`]
//! chose the server it did, or why it chose none. Built from the servers'
//! figures after the fact; the schedulers themselves stay free of text.
//!
//! [`Scheduler::peek`]: super::Scheduler::peek

use std::fmt::Write as _;
use std::sync::Arc;

use super::{SchedOptions, SchedRequest, SchedulerKind};
use crate::dest::Dest;

/// Servers a scheduler may give a new connection: weight above 0, not
/// overloaded.
fn available(dests: &[Arc<Dest>]) -> usize {
    dests.iter().filter(|d| d.accepts_new()).count()
}

/// "among 3 available servers (of 4)".
fn among(dests: &[Arc<Dest>]) -> String {
    let n = dests.len();
    let a = available(dests);
    let s = if a == 1 { "" } else { "s" };
    if a == n {
        format!("among {a} available server{s}")
    } else {
        format!("among {a} available server{s} (of {n})")
    }
}

/// Why `kind` picks `picked` for `req` from `dests`. `opts` are the
/// service's scheduler flags (sh/mh port hashing).
pub fn explain(
    kind: SchedulerKind,
    opts: SchedOptions,
    dests: &[Arc<Dest>],
    picked: &Dest,
    req: &SchedRequest,
) -> String {
    let w = picked.weight();
    let active = picked.active_conns();
    let inactive = picked.inactive_conns();
    let among = among(dests);
    let client = if opts.port {
        req.client.to_string()
    } else {
        req.client.ip().to_string()
    };
    match kind {
        SchedulerKind::Rr => format!("rr: next in round-robin order {among}"),
        SchedulerKind::Wrr => {
            format!("wrr: next in weighted round-robin order (weight {w}) {among}")
        }
        SchedulerKind::Lc => format!(
            "lc: lowest overhead {} ({active} active x 256 + {inactive} inactive) {among}",
            picked.overhead()
        ),
        SchedulerKind::Wlc => format!(
            "wlc: lowest overhead per weight {}/{w} ({active} active, {inactive} inactive) {among}",
            picked.overhead()
        ),
        SchedulerKind::Sed => format!(
            "sed: shortest expected delay (active + 1) / weight = {}/{w} {among}",
            u64::from(active) + 1
        ),
        SchedulerKind::Nq if active == 0 => {
            format!("nq: first server with no active connection {among}")
        }
        SchedulerKind::Nq => format!(
            "nq: every server busy, shortest expected delay (active + 1) / weight = {}/{w} {among}",
            u64::from(active) + 1
        ),
        SchedulerKind::Fo => format!("fo: highest weight {w} {among}"),
        SchedulerKind::Ovf => format!(
            "ovf: highest weight {w} whose {active} active connections do not exceed it {among}"
        ),
        SchedulerKind::Lblc => format!(
            "lblc: server for destination {} (its cached server, else weighted least connection) {among}",
            req.dest.ip()
        ),
        SchedulerKind::Lblcr => format!(
            "lblcr: least loaded of the server set for destination {} (grown by weighted least connection) {among}",
            req.dest.ip()
        ),
        SchedulerKind::Dh => format!(
            "dh: hash of destination {} selects this server {among}",
            req.dest.ip()
        ),
        SchedulerKind::Sh => {
            let mut s = format!("sh: hash of client {client} selects this server");
            if opts.fallback {
                s.push_str(" (or the next available one: sh-fallback)");
            }
            let _ = write!(s, " {among}");
            s
        }
        SchedulerKind::Mh => {
            let mut s = format!("mh: Maglev hash of client {client} selects this server");
            if opts.fallback {
                s.push_str(" (or the next available one: mh-fallback)");
            }
            let _ = write!(s, " {among}");
            s
        }
        SchedulerKind::Twos => format!(
            "twos: random; this draw of two servers by weight chose it {among}; \
             a new flow may land on another available server"
        ),
    }
}

/// Why `kind` finds no server in `dests`: how many are quiesced,
/// overloaded, or (hashing schedulers) why the hashed one cannot take it.
pub fn explain_none(kind: SchedulerKind, opts: SchedOptions, dests: &[Arc<Dest>]) -> String {
    if dests.is_empty() {
        return format!("{kind}: the service has no real server");
    }
    let quiesced = dests.iter().filter(|d| d.weight() <= 0).count();
    let overloaded = dests
        .iter()
        .filter(|d| d.weight() > 0 && d.is_overloaded())
        .count();
    let a = available(dests);
    let n = dests.len();
    let mut s = if a == 0 {
        format!("{kind}: no available real server among {n}")
    } else {
        // Hashing without fallback (sh, dh, mh) or a full ovf: servers
        // are up, but not for this flow.
        let why = match kind {
            SchedulerKind::Sh | SchedulerKind::Mh if !opts.fallback => {
                "the hashed server cannot take it and the fallback flag is off"
            }
            SchedulerKind::Dh => "the hashed server cannot take it (dh has no fallback)",
            SchedulerKind::Ovf => "every server has more active connections than its weight",
            _ => "none of them can take it",
        };
        format!("{kind}: {a} of {n} real servers available, but {why}")
    };
    let mut parts = Vec::new();
    if quiesced > 0 {
        parts.push(format!("{quiesced} quiesced (weight 0)"));
    }
    if overloaded > 0 {
        parts.push(format!("{overloaded} overloaded (upper threshold)"));
    }
    if !parts.is_empty() {
        let _ = write!(s, ": {}", parts.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{dests, req};

    #[test]
    fn sentences_name_the_scheduler_and_the_figures() {
        let ds = dests(&[1, 2, 0, 1]);
        ds[1].set_counters(0, 3);
        let s = explain(
            SchedulerKind::Wlc,
            SchedOptions::default(),
            &ds,
            &ds[1],
            &req(1),
        );
        assert_eq!(
            s,
            "wlc: lowest overhead per weight 3/2 (0 active, 3 inactive) among 3 available servers (of 4)"
        );
        assert_eq!(
            explain_none(SchedulerKind::Rr, SchedOptions::default(), &dests(&[0, 0])),
            "rr: no available real server among 2: 2 quiesced (weight 0)"
        );
        assert_eq!(
            explain_none(SchedulerKind::Sh, SchedOptions::default(), &dests(&[1, 0])),
            "sh: 1 of 2 real servers available, but the hashed server cannot take it \
             and the fallback flag is off: 1 quiesced (weight 0)"
        );
        let t = explain(
            SchedulerKind::Twos,
            SchedOptions::default(),
            &ds,
            &ds[0],
            &req(1),
        );
        assert!(t.starts_with("twos: random"), "{t}");
    }
}
