//! Shared fixtures for the connection-table tests: a tiny round-robin
//! scheduler (so these tests do not depend on `director::sched`), services,
//! addresses, and a counter check against the table's own recount.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use director::conn::{ConnEvent, ConnTable, TableConfig};
use director::sched::{SchedRequest, Scheduler, SchedulerKind};
use director::service::{Persistence, Service, ServiceKey};
use director::{Dest, ForwardMethod, Protocol, Stats};

/// Round robin over servers that accept new connections.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _req: &SchedRequest) -> Option<Arc<Dest>> {
        for _ in 0..dests.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % dests.len();
            if dests[i].accepts_new() {
                return Some(dests[i].clone());
            }
        }
        None
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub const VIP: &str = "192.0.2.10:80";

/// Real servers 10.0.0.1:8080, 10.0.0.2:8080, ... with one method.
pub fn dests(n: usize, method: ForwardMethod) -> Vec<Arc<Dest>> {
    (1..=n)
        .map(|i| Arc::new(Dest::new(sa(&format!("10.0.0.{i}:8080")), method, 1)))
        .collect()
}

pub fn service(
    protocol: Protocol,
    dests: Vec<Arc<Dest>>,
    persistence: Option<Persistence>,
) -> Service {
    Service {
        key: ServiceKey {
            protocol,
            vip: sa(VIP),
        },
        scheduler: Arc::new(RoundRobin::default()),
        dests,
        persistence,
        stats: Arc::new(Stats::default()),
    }
}

/// The same service with a different server list (a configuration change
/// keeps scheduler and counters).
pub fn with_dests(svc: &Service, dests: Vec<Arc<Dest>>) -> Service {
    Service {
        key: svc.key,
        scheduler: svc.scheduler.clone(),
        dests,
        persistence: svc.persistence,
        stats: svc.stats.clone(),
    }
}

pub fn persistence(secs: u64, prefix: u8) -> Option<Persistence> {
    Some(Persistence {
        timeout: Duration::from_secs(secs),
        netmask_prefix: prefix,
    })
}

pub fn table() -> ConnTable {
    ConnTable::new(TableConfig {
        max_entries: 1 << 20,
        shards: 16,
        hash_seed: 42,
    })
}

/// An event sink that keeps everything.
#[derive(Debug, Default)]
pub struct Events(pub Mutex<Vec<ConnEvent>>);

impl Events {
    pub fn take(&self) -> Vec<ConnEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Assert that every dest's counters equal the recount over the table.
pub fn assert_counters_match(table: &ConnTable, dests: &[Arc<Dest>]) {
    let recount = table.recount();
    for d in dests {
        let c = recount.get(&d.addr()).copied().unwrap_or_default();
        assert_eq!(
            (d.active_conns(), d.inactive_conns(), d.persist_conns()),
            (c.active, c.inactive, c.persist),
            "dest {} counters (active, inactive, persist) must equal the recount over table entries",
            d.addr()
        );
    }
}
