//! The backup's tokio/tonic driver: connects to the peer's sync endpoint,
//! runs the [`SubscriberCore`] over the stream, applies into a
//! [`ConnSink`], and reconnects with exponential backoff (with jitter),
//! resuming where it stopped.
//!
//! One task per subscriber. The core sits behind a mutex shared with
//! [`Subscriber::status`]; sink calls are made from the task, so a sink
//! should apply a chunk (a few thousand entries) in well under a
//! millisecond or so, which an in-memory table does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_proto::sync::SubscriberMessage;
use lb_proto::sync::conn_sync_client::ConnSyncClient;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::clock::{instant_at, now_us};
use crate::config::{NodeInfo, SubscriberConfig};
use crate::status::{MasterHeartbeat, StreamLosses, SubscriberStatus};
use crate::subscriber::{CoreConfig, SubscriberCore, SubscriberEvent};
use crate::traits::ConnSink;

#[derive(Debug)]
enum Cmd {
    Handover {
        max_wait: Duration,
        force: bool,
        reason: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

struct Shared {
    core: Mutex<SubscriberCore>,
    sink: Arc<dyn ConnSink>,
    heartbeat: Mutex<Option<MasterHeartbeat>>,
    losses: watch::Sender<StreamLosses>,
}

/// Asks the subscriber's master for a handover; see
/// [`Subscriber::request_handover`]. Fails with "subscriber stopped" once
/// the subscriber is gone.
#[derive(Debug, Clone)]
pub struct HandoverRequester {
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl HandoverRequester {
    /// See [`Subscriber::request_handover`].
    pub async fn request(
        &self,
        max_wait: Duration,
        force: bool,
        reason: String,
    ) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Handover {
                max_wait,
                force,
                reason,
                reply,
            })
            .map_err(|_| "subscriber stopped".to_owned())?;
        match tokio::time::timeout(max_wait + Duration::from_secs(2), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("subscriber stopped".into()),
            Err(_) => Err(format!(
                "no handover from the master in {} ms",
                max_wait.as_millis()
            )),
        }
    }
}

/// The sync subscriber task (backup side).
pub struct Subscriber {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Subscriber {
    /// Starts subscribing to `config.endpoint` (inside a tokio runtime).
    pub fn spawn(node: NodeInfo, config: SubscriberConfig, sink: Arc<dyn ConnSink>) -> Subscriber {
        let core = SubscriberCore::new(
            CoreConfig {
                protocol_version: config.protocol_version,
                hello_timeout_us: config.hello_timeout.as_micros() as u64,
                node_view: config.node_view.clone(),
                readiness: config.readiness.clone(),
            },
            node,
        );
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            sink,
            heartbeat: Mutex::new(None),
            losses: watch::Sender::new(StreamLosses::default()),
        });
        let cancel = CancellationToken::new();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(shared.clone(), config, cancel.clone(), cmd_rx));
        Subscriber {
            shared,
            cancel,
            cmd: cmd_tx,
            task: Some(task),
        }
    }

    /// Status for the control API.
    pub fn status(&self) -> SubscriberStatus {
        lock(&self.shared.core).status(now_us(), &*self.shared.sink)
    }

    /// The last heartbeat from the master over this stream (the director
    /// feeds it to VRRP as a second heartbeat path).
    pub fn last_master_heartbeat(&self) -> Option<MasterHeartbeat> {
        lock(&self.shared.heartbeat).clone()
    }

    /// Abrupt ends of established streams ([`StreamLosses`]), as they
    /// happen: the receiver sees a change within the task's next poll of
    /// the socket, so a killed master is noticed in about a millisecond.
    /// The channel closes when the subscriber has stopped.
    pub fn stream_losses(&self) -> watch::Receiver<StreamLosses> {
        self.shared.losses.subscribe()
    }

    /// Backup-initiated failover: asks the master to hand over to this
    /// node. `Ok` once the master's Handover arrived and this node answered
    /// ready; the master then steps down when we have acked its final
    /// sequence.
    pub async fn request_handover(
        &self,
        max_wait: Duration,
        force: bool,
        reason: String,
    ) -> Result<(), String> {
        self.handover_requester()
            .request(max_wait, force, reason)
            .await
    }

    /// A handle that can ask for a handover while the subscriber itself
    /// stays with its owner (the control API asks; the daemon owns).
    pub fn handover_requester(&self) -> HandoverRequester {
        HandoverRequester {
            cmd: self.cmd.clone(),
        }
    }

    /// Stops the task (closing the stream) and waits for it.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn run(
    shared: Arc<Shared>,
    cfg: SubscriberConfig,
    cancel: CancellationToken,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut backoff = cfg.backoff_min;
    loop {
        let Ended {
            established,
            error,
            abrupt,
        } = tokio::select! {
            _ = cancel.cancelled() => Ended::quiet(false, None),
            r = stream(&shared, &cfg, &mut cmds) => r,
        };
        if established && abrupt && !cancel.is_cancelled() {
            let at = tokio::time::Instant::now().into_std();
            let reason = error.clone().unwrap_or_default();
            shared.losses.send_modify(|l| {
                l.count += 1;
                l.last_at = Some(at);
                l.last_reason = reason;
            });
        }
        lock(&shared.core).closed(&*shared.sink, error, now_us());
        if cancel.is_cancelled() {
            return;
        }
        if established {
            backoff = cfg.backoff_min;
        }
        let jitter = Duration::from_micros(now_us() % (backoff.as_micros() as u64 / 4 + 1));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

fn uri(cfg: &SubscriberConfig) -> String {
    if cfg.endpoint.contains("://") {
        cfg.endpoint.clone()
    } else if cfg.tls.is_some() {
        format!("https://{}", cfg.endpoint)
    } else {
        format!("http://{}", cfg.endpoint)
    }
}

fn host_of(uri: &str) -> String {
    let rest = uri.split("://").nth(1).unwrap_or(uri);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_owned()
}

/// How one connection ended.
#[derive(Debug)]
struct Ended {
    /// It got established (Welcome received).
    established: bool,
    /// Why it ended; `None` when we stopped it.
    error: Option<String>,
    /// The master's side closed or reset the connection without a word
    /// (see [`StreamLosses`]).
    abrupt: bool,
}

impl Ended {
    fn quiet(established: bool, error: Option<String>) -> Ended {
        Ended {
            established,
            error,
            abrupt: false,
        }
    }

    fn abrupt(established: bool, error: String) -> Ended {
        Ended {
            established,
            error: Some(error),
            abrupt: true,
        }
    }
}

/// One connection: whether it got established, and why it ended.
async fn stream(
    shared: &Shared,
    cfg: &SubscriberConfig,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
) -> Ended {
    let uri = uri(cfg);
    let mut ep = match Endpoint::from_shared(uri.clone()) {
        Ok(e) => e
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(crate::server::STREAM_WINDOW))
            .initial_connection_window_size(Some(crate::server::CONNECTION_WINDOW)),
        Err(e) => return Ended::quiet(false, Some(format!("bad endpoint {uri:?}: {e}"))),
    };
    if let Some(t) = &cfg.tls {
        let name = cfg.tls_server_name.clone().unwrap_or_else(|| host_of(&uri));
        ep = match ep.tls_config(crate::tls::client_tls(t, &name)) {
            Ok(e) => e,
            Err(e) => return Ended::quiet(false, Some(format!("TLS configuration: {e}"))),
        };
    }
    let channel = match ep.connect().await {
        Ok(c) => c,
        Err(e) => {
            let e = format!("connect {uri}: {}", error_chain(&e));
            return Ended::quiet(false, Some(e));
        }
    };
    let mut client = ConnSyncClient::new(channel);
    let (out_tx, out_rx) = mpsc::channel::<SubscriberMessage>(64);
    let hello = lock(&shared.core).open(now_us());
    let _ = out_tx.send(hello).await;
    let call = tokio::time::timeout(
        cfg.hello_timeout,
        client.subscribe(ReceiverStream::new(out_rx)),
    )
    .await;
    let mut inbound = match call {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            return Ended::quiet(false, Some(format!("subscribe: {}", status_text(&s))));
        }
        Err(_) => return Ended::quiet(false, Some("subscribe: no answer".into())),
    };
    let sink = &*shared.sink;
    let beat = Arc::new(Beat::default());
    let _beat_task = AbortOnDrop(tokio::spawn(side_heartbeats(
        beat.clone(),
        out_tx.clone(),
        lock(&shared.core).node_id().to_owned(),
        cfg.node_view.clone(),
    )));
    let mut next_out: Option<SubscriberMessage> = None;
    let mut handovers: HashMap<u64, oneshot::Sender<Result<(), String>>> = HashMap::new();
    let mut next_request = 1u64;
    let mut established = false;
    loop {
        let deadline = {
            let mut core = lock(&shared.core);
            established |= core.is_established();
            while let Some(ev) = core.poll_event() {
                match ev {
                    SubscriberEvent::MasterHeartbeat { node_id, view } => {
                        *lock(&shared.heartbeat) = Some(MasterHeartbeat {
                            at: tokio::time::Instant::now().into_std(),
                            node_id,
                            view,
                        });
                    }
                    SubscriberEvent::HandoverAnswered { request_id, ready } => {
                        if let Some(r) = handovers.remove(&request_id) {
                            let _ = r.send(ready);
                        }
                    }
                }
            }
            if next_out.is_none() {
                next_out = core.poll_transmit(now_us(), sink);
            }
            core.poll_timeout()
        };
        // Order matters: while a snapshot streams in, inbound is always
        // ready; sending (acks, heartbeats) and timers go first so that the
        // master keeps hearing from us.
        tokio::select! {
            biased;
            permit = out_tx.reserve(), if next_out.is_some() => match permit {
                Ok(p) => {
                    p.send(next_out.take().expect("checked"));
                    beat.last_sent_us.store(now_us(), Ordering::Relaxed);
                }
                Err(_) => return Ended::abrupt(established, "stream closed".into()),
            },
            _ = tokio::time::sleep_until(instant_at(deadline.unwrap_or(u64::MAX / 2))), if deadline.is_some() => {
                if let Err(e) = lock(&shared.core).handle_timeout(now_us()) {
                    // Silence is no loss: a cut link is silent too, and
                    // VRRP's own timer covers a master that went quiet.
                    return Ended::quiet(established, Some(e.to_string()));
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    let mut core = lock(&shared.core);
                    core.count_bytes(m.encoded_len());
                    let r = core.handle_message(now_us(), m, sink);
                    core.touch(now_us());
                    beat.applied.store(core.applied_sequence(), Ordering::Relaxed);
                    beat.table_version.store(core.service_table_version(), Ordering::Relaxed);
                    if let Some(hb) = core.heartbeat_interval_us() {
                        beat.interval_us.store(hb, Ordering::Relaxed);
                    }
                    drop(core);
                    if let Err(e) = r {
                        // The master said why (SHUTTING_DOWN, NOT_MASTER)
                        // or broke the protocol: it is alive.
                        return Ended::quiet(established, Some(e.to_string()));
                    }
                }
                Ok(None) => {
                    return Ended::abrupt(established, "the master closed the stream".into());
                }
                Err(s) => {
                    return Ended::abrupt(established, format!("stream: {}", status_text(&s)));
                }
            },
            Some(cmd) = cmds.recv() => match cmd {
                Cmd::Handover { max_wait, force, reason, reply } => {
                    let id = next_request;
                    next_request += 1;
                    let ms = max_wait.as_millis().min(u32::MAX as u128) as u32;
                    if lock(&shared.core).request_handover(id, ms, force, reason) {
                        handovers.insert(id, reply);
                    } else {
                        let _ = reply.send(Err("not connected to the master".into()));
                    }
                }
            },
        }
    }
}

/// What the side heartbeat task needs, without the core's lock.
#[derive(Debug, Default)]
struct Beat {
    applied: AtomicU64,
    table_version: AtomicU64,
    /// 0 until Welcome.
    interval_us: AtomicU64,
    last_sent_us: AtomicU64,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the master hearing from us while the stream task is inside a slow
/// sink call (a large snapshot chunk into a big table): a heartbeat goes
/// out whenever nothing has been sent for one interval. The core's own
/// heartbeats cover the ordinary case.
async fn side_heartbeats(
    beat: Arc<Beat>,
    out: mpsc::Sender<SubscriberMessage>,
    node_id: String,
    vrrp: Option<crate::config::NodeViewFn>,
) {
    loop {
        let iv = beat.interval_us.load(Ordering::Relaxed);
        let tick = if iv == 0 { 50_000 } else { iv / 2 };
        tokio::time::sleep(Duration::from_micros(tick)).await;
        let now = now_us();
        if iv == 0 || now.saturating_sub(beat.last_sent_us.load(Ordering::Relaxed)) < iv {
            continue;
        }
        let view = crate::config::view_of(&vrrp);
        let hb = lb_proto::sync::Heartbeat {
            node_id: node_id.clone(),
            sender_time_us: now,
            instances: view.instances,
            uptime_ms: view.uptime_ms,
            connections: view.connections,
            sequence: beat.applied.load(Ordering::Relaxed),
            service_table_version: beat.table_version.load(Ordering::Relaxed),
            entries_behind: 0,
            ms_behind: 0,
        };
        let msg = crate::codec::sm(lb_proto::sync::subscriber_message::Msg::Heartbeat(hb));
        if out.try_send(msg).is_ok() {
            beat.last_sent_us.store(now, Ordering::Relaxed);
        }
    }
}

fn status_text(s: &tonic::Status) -> String {
    let mut t = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{:?}: {}", s.code(), s.message())
    };
    // Transport failures (TLS refusals) say what happened only in the source.
    if let Some(src) = std::error::Error::source(s) {
        t.push_str(": ");
        t.push_str(&error_chain(src));
    }
    t
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(host_of("https://[::1]:7001/x"), "::1");
        assert_eq!(host_of("http://dir-a.example:7001"), "dir-a.example");
    }
}
