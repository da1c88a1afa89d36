//! `directord`: one director of the pair — the userspace LVS dataplane on
//! AF_PACKET, its ARP responder, and the gRPC control API.
//!
//! Signals, as operators of keepalived expect: HUP reloads the services
//! from the configuration file (refused whole if it is wrong, the running
//! table kept), TERM and INT stop. Until the VRRP work drives the role,
//! USR1 makes the node active and USR2 standby.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use director::api::{self, ControlState};
use director::config::Config;
use director::daemon::{self, DaemonPlan, RunOptions};
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
    /// VIPs. (Until VRRP drives the role, the default is active.)
    #[arg(long)]
    standby: bool,
    /// Address of the gRPC control API (dirctl talks to it).
    #[arg(long, default_value = "127.0.0.1:7400")]
    control: SocketAddr,
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
    for i in &plan.ifaces {
        let gw = i.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        println!("interface {} {}/{}{gw}", i.name, i.addr, i.prefix);
    }
    for s in &plan.specs {
        println!("service {} {} {}", s.key.protocol, s.key.vip, s.scheduler);
        for d in &s.dests {
            println!("  -> {} {} weight {}", d.addr, d.method, d.weight);
        }
    }
}

fn run(args: &Args, plan: &DaemonPlan) -> anyhow::Result<()> {
    let opts = RunOptions {
        start_active: !args.standby,
    };
    let mut running = daemon::start(plan, &opts)?;
    let dp = Arc::clone(&running.dp);
    let clock = running.clock;
    let state = Arc::new(ControlState::new(
        plan.node.clone(),
        Arc::clone(&dp),
        plan.specs.clone(),
        clock.as_fn(),
    ));
    println!(
        "directord {}: {} service(s) on {} ({} worker(s) each, {} rx ring), control API on {}, {}",
        plan.node,
        plan.specs.len(),
        plan.ifaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        plan.workers.max(1),
        plan.rx_ring,
        args.control,
        if opts.start_active {
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
        let mut server = tokio::spawn(api::serve(args.control, Arc::clone(&state), async {
            let _ = stop_rx.await;
        }));
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let outcome: anyhow::Result<()> = loop {
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => reload(&args.config, &state),
                _ = usr1.recv() => {
                    dp.set_active(true);
                    println!("directord: active");
                }
                _ = usr2.recv() => {
                    dp.set_active(false);
                    println!("directord: standby");
                }
                _ = tick.tick() => {
                    dp.conns().expire(clock.now(), EXPIRE_BUDGET, &mut |_| {});
                    if let Err(e) = running.refresh() {
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
        let _ = stop_tx.send(());
        outcome
    });
    println!(
        "directord: stopping; dropped frames by reason: {:?}",
        dp.drops()
    );
    let stopped = running.shutdown();
    result.and(stopped)
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
    match state.replace_specs(config.service_specs()) {
        Ok(version) => {
            config.timeouts().apply(state.dp.conns().timeouts());
            println!(
                "directord: reloaded {} (configuration version {version})",
                path.display()
            );
        }
        Err(e) => eprintln!("directord: reload refused, running configuration kept: {e}"),
    }
}
