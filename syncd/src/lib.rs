//! Connection-table synchronisation between the two directors of a pair.
//!
//! The VRRP master serves a gRPC stream ([`SyncServer`]); the backup
//! subscribes to it ([`Subscriber`]) and keeps a copy of the master's
//! connection table, so that established flows survive a failover. The
//! stream carries the rule set, a snapshot of the table in chunks, then
//! ordered, sequenced delta batches; the subscriber acks cumulatively and the
//! master measures lag on its own clock. The wire contract is
//! `proto/proto/sync.proto`; this crate implements exactly its comments.
//!
//! Layers, each in its own module:
//! - the protocol core, free of I/O and of clocks: [`log`] (sequencing,
//!   batching, retention), [`master`] (one subscriber's stream seen from the
//!   master), [`subscriber`] (the backup's side), [`handshake`], [`lag`];
//!   every function that needs time takes `now` (unix µs) as an argument, so
//!   that all of it is tested on a virtual clock;
//! - the integration points the director implements: [`ConnSource`],
//!   [`ConnSink`], and the [`Publisher`] the dataplane pushes events into;
//! - a thin tokio/tonic driver: [`server`], [`client`], [`tls`], reading
//!   the clock in exactly one place ([`clock`]).
//!
//! What it never does: touch packets or the connection table itself (the
//! director does, behind the traits), or block a dataplane worker (pushes
//! are a short lock and a vector push, bounded in memory).

#![forbid(unsafe_code)]

pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod handshake;
pub mod lag;
pub mod log;
pub mod master;
pub mod mem;
pub mod publisher;
pub mod status;
pub mod subscriber;
pub mod traits;

pub mod client;
pub mod server;
pub mod tls;

pub use client::{HandoverRequester, Subscriber};
pub use config::{
    MasterConfig, NodeBeat, NodeInfo, NodeViewFn, ReadinessFn, SubscriberConfig, TlsConfig,
};
pub use error::{HandoverError, HandoverReport};
pub use publisher::Publisher;
pub use server::SyncServer;
pub use status::{
    MasterHeartbeat, MasterStatus, SnapshotInfo, SubscriberStatus, SubscriptionStatus,
};
pub use traits::{ConnSink, ConnSource};

/// Time as the protocol core sees it: microseconds since the unix epoch on
/// the local node's clock (the unit of every `*_time_us` field on the wire).
/// The core never reads a clock; drivers pass `now` in.
pub type Micros = u64;
