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
//! - `dirctl status`: this node's VRRP state, role and connection counts.
//!
//! Every command that talks to a director takes `--tls-ca`, `--tls-cert`,
//! `--tls-key`, `--tls-server-name` and `--token`/`--token-file` (or
//! `$DIRCTL_TOKEN` and friends), anywhere on the line: see
//! [`director::cli::access`].

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// This director's VRRP state, role and connection counts.
    Status(ServerArg),
}

/// Named subcommands; anything else is ipvsadm syntax.
const SUBCOMMANDS: &[&str] = &["realserver", "status", "help", "--help"];

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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Realserver(rs) => realserver_cmd(rs.action, rs.verbose),
        Command::Status(a) => {
            let server = a.resolve();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("async runtime")?;
            let mut out = std::io::stdout().lock();
            match rt.block_on(director::cli::pair::status(&server, &mut out)) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("dirctl: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
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
