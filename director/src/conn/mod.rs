//! The connection table: IPVS's connection entries, TCP states and
//! timeouts, persistence templates, and the new-flow path that ties them to
//! the schedulers — with no I/O and no clock (time arrives as [`Millis`]).
//!
//! * [`key`] — connection, NAT-reply and template keys, and the keyed flow
//!   hash.
//! * [`state`] — IPVS TCP states and the kernel's INPUT / OUTPUT /
//!   INPUT_ONLY transition tables.
//! * [`timeouts`] — per-state timeouts, settable like `ipvsadm --set`.
//! * [`table`] — the sharded, bounded table: lookups, NAT replies, expiry.
//! * [`schedule`] — the packet path: existing connection, or a new one via
//!   persistence template and scheduler (`ip_vs_schedule`).
//! * [`record`] — plain-data records for connection sync, export/import.
//!
//! Semantics follow the Linux kernel (`net/netfilter/ipvs/`); the module
//! docs of [`schedule`] and [`state`] list the rules and the sysctl defaults
//! they assume. Every mutating call reports what it changed through a
//! [`ConnEvent`] callback, so the sync service can stream deltas without a
//! hidden queue.
//!
//! [`Millis`]: crate::time::Millis

use std::time::Duration;

pub mod key;
pub mod record;
pub mod schedule;
pub mod state;
pub mod table;
pub mod timeouts;

pub use key::{ConnKey, FTP_PORT, ReplyKey, TemplateKey};
pub use record::{ConnRecord, ImportError, ImportOutcome, RecordFlags};
pub use schedule::{InOutcome, Packet};
pub use state::{ConnState, Direction, TcpEvent, TcpFlags, TcpState, next_tcp_state};
pub use table::{ConnTable, DestCounts, ExpireReport, ReplyOutcome, TableConfig};
pub use timeouts::{TEMPLATE_RECHECK, Timeouts};

/// A change to the table, for the sync service (and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A connection or a persistence template (`record.flags.template`) was
    /// created.
    Created(ConnRecord),
    /// A connection's TCP state changed.
    StateChanged {
        /// The connection.
        key: ConnKey,
        /// State before the packet.
        from: ConnState,
        /// State after the packet.
        to: ConnState,
        /// The timer it was re-armed with.
        timeout: Duration,
    },
    /// A connection or template left the table: it expired, was replaced by
    /// a new connection on the same ports, or was removed.
    Expired(ConnRecord),
}

/// Why the table did not give a packet a connection. Each is a drop reason
/// the caller counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Miss {
    /// No live connection, and the packet may not start one (TCP without
    /// SYN, or with RST; or a NAT reply with no connection). After a
    /// failover without sync, every established flow's packets land here.
    #[error("no connection, and the packet cannot start one")]
    NoConnection,
    /// The scheduler found no real server (all quiesced or overloaded).
    #[error("no destination available")]
    NoDestAvailable,
    /// The table is at its bound; counted in [`ConnTable::drops_full`].
    #[error("connection table full")]
    TableFull,
    /// The packet's protocol, address or port is not the service's.
    #[error("packet does not belong to this virtual service")]
    NotThisService,
    /// A port-zero service without persistence cannot schedule (the kernel
    /// refuses it too).
    #[error("port-zero service needs persistence")]
    PortZeroWithoutPersistence,
}

impl Miss {
    /// Every reason, for per-reason counters.
    pub const ALL: [Miss; 5] = [
        Miss::NoConnection,
        Miss::NoDestAvailable,
        Miss::TableFull,
        Miss::NotThisService,
        Miss::PortZeroWithoutPersistence,
    ];
}
