//! ARP for the director's data interfaces: the VIPs live in userspace, not
//! in the kernel, so the dataplane must answer "who-has VIP" itself (only
//! while this node is active), announce the VIPs with gratuitous ARP when
//! it becomes active, and resolve real servers and next-hop routers with
//! its own requests.
//!
//! - [`wire`]: parse and emit Ethernet/IPv4 ARP frames (RFC 826), as
//!   complete 60-byte frames with no heap allocation.
//! - [`responder`]: [`ArpResponder`], one per interface — the decision per
//!   received frame ([`ArpOutcome`]), conflict detection, the gratuitous
//!   ARP schedule and the neighbour requests to send.
//! - [`garp`]: keepalived's gratuitous ARP schedule (repeat, second burst
//!   after a delay, periodic refresh).
//! - [`neighbour`]: [`NeighbourCache`] with Linux-like states and timers,
//!   and the lock-free [`NeighbourView`] the workers read.
//!
//! Like the rest of the core, nothing here does I/O or reads a clock: the
//! driver hands in frames and [`Millis`](crate::Millis), and sends what
//! comes back. Every frame is counted in [`ArpCounters`] under exactly one
//! reason.

mod error;
pub mod garp;
pub mod neighbour;
pub mod responder;
pub mod wire;

pub use error::{ArpCounters, ArpError, ArpStat};
pub use garp::{GarpBurst, GarpBurstKind, GarpConfig, GarpSchedule, garp_burst};
pub use neighbour::{
    LearnOutcome, NeighbourCache, NeighbourConfig, NeighbourState, NeighbourView, Solicit,
};
pub use responder::{ArpConfig, ArpOutcome, ArpResponder, Conflict, ConflictKind, Silent};
pub use wire::{ARP_FRAME_LEN, ArpFrame, ArpOp, ArpRepr, BufferTooShort, GarpForm};
