//! `dirctl`: the director's command-line tool.
//!
//! - ipvsadm's syntax (`dirctl -A -t VIP:PORT -s rr`, `dirctl -Ln`, ...),
//!   sent over gRPC to the director's control API at `--server ADDR`, else
//!   `$DIRCTL_SERVER`, else 127.0.0.1:7400; parsing and listing layouts
//!   live in [`director::cli`].
//! - `dirctl health [-t|-u VIP:PORT] [-r RIP]`: the health checks' view of
//!   every real server (state, effective/configured weight, checker, since
//!   when, last failure) and of each service (quorum, sorry server).
//! - `dirctl realserver ...`: set up, check and undo an LVS real server,
//!   and run the userspace IPIP decapsulator.
//! - `dirctl status`: this node's and the peer's VRRP state, sync role
//!   and lag, connection counts.
//! - `dirctl failover [--max-wait MS] [--force] [--instance NAME] [--hold
//!   MS]`: graceful manual failover; reports how long it took and the
//!   peer's lag at the switch.
//! - `dirctl which --client IP[:PORT] -t|-u VIP:PORT` (or `--service
//!   VIP:PORT [-u]`): which real server serves this client and why — its
//!   connection entry, its persistence template, or the scheduler's pick
//!   for a new flow (asked without advancing the scheduler). Exits 1 when
//!   the packet would be dropped.
//! - `dirctl watch [--interval MS] [-t|-u VIP:PORT] [--count N]`: a live
//!   view of the node — VRRP state, sync lag, and per service and real
//!   server the weight, connections and rates — refreshed in place on a
//!   terminal, one block per snapshot otherwise.
//!
//! Every command that talks to a director takes `--tls-ca`, `--tls-cert`,
//! `--tls-key`, `--tls-server-name` and `--token`/`--token-file` (or
//! `$DIRCTL_TOKEN` and friends), anywhere on the line: see
//! [`director::cli::access`].

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use director::cli::client::ClientError;
use director::realserver::{
    self, CheckRequest, DEFAULT_STATE_DIR, DEFAULT_TUN_DEV, Decap, LiveSystem, Mode, Request,
    decap::DecapOptions,
};

#[derive(Debug, Parser)]
#[command(name = "dirctl", version, about = "LVS director control")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// ipvsadm-style invocations (`dirctl -A -t ...`) start with a flag, not a
// subcommand; main() routes everything but `realserver` to their own parser
// before clap sees it, so this enum only ever holds the named subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Configure this host as an LVS real server (DR or TUN).
    Realserver(RealserverCmd),
    /// This director's and its peer's VRRP state, sync role and lag,
    /// connection counts.
    Status(ServerArg),
    /// Graceful manual failover: wait until the peer's sync lag is zero,
    /// then step down (priority 0) so that the peer takes over. On the
    /// backup: ask the master to hand over to this node.
    Failover(FailoverArgs),
    /// Which real server serves a client, and why (changes nothing).
    Which(WhichArgs),
    /// A live view of the node: VRRP, sync lag, services and rates.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
struct FailoverArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Longest wait for the peer's sync lag to reach zero, ms.
    #[arg(long, default_value_t = 5000)]
    max_wait: u32,
    /// Fail over even if the peer is behind, not connected or unhealthy
    /// (flows not synced break).
    #[arg(long)]
    force: bool,
    /// Only this VRRP instance (default: every instance of this node).
    #[arg(long)]
    instance: Option<String>,
    /// After stepping down, refrain from preempting back for this long,
    /// ms (0: until the peer fails or the next failover).
    #[arg(long, default_value_t = 0)]
    hold: u32,
}

/// Named subcommands; anything else is ipvsadm syntax.
const SUBCOMMANDS: &[&str] = &[
    "realserver",
    "status",
    "failover",
    "which",
    "watch",
    "help",
    "--help",
];

fn client_addr(s: &str) -> Result<SocketAddr, String> {
    director::cli::which::parse_addr("client address", s)
}

fn service_addr(s: &str) -> Result<SocketAddr, String> {
    director::cli::which::parse_addr("service address", s)
}

/// The service, ipvsadm's way (`-t`/`-u VIP:PORT`) or `--service VIP:PORT`
/// (TCP, UDP with a bare `-u`).
#[derive(Debug, Args)]
struct ServiceArgs {
    /// The virtual service VIP:PORT (TCP; UDP with -u).
    #[arg(long, value_name = "VIP:PORT", value_parser = service_addr)]
    service: Option<SocketAddr>,
    /// A TCP virtual service (ipvsadm -t).
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT", value_parser = service_addr)]
    tcp_service: Option<SocketAddr>,
    /// A UDP virtual service (ipvsadm -u VIP:PORT), or alone: --service is UDP.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT", num_args = 0..=1, value_parser = service_addr)]
    udp_service: Option<Option<SocketAddr>>,
}

impl ServiceArgs {
    fn resolve(&self) -> Result<Option<director::cli::args::ServiceArg>> {
        director::cli::which::service_arg(self.service, self.tcp_service, self.udp_service)
            .map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Args)]
struct WhichArgs {
    #[command(flatten)]
    server: ServerArg,
    /// The client's address, with or without a port; no port (or 0) means
    /// any port: persistence and address hashing decide alone.
    #[arg(long, short = 'c', value_name = "IP[:PORT]", value_parser = client_addr)]
    client: SocketAddr,
    #[command(flatten)]
    service: ServiceArgs,
}

#[derive(Debug, Args)]
struct WatchArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Time between snapshots, ms (at least 100).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval: u32,
    /// Stop after N snapshots.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    service: ServiceArgs,
}

#[derive(Debug, Args)]
struct ServerArg {
    /// The director's control API (else $DIRCTL_SERVER, else 127.0.0.1:7400).
    #[arg(long)]
    server: Option<String>,
}

impl ServerArg {
    fn resolve(&self) -> String {
        self.server
            .clone()
            .or_else(|| {
                std::env::var(director::cli::client::SERVER_ENV)
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| director::cli::client::DEFAULT_SERVER.to_owned())
    }
}

#[derive(Debug, Args)]
struct RealserverCmd {
    /// Also print the read-only commands (changes are always printed).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    action: RealserverAction,
}

#[derive(Debug, Subcommand)]
enum RealserverAction {
    /// Put the VIPs in place and set the ARP and rp_filter sysctls; prints
    /// every change (before → after) and every command; idempotent.
    Setup(SetupArgs),
    /// Diagnose what would break LVS traffic to this host; exits 1 if
    /// anything would.
    Check(CheckArgs),
    /// Reverse what setup changed (from the state file).
    Undo(StateArgs),
    /// Userspace IPIP decapsulation into a TUN device, in the foreground
    /// (for kernels without the ipip module; run it under systemd).
    Decap(DecapArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Dr,
    Tun,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Dr => Mode::Dr,
            ModeArg::Tun => Mode::Tun,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecapArg {
    /// The kernel's ipip device if it has one, else userspace.
    Auto,
    /// The kernel's ipip device.
    Kernel,
    /// A TUN device fed by `dirctl realserver decap`.
    Userspace,
}

#[derive(Debug, Args)]
struct StateArgs {
    /// Where setup records what it changed, for undo.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Debug, Args)]
struct Common {
    /// A virtual IP (repeat for several).
    #[arg(long = "vip", required = true)]
    vips: Vec<Ipv4Addr>,
    /// DR or TUN.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Device for the VIPs: default lo (DR); tunl0 or lvs-tun0 (TUN).
    #[arg(long)]
    dev: Option<String>,
}

#[derive(Debug, Args)]
struct SetupArgs {
    #[command(flatten)]
    common: Common,
    /// TUN: who decapsulates IPIP.
    #[arg(long, value_enum, default_value = "auto")]
    decap: DecapArg,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// The director's address: also check that an ARP request for the VIP
    /// from it would go unanswered.
    #[arg(long)]
    director: Option<Ipv4Addr>,
}

#[derive(Debug, Args)]
struct DecapArgs {
    /// The TUN device made by `setup --mode tun`.
    #[arg(long, default_value = DEFAULT_TUN_DEV)]
    dev: String,
    /// Accepted inner destinations (default: the device's addresses).
    #[arg(long = "vip")]
    vips: Vec<Ipv4Addr>,
    /// Print the counters every SECONDS as well as on exit.
    #[arg(long, value_name = "SECONDS")]
    stats_interval: Option<f64>,
}

fn main() -> ExitCode {
    // The TLS and token options may stand anywhere; take them out first.
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv = match director::cli::access::strip(argv) {
        Ok((rest, opts)) => {
            director::cli::access::set(opts);
            rest
        }
        Err(e) => {
            eprintln!("dirctl: {e}");
            return ExitCode::from(2);
        }
    };
    if argv.first().is_some_and(|a| a == "health") {
        return director::cli::client::health_main(argv[1..].to_vec());
    }
    // Everything but the `realserver` subcommand is ipvsadm syntax.
    if argv
        .first()
        .is_none_or(|a| !SUBCOMMANDS.iter().any(|s| a == *s))
    {
        return director::cli::client::main(argv);
    }
    let cli = Cli::parse_from(std::iter::once("dirctl".to_owned()).chain(argv));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dirctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")
}

/// The exit status of a client command: its own, or 1 with the error on
/// stderr (a reader that left, `dirctl watch | head`, is no error).
fn client_exit(r: Result<ExitCode, ClientError>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dirctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Realserver(rs) => realserver_cmd(rs.action, rs.verbose),
        Command::Status(a) => {
            let server = a.resolve();
            let mut out = std::io::stdout().lock();
            block_on(director::cli::pair::status(&server, &mut out)).map(|()| ExitCode::SUCCESS)
        }
        Command::Failover(a) => {
            let server = a.server.resolve();
            let req = director::cli::pair::FailoverRequest {
                max_wait_ms: a.max_wait,
                force: a.force,
                instance: a.instance.unwrap_or_default(),
                hold_ms: a.hold,
                takeover_timeout_ms: 0,
            };
            let mut out = std::io::stdout().lock();
            block_on(director::cli::pair::failover(&server, req, &mut out)).map(|done| {
                if done {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        Command::Which(a) => {
            let service = a.service.resolve()?.context(
                "which service? give --service VIP:PORT [-u], -t VIP:PORT or -u VIP:PORT",
            )?;
            let req = director::cli::which::request(a.client, service);
            let server = a.server.resolve();
            let mut out = std::io::stdout().lock();
            let r = runtime()?.block_on(director::cli::which::which(&server, req, &mut out));
            Ok(client_exit(r.map(|forwarded| {
                if forwarded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })))
        }
        Command::Watch(a) => {
            let opts = director::cli::watch::WatchOptions {
                interval: Duration::from_millis(u64::from(a.interval)),
                service: a.service.resolve()?,
                count: a.count,
                in_place: std::io::stdout().is_terminal(),
            };
            let server = a.server.resolve();
            let mut out = std::io::stdout().lock();
            let r = runtime()?.block_on(director::cli::watch::watch(&server, &opts, &mut out));
            Ok(client_exit(r.map(|()| ExitCode::SUCCESS)))
        }
    }
}

/// Run a control-API call; its error is printed as is (exit 1).
fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, director::cli::client::ClientError>>,
) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    rt.block_on(f).map_err(|e| anyhow::anyhow!("{e}"))
}

fn realserver_cmd(action: RealserverAction, verbose: bool) -> Result<ExitCode> {
    let mut out = std::io::stdout();
    let mut sys = LiveSystem::new(std::io::stdout()).verbose(verbose);
    match action {
        RealserverAction::Setup(a) => {
            let req = Request {
                vips: a.common.vips,
                mode: a.common.mode.into(),
                dev: a.common.dev,
                decap: match a.decap {
                    DecapArg::Auto => Decap::Auto,
                    DecapArg::Kernel => Decap::Kernel,
                    DecapArg::Userspace => Decap::Userspace,
                },
            };
            let path = realserver::state_path(&a.state.state_dir);
            realserver::setup(&mut sys, &req, &path, &mut out).context("setup")?;
            Ok(ExitCode::SUCCESS)
        }
        RealserverAction::Check(a) => {
            let req = CheckRequest {
                vips: a.common.vips,
                mode: a.common.mode.into(),
                dev: a.common.dev,
                director: a.director.map(|d| (d, None)),
            };
            let findings = realserver::run_check(&mut sys, &req, &mut out).context("check")?;
            Ok(if realserver::healthy(&findings) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RealserverAction::Undo(a) => {
            let path = realserver::state_path(&a.state_dir);
            realserver::undo(&mut sys, &path, &mut out).context("undo")?;
            Ok(ExitCode::SUCCESS)
        }
        RealserverAction::Decap(a) => {
            let stats_interval = a
                .stats_interval
                .map(|s| {
                    anyhow::ensure!(s > 0.0 && s.is_finite(), "--stats-interval must be > 0");
                    Ok(Duration::from_secs_f64(s))
                })
                .transpose()?;
            let opts = DecapOptions {
                dev: a.dev,
                vips: a.vips,
                stats_interval,
            };
            let stop = realserver::decap::stop_flag_on_signals()?;
            realserver::decap::run_decap(&opts, &stop, &mut out).context("decap")?;
            let _ = out.flush();
            Ok(ExitCode::SUCCESS)
        }
    }
}
