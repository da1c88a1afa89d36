//! The daemon's side of VRRP: starts the `vrrp` crate's driver for the
//! configured instances, turns its transitions into the set of addresses
//! this node owns (the VIPs of its MASTER instances), and keeps what the
//! control API shows (state, priorities, recent transitions).
//!
//! The driver runs the RFC 5798 state machine and the sockets; this
//! module only decides what a state means for the dataplane: MASTER owns
//! the instance's VIPs (answers ARP, sends gratuitous ARP, forwards),
//! every other state owns nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use lb_proto::common::VrrpState;
use lb_proto::control as ctl;
use tokio::sync::mpsc;
use vrrp::{DriverEvent, DriverInstance, Handle, InstanceConfig, State};

use super::clock::unix_ms;
use crate::config::VrrpInstanceConfig;

/// Transitions kept per instance for the status.
const HISTORY: usize = 16;

/// One transition as shown to operators.
#[derive(Debug, Clone)]
struct Transition {
    at_unix_ms: u64,
    from: State,
    to: State,
    reason: String,
}

#[derive(Debug)]
struct InstanceView {
    config: VrrpInstanceConfig,
    state: State,
    since_unix_ms: u64,
    history: VecDeque<Transition>,
    /// Transitions since start (the history keeps the last few only).
    transitions: u64,
}

/// The running VRRP instances of this node (cheap to clone: shared).
#[derive(Debug, Clone)]
pub struct VrrpSide {
    handle: Handle,
    views: Arc<Mutex<BTreeMap<String, InstanceView>>>,
}

/// Map a state to its protobuf value.
pub fn proto_state(s: State) -> VrrpState {
    match s {
        State::Initialize => VrrpState::Init,
        State::Backup => VrrpState::Backup,
        State::Master => VrrpState::Master,
        State::Fault => VrrpState::Fault,
    }
}

fn driver_instance(c: &VrrpInstanceConfig) -> DriverInstance {
    DriverInstance {
        config: InstanceConfig {
            name: c.name.clone(),
            vrid: c.vrid,
            priority: c.priority,
            advert_interval_cs: c.advert_interval_cs,
            preempt: c.preempt,
            preempt_delay: c.preempt_delay,
            primary_ip: c.primary_ip,
            vips: c.vips.clone(),
            unicast_peers: c.unicast_peers.clone(),
        },
        interface: c.interface.clone(),
        notify: c.notify.clone(),
    }
}

impl VrrpSide {
    /// Start the driver; transitions arrive on the returned receiver and
    /// must be passed to [`VrrpSide::record`].
    pub async fn start(
        configs: &[VrrpInstanceConfig],
    ) -> anyhow::Result<(VrrpSide, mpsc::UnboundedReceiver<DriverEvent>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = unix_ms();
        let views = configs
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    InstanceView {
                        config: c.clone(),
                        state: State::Initialize,
                        since_unix_ms: now,
                        history: VecDeque::new(),
                        transitions: 0,
                    },
                )
            })
            .collect();
        let handle = vrrp::spawn(configs.iter().map(driver_instance).collect(), tx)
            .await
            .map_err(|e| anyhow::anyhow!("VRRP: {e}"))?;
        Ok((
            VrrpSide {
                handle,
                views: Arc::new(Mutex::new(views)),
            },
            rx,
        ))
    }

    fn views(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, InstanceView>> {
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Note a transition; returns the addresses this node owns now.
    pub fn record(&self, ev: &DriverEvent) -> BTreeSet<Ipv4Addr> {
        let DriverEvent::Transition {
            instance,
            from,
            to,
            reason,
            ..
        } = ev;
        let mut views = self.views();
        if let Some(v) = views.get_mut(instance) {
            let at = unix_ms();
            v.state = *to;
            v.since_unix_ms = at;
            v.transitions += 1;
            if v.history.len() == HISTORY {
                v.history.pop_front();
            }
            v.history.push_back(Transition {
                at_unix_ms: at,
                from: *from,
                to: *to,
                reason: reason.clone(),
            });
        }
        owned(&views)
    }

    /// The driver's handle (step down, release, shutdown, status).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The instances as the control API shows them.
    pub fn instances(&self) -> Vec<ctl::VrrpInstanceStatus> {
        let live = self.handle.status();
        let counters = self.handle.counters();
        let sent = counter(&counters, "adverts_sent");
        let received = counter(&counters, "adverts_received");
        let views = self.views();
        live.into_iter()
            .filter_map(|s| {
                let v = views.get(&s.name)?;
                let learned = u32::from(s.master_adver_interval_cs) * 10;
                // The machine's own formula (µs skew), not a copy of it.
                let down = vrrp::machine::master_down_interval(
                    v.config.priority,
                    s.master_adver_interval_cs,
                );
                Some(ctl::VrrpInstanceStatus {
                    name: s.name.clone(),
                    vrid: u32::from(s.vrid),
                    interface: v.config.interface.clone(),
                    state: proto_state(s.state) as i32,
                    priority: u32::from(s.priority),
                    effective_priority: u32::from(s.effective_priority),
                    advert_interval_ms: u32::from(s.advert_interval_cs) * 10,
                    master_advert_interval_ms: learned,
                    master_down_interval_ms: u32::try_from(down.as_millis()).unwrap_or(u32::MAX),
                    master_address: s.master_addr.map(|a| a.to_string()).unwrap_or_default(),
                    preempt: v.config.preempt,
                    vips: v.config.vips.iter().map(ToString::to_string).collect(),
                    state_since_unix_ms: v.since_unix_ms,
                    recent_transitions: v
                        .history
                        .iter()
                        .map(|t| ctl::VrrpTransition {
                            at_unix_ms: t.at_unix_ms,
                            from: proto_state(t.from) as i32,
                            to: proto_state(t.to) as i32,
                            reason: t.reason.clone(),
                        })
                        .collect(),
                    adverts_sent: sent,
                    adverts_received: received,
                    fault_reasons: Vec::new(),
                })
            })
            .collect()
    }
}

impl VrrpSide {
    /// The instances as a sync heartbeat reports them to the peer.
    pub fn beats(&self) -> Vec<lb_proto::sync::VrrpBeat> {
        self.handle
            .status()
            .into_iter()
            .map(|s| lb_proto::sync::VrrpBeat {
                vrid: u32::from(s.vrid),
                name: s.name,
                state: proto_state(s.state) as i32,
                priority: u32::from(s.priority),
                effective_priority: u32::from(s.effective_priority),
            })
            .collect()
    }
}

fn counter(counters: &[(&'static str, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}

/// The VIPs of every MASTER instance.
fn owned(views: &BTreeMap<String, InstanceView>) -> BTreeSet<Ipv4Addr> {
    views
        .values()
        .filter(|v| v.state == State::Master)
        .flat_map(|v| v.config.vips.iter().copied())
        .collect()
}

impl crate::api::PairView for VrrpSide {
    fn vrrp_instances(&self) -> Vec<ctl::VrrpInstanceStatus> {
        self.instances()
    }

    fn counters(&self) -> crate::api::PairCounters {
        self.counters()
    }
}

impl VrrpSide {
    /// Transitions per instance and the driver's counters, for metrics.
    pub fn counters(&self) -> crate::api::PairCounters {
        crate::api::PairCounters {
            vrrp_transitions: self
                .views()
                .iter()
                .map(|(name, v)| (name.clone(), v.transitions))
                .collect(),
            vrrp_driver: self.handle.counters(),
        }
    }
}
