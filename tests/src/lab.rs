//! The lab: hosts are network namespaces, L2 segments are Linux bridges in
//! one switch namespace, and every host link is a veth pair between them.
//!
//! Nothing is created in the root namespace: veths are created directly in
//! their host namespace with the peer placed in the switch namespace
//! (`ip -n HOST link add ... peer ... netns SWITCH`), and sysctls are set
//! inside the namespace they belong to. Deleting the namespaces therefore
//! removes everything the lab made.

use std::collections::HashMap;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::cmd::{self, DEFAULT_TIMEOUT};
use crate::process::LabChild;
use crate::sweep;

/// Environment variable that turns lab tests into a printed skip.
pub const SKIP_ENV: &str = "LAB_SKIP";

/// A host: one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    name: String,
    ns: String,
}

impl Host {
    /// The short name given to [`Lab::host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name (for `ip netns exec`, `ip -n`).
    pub fn ns(&self) -> &str {
        &self.ns
    }
}

/// An L2 segment: a bridge inside the lab's switch namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    name: String,
    bridge: String,
    net: Ipv4Addr,
    prefix_len: u8,
}

impl Segment {
    /// The name given to [`Lab::segment`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge device in the switch namespace.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The segment's network address and prefix length.
    pub fn network(&self) -> (Ipv4Addr, u8) {
        (self.net, self.prefix_len)
    }

    /// Whether `addr` lies inside this segment's network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(addr) & mask == u32::from(self.net) & mask
    }

    /// The `n`th address of the segment (`.1` is `host(1)`).
    pub fn host_addr(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + n)
    }
}

/// One end of a host's attachment to a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    host: Host,
    name: String,
    addr: Ipv4Addr,
    prefix_len: u8,
    mac: String,
    port: String,
    segment: String,
}

impl Iface {
    /// The host this interface is in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Interface name inside the host (`eth0`, `eth1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address assigned on creation.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Prefix length of [`Iface::addr`].
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The MAC, `02:00:` followed by the four address bytes (see [`mac_for`]).
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// The bridge port (the veth peer) in the switch namespace.
    pub fn switch_port(&self) -> &str {
        &self.port
    }

    /// Name of the segment it is plugged into.
    pub fn segment(&self) -> &str {
        &self.segment
    }
}

/// The deterministic MAC the lab gives an interface with address `addr`:
/// locally administered `02:00:a:b:c:d`. Tests can predict a host's MAC
/// (e.g. to check a DR rewrite or a gratuitous ARP) from its address alone.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("`{cidr}`: want a.b.c.d/len"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("`{cidr}`: bad address"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("`{cidr}`: bad prefix length"))?;
    ensure!(len <= 32, "`{cidr}`: prefix length over 32");
    Ok((addr, len))
}

/// True for the ranges a lab may use: RFC 1918, the RFC 5737 documentation
/// nets, 198.18/15 (RFC 2544 benchmarking) and loopback. Anything else could
/// leak a packet to a real network if a namespace were ever misconfigured.
pub fn is_lab_range(addr: Ipv4Addr) -> bool {
    let o = addr.octets();
    addr.is_private()
        || addr.is_loopback()
        || matches!(o, [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _])
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 24
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{kind} name `{name}`: use 1-24 characters a-z, 0-9"
    );
    Ok(())
}

/// Whether this process is root (effective uid 0), read from /proc so the
/// crate needs no libc call.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Checks what every lab needs, with a message that says how to fix it.
pub fn check_prerequisites() -> Result<()> {
    ensure!(
        is_root(),
        "the namespace lab needs root (ip netns, veth, bridges); run the tests as root, \
         or set {SKIP_ENV}=1 to skip the lab tests explicitly"
    );
    let probe = cmd::run(&["ip", "netns", "list"], DEFAULT_TIMEOUT).map_err(|e| {
        anyhow::anyhow!(
            "`ip netns` is unavailable ({e:#}); install iproute2 (deploy/setup.sh), \
             or set {SKIP_ENV}=1 to skip the lab tests explicitly"
        )
    })?;
    cmd::check(&["ip", "netns", "list"], &probe).with_context(|| {
        format!("`ip netns` does not work here; set {SKIP_ENV}=1 to skip the lab tests explicitly")
    })?;
    Ok(())
}

#[derive(Debug, Default)]
struct State {
    /// Every namespace created, switch first; deleted in reverse order.
    namespaces: Vec<String>,
    hosts: Vec<String>,
    segments: Vec<Segment>,
    /// Next `ethN` per host.
    next_if: HashMap<String, u32>,
    /// Next bridge-port number in the switch namespace.
    next_port: u32,
    /// Next file number for per-call files (curl bodies, logs).
    next_file: u32,
    /// Shared download payloads by size in MiB: (path, sha256).
    big_files: HashMap<u32, (PathBuf, String)>,
}

/// A lab of namespaces. Dropping it kills every process in its namespaces,
/// deletes them (which removes their veths and bridges) and its temp dir.
///
/// All methods take `&self`, so a lab can be shared between threads.
#[derive(Debug)]
pub struct Lab {
    name: String,
    prefix: String,
    dir: PathBuf,
    switch_ns: String,
    state: Mutex<State>,
}

impl Lab {
    /// Creates an empty lab: a unique prefix, a temp dir and the switch
    /// namespace. First sweeps what crashed earlier runs left behind, and
    /// fails with a clear message if not root or `ip netns` is missing.
    pub fn new(name: &str) -> Result<Lab> {
        check_name("lab", name)?;
        check_prerequisites()?;
        sweep::install_signal_guard();
        sweep::sweep_stale();

        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}{}-{n}-{name}-", sweep::PREFIX_TAG, std::process::id());
        let dir = std::env::temp_dir().join(prefix.trim_end_matches('-'));
        let lab = Lab {
            name: name.to_owned(),
            switch_ns: format!("{prefix}sw"),
            prefix,
            dir,
            state: Mutex::new(State::default()),
        };
        // From here on `lab` is built, so an early return drops it and
        // undoes whatever was made.
        fs::create_dir_all(lab.dir.join("logs"))
            .with_context(|| format!("creating {}", lab.dir.display()))?;
        let sw = lab.switch_ns.clone();
        lab.add_namespace(&sw)?;
        // A switch forwards frames; it does not inspect them. Where the
        // kernel has br_netfilter (built in here, on in every new
        // namespace), bridged IPv4 would go through netfilter, which
        // validates headers and silently drops, say, a bad IP checksum
        // before the host behind the switch ever sees it.
        for table in ["iptables", "ip6tables", "arptables"] {
            let key = format!("net.bridge.bridge-nf-call-{table}");
            if Path::new("/proc/sys/net/bridge").exists() {
                lab.sysctl_ns(&sw, &key, "0")?;
            }
        }
        Ok(lab)
    }

    /// [`Lab::new`], or `Ok(None)` after printing a skip notice when
    /// `LAB_SKIP=1`. Lab tests start with
    /// `let Some(lab) = Lab::new_or_skip("x")? else { return Ok(()) };`.
    pub fn new_or_skip(name: &str) -> Result<Option<Lab>> {
        if skip_requested() {
            eprintln!("lab test `{name}` skipped: {SKIP_ENV}=1");
            return Ok(None);
        }
        Lab::new(name).map(Some)
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Prefix of every namespace (and the temp dir) of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's temp directory (configs, logs, downloads).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The switch namespace holding the bridges.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// Namespaces this lab has created so far.
    pub fn namespaces(&self) -> Vec<String> {
        self.state().namespaces.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bookkeeping behind;
        // cleanup must still be able to read it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh path in the lab dir: `<dir>/<stem>-<n><ext>`.
    pub fn unique_path(&self, stem: &str, ext: &str) -> PathBuf {
        let n = {
            let mut st = self.state();
            st.next_file += 1;
            st.next_file
        };
        self.dir.join(format!("{stem}-{n}{ext}"))
    }

    fn add_namespace(&self, ns: &str) -> Result<()> {
        cmd::run_ok(&["ip", "netns", "add", ns], DEFAULT_TIMEOUT)?;
        self.state().namespaces.push(ns.to_owned());
        cmd::run_ok(
            &["ip", "-n", ns, "link", "set", "lo", "up"],
            DEFAULT_TIMEOUT,
        )?;
        // No IPv6: no router solicitations, MLD or DAD on the wire, so a
        // capture shows only what a test sent (and nothing to wait for).
        // Best effort: a kernel without IPv6 has nothing to silence.
        let _ = self.sysctl_ns(ns, "net.ipv6.conf.all.disable_ipv6", "1");
        let _ = self.sysctl_ns(ns, "net.ipv6.conf.default.disable_ipv6", "1");
        Ok(())
    }

    /// Adds a host namespace named `<prefix><name>`, with `lo` up.
    pub fn host(&self, name: &str) -> Result<Host> {
        check_name("host", name)?;
        ensure!(name != "sw", "host name `sw` is the switch namespace");
        ensure!(
            !self.state().hosts.iter().any(|h| h == name),
            "host `{name}` exists already"
        );
        let ns = format!("{}{name}", self.prefix);
        self.add_namespace(&ns)?;
        self.state().hosts.push(name.to_owned());
        Ok(Host {
            name: name.to_owned(),
            ns,
        })
    }

    /// Adds an L2 segment (a bridge in the switch namespace) for `cidr`,
    /// e.g. `"10.11.0.0/24"`. The network must be a private test range.
    pub fn segment(&self, name: &str, cidr: &str) -> Result<Segment> {
        check_name("segment", name)?;
        let (net, prefix_len) = parse_cidr(cidr)?;
        ensure!(
            is_lab_range(net),
            "segment `{name}`: {cidr} is not a private test range"
        );
        let idx = {
            let st = self.state();
            ensure!(
                !st.segments.iter().any(|s| s.name == name),
                "segment `{name}` exists already"
            );
            st.segments.len()
        };
        let seg = Segment {
            name: name.to_owned(),
            bridge: format!("br{idx}"),
            net,
            prefix_len,
        };
        let sw = self.switch_ns.as_str();
        let br = seg.bridge.as_str();
        // forward_delay 0: ports forward at once instead of after 15 s of
        // listening/learning. No multicast snooping: VRRP adverts to
        // 224.0.0.18 reach every port whatever IGMP has (not) been seen.
        self.ip_ns(
            sw,
            &["link", "add", br, "type", "bridge", "forward_delay", "0"],
        )?;
        self.ip_ns(
            sw,
            &["link", "set", br, "type", "bridge", "mcast_snooping", "0"],
        )?;
        self.ip_ns(sw, &["link", "set", br, "up"])?;
        self.state().segments.push(seg.clone());
        Ok(seg)
    }

    /// Plugs `host` into `segment` with address `cidr` (e.g. `10.11.0.10/24`)
    /// on a new `ethN`, whose MAC is [`mac_for`] the address.
    pub fn link(&self, host: &Host, segment: &Segment, cidr: &str) -> Result<Iface> {
        let n = {
            let mut st = self.state();
            let n = st.next_if.entry(host.name.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        self.link_named(host, segment, cidr, &format!("eth{n}"))
    }

    /// [`Lab::link`] with a chosen interface name (at most 15 characters).
    pub fn link_named(
        &self,
        host: &Host,
        segment: &Segment,
        cidr: &str,
        ifname: &str,
    ) -> Result<Iface> {
        ensure!(
            !ifname.is_empty() && ifname.len() <= 15,
            "interface name `{ifname}`: 1-15 characters"
        );
        let (addr, prefix_len) = parse_cidr(cidr)?;
        ensure!(is_lab_range(addr), "{cidr} is not a private test range");
        ensure!(
            segment.contains(addr),
            "{cidr} is outside segment `{}` ({}/{})",
            segment.name,
            segment.net,
            segment.prefix_len
        );
        let port = {
            let mut st = self.state();
            st.next_port += 1;
            format!("p{}", st.next_port)
        };
        let mac = mac_for(addr);
        let sw = self.switch_ns.as_str();
        self.ip(
            host,
            &[
                "link", "add", ifname, "address", &mac, "type", "veth", "peer", "name", &port,
                "netns", sw,
            ],
        )?;
        self.ip_ns(sw, &["link", "set", &port, "master", &segment.bridge, "up"])?;
        self.ip(host, &["addr", "add", cidr, "dev", ifname])?;
        self.ip(host, &["link", "set", ifname, "up"])?;
        Ok(Iface {
            host: host.clone(),
            name: ifname.to_owned(),
            addr,
            prefix_len,
            mac,
            port,
            segment: segment.name.clone(),
        })
    }

    /// Adds a route in `host`, e.g. `"default via 10.11.0.1"`.
    pub fn route(&self, host: &Host, spec: &str) -> Result<()> {
        let mut argv = vec!["route", "add"];
        argv.extend(spec.split_whitespace());
        self.ip(host, &argv).map(drop)
    }

    /// Runs `ip -n <ns> ARGS...`; returns stdout.
    pub fn ip(&self, host: &Host, args: &[&str]) -> Result<String> {
        self.ip_ns(&host.ns, args)
    }

    /// Runs `ip ARGS` in the switch namespace (on the bridges and the
    /// hosts' bridge ports, [`Iface::switch_port`]).
    pub fn switch_ip(&self, args: &[&str]) -> Result<String> {
        self.ip_ns(&self.switch_ns, args)
    }

    fn ip_ns(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec!["ip", "-n", ns];
        argv.extend_from_slice(args);
        cmd::run_ok(&argv, DEFAULT_TIMEOUT)
    }

    /// Sets a sysctl inside `host`'s namespace, e.g.
    /// `("net.ipv4.ip_forward", "1")`. Never touches the root namespace.
    pub fn sysctl(&self, host: &Host, key: &str, value: &str) -> Result<()> {
        self.sysctl_ns(&host.ns, key, value)
    }

    fn sysctl_ns(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        ensure!(
            key.starts_with("net."),
            "sysctl `{key}`: only per-namespace net.* keys"
        );
        let kv = format!("{key}={value}");
        cmd::run_ok(
            &["ip", "netns", "exec", ns, "sysctl", "-qw", &kv],
            DEFAULT_TIMEOUT,
        )?;
        Ok(())
    }

    /// Reads a sysctl inside `host`'s namespace.
    pub fn sysctl_get(&self, host: &Host, key: &str) -> Result<String> {
        let out = self.exec_ok(host, &["sysctl", "-n", key])?;
        Ok(out.trim().to_owned())
    }

    /// Turns `host` into a router (ip_forward=1 in its namespace only).
    pub fn enable_forwarding(&self, host: &Host) -> Result<()> {
        self.sysctl(host, "net.ipv4.ip_forward", "1")
    }

    /// Configures `host` as an LVS-DR real server for `vip`: the VIP on `lo`
    /// as a /32, `arp_ignore=1` and `arp_announce=2` (so it never answers
    /// or advertises ARP for the VIP), and `rp_filter=0`.
    pub fn dr_real_server(&self, host: &Host, vip: Ipv4Addr) -> Result<()> {
        self.ip(host, &["addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
        for scope in ["all", "default", "lo"] {
            self.sysctl(host, &format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
            self.sysctl(host, &format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            self.sysctl(host, &format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
        }
        for iface in self.interfaces(host)? {
            self.sysctl(host, &format!("net.ipv4.conf.{iface}.arp_ignore"), "1")?;
            self.sysctl(host, &format!("net.ipv4.conf.{iface}.arp_announce"), "2")?;
            self.sysctl(host, &format!("net.ipv4.conf.{iface}.rp_filter"), "0")?;
        }
        Ok(())
    }

    /// Configures `host` as an LVS-TUN real server for `vip` as an operator
    /// does on a kernel without the ipip module: `dirctl realserver setup
    /// --mode tun --decap userspace` (the VIP on the TUN device, the ARP
    /// and rp_filter sysctls; its state file in the lab dir), then the
    /// userspace decapsulator, returned running (it also dies with the lab).
    pub fn tun_real_server(&self, host: &Host, dirctl: &str, vip: Ipv4Addr) -> Result<LabChild> {
        let state = self.dir().join(format!("{}-state", host.name));
        let state = state.to_string_lossy();
        let vip = vip.to_string();
        let argv = [
            dirctl,
            "realserver",
            "setup",
            "--mode",
            "tun",
            "--vip",
            &vip,
            "--decap",
            "userspace",
            "--state-dir",
            &state,
        ];
        self.exec_ok(host, &argv)
            .context("TUN real-server setup (dirctl realserver setup --mode tun)")?;
        self.spawn(host, &[dirctl, "realserver", "decap", "--dev", "lvs-tun0"])
    }

    /// Names of the interfaces in `host` (including `lo`).
    pub fn interfaces(&self, host: &Host) -> Result<Vec<String>> {
        let out = self.ip(host, &["-o", "link", "show"])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let name = l.split(": ").nth(1)?;
                Some(name.split('@').next()?.to_owned())
            })
            .collect())
    }

    /// Turns off TSO/GSO/GRO and tx checksum offload on `iface`. With them
    /// on, a veth hands AF_PACKET readers 64 KiB "packets" with partial
    /// checksums, which a userspace dataplane cannot forward as they are.
    pub fn disable_offloads(&self, iface: &Iface) -> Result<()> {
        let argv = [
            "ethtool",
            "-K",
            &iface.name,
            "tso",
            "off",
            "gso",
            "off",
            "gro",
            "off",
            "tx",
            "off",
        ];
        self.exec_ok(&iface.host, &argv).map(drop)
    }

    /// Pulls the cable: sets the switch-side port of `iface` down. Nothing
    /// passes either way and the host's interface loses carrier (a veth
    /// follows its peer), as with a pulled cable or a dead switch port.
    pub fn unplug(&self, iface: &Iface) -> Result<()> {
        self.ip_ns(&self.switch_ns, &["link", "set", &iface.port, "down"])
            .map(drop)
    }

    /// Undoes [`Lab::unplug`].
    pub fn plug(&self, iface: &Iface) -> Result<()> {
        self.ip_ns(&self.switch_ns, &["link", "set", &iface.port, "up"])
            .map(drop)
    }

    /// Runs `argv` inside `host` (`ip netns exec`) with the default deadline.
    pub fn exec(&self, host: &Host, argv: &[&str]) -> Result<Output> {
        self.exec_timeout(host, argv, DEFAULT_TIMEOUT)
    }

    /// Runs `argv` inside `host`, killed after `timeout`.
    pub fn exec_timeout(&self, host: &Host, argv: &[&str], timeout: Duration) -> Result<Output> {
        let mut full = vec!["ip", "netns", "exec", host.ns.as_str()];
        full.extend_from_slice(argv);
        cmd::run(&full, timeout)
    }

    /// Runs `argv` inside `host`; non-zero exit is an error; returns stdout.
    pub fn exec_ok(&self, host: &Host, argv: &[&str]) -> Result<String> {
        let out = self.exec(host, argv)?;
        cmd::check(argv, &out).with_context(|| format!("in host `{}`", host.name))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `argv` inside `host` in the background. The returned child is
    /// killed and reaped when dropped; stdout/stderr go to files in the lab
    /// dir. Everything left in the namespace also dies with the lab.
    pub fn spawn(&self, host: &Host, argv: &[&str]) -> Result<LabChild> {
        let first = argv.first().context("empty command line")?;
        let stem = Path::new(first)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("cmd");
        let base = self.unique_path(&format!("logs/{}-{stem}", host.name), "");
        let out_path = base.with_extension("out");
        let err_path = base.with_extension("err");
        let stdout = File::create(&out_path).with_context(|| format!("{}", out_path.display()))?;
        let stderr = File::create(&err_path).with_context(|| format!("{}", err_path.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning `{}` in `{}`", argv.join(" "), host.name))?;
        let label = format!("{}: {}", host.name, argv.join(" "));
        Ok(LabChild::new(child, label, out_path, err_path))
    }

    /// Waits until something in `host` listens on `port` (TCP, or UDP if
    /// `udp`) at `addr` or a wildcard address, for at most `timeout`.
    pub fn wait_listening(
        &self,
        host: &Host,
        udp: bool,
        addr: Ipv4Addr,
        port: u16,
        timeout: Duration,
    ) -> Result<()> {
        let flags = if udp { "-Hlun" } else { "-Hltn" };
        let wanted = [
            format!("{addr}:{port}"),
            format!("0.0.0.0:{port}"),
            format!("*:{port}"),
        ];
        let what = format!(
            "{} listening on {addr}:{port} in `{}`",
            proto(udp),
            host.name
        );
        cmd::wait_until(&what, timeout, Duration::from_millis(20), || {
            let out = self.exec_ok(host, &["ss", flags])?;
            Ok(out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .any(|local| wanted.iter().any(|w| w == local)))
        })
    }

    /// A payload of `mib` MiB of deterministic pseudo-random bytes, made once
    /// per lab and size: (path, sha256 hex).
    pub(crate) fn big_file(&self, mib: u32) -> Result<(PathBuf, String)> {
        if let Some(found) = self.state().big_files.get(&mib) {
            return Ok(found.clone());
        }
        let path = self.dir.join(format!("big-{mib}MiB.bin"));
        // xorshift64: incompressible enough that no layer can shortcut the
        // transfer, and the same bytes every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(mib);
        let len = mib as usize * 1024 * 1024;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
        let sha = sha256_file(&path)?;
        self.state()
            .big_files
            .insert(mib, (path.clone(), sha.clone()));
        Ok((path, sha))
    }
}

fn proto(udp: bool) -> &'static str {
    if udp { "UDP" } else { "TCP" }
}

/// Whether `LAB_SKIP=1` is set.
pub fn skip_requested() -> bool {
    std::env::var(SKIP_ENV).is_ok_and(|v| v == "1")
}

/// SHA-256 of a file, hex (coreutils `sha256sum`; runs in the root
/// namespace but touches only the file).
pub fn sha256_file(path: &Path) -> Result<String> {
    let p = path.to_string_lossy();
    let out = cmd::run_ok(&["sha256sum", "--", &p], Duration::from_secs(60))?;
    match out.split_whitespace().next() {
        Some(hex) if hex.len() == 64 => Ok(hex.to_owned()),
        _ => bail!("sha256sum {p}: unexpected output `{out}`"),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut self.state().namespaces);
        // Hosts before the switch: each deletion kills the processes inside
        // first, so no server outlives its namespace.
        for ns in namespaces.iter().rev() {
            sweep::delete_namespace(ns);
        }
        // Anything of ours that slipped out (e.g. a namespace created by a
        // test through `ip` directly with our prefix).
        for ns in sweep::namespaces_with_prefix(&self.prefix) {
            sweep::delete_namespace(&ns);
        }
        let leftover = sweep::namespaces_with_prefix(&self.prefix);
        if !leftover.is_empty() {
            eprintln!(
                "lab `{}`: could not delete namespaces {leftover:?}",
                self.name
            );
        }
        if std::env::var_os("LAB_KEEP_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_ranges() {
        assert_eq!(
            parse_cidr("10.11.0.10/24").unwrap(),
            (Ipv4Addr::new(10, 11, 0, 10), 24)
        );
        assert!(parse_cidr("10.11.0.10").is_err());
        assert!(parse_cidr("10.11.0.10/33").is_err());
        assert!(is_lab_range(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(is_lab_range(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(is_lab_range(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(is_lab_range(Ipv4Addr::new(203, 0, 113, 9)));
        assert!(!is_lab_range(Ipv4Addr::new(8, 8, 8, 8)));
        assert!(!is_lab_range(Ipv4Addr::new(100, 64, 0, 1)));
    }

    #[test]
    fn segment_membership() {
        let seg = Segment {
            name: "a".into(),
            bridge: "br0".into(),
            net: Ipv4Addr::new(10, 11, 0, 0),
            prefix_len: 24,
        };
        assert!(seg.contains(Ipv4Addr::new(10, 11, 0, 200)));
        assert!(!seg.contains(Ipv4Addr::new(10, 11, 1, 1)));
        assert_eq!(seg.host_addr(1), Ipv4Addr::new(10, 11, 0, 1));
    }

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 11, 0, 10)), "02:00:0a:0b:00:0a");
    }
}
