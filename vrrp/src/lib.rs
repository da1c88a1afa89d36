//! VRRPv3 (RFC 9568, formerly RFC 5798) for the director pair: the two
//! directors elect one master by speaking real VRRP version 3 on the wire,
//! so a keepalived router with the same VRID sees a normal peer.
//!
//! - [`packet`]: the advert wire format: decode untrusted IPv4 datagrams
//!   with every RFC receive check (a named, counted reason per drop), and
//!   encode them.
//! - [`machine`]: the election state machine, sans-IO. It never reads a
//!   clock (`clippy.toml` forbids it) and owns no socket: `now` is passed
//!   in and actions come out, so failover timing is tested exactly on a
//!   virtual clock.
//! - [`driver`]: the only I/O in the crate: a tokio task per interface
//!   owning a raw protocol-112 socket, one timer, notify scripts.
//!
//! Gratuitous ARP and claiming the VIPs are the director's job: it reacts
//! to [`driver::DriverEvent::Transition`].
//!
//! Not supported: IPv6 VRRP, VRRPv2, authentication, accept mode, sync
//! groups, track scripts.

#![forbid(unsafe_code)]

pub mod driver;
pub mod machine;
pub mod packet;

pub use driver::{DriverEvent, DriverInstance, Handle, spawn};
pub use machine::{
    Action, ConfigError, Instance, InstanceConfig, Reason, State, Status, master_down_interval,
    skew_time, virtual_mac,
};
pub use packet::{Advert, Counters, Received, Reject, decode};
