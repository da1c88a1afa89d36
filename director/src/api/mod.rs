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
//! [`ControlService`] implements the RPCs over a shared state; the ones not
//! implemented yet answer UNIMPLEMENTED with a sentence naming them. [`serve`]
//! and [`serve_listener`] run it on a tonic server until a shutdown future
//! completes.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lb_proto::control::control_server::ControlServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::dataplane::Dataplane;
use crate::service_table::{ServiceSpec, SpecError};
use crate::time::Millis;

mod conns;
pub mod convert;
mod service;

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
}

/// What the control service works on: the node's name, its dataplane and
/// the configured services.
pub struct ControlState {
    /// Configured node name (`NodeStatus.node_name`).
    pub node: String,
    /// The running dataplane.
    pub dp: Arc<Dataplane>,
    /// The configured services: the source of truth edits start from.
    specs: Mutex<Vec<ServiceSpec>>,
    /// The daemon's clock in Millis (the dataplane reads no clock).
    clock: Clock,
    /// The clock when the state was made (uptime reference).
    started: Millis,
    /// VRRP (and sync) status, once the daemon runs them.
    pair: std::sync::OnceLock<Arc<dyn PairView>>,
}

impl fmt::Debug for ControlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlState")
            .field("node", &self.node)
            .field("dp", &self.dp)
            .field("services", &self.lock().len())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ControlState {
    /// The state of a node whose dataplane already runs `initial_specs`
    /// (the daemon applies its configuration file before it serves the
    /// API). `clock` is the daemon's monotonic clock; uptime counts from
    /// this call.
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
            specs: Mutex::new(initial_specs),
            clock,
            started,
            pair: std::sync::OnceLock::new(),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ServiceSpec>> {
        self.specs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured services, in configuration order.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.lock().clone()
    }

    /// Replace every service at once (the daemon's SIGHUP reload), all or
    /// nothing. Returns the new configuration version.
    pub fn replace_specs(&self, specs: Vec<ServiceSpec>) -> Result<u64, SpecError> {
        let mut cur = self.lock();
        let version = self.dp.apply(&specs)?;
        *cur = specs;
        Ok(version)
    }

    /// Run `edit` on a copy of the specs; apply the result to the
    /// dataplane and keep it only if both succeed. Returns what `edit`
    /// returned and the new configuration version; a spec the dataplane
    /// refuses is INVALID_ARGUMENT with its message.
    pub(crate) fn edit<T>(
        &self,
        edit: impl FnOnce(&mut Vec<ServiceSpec>) -> Result<T, tonic::Status>,
    ) -> Result<(T, u64), tonic::Status> {
        let mut cur = self.lock();
        let mut next = cur.clone();
        let out = edit(&mut next)?;
        let version = self
            .dp
            .apply(&next)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        *cur = next;
        Ok((out, version))
    }

    /// Publish a new configuration version without changing the services
    /// (after a change that lives outside the service table, such as the
    /// timeouts), with the specs locked so no edit interleaves.
    pub(crate) fn bump_version(&self, change: impl FnOnce()) -> Result<u64, SpecError> {
        let cur = self.lock();
        change();
        self.dp.apply(&cur)
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
/// and read the port back) until `shutdown` completes.
pub async fn serve_listener(
    listener: TcpListener,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(ControlServer::new(ControlService::new(state)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
