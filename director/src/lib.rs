//! An LVS-style director: the dataplane core — packet rewrite for direct
//! routing, IPIP tunnelling and NAT; the fourteen IPVS schedulers; the
//! connection table with IPVS's TCP states, timeouts and persistence; and
//! the packet path joining them — plus, apart from it, the I/O around it.
//!
//! The core (`forward`, `sched`, `conn`, `dataplane`, `service_table`,
//! `dest`) does no I/O and reads no clock. Callers hand it frames as byte
//! slices and the time as [`Millis`]; it hands back rewritten frames,
//! verdicts and counters. That keeps every behaviour testable exactly and
//! fast. Sockets live in [`io`] (AF_PACKET, the only module allowed
//! `unsafe`) and system set-up in [`realserver`] (the `dirctl realserver`
//! helper for DR and TUN real servers). Health checks ([`health`]) follow
//! the same split: their fall/rise and quorum state machines and the
//! configured-to-effective weight overlay are pure; the probes and the
//! tokio monitor around them do the I/O.

#![deny(unsafe_code)]

pub mod api;
pub mod arp;
pub mod cli;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod dataplane;
pub mod dest;
pub mod estimator;
pub mod forward;
pub mod health;
pub mod io;
pub mod metrics;
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
