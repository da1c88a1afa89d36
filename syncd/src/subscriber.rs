//! The backup's side of the stream, without I/O or clock.
//!
//! It applies what the master sends into a [`ConnSink`], in order, and
//! decides what to answer. Whatever cannot be vouched for (a sequence gap, a
//! chunk out of order, a sink that refuses an entry) leads to a
//! ResyncRequest, never to going on with a possibly wrong table: batches
//! are ignored until the fresh snapshot arrives, and the sink builds that
//! beside the current table, so the current table keeps forwarding
//! meanwhile. The resume point (epoch, applied sequence) survives the
//! stream, so a reconnect usually continues with deltas, not a snapshot.

use std::collections::VecDeque;
use std::time::Duration;

use lb_proto::common::ServiceTable;
use lb_proto::sync::{
    Ack, DeltaBatch, HandoverReady, HandoverRequest, Heartbeat, Hello, MasterMessage, ResumePoint,
    ResyncRequest, SnapshotBegin, SnapshotChunk, SnapshotEnd, SubscriberMessage, SyncError,
    master_message, subscriber_message,
};

use crate::Micros;
use crate::codec::sm;
use crate::config::{NodeInfo, NodeViewFn, ReadinessFn};
use crate::status::{SnapshotInfo, SubscriberStatus};
use crate::traits::ConnSink;

/// Why a stream ended, from the subscriber's point of view.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamEnd {
    /// The master sent SyncError.
    #[error("master refused: {}", .0.message)]
    Refused(SyncError),
    /// Nothing heard for 3 heartbeat intervals.
    #[error("{0}")]
    Timeout(String),
    /// The master broke the protocol.
    #[error("protocol violation by the master: {0}")]
    Violation(String),
}

/// Things for the driver (beyond messages to send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// The master answered our HandoverRequest with Handover, and this
    /// node said whether it is ready.
    HandoverAnswered {
        /// Our request id.
        request_id: u64,
        /// What we answered.
        ready: Result<(), String>,
    },
    /// A master heartbeat arrived.
    MasterHeartbeat {
        /// Master's node id.
        node_id: String,
        /// Its view of itself.
        view: crate::config::NodeBeat,
    },
}

/// Subscriber-core settings.
#[derive(Clone)]
pub struct CoreConfig {
    /// Version sent in Hello.
    pub protocol_version: u32,
    /// Liveness bound until Welcome tells the heartbeat interval, µs.
    pub hello_timeout_us: u64,
    /// This node's view (VRRP, uptime, table).
    pub node_view: Option<NodeViewFn>,
    /// Handover veto.
    pub readiness: Option<ReadinessFn>,
}

impl std::fmt::Debug for CoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreConfig")
            .field("protocol_version", &self.protocol_version)
            .field("hello_timeout_us", &self.hello_timeout_us)
            .finish_non_exhaustive()
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            protocol_version: lb_proto::SYNC_PROTOCOL_VERSION,
            hello_timeout_us: 3_000_000,
            node_view: None,
            readiness: None,
        }
    }
}

#[derive(Debug)]
struct SnapIn {
    id: u64,
    next_chunk: u32,
    entries: u64,
    failed: bool,
    started: Micros,
}

#[derive(Debug)]
struct PendingHandover {
    id: u64,
    request_id: u64,
    final_seq: u64,
    deadline: Micros,
}

#[derive(Debug)]
struct Conn {
    established: bool,
    epoch: u64,
    version: u32,
    connected_since: Micros,
    hb_us: u64,
    ack_us: u64,
    last_heard: Micros,
    next_hb: Micros,
    expect_next: Option<u64>,
    applied: u64,
    applied_echo: u64,
    snapshot: Option<SnapIn>,
    last_snapshot_id: u64,
    resync_pending: bool,
    ack_dirty: bool,
    ack_now: bool,
    last_ack_sent: Option<Micros>,
    out: VecDeque<SubscriberMessage>,
    handover: Option<PendingHandover>,
    master_last_seq: u64,
    master_lag: (u64, u32),
    last_master_hb: Option<Micros>,
}

/// The subscriber's protocol state across streams.
pub struct SubscriberCore {
    cfg: CoreConfig,
    node: NodeInfo,
    resume: Option<ResumePoint>,
    table_version: u64,
    conn: Option<Conn>,
    events: VecDeque<SubscriberEvent>,
    status: SubscriberStatus,
    last_snapshot_bytes: u64,
    last_snapshot_entries: u64,
    streams: u64,
}

impl std::fmt::Debug for SubscriberCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberCore")
            .field("node", &self.node.node_id)
            .field("resume", &self.resume)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl SubscriberCore {
    /// A subscriber for `node`.
    pub fn new(cfg: CoreConfig, node: NodeInfo) -> Self {
        Self {
            cfg,
            node,
            resume: None,
            table_version: 0,
            conn: None,
            events: VecDeque::new(),
            status: SubscriberStatus::default(),
            last_snapshot_bytes: 0,
            last_snapshot_entries: 0,
            streams: 0,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node.node_id
    }

    /// Where the next stream resumes from.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        self.resume
    }

    /// A stream is established (Welcome received).
    pub fn is_established(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.established)
    }

    /// Highest contiguous sequence applied in the current stream.
    pub fn applied_sequence(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.applied)
    }

    /// Marks the stream as heard at `now`. The driver calls it after
    /// handling a message, so that the time a slow sink takes to apply it
    /// does not count as silence from the master.
    pub fn touch(&mut self, now: Micros) {
        if let Some(c) = self.conn.as_mut() {
            c.last_heard = c.last_heard.max(now);
        }
    }

    /// The heartbeat interval Welcome set, µs.
    pub fn heartbeat_interval_us(&self) -> Option<u64> {
        self.conn
            .as_ref()
            .filter(|c| c.established)
            .map(|c| c.hb_us)
    }

    /// Version of the rule set held.
    pub fn service_table_version(&self) -> u64 {
        self.table_version
    }

    /// A new stream: the Hello to send first.
    pub fn open(&mut self, now: Micros) -> SubscriberMessage {
        self.conn = Some(Conn {
            established: false,
            epoch: 0,
            version: 0,
            connected_since: now,
            hb_us: self.cfg.hello_timeout_us / 3,
            ack_us: 3_000,
            last_heard: now,
            next_hb: u64::MAX,
            expect_next: None,
            applied: 0,
            applied_echo: 0,
            snapshot: None,
            last_snapshot_id: 0,
            resync_pending: false,
            ack_dirty: false,
            ack_now: false,
            last_ack_sent: None,
            out: VecDeque::new(),
            handover: None,
            master_last_seq: 0,
            master_lag: (0, 0),
            last_master_hb: None,
        });
        let mut vrids = self.node.vrids.clone();
        vrids.sort_unstable();
        sm(subscriber_message::Msg::Hello(Hello {
            protocol_version: self.cfg.protocol_version,
            node_id: self.node.node_id.clone(),
            node_name: self.node.node_name.clone(),
            cluster_id: self.node.cluster_id.clone(),
            vrids,
            resume: self.resume,
            service_table_version: self.table_version,
        }))
    }

    /// The stream is gone (any reason): discard a half-built snapshot.
    pub fn closed(&mut self, sink: &dyn ConnSink, error: Option<String>, now: Micros) {
        if let Some(c) = self.conn.take() {
            if let Some(s) = c.snapshot {
                sink.abort_snapshot(s.id);
            }
            if let Some(h) = c.handover.filter(|h| h.request_id != 0) {
                self.events.push_back(SubscriberEvent::HandoverAnswered {
                    request_id: h.request_id,
                    ready: Err("stream closed".into()),
                });
            }
        }
        let _ = now;
        if let Some(e) = error {
            self.error(e);
        }
    }

    /// Counts an error for status.
    pub fn error(&mut self, e: String) {
        tracing::warn!(error = %e, "sync subscriber");
        self.status.errors += 1;
        self.status.last_error = Some(e);
    }

    /// Counts received bytes for status.
    pub fn count_bytes(&mut self, n: usize) {
        self.status.bytes_received += n as u64;
    }

    fn resync(&mut self, reason: String) {
        let Some(c) = self.conn.as_mut() else { return };
        if c.resync_pending {
            return;
        }
        tracing::warn!(%reason, "asking the master for a resync");
        c.resync_pending = true;
        c.out
            .push_back(sm(subscriber_message::Msg::ResyncRequest(ResyncRequest {
                reason: reason.clone(),
            })));
        self.status.resyncs += 1;
        self.error(reason);
    }

    /// Asks the master to hand over to this node; the answer arrives as
    /// [`SubscriberEvent::HandoverAnswered`]. False if not connected.
    pub fn request_handover(
        &mut self,
        request_id: u64,
        max_wait_ms: u32,
        force: bool,
        reason: String,
    ) -> bool {
        match self.conn.as_mut().filter(|c| c.established) {
            Some(c) => {
                c.out.push_back(sm(subscriber_message::Msg::HandoverRequest(
                    HandoverRequest {
                        request_id,
                        max_wait_ms,
                        force,
                        instance: String::new(),
                        reason,
                    },
                )));
                true
            }
            None => false,
        }
    }

    /// One message from the master.
    pub fn handle_message(
        &mut self,
        now: Micros,
        msg: MasterMessage,
        sink: &dyn ConnSink,
    ) -> Result<(), StreamEnd> {
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        c.last_heard = now;
        let Some(msg) = msg.msg else { return Ok(()) };
        if !c.established {
            return match msg {
                master_message::Msg::Welcome(w) => {
                    self.on_welcome(now, w);
                    Ok(())
                }
                master_message::Msg::Error(e) => self.on_error(e),
                _ => Err(StreamEnd::Violation("first message was not Welcome".into())),
            };
        }
        match msg {
            master_message::Msg::Welcome(_) => {
                return Err(StreamEnd::Violation("second Welcome".into()));
            }
            master_message::Msg::Error(e) => return self.on_error(e),
            master_message::Msg::ServiceTable(t) => self.on_table(t, sink),
            master_message::Msg::SnapshotBegin(b) => self.on_snapshot_begin(now, b, sink),
            master_message::Msg::SnapshotChunk(ch) => self.on_chunk(ch, sink),
            master_message::Msg::SnapshotEnd(e) => self.on_snapshot_end(now, e, sink),
            master_message::Msg::DeltaBatch(b) => self.on_batch(now, b, sink),
            master_message::Msg::Heartbeat(h) => {
                c.last_master_hb = Some(now);
                c.master_lag = (h.entries_behind, h.ms_behind);
                c.master_last_seq = h.sequence;
                self.events.push_back(SubscriberEvent::MasterHeartbeat {
                    node_id: h.node_id,
                    view: crate::config::NodeBeat {
                        instances: h.instances,
                        uptime_ms: h.uptime_ms,
                        connections: h.connections,
                    },
                });
            }
            master_message::Msg::Handover(h) => {
                let deadline = now
                    + u64::from(if h.max_wait_ms == 0 {
                        5000
                    } else {
                        h.max_wait_ms
                    }) * 1000;
                c.handover = Some(PendingHandover {
                    id: h.handover_id,
                    request_id: h.request_id,
                    final_seq: h.final_sequence,
                    deadline,
                });
                if let Some(Err(reason)) = self.cfg.readiness.as_ref().map(|f| f()) {
                    self.answer_handover(Err(reason));
                } else {
                    self.check_handover(now);
                }
            }
        }
        Ok(())
    }

    fn on_error(&mut self, e: SyncError) -> Result<(), StreamEnd> {
        if !e.master_hint.is_empty() {
            self.status.master_hint = e.master_hint.clone();
        }
        Err(StreamEnd::Refused(e))
    }

    fn on_welcome(&mut self, now: Micros, w: lb_proto::sync::Welcome) {
        let c = self.conn.as_mut().expect("conn");
        c.established = true;
        c.epoch = w.epoch;
        c.version = w.protocol_version;
        c.connected_since = now;
        c.hb_us = u64::from(w.heartbeat_interval_ms.max(1)) * 1000;
        c.ack_us = u64::from(w.ack_interval_ms) * 1000;
        c.next_hb = now;
        let resume_ok = w.resumed
            && self
                .resume
                .is_some_and(|r| r.epoch == w.epoch && r.applied_sequence + 1 == w.next_sequence);
        if resume_ok {
            c.expect_next = Some(w.next_sequence);
            c.applied = w.next_sequence - 1;
        } else if w.resumed {
            // Resumed at a point we did not ask for: start over.
            c.expect_next = None;
            c.applied = 0;
            c.resync_pending = false;
            self.resync(format!(
                "master resumed at {} which is not our position",
                w.next_sequence
            ));
        }
        self.streams += 1;
        if self.streams > 1 {
            self.status.reconnects += 1;
        }
        self.status.master_node_id = w.node_id;
        self.status.master_node_name = w.node_name;
    }

    fn on_table(&mut self, t: ServiceTable, sink: &dyn ConnSink) {
        let v = t.version;
        match sink.apply_service_table(t) {
            Ok(()) => self.table_version = v,
            Err(e) => self.error(format!("service table {v} refused: {e}")),
        }
    }

    fn on_snapshot_begin(&mut self, now: Micros, b: SnapshotBegin, sink: &dyn ConnSink) {
        let c = self.conn.as_mut().expect("conn");
        if let Some(old) = c.snapshot.take() {
            sink.abort_snapshot(old.id);
        }
        c.resync_pending = false;
        c.last_snapshot_id = b.snapshot_id;
        c.snapshot = Some(SnapIn {
            id: b.snapshot_id,
            next_chunk: 0,
            entries: 0,
            failed: false,
            started: now,
        });
        self.last_snapshot_bytes = self.status.bytes_received;
        sink.begin_snapshot(b.snapshot_id);
        sink.expect_snapshot_entries(b.snapshot_id, b.expected_entries);
    }

    fn fail_snapshot(&mut self, sink: &dyn ConnSink, reason: String) {
        if let Some(s) = self.conn.as_mut().and_then(|c| c.snapshot.as_mut())
            && !s.failed
        {
            s.failed = true;
            sink.abort_snapshot(s.id);
        }
        self.resync(reason);
    }

    fn on_chunk(&mut self, ch: SnapshotChunk, sink: &dyn ConnSink) {
        let c = self.conn.as_mut().expect("conn");
        let Some(s) = c.snapshot.as_mut() else {
            return self.resync(format!(
                "chunk of snapshot {} without SnapshotBegin",
                ch.snapshot_id
            ));
        };
        if s.failed {
            return;
        }
        if s.id != ch.snapshot_id || s.next_chunk != ch.chunk_index {
            let m = format!(
                "chunk {} of snapshot {} arrived, expected chunk {} of {}",
                ch.chunk_index, ch.snapshot_id, s.next_chunk, s.id
            );
            return self.fail_snapshot(sink, m);
        }
        let n = ch.entries.len() as u64;
        match sink.apply_snapshot_entries(s.id, ch.entries) {
            Ok(()) => {
                s.next_chunk += 1;
                s.entries += n;
                c.ack_dirty = true;
            }
            Err(e) => self.fail_snapshot(sink, format!("apply error: {e}")),
        }
    }

    fn on_snapshot_end(&mut self, now: Micros, e: SnapshotEnd, sink: &dyn ConnSink) {
        let c = self.conn.as_mut().expect("conn");
        let Some(s) = c.snapshot.take() else {
            return self.resync(format!(
                "end of snapshot {} without SnapshotBegin",
                e.snapshot_id
            ));
        };
        if s.failed {
            return;
        }
        if s.id != e.snapshot_id || s.entries != e.entries_sent || s.next_chunk != e.chunks_sent {
            sink.abort_snapshot(s.id);
            let m = format!(
                "snapshot {} ended with {} entries in {} chunks, received {} in {}",
                e.snapshot_id, e.entries_sent, e.chunks_sent, s.entries, s.next_chunk
            );
            c.snapshot = None;
            return self.resync(m);
        }
        if let Err(err) = sink.end_snapshot(s.id) {
            return self.resync(format!(
                "apply error at the end of snapshot {}: {err}",
                s.id
            ));
        }
        c.applied = e.sequence;
        c.applied_echo = e.master_time_us;
        c.expect_next = Some(e.sequence + 1);
        c.ack_dirty = true;
        c.ack_now = true;
        c.last_snapshot_id = s.id;
        // Keep the entry count for acks after the end.
        c.snapshot = None;
        self.resume = Some(ResumePoint {
            epoch: c.epoch,
            applied_sequence: e.sequence,
        });
        self.status.snapshots_applied += 1;
        self.status.last_snapshot = Some(SnapshotInfo {
            entries: s.entries,
            duration: Duration::from_micros(now.saturating_sub(s.started)),
            bytes: self.status.bytes_received - self.last_snapshot_bytes,
        });
        self.last_snapshot_entries = s.entries;
        self.check_handover(now);
    }

    fn on_batch(&mut self, now: Micros, b: DeltaBatch, sink: &dyn ConnSink) {
        let c = self.conn.as_mut().expect("conn");
        if c.resync_pending || c.snapshot.is_some() {
            return;
        }
        let Some(expect) = c.expect_next else {
            // Before the first snapshot of the stream: nothing to apply to.
            return;
        };
        if b.sequence < expect {
            return;
        }
        if b.sequence > expect {
            return self.resync(format!("gap: got {} after {}", b.sequence, expect - 1));
        }
        let n = b.events.len() as u64;
        match sink.apply_events(b.events) {
            Ok(()) => {
                c.applied = b.sequence;
                c.applied_echo = b.master_time_us;
                c.expect_next = Some(b.sequence + 1);
                c.ack_dirty = true;
                self.resume = Some(ResumePoint {
                    epoch: c.epoch,
                    applied_sequence: b.sequence,
                });
                self.status.batches_applied += 1;
                self.status.events_applied += n;
                self.check_handover(now);
            }
            Err(e) => self.resync(format!("apply error in batch {}: {e}", b.sequence)),
        }
    }

    fn answer_handover(&mut self, ready: Result<(), String>) {
        let Some(c) = self.conn.as_mut() else { return };
        let Some(h) = c.handover.take() else { return };
        c.out
            .push_back(sm(subscriber_message::Msg::HandoverReady(HandoverReady {
                handover_id: h.id,
                ready: ready.is_ok(),
                applied_sequence: c.applied,
                refusal_reason: ready.clone().err().unwrap_or_default(),
            })));
        // The ready answer must not overtake the ack that proves it.
        c.ack_now |= c.ack_dirty;
        if h.request_id != 0 {
            self.events.push_back(SubscriberEvent::HandoverAnswered {
                request_id: h.request_id,
                ready,
            });
        }
    }

    fn check_handover(&mut self, now: Micros) {
        let Some(c) = self.conn.as_ref() else { return };
        let Some(h) = c.handover.as_ref() else { return };
        let caught_up = c.expect_next.is_some()
            && c.applied >= h.final_seq
            && !c.resync_pending
            && c.snapshot.is_none();
        if caught_up {
            self.answer_handover(Ok(()));
        } else if now >= h.deadline {
            let m = format!("not caught up: applied {} of {}", c.applied, h.final_seq);
            self.answer_handover(Err(m));
        }
    }

    /// Events for the driver.
    pub fn poll_event(&mut self) -> Option<SubscriberEvent> {
        self.events.pop_front()
    }

    /// The earliest time [`Self::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Micros> {
        let c = self.conn.as_ref()?;
        let mut t = (c.last_heard + 3 * c.hb_us).min(c.next_hb);
        if c.ack_dirty {
            t = t.min(c.last_ack_sent.map_or(0, |l| l + c.ack_us.min(1_000)));
        }
        if let Some(h) = &c.handover {
            t = t.min(h.deadline);
        }
        Some(t)
    }

    /// Timers: liveness, heartbeats, handover deadline.
    pub fn handle_timeout(&mut self, now: Micros) -> Result<(), StreamEnd> {
        self.check_handover(now);
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        let silence = now.saturating_sub(c.last_heard);
        if silence >= 3 * c.hb_us {
            return Err(StreamEnd::Timeout(format!(
                "nothing heard from the master for {} ms",
                silence / 1000
            )));
        }
        if c.established && now >= c.next_hb {
            c.next_hb = now + c.hb_us;
            let view = crate::config::view_of(&self.cfg.node_view);
            c.out
                .push_back(sm(subscriber_message::Msg::Heartbeat(Heartbeat {
                    node_id: self.node.node_id.clone(),
                    sender_time_us: now,
                    instances: view.instances,
                    uptime_ms: view.uptime_ms,
                    connections: view.connections,
                    sequence: c.applied,
                    service_table_version: self.table_version,
                    entries_behind: 0,
                    ms_behind: 0,
                })));
        }
        Ok(())
    }

    /// The next message to send. Acks are coalesced: at most one per
    /// ack_interval, except at the end of a snapshot and before a
    /// HandoverReady.
    pub fn poll_transmit(&mut self, now: Micros, sink: &dyn ConnSink) -> Option<SubscriberMessage> {
        let c = self.conn.as_mut()?;
        // Acks go out as soon as something is applied, at most one per
        // millisecond (several batches handled in that time share one), and
        // never later than ack_interval.
        let gap = c.ack_us.min(1_000);
        if c.ack_dirty && (c.ack_now || c.last_ack_sent.is_none_or(|l| now >= l + gap)) {
            c.ack_dirty = false;
            c.ack_now = false;
            c.last_ack_sent = Some(now);
            let (snapshot_id, entries) = match &c.snapshot {
                Some(s) => (s.id, s.entries),
                None => (c.last_snapshot_id, self.last_snapshot_entries),
            };
            return Some(sm(subscriber_message::Msg::Ack(Ack {
                applied_sequence: c.applied,
                applied_at_unix_us: now,
                echo_master_time_us: c.applied_echo,
                snapshot_id,
                snapshot_entries_applied: entries,
                table_entries: sink.len(),
            })));
        }
        c.out.pop_front()
    }

    /// Status (lag figures are the master's, from its last heartbeat).
    pub fn status(&self, now: Micros, sink: &dyn ConnSink) -> SubscriberStatus {
        let mut s = self.status.clone();
        s.table_entries = sink.len();
        if let Some(c) = self.conn.as_ref().filter(|c| c.established) {
            s.connected = true;
            s.protocol_version = c.version;
            s.epoch = c.epoch;
            s.connected_since = Some(crate::clock::system_time(c.connected_since));
            s.applied_sequence = c.applied;
            s.master_last_sequence = c.master_last_seq;
            (s.entries_behind, s.ms_behind) = c.master_lag;
            s.last_heartbeat_age = c
                .last_master_hb
                .map(|t| Duration::from_micros(now.saturating_sub(t)));
        } else if let Some(r) = self.resume {
            s.epoch = r.epoch;
            s.applied_sequence = r.applied_sequence;
        }
        s
    }
}
