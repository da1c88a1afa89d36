//! The protocol core on a virtual clock: a master (log + session) and a
//! subscriber (core + in-memory sink) wired by two in-memory queues, with
//! the driver's duties (walking the table, closing) done by the harness.
//! No sockets, no clock: every step is explicit and time is a number.

use std::collections::VecDeque;
use std::sync::Arc;

use lb_proto::common::{ConnState, ServiceTable};
use lb_proto::sync::{
    MasterMessage, SnapshotReason, SubscriberMessage, SyncErrorCode, master_message,
    subscriber_message,
};
use proptest::prelude::*;
use syncd::codec::Chunker;
use syncd::config::NodeInfo;
use syncd::error::HandoverError;
use syncd::log::{EventLog, LogConfig};
use syncd::master::{MasterSession, SessionConfig, SessionEvent};
use syncd::mem::{self, MemTable};
use syncd::subscriber::{CoreConfig, SubscriberCore, SubscriberEvent};
use syncd::traits::ConnSource;

const MS: u64 = 1_000;
const T0: u64 = 1_700_000_000_000_000;
const HB: u64 = 200 * MS;

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        node_name: format!("dir-{id}"),
        cluster_id: "pair".into(),
        vrids: vec![51],
    }
}

struct Pair {
    now: u64,
    log: EventLog,
    src: MemTable,
    session: Option<MasterSession>,
    sub: SubscriberCore,
    sink: MemTable,
    to_sub: VecDeque<MasterMessage>,
    to_master: VecDeque<SubscriberMessage>,
    walk_pending: bool,
    /// Every message the master sent, for assertions.
    sent: Vec<MasterMessage>,
    received: Vec<SubscriberMessage>,
    handovers: Vec<Result<syncd::HandoverReport, HandoverError>>,
    closes: Vec<(Option<SyncErrorCode>, String)>,
    sub_events: Vec<SubscriberEvent>,
    /// Run the snapshot walk as soon as it starts.
    eager_walk: bool,
    chunk_bytes: usize,
}

impl Pair {
    fn new(log_cfg: LogConfig) -> Self {
        Self::with(log_cfg, CoreConfig::default())
    }

    fn with(log_cfg: LogConfig, core: CoreConfig) -> Self {
        Self {
            now: T0,
            log: EventLog::new(
                log_cfg,
                0xe1,
                ServiceTable {
                    version: 1,
                    ..Default::default()
                },
            ),
            src: MemTable::new(),
            session: None,
            sub: SubscriberCore::new(core, node("b")),
            sink: MemTable::new(),
            to_sub: VecDeque::new(),
            to_master: VecDeque::new(),
            walk_pending: false,
            sent: Vec::new(),
            received: Vec::new(),
            handovers: Vec::new(),
            closes: Vec::new(),
            sub_events: Vec::new(),
            eager_walk: true,
            chunk_bytes: 4096,
        }
    }

    fn session_cfg() -> SessionConfig {
        SessionConfig {
            heartbeat_interval_us: HB,
            ack_interval_ms: 3,
            ..Default::default()
        }
    }

    fn connect(&mut self) {
        assert!(self.session.is_none());
        let mut s = MasterSession::new(Self::session_cfg(), node("a"), self.log.epoch(), self.now);
        let hello = self.sub.open(self.now);
        let Some(subscriber_message::Msg::Hello(h)) = hello.msg else {
            panic!("Hello first")
        };
        s.handle_hello(self.now, h, &self.log, true, "", false);
        self.session = Some(s);
    }

    fn disconnect(&mut self) {
        self.session = None;
        self.to_sub.clear();
        self.to_master.clear();
        self.walk_pending = false;
        self.sub.closed(&self.sink, None, self.now);
    }

    fn push(&mut self, ev: lb_proto::sync::SyncEvent) {
        self.src.apply_local(ev.clone());
        self.log.push(self.now, ev);
    }

    fn walk(&mut self) {
        if !self.walk_pending {
            return;
        }
        self.walk_pending = false;
        let s = self.session.as_mut().expect("session");
        let mut ch = Chunker::new(self.chunk_bytes);
        let mut chunks = Vec::new();
        self.src.for_each_entry(&mut |e| chunks.extend(ch.push(e)));
        chunks.extend(ch.finish());
        for c in chunks {
            if let Some(m) = s.snapshot_chunk(c) {
                self.sent.push(m.clone());
                self.to_sub.push_back(m);
            }
        }
        s.snapshot_walk_done(self.now);
    }

    /// Master: run its events and transmit everything it has.
    fn master_out(&mut self) {
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            let mut progressed = false;
            while let Some(ev) = s.poll_event(&self.log) {
                progressed = true;
                match ev {
                    SessionEvent::StartSnapshot { reason } => {
                        s.begin_snapshot(self.now, &self.log, reason, ConnSource::len(&self.src));
                        self.walk_pending = true;
                    }
                    SessionEvent::HandoverDone { result, .. } => self.handovers.push(result),
                    SessionEvent::HandoverRequested { .. } => {}
                    SessionEvent::Close { error, reason } => {
                        self.closes.push((
                            error.map(|e| SyncErrorCode::try_from(e.code).unwrap()),
                            reason,
                        ));
                        self.disconnect();
                        return;
                    }
                }
            }
            let s = self.session.as_mut().expect("session");
            while let Some(m) = s.poll_transmit(&self.log) {
                progressed = true;
                self.sent.push(m.clone());
                self.to_sub.push_back(m);
            }
            if self.eager_walk && self.walk_pending {
                self.walk();
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    fn deliver_to_sub(&mut self, max: usize) {
        for _ in 0..max {
            let Some(m) = self.to_sub.pop_front() else {
                break;
            };
            if let Err(e) = self.sub.handle_message(self.now, m, &self.sink) {
                self.closes.push((None, format!("subscriber: {e}")));
                self.disconnect();
                return;
            }
        }
        while let Some(ev) = self.sub.poll_event() {
            self.sub_events.push(ev);
        }
        while let Some(m) = self.sub.poll_transmit(self.now, &self.sink) {
            self.to_master.push_back(m);
        }
    }

    fn deliver_to_master(&mut self, max: usize) {
        for _ in 0..max {
            let Some(m) = self.to_master.pop_front() else {
                break;
            };
            self.received.push(m.clone());
            let Some(s) = self.session.as_mut() else {
                return;
            };
            s.handle_message(self.now, m, &self.log);
        }
        self.master_out();
    }

    /// Everything in flight is delivered, both ways, until quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            self.master_out();
            if self.to_sub.is_empty() && self.to_master.is_empty() && !self.walk_pending {
                break;
            }
            self.walk();
            self.deliver_to_sub(usize::MAX);
            self.deliver_to_master(usize::MAX);
        }
    }

    fn advance(&mut self, dt: u64) {
        self.now += dt;
        self.log.handle_timeout(self.now);
        if let Some(s) = self.session.as_mut() {
            s.handle_timeout(self.now, &self.log);
        }
        if self.session.is_some()
            && let Err(e) = self.sub.handle_timeout(self.now)
        {
            self.closes.push((None, format!("subscriber: {e}")));
            self.disconnect();
        }
        self.master_out();
        self.deliver_to_sub(0);
    }

    /// Seal, deliver, ack: the pair at rest.
    fn settle(&mut self) {
        for _ in 0..5 {
            self.advance(5 * MS);
            self.pump();
        }
    }

    fn assert_tables_equal(&self) {
        if let Some(d) = mem::diff(&self.src.snapshot_map(), &self.sink.snapshot_map()) {
            panic!("the subscriber's table equals the master's: {d}");
        }
    }

    fn lag(&self) -> syncd::lag::Lag {
        self.session.as_ref().unwrap().lag(self.now, &self.log)
    }

    fn snapshots_begun(&self) -> Vec<i32> {
        self.sent
            .iter()
            .filter_map(|m| match &m.msg {
                Some(master_message::Msg::SnapshotBegin(b)) => Some(b.reason),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn welcome_table_snapshot_then_ordered_deltas() {
    let mut p = Pair::new(LogConfig::default());
    for i in 0..1000 {
        p.push(mem::flow_new(i));
    }
    p.advance(3 * MS);
    p.connect();
    p.pump();
    let kinds: Vec<&str> = p
        .sent
        .iter()
        .map(|m| match m.msg.as_ref().unwrap() {
            master_message::Msg::Welcome(_) => "welcome",
            master_message::Msg::ServiceTable(_) => "table",
            master_message::Msg::SnapshotBegin(_) => "begin",
            master_message::Msg::SnapshotChunk(_) => "chunk",
            master_message::Msg::SnapshotEnd(_) => "end",
            master_message::Msg::DeltaBatch(_) => "batch",
            _ => "other",
        })
        .collect();
    assert_eq!(
        &kinds[..3],
        ["welcome", "table", "begin"],
        "Welcome, then a ServiceTable, then a snapshot"
    );
    assert_eq!(kinds.last(), Some(&"end"));
    assert!(
        kinds.iter().filter(|k| **k == "chunk").count() > 1,
        "4 KiB chunks"
    );
    p.assert_tables_equal();
    assert_eq!(p.sink.table().version, 1);

    for i in 1000..1100 {
        p.push(mem::flow_new(i));
    }
    for i in 0..50 {
        p.push(mem::flow_update(i, ConnState::FinWait, 120_000));
    }
    for i in 50..60 {
        p.push(mem::flow_expire(i));
    }
    p.settle();
    p.assert_tables_equal();
    let seqs: Vec<u64> = p
        .sent
        .iter()
        .filter_map(|m| match &m.msg {
            Some(master_message::Msg::DeltaBatch(b)) => Some(b.sequence),
            _ => None,
        })
        .collect();
    let end_seq = p
        .sent
        .iter()
        .find_map(|m| match &m.msg {
            Some(master_message::Msg::SnapshotEnd(e)) => Some(e.sequence),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        end_seq, 1,
        "the snapshot corresponds to the one batch sealed before it"
    );
    assert_eq!(
        seqs,
        (2..2 + seqs.len() as u64).collect::<Vec<_>>(),
        "+1 per batch, no gaps"
    );
    assert_eq!(p.lag(), syncd::lag::Lag::default(), "all acked: lag zero");
    let st = p.session.as_ref().unwrap().status(p.now, &p.log).unwrap();
    assert_eq!(st.acked_sequence, p.log.last_seq());
    assert_eq!(st.snapshots_sent, 1);
    assert!(st.last_snapshot_duration.is_some());
}

#[test]
fn deltas_during_the_walk_are_replayed_after_snapshot_end() {
    let mut p = Pair::new(LogConfig::default());
    for i in 0..500 {
        p.push(mem::flow_new(i));
    }
    p.log.seal(p.now);
    p.eager_walk = false;
    p.connect();
    p.master_out();
    // The walk has not run yet; the table moves on.
    for i in 0..100 {
        p.push(mem::flow_expire(i));
    }
    for i in 500..600 {
        p.push(mem::flow_new(i));
    }
    p.log.seal(p.now);
    p.walk();
    for i in 100..150 {
        p.push(mem::flow_update(i, ConnState::TimeWait, 1000));
    }
    p.eager_walk = true;
    p.settle();
    p.assert_tables_equal();
}

#[test]
fn gap_leads_to_resync_and_a_correct_table() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    p.settle();
    for i in 0..10 {
        p.push(mem::flow_new(i));
        p.advance(3 * MS);
    }
    // Lose one batch in transit.
    let idx = p
        .to_sub
        .iter()
        .position(|m| matches!(&m.msg, Some(master_message::Msg::DeltaBatch(b)) if b.sequence == 4))
        .expect("batch 4 in flight");
    p.to_sub.remove(idx);
    p.settle();
    let resync = p.received.iter().find_map(|m| match &m.msg {
        Some(subscriber_message::Msg::ResyncRequest(r)) => Some(r.reason.clone()),
        _ => None,
    });
    assert_eq!(resync.as_deref(), Some("gap: got 5 after 3"));
    assert_eq!(
        p.snapshots_begun(),
        [
            SnapshotReason::Initial as i32,
            SnapshotReason::ResyncRequested as i32
        ]
    );
    p.assert_tables_equal();
    assert_eq!(p.sub.status(p.now, &p.sink).resyncs, 1);
}

#[test]
fn resume_after_reconnect_sends_deltas_not_a_snapshot() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    for i in 0..100 {
        p.push(mem::flow_new(i));
    }
    p.settle();
    p.disconnect();
    for i in 100..200 {
        p.push(mem::flow_new(i));
        p.advance(MS);
    }
    p.connect();
    p.settle();
    p.assert_tables_equal();
    let welcomes: Vec<bool> = p
        .sent
        .iter()
        .filter_map(|m| match &m.msg {
            Some(master_message::Msg::Welcome(w)) => Some(w.resumed),
            _ => None,
        })
        .collect();
    assert_eq!(welcomes, [false, true], "the second stream resumed");
    assert_eq!(p.snapshots_begun().len(), 1, "no second snapshot");
}

#[test]
fn retention_exceeded_gives_a_snapshot() {
    let mut p = Pair::new(LogConfig {
        max_batch_events: 10,
        retain_events: 100,
        ..Default::default()
    });
    p.connect();
    p.settle();
    p.disconnect();
    for i in 0..1000 {
        p.push(mem::flow_new(i));
    }
    p.connect();
    p.settle();
    p.assert_tables_equal();
    assert_eq!(
        p.snapshots_begun().len(),
        2,
        "resume point dropped: a new initial snapshot"
    );

    // A connected subscriber that cannot keep up (nothing delivered) falls
    // off the retention while the master sends.
    p.sent.clear();
    for i in 1000..2000 {
        p.push(mem::flow_new(i));
        p.master_out();
        if i % 100 == 0 {
            // keep the stream alive, but hold every delta back
            let held: Vec<_> = p.to_sub.drain(..).collect();
            p.to_master.push_back(lb_proto::sync::SubscriberMessage {
                msg: Some(subscriber_message::Msg::Heartbeat(Default::default())),
            });
            p.deliver_to_master(usize::MAX);
            p.to_sub.extend(held);
        }
    }
    p.settle();
    p.assert_tables_equal();
}

#[test]
fn lost_events_give_every_stream_a_snapshot() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    p.settle();
    p.push(mem::flow_new(1));
    // An event that never reached the log (publisher overflow).
    p.src.apply_local(mem::flow_new(2));
    p.log.lost_events(p.now);
    p.settle();
    assert_eq!(
        p.snapshots_begun(),
        [
            SnapshotReason::Initial as i32,
            SnapshotReason::RetentionExceeded as i32
        ]
    );
    p.assert_tables_equal();
}

#[test]
fn ack_beyond_last_sent_is_a_protocol_violation() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    p.settle();
    p.to_master.push_back(SubscriberMessage {
        msg: Some(subscriber_message::Msg::Ack(lb_proto::sync::Ack {
            applied_sequence: 99,
            ..Default::default()
        })),
    });
    p.deliver_to_master(usize::MAX);
    assert_eq!(
        p.closes.last().unwrap().0,
        Some(SyncErrorCode::ProtocolViolation)
    );
    assert_eq!(
        p.closes.last().unwrap().1,
        "protocol violation: ack of sequence 99 beyond the last sent, 0"
    );
}

#[test]
fn first_message_must_be_hello() {
    let log = EventLog::new(LogConfig::default(), 1, ServiceTable::default());
    let mut s = MasterSession::new(Pair::session_cfg(), node("a"), 1, T0);
    s.handle_message(
        T0,
        SubscriberMessage {
            msg: Some(subscriber_message::Msg::Heartbeat(Default::default())),
        },
        &log,
    );
    match s.poll_event(&log) {
        Some(SessionEvent::Close { error: Some(e), .. }) => {
            assert_eq!(e.code, SyncErrorCode::ProtocolViolation as i32);
            assert_eq!(e.message, "first message was Heartbeat, not Hello");
        }
        other => panic!("closed with a violation, got {other:?}"),
    }
}

#[test]
fn heartbeats_every_interval_and_liveness_after_three() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    p.settle();
    let hb_count = |p: &Pair| {
        p.sent
            .iter()
            .filter(|m| matches!(m.msg, Some(master_message::Msg::Heartbeat(_))))
            .count()
    };
    let before = hb_count(&p);
    for _ in 0..10 {
        p.advance(HB);
        p.pump();
    }
    assert_eq!(
        hb_count(&p) - before,
        10,
        "one master heartbeat per interval"
    );
    assert!(
        p.received
            .iter()
            .filter(|m| matches!(m.msg, Some(subscriber_message::Msg::Heartbeat(_))))
            .count()
            >= 10,
        "the subscriber heartbeats too"
    );
    assert!(p.closes.is_empty(), "a pair that hears each other stays up");
    let hb = p.sub.status(p.now, &p.sink).last_heartbeat_age;
    assert_eq!(hb, Some(std::time::Duration::ZERO));

    // Silence: nothing delivered either way.
    p.advance(2 * HB);
    p.to_sub.clear();
    p.to_master.clear();
    assert!(p.closes.is_empty(), "2 intervals of silence are tolerated");
    p.advance(HB);
    assert!(
        p.closes.iter().any(|c| c.1.contains("nothing heard")),
        "a side that hears nothing for 3 intervals closes the stream: {:?}",
        p.closes
    );
}

#[test]
fn malformed_entry_is_refused_and_resynced() {
    let mut p = Pair::new(LogConfig::default());
    p.connect();
    for i in 0..10 {
        p.push(mem::flow_new(i));
    }
    p.settle();
    // A malformed event (no real server) in the next batch.
    let mut bad = mem::flow_entry(77);
    bad.real_server = None;
    let bad_ev = lb_proto::sync::SyncEvent {
        event: Some(lb_proto::sync::sync_event::Event::ConnNew(
            lb_proto::sync::ConnNew { entry: Some(bad) },
        )),
    };
    p.log.push(p.now, mem::flow_new(20));
    p.src.apply_local(mem::flow_new(20));
    p.log.push(p.now, bad_ev);
    p.settle();
    let st = p.sub.status(p.now, &p.sink);
    assert_eq!(st.resyncs, 1);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("real server missing"),
        "{st:?}"
    );
    assert!(
        p.sink
            .with_live(|m| m.values().all(|e| e.real_server.is_some())),
        "nothing malformed entered the table"
    );
    p.assert_tables_equal();
}

fn handover_pair(core: CoreConfig) -> Pair {
    let mut p = Pair::with(LogConfig::default(), core);
    p.connect();
    for i in 0..100 {
        p.push(mem::flow_new(i));
    }
    p.settle();
    p
}

fn start_handover(p: &mut Pair, wait: u64, force: bool) {
    p.log.seal(p.now);
    let s = p.session.as_mut().unwrap();
    s.start_handover(p.now, &p.log, wait, force, "test", 0)
        .unwrap();
}

#[test]
fn handover_waits_for_ready_and_final_ack() {
    let mut p = handover_pair(CoreConfig::default());
    for i in 100..120 {
        p.push(mem::flow_new(i));
    }
    start_handover(&mut p, 2_000 * MS, false);
    let final_seq = p.log.last_seq();
    p.master_out();
    assert!(p.handovers.is_empty());
    p.pump();
    let r = p.handovers.pop().expect("done").expect("success");
    assert_eq!(r.final_sequence, final_seq);
    assert_eq!(r.acked_sequence, final_seq);
    assert_eq!(r.entries_behind_at_switch, 0);
    assert!(!r.forced);
    p.assert_tables_equal();
}

#[test]
fn handover_refused_by_the_subscriber() {
    let core = CoreConfig {
        readiness: Some(Arc::new(|| Err("dataplane not up".to_owned()))),
        ..Default::default()
    };
    let mut p = handover_pair(core);
    start_handover(&mut p, 2_000 * MS, false);
    p.pump();
    let e = p.handovers.pop().expect("done").unwrap_err();
    assert_eq!(e.to_string(), "subscriber dir-b refused: dataplane not up");
    // force overrides the refusal once caught up
    start_handover(&mut p, 2_000 * MS, true);
    p.pump();
    assert!(p.handovers.pop().unwrap().unwrap().forced);
}

#[test]
fn handover_lag_timeout() {
    let mut p = handover_pair(CoreConfig::default());
    for i in 100..234 {
        p.push(mem::flow_new(i));
    }
    start_handover(&mut p, 2_000 * MS, false);
    p.master_out();
    // The subscriber hears nothing more: deliver nothing, only heartbeats
    // from it keep the stream alive.
    p.to_sub.clear();
    for _ in 0..20 {
        p.advance(100 * MS);
        p.to_sub.retain(|m| {
            !matches!(
                m.msg,
                Some(master_message::Msg::DeltaBatch(_)) | Some(master_message::Msg::Handover(_))
            )
        });
        p.deliver_to_sub(usize::MAX);
        p.to_master.push_back(SubscriberMessage {
            msg: Some(subscriber_message::Msg::Heartbeat(Default::default())),
        });
        p.deliver_to_master(usize::MAX);
    }
    let e = p
        .handovers
        .pop()
        .unwrap_or_else(|| panic!("done: {:?}", p.closes))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "subscriber dir-b did not answer the handover in 2 s"
    );

    // A subscriber that answers ready but whose acks do not arrive.
    let mut p = handover_pair(CoreConfig::default());
    for i in 100..234 {
        p.push(mem::flow_new(i));
    }
    start_handover(&mut p, 2_000 * MS, false);
    p.master_out();
    p.to_master.push_back(SubscriberMessage {
        msg: Some(subscriber_message::Msg::HandoverReady(
            lb_proto::sync::HandoverReady {
                handover_id: 1,
                ready: true,
                ..Default::default()
            },
        )),
    });
    p.to_sub.clear();
    for _ in 0..20 {
        p.advance(100 * MS);
        p.to_sub.retain(|m| {
            !matches!(
                m.msg,
                Some(master_message::Msg::DeltaBatch(_)) | Some(master_message::Msg::Handover(_))
            )
        });
        p.deliver_to_sub(usize::MAX);
        p.to_master
            .retain(|m| !matches!(m.msg, Some(subscriber_message::Msg::Ack(_))));
        p.to_master.push_back(SubscriberMessage {
            msg: Some(subscriber_message::Msg::Heartbeat(Default::default())),
        });
        p.deliver_to_master(usize::MAX);
    }
    let e = p.handovers.pop().expect("done").unwrap_err();
    assert_eq!(
        e.to_string(),
        "lag did not reach zero in 2 s: 134 entries behind"
    );
}

#[derive(Debug, Clone)]
enum Op {
    New(u64),
    Update(u64),
    Expire(u64),
    TemplateNew(u64),
    TemplateExpire(u64),
    Table,
    Advance(u64),
    ToSub(usize),
    ToMaster(usize),
    Walk,
    Drop,
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..200u64).prop_map(Op::New),
        3 => (0..200u64).prop_map(Op::Update),
        3 => (0..200u64).prop_map(Op::Expire),
        1 => (0..20u64).prop_map(Op::TemplateNew),
        1 => (0..20u64).prop_map(Op::TemplateExpire),
        1 => Just(Op::Table),
        3 => (0..5_000u64).prop_map(Op::Advance),
        4 => (0..10usize).prop_map(Op::ToSub),
        4 => (0..10usize).prop_map(Op::ToMaster),
        2 => Just(Op::Walk),
        1 => Just(Op::Drop),
        1 => Just(Op::Reconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random interleavings of table changes, partial deliveries, time,
    /// disconnects and reconnects end, once the pair settles, with the
    /// subscriber's table equal to the master's.
    #[test]
    fn random_interleavings_converge(ops in proptest::collection::vec(op(), 1..300), small_retention in any::<bool>()) {
        let mut p = Pair::new(LogConfig {
            max_batch_events: 8,
            retain_events: if small_retention { 40 } else { 1_000_000 },
            ..Default::default()
        });
        p.eager_walk = false;
        p.chunk_bytes = 1024;
        p.connect();
        let mut table_version = 1;
        for op in ops {
            match op {
                Op::New(i) => p.push(mem::flow_new(i)),
                Op::Update(i) => p.push(mem::flow_update(i, ConnState::FinWait, 5_000)),
                Op::Expire(i) => p.push(mem::flow_expire(i)),
                Op::TemplateNew(i) => p.push(mem::template_new(i)),
                Op::TemplateExpire(i) => p.push(mem::template_expire(i)),
                Op::Table => {
                    table_version += 1;
                    let t = ServiceTable { version: table_version, ..Default::default() };
                    p.src.set_service_table(t.clone());
                    p.log.set_service_table(p.now, t);
                }
                Op::Advance(us) => p.advance(us),
                Op::ToSub(n) => { p.master_out(); p.deliver_to_sub(n) }
                Op::ToMaster(n) => p.deliver_to_master(n),
                Op::Walk => { p.master_out(); p.walk() }
                Op::Drop => if p.session.is_some() { p.disconnect() },
                Op::Reconnect => if p.session.is_none() { p.connect() },
            }
        }
        if p.session.is_none() {
            p.connect();
        }
        p.eager_walk = true;
        p.settle();
        prop_assert!(p.session.is_some(), "settled pair is connected: {:?}", p.closes);
        if let Some(d) = mem::diff(&p.src.snapshot_map(), &p.sink.snapshot_map()) {
            prop_assert!(false, "tables differ: {}", d);
        }
        prop_assert_eq!(p.sink.table().version, table_version);
        prop_assert_eq!(p.lag().entries_behind, 0);
    }
}
