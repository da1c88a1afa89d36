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
