//! ipvsadm's listing layouts, column for column: `-Ln`, `-Ln --stats`
//! (with and without `--exact`), `--rate`, `--thresholds`,
//! `--persistent-conn`, `--tun-info`, `-Lnc`, `-L --timeout`, and the rule
//! format of `-S` ([`save`]), rendered from the control API's messages.
//! Scripts that parse ipvsadm's output parse these. The layouts follow the
//! format strings of ipvsadm 1.31 (`print_title`, `print_service_entry`,
//! `print_largenum`); when several views are asked for, the first of
//! stats, rate, thresholds, persistent-conn, tun-info wins, as in ipvsadm.
//!
//! Addresses are always numeric (`-n` or not). The banner's version and
//! size are IPVS's (1.2.1, a 4096-bucket connection hash): constant, for
//! scripts that skip or match the first line.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_proto::common as pb;
use lb_proto::control as ctl;

/// The first line of `ipvsadm -L`.
pub const BANNER: &str = "IP Virtual Server version 1.2.1 (size=4096)";

/// What a service listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListFormat {
    /// `--stats`: counters instead of weights and connections.
    pub stats: bool,
    /// `--exact`: no K/M/G/T abbreviation of counters.
    pub exact: bool,
    /// `--rate`: rates instead of weights and connections.
    pub rate: bool,
    /// `--thresholds`: upper/lower thresholds and connections.
    pub thresholds: bool,
    /// `--persistent-conn`: weight, persistent, active and inactive
    /// connections.
    pub persistent_conn: bool,
    /// `--tun-info`: the default view with a tunnel column.
    pub tun_info: bool,
    /// `--nosort`: real servers in configuration order.
    pub nosort: bool,
}

/// The one view a [`ListFormat`] selects, by ipvsadm's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Default,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
}

impl ListFormat {
    fn view(self) -> View {
        if self.stats {
            View::Stats
        } else if self.rate {
            View::Rate
        } else if self.thresholds {
            View::Thresholds
        } else if self.persistent_conn {
            View::PersistentConn
        } else if self.tun_info {
            View::TunInfo
        } else {
            View::Default
        }
    }
}

/// An endpoint as ipvsadm prints it numerically: `ip:port`, `[ip6]:port`.
/// An unparsable address is printed as received.
pub fn addr_port(ep: Option<&pb::Endpoint>) -> String {
    let Some(ep) = ep else {
        return String::from("0.0.0.0:0");
    };
    match ep.ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", ep.port),
        Ok(IpAddr::V4(ip)) => format!("{ip}:{}", ep.port),
        Err(_) => format!("{}:{}", ep.ip, ep.port),
    }
}

fn is_v6(ep: Option<&pb::Endpoint>) -> bool {
    ep.is_some_and(|e| e.ip.contains(':'))
}

/// A counter in a 9-column field: abbreviated past 10^8 (K, M, G, T, as
/// ipvsadm's `print_largenum`), or exact with `--exact` (widened when it
/// does not fit).
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    match n {
        0..100_000_000 => format!("{n:9}"),
        100_000_000..1_000_000_000 => format!("{:8}K", n / 1_000),
        1_000_000_000..100_000_000_000 => format!("{:8}M", n / 1_000_000),
        100_000_000_000..100_000_000_000_000 => format!("{:8}G", n / 1_000_000_000),
        _ => format!("{:8}T", n / 1_000_000_000_000),
    }
}

fn protocol_name(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => "TCP",
        Ok(pb::Protocol::Udp) => "UDP",
        _ => "IP",
    }
}

fn method_name(m: i32) -> &'static str {
    match pb::ForwardMethod::try_from(m) {
        Ok(pb::ForwardMethod::Tunnel) => "Tunnel",
        Ok(pb::ForwardMethod::Nat) => "Masq",
        _ => "Route",
    }
}

/// A dotted IPv4 mask from a prefix length.
fn dotted_mask(prefix: u32) -> Ipv4Addr {
    let bits = match prefix {
        0 => 0,
        p => u32::MAX << (32 - p.min(32)),
    };
    Ipv4Addr::from(bits)
}

/// `TCP  10.0.0.1:80`, cut at 33 columns for IPv4 as ipvsadm does.
fn service_name(key: Option<&pb::ServiceKey>) -> String {
    let Some(key) = key else {
        return String::from("?");
    };
    if key.fwmark != 0 {
        return match pb::AddressFamily::try_from(key.family) {
            Ok(pb::AddressFamily::Ipv6) => format!("FWM  {} IPv6", key.fwmark),
            _ => format!("FWM  {}", key.fwmark),
        };
    }
    let mut name = format!(
        "{}  {}",
        protocol_name(key.protocol),
        addr_port(key.vip.as_ref())
    );
    if !is_v6(key.vip.as_ref()) {
        truncate(&mut name, 33);
    }
    name
}

fn truncate(s: &mut String, n: usize) {
    if let Some((i, _)) = s.char_indices().nth(n) {
        s.truncate(i);
    }
}

/// `(sh-fallback,sh-port)`: the scheduler flags as ipvsadm names them for
/// the scheduler.
fn sched_flags(spec: &pb::ServiceSpec) -> Option<String> {
    let f = spec.scheduler_flags.as_ref()?;
    let (fallback, port) = match spec.scheduler.as_str() {
        "sh" => ("sh-fallback", "sh-port"),
        "mh" => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    let names: Vec<&str> = [(f.hash_fallback, fallback), (f.hash_port, port)]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// The column titles of a service listing.
pub fn title(fmt: ListFormat) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    match fmt.view() {
        View::Stats => format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        View::Rate => format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        View::Thresholds => format!(
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        View::PersistentConn => format!(
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        View::TunInfo => format!(
            "{PROT} Scheduler Flags\n{REMOTE}           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        View::Default => format!(
            "{PROT} Scheduler Flags\n{REMOTE}           Forward Weight ActiveConn InActConn\n"
        ),
    }
}

/// `12s`, `3m05s`, `2h10m`, `4d3h`: an age in a listing.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn health_state(s: i32) -> &'static str {
    match ctl::HealthState::try_from(s) {
        Ok(ctl::HealthState::Up) => "UP",
        Ok(ctl::HealthState::Down) => "DOWN",
        Ok(ctl::HealthState::Unknown) => "UNKNOWN",
        Ok(ctl::HealthState::Unchecked) => "UNCHECKED",
        _ => "?",
    }
}

/// `dirctl health`: one line per real server — service, real server,
/// state, effective/configured weight, checker, time in this state, and
/// the last failure with its age — then one per service with health
/// configuration (quorum, sorry server). `now_unix_ms` is the reader's
/// clock, for the ages.
pub fn health(resp: &ctl::GetHealthResponse, now_unix_ms: u64) -> String {
    let ago = |t: u64| {
        if t == 0 {
            "-".to_string()
        } else {
            age(now_unix_ms.saturating_sub(t))
        }
    };
    let mut out = format!(
        "{:<24} {:<22} {:<9} {:<11} {:<24} {:<8} {}\n",
        "Service", "RealServer", "State", "Weight", "Checker", "Since", "LastFailure"
    );
    for e in &resp.entries {
        let h = e.health.clone().unwrap_or_default();
        let failure = if h.last_failure_reason.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{} ({} ago)",
                h.last_failure_reason,
                ago(h.last_failure_unix_ms)
            )
        };
        let mut checker = h.checker.clone();
        truncate(&mut checker, 24);
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<9} {:<11} {:<24} {:<8} {}",
            service_name(e.service.as_ref()),
            addr_port(e.real_server.as_ref()),
            health_state(h.state),
            format!("{}/{}", h.effective_weight, h.configured_weight),
            checker,
            ago(h.state_since_unix_ms),
            failure
        );
    }
    for s in &resp.services {
        let sorry = match &s.sorry_server {
            Some(ep) => format!(
                ", sorry server {}{}",
                addr_port(Some(ep)),
                if s.sorry_server_active {
                    " IN USE"
                } else {
                    " standing by"
                }
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{}: quorum {} (weight up {}, quorum {}, hysteresis {}){sorry}",
            service_name(s.service.as_ref()),
            if s.quorum_up { "up" } else { "DOWN" },
            s.weight_up,
            s.quorum,
            s.hysteresis
        );
    }
    out
}

/// One service and its real servers (sorted by address, then port).
pub fn service_entry(out: &mut String, svc: &ctl::ServiceInfo, fmt: ListFormat) {
    let default_spec = pb::ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default_spec);
    let key = spec.key.as_ref();
    let name = service_name(key);
    let v6 = is_v6(key.and_then(|k| k.vip.as_ref()));
    let view = fmt.view();
    if view == View::Stats {
        let s = svc.stats.unwrap_or_default();
        let _ = write!(out, "{name:<33}");
        stats_columns(out, &s, fmt.exact);
    } else if view == View::Rate {
        let r = svc.rates.unwrap_or_default();
        let _ = write!(out, "{name:<33}");
        for n in [
            r.conns_per_sec,
            r.in_packets_per_sec,
            r.out_packets_per_sec,
            r.in_bytes_per_sec,
            r.out_bytes_per_sec,
        ] {
            out.push_str(&largenum(n, fmt.exact));
        }
    } else {
        let _ = write!(out, "{name} {}", spec.scheduler);
        if let Some(flags) = sched_flags(spec) {
            let _ = write!(out, " ({flags})");
        }
        if let Some(p) = &spec.persistence {
            let _ = write!(out, " persistent {}", p.timeout_s);
            let full = if v6 { 128 } else { 32 };
            let prefix = p.netmask_prefix_len.unwrap_or(full);
            if prefix != full {
                if v6 {
                    let _ = write!(out, " mask {prefix}");
                } else {
                    let _ = write!(out, " mask {}", dotted_mask(prefix));
                }
            }
        }
        if spec.one_packet {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    let mut dests: Vec<&ctl::RealServerInfo> = svc.real_servers.iter().collect();
    if !fmt.nosort {
        dests.sort_by_key(|d| sort_key(d.spec.as_ref().and_then(|s| s.address.as_ref())));
    }
    for d in dests {
        let default_rs = pb::RealServerSpec::default();
        let rs = d.spec.as_ref().unwrap_or(&default_rs);
        let mut dname = addr_port(rs.address.as_ref());
        if !v6 {
            truncate(&mut dname, 28);
        }
        // What the schedulers use: 0 while a health check holds the
        // server down (as ipvsadm shows it under keepalived).
        let weight = d.effective_weight;
        match view {
            View::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                stats_columns(out, &d.stats.unwrap_or_default(), fmt.exact);
                out.push('\n');
            }
            View::Rate => {
                // ipvsadm prints the three per-second counts as they are
                // (" %8llu") and abbreviates only the byte rates.
                let r = d.rates.unwrap_or_default();
                let _ = write!(
                    out,
                    "  -> {dname:<28} {:8} {:8} {:8}",
                    r.conns_per_sec, r.in_packets_per_sec, r.out_packets_per_sec
                );
                out.push_str(&largenum(r.in_bytes_per_sec, fmt.exact));
                out.push_str(&largenum(r.out_bytes_per_sec, fmt.exact));
                out.push('\n');
            }
            View::Thresholds => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                    rs.upper_threshold, rs.lower_threshold, d.active_conns, d.inactive_conns
                );
            }
            View::PersistentConn => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                    weight, d.persistent_conns, d.active_conns, d.inactive_conns
                );
            }
            View::TunInfo => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    method_name(rs.method),
                    tun_info(rs),
                    weight,
                    d.active_conns,
                    d.inactive_conns
                );
            }
            View::Default => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    method_name(rs.method),
                    weight,
                    d.active_conns,
                    d.inactive_conns
                );
            }
        }
    }
}

/// ipvsadm's TunnelInfo column: the tunnel type of a tunnel server,
/// "n/a" for the others.
fn tun_info(rs: &pb::RealServerSpec) -> String {
    if pb::ForwardMethod::try_from(rs.method) != Ok(pb::ForwardMethod::Tunnel) {
        return String::from("n/a");
    }
    let t = rs.tunnel.unwrap_or_default();
    match pb::TunnelType::try_from(t.r#type) {
        Ok(pb::TunnelType::Gue) => format!("gue:{}", t.port),
        Ok(pb::TunnelType::Gre) => String::from("gre"),
        _ => String::from("ipip"),
    }
}

/// The rule set in `ipvsadm -S -n` syntax: one `-A` line per service
/// (ordered by key, as the table comes), then one `-a` line per real
/// server. Exactly ipvsadm 1.31's text for what ipvsadm can express, with
/// three deliberate differences so a `dirctl -R` of it rebuilds the very
/// same table:
///
/// - real servers come in configuration order (the order the schedulers
///   see), where ipvsadm sorts them by address;
/// - `-x`/`-y` follow a real server's weight when its thresholds are set
///   (ipvsadm -S drops them; ipvsadm -R accepts them);
/// - a `--set tcp tcpfin udp` line comes first when the timeouts are not
///   IPVS's defaults (900 120 300); ipvsadm -S never saves timeouts.
///
/// Addresses are always numeric (`-S` and `-S -n` print the same).
pub fn save(table: &pb::ServiceTable) -> String {
    let mut out = String::new();
    if let Some(t) = table.timeouts
        && (t.tcp_timeout_s, t.tcp_fin_timeout_s, t.udp_timeout_s) != (900, 120, 300)
    {
        let _ = writeln!(
            out,
            "--set {} {} {}",
            t.tcp_timeout_s, t.tcp_fin_timeout_s, t.udp_timeout_s
        );
    }
    for svc in &table.services {
        let default_spec = pb::ServiceSpec::default();
        let spec = svc.spec.as_ref().unwrap_or(&default_spec);
        let key = spec.key.clone().unwrap_or_default();
        let v6 = is_v6(key.vip.as_ref());
        let name = if key.fwmark != 0 {
            if v6 || key.family == pb::AddressFamily::Ipv6 as i32 {
                format!("-f {} -6", key.fwmark)
            } else {
                format!("-f {}", key.fwmark)
            }
        } else {
            let opt = match pb::Protocol::try_from(key.protocol) {
                Ok(pb::Protocol::Udp) => "-u",
                _ => "-t",
            };
            format!("{opt} {}", addr_port(key.vip.as_ref()))
        };
        let sched = if spec.scheduler.is_empty() {
            "wlc"
        } else {
            spec.scheduler.as_str()
        };
        let _ = write!(out, "-A {name} -s {sched}");
        if let Some(p) = &spec.persistence {
            let timeout = if p.timeout_s == 0 { 360 } else { p.timeout_s };
            let _ = write!(out, " -p {timeout}");
            let full = if v6 { 128 } else { 32 };
            let prefix = p.netmask_prefix_len.unwrap_or(full);
            if prefix != full {
                if v6 {
                    let _ = write!(out, " -M {prefix}");
                } else {
                    let _ = write!(out, " -M {}", dotted_mask(prefix));
                }
            }
        }
        if spec.one_packet {
            out.push_str(" -o");
        }
        if let Some(flags) = sched_flags(spec) {
            let _ = write!(out, " -b {flags}");
        }
        out.push('\n');
        for rs in &svc.real_servers {
            let switch = match pb::ForwardMethod::try_from(rs.method) {
                Ok(pb::ForwardMethod::Tunnel) => "-i",
                Ok(pb::ForwardMethod::Nat) => "-m",
                _ => "-g",
            };
            let _ = write!(
                out,
                "-a {name} -r {} {switch} -w {}",
                addr_port(rs.address.as_ref()),
                rs.weight.unwrap_or(1)
            );
            if switch == "-i" {
                out.push_str(" --tun-type ipip");
            }
            if rs.upper_threshold != 0 {
                let _ = write!(out, " -x {}", rs.upper_threshold);
            }
            if rs.lower_threshold != 0 {
                let _ = write!(out, " -y {}", rs.lower_threshold);
            }
            out.push('\n');
        }
    }
    out
}

fn sort_key(ep: Option<&pb::Endpoint>) -> (Option<IpAddr>, u32) {
    ep.map_or((None, 0), |e| (e.ip.parse().ok(), e.port))
}

fn stats_columns(out: &mut String, s: &pb::Stats, exact: bool) {
    for n in [
        s.conns,
        s.in_packets,
        s.out_packets,
        s.in_bytes,
        s.out_bytes,
    ] {
        out.push_str(&largenum(n, exact));
    }
}

/// `ipvsadm -Ln` (`--stats`): the banner, the titles and every service.
pub fn list_all(services: &[ctl::ServiceInfo], fmt: ListFormat) -> String {
    let mut out = format!("{BANNER}\n");
    out.push_str(&title(fmt));
    for s in services {
        service_entry(&mut out, s, fmt);
    }
    out
}

/// `ipvsadm -Ln -t VIP:PORT`: the titles and one service (no banner).
pub fn list_one(service: &ctl::ServiceInfo, fmt: ListFormat) -> String {
    let mut out = title(fmt);
    service_entry(&mut out, service, fmt);
    out
}

/// The title lines of `ipvsadm -Lnc`.
pub fn connections_title() -> String {
    format!(
        "IPVS connection entries\npro expire {:<11} {:<18} {:<18} {}\n",
        "state", "source", "virtual", "destination"
    )
}

/// One line of `ipvsadm -Lnc`: protocol, time left as mm:ss, state, then
/// client, virtual and real server addresses.
pub fn connection_line(out: &mut String, c: &ctl::Connection) {
    let default_entry = pb::ConnEntry::default();
    let e = c.entry.as_ref().unwrap_or(&default_entry);
    let secs = e.remaining_timeout_ms / 1000;
    let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
    let state = if c.state_name.is_empty() {
        "NONE"
    } else {
        c.state_name.as_str()
    };
    let _ = writeln!(
        out,
        "{:<3} {expire:<6} {state:<11} {:<18} {:<18} {}",
        protocol_name(e.protocol),
        addr_port(e.client.as_ref()),
        addr_port(e.vip.as_ref()),
        addr_port(e.real_server.as_ref())
    );
}

/// `ipvsadm -Lnc` for a list of entries.
pub fn list_connections(conns: &[ctl::Connection]) -> String {
    let mut out = connections_title();
    for c in conns {
        connection_line(&mut out, c);
    }
    out
}

/// `ipvsadm -L --timeout`.
pub fn timeouts(t: &pb::Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp_timeout_s, t.tcp_fin_timeout_s, t.udp_timeout_s
    )
}

/// A socket address as a wire endpoint (for building requests).
pub fn endpoint(addr: SocketAddr) -> pb::Endpoint {
    pb::Endpoint {
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Option<pb::Endpoint> {
        Some(endpoint(s.parse().unwrap()))
    }

    fn stats(base: u64) -> Option<pb::Stats> {
        Some(pb::Stats {
            conns: base,
            in_packets: base * 10,
            out_packets: base * 7,
            in_bytes: base * 10 * 1_480,
            out_bytes: base * 7 * 9_000,
        })
    }

    fn rs(
        addr: &str,
        method: pb::ForwardMethod,
        weight: u32,
        a: u32,
        i: u32,
    ) -> ctl::RealServerInfo {
        ctl::RealServerInfo {
            spec: Some(pb::RealServerSpec {
                address: ep(addr),
                method: method as i32,
                weight: Some(weight),
                ..Default::default()
            }),
            active_conns: a,
            inactive_conns: i,
            effective_weight: weight,
            stats: stats(u64::from(a + i) * 1_000),
            ..Default::default()
        }
    }

    /// A fixed table: a persistent DR web service, a sh NAT service with
    /// flags, a UDP DNS service, an IPv6 service.
    fn table() -> Vec<ctl::ServiceInfo> {
        let svc = |proto: pb::Protocol, vip: &str, sched: &str| pb::ServiceSpec {
            key: Some(pb::ServiceKey {
                protocol: proto as i32,
                vip: ep(vip),
                ..Default::default()
            }),
            scheduler: sched.into(),
            scheduler_flags: Some(pb::SchedulerFlags {
                mh_table_size: 4093,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut web = svc(pb::Protocol::Tcp, "192.0.2.10:80", "wlc");
        web.persistence = Some(pb::Persistence {
            timeout_s: 360,
            netmask_prefix_len: Some(24),
        });
        let mut nat = svc(pb::Protocol::Tcp, "192.0.2.10:8080", "sh");
        nat.scheduler_flags = Some(pb::SchedulerFlags {
            hash_fallback: true,
            hash_port: true,
            mh_table_size: 4093,
        });
        let dns = svc(pb::Protocol::Udp, "192.0.2.53:53", "rr");
        let v6 = svc(pb::Protocol::Tcp, "[2001:db8::10]:443", "wrr");
        vec![
            ctl::ServiceInfo {
                spec: Some(web),
                real_servers: vec![
                    rs("10.0.0.22:80", pb::ForwardMethod::Dr, 1, 3, 12),
                    rs("10.0.0.21:80", pb::ForwardMethod::Dr, 3, 140, 2_000_000),
                    rs("10.0.0.3:80", pb::ForwardMethod::Tunnel, 0, 0, 0),
                ],
                stats: Some(pb::Stats {
                    conns: 123_456_789,
                    in_packets: 9_876_543_210,
                    out_packets: 0,
                    in_bytes: 1_234_567_890_123_456,
                    out_bytes: 99_999_999,
                }),
                ..Default::default()
            },
            ctl::ServiceInfo {
                spec: Some(nat),
                real_servers: vec![rs("10.0.1.1:8000", pb::ForwardMethod::Nat, 65535, 1, 0)],
                stats: stats(1),
                ..Default::default()
            },
            ctl::ServiceInfo {
                spec: Some(dns),
                real_servers: vec![rs("10.0.0.21:53", pb::ForwardMethod::Dr, 1, 0, 42)],
                stats: stats(42),
                ..Default::default()
            },
            ctl::ServiceInfo {
                spec: Some(v6),
                real_servers: vec![rs("[2001:db8::21]:443", pb::ForwardMethod::Dr, 2, 1, 1)],
                stats: stats(2),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn golden_list_numeric() {
        let got = list_all(&table(), ListFormat::default());
        let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 wlc persistent 360 mask 255.255.255.0
  -> 10.0.0.3:80                  Tunnel  0      0          0         
  -> 10.0.0.21:80                 Route   3      140        2000000   
  -> 10.0.0.22:80                 Route   1      3          12        
TCP  192.0.2.10:8080 sh (sh-fallback,sh-port)
  -> 10.0.1.1:8000                Masq    65535  1          0         
UDP  192.0.2.53:53 rr
  -> 10.0.0.21:53                 Route   1      0          42        
TCP  [2001:db8::10]:443 wrr
  -> [2001:db8::21]:443           Route   2      1          1         
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_list_stats() {
        let fmt = ListFormat {
            stats: true,
            ..Default::default()
        };
        let got = list_all(&table(), fmt);
        let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                 123456K    9876M        0    1234T 99999999
  -> 10.0.0.3:80                         0        0        0        0        0
  -> 10.0.0.21:80                    2000M   20001M   14000M   29602G     126T
  -> 10.0.0.22:80                    15000   150000   105000  222000K  945000K
TCP  192.0.2.10:8080                     1       10        7    14800    63000
  -> 10.0.1.1:8000                    1000    10000     7000 14800000 63000000
UDP  192.0.2.53:53                      42      420      294   621600  2646000
  -> 10.0.0.21:53                    42000   420000   294000  621600K    2646M
TCP  [2001:db8::10]:443                  2       20       14    29600   126000
  -> [2001:db8::21]:443               2000    20000    14000 29600000  126000K
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_list_stats_exact() {
        let fmt = ListFormat {
            stats: true,
            exact: true,
            ..Default::default()
        };
        let got = list_one(&table()[0], fmt);
        let want = "\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                123456789 9876543210        0 1234567890123456 99999999
  -> 10.0.0.3:80                         0        0        0        0        0
  -> 10.0.0.21:80                 2000140000 20001400000 14000980000 29602072000000 126008820000000
  -> 10.0.0.22:80                    15000   150000   105000 222000000 945000000
";
        assert_eq!(got, want, "\n{got}");
    }

    /// The fixed table with rates, thresholds and persistent connections.
    fn table_with_figures() -> Vec<ctl::ServiceInfo> {
        let mut t = table();
        for (i, s) in t.iter_mut().enumerate() {
            let i = i as u64;
            s.rates = Some(pb::Rates {
                conns_per_sec: 10 * i,
                in_packets_per_sec: 120 * i,
                out_packets_per_sec: 0,
                in_bytes_per_sec: 98_765 * i,
                out_bytes_per_sec: 123_456_789 * i,
            });
            for (j, d) in s.real_servers.iter_mut().enumerate() {
                let j = j as u64 + 1;
                d.rates = Some(pb::Rates {
                    conns_per_sec: 3 * j,
                    in_packets_per_sec: 40 * j,
                    out_packets_per_sec: 7 * j,
                    in_bytes_per_sec: 1_000_000 * j,
                    out_bytes_per_sec: 100_000_000 * j,
                });
                d.persistent_conns = 5 * j as u32;
                let spec = d.spec.as_mut().unwrap();
                spec.upper_threshold = 100 * j as u32;
                spec.lower_threshold = 75 * j as u32;
            }
        }
        t
    }

    #[test]
    fn golden_list_rate() {
        let fmt = ListFormat {
            rate: true,
            ..Default::default()
        };
        let got = list_all(&table_with_figures(), fmt);
        let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.0.2.10:80                       0        0        0        0        0
  -> 10.0.0.3:80                         9      120       21  3000000  300000K
  -> 10.0.0.21:80                        6       80       14  2000000  200000K
  -> 10.0.0.22:80                        3       40        7  1000000  100000K
TCP  192.0.2.10:8080                    10      120        0    98765  123456K
  -> 10.0.1.1:8000                       3       40        7  1000000  100000K
UDP  192.0.2.53:53                      20      240        0   197530  246913K
  -> 10.0.0.21:53                        3       40        7  1000000  100000K
TCP  [2001:db8::10]:443                 30      360        0   296295  370370K
  -> [2001:db8::21]:443                  3       40        7  1000000  100000K
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_list_thresholds_and_persistent_conn() {
        let t = table_with_figures();
        let got = list_one(
            &t[0],
            ListFormat {
                thresholds: true,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.10:80 wlc persistent 360 mask 255.255.255.0
  -> 10.0.0.3:80                  300        225        0          0         
  -> 10.0.0.21:80                 200        150        140        2000000   
  -> 10.0.0.22:80                 100        75         3          12        
";
        assert_eq!(got, want, "\n{got}");
        let got = list_one(
            &t[0],
            ListFormat {
                persistent_conn: true,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.10:80 wlc persistent 360 mask 255.255.255.0
  -> 10.0.0.3:80                  0         15          0          0         
  -> 10.0.0.21:80                 3         10          140        2000000   
  -> 10.0.0.22:80                 1         5           3          12        
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_list_tun_info_and_nosort() {
        let got = list_one(
            &table()[0],
            ListFormat {
                tun_info: true,
                nosort: true,
                ..Default::default()
            },
        );
        let want = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.0.2.10:80 wlc persistent 360 mask 255.255.255.0
  -> 10.0.0.22:80                 Route   n/a           1      3          12        
  -> 10.0.0.21:80                 Route   n/a           3      140        2000000   
  -> 10.0.0.3:80                  Tunnel  ipip          0      0          0         
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_save() {
        let t = table_with_figures();
        let table = pb::ServiceTable {
            version: 7,
            services: t
                .iter()
                .map(|s| pb::ServiceConfig {
                    spec: s.spec.clone(),
                    real_servers: s
                        .real_servers
                        .iter()
                        .map(|d| d.spec.clone().unwrap())
                        .collect(),
                })
                .collect(),
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 900,
                tcp_fin_timeout_s: 120,
                udp_timeout_s: 300,
            }),
        };
        let got = save(&table);
        let want = "\
-A -t 192.0.2.10:80 -s wlc -p 360 -M 255.255.255.0
-a -t 192.0.2.10:80 -r 10.0.0.22:80 -g -w 1 -x 100 -y 75
-a -t 192.0.2.10:80 -r 10.0.0.21:80 -g -w 3 -x 200 -y 150
-a -t 192.0.2.10:80 -r 10.0.0.3:80 -i -w 0 --tun-type ipip -x 300 -y 225
-A -t 192.0.2.10:8080 -s sh -b sh-fallback,sh-port
-a -t 192.0.2.10:8080 -r 10.0.1.1:8000 -m -w 65535 -x 100 -y 75
-A -u 192.0.2.53:53 -s rr
-a -u 192.0.2.53:53 -r 10.0.0.21:53 -g -w 1 -x 100 -y 75
-A -t [2001:db8::10]:443 -s wrr
-a -t [2001:db8::10]:443 -r [2001:db8::21]:443 -g -w 2 -x 100 -y 75
";
        assert_eq!(got, want, "\n{got}");
        // Without thresholds and with default timeouts, ipvsadm's own text.
        let mut plain = table.clone();
        for s in &mut plain.services {
            for r in &mut s.real_servers {
                r.upper_threshold = 0;
                r.lower_threshold = 0;
            }
        }
        assert!(!save(&plain).contains(" -x "));
        plain.timeouts = Some(pb::Timeouts {
            tcp_timeout_s: 3600,
            tcp_fin_timeout_s: 120,
            udp_timeout_s: 60,
        });
        assert!(save(&plain).starts_with("--set 3600 120 60\n-A -t 192.0.2.10:80 "));
    }

    #[test]
    fn golden_connections() {
        let conn = |proto: pb::Protocol, ms: u32, state: &str, c: &str, v: &str, d: &str| {
            ctl::Connection {
                entry: Some(pb::ConnEntry {
                    protocol: proto as i32,
                    client: ep(c),
                    vip: ep(v),
                    real_server: ep(d),
                    remaining_timeout_ms: ms,
                    ..Default::default()
                }),
                from_sync: false,
                state_name: state.into(),
            }
        };
        let got = list_connections(&[
            conn(
                pb::Protocol::Tcp,
                359_999,
                "NONE",
                "203.0.113.0:0",
                "192.0.2.10:80",
                "10.0.0.21:80",
            ),
            conn(
                pb::Protocol::Tcp,
                899_400,
                "ESTABLISHED",
                "203.0.113.7:40312",
                "192.0.2.10:80",
                "10.0.0.21:80",
            ),
            conn(
                pb::Protocol::Tcp,
                59_000,
                "SYN_RECV",
                "198.51.100.200:65535",
                "192.0.2.10:8080",
                "10.0.1.1:8000",
            ),
            conn(
                pb::Protocol::Udp,
                300_000,
                "UDP",
                "203.0.113.7:5353",
                "192.0.2.53:53",
                "10.0.0.21:53",
            ),
            conn(
                pb::Protocol::Tcp,
                9_999,
                "CLOSE",
                "[2001:db8::7]:40000",
                "[2001:db8::10]:443",
                "[2001:db8::21]:443",
            ),
        ]);
        let want = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 05:59  NONE        203.0.113.0:0      192.0.2.10:80      10.0.0.21:80
TCP 14:59  ESTABLISHED 203.0.113.7:40312  192.0.2.10:80      10.0.0.21:80
TCP 00:59  SYN_RECV    198.51.100.200:65535 192.0.2.10:8080    10.0.1.1:8000
UDP 05:00  UDP         203.0.113.7:5353   192.0.2.53:53      10.0.0.21:53
TCP 00:09  CLOSE       [2001:db8::7]:40000 [2001:db8::10]:443 [2001:db8::21]:443
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn golden_timeouts() {
        let t = pb::Timeouts {
            tcp_timeout_s: 900,
            tcp_fin_timeout_s: 120,
            udp_timeout_s: 300,
        };
        assert_eq!(timeouts(&t), "Timeout (tcp tcpfin udp): 900 120 300\n");
    }

    #[test]
    fn the_listing_shows_the_effective_weight() {
        let mut svc = table().remove(0);
        svc.real_servers[0].effective_weight = 0; // held down by its check
        let text = list_one(&svc, ListFormat::default());
        let line = text
            .lines()
            .find(|l| l.contains("->") && !l.contains("RemoteAddress"));
        assert!(
            line.unwrap().split_whitespace().nth(3) == Some("0"),
            "weight 0 while down:\n{text}"
        );
    }

    #[test]
    fn health_listing() {
        let resp = ctl::GetHealthResponse {
            entries: vec![ctl::RealServerHealthEntry {
                service: Some(pb::ServiceKey {
                    protocol: pb::Protocol::Tcp as i32,
                    vip: ep("10.0.0.100:80"),
                    ..Default::default()
                }),
                real_server: ep("10.0.1.1:80"),
                health: Some(ctl::RealServerHealth {
                    state: ctl::HealthState::Down as i32,
                    configured_weight: 3,
                    effective_weight: 0,
                    checker: "http GET /health".into(),
                    state_since_unix_ms: 90_000,
                    last_failure_reason: "HTTP 500".into(),
                    last_failure_unix_ms: 99_500,
                    ..Default::default()
                }),
            }],
            services: vec![ctl::ServiceHealth {
                service: Some(pb::ServiceKey {
                    protocol: pb::Protocol::Tcp as i32,
                    vip: ep("10.0.0.100:80"),
                    ..Default::default()
                }),
                quorum_up: false,
                quorum: 1,
                sorry_server: ep("10.0.1.9:80"),
                sorry_server_active: true,
                ..Default::default()
            }],
        };
        let text = health(&resp, 100_000);
        let line = text.lines().nth(1).unwrap();
        for want in [
            "TCP  10.0.0.100:80",
            "10.0.1.1:80",
            "DOWN",
            "0/3",
            "http GET /health",
            "10.0s",
            "HTTP 500 (0.5s ago)",
        ] {
            assert!(line.contains(want), "{want:?} in {line:?}");
        }
        assert!(
            text.contains("quorum DOWN") && text.contains("10.0.1.9:80 IN USE"),
            "{text}"
        );
        assert_eq!(age(3_725_000), "1h02m");
    }

    #[test]
    fn largenum_matches_ipvsadm() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(u64::MAX, false), "18446744T");
        assert_eq!(largenum(12_345_678, true), " 12345678");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(dotted_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(dotted_mask(20), Ipv4Addr::new(255, 255, 240, 0));
    }

    #[test]
    fn long_names_are_cut_like_ipvsadm() {
        let mut s = String::from("TCP  255.255.255.255:65535-and-then-some");
        truncate(&mut s, 33);
        assert_eq!(s.len(), 33);
        // Missing pieces render, never panic.
        let mut out = String::new();
        service_entry(
            &mut out,
            &ctl::ServiceInfo::default(),
            ListFormat::default(),
        );
        connection_line(&mut out, &ctl::Connection::default());
        assert!(out.contains('?'));
    }
}
