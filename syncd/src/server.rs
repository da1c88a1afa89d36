//! The master's tokio/tonic driver: the ConnSync service.
//!
//! Tasks and channels:
//! ```text
//!  dataplane ──push──▶ Publisher queue ──notify──▶ sealer task ──▶ EventLog (Arc<Mutex>)
//!                                                      │ watch(end position)
//!  tonic Subscribe ──▶ session task (one per stream) ◀─┘
//!                        │  MasterSession (core): handle / poll_event / poll_transmit / timers
//!                        ├─ spawn_blocking walk of the ConnSource ──chunks (bounded)──▶
//!                        └─ mpsc (bounded) ──▶ response stream
//! ```
//! Every stream has its own task, so a slow subscriber only slows itself;
//! the log is shared. A new epoch (random, non-zero) starts each time the
//! node starts serving; stopping closes every stream with SHUTTING_DOWN.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_proto::sync::conn_sync_server::{ConnSync, ConnSyncServer};
use lb_proto::sync::{
    MasterMessage, SubscriberMessage, SyncErrorCode, master_message, subscriber_message,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::clock::{instant_at, now_us};
use crate::codec::{Chunker, mm};
use crate::config::{MasterConfig, NodeInfo, TlsConfig};
use crate::error::{HandoverError, HandoverReport};
use crate::handshake::{HelloContext, check_hello, status_for, sync_error};
use crate::log::{EventLog, LogConfig};
use crate::master::{MasterSession, SessionConfig, SessionEvent};
use crate::publisher::{Publisher, PublisherShared};
use crate::status::{MasterStatus, SubscriptionStatus};
use crate::traits::ConnSource;

/// Called when a handover that the subscriber asked for (HandoverRequest)
/// has finished; on `Ok` the director steps down.
pub type PeerHandoverFn = Arc<dyn Fn(Result<HandoverReport, HandoverError>) + Send + Sync>;

type HandoverReply = oneshot::Sender<Result<HandoverReport, HandoverError>>;

#[derive(Debug)]
enum Cmd {
    Handover {
        max_wait: Duration,
        force: bool,
        reason: String,
        reply: HandoverReply,
    },
}

#[derive(Debug, Clone)]
struct Epoch {
    epoch: u64,
    log: Arc<Mutex<EventLog>>,
    cancel: CancellationToken,
    changed: watch::Receiver<u64>,
    /// Told the log's new end after every [`seal`].
    grew: Arc<watch::Sender<u64>>,
}

#[derive(Debug)]
struct SessionHandle {
    node_id: String,
    epoch: u64,
    cmd: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<Option<SubscriptionStatus>>>,
}

#[derive(Debug, Default)]
struct State {
    serving: Option<Epoch>,
    master_hint: String,
    sessions: HashMap<u64, SessionHandle>,
}

struct Inner {
    node: NodeInfo,
    cfg: MasterConfig,
    source: Arc<dyn ConnSource>,
    publisher: Arc<PublisherShared>,
    state: Mutex<State>,
    next_session: AtomicU64,
    peer_handover: Mutex<Option<PeerHandoverFn>>,
}

/// The sync master: serves ConnSync while this node is master.
#[derive(Clone)]
pub struct SyncServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncServer")
            .field("node", &self.inner.node)
            .field("serving", &self.lock().serving.as_ref().map(|e| e.epoch))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random non-zero u64 (std's randomly keyed hasher; no extra crate).
fn random_epoch() -> u64 {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_us());
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

fn log_config(cfg: &MasterConfig) -> LogConfig {
    LogConfig {
        max_batch_events: cfg.max_batch_events,
        max_batch_bytes: cfg.max_message_bytes,
        batch_delay_us: cfg.batch_delay.as_micros() as u64,
        retain_events: cfg.retain_events,
        retain_bytes: cfg.retain_bytes,
    }
}

impl SyncServer {
    /// A server for `node` reading `source`; not serving until
    /// [`Self::set_serving`]. The [`Publisher`] goes to the dataplane.
    pub fn new(
        node: NodeInfo,
        source: Arc<dyn ConnSource>,
        config: MasterConfig,
    ) -> (SyncServer, Publisher) {
        let publisher = Arc::new(PublisherShared::new(config.publisher_capacity));
        let inner = Arc::new(Inner {
            node,
            cfg: config,
            source,
            publisher: publisher.clone(),
            state: Mutex::new(State::default()),
            next_session: AtomicU64::new(1),
            peer_handover: Mutex::new(None),
        });
        (SyncServer { inner }, Publisher { shared: publisher })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Where subscribers are sent while this node does not serve (the
    /// peer's sync endpoint, "ip:port").
    pub fn set_master_hint(&self, hint: impl Into<String>) {
        self.lock().master_hint = hint.into();
    }

    /// What to do when the subscriber asked for a handover and it finished.
    pub fn on_peer_handover(
        &self,
        f: impl Fn(Result<HandoverReport, HandoverError>) + Send + Sync + 'static,
    ) {
        *lock(&self.inner.peer_handover) = Some(Arc::new(f));
    }

    /// Serve (this node became master: a new epoch starts) or stop serving
    /// (stepping down: every stream is closed with SHUTTING_DOWN, pushes are
    /// dropped). Must be called inside a tokio runtime.
    pub fn set_serving(&self, serving: bool) {
        let mut st = self.lock();
        match (serving, st.serving.is_some()) {
            (true, false) => {
                let epoch = random_epoch();
                let log = EventLog::new(
                    log_config(&self.inner.cfg),
                    epoch,
                    self.inner.source.service_table(),
                );
                let (tx, rx) = watch::channel(0);
                let e = Epoch {
                    epoch,
                    log: Arc::new(Mutex::new(log)),
                    cancel: CancellationToken::new(),
                    changed: rx,
                    grew: Arc::new(tx),
                };
                // Events queued before this epoch describe an older table.
                self.inner.publisher.drain(&mut Vec::new());
                self.inner.publisher.lost.store(false, Ordering::Relaxed);
                self.inner
                    .publisher
                    .table_changed
                    .store(false, Ordering::Relaxed);
                self.inner.publisher.enabled.store(true, Ordering::Release);
                tokio::spawn(sealer(self.inner.clone(), e.clone()));
                tracing::info!(epoch = format_args!("{epoch:#x}"), "sync: serving");
                st.serving = Some(e);
            }
            (false, true) => {
                self.inner.publisher.enabled.store(false, Ordering::Release);
                let e = st.serving.take().expect("serving");
                e.cancel.cancel();
                tracing::info!(
                    epoch = format_args!("{:#x}", e.epoch),
                    "sync: stopped serving"
                );
            }
            _ => {}
        }
    }

    /// Wait (at most `max_wait`) until every subscriber of the current
    /// epoch has acked everything pushed so far, the open batch included.
    /// For the moment a master stops serving: the last flows it created
    /// reach the peer before the stream closes. `false` on timeout or when
    /// not serving.
    pub async fn flush(&self, max_wait: Duration) -> bool {
        let serving = self.lock().serving.clone();
        let Some(e) = serving else {
            return false;
        };
        seal(&self.inner, &e, &mut Vec::new());
        let target = {
            let mut log = lock(&e.log);
            log.seal(now_us());
            let (end, seq) = (log.end_pos(), log.last_seq());
            drop(log);
            e.grew.send_replace(end);
            seq
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if self
                .status()
                .subscribers
                .iter()
                .all(|s| s.acked_sequence >= target)
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// True while serving.
    pub fn is_serving(&self) -> bool {
        self.lock().serving.is_some()
    }

    /// The tonic service, to add to a `Server`.
    pub fn service(&self) -> ConnSyncServer<SyncService> {
        ConnSyncServer::new(SyncService {
            inner: self.inner.clone(),
        })
    }

    /// Serves the sync service alone on `listener` (mutual TLS when `tls`
    /// is set) until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<&TlsConfig>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let mut b = tuned(tonic::transport::Server::builder());
        if let Some(t) = tls {
            b = b.tls_config(crate::tls::server_tls(t))?;
        }
        b.add_service(self.service())
            .serve_with_incoming_shutdown(incoming(listener), shutdown)
            .await
    }

    /// Status for the control API.
    pub fn status(&self) -> MasterStatus {
        let st = self.lock();
        let mut s = MasterStatus {
            events_dropped: self.inner.publisher.dropped.load(Ordering::Relaxed),
            ..Default::default()
        };
        if let Some(e) = &st.serving {
            s.serving = true;
            s.epoch = e.epoch;
            s.last_sequence = lock(&e.log).last_seq();
            s.subscribers = st
                .sessions
                .values()
                .filter(|h| h.epoch == e.epoch)
                .filter_map(|h| lock(&h.status).clone())
                .collect();
        }
        s
    }

    /// Planned step-down: tells each subscriber, waits (at most `max_wait`)
    /// until it is ready and has acked everything produced so far, and
    /// returns when it is safe to step down. The caller then tells VRRP.
    /// With `force`, returns `Ok` (report.forced) even on refusal, timeout
    /// or no subscriber.
    pub async fn handover(
        &self,
        max_wait: Duration,
        force: bool,
        reason: String,
    ) -> Result<HandoverReport, HandoverError> {
        let serving = self.lock().serving.clone();
        let Some(serving) = serving else {
            return Err(HandoverError::NotServing);
        };
        // Everything pushed so far belongs before the final sequence.
        seal(&self.inner, &serving, &mut Vec::new());
        let cmds: Vec<mpsc::UnboundedSender<Cmd>> = {
            let st = self.lock();
            let Some(e) = &st.serving else {
                return Err(HandoverError::NotServing);
            };
            st.sessions
                .values()
                .filter(|h| h.epoch == e.epoch && lock(&h.status).is_some())
                .map(|h| h.cmd.clone())
                .collect()
        };
        let mut waits = Vec::new();
        for c in cmds {
            let (reply, rx) = oneshot::channel();
            let cmd = Cmd::Handover {
                max_wait,
                force,
                reason: reason.clone(),
                reply,
            };
            if c.send(cmd).is_ok() {
                waits.push(rx);
            }
        }
        if waits.is_empty() {
            return if force {
                Ok(HandoverReport {
                    waited: Duration::ZERO,
                    entries_behind_at_switch: 0,
                    ms_behind_at_switch: 0,
                    final_sequence: self.status().last_sequence,
                    acked_sequence: 0,
                    forced: true,
                    peer: String::new(),
                })
            } else {
                Err(HandoverError::NoSubscriber)
            };
        }
        let mut last = None;
        for w in waits {
            let r = match tokio::time::timeout(max_wait + Duration::from_secs(1), w).await {
                Ok(Ok(r)) => r,
                _ => Err(HandoverError::Disconnected {
                    peer: String::new(),
                }),
            };
            match r {
                Ok(rep) => last = Some(rep),
                Err(e) => return Err(e),
            }
        }
        Ok(last.expect("one at least"))
    }
}

/// Server settings the sync stream needs, for a director that adds
/// [`SyncServer::service`] to its own `Server`: no Nagle delay (a batch is a
/// few hundred bytes; with Nagle and the peer's delayed ACK it waits 40 ms),
/// and HTTP/2 windows large enough that a snapshot is not throttled by
/// round trips.
///
/// tonic applies `tcp_nodelay` only to listeners it binds itself: with
/// `serve_with_incoming*` the accepted sockets take the incoming stream's
/// options, so a director serving its own listener must set TCP_NODELAY
/// there too (as [`SyncServer::serve`] does).
pub fn tuned(b: tonic::transport::Server) -> tonic::transport::Server {
    b.tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
}

/// Accepted connections of `listener`, with TCP_NODELAY set on each.
///
/// `Server::tcp_nodelay` does not reach sockets accepted from an incoming
/// stream we hand to tonic. Without it, a small message the subscriber does
/// not answer (the master's heartbeat, every 200 ms) stays unacknowledged
/// for the peer's delayed-ACK time (40 ms on Linux), and Nagle holds every
/// batch behind it: the whole 40 ms p99 of the lag.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// HTTP/2 stream window, both sides.
pub const STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 connection window, both sides.
pub const CONNECTION_WINDOW: u32 = 16 << 20;

/// Drains the publisher into the log and seals batches on time.
async fn sealer(inner: Arc<Inner>, e: Epoch) {
    let p = &inner.publisher;
    let mut spare = Vec::new();
    loop {
        let deadline = lock(&e.log).poll_timeout();
        tokio::select! {
            _ = e.cancel.cancelled() => break,
            _ = p.notify.notified() => {}
            _ = tokio::time::sleep_until(instant_at(deadline.unwrap_or(u64::MAX / 2))), if deadline.is_some() => {}
        }
        seal(&inner, &e, &mut spare);
    }
}

/// Moves what the publisher queued into the log, in push order, and seals
/// the batches that are due. Called by the sealer, and by a handover so
/// that its final sequence covers every event pushed before it began.
fn seal(inner: &Inner, e: &Epoch, spare: &mut Vec<lb_proto::sync::SyncEvent>) {
    let p = &inner.publisher;
    let table = p
        .table_changed
        .swap(false, Ordering::AcqRel)
        .then(|| inner.source.service_table());
    let now = now_us();
    let mut log = lock(&e.log);
    // Drained under the log's lock: two sealers cannot reorder events.
    p.drain(spare);
    let before = log.end_pos();
    if p.lost.swap(false, Ordering::AcqRel) {
        log.lost_events(now);
    }
    for ev in spare.drain(..) {
        log.push(now, ev);
    }
    if let Some(t) = table {
        log.set_service_table(now, t);
    }
    log.handle_timeout(now);
    let end = log.end_pos();
    drop(log);
    if end != before || p.lost.load(Ordering::Relaxed) {
        e.grew.send_replace(end);
    }
}

/// The generated service's implementation.
#[derive(Clone)]
pub struct SyncService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService").finish_non_exhaustive()
    }
}

type Out = mpsc::Sender<Result<MasterMessage, Status>>;

#[tonic::async_trait]
impl ConnSync for SyncService {
    type SubscribeStream = ReceiverStream<Result<MasterMessage, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscriberMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_stream(self.inner.clone(), inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends a SyncError and ends the stream with the matching status.
/// How long the last messages of a stream may wait for room. A peer that
/// stopped reading (frozen, or its end of a cut link already gone) leaves
/// the stream's windows and queue full, and a send would wait until TCP
/// gives up, minutes later; meanwhile its session stays listed, and the
/// same node reconnecting is refused as a duplicate of it.
const CLOSE_SEND_WAIT: Duration = Duration::from_secs(1);

/// Send the closing messages of a stream, waiting at most
/// [`CLOSE_SEND_WAIT`] in all; `false` if they did not all fit in time.
async fn send_closing(tx: &Out, msgs: Vec<Result<MasterMessage, Status>>) -> bool {
    let all = async {
        for m in msgs {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    };
    let sent = tokio::time::timeout(CLOSE_SEND_WAIT, all).await.is_ok();
    if !sent {
        tracing::warn!("sync: the peer is not reading; stream dropped without its closing status");
    }
    sent
}

async fn refuse(tx: &Out, e: lb_proto::sync::SyncError) {
    let status = status_for(&e);
    send_closing(tx, vec![Ok(mm(master_message::Msg::Error(e))), Err(status)]).await;
}

async fn run_stream(inner: Arc<Inner>, mut inbound: Streaming<SubscriberMessage>, tx: Out) {
    let cfg = &inner.cfg;
    let versions = cfg.min_version..=cfg.max_version;
    let first = tokio::time::timeout(3 * cfg.heartbeat_interval, inbound.message()).await;
    let hello = match first {
        Ok(Ok(Some(SubscriberMessage {
            msg: Some(subscriber_message::Msg::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            let e = sync_error(
                SyncErrorCode::ProtocolViolation,
                "first message was not Hello",
                &versions,
            );
            return refuse(&tx, e).await;
        }
        _ => return,
    };
    let sid = inner.next_session.fetch_add(1, Ordering::Relaxed);
    let (epoch, duplicate, hint) = {
        let st = lock(&inner.state);
        let dup = st.sessions.values().any(|h| h.node_id == hello.node_id);
        (st.serving.clone(), dup, st.master_hint.clone())
    };
    let Some(epoch) = epoch else {
        let ctx = HelloContext {
            node: &inner.node,
            versions,
            serving: false,
            master_hint: &hint,
            duplicate,
        };
        if let Err(e) = check_hello(&hello, &ctx) {
            refuse(&tx, e).await;
        }
        return;
    };
    let scfg = SessionConfig {
        heartbeat_interval_us: cfg.heartbeat_interval.as_micros() as u64,
        ack_interval_ms: cfg.ack_interval.as_millis().max(1) as u32,
        versions,
        lag_window_us: 60_000_000,
        node_view: cfg.node_view.clone(),
    };
    let now = now_us();
    let mut session = MasterSession::new(scfg, inner.node.clone(), epoch.epoch, now);
    session.handle_hello(now, hello, &lock(&epoch.log), true, &hint, duplicate);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let status = Arc::new(Mutex::new(None));
    if session.is_established() {
        let node_id = session.peer_id().unwrap_or_default().to_owned();
        tracing::info!(subscriber = %node_id, "sync: subscriber accepted");
        lock(&inner.state).sessions.insert(
            sid,
            SessionHandle {
                node_id,
                epoch: epoch.epoch,
                cmd: cmd_tx,
                status: status.clone(),
            },
        );
    }
    drive(&inner, &epoch, &mut session, inbound, &tx, cmd_rx, &status).await;
    lock(&inner.state).sessions.remove(&sid);
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    inner: &Arc<Inner>,
    epoch: &Epoch,
    session: &mut MasterSession,
    mut inbound: Streaming<SubscriberMessage>,
    tx: &Out,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    status: &Mutex<Option<SubscriptionStatus>>,
) {
    let mut changed = epoch.changed.clone();
    let mut chunks: Option<mpsc::Receiver<Vec<lb_proto::common::ConnEntry>>> = None;
    let mut pending_chunk: Option<MasterMessage> = None;
    let mut walk_finished = false;
    let mut next_out: Option<MasterMessage> = None;
    let mut replies: HashMap<u64, HandoverReply> = HashMap::new();
    let mut shutting_down = false;
    let mut last_status = 0;
    loop {
        // 1. Work only the driver can do.
        loop {
            let ev = session.poll_event(&lock(&epoch.log));
            let Some(ev) = ev else { break };
            match ev {
                SessionEvent::StartSnapshot { reason } => {
                    let expected = inner.source.len();
                    let now = now_us();
                    let id = session.begin_snapshot(now, &lock(&epoch.log), reason, expected);
                    tracing::info!(id, ?reason, expected, "sync: snapshot");
                    let (ctx, crx) = mpsc::channel(4);
                    let source = inner.source.clone();
                    let max = inner.cfg.max_message_bytes;
                    tokio::task::spawn_blocking(move || walk(&*source, max, ctx));
                    chunks = Some(crx);
                    walk_finished = false;
                }
                SessionEvent::HandoverRequested {
                    request_id,
                    max_wait_ms,
                    force,
                    reason,
                } => {
                    let wait = if max_wait_ms == 0 {
                        inner.cfg.default_handover_wait
                    } else {
                        Duration::from_millis(max_wait_ms.into())
                    };
                    let now = now_us();
                    let log = lock(&epoch.log);
                    let r = {
                        let mut log = log;
                        log.seal(now);
                        session.start_handover(
                            now,
                            &log,
                            wait.as_micros() as u64,
                            force,
                            &reason,
                            request_id,
                        )
                    };
                    if let Err(e) = r
                        && let Some(f) = lock(&inner.peer_handover).clone()
                    {
                        f(Err(e));
                    }
                }
                SessionEvent::HandoverDone {
                    handover_id,
                    request_id,
                    result,
                } => {
                    if let Some(reply) = replies.remove(&handover_id) {
                        let _ = reply.send(result);
                    } else if request_id != 0
                        && let Some(f) = lock(&inner.peer_handover).clone()
                    {
                        f(result);
                    }
                }
                SessionEvent::Close { error, reason } => {
                    tracing::info!(%reason, "sync: stream closed");
                    match error {
                        Some(e) => refuse(tx, e).await,
                        None => {
                            send_closing(tx, vec![Err(Status::unavailable(reason))]).await;
                        }
                    }
                    return;
                }
            }
        }
        // 2. The walk is over once its last chunk has gone out.
        if walk_finished && pending_chunk.is_none() {
            walk_finished = false;
            session.snapshot_walk_done(now_us());
        }
        // 3. What to send next: control and deltas first, then chunks.
        if next_out.is_none() {
            next_out = session
                .poll_transmit(&lock(&epoch.log))
                .or_else(|| pending_chunk.take());
        }
        let deadline = session.poll_timeout();
        // Status for the control API, refreshed at most every 20 ms (the
        // lag quantiles sort a window of samples).
        let now_tick = now_us() / 20_000;
        if now_tick != last_status {
            last_status = now_tick;
            *lock(status) = session.status(now_us(), &lock(&epoch.log));
        }
        tokio::select! {
            biased;
            _ = epoch.cancel.cancelled(), if !shutting_down => {
                shutting_down = true;
                let hint = lock(&inner.state).master_hint.clone();
                session.shut_down(&format!("node {} is stepping down as sync master", inner.node.node_name), &hint);
            }
            // Sending and timers before inbound: a busy inbound side must
            // not starve heartbeats.
            permit = tx.reserve(), if next_out.is_some() => match permit {
                Ok(p) => p.send(Ok(next_out.take().expect("checked"))),
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(instant_at(deadline.unwrap_or(u64::MAX / 2))), if deadline.is_some() => {
                session.handle_timeout(now_us(), &lock(&epoch.log));
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => session.handle_message(now_us(), m, &lock(&epoch.log)),
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(error = %e, "sync: subscriber stream failed");
                    return;
                }
            },
            Some(cmd) = cmd_rx.recv() => match cmd {
                Cmd::Handover { max_wait, force, reason, reply } => {
                    let now = now_us();
                    let mut log = lock(&epoch.log);
                    log.seal(now);
                    match session.start_handover(now, &log, max_wait.as_micros() as u64, force, &reason, 0) {
                        Ok(id) => { replies.insert(id, reply); }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
            },
            c = async { chunks.as_mut().expect("guarded").recv().await }, if chunks.is_some() && pending_chunk.is_none() => match c {
                Some(c) => pending_chunk = session.snapshot_chunk(c),
                None => { chunks = None; walk_finished = true; }
            },
            _ = changed.changed() => {}
        }
    }
}

/// Walks the source on a blocking thread, sending chunks until the
/// session goes away.
fn walk(
    source: &dyn ConnSource,
    max_bytes: usize,
    tx: mpsc::Sender<Vec<lb_proto::common::ConnEntry>>,
) {
    let mut ch = Chunker::new(max_bytes);
    let mut gone = false;
    source.for_each_entry(&mut |e| {
        if gone {
            return;
        }
        if let Some(c) = ch.push(e) {
            gone = tx.blocking_send(c).is_err();
        }
    });
    if !gone && let Some(c) = ch.finish() {
        let _ = tx.blocking_send(c);
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut inc = incoming(l);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = inc.next().await.expect("one connection").unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "the master's side of the stream must not run Nagle (40 ms tail with delayed ACK)"
        );
        drop(client);
    }
}
