//! The master's event log for one epoch: events become numbered batches, and
//! recent batches are retained for resume and for subscribers that lag.
//!
//! Why one log per epoch and not per subscriber: sequences belong to the
//! epoch (sync.proto, SEQUENCES), so a subscriber that reconnects can resume
//! from any retained batch, and several subscribers share the same sealed
//! batches (`Arc`). A batch is sealed when it reaches the event or byte cap,
//! or when its oldest event has waited `batch_delay`. Retention is bounded
//! in events and bytes; a subscriber whose position falls off the end gets a
//! snapshot instead (RETENTION_EXCEEDED). No I/O, no clock: `now` is passed.

use std::collections::VecDeque;
use std::sync::Arc;

use lb_proto::common::ServiceTable;
use lb_proto::sync::{DeltaBatch, SyncEvent};
use prost::Message;

use crate::Micros;
use crate::codec::{ELEMENT_OVERHEAD, MAX_MESSAGE_BYTES, event_cost};

/// Batching and retention limits.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Events per batch at most.
    pub max_batch_events: usize,
    /// Encoded bytes per batch at most.
    pub max_batch_bytes: usize,
    /// Longest wait of an event in the open batch, µs.
    pub batch_delay_us: u64,
    /// Retained events at most.
    pub retain_events: u64,
    /// Retained bytes at most.
    pub retain_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 4096,
            max_batch_bytes: 256 * 1024,
            batch_delay_us: 2_000,
            retain_events: 1_000_000,
            retain_bytes: 128 * 1024 * 1024,
        }
    }
}

/// A sealed batch, shared by every subscriber that sends it.
#[derive(Debug)]
pub struct SealedBatch {
    /// The message (sequence, seal time, events).
    pub batch: DeltaBatch,
    /// Events in it.
    pub events: u64,
    /// Events in the epoch up to and including this batch.
    pub cum_events: u64,
    /// When its first event entered the log (≈ pushed), µs.
    pub first_event_us: Micros,
    /// Encoded size.
    pub bytes: usize,
}

/// One retained item, in stream order.
#[derive(Debug, Clone)]
pub enum LogItem {
    /// A delta batch.
    Batch(Arc<SealedBatch>),
    /// A new rule set, sent between the batches it falls between.
    ServiceTable(Arc<ServiceTable>),
}

#[derive(Debug)]
struct Slot {
    /// Sequence of the last batch at or before this item.
    seq: u64,
    item: LogItem,
    events: u64,
    bytes: usize,
}

/// Sequencing, batching and retention for one epoch.
#[derive(Debug)]
pub struct EventLog {
    cfg: LogConfig,
    epoch: u64,
    slots: VecDeque<Slot>,
    /// Position (monotonic item index) of `slots[0]`.
    base_pos: u64,
    last_seq: u64,
    cum_events: u64,
    /// Every batch <= this was dropped (retention) or is unusable (overflow);
    /// resume from below it is impossible.
    dropped_through: u64,
    retained_events: u64,
    retained_bytes: usize,
    open: Vec<SyncEvent>,
    open_bytes: usize,
    open_since: Option<Micros>,
    table: Arc<ServiceTable>,
    /// Bumped when events were lost before sequencing (publisher overflow):
    /// every stream must restart from a snapshot.
    generation: u64,
    /// Events refused because a single one exceeds the message limit.
    oversized: u64,
}

impl EventLog {
    /// An empty log for `epoch`, holding `table` as the current rule set.
    pub fn new(cfg: LogConfig, epoch: u64, table: ServiceTable) -> Self {
        let mut cfg = cfg;
        cfg.max_batch_bytes = cfg
            .max_batch_bytes
            .clamp(1024, MAX_MESSAGE_BYTES - 64 * 1024);
        cfg.max_batch_events = cfg.max_batch_events.max(1);
        Self {
            cfg,
            epoch,
            slots: VecDeque::new(),
            base_pos: 0,
            last_seq: 0,
            cum_events: 0,
            dropped_through: 0,
            retained_events: 0,
            retained_bytes: 0,
            open: Vec::new(),
            open_bytes: 0,
            open_since: None,
            table: Arc::new(table),
            generation: 0,
            oversized: 0,
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sequence of the last sealed batch (0 = none yet).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Events sealed in this epoch.
    pub fn cum_events(&self) -> u64 {
        self.cum_events
    }

    /// Events waiting in the open batch.
    pub fn open_events(&self) -> usize {
        self.open.len()
    }

    /// The current rule set.
    pub fn service_table(&self) -> &Arc<ServiceTable> {
        &self.table
    }

    /// See the field.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Events refused as larger than a message.
    pub fn oversized_events(&self) -> u64 {
        self.oversized
    }

    /// Position the next appended item will have.
    pub fn end_pos(&self) -> u64 {
        self.base_pos + self.slots.len() as u64
    }

    /// Adds an event to the open batch, sealing as the caps require.
    pub fn push(&mut self, now: Micros, ev: SyncEvent) {
        let cost = event_cost(&ev);
        if cost + 64 > self.cfg.max_batch_bytes {
            self.oversized += 1;
            return;
        }
        if self.open_bytes + cost > self.cfg.max_batch_bytes {
            self.seal(now);
        }
        if self.open.is_empty() {
            self.open_since = Some(now);
        }
        self.open_bytes += cost;
        self.open.push(ev);
        if self.open.len() >= self.cfg.max_batch_events {
            self.seal(now);
        }
    }

    /// When the open batch must be sealed.
    pub fn poll_timeout(&self) -> Option<Micros> {
        self.open_since.map(|t| t + self.cfg.batch_delay_us)
    }

    /// Seals the open batch if its delay has passed. True if it sealed.
    pub fn handle_timeout(&mut self, now: Micros) -> bool {
        match self.poll_timeout() {
            Some(t) if now >= t => self.seal(now),
            _ => false,
        }
    }

    /// Seals the open batch now (if any). True if it sealed.
    pub fn seal(&mut self, now: Micros) -> bool {
        if self.open.is_empty() {
            return false;
        }
        let events = std::mem::take(&mut self.open);
        let first = self.open_since.take().unwrap_or(now);
        self.open_bytes = 0;
        self.last_seq += 1;
        let n = events.len() as u64;
        self.cum_events += n;
        let batch = DeltaBatch {
            sequence: self.last_seq,
            master_time_us: now,
            events,
        };
        let bytes = batch.encoded_len() + ELEMENT_OVERHEAD;
        let sealed = SealedBatch {
            batch,
            events: n,
            cum_events: self.cum_events,
            first_event_us: first,
            bytes,
        };
        self.append(LogItem::Batch(Arc::new(sealed)), n, bytes);
        true
    }

    /// A new rule set: the open batch is sealed first so the table falls
    /// exactly between the events before and after the change.
    pub fn set_service_table(&mut self, now: Micros, table: ServiceTable) {
        self.seal(now);
        let table = Arc::new(table);
        self.table = table.clone();
        let bytes = table.encoded_len();
        self.append(LogItem::ServiceTable(table), 0, bytes);
    }

    /// Events were lost before they reached the log: no retained position
    /// describes the table any more.
    pub fn lost_events(&mut self, now: Micros) {
        self.seal(now);
        self.generation += 1;
        // The lost events precede every later batch: no position up to and
        // including the last sealed one is complete.
        self.dropped_through = self.last_seq + 1;
    }

    fn append(&mut self, item: LogItem, events: u64, bytes: usize) {
        self.retained_events += events;
        self.retained_bytes += bytes;
        self.slots.push_back(Slot {
            seq: self.last_seq,
            item,
            events,
            bytes,
        });
        while self.slots.len() > 1
            && (self.retained_events > self.cfg.retain_events
                || self.retained_bytes > self.cfg.retain_bytes)
        {
            let s = self.slots.pop_front().expect("len > 1");
            self.base_pos += 1;
            self.retained_events -= s.events;
            self.retained_bytes -= s.bytes;
            if let LogItem::Batch(_) = s.item {
                self.dropped_through = self.dropped_through.max(s.seq);
            }
        }
    }

    /// The item at `pos`: `Ok(None)` past the end, `Err(())` when it was
    /// dropped by retention.
    #[allow(clippy::result_unit_err)]
    pub fn item(&self, pos: u64) -> Result<Option<&LogItem>, ()> {
        if pos < self.base_pos {
            return Err(());
        }
        Ok(self
            .slots
            .get((pos - self.base_pos) as usize)
            .map(|s| &s.item))
    }

    /// The position of the first item after batch `seq`, if every batch
    /// after `seq` is still retained (resume, and the start of the deltas
    /// that follow a snapshot).
    pub fn position_after(&self, seq: u64) -> Option<u64> {
        if seq > self.last_seq || seq < self.dropped_through {
            return None;
        }
        // Slots with slot.seq == seq are batch `seq` itself (if retained)
        // followed by rule-set changes made after it: start after the batch.
        let mut idx = self.slots.partition_point(|s| s.seq < seq);
        if let Some(Slot {
            item: LogItem::Batch(b),
            ..
        }) = self.slots.get(idx)
            && b.batch.sequence == seq
        {
            idx += 1;
        }
        Some(self.base_pos + idx as u64)
    }

    fn batch(&self, seq: u64) -> Option<&Arc<SealedBatch>> {
        // Batches are contiguous; find by binary search on slot.seq.
        let idx = self.slots.partition_point(|s| s.seq < seq);
        self.slots.range(idx..).find_map(|s| match &s.item {
            LogItem::Batch(b) if b.batch.sequence == seq => Some(b),
            LogItem::Batch(_) => None,
            LogItem::ServiceTable(_) => None,
        })
    }

    /// Events in the epoch up to and including batch `seq`, if known.
    pub fn cum_events_through(&self, seq: u64) -> Option<u64> {
        if seq == 0 {
            return Some(0);
        }
        if seq == self.last_seq {
            return Some(self.cum_events);
        }
        self.batch(seq).map(|b| b.cum_events)
    }

    /// Seal time and first-event time of batch `seq`, if retained.
    pub fn batch_times(&self, seq: u64) -> Option<(Micros, Micros)> {
        self.batch(seq)
            .map(|b| (b.batch.master_time_us, b.first_event_us))
    }

    /// First-event times of the retained batches in `from..=to`.
    pub fn first_event_times(&self, from: u64, to: u64) -> Vec<Micros> {
        if from > to {
            return Vec::new();
        }
        let idx = self.slots.partition_point(|s| s.seq < from);
        self.slots
            .range(idx..)
            .take_while(|s| s.seq <= to)
            .filter_map(|s| match &s.item {
                LogItem::Batch(b) if b.batch.sequence >= from && b.batch.sequence <= to => {
                    Some(b.first_event_us)
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::flow_new;

    fn log(cfg: LogConfig) -> EventLog {
        EventLog::new(cfg, 7, ServiceTable::default())
    }

    #[test]
    fn batches_by_count_and_delay() {
        let mut l = log(LogConfig {
            max_batch_events: 3,
            ..Default::default()
        });
        for i in 0..7 {
            l.push(100, flow_new(i));
        }
        assert_eq!(l.last_seq(), 2, "two full batches of 3 sealed by count");
        assert_eq!(l.poll_timeout(), Some(2_100));
        assert!(!l.handle_timeout(2_099));
        assert!(
            l.handle_timeout(2_100),
            "the open batch seals after batch_delay"
        );
        assert_eq!(l.last_seq(), 3);
        assert_eq!(l.cum_events(), 7);
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn batches_by_bytes_stay_under_limit() {
        let mut l = log(LogConfig {
            max_batch_bytes: 4096,
            ..Default::default()
        });
        for i in 0..1000 {
            l.push(0, flow_new(i));
        }
        l.seal(0);
        let mut pos = 0;
        while let Ok(Some(LogItem::Batch(b))) = l.item(pos) {
            assert!(
                b.batch.encoded_len() <= 4096,
                "batch {} too big",
                b.batch.sequence
            );
            pos += 1;
        }
        assert_eq!(l.cum_events(), 1000);
    }

    #[test]
    fn retention_drops_oldest_and_refuses_resume_below() {
        let mut l = log(LogConfig {
            max_batch_events: 10,
            retain_events: 50,
            ..Default::default()
        });
        for i in 0..100 {
            l.push(0, flow_new(i));
        }
        assert_eq!(l.last_seq(), 10);
        assert_eq!(l.position_after(10), Some(l.end_pos()));
        assert!(l.position_after(5).is_some(), "batches 6..=10 retained");
        assert!(l.position_after(4).is_none(), "batch 5 was dropped");
        assert!(l.item(0).is_err());
        assert!(l.position_after(11).is_none(), "beyond the last sequence");
    }

    #[test]
    fn service_table_falls_between_batches() {
        let mut l = log(LogConfig::default());
        l.push(0, flow_new(1));
        l.set_service_table(
            5,
            ServiceTable {
                version: 9,
                ..Default::default()
            },
        );
        l.push(6, flow_new(2));
        l.seal(8);
        let kinds: Vec<_> = (0..3)
            .map(|p| match l.item(p).unwrap().unwrap() {
                LogItem::Batch(b) => format!("b{}", b.batch.sequence),
                LogItem::ServiceTable(t) => format!("t{}", t.version),
            })
            .collect();
        assert_eq!(kinds, ["b1", "t9", "b2"]);
        assert_eq!(l.position_after(1), Some(1), "resume after b1 resends t9");
        assert_eq!(l.position_after(0), Some(0));
        assert_eq!(l.cum_events_through(1), Some(1));
    }
}
