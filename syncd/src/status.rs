//! Status structs for the control API (`GetSyncStatus`) and the VRRP
//! second heartbeat path. Plain data, filled by the drivers.

use std::time::{Duration, Instant, SystemTime};

/// One subscriber as the master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStatus {
    /// Subscriber's node id.
    pub node_id: String,
    /// Subscriber's node name.
    pub node_name: String,
    /// When the stream was accepted (Welcome sent).
    pub connected_since: SystemTime,
    /// Negotiated protocol version.
    pub protocol_version: u32,
    /// Master's epoch.
    pub epoch: u64,
    /// Last batch sequence produced by the master.
    pub last_sequence: u64,
    /// Highest sequence the subscriber acked.
    pub acked_sequence: u64,
    /// Events (and snapshot entries) not yet applied by the subscriber.
    pub entries_behind: u64,
    /// Age of the oldest unacked batch, ms.
    pub ms_behind: u32,
    /// Median push-to-ack latency over the recent window, ms.
    pub ms_behind_p50: u32,
    /// 99th percentile of the same, ms.
    pub ms_behind_p99: u32,
    /// The same median in µs (benchmarks).
    pub ack_latency_p50_us: u64,
    /// The same 99th percentile in µs.
    pub ack_latency_p99_us: u64,
    /// Snapshots sent on this stream.
    pub snapshots_sent: u64,
    /// A snapshot is being sent or awaits its ack.
    pub snapshot_in_progress: bool,
    /// SnapshotBegin to the ack of SnapshotEnd, of the last complete one.
    pub last_snapshot_duration: Option<Duration>,
    /// Entries in it.
    pub last_snapshot_entries: u64,
    /// Its encoded size, bytes.
    pub last_snapshot_bytes: u64,
    /// Bytes sent on this stream (encoded messages).
    pub bytes_sent: u64,
    /// Delta batches sent.
    pub batches_sent: u64,
    /// Delta events sent.
    pub events_sent: u64,
    /// Since the last message from the subscriber.
    pub heard_age: Duration,
    /// The subscriber's synced-table size from its last ack.
    pub subscriber_table_entries: u64,
    /// What the subscriber's last heartbeat said about it (VRRP
    /// instances, uptime, table size).
    pub peer: crate::config::NodeBeat,
}

/// The master side as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterStatus {
    /// Serving (this node is master).
    pub serving: bool,
    /// Current epoch; 0 when not serving.
    pub epoch: u64,
    /// Last batch sequence produced.
    pub last_sequence: u64,
    /// Events dropped by the publisher (queue full) since start.
    pub events_dropped: u64,
    /// Connected subscribers.
    pub subscribers: Vec<SubscriptionStatus>,
}

/// A completed snapshot, subscriber side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Entries applied.
    pub entries: u64,
    /// SnapshotBegin to SnapshotEnd applied.
    pub duration: Duration,
    /// Encoded bytes received for it.
    pub bytes: u64,
}

/// The subscriber side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriberStatus {
    /// A stream is established (Welcome received).
    pub connected: bool,
    /// Master's node id (of the current or last stream).
    pub master_node_id: String,
    /// Master's node name.
    pub master_node_name: String,
    /// Negotiated protocol version; 0 when not connected.
    pub protocol_version: u32,
    /// Master's epoch.
    pub epoch: u64,
    /// When the current stream was established.
    pub connected_since: Option<SystemTime>,
    /// Highest contiguous sequence applied.
    pub applied_sequence: u64,
    /// Last sequence the master said it produced (heartbeat).
    pub master_last_sequence: u64,
    /// Lag as the master's last heartbeat reported it, entries.
    pub entries_behind: u64,
    /// Lag as the master's last heartbeat reported it, ms.
    pub ms_behind: u32,
    /// Since the last master heartbeat.
    pub last_heartbeat_age: Option<Duration>,
    /// Snapshots applied since start.
    pub snapshots_applied: u64,
    /// The last one.
    pub last_snapshot: Option<SnapshotInfo>,
    /// ResyncRequests sent since start.
    pub resyncs: u64,
    /// Errors since start (stream failures, sink errors, refusals).
    pub errors: u64,
    /// The last of them, as a sentence.
    pub last_error: Option<String>,
    /// Streams established after the first.
    pub reconnects: u64,
    /// Delta batches applied since start.
    pub batches_applied: u64,
    /// Delta events applied since start.
    pub events_applied: u64,
    /// Encoded bytes received since start.
    pub bytes_received: u64,
    /// Entries in the synced table (sink).
    pub table_entries: u64,
    /// Master hint from the last NOT_MASTER / SHUTTING_DOWN.
    pub master_hint: String,
}

/// The last heartbeat heard from the master over the sync stream: the
/// second heartbeat path VRRP consults before taking over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterHeartbeat {
    /// When it arrived (tokio's clock, as std).
    pub at: Instant,
    /// Master's node id.
    pub node_id: String,
    /// What the master said about itself (VRRP instances, uptime, table
    /// size).
    pub view: crate::config::NodeBeat,
}

/// Established streams to the master that ended abruptly: closed or reset
/// by the master's side without its SHUTTING_DOWN or NOT_MASTER. A killed
/// master's kernel closes the socket at once, so the pair takes a loss as
/// a hint that the master died and lets VRRP confirm it (a live master's
/// next advert cancels the hint). Silence (three heartbeat intervals) is
/// not a loss: a cut link is silent too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamLosses {
    /// Losses since start.
    pub count: u64,
    /// When the last one was seen (tokio's clock, as std).
    pub last_at: Option<Instant>,
    /// Why the last one ended, as a sentence.
    pub last_reason: String,
}
