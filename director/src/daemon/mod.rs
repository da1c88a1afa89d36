//! `directord`: the dataplane driven by real packets.
//!
//! ```text
//!   data interface(s) ──AF_PACKET ring (fanout by flow)──► worker threads ──► sendmmsg
//!          │                                                 │ reads
//!          └──AF_PACKET (ARP only)──► ARP thread per iface ──┘ neighbour views (ArcSwap)
//!                                      ▲ wants (bounded channel)
//!   tokio control runtime: signals (HUP reload, USR1 active, USR2 standby, TERM stop),
//!   connection expiry, gratuitous ARP on becoming active, the gRPC control API
//! ```
//!
//! Workers never block on the control side: they read published snapshots
//! (services, neighbours) and push resolution requests into a bounded
//! channel. The kernel on the director is kept out of the VIP traffic
//! ([`kernel`]).

pub mod arp_side;
pub mod clock;
pub mod control;
mod failover;
pub mod kernel;
pub mod nft;
pub mod pair;
pub mod routes;
pub mod sync_side;
pub mod vrrp_side;
pub mod worker;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::arp::{ArpConfig, ArpResponder, GarpConfig};
use crate::config::{
    Config, ControlConfig, MetricsConfig, SyncConfig, TimeoutSettings, VrrpInstanceConfig,
    WorkerFanout,
};
use crate::conn::TableConfig;
use crate::dataplane::{Dataplane, DataplaneConfig, IfaceId, Interface};
use crate::forward::OuterTtl;
use crate::health::HealthPlan;
use crate::io::{Filter, RingVersion, if_info};
use crate::service_table::ServiceSpec;
use crate::types::ForwardMethod;

use arp_side::AnswerSet;
use clock::Clock;
use routes::{RouteIface, Routes};
use worker::{SharedFilter, WorkerSpec};

/// One data interface as the daemon runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfacePlan {
    /// Kernel name.
    pub name: String,
    /// The director's own address on it.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// Router for destinations off its subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Extra addresses answered for in ARP on it while active (the NAT
    /// inside gateway VIP); service VIPs are placed automatically.
    pub vips: Vec<Ipv4Addr>,
    /// Gratuitous ARP schedule on becoming master (from the VRRP instance
    /// whose addresses live here; keepalived's defaults otherwise).
    pub garp: GarpConfig,
}

/// Everything the daemon needs to run, validated.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    /// Node name.
    pub node: String,
    /// Data interfaces, in `IfaceId` order.
    pub ifaces: Vec<IfacePlan>,
    /// Virtual services.
    pub specs: Vec<ServiceSpec>,
    /// Their health checks, sorry servers and quorums.
    pub health: HealthPlan,
    /// `ipvsadm --set tcp tcpfin udp`; unset keeps IPVS's default.
    pub timeouts: TimeoutSettings,
    /// Worker threads per data interface.
    pub workers: usize,
    /// Connection table bound.
    pub max_connections: usize,
    /// Outer TTL of IPIP packets.
    pub tun_ttl: OuterTtl,
    /// Verify L4 checksums of complete packets.
    pub verify_checksums: bool,
    /// VRRP instances; empty: the role is set by hand.
    pub vrrp: Vec<VrrpInstanceConfig>,
    /// Connection sync with the peer.
    pub sync: Option<SyncConfig>,
    /// The workers' receive ring layout.
    pub rx_ring: RingVersion,
    /// How each interface's frames are spread over its workers.
    pub fanout: WorkerFanout,
    /// Leave the interfaces' offloads on and forward merged frames whole.
    pub offloads: bool,
    /// MiB of each worker's receive ring.
    pub ring_mib: u32,
    /// The control API's listener and access rules.
    pub control: ControlConfig,
    /// The Prometheus endpoint, if on.
    pub metrics: Option<MetricsConfig>,
}

impl DaemonPlan {
    /// The plan a validated configuration describes.
    pub fn from_config(c: &Config) -> DaemonPlan {
        let d = c.dataplane();
        let by_iface = c.vips_by_interface();
        DaemonPlan {
            node: c.node().name.clone(),
            ifaces: c
                .interfaces()
                .iter()
                .zip(&by_iface)
                .map(|(i, answered)| IfacePlan {
                    name: i.name.clone(),
                    addr: i.address,
                    prefix: i.prefix_len,
                    gateway: i.gateway,
                    vips: i.vips.clone(),
                    garp: garp_for(c.vrrp_instances(), &answered.addresses),
                })
                .collect(),
            specs: c.service_specs(),
            health: c.health_plan().clone(),
            timeouts: *c.timeouts(),
            workers: d.workers,
            max_connections: d.max_connections,
            tun_ttl: d.tun_ttl,
            verify_checksums: d.verify_checksums,
            vrrp: c.vrrp_instances().to_vec(),
            sync: c.sync().cloned(),
            rx_ring: d.rx_ring,
            fanout: d.fanout,
            offloads: d.offloads,
            ring_mib: d.ring_mib,
            control: c.control().clone(),
            metrics: c.metrics().cloned(),
        }
    }
}

/// The gratuitous ARP schedule of the first VRRP instance that moves one
/// of `answered` (the addresses an interface answers for).
fn garp_for(instances: &[VrrpInstanceConfig], answered: &[Ipv4Addr]) -> GarpConfig {
    instances
        .iter()
        .find(|v| v.vips.iter().any(|ip| answered.contains(ip)))
        .map(|v| GarpConfig {
            repeat: v.garp_repeat,
            delay_second_burst: v.garp_delay,
            refresh: v.garp_refresh,
            refresh_repeat: v.garp_refresh_repeat,
            ..GarpConfig::default()
        })
        .unwrap_or_default()
}

/// Run-time choices made on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start active (forwarding, answering ARP) rather than standby.
    pub start_active: bool,
}

/// The IPv4 VIPs of `specs`, and their IPv4 NAT real servers.
fn vips_and_nat_rips(specs: &[ServiceSpec]) -> (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>) {
    let mut vips = BTreeSet::new();
    let mut nat_rips = BTreeSet::new();
    for s in specs {
        if let IpAddr::V4(v) = s.key.vip.ip() {
            vips.insert(v);
        }
        for d in &s.dests {
            if let (ForwardMethod::Masquerade, IpAddr::V4(r)) = (d.method, d.addr.ip()) {
                nat_rips.insert(r);
            }
        }
    }
    (vips, nat_rips)
}

/// The kernel filter for the workers: IPv4 to any VIP, and IPv4 from any
/// NAT real server (its replies).
pub fn worker_filter(specs: &[ServiceSpec]) -> anyhow::Result<Filter> {
    let (vips, nat_rips) = vips_and_nat_rips(specs);
    let mut b = Filter::builder();
    if !vips.is_empty() {
        b = b.ipv4_to(vips);
    }
    if !nat_rips.is_empty() {
        b = b.ipv4_from(nat_rips);
    }
    b.build().map_err(|e| {
        anyhow::anyhow!("too many VIPs and NAT real servers for the kernel filter: {e}")
    })
}

/// What the nftables ingress drop matches for these interfaces and
/// services.
pub fn drop_rules(ifaces: &[IfacePlan], specs: &[ServiceSpec]) -> nft::DropRules {
    let (vips, nat_rips) = vips_and_nat_rips(specs);
    nft::DropRules::new(
        ifaces.iter().map(|p| p.name.clone()).collect(),
        vips,
        nat_rips,
        ifaces.iter().map(|p| p.addr),
    )
}

/// Installs or updates the ingress drop; on failure the daemon runs on
/// without it (forwarding off still keeps the kernel from forwarding or
/// answering) and says so once per change.
fn apply_drop(ingress: &mut nft::IngressDrop, rules: &nft::DropRules) {
    let was = ingress.is_installed();
    match ingress.apply(rules) {
        Ok(()) if !was => println!(
            "kernel: nftables table netdev {} drops VIP traffic{} at ingress on {}",
            ingress.table(),
            if rules.nat_rips.is_empty() {
                ""
            } else {
                " and NAT replies"
            },
            rules.ifaces.join(", ")
        ),
        Ok(()) => {}
        Err(e) => println!(
            "kernel: warning: no ingress drop ({e}); the IP stack also sees the forwarded \
             traffic (and drops it, forwarding being off)"
        ),
    }
}

/// Sample every service's and real server's counters into the rate
/// estimators every 2 s, as IPVS does (`ipvsadm --rate`), until the task
/// is aborted or its runtime stops.
pub fn spawn_rate_estimator(
    state: Arc<crate::api::ControlState>,
    clock: Clock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = std::time::Duration::from_millis(crate::estimator::INTERVAL_MS);
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            state.rates.sample(clock.now(), &state.dp.services());
        }
    })
}

/// The running daemon's shared pieces.
#[derive(Debug)]
pub struct Running {
    /// The dataplane.
    pub dp: Arc<Dataplane>,
    /// The clock.
    pub clock: Clock,
    /// Routing and neighbour views.
    pub routes: Routes,
    /// The workers' kernel filter.
    pub filter: Arc<SharedFilter>,
    /// Set to stop every thread.
    pub stop: Arc<AtomicBool>,
    /// What each interface answers for and resolves.
    pub answers: Vec<Arc<ArcSwap<AnswerSet>>>,
    /// The interfaces as planned.
    pub plan_ifaces: Vec<IfacePlan>,
    /// Service table version the filter and answers were built for.
    pub seen_version: u64,
    /// With VRRP: the addresses this node owns now (those of its MASTER
    /// instances); only these are answered for. `None`: no VRRP, every
    /// address is answered while the dataplane is active.
    pub owned: Option<BTreeSet<Ipv4Addr>>,
    /// Since when the dataplane drains (lost mastership, still forwarding
    /// the flows it has until the new master is heard).
    pub draining_since: Option<crate::time::Millis>,
    /// Wake the ARP threads (a role change: answer or stop at once).
    pub arp_wakes: Vec<Arc<crate::io::Wake>>,
    /// The services as last routed (with sorry servers), for answer sets.
    pub routing: Vec<ServiceSpec>,
    /// Where connection events go for the sync stream.
    pub sync: Arc<sync_side::SyncHook>,
    /// Worker and ARP threads.
    pub threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// The nftables ingress drop (removed when this is dropped).
    pub ingress: nft::IngressDrop,
}

/// Longest drain after losing mastership when no new master is heard.
pub const MAX_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Prepare the director's interfaces and start the workers.
pub fn start(plan: &DaemonPlan, opts: &RunOptions) -> anyhow::Result<Running> {
    let clock = Clock::start();
    let mut ifaces = Vec::new();
    for p in &plan.ifaces {
        match kernel::forwarding_off(&p.name) {
            Ok(Some(c)) => println!("kernel: {}: {} → {}", c.what, c.before, c.after),
            Ok(None) => {}
            Err(e) => anyhow::bail!("cannot turn IPv4 forwarding off on {}: {e}", p.name),
        }
        if plan.offloads {
            // Left as the operator set them: merged frames are forwarded
            // whole (`[dataplane] offloads = true`).
            println!("kernel: {}: offloads left on", p.name);
        } else {
            match kernel::offloads_off(&p.name) {
                Ok(changes) => {
                    for c in changes {
                        println!("kernel: {}: {} → {}", c.what, c.before, c.after);
                    }
                }
                Err(e) => println!("kernel: warning: {e}"),
            }
        }
        let info = if_info(&p.name).with_context(|| format!("data interface {}", p.name))?;
        ifaces.push(Interface {
            mac: info.mac,
            ip: p.addr,
            mtu: u16::try_from(info.mtu).unwrap_or(u16::MAX),
        });
    }
    let cfg = DataplaneConfig {
        ifaces,
        names: plan.ifaces.iter().map(|p| p.name.clone()).collect(),
        tun_ttl: plan.tun_ttl,
        table: TableConfig {
            max_entries: plan.max_connections,
            ..TableConfig::default()
        },
    };
    let dp = Arc::new(Dataplane::new(cfg));
    dp.apply(&plan.specs).context("virtual services")?;
    plan.timeouts.apply(dp.conns().timeouts());
    dp.set_active(opts.start_active);

    let mut responders = Vec::new();
    let mut route_ifaces = Vec::new();
    let mut want_rxs = Vec::new();
    for (i, p) in plan.ifaces.iter().enumerate() {
        let mac = dp.config().ifaces[i].mac;
        let mut arp = ArpConfig::new(mac, p.addr, Vec::new());
        arp.garp = p.garp;
        let responder = ArpResponder::new(arp);
        let (wants_tx, wants_rx) = std::sync::mpsc::sync_channel(1024);
        route_ifaces.push(RouteIface {
            id: IfaceId(i as u8),
            addr: p.addr,
            prefix: p.prefix,
            gateway: p.gateway,
            neighbours: responder.view(),
            wants: wants_tx,
        });
        responders.push(responder);
        want_rxs.push(wants_rx);
    }
    let routes = Routes::new(Arc::new(route_ifaces));
    let filter = Arc::new(SharedFilter::new(worker_filter(&plan.specs)?));
    let stop = Arc::new(AtomicBool::new(false));
    let sync = Arc::new(sync_side::SyncHook::default());
    let sets = answer_sets(&plan.ifaces, &routes, &plan.specs);
    let answers: Vec<_> = sets
        .into_iter()
        .map(|a| Arc::new(ArcSwap::from_pointee(a)))
        .collect();

    let names: Vec<String> = plan.ifaces.iter().map(|p| p.name.clone()).collect();
    let mut threads = Vec::new();
    // Every thread reports once its sockets are open: `start` returns only
    // when the dataplane is really receiving (so a caller that sees the
    // control API up can send traffic), and fails at once, with the
    // reason, when a socket cannot be opened.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    for (i, _) in plan.ifaces.iter().enumerate() {
        for n in 0..plan.workers.max(1) {
            let spec = WorkerSpec {
                n: i * plan.workers + n,
                ingress: IfaceId(i as u8),
                iface_names: names.clone(),
                // One fanout group per interface; unique enough within the
                // namespace for one daemon, derived from the pid so two
                // daemons never share a group.
                fanout_group: (std::process::id() as u16)
                    .wrapping_mul(8)
                    .wrapping_add(i as u16),
                verify_checksums: plan.verify_checksums,
                sync: Arc::clone(&sync),
                rx_ring: plan.rx_ring,
                fanout: plan.fanout,
                offloads: plan.offloads,
                ring_mib: plan.ring_mib,
                // Worker n of every interface on CPU n: what CPU n
                // receives on any interface is forwarded there.
                cpu: n,
            };
            let (dp, routes, filter, stop) = (
                Arc::clone(&dp),
                routes.clone(),
                Arc::clone(&filter),
                Arc::clone(&stop),
            );
            let ready = ready_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{}-{n}", names[i]))
                    .spawn(move || worker::run(spec, dp, routes, filter, clock, stop, ready))
                    .context("spawn worker thread")?,
            );
        }
    }
    let mut arp_wakes = Vec::new();
    for ((p, responder), (wants_rx, answers)) in plan
        .ifaces
        .iter()
        .zip(responders)
        .zip(want_rxs.into_iter().zip(answers.iter().cloned()))
    {
        let (name, dp, stop) = (p.name.clone(), Arc::clone(&dp), Arc::clone(&stop));
        let wake = Arc::new(crate::io::Wake::new().context("eventfd for the ARP thread")?);
        arp_wakes.push(Arc::clone(&wake));
        let ready = ready_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("arp-{}", p.name))
                .spawn(move || {
                    let t = arp_side::ArpThread {
                        name,
                        responder,
                        dp,
                        wants: wants_rx,
                        answers,
                        clock,
                        stop,
                        wake,
                    };
                    arp_side::run(t, ready)
                })
                .context("spawn ARP thread")?,
        );
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        let report = ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("a dataplane thread did not start within 10 s"))
            .and_then(|r| r.map_err(|e| anyhow::anyhow!(e)));
        if let Err(e) = report {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
    let seen_version = dp.services().version();
    let mut ingress = nft::IngressDrop::new(&plan.node);
    apply_drop(&mut ingress, &drop_rules(&plan.ifaces, &plan.specs));
    Ok(Running {
        dp,
        clock,
        routes,
        filter,
        stop,
        answers,
        plan_ifaces: plan.ifaces.clone(),
        seen_version,
        owned: None,
        draining_since: None,
        arp_wakes,
        routing: plan.specs.clone(),
        sync,
        threads,
        ingress,
    })
}

/// What each interface answers for (its explicit VIPs, and every service
/// VIP on its subnet — the most specific one — or on the first interface
/// when none contains it) and which neighbours it keeps resolved (the next
/// hop of every real server it reaches, and its router).
pub fn answer_sets(ifaces: &[IfacePlan], routes: &Routes, specs: &[ServiceSpec]) -> Vec<AnswerSet> {
    let mut sets: Vec<AnswerSet> = ifaces
        .iter()
        .map(|p| AnswerSet {
            vips: p.vips.clone(),
            wanted: p.gateway.into_iter().collect(),
        })
        .collect();
    let explicit: BTreeSet<Ipv4Addr> = ifaces.iter().flat_map(|p| p.vips.iter().copied()).collect();
    for s in specs {
        let IpAddr::V4(vip) = s.key.vip.ip() else {
            continue;
        };
        if !explicit.contains(&vip) {
            let best = ifaces
                .iter()
                .enumerate()
                .filter(|(_, p)| routes::contains(p.addr, p.prefix, vip))
                .max_by_key(|(_, p)| p.prefix)
                .map_or(0, |(i, _)| i);
            if let Some(set) = sets.get_mut(best)
                && !set.vips.contains(&vip)
            {
                set.vips.push(vip);
            }
        }
        for d in &s.dests {
            let IpAddr::V4(rip) = d.addr.ip() else {
                continue;
            };
            if let Some((iface, hop)) = routes.route(rip) {
                let set = &mut sets[usize::from(iface.id.0)];
                if !set.wanted.contains(&hop) {
                    set.wanted.push(hop);
                }
            }
        }
    }
    sets
}

impl Running {
    /// After a configuration change (reload, control API edit, health
    /// verdict), rebuild the workers' filter and what each interface
    /// answers and resolves, from `specs`: every service with every real
    /// server it may use (configured ones and sorry servers, so that a
    /// server coming back or a sorry server taking over finds its
    /// neighbour resolved and its replies let in). Cheap when the service
    /// table did not change.
    pub fn refresh(&mut self, specs: &[ServiceSpec]) -> anyhow::Result<()> {
        let table = self.dp.services();
        if table.version() == self.seen_version {
            return Ok(());
        }
        self.filter.set(worker_filter(specs)?);
        apply_drop(&mut self.ingress, &drop_rules(&self.plan_ifaces, specs));
        self.routing = specs.to_vec();
        self.publish_answers(specs);
        self.seen_version = table.version();
        Ok(())
    }

    /// VRRP moved addresses: answer for `owned` only, and forward while
    /// anything is owned. The ARP threads pick the change up within their
    /// poll period and send gratuitous ARP for what was added.
    pub fn set_owned(&mut self, owned: BTreeSet<Ipv4Addr>) {
        let active = !owned.is_empty();
        let was_active = self.dp.is_active();
        self.owned = Some(owned);
        let specs = self.routing.clone();
        if active {
            self.publish_answers(&specs);
            self.dp.set_draining(false);
            self.draining_since = None;
            self.dp.set_active(true);
        } else {
            // Stop answering for the VIPs and creating flows at once; keep
            // forwarding the flows in the table until the new master is
            // heard (see `end_drain`): a client's packets go to our MAC
            // until the new master's gratuitous ARP reaches it, and the
            // peer has the same entries (sync), so both send a flow to the
            // same real server.
            if was_active {
                self.dp.set_draining(true);
                self.draining_since = Some(self.clock.now());
            }
            self.dp.set_active(false);
            self.publish_answers(&specs);
        }
        for w in &self.arp_wakes {
            w.wake();
        }
    }

    /// End draining once `peer_heard` (the new master's adverts — sent
    /// with its gratuitous ARP — reach us) or after [`MAX_DRAIN`].
    pub fn end_drain(&mut self, peer_heard: bool) {
        let Some(since) = self.draining_since else {
            return;
        };
        let waited = self.clock.now().saturating_since(since);
        if peer_heard || waited >= MAX_DRAIN {
            self.dp.set_draining(false);
            self.draining_since = None;
            println!(
                "directord: standby: stopped forwarding existing flows after {} ms ({})",
                waited.as_millis(),
                if peer_heard {
                    "the new master is heard"
                } else {
                    "no new master heard"
                }
            );
        }
    }

    fn publish_answers(&self, specs: &[ServiceSpec]) {
        for (slot, mut set) in
            self.answers
                .iter()
                .zip(answer_sets(&self.plan_ifaces, &self.routes, specs))
        {
            if let Some(owned) = &self.owned {
                set.vips.retain(|v| owned.contains(v));
            }
            if **slot.load() != set {
                slot.store(Arc::new(set));
            }
        }
    }

    /// Stop every thread and wait for them; returns the first error.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        if let Err(e) = self.ingress.remove() {
            println!(
                "kernel: warning: removing nftables table {}: {e}",
                self.ingress.table()
            );
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceKey;
    use crate::sched::{SchedOptions, SchedulerKind};
    use crate::service_table::DestSpec;
    use crate::types::Protocol;

    #[test]
    fn the_worker_filter_takes_vips_and_nat_real_servers_only() {
        let spec = ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                vip: "10.11.0.100:80".parse().unwrap(),
            },
            scheduler: SchedulerKind::Rr,
            sched_opts: SchedOptions::default(),
            persistence: None,
            dests: vec![
                DestSpec {
                    addr: "10.12.0.11:80".parse().unwrap(),
                    method: ForwardMethod::Masquerade,
                    weight: 1,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
                DestSpec {
                    addr: "10.12.0.12:80".parse().unwrap(),
                    method: ForwardMethod::DirectRouting,
                    weight: 1,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
            ],
        };
        let f = worker_filter(&[spec]).unwrap();
        let g = Filter::builder()
            .ipv4_to(["10.11.0.100".parse().unwrap()])
            .ipv4_from(["10.12.0.11".parse().unwrap()])
            .build()
            .unwrap();
        assert_eq!(
            f.insns(),
            g.insns(),
            "VIP in, NAT real server out, not the DR one"
        );
    }
}
