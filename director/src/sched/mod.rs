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
                format!("unknown scheduler {s:?} (expected one of {})", names.join(", "))
            })
    }
}
