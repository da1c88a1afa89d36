//! The fourteen IPVS schedulers, one file each, behind one trait.
//!
//! A scheduler picks the real server for a *new* connection; existing
//! connections never consult it (the connection table pins them). Every
//! scheduler follows the kernel's semantics (`net/netfilter/ipvs/ip_vs_*.c`):
//! a server with weight 0 is quiesced and never picked, an overloaded server
//! (upper threshold reached) is skipped, and the load figure is
//! [`Dest::overhead`] (active × 256 + inactive).
//!
//! Schedulers read no clock and draw no randomness: `now` and random bits
//! arrive in the [`SchedRequest`]. Hashing schedulers (sh, dh, mh, lblc,
//! lblcr) use fixed, unseeded hashes so that both directors of a pair map a
//! client to the same real server.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::dest::Dest;
use crate::time::Millis;
use crate::types::Protocol;

mod dh;
mod explain;
mod fo;
mod hash;
mod lblc;
mod lblcr;
mod lc;
mod locality;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

#[cfg(test)]
mod testutil;

pub use dh::Dh;
pub use explain::{explain, explain_none};
pub use fo::Fo;
pub use lblc::{DEFAULT_EXPIRATION, Lblc};
pub use lblcr::Lblcr;
pub use lc::Lc;
pub use mh::{MH_TABLE_MAX, MH_TABLE_MIN, Mh};
pub use nq::Nq;
pub use ovf::Ovf;
pub use rr::Rr;
pub use sed::Sed;
pub use sh::Sh;
pub use twos::Twos;
pub use wlc::Wlc;
pub use wrr::Wrr;

/// Why a scheduler could not be built from its options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The Maglev lookup-table size is not a prime number; Maglev's
    /// permutations only cover every slot when the size is prime.
    #[error("mh table size {0} is not prime (use a prime such as 4093)")]
    MhTableNotPrime(u32),
    /// The Maglev lookup-table size is outside the range IPVS offers
    /// (251 to 131071, `CONFIG_IP_VS_MH_TAB_INDEX` 8 to 17).
    #[error("mh table size {size} is out of range {min}..={max}")]
    MhTableSizeOutOfRange {
        /// The size asked for.
        size: u32,
        /// Smallest size accepted.
        min: u32,
        /// Largest size accepted.
        max: u32,
    },
}

/// Build the scheduler `kind` for one virtual service.
///
/// `opts` matter to sh and mh (fallback, port, table size) and are ignored
/// by the others. The new scheduler knows no real servers yet: call
/// [`Scheduler::update`] with the service's servers before scheduling
/// (table-driven schedulers also build their tables lazily on first use).
pub fn new(kind: SchedulerKind, opts: SchedOptions) -> Result<Arc<dyn Scheduler>, SchedError> {
    Ok(match kind {
        SchedulerKind::Rr => Arc::new(Rr::new()),
        SchedulerKind::Wrr => Arc::new(Wrr::new()),
        SchedulerKind::Lc => Arc::new(Lc),
        SchedulerKind::Wlc => Arc::new(Wlc),
        SchedulerKind::Lblc => Arc::new(Lblc::new()),
        SchedulerKind::Lblcr => Arc::new(Lblcr::new()),
        SchedulerKind::Dh => Arc::new(Dh::new()),
        SchedulerKind::Sh => Arc::new(Sh::new(opts)),
        SchedulerKind::Sed => Arc::new(Sed),
        SchedulerKind::Nq => Arc::new(Nq),
        SchedulerKind::Fo => Arc::new(Fo),
        SchedulerKind::Ovf => Arc::new(Ovf),
        SchedulerKind::Mh => Arc::new(Mh::new(opts)?),
        SchedulerKind::Twos => Arc::new(Twos),
    })
}

/// What a scheduler knows about the new connection it places.
#[derive(Debug, Clone, Copy)]
pub struct SchedRequest {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client address and port (the packet's source).
    pub client: SocketAddr,
    /// The packet's destination (the VIP and virtual port); lblc, lblcr and
    /// dh hash on its address.
    pub dest: SocketAddr,
    /// The driver's clock, for the lblc/lblcr cache expiry.
    pub now: Millis,
    /// Random bits supplied by the caller (twos). Schedulers that need
    /// randomness take it from here, never from a generator of their own.
    pub entropy: u64,
}

/// Service-wide options that change how a scheduler picks (ipvsadm `-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedOptions {
    /// sh/mh: when the hashed server is unavailable, try the next one
    /// (`sh-fallback` / `mh-fallback`, ipvsadm `-b flag-1`).
    pub fallback: bool,
    /// sh/mh: hash the client port too (`sh-port` / `mh-port`, `-b flag-2`).
    pub port: bool,
    /// mh lookup-table size; must be prime. IPVS default 4093.
    pub mh_table_size: u32,
}

impl Default for SchedOptions {
    fn default() -> Self {
        SchedOptions {
            fallback: false,
            port: false,
            mh_table_size: 4093,
        }
    }
}

/// A scheduling algorithm for one virtual service.
///
/// Called from every worker thread at once (`&self`); implementations keep
/// their mutable state (round-robin position, caches, lookup tables) behind
/// their own short locks or atomics.
pub trait Scheduler: Send + Sync + fmt::Debug {
    /// Which algorithm this is.
    fn kind(&self) -> SchedulerKind;

    /// The service's real servers changed: one added, removed, or its weight
    /// or thresholds edited. Rebuild lookup tables (sh, dh, mh), forget
    /// positions and cache entries of removed servers. The control plane
    /// calls this before publishing the new server list.
    fn update(&self, dests: &[Arc<Dest>]);

    /// Pick a real server for a new connection from `dests` (the service's
    /// current servers, in configuration order), or `None` when no server
    /// can take it (all quiesced or overloaded: IPVS logs "no destination
    /// available" and drops).
    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>>;

    /// What [`Scheduler::schedule`] would pick for `req` now, without any
    /// side effect: no position advanced (rr, wrr), no cache entry made,
    /// refreshed or collected (lblc, lblcr), no lookup table kept (sh, dh,
    /// mh). A `schedule` with the same servers, figures and request right
    /// after picks the same server. This is the "which real server would
    /// take this flow?" query.
    ///
    /// The default calls `schedule`, which is exact only for a scheduler
    /// whose `schedule` changes nothing; one that keeps state must
    /// override it. Each of the fourteen here says why its answer is exact.
    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        self.schedule(dests, req)
    }
}

/// The IPVS scheduling algorithms, by their ipvsadm names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (IPVS default).
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Weighted random twos choice.
    Twos,
}

impl SchedulerKind {
    /// Every scheduler, in ipvsadm's documentation order.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    /// The ipvsadm name (`-s NAME`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Twos => "twos",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown scheduler {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::testutil::{dests, req, req_at};
    use super::*;
    use crate::dest::ConnClass;

    /// Every scheduler with the flag combinations that change its path.
    fn all_kinds() -> Vec<(SchedulerKind, SchedOptions)> {
        let mut v: Vec<_> = SchedulerKind::ALL
            .into_iter()
            .map(|k| (k, SchedOptions::default()))
            .collect();
        for k in [SchedulerKind::Sh, SchedulerKind::Mh] {
            v.push((
                k,
                SchedOptions {
                    fallback: true,
                    port: true,
                    ..SchedOptions::default()
                },
            ));
        }
        v
    }

    fn addr(d: Option<Arc<Dest>>) -> Option<SocketAddr> {
        d.map(|d| d.addr())
    }

    /// Request `i`: clients, destination addresses (lblc, lblcr, dh),
    /// entropy (twos) and time (the lblc/lblcr collection) all vary.
    fn request(i: u32) -> SchedRequest {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0xC000_0200 + i % 7)),
            40000 + (i % 3) as u16,
        );
        let dest = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 5) as u8)), 80);
        let mut r = req_at(client, dest, Millis(u64::from(i) * 7 * 60_000));
        r.entropy = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        r
    }

    #[test]
    fn peek_is_what_schedule_picks_next() {
        for (kind, opts) in all_kinds() {
            let ds = dests(&[3, 1, 0, 2, 5]);
            ds[3].set_counters(2, 1);
            ds[4].set_thresholds(9, 0);
            ds[4].set_counters(8, 0);
            let s = new(kind, opts).unwrap();
            s.update(&ds);
            for i in 0..60 {
                let r = request(i);
                let first = addr(s.peek(&ds, &r));
                let again = addr(s.peek(&ds, &r));
                assert_eq!(first, again, "{kind} {opts:?}: peek {i} changed state");
                let got = s.schedule(&ds, &r);
                assert_eq!(
                    addr(got.clone()),
                    first,
                    "{kind} {opts:?}: schedule {i} picked other than peek"
                );
                // The new connection loads the server, as the table would.
                if let Some(d) = got {
                    d.bind(ConnClass::Active);
                }
            }
        }
    }

    #[test]
    fn peek_before_the_first_update_keeps_nothing() {
        for (kind, opts) in all_kinds() {
            let ds = dests(&[2, 1, 1]);
            let s = new(kind, opts).unwrap();
            let p = addr(s.peek(&ds, &req(4)));
            assert_eq!(
                addr(s.schedule(&ds, &req(4))),
                p,
                "{kind} {opts:?}: a lazily built table gives the peeked server"
            );
        }
    }

    #[test]
    fn peek_does_not_advance_round_robin() {
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr] {
            let ds = dests(&[1, 1, 1]);
            let s = new(kind, SchedOptions::default()).unwrap();
            s.update(&ds);
            for _ in 0..5 {
                assert_eq!(addr(s.peek(&ds, &req(0))), Some(ds[0].addr()), "{kind}");
            }
            assert_eq!(addr(s.schedule(&ds, &req(0))), Some(ds[0].addr()));
            for _ in 0..5 {
                assert_eq!(
                    addr(s.peek(&ds, &req(0))),
                    Some(ds[1].addr()),
                    "{kind}: after one pick the walk points at the second server"
                );
            }
        }
    }

    #[test]
    fn peek_does_not_fill_the_locality_caches() {
        let ds = dests(&[1, 1]);
        let lblc = Lblc::new();
        let lblcr = Lblcr::new();
        for i in 0..10 {
            lblc.peek(&ds, &request(i));
            lblcr.peek(&ds, &request(i));
        }
        assert_eq!(lblc.cache_len(), 0, "lblc: peek makes no cache entry");
        assert_eq!(lblcr.cache_len(), 0, "lblcr: peek makes no cache entry");
        lblcr.schedule(&ds, &request(0));
        ds[0].set_counters(5, 0);
        ds[1].set_weight(20);
        let dst = request(0).dest.ip();
        lblcr.peek(&ds, &request(0));
        assert_eq!(lblcr.set_len(dst), Some(1), "lblcr: peek grows no set");
    }
}
