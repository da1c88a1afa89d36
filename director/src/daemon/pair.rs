//! The node as one half of a pair: VRRP decides the role, and connection
//! sync follows it — the MASTER serves its table, the BACKUP subscribes to
//! the master's.
//!
//! Ordering rules that keep flows alive across role changes:
//! - A node that starts (or restarts after a failure) holds its VRRP
//!   instances (no preemption) until it has applied a snapshot from the
//!   current master: a returning higher-priority node must not claim the
//!   VIPs before it has the table (failback without the race between the
//!   gratuitous ARP and the table). With no master to sync from, the RFC's
//!   Master_Down timer still makes it master.
//! - Becoming MASTER starts a new sync epoch and stops subscribing;
//!   leaving MASTER stops serving and subscribes to the peer.
//! - While subscribed, every master heartbeat on the sync stream restarts
//!   VRRP's Master_Down timer: the sync link is a second heartbeat path,
//!   so losing the VRRP path alone does not make two masters.
//! - An abrupt end of the stream (a killed master's kernel closes it at
//!   once) makes VRRP suspect the master: it takes over one advert
//!   interval + skew later unless an advert comes, instead of three
//!   intervals (see `suspect_on_loss`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use lb_proto::control as ctl;
use syncd::{
    HandoverRequester, MasterConfig, NodeInfo, Subscriber, SubscriberConfig, SyncServer, TlsConfig,
};
use vrrp::DriverEvent;

use super::clock::Clock;
use super::sync_side::{SyncHook, TableSink, TableSource};
use super::vrrp_side::VrrpSide;
use crate::api::{ControlState, PairView};
use crate::config::{SyncConfig, VrrpInstanceConfig};

/// Longest wait, when this node stops being master, for the peer to ack
/// the last events (the flows created just before the switch).
pub const FLUSH_BOUND: std::time::Duration = std::time::Duration::from_millis(100);

/// Sync, running.
struct SyncRuntime {
    cfg: SyncConfig,
    node: NodeInfo,
    tls: Option<TlsConfig>,
    server: SyncServer,
    sink: Arc<TableSink>,
    subscriber: Option<Subscriber>,
    /// What our heartbeats say about this node.
    view: syncd::NodeViewFn,
    /// The hold on preemption was lifted (caught up, or became master).
    released: bool,
    /// Arrival of the last master heartbeat passed on to VRRP.
    last_beat: Option<Instant>,
    last_refresh: Instant,
}

impl std::fmt::Debug for SyncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRuntime")
            .field("cfg", &self.cfg)
            .field("subscribed", &self.subscriber.is_some())
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

/// VRRP and, when configured, sync.
#[derive(Debug)]
pub struct Pair {
    vrrp: VrrpSide,
    sync: Option<SyncRuntime>,
    clock: Clock,
    hook: Arc<SyncHook>,
    view: Arc<PairStatus>,
}

/// The pair as the control API sees it: shared, updated by the daemon.
#[derive(Debug)]
pub struct PairStatus {
    pub(super) vrrp: VrrpSide,
    pub(super) server: Option<SyncServer>,
    pub(super) peer: Option<String>,
    pub(super) node: String,
    subscriber: std::sync::Mutex<Option<syncd::SubscriberStatus>>,
    /// The master's last heartbeat (its VRRP instances), while subscribed.
    master_beat: std::sync::Mutex<Option<syncd::MasterHeartbeat>>,
    /// Asks the master for a handover, while subscribed.
    requester: std::sync::Mutex<Option<HandoverRequester>>,
    /// One manual failover at a time.
    pub(super) failing_over: tokio::sync::Mutex<()>,
}

/// The peer's live stream: if an old one is still listed beside a new one
/// (not yet closed), the newest.
pub(super) fn live_subscriber(m: &syncd::MasterStatus) -> Option<&syncd::SubscriptionStatus> {
    m.subscribers.iter().max_by_key(|s| s.connected_since)
}

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PairStatus {
    /// The subscriber's figures, while this node subscribes.
    pub(super) fn subscriber_status(&self) -> Option<syncd::SubscriberStatus> {
        locked(&self.subscriber).clone()
    }

    /// The handle to ask the master for a handover, while subscribed.
    pub(super) fn requester(&self) -> Option<HandoverRequester> {
        locked(&self.requester).clone()
    }

    /// What the peer's last sync heartbeat said about it.
    pub(super) fn peer_view(&self) -> syncd::NodeBeat {
        match self.server.as_ref().map(SyncServer::status) {
            Some(m) if m.serving => live_subscriber(&m)
                .map(|s| s.peer.clone())
                .unwrap_or_default(),
            Some(_) => locked(&self.master_beat)
                .as_ref()
                .map(|h| h.view.clone())
                .unwrap_or_default(),
            None => syncd::NodeBeat::default(),
        }
    }
}

fn peer_instances(view: &syncd::NodeBeat) -> Vec<ctl::PeerVrrpInstance> {
    view.instances
        .iter()
        .map(|b| ctl::PeerVrrpInstance {
            name: b.name.clone(),
            vrid: b.vrid,
            state: b.state,
            priority: b.priority,
            effective_priority: b.effective_priority,
        })
        .collect()
}

fn read_tls(cfg: &SyncConfig) -> anyhow::Result<Option<TlsConfig>> {
    let Some(files) = &cfg.tls else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("sync TLS: reading {}", p.display()))
    };
    Ok(Some(TlsConfig {
        ca_pem: read(&files.ca)?,
        cert_pem: read(&files.cert)?,
        key_pem: read(&files.key)?,
    }))
}

impl Pair {
    /// Start VRRP for `instances` and, with `sync`, the sync server and
    /// subscriber. Transitions arrive on the returned receiver and go to
    /// [`Pair::record`] and [`Pair::follow`].
    pub async fn start(
        instances: &[VrrpInstanceConfig],
        sync: Option<&SyncConfig>,
        state: &Arc<ControlState>,
        hook: &Arc<SyncHook>,
        clock: Clock,
    ) -> anyhow::Result<(Pair, tokio::sync::mpsc::UnboundedReceiver<DriverEvent>)> {
        let (vrrp, events) = VrrpSide::start(instances).await?;
        let sync = match sync.filter(|s| s.enabled) {
            None => None,
            Some(cfg) => Some(start_sync(cfg, instances, state, hook, &vrrp, clock).await?),
        };
        if let Some(sub) = sync.as_ref().and_then(|s| s.subscriber.as_ref()) {
            suspect_on_loss(sub, vrrp.handle());
        }
        if sync.is_some() {
            // Hold until synced (see the module comment).
            vrrp.handle()
                .step_down(None)
                .await
                .map_err(|e| anyhow::anyhow!("VRRP hold at start: {e}"))?;
            // Every change of the rule set goes to the backup.
            let mut changes = state.subscribe();
            let hook = Arc::clone(hook);
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    hook.table_changed();
                }
            });
        }
        let view = Arc::new(PairStatus {
            vrrp: vrrp.clone(),
            server: sync.as_ref().map(|s| s.server.clone()),
            peer: sync.as_ref().map(|s| s.cfg.peer.to_string()),
            node: state.node.clone(),
            subscriber: std::sync::Mutex::new(None),
            master_beat: std::sync::Mutex::new(None),
            requester: std::sync::Mutex::new(
                sync.as_ref()
                    .and_then(|s| s.subscriber.as_ref())
                    .map(Subscriber::handover_requester),
            ),
            failing_over: tokio::sync::Mutex::new(()),
        });
        if let Some(s) = &sync {
            // A handover the peer asked for (dirctl failover on the
            // backup) ends here: step down so that it takes over.
            let vrrp = vrrp.clone();
            s.server.on_peer_handover(move |r| match r {
                Ok(rep) => {
                    tracing::info!(
                        "sync: handover to {} done (lag {} entries at the switch); stepping down",
                        rep.peer,
                        rep.entries_behind_at_switch
                    );
                    let vrrp = vrrp.clone();
                    tokio::spawn(async move {
                        if let Err(e) = super::failover::step_down_masters(&vrrp).await {
                            tracing::error!("VRRP step-down after handover: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("sync: handover asked by the peer failed: {e}"),
            });
        }
        Ok((
            Pair {
                vrrp,
                sync,
                clock,
                hook: Arc::clone(hook),
                view,
            },
            events,
        ))
    }

    /// The VRRP side (status, handle).
    pub fn vrrp(&self) -> &VrrpSide {
        &self.vrrp
    }

    /// A VRRP transition, first half: record it and return the addresses
    /// this node owns now. The daemon applies them to the dataplane, then
    /// calls [`Pair::follow`].
    pub fn record(&self, ev: &DriverEvent) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
        self.vrrp.record(ev)
    }

    /// A VRRP transition, second half, once the dataplane has its new
    /// role: move sync's role (`master`: this node owns VIPs now).
    ///
    /// Leaving MASTER, the dataplane already starts no flow (it drains), so
    /// the last flows it created are flushed to the peer (bounded by
    /// [`FLUSH_BOUND`]) before the stream closes.
    pub async fn follow(&mut self, ev: &DriverEvent, master: bool) {
        let vrrp::DriverEvent::Transition { instance, to, .. } = ev;
        if *to == vrrp::State::Master {
            // Mastership clears any hold (start-up or a manual failover
            // away from this node): nothing left to wait for.
            let _ = self.vrrp.handle().release(Some(instance)).await;
        }
        if let Some(s) = &mut self.sync {
            if master {
                s.server.set_serving(true);
                if let Some(sub) = s.subscriber.take() {
                    *locked(&self.view.requester) = None;
                    sub.shutdown().await;
                }
                s.released = true;
            } else {
                if s.server.is_serving() && !s.server.flush(FLUSH_BOUND).await {
                    tracing::warn!(
                        "sync: the peer had not acked the last events within {} ms of the \
                         step-down",
                        FLUSH_BOUND.as_millis()
                    );
                }
                s.server.set_serving(false);
                if s.subscriber.is_none() {
                    let sub = subscribe(s, &self.vrrp);
                    suspect_on_loss(&sub, self.vrrp.handle());
                    *locked(&self.view.requester) = Some(sub.handover_requester());
                    s.subscriber = Some(sub);
                }
            }
        }
    }

    /// Periodic work (every ~100 ms): lift the start-up hold once caught
    /// up, pass master heartbeats to VRRP, refresh synced timers.
    #[allow(clippy::disallowed_methods)] // the driver owns the clock
    pub async fn tick(&mut self, dp: &crate::dataplane::Dataplane) {
        let Some(s) = &mut self.sync else {
            return;
        };
        if let Some(sub) = &s.subscriber {
            let st = sub.status();
            if !s.released && st.connected && st.snapshots_applied > 0 && st.entries_behind == 0 {
                s.released = true;
                tracing::info!("sync: caught up with the master; preemption allowed again");
                let _ = self.vrrp.handle().release(None).await;
            }
            // A heartbeat from before the stream was lost proves nothing
            // now, and passing it on would undo the suspicion.
            let lost_at = sub.stream_losses().borrow().last_at;
            if let Some(hb) = sub.last_master_heartbeat()
                && s.last_beat != Some(hb.at)
                && lost_at.is_none_or(|l| hb.at > l)
            {
                s.last_beat = Some(hb.at);
                *locked(&self.view.master_beat) = Some(hb);
                self.vrrp.handle().peer_alive().await;
            }
        }
        if s.last_refresh.elapsed() >= s.cfg.refresh_interval {
            s.last_refresh = Instant::now();
            // One walk of the table per period (a minute by default); only
            // flows that saw traffic since the last walk are sent.
            let n = self
                .hook
                .refresh(dp, self.clock.now(), s.cfg.refresh_interval);
            tracing::debug!("sync: refreshed the timers of {n} flows");
        }
        *locked(&self.view.subscriber) = s.subscriber.as_ref().map(Subscriber::status);
        if s.subscriber.is_none() {
            *locked(&self.view.master_beat) = None;
        }
    }

    /// Every instance is BACKUP and hears a master: after losing
    /// mastership, the peer has taken over (and sent its gratuitous ARP).
    pub fn new_master_heard(&self) -> bool {
        let st = self.vrrp.handle().status();
        !st.is_empty()
            && st
                .iter()
                .all(|i| i.state == vrrp::State::Backup && i.master_addr.is_some())
    }

    /// What the control API shows of the pair.
    pub fn view(&self) -> Arc<PairStatus> {
        Arc::clone(&self.view)
    }

    /// Stop: priority 0 first (the peer takes over at once), then sync.
    pub async fn shutdown(&mut self) {
        self.vrrp.handle().shutdown().await;
        if let Some(s) = &mut self.sync {
            if s.server.is_serving() {
                s.server.flush(FLUSH_BOUND).await;
            }
            s.server.set_serving(false);
            if let Some(sub) = s.subscriber.take() {
                sub.shutdown().await;
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // the driver owns the clock
async fn start_sync(
    cfg: &SyncConfig,
    instances: &[VrrpInstanceConfig],
    state: &Arc<ControlState>,
    hook: &Arc<SyncHook>,
    vrrp: &VrrpSide,
    clock: Clock,
) -> anyhow::Result<SyncRuntime> {
    let tls = read_tls(cfg)?;
    let node = NodeInfo {
        node_id: state.node.clone(),
        node_name: state.node.clone(),
        cluster_id: cfg.cluster.clone(),
        vrids: {
            let mut v: Vec<u32> = instances.iter().map(|i| u32::from(i.vrid)).collect();
            v.sort_unstable();
            v.dedup();
            v
        },
    };
    let source = Arc::new(TableSource {
        state: Arc::clone(state),
        clock,
    });
    let view = node_view(vrrp, state);
    let master_cfg = MasterConfig {
        node_view: Some(Arc::clone(&view)),
        ..MasterConfig::default()
    };
    let (server, publisher) = SyncServer::new(node.clone(), source, master_cfg);
    server.set_master_hint(cfg.peer.to_string());
    hook.attach(publisher);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("sync: cannot listen on {}", cfg.listen))?;
    let serving = server.clone();
    let tls_serve = tls.clone();
    tokio::spawn(async move {
        if let Err(e) = serving
            .serve(listener, tls_serve.as_ref(), std::future::pending())
            .await
        {
            tracing::error!("sync server stopped: {e}");
        }
    });
    let mut rt = SyncRuntime {
        cfg: cfg.clone(),
        node,
        tls,
        server,
        sink: Arc::new(TableSink::new(Arc::clone(state), clock)),
        subscriber: None,
        view,
        released: false,
        last_beat: None,
        last_refresh: Instant::now(),
    };
    rt.subscriber = Some(subscribe(&rt, vrrp));
    Ok(rt)
}

/// Passes abrupt ends of `sub`'s stream to VRRP as suspicion that the
/// master died ([`vrrp::Handle::peer_suspect`]); a live master's next
/// advert cancels it, so a cut sync link alone changes nothing. The task
/// ends with the subscriber.
fn suspect_on_loss(sub: &Subscriber, vrrp: &vrrp::Handle) {
    let mut losses = sub.stream_losses();
    let vrrp = vrrp.clone();
    tokio::spawn(async move {
        while losses.changed().await.is_ok() {
            let reason = losses.borrow_and_update().last_reason.clone();
            tracing::info!("sync: stream to the master lost ({reason}); VRRP suspects the master");
            vrrp.peer_suspect().await;
        }
    });
}

/// What our sync heartbeats say about this node (the peer's `dirctl
/// status` shows it): VRRP instances, uptime, connection-table size.
fn node_view(vrrp: &VrrpSide, state: &Arc<ControlState>) -> syncd::NodeViewFn {
    let vrrp = vrrp.clone();
    let state = Arc::clone(state);
    Arc::new(move || syncd::NodeBeat {
        instances: vrrp.beats(),
        uptime_ms: u64::try_from(state.uptime().as_millis()).unwrap_or(u64::MAX),
        connections: state.dp.conns().len() as u64,
    })
}

fn subscribe(s: &SyncRuntime, vrrp: &VrrpSide) -> Subscriber {
    let mut cfg = SubscriberConfig::new(s.cfg.peer.to_string());
    cfg.node_view = Some(Arc::clone(&s.view));
    // A node in FAULT refuses a handover: it could not take over.
    let v = vrrp.clone();
    cfg.readiness = Some(Arc::new(move || {
        match v
            .handle()
            .status()
            .into_iter()
            .find(|i| i.state == vrrp::State::Fault)
        {
            Some(i) => Err(format!("VRRP instance {} is in FAULT", i.name)),
            None => Ok(()),
        }
    }));
    cfg.tls = s.tls.clone();
    cfg.tls_server_name = s.tls.as_ref().map(|_| s.cfg.peer.ip().to_string());
    Subscriber::spawn(s.node.clone(), cfg, s.sink.clone())
}

impl PairView for PairStatus {
    fn vrrp_instances(&self) -> Vec<ctl::VrrpInstanceStatus> {
        self.vrrp.instances()
    }

    fn counters(&self) -> crate::api::PairCounters {
        self.vrrp.counters()
    }

    fn sync_status(&self) -> Option<ctl::SyncStatus> {
        let server = self.server.as_ref()?;
        let peer = self.peer.clone().unwrap_or_default();
        let m = server.status();
        if m.serving {
            let sub = live_subscriber(&m);
            let view = sub.map(|s| s.peer.clone()).unwrap_or_default();
            return Some(ctl::SyncStatus {
                role: ctl::SyncRole::Master as i32,
                protocol_version: sub.map_or(0, |s| s.protocol_version),
                peer_node_id: sub.map(|s| s.node_id.clone()).unwrap_or_default(),
                peer_address: peer,
                connected: sub.is_some(),
                epoch: m.epoch,
                last_sequence: m.last_sequence,
                acked_sequence: sub.map_or(0, |s| s.acked_sequence),
                entries_behind: sub.map_or(0, |s| s.entries_behind),
                ms_behind: sub.map_or(0, |s| s.ms_behind),
                snapshots: sub.map_or(0, |s| s.snapshots_sent),
                last_snapshot_entries: sub.map_or(0, |s| s.last_snapshot_entries),
                last_snapshot_bytes: sub.map_or(0, |s| s.last_snapshot_bytes),
                last_snapshot_duration_ms: sub
                    .and_then(|s| s.last_snapshot_duration)
                    .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
                deltas_sent: sub.map_or(0, |s| s.events_sent),
                batches: sub.map_or(0, |s| s.batches_sent),
                bytes: sub.map_or(0, |s| s.bytes_sent),
                heartbeat_age_ms: sub.map_or(0, |s| {
                    u32::try_from(s.heard_age.as_millis()).unwrap_or(u32::MAX)
                }),
                peer_instances: peer_instances(&view),
                peer_uptime_ms: view.uptime_ms,
                peer_connections: view.connections,
                ..Default::default()
            });
        }
        let peer_view = self.peer_view();
        let guard = locked(&self.subscriber);
        let s = guard.as_ref();
        Some(ctl::SyncStatus {
            role: ctl::SyncRole::Subscriber as i32,
            protocol_version: s.map_or(0, |s| s.protocol_version),
            peer_node_id: s.map(|s| s.master_node_id.clone()).unwrap_or_default(),
            peer_address: peer,
            connected: s.is_some_and(|s| s.connected),
            epoch: s.map_or(0, |s| s.epoch),
            last_sequence: s.map_or(0, |s| s.master_last_sequence),
            acked_sequence: s.map_or(0, |s| s.applied_sequence),
            entries_behind: s.map_or(0, |s| s.entries_behind),
            ms_behind: s.map_or(0, |s| s.ms_behind),
            snapshots: s.map_or(0, |s| s.snapshots_applied),
            last_snapshot_entries: s
                .and_then(|s| s.last_snapshot.as_ref())
                .map_or(0, |l| l.entries),
            last_snapshot_duration_ms: s.and_then(|s| s.last_snapshot.as_ref()).map_or(0, |l| {
                u32::try_from(l.duration.as_millis()).unwrap_or(u32::MAX)
            }),
            reconnects: s.map_or(0, |s| s.reconnects),
            heartbeat_age_ms: s
                .and_then(|s| s.last_heartbeat_age)
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            last_error: s.and_then(|s| s.last_error.clone()).unwrap_or_default(),
            peer_instances: peer_instances(&peer_view),
            peer_uptime_ms: peer_view.uptime_ms,
            peer_connections: peer_view.connections,
            ..Default::default()
        })
    }

    fn failover(&self, req: ctl::FailoverRequest) -> crate::api::BoxFuture<'_, FailoverResult> {
        Box::pin(super::failover::run(self, req))
    }

    fn rules_master(&self) -> Option<String> {
        let server = self.server.as_ref()?;
        if server.is_serving() {
            return None;
        }
        let master = locked(&self.master_beat)
            .as_ref()
            .map(|h| h.node_id.clone())
            .filter(|n| !n.is_empty());
        let addr = self.peer.clone().unwrap_or_default();
        Some(match master {
            Some(n) => format!("{n} ({addr})"),
            None => addr,
        })
    }
}

type FailoverResult = Result<ctl::FailoverResponse, tonic::Status>;
