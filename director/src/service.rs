//! A virtual service: its address, scheduler, persistence, and real servers.
//!
//! A `Service` value is immutable once published (workers read it through
//! an `Arc` without locks); a configuration change builds a new `Service`
//! that carries over the same `Arc<Dest>`s, scheduler and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::dest::{Dest, Stats};
use crate::sched::Scheduler;
use crate::types::Protocol;

/// IPVS default persistence timeout (`-p` without a value): 360 s.
pub const DEFAULT_PERSISTENCE: Duration = Duration::from_secs(360);

/// Identifies a virtual service: protocol + VIP:port (ipvsadm `-t`/`-u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Virtual address and port.
    pub vip: SocketAddr,
}

/// Client persistence (ipvsadm `-p timeout -M netmask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// How long a template outlives the client's last connection.
    pub timeout: Duration,
    /// Clients are grouped by this prefix length (IPv4 default /32).
    pub netmask_prefix: u8,
}

/// One virtual service as the packet path sees it.
#[derive(Debug)]
pub struct Service {
    /// Protocol and VIP:port.
    pub key: ServiceKey,
    /// The scheduling algorithm, shared across configuration versions.
    pub scheduler: Arc<dyn Scheduler>,
    /// Real servers, in configuration order.
    pub dests: Vec<Arc<Dest>>,
    /// Client persistence, if configured.
    pub persistence: Option<Persistence>,
    /// Service counters, shared across configuration versions.
    pub stats: Arc<Stats>,
}

impl Service {
    /// The real server with this address, if it belongs to the service.
    pub fn dest(&self, addr: SocketAddr) -> Option<&Arc<Dest>> {
        self.dests.iter().find(|d| d.addr() == addr)
    }
}
