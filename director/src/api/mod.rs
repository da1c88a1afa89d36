//! The control API: the gRPC `lb.control.v1.Control` service a director
//! serves to `dirctl` (and to anything else that speaks the contract in
//! `proto/control.proto`).
//!
//! [`ControlState`] holds the configured services — the source of truth
//! that every edit starts from — next to the running [`Dataplane`]. A
//! mutation locks the specs, builds the new list, hands it to
//! [`Dataplane::apply`] (all or nothing) and stores it only if the
//! dataplane took it: a refused request leaves both exactly as they were.
//! The configuration version is the dataplane's service-table version.
//!
//! Health checks never edit the configured services: their verdicts are an
//! [`Overlay`] kept beside them, and what the dataplane runs is the
//! configuration with the overlay applied ([`Overlay::effective`]). So the
//! configured weight is the operator's intent, whatever the checks say,
//! and the effective weight is what the schedulers use.
//!
//! [`ControlService`] implements the RPCs over a shared state; the ones not
//! implemented yet answer UNIMPLEMENTED with a sentence naming them. [`serve`]
//! and [`serve_listener`] run it on a tonic server until a shutdown future
//! completes; [`serve_with`] adds TLS and a bearer token ([`access`]), and
//! every server also answers gRPC health and reflection.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::dataplane::Dataplane;
use crate::health::apply::Verdict;
use crate::health::{HealthPlan, HealthRegistry, Overlay};
use crate::service::ServiceKey;
use crate::service_table::{ServiceSpec, SpecError};
use crate::time::Millis;

pub mod access;
mod conns;
pub mod convert;
pub mod health;
pub mod rules;
mod service;
mod watch;
mod which;

pub use access::{ServeOptions, ServerTls, Token, serve_with};
pub use conns::DEFAULT_PAGE_SIZE;
pub use service::ControlService;

/// The daemon's monotonic clock, in the dataplane's [`Millis`].
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The pair side of a node (VRRP now; sync next), as the control API
/// shows it. The daemon provides it once its VRRP driver runs; a node
/// without VRRP has none.
pub trait PairView: Send + Sync + fmt::Debug {
    /// Status of every VRRP instance of this node.
    fn vrrp_instances(&self) -> Vec<lb_proto::control::VrrpInstanceStatus>;
    /// Connection sync, if configured.
    fn sync_status(&self) -> Option<lb_proto::control::SyncStatus> {
        None
    }

    /// Manual failover (`dirctl failover`); see the Failover RPC.
    fn failover(
        &self,
        _req: lb_proto::control::FailoverRequest,
    ) -> BoxFuture<'_, Result<lb_proto::control::FailoverResponse, tonic::Status>> {
        Box::pin(std::future::ready(Err(tonic::Status::failed_precondition(
            "manual failover needs connection sync ([sync]) on this director",
        ))))
    }

    /// `Some(master)` while this node's rule set is replicated from a
    /// sync master: configuration changes must be made there.
    fn rules_master(&self) -> Option<String> {
        None
    }

    /// Counters beyond the status messages, for the metrics endpoint.
    fn counters(&self) -> PairCounters {
        PairCounters::default()
    }
}

/// Counters of the pair side that the status messages do not carry, read
/// by the metrics endpoint at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairCounters {
    /// State transitions per VRRP instance since start, by instance name.
    pub vrrp_transitions: Vec<(String, u64)>,
    /// The VRRP driver's counters (all instances together): receive
    /// rejects by reason, `adverts_sent`, `adverts_received`,
    /// `own_adverts`, `send_errors`, `recv_errors`.
    pub vrrp_driver: Vec<(&'static str, u64)>,
}

/// A boxed future, for the async methods of [`PairView`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the control service works on: the node's name, its dataplane,
/// the configured services and what the health checks say about them.
pub struct ControlState {
    /// Configured node name (`NodeStatus.node_name`).
    pub node: String,
    /// The running dataplane.
    pub dp: Arc<Dataplane>,
    /// The configured services, the health plan and the verdicts.
    inner: Mutex<Configured>,
    /// The daemon's clock in Millis (the dataplane reads no clock).
    clock: Clock,
    /// The clock when the state was made (uptime reference).
    started: Millis,
    /// VRRP (and sync) status, once the daemon runs them.
    pair: std::sync::OnceLock<Arc<dyn PairView>>,
    /// Every checked server's state and the health counters.
    pub health: Arc<HealthRegistry>,
    /// Bumped after every change of the configuration (edit, reload), so
    /// the health monitor follows it.
    changes: tokio::sync::watch::Sender<u64>,
    /// The rate estimators of every service and real server (`--rate`),
    /// sampled by the daemon every 2 s.
    pub rates: Arc<crate::estimator::RateBook>,
}

/// The configuration and the verdicts laid over it, changed together.
#[derive(Debug, Default)]
struct Configured {
    /// The configured services: the source of truth edits start from.
    specs: Vec<ServiceSpec>,
    /// Checks, sorry servers and quorums.
    plan: HealthPlan,
    /// What the checks say.
    overlay: Overlay,
    /// Quorum changes not yet acted on (commands, logs).
    quorum_changes: Vec<(ServiceKey, bool)>,
}

impl fmt::Debug for ControlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlState")
            .field("node", &self.node)
            .field("dp", &self.dp)
            .field("services", &self.lock().specs.len())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ControlState {
    /// The state of a node whose dataplane already runs `initial_specs`
    /// (the daemon applies its configuration file before it serves the
    /// API). `clock` is the daemon's monotonic clock; uptime counts from
    /// this call. No health checks: see [`ControlState::with_health`].
    pub fn new(
        node: impl Into<String>,
        dp: Arc<Dataplane>,
        initial_specs: Vec<ServiceSpec>,
        clock: Clock,
    ) -> ControlState {
        let started = clock();
        ControlState {
            node: node.into(),
            dp,
            inner: Mutex::new(Configured {
                specs: initial_specs,
                ..Configured::default()
            }),
            clock,
            started,
            health: Arc::new(HealthRegistry::default()),
            changes: tokio::sync::watch::Sender::new(0),
            pair: std::sync::OnceLock::new(),
            rates: Arc::default(),
        }
    }

    /// Attach the node's VRRP/sync view (once; later calls are ignored).
    pub fn set_pair(&self, pair: Arc<dyn PairView>) {
        let _ = self.pair.set(pair);
    }

    /// The node's VRRP/sync view, if it runs VRRP.
    pub fn pair(&self) -> Option<&Arc<dyn PairView>> {
        self.pair.get()
    }

    /// Add the health configuration (checks, sorry servers, quorums) and
    /// apply what it implies at once (a service without the weight for
    /// its quorum starts on its sorry server). Every server is UNKNOWN,
    /// treated as up, until its checks conclude.
    pub fn with_health(self, plan: HealthPlan) -> Result<ControlState, SpecError> {
        {
            let mut cur = self.lock();
            cur.plan = plan;
            self.publish(&mut cur)?;
        }
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Configured> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply the configuration with the verdicts laid over it.
    fn publish(&self, cur: &mut Configured) -> Result<u64, SpecError> {
        let mut overlay = cur.overlay.clone();
        overlay.retain_configured(&cur.specs, &cur.plan);
        let changes = overlay.update_quorum(&cur.specs, &cur.plan);
        let version = self.dp.apply(&overlay.effective(&cur.specs, &cur.plan))?;
        cur.overlay = overlay;
        cur.quorum_changes.extend(changes);
        Ok(version)
    }

    /// Check a configuration before applying it: each service alone, no
    /// service twice, no real server that is also its service's sorry
    /// server. (The effective specs the dataplane sees may hide a
    /// configured weight behind a verdict; this checks the configuration
    /// itself.)
    fn check_configured(specs: &[ServiceSpec], plan: &HealthPlan) -> Result<(), tonic::Status> {
        let mut keys = std::collections::HashSet::new();
        for s in specs {
            if !keys.insert(s.key) {
                return Err(tonic::Status::invalid_argument(
                    SpecError::DuplicateService {
                        protocol: s.key.protocol,
                        vip: s.key.vip,
                    }
                    .to_string(),
                ));
            }
            s.validate()
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            if let Some(sorry) = plan.service(&s.key).and_then(|h| h.sorry_server)
                && s.dests.iter().any(|d| d.addr == sorry.addr)
            {
                return Err(tonic::Status::invalid_argument(format!(
                    "real server {} is the sorry server of virtual service {} {}; \
                     a sorry server cannot also be one of its real servers",
                    sorry.addr, s.key.protocol, s.key.vip
                )));
            }
        }
        Ok(())
    }

    /// The configured services, in configuration order (configured
    /// weights: the operator's intent).
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.lock().specs.clone()
    }

    /// The services as the dataplane runs them: configured, with the
    /// health verdicts applied (effective weights, sorry servers), in
    /// configuration order.
    pub fn effective_specs(&self) -> Vec<ServiceSpec> {
        let cur = self.lock();
        cur.overlay.effective(&cur.specs, &cur.plan)
    }

    /// The configured services and the health plan, taken together.
    pub fn health_config(&self) -> (Vec<ServiceSpec>, HealthPlan) {
        let cur = self.lock();
        (cur.specs.clone(), cur.plan.clone())
    }

    /// The health plan in force.
    pub fn health_plan(&self) -> HealthPlan {
        self.lock().plan.clone()
    }

    /// The verdict on `dest` of `key`, if a check concluded one.
    pub fn verdict(&self, key: ServiceKey, dest: std::net::SocketAddr) -> Option<Verdict> {
        self.lock().overlay.verdict(key, dest).copied()
    }

    /// Quorum state of `key`: (has quorum, weight up, sorry server in use).
    pub fn quorum(&self, key: ServiceKey) -> Option<(bool, u64, bool)> {
        let cur = self.lock();
        let spec = cur.specs.iter().find(|s| s.key == key)?;
        Some((
            cur.overlay.quorum_up(key),
            cur.overlay.weight_up(spec),
            cur.overlay.sorry_active(key, &cur.plan),
        ))
    }

    /// Every service with every address it may send to: the configured
    /// real servers and the sorry servers (for the kernel filter and the
    /// neighbours to keep resolved, so a sorry server taking over finds
    /// everything ready).
    pub fn routing_specs(&self) -> Vec<ServiceSpec> {
        let cur = self.lock();
        cur.specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.dests
                    .extend(cur.plan.service(&s.key).and_then(|h| h.sorry_server));
                s
            })
            .collect()
    }

    /// Record what a check concluded about `dest` of `key` and apply it.
    pub fn set_verdict(
        &self,
        key: ServiceKey,
        dest: std::net::SocketAddr,
        verdict: Verdict,
    ) -> Result<u64, SpecError> {
        let mut cur = self.lock();
        cur.overlay.set(key, dest, verdict);
        self.publish(&mut cur)
    }

    /// Forget the verdicts on these servers (their checks stopped) and
    /// apply the configuration as it then stands.
    pub fn clear_verdicts(
        &self,
        servers: &[(ServiceKey, std::net::SocketAddr)],
    ) -> Result<u64, SpecError> {
        let mut cur = self.lock();
        for (k, d) in servers {
            cur.overlay.clear(*k, *d);
        }
        self.publish(&mut cur)
    }

    /// Quorum changes since the last call, oldest first.
    pub fn take_quorum_changes(&self) -> Vec<(ServiceKey, bool)> {
        std::mem::take(&mut self.lock().quorum_changes)
    }

    /// Told after every configuration change (edit, reload).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self, version: u64) {
        self.changes.send_replace(version);
    }

    /// Replace every service at once, all or nothing, keeping the health
    /// plan. Returns the new configuration version.
    pub fn replace_specs(&self, specs: Vec<ServiceSpec>) -> Result<u64, SpecError> {
        let plan = self.health_plan();
        self.replace_config(specs, plan)
    }

    /// Replace every service and the health plan at once (the daemon's
    /// SIGHUP reload), all or nothing. Returns the new configuration
    /// version.
    pub fn replace_config(
        &self,
        specs: Vec<ServiceSpec>,
        plan: HealthPlan,
    ) -> Result<u64, SpecError> {
        let mut cur = self.lock();
        let old_specs = std::mem::replace(&mut cur.specs, specs);
        let old_plan = std::mem::replace(&mut cur.plan, plan);
        match self.publish(&mut cur) {
            Ok(version) => {
                drop(cur);
                self.changed(version);
                Ok(version)
            }
            Err(e) => {
                cur.specs = old_specs;
                cur.plan = old_plan;
                Err(e)
            }
        }
    }

    /// Run `edit` on a copy of the specs; apply the result to the
    /// dataplane and keep it only if both succeed. Returns what `edit`
    /// returned and the new configuration version; a spec the dataplane
    /// refuses is INVALID_ARGUMENT with its message.
    pub(crate) fn edit<T>(
        &self,
        edit: impl FnOnce(&mut Vec<ServiceSpec>) -> Result<T, tonic::Status>,
    ) -> Result<(T, u64), tonic::Status> {
        self.check_writable()?;
        let mut cur = self.lock();
        let mut next = cur.specs.clone();
        let out = edit(&mut next)?;
        Self::check_configured(&next, &cur.plan)?;
        let old = std::mem::replace(&mut cur.specs, next);
        match self.publish(&mut cur) {
            Ok(version) => {
                drop(cur);
                self.changed(version);
                Ok((out, version))
            }
            Err(e) => {
                cur.specs = old;
                Err(tonic::Status::invalid_argument(e.to_string()))
            }
        }
    }

    /// Publish a new configuration version without changing the services
    /// (after a change that lives outside the service table, such as the
    /// timeouts), with the specs locked so no edit interleaves.
    pub(crate) fn bump_version(&self, change: impl FnOnce()) -> Result<u64, SpecError> {
        let mut cur = self.lock();
        change();
        let version = self.publish(&mut cur)?;
        drop(cur);
        self.changed(version);
        Ok(version)
    }

    /// Refuse a configuration change on a node whose rule set is
    /// replicated from its sync master: a change here would be overwritten
    /// by the master's next table, and a failover would land on rules the
    /// operator never saw on the master.
    pub(crate) fn check_writable(&self) -> Result<(), tonic::Status> {
        match self.pair().and_then(|p| p.rules_master()) {
            None => Ok(()),
            Some(master) => Err(tonic::Status::failed_precondition(format!(
                "this director is the sync backup: its rules are replicated from the master \
                 {master}; make the change on the master"
            ))),
        }
    }

    /// The configuration version in force.
    pub fn config_version(&self) -> u64 {
        self.dp.services().version()
    }

    /// The daemon's clock now.
    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    /// Time since [`ControlState::new`].
    pub fn uptime(&self) -> Duration {
        self.now().saturating_since(self.started)
    }
}

/// Why the control server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be bound.
    #[error("control API: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("control API: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not load the contract's descriptors.
    #[error("control API: gRPC reflection: {0}")]
    Reflection(String),
}

/// Serve the control API on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_listener(listener, state, shutdown).await
}

/// Serve the control API on an already bound listener (tests bind port 0
/// and read the port back) until `shutdown` completes: plaintext, no
/// token (see [`serve_with`] for TLS and tokens), with gRPC health and
/// reflection beside it.
pub async fn serve_listener(
    listener: TcpListener,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with(listener, state, ServeOptions::default(), shutdown).await
}
