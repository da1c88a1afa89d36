//! `lab-demo`: the one-command demo of `directord`, the userspace LVS
//! director, forwarding real kernel TCP and UDP between network namespaces.
//!
//! For each LVS forwarding mode — DR (direct routing), TUN (IPIP) and NAT
//! (two NICs, port mapping) — it builds a small lab with the harness of this
//! crate (a client, a director, two nginx real servers, a router where TUN
//! needs one), starts the real `directord` binary with its configuration
//! printed, sends 20 HTTP requests from the client and shows which real
//! server answered each (and what address the server saw), asks a UDP
//! service, and prints `dirctl -Ln --stats` and the connection table
//! (`dirctl -Lnc`). In DR it also changes a weight live (`dirctl -e ... -w
//! 3`: wrr now sends 3 of 4 new connections to rs1) and drains a server
//! (`-w 0`). Then it stops `directord` and removes the lab.
//!
//! Last, the pair (`--mode pair`, also part of `all`): two directors with
//! VRRP and connection sync, 200 keep-alive flows through the VIP, a
//! manual failover (`dirctl failover`) and a kill -9 of the master, with
//! every flow carrying on.
//!
//! ```text
//! lab-demo --directord PATH --dirctl PATH [--mode dr|tun|nat|pair|all] [--keep]
//! lab-demo --down [--all]
//! ```
//!
//! `--keep` leaves the labs running until Ctrl-C and prints how to poke at
//! them. `--down` removes labs left behind by a process that died (with
//! `--all`, every harness lab), using the harness's own cleanup by name.
//! `deploy/lab/demo.sh` builds the binaries and runs this.

#![forbid(unsafe_code)]

mod pair;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use lab_tests::directord::{CONTROL_PORT, binary_arg};
use lab_tests::modes;
use lab_tests::{
    Balancer, Bins, CurlOptions, Directord, Host, Lab, LvsLab, LvsOptions, UdpAsk, is_root, sweep,
};

/// Requests sent through every mode.
const REQUESTS: usize = 20;
/// Connection-table lines shown.
const CONN_LINES: usize = 6;
/// How long directord may take to open its control API.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dr,
    Tun,
    Nat,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::Nat => "nat",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Mode::Dr => "DR: direct routing",
            Mode::Tun => "TUN: IP-in-IP tunnelling",
            Mode::Nat => "NAT: two NICs, port mapping",
        }
    }

    /// Two lines on the topology and what the director does to a packet.
    fn story(self) -> &'static str {
        match self {
            Mode::Dr => {
                "client, director, rs1 and rs2 share one LAN, 10.21.0.0/24; VIP 10.21.0.100.\n\
                 The director rewrites only the destination MAC; rs1/rs2 hold the VIP on lo\n\
                 (ARP for it silenced) and answer the client directly."
            }
            Mode::Tun => {
                "client and director on 10.22.0.0/24; rs1/rs2 behind a router on 10.32.0.0/24;\n\
                 VIP 10.22.0.100. The director wraps each packet in IPIP to a real server,\n\
                 `dirctl realserver decap` unwraps it there, and the reply goes straight back."
            }
            Mode::Nat => {
                "client outside on 10.23.0.0/24; rs1/rs2 inside on 10.33.0.0/24, routed via\n\
                 10.33.0.1, an address the director holds. VIP 10.23.0.100:8099 maps to the\n\
                 servers' port 80; the director rewrites addresses and ports both ways."
            }
        }
    }

    /// The lab's topology.
    fn lvs(self) -> modes::Mode {
        match self {
            Mode::Dr => modes::Mode::Dr,
            Mode::Tun => modes::Mode::Tun,
            Mode::Nat => modes::Mode::Nat,
        }
    }

    fn vip(self) -> Ipv4Addr {
        modes::vip(self.lvs())
    }

    /// The virtual HTTP port.
    fn port(self) -> u16 {
        match self {
            Mode::Nat => 8099,
            _ => 80,
        }
    }

    fn url(self, path: &str) -> String {
        match self.port() {
            80 => format!("http://{}{path}", self.vip()),
            p => format!("http://{}:{p}{path}", self.vip()),
        }
    }

    fn udp(self) -> SocketAddrV4 {
        SocketAddrV4::new(self.vip(), 53)
    }

    /// directord's configuration. DR's TCP service is wrr, so that a
    /// weight change shows in the split.
    fn config(self) -> String {
        let (node, scheduler) = match self {
            Mode::Dr => ("dr-demo", "wrr"),
            Mode::Tun => ("tun-demo", "rr"),
            Mode::Nat => ("nat-demo", "rr"),
        };
        modes::directord_config(
            self.lvs(),
            &modes::DirectordConfig {
                node,
                dataplane: "",
                scheduler,
                port: self.port(),
                udp: true,
            },
        )
    }
}

/// The one-command demo of directord, the userspace LVS director,
/// forwarding real kernel TCP and UDP between network namespaces.
#[derive(Debug, Parser)]
#[command(
    name = "lab-demo",
    args_override_self = true,
    override_usage = "lab-demo --directord PATH --dirctl PATH [--mode dr|tun|nat|pair|all] [--keep]\n       \
                      lab-demo --down [--all]",
    after_help = "Needs root: the lab builds network namespaces. deploy/lab/demo.sh runs it."
)]
struct Args {
    /// The directord binary (target/release/directord)
    #[arg(long, value_name = "PATH", required_unless_present = "down")]
    directord: Option<PathBuf>,
    /// The dirctl binary (target/release/dirctl)
    #[arg(long, value_name = "PATH", required_unless_present = "down")]
    dirctl: Option<PathBuf>,
    /// What to show
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Show::All)]
    mode: Show,
    /// Leave the dr/tun/nat labs running until Ctrl-C, and say how to poke at them
    #[arg(long)]
    keep: bool,
    /// Remove labs left behind by a process that is gone
    #[arg(long)]
    down: bool,
    /// With --down: remove every lab (lbt-* namespaces), also live ones
    #[arg(long, requires = "down")]
    all: bool,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Show {
    /// Direct routing
    Dr,
    /// IP-in-IP tunnelling
    Tun,
    /// Two NICs, port mapping
    Nat,
    /// Two directors, failover under load
    Pair,
    /// All of them
    All,
}

impl Show {
    /// The single-director modes it shows.
    fn modes(self) -> Vec<Mode> {
        match self {
            Show::Dr => vec![Mode::Dr],
            Show::Tun => vec![Mode::Tun],
            Show::Nat => vec![Mode::Nat],
            Show::Pair => vec![],
            Show::All => vec![Mode::Dr, Mode::Tun, Mode::Nat],
        }
    }

    /// Whether it shows the pair.
    fn pair(self) -> bool {
        matches!(self, Show::Pair | Show::All)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !is_root() {
        eprintln!(
            "lab-demo: run as root: the lab builds network namespaces (sudo deploy/lab/demo.sh)"
        );
        return ExitCode::FAILURE;
    }
    let result = if args.down {
        down(args.all)
    } else {
        demo(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nlab-demo: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: &Args) -> Result<()> {
    let (Some(directord), Some(dirctl)) = (&args.directord, &args.dirctl) else {
        bail!("--directord PATH and --dirctl PATH are required");
    };
    let bins = Bins {
        directord: binary_arg(directord, "--directord")?,
        dirctl: binary_arg(dirctl, "--dirctl")?,
    };
    let modes = args.mode.modes();
    let show_pair = args.mode.pair();
    println!(
        "lab-demo: directord, a userspace LVS director, load-balancing real kernel TCP and UDP\n\
         between network namespaces; dirctl is its ipvsadm-compatible CLI."
    );
    let start = Instant::now();
    let mut kept = Vec::new();
    for &mode in &modes {
        if let Some(running) = run_mode(&bins, mode, args.keep)? {
            kept.push(running);
        }
    }
    if args.keep {
        return keep(&bins, &mut kept);
    }
    if show_pair {
        pair::run(&bins)?;
    }
    let mut names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    if show_pair {
        names.push("the pair");
    }
    println!(
        "\nlab-demo: {} shown in {:.1} s; every namespace and process removed.",
        names.join(", ").to_uppercase(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A mode's lab: the hosts and the servers in them.
#[derive(Debug)]
struct Net {
    mode: Mode,
    /// The director's host.
    dir_host: Host,
    lvs: LvsLab,
}

/// A mode's lab with `directord` running in it.
#[derive(Debug)]
struct Running {
    director: Directord,
    net: Net,
}

/// Copies directord's output out of the lab dir (which goes with the
/// lab) and returns where it is.
fn save_log(d: &Directord, mode: Mode) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lab-demo-{}-directord.log", mode.name()));
    let text = format!(
        "== directord's stdout\n{}\n== directord's stderr\n{}\n",
        d.proc.stdout_text().trim_end(),
        d.proc.stderr_text().trim_end()
    );
    let _ = fs::write(&path, text);
    path
}

fn header(text: &str) {
    println!("\n==== {text} ====");
}

fn step(text: &str) {
    println!("\n-- {text}");
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("   {line}");
    }
}

/// Builds the lab for `mode`, starts directord and walks through the demo.
/// Returns the running lab with `keep`, else stops and removes it.
fn run_mode(bins: &Bins, mode: Mode, keep: bool) -> Result<Option<Running>> {
    let t0 = Instant::now();
    header(mode.title());
    println!("{}", mode.story());

    let net = build(bins, mode).with_context(|| format!("{}: building the lab", mode.name()))?;
    let n_ns = net.lvs.lab.namespaces().len();
    step(&format!(
        "lab: {n_ns} namespaces {}* (one holds the bridges), offloads off on {} veths,",
        net.lvs.lab.prefix(),
        net.lvs.ifaces.len()
    ));
    println!("   nginx and a UDP echo server on rs1 and rs2");
    if mode == Mode::Tun {
        println!(
            "   rs1, rs2: `dirctl realserver setup --mode tun --vip {}`, then `dirctl realserver decap`",
            mode.vip()
        );
    }

    let director = start_director(bins, &net).context(mode.name())?;
    let mut running = Running { director, net };
    if let Err(e) = tour(&mut running) {
        let log = save_log(&running.director, mode);
        bail!(
            "{}: {e:#}\n   directord's output is in {}",
            mode.name(),
            log.display()
        );
    }
    if keep {
        return Ok(Some(running));
    }

    step("stopping directord");
    let d = &mut running.director;
    d.proc.stop_gracefully(Duration::from_secs(5));
    let out = d.proc.stdout_text();
    match out.lines().find(|l| l.contains("dropped frames")) {
        Some(line) => println!("   {line}"),
        None => {
            let log = save_log(d, mode);
            bail!(
                "{}: directord did not stop cleanly; its output is in {}",
                mode.name(),
                log.display()
            );
        }
    }
    drop(running);
    println!(
        "   lab removed. {} done in {:.1} s",
        mode.name().to_uppercase(),
        t0.elapsed().as_secs_f64()
    );
    Ok(None)
}

/// Starts directord in the director's namespace with the mode's config,
/// printing the configuration as directord reads it.
fn start_director(bins: &Bins, net: &Net) -> Result<Directord> {
    let d = Directord::start(&net.lvs.lab, &net.dir_host, bins, &net.mode.config())?;
    step("directord's configuration (directord --check-config):");
    indented(
        &d.plan
            .lines()
            .filter(|l| !l.contains("configuration OK"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    println!(
        "   started in {}: pid {}, control API on 127.0.0.1:{CONTROL_PORT}",
        net.dir_host.name(),
        d.proc.id()
    );
    Ok(d)
}

/// Builds `mode`'s lab (see `lab_tests::modes`), named after the mode.
fn build(bins: &Bins, mode: Mode) -> Result<Net> {
    let opts = LvsOptions {
        balancer: Balancer::Directord("director"),
        // No /big.bin: the demo downloads nothing large.
        big_mib: 0,
        udp: true,
        dirctl: bins.dirctl.clone(),
        offloads: false,
    };
    let lvs = LvsLab::build(Lab::new(mode.name())?, mode.lvs(), &opts)?;
    let dir_host = lvs.director.clone().context("a director")?;
    Ok(Net {
        mode,
        dir_host,
        lvs,
    })
}

/// One request's outcome.
#[derive(Debug)]
struct Answer {
    server: String,
    ms: f64,
    /// What the server saw: `client:port server:port`.
    saw: String,
}

fn request(net: &Net, path: &str) -> Result<Answer> {
    let opts = CurlOptions {
        max_time: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        extra_args: Vec::new(),
    };
    let url = net.mode.url(path);
    let r = net.lvs.lab.curl_with(&net.lvs.client, &url, &opts)?;
    ensure!(r.status == 200, "{url}: HTTP {}", r.status);
    Ok(Answer {
        server: r.header("X-Real-Server").unwrap_or("?").to_owned(),
        ms: r.timing.total.as_secs_f64() * 1000.0,
        saw: r.text().trim().to_owned(),
    })
}

/// `n` requests to `/`; the names of the servers that answered.
fn requests(net: &Net, n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|i| {
            request(net, "/")
                .map(|a| a.server)
                .with_context(|| format!("request {}", i + 1))
        })
        .collect()
}

fn count(names: &[String], who: &str) -> usize {
    names.iter().filter(|n| *n == who).count()
}

/// The walk through a running lab: requests, UDP, listings, and in DR the
/// live weight change and drain.
fn tour(r: &mut Running) -> Result<()> {
    let net = &r.net;
    let mode = net.mode;
    let lab = &net.lvs.lab;

    step(&format!(
        "{REQUESTS} HTTP requests from the client: curl {}",
        mode.url("/client")
    ));
    println!(
        "   {:>3}  {:<6}  {:>8}  what the server saw: client -> server",
        "#", "server", "time"
    );
    let mut names = Vec::new();
    for i in 1..=REQUESTS {
        let a = request(net, "/client").with_context(|| format!("request {i}"))?;
        let saw = a.saw.replacen(' ', " -> ", 1);
        let ms = format!("{:.1} ms", a.ms);
        println!("   {i:>3}  {:<6}  {ms:>8}  {saw}", a.server);
        names.push(a.server);
    }
    let (rs1, rs2) = (count(&names, "rs1"), count(&names, "rs2"));
    let logged: Vec<usize> = net
        .lvs
        .servers
        .iter()
        .map(|s| s.requests_served())
        .collect();
    println!(
        "   rs1 answered {rs1}, rs2 {rs2} (their nginx access logs: {}, {})\n   {}",
        logged[0],
        logged[1],
        match mode {
            Mode::Nat => "each saw the client's own address, and VIP:8099 rewritten to its own :80",
            _ => "each saw the client's own address, and the VIP as its own address",
        }
    );
    ensure!(
        rs1 == REQUESTS / 2 && rs2 == REQUESTS / 2 && logged == [rs1, rs2],
        "expected an even split over rs1 and rs2, got rs1 {rs1}, rs2 {rs2} (logged {logged:?})"
    );

    let udp = mode.udp();
    let ask = UdpAsk {
        count: 10,
        timeout: Duration::from_secs(2),
        fresh_port: true,
        bind: None,
    };
    let replies = lab.udp_ask(&net.lvs.client, udp, &ask)?;
    let answered: Vec<_> = replies.iter().filter_map(|x| x.reply.as_ref()).collect();
    let u1 = answered.iter().filter(|a| a.server() == "rs1").count();
    let from_vip = answered
        .iter()
        .all(|a| a.from.to_string() == udp.to_string());
    step(&format!(
        "UDP: 10 datagrams to {udp}, each from a new port: rs1 {u1}, rs2 {}, replies from {}",
        answered.len() - u1,
        if from_vip { "the VIP" } else { "elsewhere!" }
    ));
    ensure!(
        answered.len() == 10 && from_vip,
        "UDP: {} of 10 answered (all from {udp}: {from_vip})",
        answered.len()
    );

    step("dirctl -Ln --stats (ipvsadm's layout: per service, then per real server)");
    indented(&r.director.dirctl(lab, &["-Ln", "--stats"])?);
    if mode != Mode::Nat {
        println!(
            "   (OutPkts 0: in {} the replies go from the real servers straight to the client)",
            mode.name().to_uppercase()
        );
    }

    let table = r.director.dirctl(lab, &["-Lnc"])?;
    let entries = table
        .lines()
        .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
        .count();
    step(&format!(
        "dirctl -Lnc (the connection table; first {} of {entries} entries)",
        CONN_LINES
    ));
    let lines: Vec<&str> = table.lines().collect();
    indented(&lines[..lines.len().min(CONN_LINES + 2)].join("\n"));

    if mode == Mode::Dr {
        weights(r)?;
    }
    Ok(())
}

/// DR only: a live weight change under wrr, then a drain, then back.
fn weights(r: &Running) -> Result<()> {
    let (net, d) = (&r.net, &r.director);
    let lab = &net.lvs.lab;
    let svc = format!("{}:80", net.mode.vip());
    let edit = |w: &str| -> Result<()> {
        d.dirctl(
            lab,
            &["-e", "-t", &svc, "-r", "10.21.0.11:80", "-g", "-w", w],
        )
        .map(drop)
    };

    step(&format!(
        "live weight change: dirctl -e -t {svc} -r 10.21.0.11:80 -g -w 3, then 12 requests"
    ));
    edit("3")?;
    let names = requests(net, 12)?;
    let rs1 = count(&names, "rs1");
    println!("   {}", names.join(" "));
    println!(
        "   rs1 {rs1}, rs2 {}: wrr now sends 3 of every 4 new connections to rs1",
        12 - rs1
    );
    ensure!(rs1 == 9, "wrr 3:1 should give rs1 9 of 12, got {rs1}");

    step("drain: dirctl -e ... -w 0 (quiesce rs1), then 6 requests");
    edit("0")?;
    let names = requests(net, 6)?;
    println!("   {}", names.join(" "));
    ensure!(
        count(&names, "rs2") == 6,
        "weight 0 should send no new connection to rs1: {names:?}"
    );
    println!("   no new connection to rs1; its existing entries stay until they expire:");
    let list = d.dirctl(lab, &["-Ln"])?;
    indented(
        &list
            .lines()
            .filter(|l| {
                l.starts_with("Prot")
                    || l.contains("RemoteAddress")
                    || l.starts_with("TCP")
                    || (l.contains("->") && l.contains(":80 "))
            })
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    edit("1")?;
    println!("   (weight of rs1 set back to 1)");
    Ok(())
}

/// `--keep`: prints how to reach the labs, then waits for Ctrl-C (the
/// harness's signal guard removes the labs and exits) or for a director to
/// go away.
fn keep(bins: &Bins, kept: &mut [Running]) -> Result<()> {
    header("The lab is up (--keep). From another shell, as root:");
    for r in kept.iter() {
        let net = &r.net;
        let mode = net.mode;
        println!("\n{} (VIP {}):", mode.title(), mode.vip());
        for host in &net.lvs.hosts {
            let ifaces = net.lvs.ifaces.iter().filter(|i| i.host() == host);
            let addrs: Vec<String> = ifaces.map(|i| i.addr().to_string()).collect();
            println!(
                "   {:<9} {:<28} {}",
                host.name(),
                host.ns(),
                addrs.join(", ")
            );
        }
        let (client, dir) = (net.lvs.client.ns(), net.dir_host.ns());
        println!("   ip netns exec {client} curl {}", mode.url("/"));
        println!("   ip netns exec {client} curl {}", mode.url("/client"));
        println!("   ip netns exec {dir} {} -Ln --stats", bins.dirctl);
        println!("   ip netns exec {dir} {} -Lnc", bins.dirctl);
        println!(
            "   directord's output: {}",
            r.director.proc.stderr_path().display()
        );
    }
    println!(
        "\nCtrl-C removes it all. If this process is killed hard, deploy/lab/down.sh cleans up."
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
        for r in kept.iter_mut() {
            if !Path::new(sweep::NETNS_DIR)
                .join(r.net.dir_host.ns())
                .exists()
            {
                println!("lab-demo: the lab was removed from outside; exiting");
                return Ok(());
            }
            if !r.director.proc.is_running() {
                let log = save_log(&r.director, r.net.mode);
                bail!(
                    "directord ({}) exited; its output is in {}",
                    r.net.mode.name(),
                    log.display()
                );
            }
        }
    }
}

/// Whether a lab's owning process is gone: no such pid, or a zombie (just
/// killed, not yet reaped by its parent).
fn owner_gone(pid: u32) -> bool {
    if !sweep::pid_alive(pid) {
        return true;
    }
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// `--down`: removes the harness's namespaces whose owning process is
/// gone (with `all`, every `lbt-` namespace), the processes in them, and
/// their temp directories. The harness names everything
/// `lbt-<owner pid>-<n>-...`, which is what this goes by.
fn down(all: bool) -> Result<()> {
    let remove = |name: &str| all || sweep::owner_pid(name).is_some_and(owner_gone);
    let mut removed = 0;
    let mut kept = Vec::new();
    let mut namespaces: Vec<String> = sweep::namespaces()
        .into_iter()
        .filter(|n| n.starts_with(sweep::PREFIX_TAG))
        .collect();
    namespaces.sort();
    for ns in &namespaces {
        if !remove(ns) {
            kept.push(ns.clone());
            continue;
        }
        let pids = lab_tests::cmd::run_ok(
            &["ip", "netns", "pids", ns],
            lab_tests::cmd::DEFAULT_TIMEOUT,
        )
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0);
        sweep::delete_namespace(ns);
        let gone = !Path::new(sweep::NETNS_DIR).join(ns).exists();
        ensure!(gone, "could not delete namespace {ns}");
        println!("removed namespace {ns} (killed {pids} process(es) in it)");
        removed += 1;
    }
    // Temp dirs: a process that outlived its namespace still names its
    // directory (nginx -c DIR/nginx.conf, directord --config DIR/...).
    let tmp = std::env::temp_dir();
    let mut dirs: Vec<(String, PathBuf)> = fs::read_dir(&tmp)
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                Some((e.file_name().into_string().ok()?, e.path()))
            })
            .filter(|(name, _)| sweep::owner_pid(name).is_some())
            .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    for (name, path) in dirs.iter().filter(|(n, _)| remove(n)) {
        let strays = sweep::processes_mentioning(&path.to_string_lossy());
        for pid in &strays {
            lab_tests::cmd::kill_pid(*pid, "KILL");
        }
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
        let extra = if strays.is_empty() {
            String::new()
        } else {
            format!(" (killed {} stray process(es))", strays.len())
        };
        println!("removed directory {}{extra}", tmp.join(name).display());
        removed += 1;
    }
    if !kept.is_empty() {
        println!(
            "left {} namespace(s) whose owner is still running (a demo with --keep, or tests), \
             e.g. {}; --all removes them too",
            kept.len(),
            kept[0]
        );
    }
    if removed == 0 && kept.is_empty() {
        println!("no lab left behind: nothing to remove");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn invocations() {
        // deploy/lab/demo.sh and down.sh.
        let a = Args::try_parse_from([
            "lab-demo",
            "--directord",
            "d",
            "--dirctl",
            "c",
            "--mode",
            "pair",
            "--keep",
        ])
        .unwrap();
        assert_eq!(a.mode, Show::Pair);
        assert!(a.mode.modes().is_empty() && a.mode.pair() && a.keep);
        let a = Args::try_parse_from(["lab-demo", "--directord=d", "--dirctl=c"]).unwrap();
        assert_eq!(a.mode.modes(), vec![Mode::Dr, Mode::Tun, Mode::Nat]);
        assert!(a.mode.pair());
        let a = Args::try_parse_from(["lab-demo", "--down", "--all"]).unwrap();
        assert!(a.down && a.all);
        for bad in [
            &["lab-demo"][..],
            &["lab-demo", "--all"],
            &[
                "lab-demo",
                "--directord",
                "d",
                "--dirctl",
                "c",
                "--mode",
                "x",
            ],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
