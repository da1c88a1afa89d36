//! `directord`: one director of the pair — the userspace LVS dataplane on
//! AF_PACKET, its ARP responder, and the gRPC control API.
//!
//! With `[[vrrp_instance]]`s configured, VRRP decides the role: the node
//! starts standby and owns the VIPs of the instances it is MASTER of. On
//! TERM or INT it first advertises priority 0, so the peer takes over at
//! once, then stops. Without VRRP the role is set by hand: active unless
//! `--standby`, USR1 makes the node active and USR2 standby.
//!
//! Signals, as operators of keepalived expect: HUP reloads the services
//! and their health checks from the configuration file (refused whole if
//! it is wrong, the running table kept), TERM and INT stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use director::api::{self, ControlState};
use director::config::Config;
use director::daemon::pair::Pair;
use director::daemon::{self, DaemonPlan, RunOptions};
use director::health::{self, Monitor};
use director::metrics;
use tokio::signal::unix::{SignalKind, signal};

/// Connection-table entries examined per expiry tick (every 100 ms): a
/// full pass over 10^6 entries takes about 2 s, and no tick holds a shard
/// lock for long.
const EXPIRE_BUDGET: usize = 50_000;

#[derive(Debug, Parser)]
#[command(
    name = "directord",
    version,
    about = "LVS-style director: userspace DR/TUN/NAT dataplane"
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/directord/directord.toml")]
    config: PathBuf,
    /// Check the configuration, print what it describes, and exit.
    #[arg(long)]
    check_config: bool,
    /// Start standby: hold state, forward nothing, answer no ARP for the
    /// VIPs. (Without VRRP the default is active; with VRRP, the node
    /// always starts standby and VRRP decides.)
    #[arg(long)]
    standby: bool,
    /// Address of the gRPC control API (dirctl talks to it); overrides
    /// `[control] listen` (default 127.0.0.1:7400). An address other hosts
    /// can reach needs client certificates or a token in `[control]`.
    #[arg(long)]
    control: Option<SocketAddr>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("directord: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = DaemonPlan::from_config(&config);
    if args.check_config {
        print_plan(&plan);
        println!("{}: configuration OK", config.origin());
        return ExitCode::SUCCESS;
    }
    match run(&args, &plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("directord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_plan(plan: &DaemonPlan) {
    println!("node {}", plan.node);
    let c = &plan.control;
    let mut access = Vec::new();
    if let Some(t) = &c.tls {
        access.push(if t.client_ca.is_some() {
            "TLS with client certificates"
        } else {
            "TLS"
        });
    }
    if c.token_file.is_some() {
        access.push("bearer token");
    }
    if access.is_empty() {
        access.push("plaintext, no authentication");
    }
    println!("control API {} ({})", c.listen, access.join(", "));
    if let Some(m) = &plan.metrics {
        println!("metrics http://{}/metrics", m.listen);
    }
    for i in &plan.ifaces {
        let gw = i.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        println!("interface {} {}/{}{gw}", i.name, i.addr, i.prefix);
    }
    for s in &plan.specs {
        println!("service {} {} {}", s.key.protocol, s.key.vip, s.scheduler);
        let h = plan.health.service(&s.key);
        for d in &s.dests {
            let check = h
                .and_then(|h| h.check_for(d.addr))
                .map(|c| format!(" check {}", c.describe()))
                .unwrap_or_default();
            println!("  -> {} {} weight {}{check}", d.addr, d.method, d.weight);
        }
        if let Some(h) = h {
            if let Some(sorry) = h.sorry_server {
                println!("  sorry server {} {}", sorry.addr, sorry.method);
            }
            if h.quorum != 1 || h.hysteresis != 0 {
                println!("  quorum {} hysteresis {}", h.quorum, h.hysteresis);
            }
        }
    }
}

fn run(args: &Args, plan: &DaemonPlan) -> anyhow::Result<()> {
    let with_vrrp = !plan.vrrp.is_empty();
    let opts = RunOptions {
        start_active: !args.standby && !with_vrrp,
    };
    // Access rules and their files first: a refused address or a missing
    // certificate stops the daemon before it touches an interface.
    let control = daemon::control::control_plan(&plan.control, args.control)?;
    let mut running = daemon::start(plan, &opts)?;
    let dp = Arc::clone(&running.dp);
    let clock = running.clock;
    let state = Arc::new(
        ControlState::new(
            plan.node.clone(),
            Arc::clone(&dp),
            plan.specs.clone(),
            clock.as_fn(),
        )
        .with_health(plan.health.clone())
        .context("virtual services with their health state")?,
    );
    println!(
        "directord {}: {} service(s) on {} ({} worker(s) each, {} rx ring of {} MiB{}), \
         control API on {}, {}",
        plan.node,
        plan.specs.len(),
        plan.ifaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        plan.workers.max(1),
        plan.rx_ring,
        plan.ring_mib,
        if plan.offloads { ", offloads on" } else { "" },
        control.describe,
        if with_vrrp {
            "role from VRRP"
        } else if opts.start_active {
            "active"
        } else {
            "standby"
        }
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind(control.listen)
            .await
            .with_context(|| format!("control API: cannot listen on {}", control.listen))?;
        let mut server = tokio::spawn(api::serve_with(
            listener,
            Arc::clone(&state),
            control.opts.clone(),
            async {
                let _ = stop_rx.await;
            },
        ));
        let (metrics_stop, metrics_rx) = tokio::sync::oneshot::channel::<()>();
        let metrics = match &plan.metrics {
            None => None,
            Some(m) => {
                let listener = metrics::http::bind(m.listen).await?;
                println!("directord: Prometheus metrics on http://{}/metrics", m.listen);
                let registry = Arc::new(metrics::registry(Arc::clone(&state)));
                Some(tokio::spawn(metrics::http::serve(listener, registry, async {
                    let _ = metrics_rx.await;
                })))
            }
        };
        let (monitor_stop, monitor_rx) = tokio::sync::oneshot::channel::<()>();
        let monitor = tokio::spawn(
            Monitor::new(Arc::clone(&state), health::DEFAULT_MAX_IN_FLIGHT).run(async {
                let _ = monitor_rx.await;
            }),
        );
        let rates = daemon::spawn_rate_estimator(Arc::clone(&state), clock);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let (mut pair, mut vrrp_events) = if with_vrrp {
            let (pair, events) =
                Pair::start(&plan.vrrp, plan.sync.as_ref(), &state, &running.sync, clock).await?;
            state.set_pair(pair.view());
            // Nothing is owned until an instance becomes MASTER.
            running.set_owned(Default::default());
            (Some(pair), Some(events))
        } else {
            if plan.sync.is_some() {
                println!("directord: [sync] needs a [[vrrp_instance]] to follow; sync is off");
            }
            (None, None)
        };
        let outcome: anyhow::Result<()> = loop {
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => reload(&args.config, &state),
                Some(ev) = recv_opt(&mut vrrp_events) => {
                    if let Some(pair) = &mut pair {
                        let vrrp::DriverEvent::Transition { instance, from, to, reason, priority, .. } = &ev;
                        println!(
                            "directord: VRRP {instance}: {} -> {} (priority {priority}): {reason}",
                            from.name(),
                            to.name()
                        );
                        // The dataplane takes its role first (a node that
                        // lost mastership drains: it starts no flow), then
                        // sync follows.
                        let owned = pair.record(&ev);
                        let master = !owned.is_empty();
                        running.set_owned(owned);
                        pair.follow(&ev, master).await;
                    }
                }
                _ = usr1.recv() => set_role_by_hand(&dp, with_vrrp, true),
                _ = usr2.recv() => set_role_by_hand(&dp, with_vrrp, false),
                _ = tick.tick() => {
                    let now = clock.now();
                    let hook = &running.sync;
                    dp.conns().expire(now, EXPIRE_BUDGET, &mut |ev| hook.on_event(ev, &dp, now));
                    if let Some(pair) = &mut pair {
                        pair.tick(&dp).await;
                        running.end_drain(pair.new_master_heard());
                    }
                    if let Err(e) = running.refresh(&state.routing_specs()) {
                        eprintln!("directord: {e:#}");
                    }
                }
                r = &mut server => {
                    break match r {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(anyhow::anyhow!("control API task: {e}")),
                    };
                }
            }
        };
        if let Some(pair) = &mut pair {
            // Stop answering for the VIPs and starting flows (the flows
            // in the table keep forwarding while we run), then priority 0,
            // so the peer takes over at once (RFC 5798 6.4.3), with the
            // last flows flushed to it.
            running.set_owned(Default::default());
            pair.shutdown().await;
        }
        let _ = stop_tx.send(());
        let _ = monitor_stop.send(());
        let _ = metrics_stop.send(());
        let _ = monitor.await;
        rates.abort();
        if let Some(m) = metrics {
            let _ = m.await;
        }
        outcome
    });
    let stopped = running.shutdown();
    // After the workers stopped: their last counts are in.
    let io = dp.io_totals();
    println!(
        "directord: stopping; dropped frames by reason: {:?}; frames in {}, out {}, \
         lost at full rings {}, failed sends {}",
        dp.drops(),
        io.rx,
        io.tx,
        io.ring_drops,
        io.send_failures
    );
    result.and(stopped)
}

/// The next VRRP event, or never when VRRP does not run.
async fn recv_opt<T>(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// USR1/USR2: the manual role switch, refused when VRRP decides.
fn set_role_by_hand(dp: &director::dataplane::Dataplane, with_vrrp: bool, active: bool) {
    if with_vrrp {
        eprintln!("directord: VRRP decides the role here; use dirctl failover to move it");
        return;
    }
    dp.set_active(active);
    println!("directord: {}", if active { "active" } else { "standby" });
}

/// SIGHUP: load the file again and apply its services whole, or keep the
/// running ones and say why.
fn reload(path: &PathBuf, state: &ControlState) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("directord: reload refused, running configuration kept: {e}");
            return;
        }
    };
    // A sync backup runs its master's rules: the file's services and
    // timeouts are not applied here (the master's next table would undo
    // them); its health checks are.
    let master = state.pair().and_then(|p| p.rules_master());
    let specs = match &master {
        Some(m) => {
            println!(
                "directord: reload on the sync backup: services and timeouts stay as \
                 replicated from the master {m}; health checks reloaded"
            );
            state.specs()
        }
        None => config.service_specs(),
    };
    match state.replace_config(specs, config.health_plan().clone()) {
        Ok(version) => {
            if master.is_none() {
                config.timeouts().apply(state.dp.conns().timeouts());
            }
            println!(
                "directord: reloaded {} (configuration version {version})",
                path.display()
            );
        }
        Err(e) => eprintln!("directord: reload refused, running configuration kept: {e}"),
    }
}
