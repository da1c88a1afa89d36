//! Configured weight and effective weight, kept apart.
//!
//! The operator's intent — the services and real servers as configured,
//! with their configured weights — lives in `ControlState`'s specs and is
//! only ever changed by the operator (file, reload, `dirctl`). What health
//! checks say lives here, in an [`Overlay`] of verdicts. The dataplane is
//! given [`Overlay::effective`]`(specs, plan)`: the configured services
//! with each down real server at weight 0 (or left out, with
//! `on_failure = "remove"`), a dynamic check's weight where one asked for
//! it, and the sorry server in place of the real servers while a service
//! has lost its quorum. So a weight set while a server is down is what
//! returns when it is up, and clearing a verdict (its check removed)
//! restores the configuration exactly.
//!
//! Pure data and functions: no clock, no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::state::{Health, Quorum};
use super::{HealthPlan, OnFailure};
use crate::service::ServiceKey;
use crate::service_table::{DestSpec, ServiceSpec};

/// What the checks say about one real server of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The check's verdict.
    pub health: Health,
    /// What a DOWN verdict does.
    pub on_failure: OnFailure,
    /// The weight a dynamic check asks for; `None` = the configured one.
    pub weight: Option<i32>,
}

/// A service's quorum and the configuration it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuorumSlot {
    quorum: u32,
    hysteresis: u32,
    state: Quorum,
}

/// The verdicts of the checks, laid over the configured services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    verdicts: HashMap<(ServiceKey, SocketAddr), Verdict>,
    quorum: HashMap<ServiceKey, QuorumSlot>,
}

impl Overlay {
    /// No verdicts: every server as configured.
    pub fn new() -> Overlay {
        Overlay::default()
    }

    /// Record the verdict on `dest` of `key`.
    pub fn set(&mut self, key: ServiceKey, dest: SocketAddr, verdict: Verdict) {
        self.verdicts.insert((key, dest), verdict);
    }

    /// Forget the verdict on `dest` of `key` (its check is gone): it is
    /// as configured again.
    pub fn clear(&mut self, key: ServiceKey, dest: SocketAddr) {
        self.verdicts.remove(&(key, dest));
    }

    /// The verdict on `dest` of `key`, if a check has one.
    pub fn verdict(&self, key: ServiceKey, dest: SocketAddr) -> Option<&Verdict> {
        self.verdicts.get(&(key, dest))
    }

    /// The weight the dataplane should use for `d` of `key`; `None` =
    /// not in the service at all (down with `on_failure = "remove"`).
    pub fn effective_weight(&self, key: ServiceKey, d: &DestSpec) -> Option<i32> {
        match self.verdicts.get(&(key, d.addr)) {
            None => Some(d.weight),
            Some(v) if v.health == Health::Down => match v.on_failure {
                OnFailure::Quiesce => Some(0),
                OnFailure::Remove => None,
            },
            Some(v) => Some(v.weight.unwrap_or(d.weight)),
        }
    }

    /// Total effective weight of the real servers of `spec` that are up
    /// (or not concluded yet).
    pub fn weight_up(&self, spec: &ServiceSpec) -> u64 {
        spec.dests
            .iter()
            .filter_map(|d| self.effective_weight(spec.key, d))
            .map(|w| u64::try_from(w.max(0)).unwrap_or(0))
            .sum()
    }

    /// Whether `key` has its quorum (a service without health
    /// configuration always has).
    pub fn quorum_up(&self, key: ServiceKey) -> bool {
        self.quorum.get(&key).is_none_or(|q| q.state.is_up())
    }

    /// Whether the sorry server of `key` is in use.
    pub fn sorry_active(&self, key: ServiceKey, plan: &HealthPlan) -> bool {
        plan.service(&key).is_some_and(|h| h.sorry_server.is_some()) && !self.quorum_up(key)
    }

    /// Drop the verdicts and quorum states of services and real servers
    /// no longer configured or no longer checked.
    pub fn retain_configured(&mut self, specs: &[ServiceSpec], plan: &HealthPlan) {
        self.verdicts.retain(|(key, dest), _| {
            specs
                .iter()
                .any(|s| s.key == *key && s.dests.iter().any(|d| d.addr == *dest))
                && plan.check_for(key, *dest).is_some()
        });
        self.quorum
            .retain(|key, _| specs.iter().any(|s| s.key == *key) && plan.service(key).is_some());
    }

    /// Re-evaluate the quorum of every service with health configuration;
    /// returns the services whose quorum changed, with the new state. A
    /// service seen for the first time (or whose quorum settings changed)
    /// starts from its present weight and reports nothing.
    pub fn update_quorum(
        &mut self,
        specs: &[ServiceSpec],
        plan: &HealthPlan,
    ) -> Vec<(ServiceKey, bool)> {
        let mut changed = Vec::new();
        for spec in specs {
            let Some(h) = plan.service(&spec.key) else {
                continue;
            };
            let up = self.weight_up(spec);
            match self.quorum.get_mut(&spec.key) {
                Some(slot) if slot.quorum == h.quorum && slot.hysteresis == h.hysteresis => {
                    if let Some(now_up) = slot.state.update(up) {
                        changed.push((spec.key, now_up));
                    }
                }
                _ => {
                    self.quorum.insert(
                        spec.key,
                        QuorumSlot {
                            quorum: h.quorum,
                            hysteresis: h.hysteresis,
                            state: Quorum::new(h.quorum, h.hysteresis, up),
                        },
                    );
                }
            }
        }
        changed
    }

    /// The services as the dataplane should run them: `specs` (the
    /// configuration) with the verdicts applied.
    pub fn effective(&self, specs: &[ServiceSpec], plan: &HealthPlan) -> Vec<ServiceSpec> {
        specs
            .iter()
            .map(|spec| {
                let sorry = plan
                    .service(&spec.key)
                    .and_then(|h| h.sorry_server)
                    .filter(|_| !self.quorum_up(spec.key));
                let mut dests: Vec<DestSpec> = spec
                    .dests
                    .iter()
                    .filter_map(|d| {
                        let weight = self.effective_weight(spec.key, d)?;
                        // Quorum lost with a sorry server: it takes every
                        // new connection, as keepalived does; the real
                        // servers left keep draining theirs.
                        let weight = if sorry.is_some() { 0 } else { weight };
                        Some(DestSpec { weight, ..*d })
                    })
                    .collect();
                dests.extend(sorry);
                ServiceSpec {
                    dests,
                    ..spec.clone()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ServiceHealth;
    use crate::sched::{SchedOptions, SchedulerKind};
    use crate::types::{ForwardMethod, Protocol};

    fn dest(addr: &str, weight: i32) -> DestSpec {
        DestSpec {
            addr: addr.parse().unwrap(),
            method: ForwardMethod::DirectRouting,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn spec() -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                vip: "10.0.0.100:80".parse().unwrap(),
            },
            scheduler: SchedulerKind::Wrr,
            sched_opts: SchedOptions::default(),
            persistence: None,
            dests: vec![dest("10.0.1.1:80", 3), dest("10.0.1.2:80", 1)],
        }
    }

    fn verdict(health: Health, on_failure: OnFailure) -> Verdict {
        Verdict {
            health,
            on_failure,
            weight: None,
        }
    }

    fn plan(sorry: Option<DestSpec>) -> HealthPlan {
        let mut p = HealthPlan::none();
        p.services.insert(
            spec().key,
            ServiceHealth {
                sorry_server: sorry,
                quorum: 1,
                ..ServiceHealth::default()
            },
        );
        p
    }

    fn weights(s: &ServiceSpec) -> Vec<(String, i32)> {
        s.dests
            .iter()
            .map(|d| (d.addr.to_string(), d.weight))
            .collect()
    }

    #[test]
    fn down_quiesces_or_removes_and_the_configured_weight_comes_back() {
        let mut o = Overlay::new();
        let mut specs = vec![spec()];
        let p = plan(None);
        let a = specs[0].dests[0].addr;
        o.set(specs[0].key, a, verdict(Health::Down, OnFailure::Quiesce));
        let e = o.effective(&specs, &p);
        assert_eq!(
            weights(&e[0]),
            [("10.0.1.1:80".into(), 0), ("10.0.1.2:80".into(), 1)]
        );
        // The operator changes the weight while the server is down.
        specs[0].dests[0].weight = 7;
        assert_eq!(o.effective(&specs, &p)[0].dests[0].weight, 0, "still down");
        o.set(specs[0].key, a, verdict(Health::Up, OnFailure::Quiesce));
        assert_eq!(
            o.effective(&specs, &p)[0].dests[0].weight,
            7,
            "the operator's weight returns, not the one before the failure"
        );
        o.set(specs[0].key, a, verdict(Health::Down, OnFailure::Remove));
        assert_eq!(
            weights(&o.effective(&specs, &p)[0]),
            [("10.0.1.2:80".into(), 1)]
        );
        o.clear(specs[0].key, a);
        assert_eq!(o.effective(&specs, &p), specs, "no verdicts: as configured");
    }

    #[test]
    fn the_sorry_server_takes_over_only_while_quorum_is_lost() {
        let sorry = dest("10.0.1.9:80", 1);
        let p = plan(Some(sorry));
        let specs = vec![spec()];
        let key = specs[0].key;
        let mut o = Overlay::new();
        assert!(
            o.update_quorum(&specs, &p).is_empty(),
            "first look: no change"
        );
        assert!(!o.sorry_active(key, &p));
        assert_eq!(o.effective(&specs, &p), specs);
        for d in &specs[0].dests {
            o.set(key, d.addr, verdict(Health::Down, OnFailure::Quiesce));
        }
        assert_eq!(o.update_quorum(&specs, &p), vec![(key, false)]);
        assert!(o.sorry_active(key, &p));
        assert_eq!(
            weights(&o.effective(&specs, &p)[0]),
            [
                ("10.0.1.1:80".into(), 0),
                ("10.0.1.2:80".into(), 0),
                ("10.0.1.9:80".into(), 1)
            ]
        );
        o.set(
            key,
            specs[0].dests[1].addr,
            verdict(Health::Up, OnFailure::Quiesce),
        );
        assert_eq!(o.update_quorum(&specs, &p), vec![(key, true)]);
        assert_eq!(
            weights(&o.effective(&specs, &p)[0]),
            [("10.0.1.1:80".into(), 0), ("10.0.1.2:80".into(), 1)],
            "one back: the sorry server leaves"
        );
    }

    #[test]
    fn dynamic_weights_count_towards_quorum_and_stale_verdicts_are_dropped() {
        let specs = vec![spec()];
        let key = specs[0].key;
        let mut o = Overlay::new();
        let a = specs[0].dests[0].addr;
        o.set(
            key,
            a,
            Verdict {
                health: Health::Up,
                on_failure: OnFailure::Quiesce,
                weight: Some(10),
            },
        );
        assert_eq!(o.weight_up(&specs[0]), 11);
        // No check configured for the server any more: its verdict goes.
        o.retain_configured(&specs, &plan(None));
        assert_eq!(o.verdict(key, a), None);
        assert_eq!(o.weight_up(&specs[0]), 4);
    }
}
