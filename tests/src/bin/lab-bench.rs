//! `lab-bench`: the end-to-end lab benchmark of `directord` against no
//! balancer, nftables DNAT and HAProxy, with `wrk` from a client namespace.
//!
//! Every system gets its own fresh lab (namespaces, freshly started nginx
//! real servers serving `/` and a 1 MiB `/big.bin`, offloads off on every
//! veth unless `--offloads`) so that no TIME_WAIT entry of one system meets the next; the
//! client also gets a port range of its own per system and
//! `tcp_tw_reuse=1`. Systems:
//!
//! - `direct`: no balancer; two wrk (`-t1 -c32`) hit rs1 and rs2 at once,
//!   summed;
//! - `dr`, `tun`, `nat`: directord (its default workers — the CPUs shared
//!   out among the data interfaces — unless `--workers`; its default
//!   receive ring unless `--rx-ring`) in the three LVS modes, on the labs
//!   of `lab_tests::modes`, as in the directord lab tests (TUN: real
//!   servers behind a router, `dirctl realserver decap`);
//! - `nft`: nftables DNAT round robin (`numgen inc mod 2`), kernel
//!   forwarding in the balancer namespace only, same two-NIC topology as
//!   `nat`;
//! - `haproxy`: HAProxy `mode tcp`, `balance roundrobin`, as many threads
//!   as CPUs, or `--workers` (`nbthread`), on the
//!   VIP of the balancer's outside interface, same topology;
//! - `xdp-dr` (only when asked for): `deploy/bench/xdp/dr_ceiling.c`, a
//!   stateless DR forwarder in native XDP on the director's veth, built
//!   with clang: no balancer, but the ceiling any DR director can reach on
//!   this topology;
//! - `xdp-nat` (only when asked for): `deploy/bench/xdp/nat_ceiling.c`, a
//!   stateless NAT forwarder in native XDP on both of the balancer's
//!   veths: the ceiling of an XDP fast path for NAT.
//!
//! Workloads: small page keep-alive, small page with `Connection: close`,
//! and the 1 MiB file; `wrk -t2 -c64 -dDs --latency`. Prints a Markdown
//! table (median of the runs), the ratios, and where the CPU went.
//!
//! ```text
//! lab-bench --directord PATH --dirctl PATH [--runs N] [--duration S] [--systems a,b,...]
//!           [--workers N] [--rx-ring v2|v3] [--fanout hash|cpu] [--offloads] [--ring-mib N]
//! ```
//!
//! Needs root, wrk, nft, haproxy, nginx (and clang for the XDP systems);
//! `deploy/bench/lab.sh` installs them, builds and runs this. Bounded: every wrk and command has a
//! deadline; labs are removed on every exit path (harness Drop and signal
//! guard).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use clap::builder::RangedI64ValueParser;
use lab_tests::directord::binary_arg;
use lab_tests::modes;
use lab_tests::{
    Balancer, Bins, CurlOptions, Directord, Host, Iface, Lab, LabChild, LvsLab, LvsOptions, is_root,
};

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// USER_HZ: the unit of /proc/*/stat and /proc/stat times.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Direct,
    Dr,
    Tun,
    Nat,
    Nft,
    Haproxy,
    /// A stateless DR forwarder in XDP (deploy/bench/xdp/dr_ceiling.c):
    /// not a balancer, the ceiling of DR on this topology.
    XdpDr,
    /// A stateless NAT forwarder in XDP (deploy/bench/xdp/nat_ceiling.c):
    /// the ceiling of an XDP fast path for NAT.
    XdpNat,
}

const ALL_SYSTEMS: [System; 8] = [
    System::Direct,
    System::Dr,
    System::Tun,
    System::Nat,
    System::Nft,
    System::Haproxy,
    System::XdpDr,
    System::XdpNat,
];

/// `--systems`' default: every system but the XDP ones, which need clang.
const DEFAULT_SYSTEMS: &str = "direct,dr,tun,nat,nft,haproxy";

impl System {
    fn parse(s: &str) -> Result<System, String> {
        Ok(match s {
            "direct" => System::Direct,
            "dr" => System::Dr,
            "tun" => System::Tun,
            "nat" => System::Nat,
            "nft" | "nftables" => System::Nft,
            "haproxy" => System::Haproxy,
            "xdp-dr" => System::XdpDr,
            "xdp-nat" => System::XdpNat,
            _ => {
                return Err(format!(
                    "system `{s}`: want direct, dr, tun, nat, nft, haproxy, xdp-dr or xdp-nat"
                ));
            }
        })
    }

    fn title(self) -> &'static str {
        match self {
            System::Direct => "direct (no balancer)",
            System::Dr => "ours DR",
            System::Tun => "ours TUN",
            System::Nat => "ours NAT",
            System::Nft => "nftables DNAT",
            System::Haproxy => "HAProxy tcp",
            System::XdpDr => "XDP DR, stateless (ceiling)",
            System::XdpNat => "XDP NAT, stateless (ceiling)",
        }
    }

    /// The lab topology it runs on.
    fn mode(self) -> modes::Mode {
        match self {
            System::Direct | System::Dr | System::XdpDr => modes::Mode::Dr,
            System::Tun => modes::Mode::Tun,
            System::Nat | System::Nft | System::Haproxy | System::XdpNat => modes::Mode::Nat,
        }
    }

    /// What stands at the director's place: on the NAT topology, the host
    /// is `balancer` whichever system runs there.
    fn balancer(self) -> Balancer {
        match self {
            System::Direct => Balancer::None,
            // The XDP program takes directord's place in the same host.
            System::Dr | System::Tun | System::XdpDr => Balancer::Directord("director"),
            System::Nat => Balancer::Directord("balancer"),
            // The XDP NAT program leaves ARP for the VIP and the inside
            // gateway to the kernel, which holds both.
            System::Nft | System::Haproxy | System::XdpNat => Balancer::Kernel("balancer"),
        }
    }

    /// Base URLs (`http://ADDR`) wrk hits: the VIP, or for `direct` both
    /// real servers.
    fn targets(self) -> Vec<String> {
        match self {
            System::Direct => vec!["http://10.21.0.11".into(), "http://10.21.0.12".into()],
            _ => vec![format!("http://{}", modes::vip(self.mode()))],
        }
    }

    /// The client's ephemeral port range: one of its own per system.
    fn port_range(self) -> (u16, u16) {
        let i = ALL_SYSTEMS.iter().position(|&s| s == self).unwrap_or(0) as u16;
        let lo = 10_000 + i * 6_500;
        (lo, lo + 6_499)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    KeepAlive,
    Close,
    Big,
}

const WORKLOADS: [Workload; 3] = [Workload::KeepAlive, Workload::Close, Workload::Big];

impl Workload {
    fn title(self) -> &'static str {
        match self {
            Workload::KeepAlive => "small, keep-alive",
            Workload::Close => "small, conn/request",
            Workload::Big => "1 MiB",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Workload::Big => "/big.bin",
            _ => "/",
        }
    }
}

/// The end-to-end lab benchmark of directord against no balancer, nftables
/// DNAT and HAProxy, with wrk from a client namespace.
#[derive(Debug, Parser)]
#[command(
    name = "lab-bench",
    args_override_self = true,
    after_help = "Needs root. deploy/bench/lab.sh installs wrk, nftables, haproxy, builds and runs this."
)]
struct Args {
    /// The directord binary (target/release/directord)
    #[arg(long, value_name = "PATH")]
    directord: PathBuf,
    /// The dirctl binary (target/release/dirctl)
    #[arg(long, value_name = "PATH")]
    dirctl: PathBuf,
    /// wrk runs per system and workload, 1 to 9; the median is shown
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = RangedI64ValueParser::<usize>::new().range(1..=9)
    )]
    runs: usize,
    /// Seconds per wrk run, 1 to 60
    #[arg(
        long,
        value_name = "S",
        default_value_t = 8,
        value_parser = clap::value_parser!(u64).range(1..=60)
    )]
    duration: u64,
    /// Systems to run, a comma-separated list among direct, dr, tun, nat,
    /// nft (or nftables), haproxy, xdp-dr and xdp-nat (stateless DR and NAT
    /// forwarders in XDP, the ceilings here; they need clang)
    #[arg(
        long,
        value_name = "LIST",
        default_value = DEFAULT_SYSTEMS,
        value_parser = parse_systems
    )]
    systems: ::std::vec::Vec<System>,
    #[command(flatten)]
    daemon: DaemonOpts,
}

/// `--systems`: a comma-separated list, sorted and deduplicated, not empty.
fn parse_systems(s: &str) -> Result<Vec<System>, String> {
    let mut v = s
        .split(',')
        .filter(|s| !s.is_empty())
        .map(System::parse)
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    v.dedup();
    if v.is_empty() {
        return Err("none given".into());
    }
    Ok(v)
}

/// What the bench sets in directord's `[dataplane]`.
#[derive(Debug, Clone, clap::Args)]
struct DaemonOpts {
    /// directord's workers per data interface and HAProxy's nbthread, 1 to
    /// 16 (default: directord's own, and one HAProxy thread per CPU)
    #[arg(
        long,
        value_name = "N",
        value_parser = RangedI64ValueParser::<usize>::new().range(1..=16)
    )]
    workers: Option<usize>,
    /// directord's receive ring (default: directord's own)
    #[arg(long, value_name = "R", value_parser = ["v2", "v3"])]
    rx_ring: Option<String>,
    /// How directord spreads frames over workers (default: its own)
    #[arg(long, value_name = "F", value_parser = ["hash", "cpu"])]
    fanout: Option<String>,
    /// Leave TSO/GSO/GRO and checksum offloads on every interface, for every
    /// system (default: off everywhere), and directord with `offloads = true`
    #[arg(long)]
    offloads: bool,
    /// MiB of each directord worker's receive ring, 1 to 1024 (default: its
    /// own)
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    ring_mib: Option<u32>,
}

impl DaemonOpts {
    /// HAProxy's `nbthread`: `--workers` when given, else one per CPU
    /// (HAProxy's own default, and as many threads as directord's default
    /// workers on a one-interface director).
    fn threads(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The `[dataplane]` section.
    fn section(&self) -> String {
        let mut s = match self.workers {
            Some(n) => format!("[dataplane]\nworkers = {n}\n"),
            None => "[dataplane]\n".to_owned(),
        };
        if let Some(r) = &self.rx_ring {
            s.push_str(&format!("rx_ring = \"{r}\"\n"));
        }
        if let Some(f) = &self.fanout {
            s.push_str(&format!("fanout = \"{f}\"\n"));
        }
        if self.offloads {
            s.push_str("offloads = true\n");
        }
        if let Some(m) = self.ring_mib {
            s.push_str(&format!("ring_mib = {m}\n"));
        }
        s
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !is_root() {
        eprintln!("lab-bench: run as root: the lab builds network namespaces");
        return ExitCode::FAILURE;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nlab-bench: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One wrk run (summed over the wrk processes of `direct`).
#[derive(Debug, Clone)]
struct Sample {
    rps: f64,
    /// The worst p99 of the wrk processes, in ms.
    p99_ms: f64,
    errors: u64,
    cpu: String,
}

#[derive(Debug, Clone)]
struct Cell {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench(args: &Args) -> Result<()> {
    let bins = Bins {
        directord: binary_arg(&args.directord, "--directord")?,
        dirctl: binary_arg(&args.dirctl, "--dirctl")?,
    };
    for tool in ["wrk", "nft", "haproxy", "nginx", "ethtool"] {
        ensure!(
            on_path(tool),
            "`{tool}` not found: deploy/bench/lab.sh installs it"
        );
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "lab-bench: {cpus} CPUs, load before: {}; wrk -t2 -c64 -d{}s --latency, {} run(s) each \
         (median shown)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.duration,
        args.runs
    );
    println!(
        "lab-bench: directord workers per interface {}, HAProxy nbthread {}, rx ring {}, fanout {}, \
         offloads {}",
        args.daemon
            .workers
            .map_or("(its default)".to_owned(), |n| n.to_string()),
        args.daemon.threads(),
        args.daemon.rx_ring.as_deref().unwrap_or("(its default)"),
        args.daemon.fanout.as_deref().unwrap_or("(its default)"),
        if args.daemon.offloads {
            "on everywhere"
        } else {
            "off everywhere"
        }
    );
    let t0 = Instant::now();
    let mut cells: BTreeMap<(System, Workload), Cell> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    for &system in &args.systems {
        let ts = Instant::now();
        eprintln!("\n== {}", system.title());
        let mut net = build(&bins, system, &args.daemon)
            .with_context(|| format!("{}: building", system.title()))?;
        check(&net).with_context(|| format!("{}: first requests", system.title()))?;
        for &w in &WORKLOADS {
            let mut samples = Vec::new();
            for run in 1..=args.runs {
                let s = run_wrk(&mut net, w, args.duration)
                    .with_context(|| format!("{}, {}, run {run}", system.title(), w.title()))?;
                eprintln!(
                    "   {:<20} run {run}: {:>9.0} req/s  p99 {:>8.2} ms  errors {}  | {}",
                    w.title(),
                    s.rps,
                    s.p99_ms,
                    s.errors,
                    s.cpu
                );
                notes.push(format!(
                    "{} / {} / run {run}: {:.0} req/s; {}",
                    system.title(),
                    w.title(),
                    s.rps,
                    s.cpu
                ));
                samples.push(s);
                std::thread::sleep(Duration::from_millis(500));
            }
            cells.insert(
                (system, w),
                Cell {
                    rps: median(samples.iter().map(|s| s.rps).collect()),
                    p99_ms: median(samples.iter().map(|s| s.p99_ms).collect()),
                    errors: samples.iter().map(|s| s.errors).sum(),
                    runs: samples.len(),
                },
            );
        }
        if let Some(b) = net.balancer_proc.as_mut()
            && let Ok(Some(st)) = b.try_wait()
        {
            bail!(
                "{}: the balancer exited during the bench ({st}): {}",
                system.title(),
                b.stderr_text().trim()
            );
        }
        drop(net);
        eprintln!(
            "   ({:.0} s with setup and teardown)",
            ts.elapsed().as_secs_f64()
        );
    }
    print_report(args, &cells, &notes);
    println!(
        "\nlab-bench: done in {:.0} s; every lab removed.",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fmt_cell(c: Option<&Cell>) -> String {
    match c {
        Some(c) => {
            let err = if c.errors > 0 {
                format!(" ({} err)", c.errors)
            } else {
                String::new()
            };
            format!("{:.0} / {:.2} ms{err}", c.rps, c.p99_ms)
        }
        None => "–".into(),
    }
}

fn ratio(cells: &BTreeMap<(System, Workload), Cell>, a: System, b: System, w: Workload) -> String {
    match (cells.get(&(a, w)), cells.get(&(b, w))) {
        (Some(x), Some(y)) if y.rps > 0.0 => format!("{:.2}", x.rps / y.rps),
        _ => "–".into(),
    }
}

fn print_report(args: &Args, cells: &BTreeMap<(System, Workload), Cell>, notes: &[String]) {
    let runs = cells.values().map(|c| c.runs).max().unwrap_or(0);
    println!(
        "\n### req/s / p99 latency (wrk -t2 -c64 -d{}s --latency; median of {runs} run(s))\n",
        args.duration
    );
    let mut head = String::from("| system |");
    let mut sep = String::from("|---|");
    for w in WORKLOADS {
        head.push_str(&format!(" {} |", w.title()));
        sep.push_str("---|");
    }
    println!("{head}\n{sep}");
    for &s in &args.systems {
        let mut row = format!("| {} |", s.title());
        for w in WORKLOADS {
            row.push_str(&format!(" {} |", fmt_cell(cells.get(&(s, w)))));
        }
        println!("{row}");
    }
    if let Some(c) = cells.get(&(System::Direct, Workload::Big)) {
        println!(
            "\n(1 MiB direct: {:.0} MiB/s = {:.1} Gbit/s of payload)",
            c.rps,
            c.rps * 8.0 * 1.048_576 / 1000.0
        );
    }

    println!("\n### ratios of req/s\n");
    println!("| ratio | {} |", WORKLOADS.map(|w| w.title()).join(" | "));
    println!("|---|---|---|---|");
    let mut pairs = vec![
        (System::Dr, System::Direct),
        (System::Tun, System::Direct),
        (System::Nat, System::Nft),
        (System::XdpDr, System::Direct),
        (System::Dr, System::XdpDr),
        (System::XdpNat, System::Nft),
        (System::Nat, System::XdpNat),
    ];
    for s in [System::Dr, System::Tun, System::Nat, System::Nft] {
        pairs.push((s, System::Haproxy));
    }
    for (a, b) in pairs {
        if !cells.contains_key(&(a, Workload::KeepAlive))
            || !cells.contains_key(&(b, Workload::KeepAlive))
        {
            continue;
        }
        let row: Vec<String> = WORKLOADS.iter().map(|&w| ratio(cells, a, b, w)).collect();
        println!("| {} / {} | {} |", a.title(), b.title(), row.join(" | "));
    }

    println!("\n### where the CPU went (per run; % of one core, 100 % = one core busy)\n");
    for n in notes {
        println!("- {n}");
    }
}

// ----------------------------------------------------------------- labs

/// A system's lab. Fields drop in order: the balancer before the lab.
#[derive(Debug)]
struct Net {
    system: System,
    /// [`System::targets`].
    targets: Vec<String>,
    /// directord or haproxy.
    balancer_proc: Option<LabChild>,
    lvs: LvsLab,
}

fn client_sysctls(lab: &Lab, client: &Host, system: System) -> Result<()> {
    let (lo, hi) = system.port_range();
    lab.sysctl(
        client,
        "net.ipv4.ip_local_port_range",
        &format!("{lo} {hi}"),
    )?;
    lab.sysctl(client, "net.ipv4.tcp_tw_reuse", "1")
}

/// directord in `mode`'s lab: the HTTP service on port 80, round robin,
/// with the bench's `[dataplane]`.
fn directord_config(mode: modes::Mode, d: &DaemonOpts) -> String {
    let node = format!("bench-{}", mode.name());
    modes::directord_config(
        mode,
        &modes::DirectordConfig {
            node: &node,
            dataplane: &d.section(),
            scheduler: "rr",
            port: 80,
            udp: false,
        },
    )
}

const NFT_RULES: &str = "\
table ip lbbench {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 10.23.0.100 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.33.0.11, 1 : 10.33.0.12 }
    }
}
";

/// HAProxy's configuration: `threads` threads (as many as directord's
/// workers per interface, so the two userspace balancers get the same).
fn haproxy_config(dir: &str, threads: usize) -> String {
    format!(
        "\
global
    nbthread {threads}
    maxconn 4000
    pidfile {dir}/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind {vip}:80
    default_backend be
backend be
    balance roundrobin
    server rs1 10.33.0.11:80
    server rs2 10.33.0.12:80
",
        vip = modes::vip(modes::Mode::Nat)
    )
}

fn build(bins: &Bins, system: System, d: &DaemonOpts) -> Result<Net> {
    let name = match system {
        System::Direct => "bdirect",
        System::Dr => "bdr",
        System::Tun => "btun",
        System::Nat => "bnat",
        System::Nft => "bnft",
        System::Haproxy => "bhap",
        System::XdpDr => "bxdp",
        System::XdpNat => "bxnat",
    };
    let opts = LvsOptions {
        balancer: system.balancer(),
        big_mib: 1,
        udp: false,
        dirctl: bins.dirctl.clone(),
        offloads: d.offloads,
    };
    let lvs = LvsLab::build(Lab::new(name)?, system.mode(), &opts)?;
    let lab = &lvs.lab;
    client_sysctls(lab, &lvs.client, system)?;
    let balancer_proc = match (system, &lvs.director) {
        (System::Dr, Some(h)) => Some(start_directord(
            lab,
            h,
            bins,
            &directord_config(modes::Mode::Dr, d),
        )?),
        (System::Tun, Some(h)) => Some(start_directord(
            lab,
            h,
            bins,
            &directord_config(modes::Mode::Tun, d),
        )?),
        (System::Nat, Some(h)) => Some(start_directord(
            lab,
            h,
            bins,
            &directord_config(modes::Mode::Nat, d),
        )?),
        (System::Nft, Some(h)) => {
            lab.enable_forwarding(h)?;
            let path = lab.unique_path("nft", ".rules");
            fs::write(&path, NFT_RULES).context("writing nft rules")?;
            lab.exec_ok(h, &["nft", "-f", &path.to_string_lossy()])?;
            None
        }
        (System::Haproxy, Some(h)) => {
            let dir = lab.dir().to_string_lossy().into_owned();
            let path = lab.unique_path("haproxy", ".cfg");
            fs::write(&path, haproxy_config(&dir, d.threads())).context("writing haproxy.cfg")?;
            let p = path.to_string_lossy().into_owned();
            lab.exec_ok(h, &["haproxy", "-c", "-q", "-f", &p])?;
            let mut proc = lab.spawn(h, &["haproxy", "-db", "-f", &p])?;
            let up = lab.wait_listening(h, false, modes::vip(modes::Mode::Nat), 80, START_TIMEOUT);
            if let Err(e) = up {
                bail!(
                    "haproxy did not listen: {e:#}: {}",
                    proc.stderr_text().trim()
                );
            }
            ensure!(proc.is_running(), "haproxy exited: {}", proc.stderr_text());
            Some(proc)
        }
        (System::XdpDr, Some(h)) => {
            // The director's kernel answers ARP for the VIP (the NAT
            // topology's kernel balancer holds its VIP already).
            let vip = format!("{}/32", modes::vip(modes::Mode::Dr));
            lab.ip(h, &["addr", "add", &vip, "dev", "eth0"])?;
            attach_xdp(&lvs, h, "dr_ceiling.c", &xdp_dr_defines(&lvs, h)?)?;
            None
        }
        (System::XdpNat, Some(h)) => {
            attach_xdp(&lvs, h, "nat_ceiling.c", &xdp_nat_defines(&lvs, h)?)?;
            None
        }
        _ => None,
    };
    Ok(Net {
        system,
        targets: system.targets(),
        balancer_proc,
        lvs,
    })
}

/// `-DNAME=0,1,2,3,4,5`: the lab MAC of the interface with `addr`.
fn mac_define(name: &str, addr: Ipv4Addr) -> String {
    let bytes: Vec<String> = lab_tests::mac_for(addr)
        .split(':')
        .map(|b| format!("0x{b}"))
        .collect();
    format!("-D{name}={}", bytes.join(","))
}

/// `-DNAME=0x...`: an IPv4 address as a host-order integer.
fn addr_define(name: &str, addr: Ipv4Addr) -> String {
    format!("-D{name}={:#x}", u32::from(addr))
}

/// `host`'s interfaces in `lvs`, in order (`eth0`, `eth1`).
fn host_ifaces<'a>(lvs: &'a LvsLab, host: &Host) -> Vec<&'a Iface> {
    lvs.ifaces
        .iter()
        .filter(|i| i.host().name() == host.name())
        .collect()
}

/// The address of `host`'s first interface in `lvs`.
fn host_addr(lvs: &LvsLab, host: &str) -> Result<Ipv4Addr> {
    lvs.ifaces
        .iter()
        .find(|i| i.host().name() == host)
        .map(Iface::addr)
        .with_context(|| format!("{host}'s interface"))
}

/// dr_ceiling.c's plan: the DR lab's VIP and MACs.
fn xdp_dr_defines(lvs: &LvsLab, director: &Host) -> Result<Vec<String>> {
    Ok(vec![
        addr_define("VIP", modes::vip(modes::Mode::Dr)),
        "-DPORT=80".to_owned(),
        mac_define("OWN_MAC", host_addr(lvs, director.name())?),
        mac_define("RS1_MAC", host_addr(lvs, "rs1")?),
        mac_define("RS2_MAC", host_addr(lvs, "rs2")?),
    ])
}

/// nat_ceiling.c's plan: the NAT lab's addresses, MACs and the balancer's
/// ifindexes.
fn xdp_nat_defines(lvs: &LvsLab, director: &Host) -> Result<Vec<String>> {
    let ifaces = host_ifaces(lvs, director);
    let [out, inside] = ifaces[..] else {
        bail!("the NAT balancer has {} interfaces, not 2", ifaces.len());
    };
    let ifindex = |i: &Iface| -> Result<u32> {
        let line = lvs
            .lab
            .ip(director, &["-o", "link", "show", "dev", i.name()])?;
        line.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("ifindex of {} in `{line}`", i.name()))
    };
    let (rs1, rs2) = (host_addr(lvs, "rs1")?, host_addr(lvs, "rs2")?);
    Ok(vec![
        addr_define("VIP", modes::vip(modes::Mode::Nat)),
        addr_define("RS1", rs1),
        addr_define("RS2", rs2),
        "-DPORT=80".to_owned(),
        "-DRS_PORT=80".to_owned(),
        format!("-DOUT_IF={}", ifindex(out)?),
        format!("-DIN_IF={}", ifindex(inside)?),
        mac_define("OUT_MAC", out.addr()),
        mac_define("IN_MAC", inside.addr()),
        mac_define("CLIENT_MAC", host_addr(lvs, lvs.client.name())?),
        mac_define("RS1_MAC", rs1),
        mac_define("RS2_MAC", rs2),
    ])
}

/// Builds `source` (in deploy/bench/xdp) with `defines` and attaches it to
/// every interface of the director as native XDP, with pass.c on each
/// one's switch port: a veth delivers XDP_TX and redirected frames only to
/// a peer that runs NAPI. The director's kernel, which holds the VIP,
/// still answers ARP; the program's frames never reach it.
fn attach_xdp(lvs: &LvsLab, director: &Host, source: &str, defines: &[String]) -> Result<()> {
    let lab = &lvs.lab;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/bench/xdp");
    let clang = clang()?;
    let build = |c: &str, defines: &[String]| -> Result<String> {
        let obj = lab.unique_path(c.trim_end_matches(".c"), ".o");
        let (c, obj) = (dir.join(c), obj.to_string_lossy().into_owned());
        let c = c.to_string_lossy();
        let mut argv = vec![clang, "-O2", "-Wall", "-Werror", "-target", "bpf"];
        argv.extend(defines.iter().map(String::as_str));
        argv.extend(["-c", &c, "-o", &obj]);
        let out = lab_tests::cmd::run(&argv, START_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "{clang} {c}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(obj)
    };
    let prog = build(source, defines)?;
    let pass = build("pass.c", &[])?;
    for iface in host_ifaces(lvs, director) {
        let on = |dev, obj| {
            [
                "link", "set", "dev", dev, "xdpdrv", "obj", obj, "sec", "xdp",
            ]
        };
        lab.ip(director, &on(iface.name(), prog.as_str()))?;
        lab.switch_ip(&on(iface.switch_port(), pass.as_str()))?;
    }
    Ok(())
}

/// clang, or Debian's versioned clang-N.
fn clang() -> Result<&'static str> {
    ["clang", "clang-16", "clang-15", "clang-14"]
        .into_iter()
        .find(|name| on_path(name))
        .context("the XDP systems need clang (deploy/bench/lab.sh installs it)")
}

/// Whether `tool` is a command on the PATH.
fn on_path(tool: &str) -> bool {
    lab_tests::cmd::run(&["sh", "-c", &format!("command -v {tool}")], START_TIMEOUT)
        .is_ok_and(|o| o.status.success())
}

/// directord from `config` in `host`, ready (control API up); the lab
/// owns the process.
fn start_directord(lab: &Lab, host: &Host, bins: &Bins, config: &str) -> Result<LabChild> {
    Ok(Directord::start(lab, host, bins, config)?.proc)
}

/// Requests per target in [`check`]: enough that a hash of the client's
/// port (xdp-dr) sends them all to one real server only once in 2^15.
const CHECK_REQUESTS: usize = 16;

/// [`CHECK_REQUESTS`] requests per target must succeed; through a balancer
/// both real servers must answer.
fn check(net: &Net) -> Result<()> {
    let opts = CurlOptions {
        max_time: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        extra_args: Vec::new(),
    };
    let mut names = Vec::new();
    for t in &net.targets {
        for i in 0..CHECK_REQUESTS {
            // The first one may wait for ARP or the balancer's neighbours.
            let mut last = None;
            for _ in 0..3 {
                match net
                    .lvs
                    .lab
                    .curl_with(&net.lvs.client, &format!("{t}/"), &opts)
                {
                    Ok(r) if r.status == 200 => {
                        last = Some(r.text().trim().to_owned());
                        break;
                    }
                    Ok(r) => bail!("{t}/: HTTP {}", r.status),
                    Err(e) if i == 0 => {
                        eprintln!("   (retrying {t}/: {e:#})");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            }
            names.push(last.with_context(|| format!("{t}/: no answer"))?);
        }
    }
    ensure!(
        names.iter().any(|n| n == "rs1") && names.iter().any(|n| n == "rs2"),
        "{}: not both real servers answered: {names:?}",
        net.system.title()
    );
    Ok(())
}

// ----------------------------------------------------------------- wrk

/// CPU ticks (user + system) of a process, all threads.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Machine-wide (busy, softirq, total) ticks from /proc/stat.
fn machine_ticks() -> Option<(u64, u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, *v.get(6)?, total))
}

/// Processes whose CPU is shown: (label, pid).
fn watched(net: &mut Net) -> Vec<(String, u32)> {
    let mut w = Vec::new();
    if let Some(b) = &net.balancer_proc {
        let name = if net.system == System::Haproxy {
            "haproxy"
        } else {
            "directord"
        };
        w.push((name.to_owned(), b.id()));
    }
    for s in &mut net.lvs.servers {
        let name = format!("nginx {}", s.name());
        w.push((name, s.process().id()));
    }
    for (i, h) in net.lvs.decaps.iter().enumerate() {
        w.push((format!("decap rs{}", i + 1), h.id()));
    }
    w
}

fn run_wrk(net: &mut Net, w: Workload, secs: u64) -> Result<Sample> {
    let (threads, conns) = if net.targets.len() == 2 {
        ("1", "32")
    } else {
        ("2", "64")
    };
    let dur = format!("{secs}s");
    let mut procs = Vec::new();
    for t in &net.targets {
        let url = format!("{t}{}", w.path());
        let mut argv = vec![
            "wrk",
            "-t",
            threads,
            "-c",
            conns,
            "-d",
            &dur,
            "--latency",
            "--timeout",
            "2s",
        ];
        if w == Workload::Close {
            argv.extend_from_slice(&["-H", "Connection: close"]);
        }
        argv.push(&url);
        procs.push(net.lvs.lab.spawn(&net.lvs.client, &argv)?);
    }
    let mut watch = watched(net);
    for p in &procs {
        watch.push(("wrk".into(), p.id()));
    }
    // Measure the middle of the run: skip the first second.
    std::thread::sleep(Duration::from_secs(1));
    let before2: Vec<Option<u64>> = watch.iter().map(|(_, pid)| proc_ticks(*pid)).collect();
    let m1 = machine_ticks();
    let window = Duration::from_secs(secs.saturating_sub(2).max(1));
    let tw = Instant::now();
    std::thread::sleep(window);
    let after: Vec<Option<u64>> = watch.iter().map(|(_, pid)| proc_ticks(*pid)).collect();
    let m2 = machine_ticks();
    let el = tw.elapsed().as_secs_f64() * TICKS_PER_SEC;
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    for ((label, _), (a, b)) in watch.iter().zip(after.iter().zip(before2.iter())) {
        if let (Some(a), Some(b)) = (a, b) {
            *cpu.entry(label.clone()).or_default() += (a - b) as f64 / el * 100.0;
        }
    }
    let mut cpu_text: Vec<String> = cpu.iter().map(|(k, v)| format!("{k} {v:.0} %")).collect();
    if let (Some(x), Some(y)) = (m1, m2) {
        let total = (y.2 - x.2) as f64;
        let ncpu = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        if total > 0.0 {
            cpu_text.push(format!(
                "softirq {:.0} %, machine busy {:.0} % of {:.0} %",
                (y.1 - x.1) as f64 / total * 100.0 * ncpu,
                (y.0 - x.0) as f64 / total * 100.0 * ncpu,
                ncpu * 100.0
            ));
        }
    }
    let deadline = Duration::from_secs(secs + 20);
    let mut out = Sample {
        rps: 0.0,
        p99_ms: 0.0,
        errors: 0,
        cpu: cpu_text.join(", "),
    };
    for p in &mut procs {
        match p.wait_timeout(deadline)? {
            Some(st) if st.success() => {}
            Some(st) => bail!("wrk failed ({st}): {}", p.stderr_text().trim()),
            None => {
                p.kill();
                bail!("wrk did not finish within {deadline:?}");
            }
        }
        let text = p.stdout_text();
        let (rps, p99, errors) =
            parse_wrk(&text).with_context(|| format!("wrk's output:\n{text}"))?;
        out.rps += rps;
        out.p99_ms = out.p99_ms.max(p99);
        out.errors += errors;
    }
    Ok(out)
}

/// `12.34ms` -> 12.34; us, ms, s, m.
fn parse_duration_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

/// (requests/s, p99 ms, errors) from wrk's output.
fn parse_wrk(text: &str) -> Result<(f64, f64, u64)> {
    let mut rps = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = l.strip_prefix("99%") {
            p99 = parse_duration_ms(v.trim());
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            errors += v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok((
        rps.context("no Requests/sec")?,
        p99.context("no 99% latency")?,
        errors,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let argv = ["lab-bench", "--directord", "d", "--dirctl", "c"];
        Args::try_parse_from(argv.iter().chain(extra))
    }

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_and_values() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.runs, a.duration), (3, 8));
        assert_eq!(a.systems, ALL_SYSTEMS[..6].to_vec());
        assert!(a.daemon.workers.is_none() && !a.daemon.offloads);
        let a = parse(&[
            "--runs=1",
            "--duration",
            "5",
            "--systems",
            "nftables,nat,,nat",
            "--workers",
            "2",
            "--rx-ring=v3",
            "--fanout",
            "cpu",
            "--offloads",
            "--ring-mib",
            "64",
        ])
        .unwrap();
        assert_eq!((a.runs, a.duration), (1, 5));
        assert_eq!(a.systems, vec![System::Nat, System::Nft]);
        assert_eq!(a.daemon.workers, Some(2));
        assert_eq!(a.daemon.rx_ring.as_deref(), Some("v3"));
        assert_eq!(a.daemon.fanout.as_deref(), Some("cpu"));
        assert_eq!(a.daemon.ring_mib, Some(64));
        assert!(a.daemon.offloads);
        let a = parse(&["--systems", "xdp-nat,xdp-dr,direct"]).unwrap();
        assert_eq!(
            a.systems,
            vec![System::Direct, System::XdpDr, System::XdpNat]
        );
    }

    #[test]
    fn every_system_has_a_valid_port_range_of_its_own() {
        let ranges: Vec<(u16, u16)> = ALL_SYSTEMS.iter().map(|s| s.port_range()).collect();
        for (i, &(lo, hi)) in ranges.iter().enumerate() {
            assert!(1024 < lo && lo < hi, "{:?}", ALL_SYSTEMS[i]);
            assert!(ranges[i + 1..].iter().all(|&(l, _)| l > hi));
        }
    }

    #[test]
    fn bad_values() {
        for bad in [
            &["--runs", "0"][..],
            &["--runs", "10"],
            &["--duration", "61"],
            &["--workers", "0"],
            &["--workers", "17"],
            &["--ring-mib", "1025"],
            &["--rx-ring", "v1"],
            &["--fanout", "rr"],
            &["--systems", ","],
            &["--systems", "dr,lvs"],
            &["--what"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(Args::try_parse_from(["lab-bench", "--dirctl", "c"]).is_err());
    }
}
