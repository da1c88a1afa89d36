//! The dataplane core of an LVS-style director: packet rewrite for direct
//! routing, IPIP tunnelling and NAT; the fourteen IPVS schedulers; and the
//! connection table with IPVS's TCP states, timeouts and persistence.
//!
//! This crate does no I/O and reads no clock. Callers hand it frames as
//! byte slices and the time as [`Millis`]; it hands back rewritten frames,
//! verdicts and counters. That keeps every behaviour testable exactly and
//! fast, and leaves sockets to the daemon's I/O module.

#![deny(unsafe_code)]

pub mod conn;
pub mod dataplane;
pub mod dest;
pub mod forward;
pub mod io;
pub mod realserver;
pub mod sched;
pub mod service;
pub mod service_table;
pub mod time;
pub mod types;

pub use dest::{ConnClass, Dest, StatSlot, Stats};
pub use service::{Persistence, Service, ServiceKey};
pub use service_table::{DestSpec, ServiceSpec, ServiceTable, SpecError};
pub use time::Millis;
pub use types::{ForwardMethod, Protocol, TcpFlags};
