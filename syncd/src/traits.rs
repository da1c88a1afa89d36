//! What the director implements: the live table on the master
//! ([`ConnSource`]) and the synced table on the backup ([`ConnSink`]).
//!
//! Both are synchronous: the source is walked on a blocking thread, and the
//! sink is called from the subscriber's task with chunks of at most a few
//! thousand entries, so each call is short.

use lb_proto::common::{ConnEntry, ServiceTable};
use lb_proto::sync::SyncEvent;

/// Master side: the live connection table.
pub trait ConnSource: Send + Sync + 'static {
    /// Walk the live table (flows and templates) with remaining timeouts as
    /// of now, in any order; called on a blocking thread, may take a while
    /// for 10^6 entries.
    fn for_each_entry(&self, f: &mut dyn FnMut(ConnEntry));
    /// Entries in the table now (flows + templates).
    fn len(&self) -> u64;
    /// True when the table is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The current rule set and its version (replicated to the backup).
    fn service_table(&self) -> ServiceTable;
}

/// Backup side: where synced state goes.
///
/// Errors are sentences; any error makes the subscriber ask for a fresh
/// snapshot (ResyncRequest) instead of going on with a table it can no
/// longer vouch for. A sink must refuse malformed entries (see
/// [`crate::codec::validate_entry`]) rather than store them.
pub trait ConnSink: Send + Sync + 'static {
    /// A snapshot starts: build a new synced table beside the current one
    /// (an earlier unfinished build is discarded).
    fn begin_snapshot(&self, snapshot_id: u64);
    /// The master's estimate of the snapshot's size (SnapshotBegin), called
    /// right after `begin_snapshot`: a hint to reserve capacity once rather
    /// than grow the new table step by step.
    fn expect_snapshot_entries(&self, _snapshot_id: u64, _expected_entries: u64) {}
    /// Entries of the snapshot being built.
    fn apply_snapshot_entries(
        &self,
        snapshot_id: u64,
        entries: Vec<ConnEntry>,
    ) -> Result<(), String>;
    /// The snapshot is complete: it becomes the synced table; drop every
    /// synced entry it did not contain.
    fn end_snapshot(&self, snapshot_id: u64) -> Result<(), String>;
    /// The snapshot being built will not complete (a chunk failed, the
    /// stream broke): discard it. The current table stays.
    fn abort_snapshot(&self, _snapshot_id: u64) {}
    /// Ordered events of one batch (upserts and deletes by key).
    fn apply_events(&self, events: Vec<SyncEvent>) -> Result<(), String>;
    /// The master's rule set.
    fn apply_service_table(&self, table: ServiceTable) -> Result<(), String>;
    /// Synced entries now (flows + templates).
    fn len(&self) -> u64;
    /// True when the synced table is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
