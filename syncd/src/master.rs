//! One subscriber's stream as the master sees it, without I/O or clock.
//!
//! The driver feeds inbound messages ([`MasterSession::handle_message`]),
//! timeouts ([`MasterSession::handle_timeout`]) and snapshot chunks, and
//! drains [`MasterSession::poll_event`] (things only the driver can do: walk
//! the table, report a handover, close) and
//! [`MasterSession::poll_transmit`] (messages in stream order). Deltas come
//! from the shared [`EventLog`]: the session only keeps a cursor into it.
//!
//! Snapshot semantics (sync.proto, SEQUENCES): at SnapshotBegin the session
//! fixes S = the last sealed sequence and parks its cursor just after batch
//! S; the walk of the live table then runs while the log keeps growing; at
//! SnapshotEnd(sequence = S) the parked deltas flow again. The table walked
//! is at least as new as S, and every change after S is replayed, so the
//! subscriber converges (events are upserts and deletes by key).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::Duration;

use lb_proto::common::ConnEntry;
use lb_proto::sync::{
    Ack, Handover, Heartbeat, Hello, MasterMessage, SnapshotBegin, SnapshotChunk, SnapshotEnd,
    SnapshotReason, SubscriberMessage, SyncError, SyncErrorCode, Welcome, master_message,
    subscriber_message,
};
use prost::Message;

use crate::Micros;
use crate::codec::mm;
use crate::config::{NodeBeat, NodeInfo, NodeViewFn};
use crate::error::{HandoverError, HandoverReport};
use crate::handshake::{HelloContext, check_hello, sync_error};
use crate::lag::{Lag, LagWindow};
use crate::log::{EventLog, LogItem};
use crate::status::SubscriptionStatus;

/// Session settings (from [`crate::MasterConfig`]).
#[derive(Clone)]
pub struct SessionConfig {
    /// Heartbeat period, µs.
    pub heartbeat_interval_us: u64,
    /// Welcome.ack_interval_ms.
    pub ack_interval_ms: u32,
    /// Accepted protocol versions.
    pub versions: RangeInclusive<u32>,
    /// Window of the p50/p99 lag figures, µs.
    pub lag_window_us: u64,
    /// This node's view (VRRP, uptime, table) for heartbeats.
    pub node_view: Option<NodeViewFn>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("heartbeat_interval_us", &self.heartbeat_interval_us)
            .field("ack_interval_ms", &self.ack_interval_ms)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_us: 200_000,
            ack_interval_ms: 3,
            versions: lb_proto::SYNC_MIN_PROTOCOL_VERSION..=lb_proto::SYNC_PROTOCOL_VERSION,
            lag_window_us: 60_000_000,
            node_view: None,
        }
    }
}

/// What the driver must do for the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// Call [`MasterSession::begin_snapshot`] with the table size, walk the
    /// table feeding [`MasterSession::snapshot_chunk`], then call
    /// [`MasterSession::snapshot_walk_done`].
    StartSnapshot {
        /// Why.
        reason: SnapshotReason,
    },
    /// The subscriber asked for a handover (HandoverRequest).
    HandoverRequested {
        /// Its request id.
        request_id: u64,
        /// Longest wait, ms (0 = master's default).
        max_wait_ms: u32,
        /// Force.
        force: bool,
        /// Operator's reason.
        reason: String,
    },
    /// A handover finished.
    HandoverDone {
        /// Its id.
        handover_id: u64,
        /// Its request id (0 = master-initiated).
        request_id: u64,
        /// Outcome.
        result: Result<HandoverReport, HandoverError>,
    },
    /// Close the stream: send `error` (if any), then end the stream.
    Close {
        /// SyncError to send first.
        error: Option<SyncError>,
        /// For logs.
        reason: String,
    },
}

#[derive(Debug)]
struct SnapOut {
    id: u64,
    reason: SnapshotReason,
    seq: u64,
    expected: u64,
    started: Micros,
    chunks: u32,
    entries_sent: u64,
    entries_applied: u64,
    bytes: u64,
    walk_done: bool,
}

#[derive(Debug)]
struct HandoverWait {
    id: u64,
    request_id: u64,
    final_seq: u64,
    started: Micros,
    deadline: Micros,
    force: bool,
    ready: Option<Result<(), String>>,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    snapshots_sent: u64,
    last_snapshot_duration_us: Option<u64>,
    last_snapshot_entries: u64,
    last_snapshot_bytes: u64,
    batches_sent: u64,
    events_sent: u64,
    bytes_sent: u64,
}

#[derive(Debug)]
struct Stream {
    peer_id: String,
    peer_name: String,
    version: u32,
    connected_since: Micros,
    /// Next log position to send; `None` until a snapshot has fixed it.
    cursor: Option<u64>,
    generation: u64,
    last_sent_seq: u64,
    acked: u64,
    acked_cum: u64,
    /// S of the last SnapshotEnd sent: batches <= it reached the
    /// subscriber through the snapshot.
    snap_floor: u64,
    snapshot: Option<SnapOut>,
    starting_snapshot: bool,
    pending_snapshot: Option<SnapshotReason>,
    table_version_sent: Option<u64>,
    handover: Option<HandoverWait>,
    lag_window: LagWindow,
    sub_table_entries: u64,
    /// What the subscriber's last heartbeat said about it.
    peer: NodeBeat,
    stats: Stats,
}

/// One subscriber's stream, master side.
pub struct MasterSession {
    cfg: SessionConfig,
    node: NodeInfo,
    epoch: u64,
    last_heard: Micros,
    next_heartbeat: Micros,
    out: VecDeque<MasterMessage>,
    events: VecDeque<SessionEvent>,
    stream: Option<Box<Stream>>,
    closed: bool,
    next_snapshot_id: u64,
    next_handover_id: u64,
}

impl std::fmt::Debug for MasterSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterSession")
            .field("epoch", &self.epoch)
            .field("stream", &self.stream)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn kind(m: &SubscriberMessage) -> &'static str {
    match &m.msg {
        Some(subscriber_message::Msg::Hello(_)) => "Hello",
        Some(subscriber_message::Msg::Ack(_)) => "Ack",
        Some(subscriber_message::Msg::Heartbeat(_)) => "Heartbeat",
        Some(subscriber_message::Msg::ResyncRequest(_)) => "ResyncRequest",
        Some(subscriber_message::Msg::HandoverRequest(_)) => "HandoverRequest",
        Some(subscriber_message::Msg::HandoverReady(_)) => "HandoverReady",
        None => "an empty message",
    }
}

impl MasterSession {
    /// A stream just opened at `now`, awaiting Hello, for `epoch`.
    pub fn new(cfg: SessionConfig, node: NodeInfo, epoch: u64, now: Micros) -> Self {
        Self {
            cfg,
            node,
            epoch,
            last_heard: now,
            next_heartbeat: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stream: None,
            closed: false,
            next_snapshot_id: 1,
            next_handover_id: 1,
        }
    }

    /// The stream is accepted (Welcome sent).
    pub fn is_established(&self) -> bool {
        self.stream.is_some() && !self.closed
    }

    /// The session asked to close; nothing more will be produced.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Subscriber node id once accepted.
    pub fn peer_id(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.peer_id.as_str())
    }

    fn close(&mut self, error: Option<SyncError>, reason: String) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(h) = self.stream.as_mut().and_then(|s| s.handover.take()) {
            let peer = self
                .stream
                .as_ref()
                .map(|s| s.peer_name.clone())
                .unwrap_or_default();
            self.events.push_back(SessionEvent::HandoverDone {
                handover_id: h.id,
                request_id: h.request_id,
                result: Err(HandoverError::Disconnected { peer }),
            });
        }
        self.out.clear();
        self.events.push_back(SessionEvent::Close { error, reason });
    }

    fn violation(&mut self, msg: String) {
        let e = sync_error(
            SyncErrorCode::ProtocolViolation,
            msg.clone(),
            &self.cfg.versions,
        );
        self.close(Some(e), format!("protocol violation: {msg}"));
    }

    /// Ends the stream because the master steps down or shuts down.
    pub fn shut_down(&mut self, message: &str, master_hint: &str) {
        let mut e = sync_error(SyncErrorCode::ShuttingDown, message, &self.cfg.versions);
        e.master_hint = master_hint.to_owned();
        self.close(Some(e), message.to_owned());
    }

    /// The first message, judged by the driver-independent rules.
    /// `duplicate`: another live stream has this node id.
    pub fn handle_hello(
        &mut self,
        now: Micros,
        hello: Hello,
        log: &EventLog,
        serving: bool,
        master_hint: &str,
        duplicate: bool,
    ) {
        self.last_heard = now;
        if self.closed {
            return;
        }
        if self.stream.is_some() {
            return self.violation("second Hello on one stream".into());
        }
        let ctx = HelloContext {
            node: &self.node,
            versions: self.cfg.versions.clone(),
            serving,
            master_hint,
            duplicate,
        };
        if let Err(e) = check_hello(&hello, &ctx) {
            let reason = e.message.clone();
            return self.close(Some(e), reason);
        }
        let resume_pos = hello
            .resume
            .as_ref()
            .filter(|r| r.epoch == self.epoch)
            .and_then(|r| {
                log.position_after(r.applied_sequence)
                    .map(|p| (p, r.applied_sequence))
            });
        let mut s = Stream {
            peer_id: hello.node_id.clone(),
            peer_name: if hello.node_name.is_empty() {
                hello.node_id.clone()
            } else {
                hello.node_name.clone()
            },
            version: hello.protocol_version,
            connected_since: now,
            cursor: None,
            generation: log.generation(),
            last_sent_seq: 0,
            acked: 0,
            acked_cum: 0,
            snap_floor: 0,
            snapshot: None,
            starting_snapshot: false,
            pending_snapshot: None,
            table_version_sent: None,
            handover: None,
            lag_window: LagWindow::new(self.cfg.lag_window_us, 4096),
            sub_table_entries: 0,
            peer: NodeBeat::default(),
            stats: Stats::default(),
        };
        let (resumed, next_sequence) = match resume_pos {
            Some((pos, seq)) => {
                s.cursor = Some(pos);
                s.acked = seq;
                s.last_sent_seq = seq;
                s.snap_floor = seq;
                s.acked_cum = log.cum_events_through(seq).unwrap_or(0);
                (true, seq + 1)
            }
            None => {
                s.pending_snapshot = Some(SnapshotReason::Initial);
                (false, 0)
            }
        };
        self.out.push_back(mm(master_message::Msg::Welcome(Welcome {
            protocol_version: hello.protocol_version,
            node_id: self.node.node_id.clone(),
            node_name: self.node.node_name.clone(),
            epoch: self.epoch,
            resumed,
            next_sequence,
            heartbeat_interval_ms: (self.cfg.heartbeat_interval_us / 1000) as u32,
            ack_interval_ms: self.cfg.ack_interval_ms,
            master_time_us: now,
        })));
        let table = log.service_table();
        s.table_version_sent = Some(table.version);
        self.out
            .push_back(mm(master_message::Msg::ServiceTable((**table).clone())));
        self.stream = Some(Box::new(s));
        self.next_heartbeat = now + self.cfg.heartbeat_interval_us;
    }

    /// Any message from the subscriber.
    pub fn handle_message(&mut self, now: Micros, msg: SubscriberMessage, log: &EventLog) {
        self.last_heard = now;
        if self.closed {
            return;
        }
        if self.stream.is_none() {
            return self.violation(format!("first message was {}, not Hello", kind(&msg)));
        }
        match msg.msg {
            Some(subscriber_message::Msg::Hello(_)) => {
                self.violation("second Hello on one stream".into())
            }
            Some(subscriber_message::Msg::Ack(a)) => self.on_ack(now, a, log),
            Some(subscriber_message::Msg::Heartbeat(h)) => {
                let s = self.stream.as_mut().expect("established");
                s.peer = NodeBeat {
                    instances: h.instances,
                    uptime_ms: h.uptime_ms,
                    connections: h.connections,
                };
            }
            Some(subscriber_message::Msg::ResyncRequest(r)) => {
                tracing::info!(reason = %r.reason, "subscriber asked for a resync");
                let s = self.stream.as_mut().expect("established");
                s.pending_snapshot
                    .get_or_insert(SnapshotReason::ResyncRequested);
            }
            Some(subscriber_message::Msg::HandoverRequest(r)) => {
                self.events.push_back(SessionEvent::HandoverRequested {
                    request_id: r.request_id,
                    max_wait_ms: r.max_wait_ms,
                    force: r.force,
                    reason: r.reason,
                })
            }
            Some(subscriber_message::Msg::HandoverReady(r)) => {
                let s = self.stream.as_mut().expect("established");
                if let Some(h) = s.handover.as_mut().filter(|h| h.id == r.handover_id) {
                    h.ready = Some(if r.ready {
                        Ok(())
                    } else if r.refusal_reason.is_empty() {
                        Err("not ready".to_owned())
                    } else {
                        Err(r.refusal_reason)
                    });
                }
                self.check_handover(now, log);
            }
            None => {}
        }
    }

    fn on_ack(&mut self, now: Micros, a: Ack, log: &EventLog) {
        let s = self.stream.as_mut().expect("established");
        if a.applied_sequence > s.last_sent_seq {
            let m = format!(
                "ack of sequence {} beyond the last sent, {}",
                a.applied_sequence, s.last_sent_seq
            );
            return self.violation(m);
        }
        s.sub_table_entries = a.table_entries;
        if let Some(snap) = s.snapshot.as_mut().filter(|p| p.id == a.snapshot_id) {
            snap.entries_applied = snap.entries_applied.max(a.snapshot_entries_applied);
            // Applied = past SnapshotEnd: every entry sent is applied and
            // the ack reaches S (acks carry no "ended" bit; the last chunk's
            // ack can only precede the end by the time to apply nothing).
            if snap.walk_done
                && a.applied_sequence >= snap.seq
                && a.snapshot_entries_applied >= snap.entries_sent
            {
                let snap = s.snapshot.take().expect("just matched");
                s.stats.last_snapshot_duration_us = Some(now.saturating_sub(snap.started));
                s.stats.last_snapshot_entries = snap.entries_sent;
                s.stats.last_snapshot_bytes = snap.bytes;
            }
        }
        if a.applied_sequence > s.acked {
            let from = s.acked.max(s.snap_floor) + 1;
            for t in log.first_event_times(from, a.applied_sequence) {
                s.lag_window.record(now, now.saturating_sub(t));
            }
            s.acked = a.applied_sequence;
            s.acked_cum = log.cum_events_through(s.acked).unwrap_or(s.acked_cum);
        }
        self.check_handover(now, log);
    }

    /// The subscriber's lag now.
    pub fn lag(&self, now: Micros, log: &EventLog) -> Lag {
        let Some(s) = &self.stream else {
            return Lag::default();
        };
        let mut behind = 0;
        let mut oldest: Option<Micros> = None;
        let mut base_seq = s.acked;
        let mut base_cum = s.acked_cum;
        if let Some(snap) = &s.snapshot {
            behind += snap
                .expected
                .max(snap.entries_sent)
                .saturating_sub(snap.entries_applied);
            oldest = Some(snap.started);
            if snap.seq > base_seq {
                base_seq = snap.seq;
                base_cum = log.cum_events_through(snap.seq).unwrap_or(base_cum);
            }
        } else if s.pending_snapshot.is_some() || s.starting_snapshot {
            // Not started yet: everything is behind.
            oldest = Some(s.connected_since);
        }
        behind += log.cum_events().saturating_sub(base_cum);
        if log.last_seq() > base_seq
            && let Some((sealed, _)) = log.batch_times(base_seq + 1)
        {
            oldest = Some(oldest.map_or(sealed, |o| o.min(sealed)));
        }
        Lag {
            entries_behind: behind,
            ms_behind: oldest.map_or(0, |o| (now.saturating_sub(o) / 1000) as u32),
        }
    }

    fn check_handover(&mut self, now: Micros, log: &EventLog) {
        let lag = self.lag(now, log);
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let Some(h) = s.handover.as_ref() else { return };
        let caught_up = s.acked >= h.final_seq && s.snapshot.is_none();
        let report = |forced: bool| HandoverReport {
            waited: Duration::from_micros(now.saturating_sub(h.started)),
            entries_behind_at_switch: lag.entries_behind,
            ms_behind_at_switch: lag.ms_behind,
            final_sequence: h.final_seq,
            acked_sequence: s.acked,
            forced,
            peer: s.peer_name.clone(),
        };
        let result = match &h.ready {
            Some(Err(reason)) if !h.force => Some(Err(HandoverError::Refused {
                peer: s.peer_name.clone(),
                reason: reason.clone(),
            })),
            Some(Ok(())) if caught_up => Some(Ok(report(false))),
            Some(Err(_)) if h.force && caught_up => Some(Ok(report(true))),
            _ if now >= h.deadline => {
                let waited = Duration::from_micros(h.deadline.saturating_sub(h.started));
                if h.force {
                    Some(Ok(report(true)))
                } else if h.ready.is_none() {
                    Some(Err(HandoverError::NoAnswer {
                        peer: s.peer_name.clone(),
                        waited,
                    }))
                } else {
                    Some(Err(HandoverError::LagTimeout {
                        waited,
                        entries_behind: lag.entries_behind,
                        ms_behind: lag.ms_behind,
                    }))
                }
            }
            _ => None,
        };
        if let Some(result) = result {
            let h = s.handover.take().expect("checked");
            self.events.push_back(SessionEvent::HandoverDone {
                handover_id: h.id,
                request_id: h.request_id,
                result,
            });
        }
    }

    /// Starts a handover to this subscriber: sends Handover with
    /// final_sequence = the last sealed sequence (the driver seals the open
    /// batch first). The outcome arrives as [`SessionEvent::HandoverDone`].
    #[allow(clippy::too_many_arguments)]
    pub fn start_handover(
        &mut self,
        now: Micros,
        log: &EventLog,
        max_wait_us: u64,
        force: bool,
        reason: &str,
        request_id: u64,
    ) -> Result<u64, HandoverError> {
        if self.closed {
            return Err(HandoverError::NoSubscriber);
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(HandoverError::NoSubscriber);
        };
        if s.handover.is_some() {
            return Err(HandoverError::InProgress);
        }
        let id = self.next_handover_id;
        self.next_handover_id += 1;
        let final_seq = log.last_seq();
        s.handover = Some(HandoverWait {
            id,
            request_id,
            final_seq,
            started: now,
            deadline: now + max_wait_us,
            force,
            ready: None,
        });
        self.out
            .push_back(mm(master_message::Msg::Handover(Handover {
                handover_id: id,
                request_id,
                final_sequence: final_seq,
                max_wait_ms: (max_wait_us / 1000).min(u32::MAX as u64) as u32,
                force,
                instances: Vec::new(),
                reason: reason.to_owned(),
            })));
        Ok(id)
    }

    /// The earliest time [`Self::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Micros> {
        if self.closed {
            return None;
        }
        let mut t = self.last_heard + 3 * self.cfg.heartbeat_interval_us;
        if let Some(s) = &self.stream {
            t = t.min(self.next_heartbeat);
            if let Some(h) = &s.handover {
                t = t.min(h.deadline);
            }
        }
        Some(t)
    }

    /// Timers: liveness, heartbeats, handover deadline.
    pub fn handle_timeout(&mut self, now: Micros, log: &EventLog) {
        if self.closed {
            return;
        }
        let silence = now.saturating_sub(self.last_heard);
        if silence >= 3 * self.cfg.heartbeat_interval_us {
            let who = self.peer_id().unwrap_or("subscriber").to_owned();
            return self.close(
                None,
                format!("nothing heard from {who} for {} ms", silence / 1000),
            );
        }
        if self.stream.is_none() {
            return;
        }
        self.check_handover(now, log);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat_interval_us;
            let lag = self.lag(now, log);
            let view = crate::config::view_of(&self.cfg.node_view);
            self.out
                .push_back(mm(master_message::Msg::Heartbeat(Heartbeat {
                    node_id: self.node.node_id.clone(),
                    sender_time_us: now,
                    instances: view.instances,
                    uptime_ms: view.uptime_ms,
                    connections: view.connections,
                    sequence: log.last_seq(),
                    service_table_version: log.service_table().version,
                    entries_behind: lag.entries_behind,
                    ms_behind: lag.ms_behind,
                })));
        }
    }

    /// Decisions that depend on the log: a position that fell off the
    /// retention, or events lost before sequencing.
    fn check_log(&mut self, log: &EventLog) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if s.generation != log.generation() {
            s.generation = log.generation();
            s.pending_snapshot
                .get_or_insert(SnapshotReason::RetentionExceeded);
        }
        if let Some(c) = s.cursor
            && s.snapshot.as_ref().is_none_or(|p| p.walk_done)
            && log.item(c).is_err()
        {
            s.pending_snapshot
                .get_or_insert(SnapshotReason::RetentionExceeded);
        }
    }

    /// Work only the driver can do, in order.
    pub fn poll_event(&mut self, log: &EventLog) -> Option<SessionEvent> {
        if !self.closed {
            self.check_log(log);
            if let Some(s) = self.stream.as_mut()
                && s.snapshot.as_ref().is_none_or(|p| p.walk_done)
                && !s.starting_snapshot
                && let Some(reason) = s.pending_snapshot.take()
            {
                s.starting_snapshot = true;
                self.events
                    .push_back(SessionEvent::StartSnapshot { reason });
            }
        }
        self.events.pop_front()
    }

    /// The driver starts the walk: fixes S and sends SnapshotBegin.
    /// `expected_entries` is the source's size now. Returns the snapshot id.
    pub fn begin_snapshot(
        &mut self,
        now: Micros,
        log: &EventLog,
        reason: SnapshotReason,
        expected_entries: u64,
    ) -> u64 {
        let id = self.next_snapshot_id;
        self.next_snapshot_id += 1;
        let Some(s) = self.stream.as_mut() else {
            return id;
        };
        s.starting_snapshot = false;
        let table = log.service_table();
        if s.table_version_sent != Some(table.version) {
            s.table_version_sent = Some(table.version);
            self.out
                .push_back(mm(master_message::Msg::ServiceTable((**table).clone())));
        }
        let seq = log.last_seq();
        // Everything after batch S is appended from now on (a rule-set
        // change already in the log is covered by the table sent above).
        s.cursor = Some(log.end_pos());
        s.generation = log.generation();
        s.snapshot = Some(SnapOut {
            id,
            reason,
            seq,
            expected: expected_entries,
            started: now,
            chunks: 0,
            entries_sent: 0,
            entries_applied: 0,
            bytes: 0,
            walk_done: false,
        });
        s.stats.snapshots_sent += 1;
        self.out
            .push_back(mm(master_message::Msg::SnapshotBegin(SnapshotBegin {
                snapshot_id: id,
                expected_entries,
                master_time_us: now,
                service_table_version: table.version,
                reason: reason as i32,
            })));
        id
    }

    /// One chunk of the walk, as the message to send now (after whatever
    /// [`Self::poll_transmit`] holds). `None` if the stream closed or no
    /// snapshot is being walked.
    pub fn snapshot_chunk(&mut self, entries: Vec<ConnEntry>) -> Option<MasterMessage> {
        if self.closed {
            return None;
        }
        let s = self.stream.as_mut()?;
        let snap = s.snapshot.as_mut().filter(|p| !p.walk_done)?;
        let chunk = SnapshotChunk {
            snapshot_id: snap.id,
            chunk_index: snap.chunks,
            entries,
        };
        snap.chunks += 1;
        snap.entries_sent += chunk.entries.len() as u64;
        let msg = mm(master_message::Msg::SnapshotChunk(chunk));
        let bytes = msg.encoded_len() as u64;
        snap.bytes += bytes;
        s.stats.bytes_sent += bytes;
        Some(msg)
    }

    /// The walk is over: queue SnapshotEnd(S); deltas after S follow.
    pub fn snapshot_walk_done(&mut self, now: Micros) {
        if self.closed {
            return;
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let Some(snap) = s.snapshot.as_mut().filter(|p| !p.walk_done) else {
            return;
        };
        snap.walk_done = true;
        s.last_sent_seq = s.last_sent_seq.max(snap.seq);
        s.snap_floor = snap.seq;
        tracing::debug!(
            id = snap.id, reason = ?snap.reason, entries = snap.entries_sent,
            sequence = snap.seq, "snapshot walk done"
        );
        self.out
            .push_back(mm(master_message::Msg::SnapshotEnd(SnapshotEnd {
                snapshot_id: snap.id,
                sequence: snap.seq,
                entries_sent: snap.entries_sent,
                chunks_sent: snap.chunks,
                master_time_us: now,
            })));
    }

    /// True while a walk is running (its chunks are being fed).
    pub fn snapshot_walking(&self) -> bool {
        self.stream
            .as_ref()
            .and_then(|s| s.snapshot.as_ref())
            .is_some_and(|p| !p.walk_done)
    }

    /// The next message to send: control messages first, then deltas from
    /// the log (none while a snapshot is being prepared or walked).
    pub fn poll_transmit(&mut self, log: &EventLog) -> Option<MasterMessage> {
        if let Some(m) = self.out.pop_front() {
            if let Some(s) = self.stream.as_mut() {
                s.stats.bytes_sent += m.encoded_len() as u64;
            }
            return Some(m);
        }
        if self.closed {
            return None;
        }
        self.check_log(log);
        let s = self.stream.as_mut()?;
        if s.pending_snapshot.is_some()
            || s.starting_snapshot
            || s.snapshot.as_ref().is_some_and(|p| !p.walk_done)
        {
            return None;
        }
        let cursor = s.cursor.as_mut()?;
        loop {
            match log.item(*cursor) {
                Ok(Some(LogItem::Batch(b))) => {
                    *cursor += 1;
                    s.last_sent_seq = b.batch.sequence;
                    s.stats.batches_sent += 1;
                    s.stats.events_sent += b.events;
                    s.stats.bytes_sent += b.bytes as u64;
                    return Some(mm(master_message::Msg::DeltaBatch(b.batch.clone())));
                }
                Ok(Some(LogItem::ServiceTable(t))) => {
                    *cursor += 1;
                    if s.table_version_sent != Some(t.version) {
                        s.table_version_sent = Some(t.version);
                        let m = mm(master_message::Msg::ServiceTable((**t).clone()));
                        s.stats.bytes_sent += m.encoded_len() as u64;
                        return Some(m);
                    }
                }
                Ok(None) | Err(()) => return None,
            }
        }
    }

    /// True if [`Self::poll_transmit`] may return something.
    pub fn wants_transmit(&self, log: &EventLog) -> bool {
        if !self.out.is_empty() {
            return true;
        }
        match self.stream.as_ref() {
            Some(s) if !self.closed => {
                s.pending_snapshot.is_none()
                    && !s.starting_snapshot
                    && s.snapshot.as_ref().is_none_or(|p| p.walk_done)
                    && s.cursor.is_some_and(|c| c < log.end_pos())
            }
            _ => false,
        }
    }

    /// Status for the control API.
    pub fn status(&self, now: Micros, log: &EventLog) -> Option<SubscriptionStatus> {
        let s = self.stream.as_ref()?;
        let lag = self.lag(now, log);
        Some(SubscriptionStatus {
            node_id: s.peer_id.clone(),
            node_name: s.peer_name.clone(),
            connected_since: crate::clock::system_time(s.connected_since),
            protocol_version: s.version,
            epoch: self.epoch,
            last_sequence: log.last_seq(),
            acked_sequence: s.acked,
            entries_behind: lag.entries_behind,
            ms_behind: lag.ms_behind,
            ms_behind_p50: (s.lag_window.quantile(0.5) / 1000) as u32,
            ms_behind_p99: (s.lag_window.quantile(0.99) / 1000) as u32,
            ack_latency_p50_us: s.lag_window.quantile(0.5),
            ack_latency_p99_us: s.lag_window.quantile(0.99),
            snapshots_sent: s.stats.snapshots_sent,
            snapshot_in_progress: s.snapshot.is_some() || s.pending_snapshot.is_some(),
            last_snapshot_duration: s.stats.last_snapshot_duration_us.map(Duration::from_micros),
            last_snapshot_entries: s.stats.last_snapshot_entries,
            last_snapshot_bytes: s.stats.last_snapshot_bytes,
            bytes_sent: s.stats.bytes_sent,
            batches_sent: s.stats.batches_sent,
            events_sent: s.stats.events_sent,
            heard_age: Duration::from_micros(now.saturating_sub(self.last_heard)),
            subscriber_table_entries: s.sub_table_entries,
            peer: s.peer.clone(),
        })
    }

    /// Push-to-ack latency samples, µs: (p50, p99, count).
    pub fn latency_quantiles(&self) -> (u64, u64, usize) {
        self.stream.as_ref().map_or((0, 0, 0), |s| {
            (
                s.lag_window.quantile(0.5),
                s.lag_window.quantile(0.99),
                s.lag_window.len(),
            )
        })
    }
}
