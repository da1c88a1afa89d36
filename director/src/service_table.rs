//! The set of virtual services, published as an immutable snapshot.
//!
//! Workers read the current [`ServiceTable`] through an `ArcSwap` without
//! locks. The control plane describes the wanted services as plain
//! [`ServiceSpec`]s; [`ServiceTable::rebuild`] validates them all first (a
//! bad spec is refused whole, nothing half applied) and then builds a new
//! table that *reuses* the running `Arc<Dest>`s, schedulers and counters of
//! services and real servers that still exist — so an edit such as a weight
//! change never resets connection counts, round-robin positions or stats.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::dest::{Dest, MAX_WEIGHT, Stats};
use crate::sched::{self, SchedOptions, SchedulerKind};
use crate::service::{Persistence, Service, ServiceKey};
use crate::types::{ForwardMethod, Protocol};

/// A real server as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestSpec {
    /// Real server address and port.
    pub addr: SocketAddr,
    /// How packets reach it.
    pub method: ForwardMethod,
    /// Weight, 0..=65535; 0 = quiesced.
    pub weight: i32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub lower_threshold: u32,
}

/// A virtual service as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Protocol and VIP:port.
    pub key: ServiceKey,
    /// Scheduling algorithm.
    pub scheduler: SchedulerKind,
    /// Scheduler flags (`-b`).
    pub sched_opts: SchedOptions,
    /// Client persistence (`-p`, `-M`).
    pub persistence: Option<Persistence>,
    /// Real servers in order.
    pub dests: Vec<DestSpec>,
}

/// Why a set of service specs was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two services with the same protocol and VIP:port.
    #[error("virtual service {protocol} {vip} is defined twice")]
    DuplicateService {
        /// Protocol.
        protocol: Protocol,
        /// VIP and port.
        vip: SocketAddr,
    },
    /// The same real server twice in one service.
    #[error("real server {dest} appears twice in virtual service {protocol} {vip}")]
    DuplicateDest {
        /// Protocol.
        protocol: Protocol,
        /// VIP and port.
        vip: SocketAddr,
        /// The repeated real server.
        dest: SocketAddr,
    },
    /// DR or TUN with a real-server port different from the virtual port.
    #[error(
        "real server {dest} of {protocol} {vip} uses {method} forwarding on port {}, \
         but the virtual port is {}: port mapping needs NAT (masquerading), \
         because DR and TUN deliver the packet unchanged (IPVS refuses it too)",
        dest.port(), vip.port()
    )]
    PortMappingNeedsNat {
        /// Protocol.
        protocol: Protocol,
        /// VIP and port.
        vip: SocketAddr,
        /// The real server.
        dest: SocketAddr,
        /// Its forwarding method.
        method: ForwardMethod,
    },
    /// Weight outside 0..=65535.
    #[error("real server {dest} of {vip}: weight {weight} is out of range 0..=65535")]
    WeightOutOfRange {
        /// VIP and port.
        vip: SocketAddr,
        /// The real server.
        dest: SocketAddr,
        /// The weight given.
        weight: i32,
    },
    /// Lower threshold above the upper one.
    #[error(
        "real server {dest} of {vip}: lower threshold {lower} is above upper threshold {upper}"
    )]
    BadThresholds {
        /// VIP and port.
        vip: SocketAddr,
        /// The real server.
        dest: SocketAddr,
        /// Upper threshold.
        upper: u32,
        /// Lower threshold.
        lower: u32,
    },
    /// IPv4 and IPv6 mixed between a VIP and its real server.
    #[error("real server {dest} and virtual service {vip} are of different address families")]
    AddressFamilyMismatch {
        /// VIP and port.
        vip: SocketAddr,
        /// The real server.
        dest: SocketAddr,
    },
    /// Persistence netmask longer than the address.
    #[error("virtual service {vip}: persistence netmask /{prefix} is longer than the address")]
    BadNetmask {
        /// VIP and port.
        vip: SocketAddr,
        /// Prefix length given.
        prefix: u8,
    },
    /// Port 0 (every port) without persistence: IPVS refuses it, since
    /// the connections of one client would spread across real servers.
    #[error(
        "virtual service {protocol} {vip}: port 0 (all ports) needs persistence (-p), as in IPVS"
    )]
    AllPortsNeedPersistence {
        /// Protocol.
        protocol: Protocol,
        /// VIP and port.
        vip: SocketAddr,
    },
    /// Persistence timeout of zero.
    #[error("virtual service {vip}: persistence timeout must be at least 1 s")]
    ZeroPersistence {
        /// VIP and port.
        vip: SocketAddr,
    },
    /// The scheduler refused its options.
    #[error("virtual service {vip}: {reason}")]
    Scheduler {
        /// VIP and port.
        vip: SocketAddr,
        /// What the scheduler said.
        reason: String,
    },
}

impl ServiceSpec {
    /// Check one service on its own; [`ServiceTable::rebuild`] also checks
    /// the set (duplicates).
    pub fn validate(&self) -> Result<(), SpecError> {
        let ServiceKey { protocol, vip } = self.key;
        if vip.port() == 0 && self.persistence.is_none() {
            return Err(SpecError::AllPortsNeedPersistence { protocol, vip });
        }
        if let Some(p) = self.persistence {
            let max = if vip.is_ipv4() { 32 } else { 128 };
            if p.netmask_prefix > max {
                return Err(SpecError::BadNetmask {
                    vip,
                    prefix: p.netmask_prefix,
                });
            }
            if p.timeout < Duration::from_secs(1) {
                return Err(SpecError::ZeroPersistence { vip });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.dests {
            if !seen.insert(d.addr) {
                return Err(SpecError::DuplicateDest {
                    protocol,
                    vip,
                    dest: d.addr,
                });
            }
            if d.addr.is_ipv4() != vip.is_ipv4() {
                return Err(SpecError::AddressFamilyMismatch { vip, dest: d.addr });
            }
            if !(0..=MAX_WEIGHT).contains(&d.weight) {
                return Err(SpecError::WeightOutOfRange {
                    vip,
                    dest: d.addr,
                    weight: d.weight,
                });
            }
            if d.lower_threshold != 0
                && d.upper_threshold != 0
                && d.lower_threshold > d.upper_threshold
            {
                return Err(SpecError::BadThresholds {
                    vip,
                    dest: d.addr,
                    upper: d.upper_threshold,
                    lower: d.lower_threshold,
                });
            }
            if !d.method.allows_port_mapping() && d.addr.port() != vip.port() {
                return Err(SpecError::PortMappingNeedsNat {
                    protocol,
                    vip,
                    dest: d.addr,
                    method: d.method,
                });
            }
        }
        Ok(())
    }
}

/// An immutable snapshot of every virtual service.
#[derive(Debug, Default)]
pub struct ServiceTable {
    /// FxHash: the keys are chosen by the operator, not by clients, and
    /// this lookup is on every packet.
    services: FxHashMap<ServiceKey, Arc<Service>>,
    /// Scheduler flags per service (not needed on the packet path).
    sched_opts: HashMap<ServiceKey, SchedOptions>,
    version: u64,
}

impl ServiceTable {
    /// The empty table, version 0.
    pub fn empty() -> ServiceTable {
        ServiceTable::default()
    }

    /// Configuration version: incremented by every rebuild.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The service for packets to `vip` over `protocol`.
    #[inline]
    pub fn get(&self, protocol: Protocol, vip: SocketAddr) -> Option<&Arc<Service>> {
        self.services.get(&ServiceKey { protocol, vip })
    }

    /// The service a packet to `dst` over `protocol` belongs to: the one
    /// on that VIP:port, else a port-zero service on the VIP (which takes
    /// every port).
    #[inline]
    pub fn for_packet(&self, protocol: Protocol, dst: SocketAddr) -> Option<&Arc<Service>> {
        self.get(protocol, dst)
            .or_else(|| self.get(protocol, SocketAddr::new(dst.ip(), 0)))
    }

    /// The scheduler flags of service `key` (defaults if it is unknown).
    pub fn sched_opts(&self, key: ServiceKey) -> SchedOptions {
        self.sched_opts.get(&key).copied().unwrap_or_default()
    }

    /// All services, ordered by protocol then VIP:port (listing order).
    pub fn services(&self) -> Vec<&Arc<Service>> {
        let mut v: Vec<_> = self.services.values().collect();
        v.sort_by_key(|s| s.key);
        v
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Build the table for `specs`, validating all of them first. Services
    /// and real servers that exist in `self` keep their `Arc<Dest>`
    /// (counters), scheduler state (when the algorithm and options are
    /// unchanged) and stats; real servers that disappear are marked
    /// unavailable so connections still bound to them are recognised.
    pub fn rebuild(&self, specs: &[ServiceSpec]) -> Result<ServiceTable, SpecError> {
        let mut keys = std::collections::HashSet::new();
        for spec in specs {
            if !keys.insert(spec.key) {
                return Err(SpecError::DuplicateService {
                    protocol: spec.key.protocol,
                    vip: spec.key.vip,
                });
            }
            spec.validate()?;
        }
        // Build every scheduler before touching any shared state, so that a
        // refused option leaves the running table exactly as it was.
        let mut schedulers = Vec::with_capacity(specs.len());
        for spec in specs {
            let old = self.services.get(&spec.key);
            let reuse = old.filter(|o| {
                o.scheduler.kind() == spec.scheduler
                    && self.sched_opts.get(&spec.key) == Some(&spec.sched_opts)
            });
            let scheduler = match reuse {
                Some(o) => Arc::clone(&o.scheduler),
                None => sched::new(spec.scheduler, spec.sched_opts).map_err(|e| {
                    SpecError::Scheduler {
                        vip: spec.key.vip,
                        reason: e.to_string(),
                    }
                })?,
            };
            schedulers.push(scheduler);
        }

        let mut services = FxHashMap::with_capacity_and_hasher(specs.len(), Default::default());
        for (spec, scheduler) in specs.iter().zip(schedulers) {
            let old = self.services.get(&spec.key);
            let dests: Vec<Arc<Dest>> = spec
                .dests
                .iter()
                .map(|d| {
                    let reused = old
                        .and_then(|o| o.dest(d.addr))
                        .filter(|o| o.method() == d.method)
                        .cloned();
                    let dest =
                        reused.unwrap_or_else(|| Arc::new(Dest::new(d.addr, d.method, d.weight)));
                    dest.set_weight(d.weight);
                    dest.set_thresholds(d.upper_threshold, d.lower_threshold);
                    dest.set_available(true);
                    dest
                })
                .collect();
            scheduler.update(&dests);
            let stats = old
                .map(|o| Arc::clone(&o.stats))
                .unwrap_or_else(|| Arc::new(Stats::default()));
            services.insert(
                spec.key,
                Arc::new(Service {
                    key: spec.key,
                    scheduler,
                    dests,
                    persistence: spec.persistence,
                    stats,
                }),
            );
        }
        // Real servers that left: unavailable, so the connection table and
        // persistence templates stop trusting them for new connections.
        for (key, old) in &self.services {
            let new = services.get(key);
            for d in &old.dests {
                let kept = new.is_some_and(|n| n.dests.iter().any(|x| Arc::ptr_eq(x, d)));
                if !kept {
                    d.set_available(false);
                }
            }
        }
        let sched_opts = specs.iter().map(|s| (s.key, s.sched_opts)).collect();
        Ok(ServiceTable {
            services,
            sched_opts,
            version: self.version + 1,
        })
    }

    /// The specs that would rebuild this table (for save, sync and edits).
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services()
            .into_iter()
            .map(|s| ServiceSpec {
                key: s.key,
                scheduler: s.scheduler.kind(),
                sched_opts: self.sched_opts.get(&s.key).copied().unwrap_or_default(),
                persistence: s.persistence,
                dests: s
                    .dests
                    .iter()
                    .map(|d| {
                        let (upper, lower) = d.thresholds();
                        DestSpec {
                            addr: d.addr(),
                            method: d.method(),
                            weight: d.weight(),
                            upper_threshold: upper,
                            lower_threshold: lower,
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(addr: &str, method: ForwardMethod, weight: i32) -> DestSpec {
        DestSpec {
            addr: addr.parse().unwrap(),
            method,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn svc(vip: &str, sched: SchedulerKind, dests: Vec<DestSpec>) -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                vip: vip.parse().unwrap(),
            },
            scheduler: sched,
            sched_opts: SchedOptions::default(),
            persistence: None,
            dests,
        }
    }

    #[test]
    fn port_mapping_is_refused_for_dr_and_tun_with_a_clear_message() {
        for method in [ForwardMethod::DirectRouting, ForwardMethod::Tunnel] {
            let spec = svc(
                "10.0.0.100:8099",
                SchedulerKind::Rr,
                vec![dest("10.0.1.1:80", method, 1)],
            );
            let err = ServiceTable::empty().rebuild(&[spec]).unwrap_err();
            assert!(
                matches!(err, SpecError::PortMappingNeedsNat { .. }),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("10.0.1.1:80") && msg.contains("8099"), "{msg}");
            assert!(msg.contains("needs NAT"), "{msg}");
        }
        let nat = svc(
            "10.0.0.100:8099",
            SchedulerKind::Rr,
            vec![dest("10.0.1.1:80", ForwardMethod::Masquerade, 1)],
        );
        assert!(
            ServiceTable::empty().rebuild(&[nat]).is_ok(),
            "NAT may map ports"
        );
    }

    #[test]
    fn bad_specs_are_refused_whole_and_the_running_table_is_unchanged() {
        let good = svc(
            "10.0.0.100:80",
            SchedulerKind::Wrr,
            vec![dest("10.0.1.1:80", ForwardMethod::DirectRouting, 3)],
        );
        let t1 = ServiceTable::empty()
            .rebuild(std::slice::from_ref(&good))
            .unwrap();
        let d1 = Arc::clone(&t1.get(Protocol::Tcp, good.key.vip).unwrap().dests[0]);

        // A second, valid edit of the first service plus an invalid service:
        // nothing of the edit may leak into the running Dest.
        let mut edited = good.clone();
        edited.dests[0].weight = 9;
        let bad = svc(
            "10.0.0.101:80",
            SchedulerKind::Rr,
            vec![dest("10.0.1.1:80", ForwardMethod::Masquerade, 70_000)],
        );
        let err = t1.rebuild(&[edited, bad]).unwrap_err();
        assert!(
            matches!(err, SpecError::WeightOutOfRange { weight: 70_000, .. }),
            "{err}"
        );
        assert_eq!(
            d1.weight(),
            3,
            "a refused rebuild must not touch running servers"
        );

        let mut mh = good.clone();
        mh.scheduler = SchedulerKind::Mh;
        mh.sched_opts.mh_table_size = 4000; // not prime
        mh.dests[0].weight = 7;
        let err = t1.rebuild(&[mh]).unwrap_err();
        assert!(matches!(err, SpecError::Scheduler { .. }), "{err}");
        assert_eq!(
            d1.weight(),
            3,
            "a refused scheduler must not touch running servers"
        );

        let dup = t1.rebuild(&[good.clone(), good.clone()]).unwrap_err();
        assert!(matches!(dup, SpecError::DuplicateService { .. }), "{dup}");

        let mut twice = good.clone();
        twice.dests.push(twice.dests[0]);
        assert!(matches!(
            t1.rebuild(&[twice]),
            Err(SpecError::DuplicateDest { .. })
        ));

        let mut thr = good;
        thr.dests[0].upper_threshold = 5;
        thr.dests[0].lower_threshold = 6;
        assert!(matches!(
            t1.rebuild(&[thr]),
            Err(SpecError::BadThresholds { .. })
        ));
    }

    #[test]
    fn edits_keep_counters_scheduler_and_stats_and_removed_servers_become_unavailable() {
        let a = dest("10.0.1.1:80", ForwardMethod::DirectRouting, 1);
        let b = dest("10.0.1.2:80", ForwardMethod::DirectRouting, 1);
        let spec = svc("10.0.0.100:80", SchedulerKind::Wlc, vec![a, b]);
        let t1 = ServiceTable::empty()
            .rebuild(std::slice::from_ref(&spec))
            .unwrap();
        let s1 = Arc::clone(t1.get(Protocol::Tcp, spec.key.vip).unwrap());
        s1.dests[0].bind(crate::ConnClass::Active);

        let mut edited = spec.clone();
        edited.dests[0].weight = 0; // quiesce a
        edited.dests.remove(1); // delete b
        let t2 = t1.rebuild(&[edited]).unwrap();
        assert_eq!(t2.version(), t1.version() + 1);
        let s2 = t2.get(Protocol::Tcp, spec.key.vip).unwrap();
        assert!(
            Arc::ptr_eq(&s1.dests[0], &s2.dests[0]),
            "same Dest object reused"
        );
        assert_eq!(
            s2.dests[0].active_conns(),
            1,
            "connection counts survive an edit"
        );
        assert_eq!(s2.dests[0].weight(), 0);
        assert!(
            Arc::ptr_eq(&s1.scheduler, &s2.scheduler),
            "scheduler state kept"
        );
        assert!(Arc::ptr_eq(&s1.stats, &s2.stats), "service stats kept");
        assert!(
            !s1.dests[1].is_available(),
            "a deleted real server is marked unavailable"
        );
        assert!(s2.dests[0].is_available());

        // Changing the algorithm builds a new scheduler.
        let mut rr = spec.clone();
        rr.scheduler = SchedulerKind::Rr;
        let t3 = t2.rebuild(&[rr]).unwrap();
        assert_eq!(
            t3.get(Protocol::Tcp, spec.key.vip)
                .unwrap()
                .scheduler
                .kind(),
            SchedulerKind::Rr
        );
        assert_eq!(t3.specs()[0].dests.len(), 2);
        assert_eq!(t3.specs()[0].scheduler, SchedulerKind::Rr);
    }

    #[test]
    fn persistence_and_family_checks() {
        let mut s = svc(
            "10.0.0.100:80",
            SchedulerKind::Rr,
            vec![dest("[2001:db8::1]:80", ForwardMethod::DirectRouting, 1)],
        );
        assert!(matches!(
            s.validate(),
            Err(SpecError::AddressFamilyMismatch { .. })
        ));
        s.dests.clear();
        s.persistence = Some(Persistence {
            timeout: Duration::from_secs(360),
            netmask_prefix: 33,
        });
        assert!(matches!(
            s.validate(),
            Err(SpecError::BadNetmask { prefix: 33, .. })
        ));
        s.persistence = Some(Persistence {
            timeout: Duration::ZERO,
            netmask_prefix: 24,
        });
        assert!(matches!(
            s.validate(),
            Err(SpecError::ZeroPersistence { .. })
        ));
    }
}
