//! ipvsadm's command-line syntax, parsed by hand.
//!
//! ipvsadm (popt) takes single-dash letters that may be bundled (`-Ln`,
//! `-Lnc`), values either in the same word (`-srr`) or the next one
//! (`-s rr`), an optional value for `-p` (`-p`, `-p 600`, `-p600`), long
//! forms (`--scheduler rr`, `--scheduler=rr`), and `--set` with three
//! positional values. Exactly one command per invocation; the options each
//! command allows and requires follow ipvsadm's table, and so do its error
//! sentences ("Illegal 'weight' option with the 'add-service' command").
//!
//! Addresses are numeric (`10.0.0.1:80`, `[2001:db8::1]:80`): dirctl
//! resolves no host names. Ports may be given by the well-known service
//! names `ipvsadm -S` prints without `-n` (`10.0.0.1:http`, see
//! [`port_by_name`]). What ipvsadm can do but this director cannot
//! (firewall marks, one-packet scheduling, persistence engines, GUE/GRE
//! tunnels, the kernel sync daemon) is refused with a sentence saying so,
//! never ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::sched::SchedulerKind;
use crate::types::{ForwardMethod, Protocol};

/// ipvsadm's `MAX_TIMEOUT` for `--set` and `-p`: 31 days.
pub const MAX_TIMEOUT_S: u32 = 86_400 * 31;

/// A virtual service as `-t`/`-u` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceArg {
    /// `-t` TCP, `-u` UDP.
    pub protocol: Protocol,
    /// VIP and port (port 0 when none was given).
    pub vip: SocketAddr,
}

/// Scheduler flags (`-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedFlags {
    /// `flag-1`, `sh-fallback`, `mh-fallback`.
    pub fallback: bool,
    /// `flag-2`, `sh-port`, `mh-port`.
    pub port: bool,
}

/// `-A` / `-E`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOpts {
    /// The service.
    pub service: ServiceArg,
    /// `-s`; `None` = the server's default (wlc).
    pub scheduler: Option<SchedulerKind>,
    /// `-p [timeout]`: `Some(None)` is `-p` without a value (360 s).
    pub persistent: Option<Option<u32>>,
    /// `-M`, as a prefix length.
    pub netmask: Option<u8>,
    /// `-b`.
    pub flags: SchedFlags,
}

/// `-a` / `-e`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOpts {
    /// The service.
    pub service: ServiceArg,
    /// `-r`; port 0 when none was given (= the virtual port).
    pub server: SocketAddr,
    /// `-g` / `-i` / `-m`; `None` = DR.
    pub method: Option<ForwardMethod>,
    /// `-w`; `None` = 1.
    pub weight: Option<u32>,
    /// `-x`.
    pub upper: Option<u32>,
    /// `-y`.
    pub lower: Option<u32>,
}

/// `-L` / `-l` and what to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOpts {
    /// `-n` (always numeric here; accepted for compatibility).
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--exact`.
    pub exact: bool,
    /// `-c`: the connection table.
    pub connections: bool,
    /// `--timeout`.
    pub timeout: bool,
    /// `-t`/`-u`: one service only.
    pub service: Option<ServiceArg>,
    /// `--rate`: rates instead of weights and connections.
    pub rate: bool,
    /// `--thresholds`: upper and lower thresholds.
    pub thresholds: bool,
    /// `--persistent-conn`: persistent connections (templates) per server.
    pub persistent_conn: bool,
    /// `--tun-info`: the tunnel type of each real server.
    pub tun_info: bool,
    /// `--nosort`: real servers in configuration order (`--sort`, the
    /// default, orders them by address).
    pub nosort: bool,
}

/// One ipvsadm command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-A`.
    AddService(ServiceOpts),
    /// `-E`.
    EditService(ServiceOpts),
    /// `-D`.
    DeleteService(ServiceArg),
    /// `-C`.
    Clear,
    /// `-a`.
    AddServer(ServerOpts),
    /// `-e`.
    EditServer(ServerOpts),
    /// `-d`.
    DeleteServer {
        /// The service.
        service: ServiceArg,
        /// The real server (port 0 = the virtual port).
        server: SocketAddr,
    },
    /// `-L`, `-l`, or no arguments at all.
    List(ListOpts),
    /// `-Z`, for one service or all.
    Zero(Option<ServiceArg>),
    /// `-S [-n]`: the rules in `ipvsadm -R` syntax.
    Save,
    /// `-R`: rules from stdin, applied all or nothing.
    Restore,
    /// `--set tcp tcpfin udp` (0 = unchanged).
    SetTimeouts {
        /// ESTABLISHED timeout, s.
        tcp: u32,
        /// FIN_WAIT timeout, s.
        tcpfin: u32,
        /// UDP timeout, s.
        udp: u32,
    },
    /// `-h`, `--help`.
    Help,
    /// `-v`, `--version`.
    Version,
}

/// A parsed command line: the command and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `--server ADDR`, if given.
    pub server: Option<String>,
    /// The command.
    pub command: Command,
}

/// Why a command line was refused: a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError(msg.into()))
}

/// What an option is, for the command/option table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Stats,
    Exact,
    SchedFlags,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
    NoSort,
    TunType,
}

impl Opt {
    /// ipvsadm's option name in error messages.
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Timeout => "timeout",
            Opt::Stats => "stats",
            Opt::Exact => "exact",
            Opt::SchedFlags => "sched-flags",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::TunInfo => "tun-info",
            Opt::NoSort => "nosort",
            Opt::TunType => "tun-type",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    EditDest,
    DelDest,
    SetTimeout,
    Zero,
    Save,
    Restore,
    Help,
    Version,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::EditDest => "edit-server",
            Cmd::DelDest => "delete-server",
            Cmd::SetTimeout => "set",
            Cmd::Zero => "zero",
            Cmd::Save => "save",
            Cmd::Restore => "restore",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }

    /// (allowed, required) options, after ipvsadm's commands_v_options.
    fn table(self) -> (&'static [Opt], &'static [Opt]) {
        use Opt::*;
        match self {
            Cmd::Add | Cmd::Edit => (
                &[Service, Scheduler, Persistent, Netmask, SchedFlags],
                &[Service],
            ),
            Cmd::Del => (&[Service], &[Service]),
            Cmd::List => (
                &[
                    Numeric,
                    Connection,
                    Service,
                    Timeout,
                    Stats,
                    Exact,
                    Rate,
                    Thresholds,
                    PersistentConn,
                    TunInfo,
                    NoSort,
                ],
                &[],
            ),
            Cmd::AddDest | Cmd::EditDest => (
                &[
                    Service, Server, Forward, Weight, UThreshold, LThreshold, TunType,
                ],
                &[Service, Server],
            ),
            Cmd::Save => (&[Numeric], &[]),
            Cmd::DelDest => (&[Service, Server], &[Service, Server]),
            Cmd::Zero => (&[Service], &[]),
            Cmd::Flush | Cmd::SetTimeout | Cmd::Restore | Cmd::Help | Cmd::Version => (&[], &[]),
        }
    }
}

/// Everything seen on the command line before it is checked.
#[derive(Debug, Default)]
struct Raw {
    cmd: Option<Cmd>,
    opts: Vec<Opt>,
    server_addr: Option<String>,
    service: Option<ServiceArg>,
    scheduler: Option<SchedulerKind>,
    persistent: Option<Option<u32>>,
    netmask: Option<String>,
    real_server: Option<SocketAddr>,
    method: Option<ForwardMethod>,
    weight: Option<u32>,
    upper: Option<u32>,
    lower: Option<u32>,
    flags: SchedFlags,
    timeouts: Option<(u32, u32, u32)>,
}

impl Raw {
    fn set_cmd(&mut self, cmd: Cmd) -> Result<(), ArgError> {
        match self.cmd {
            Some(c) if c != cmd => err("multiple commands specified"),
            _ => {
                self.cmd = Some(cmd);
                Ok(())
            }
        }
    }

    fn set_opt(&mut self, opt: Opt) -> Result<(), ArgError> {
        if self.opts.contains(&opt) {
            return err(format!("multiple '{}' options specified", opt.name()));
        }
        self.opts.push(opt);
        Ok(())
    }
}

/// Option letters that take no value.
fn flag_letter(c: char) -> bool {
    "AEDCLlZaedghinmcvSR".contains(c)
}

/// Option letters that take a value (`p` takes an optional one).
fn value_letter(c: char) -> bool {
    "tusMrwxyb".contains(c)
}

/// What ipvsadm takes but this director cannot do, by option letter.
fn unsupported_letter(c: char) -> Option<&'static str> {
    match c {
        'f' => Some(
            "firewall-mark services (-f) are not supported by this director; \
             use -t or -u with an address and port",
        ),
        'o' => Some("one-packet scheduling (-o) is not supported by this director"),
        '6' => Some("firewall-mark services (-f ... -6) are not supported by this director"),
        _ => None,
    }
}

/// What ipvsadm takes but this director cannot do, by long option.
fn unsupported_long(name: &str) -> Option<&'static str> {
    match name {
        "fwmark-service" => unsupported_letter('f'),
        "ops" => unsupported_letter('o'),
        "pe" => Some("persistence engines (--pe) are not supported by this director"),
        "tun-port" | "tun-nocsum" | "tun-csum" | "tun-remcsum" => Some(
            "GUE and GRE tunnels (--tun-port, --tun-*csum) are not supported by this \
             director; only IPIP (-i, --tun-type ipip)",
        ),
        "start-daemon" | "stop-daemon" | "daemon" | "mcast-interface" | "syncid"
        | "sync-maxlen" | "mcast-group" | "mcast-port" | "mcast-ttl" => Some(
            "the IPVS sync daemon is not part of this director: connection sync runs \
             over gRPC (see the [sync] configuration and `dirctl status`)",
        ),
        _ => None,
    }
}

/// Parse ipvsadm-syntax arguments (without the program name).
pub fn parse<I, S>(args: I) -> Result<Invocation, ArgError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
    let mut raw = Raw::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            long_option(&mut raw, name, inline, &args, &mut i)?;
        } else if let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) {
            for (at, c) in letters.char_indices() {
                let rest = &letters[at + c.len_utf8()..];
                if flag_letter(c) {
                    apply_letter(&mut raw, c, None)?;
                } else if c == 'p' {
                    let value = if !rest.is_empty() {
                        Some(rest.to_owned())
                    } else {
                        take_optional_number(&args, &mut i)
                    };
                    apply_letter(&mut raw, c, value)?;
                    break;
                } else if value_letter(c) {
                    let value = if !rest.is_empty() {
                        rest.to_owned()
                    } else {
                        take_value(&args, &mut i, &format!("-{c}"))?
                    };
                    apply_letter(&mut raw, c, Some(value))?;
                    break;
                } else if let Some(why) = unsupported_letter(c) {
                    return err(why);
                } else {
                    return err(format!("unknown option '-{c}'"));
                }
            }
        } else {
            return err(format!("unexpected argument '{arg}'"));
        }
    }
    finish(raw)
}

fn take_value(args: &[String], i: &mut usize, what: &str) -> Result<String, ArgError> {
    match args.get(*i) {
        Some(v) => {
            *i += 1;
            Ok(v.clone())
        }
        None => err(format!("option '{what}' needs a value")),
    }
}

/// `-p`'s optional timeout: the next word if it is a number.
fn take_optional_number(args: &[String], i: &mut usize) -> Option<String> {
    let next = args.get(*i)?;
    if !next.is_empty() && next.bytes().all(|b| b.is_ascii_digit()) {
        *i += 1;
        Some(next.clone())
    } else {
        None
    }
}

fn long_option(
    raw: &mut Raw,
    name: &str,
    inline: Option<String>,
    args: &[String],
    i: &mut usize,
) -> Result<(), ArgError> {
    let letter = match name {
        "add-service" => 'A',
        "edit-service" => 'E',
        "delete-service" => 'D',
        "clear" => 'C',
        "list" => 'L',
        "zero" => 'Z',
        "save" => 'S',
        "restore" => 'R',
        "add-server" => 'a',
        "edit-server" => 'e',
        "delete-server" => 'd',
        "help" => 'h',
        "version" => 'v',
        "tcp-service" => 't',
        "udp-service" => 'u',
        "scheduler" => 's',
        "persistent" => 'p',
        "netmask" => 'M',
        "real-server" => 'r',
        "gatewaying" => 'g',
        "ipip" => 'i',
        "masquerading" => 'm',
        "weight" => 'w',
        "u-threshold" => 'x',
        "l-threshold" => 'y',
        "numeric" => 'n',
        "connection" => 'c',
        "sched-flags" => 'b',
        "exact" | "X" => {
            no_inline(name, &inline)?;
            return raw.set_opt(Opt::Exact);
        }
        "stats" => {
            no_inline(name, &inline)?;
            return raw.set_opt(Opt::Stats);
        }
        "timeout" => {
            no_inline(name, &inline)?;
            return raw.set_opt(Opt::Timeout);
        }
        "sort" => return no_inline(name, &inline),
        "rate" | "thresholds" | "persistent-conn" | "tun-info" | "nosort" => {
            no_inline(name, &inline)?;
            return raw.set_opt(match name {
                "rate" => Opt::Rate,
                "thresholds" => Opt::Thresholds,
                "persistent-conn" => Opt::PersistentConn,
                "tun-info" => Opt::TunInfo,
                _ => Opt::NoSort,
            });
        }
        "tun-type" => {
            let v = match inline {
                Some(v) => v,
                None => take_value(args, i, "--tun-type")?,
            };
            raw.set_opt(Opt::TunType)?;
            return match v.as_str() {
                "ipip" => Ok(()),
                "gue" | "gre" => err(format!(
                    "--tun-type {v}: GUE and GRE tunnels are not supported by this director; \
                     only ipip"
                )),
                other => err(format!(
                    "invalid tunnel type {other:?} (expected ipip, gue or gre)"
                )),
            };
        }
        "server" => {
            let v = match inline {
                Some(v) => v,
                None => take_value(args, i, "--server")?,
            };
            raw.server_addr = Some(v);
            return Ok(());
        }
        "set" => {
            no_inline(name, &inline)?;
            raw.set_cmd(Cmd::SetTimeout)?;
            let mut v = [0u32; 3];
            for (slot, what) in v.iter_mut().zip(["tcp", "tcpfin", "udp"]) {
                let s = args.get(*i).ok_or_else(|| {
                    ArgError("--set needs three values: tcp tcpfin udp (0 = unchanged)".into())
                })?;
                *i += 1;
                *slot = parse_timeout(what, s, 0)?;
            }
            raw.timeouts = Some((v[0], v[1], v[2]));
            return Ok(());
        }
        other => {
            return err(match unsupported_long(other) {
                Some(why) => why.to_owned(),
                None => format!("unknown option '--{name}'"),
            });
        }
    };
    if flag_letter(letter) {
        no_inline(name, &inline)?;
        apply_letter(raw, letter, None)
    } else if letter == 'p' {
        let v = inline.or_else(|| take_optional_number(args, i));
        apply_letter(raw, letter, v)
    } else {
        let v = match inline {
            Some(v) => v,
            None => take_value(args, i, &format!("--{name}"))?,
        };
        apply_letter(raw, letter, Some(v))
    }
}

fn no_inline(name: &str, inline: &Option<String>) -> Result<(), ArgError> {
    match inline {
        Some(_) => err(format!("option '--{name}' takes no value")),
        None => Ok(()),
    }
}

fn apply_letter(raw: &mut Raw, c: char, value: Option<String>) -> Result<(), ArgError> {
    let v = || value.clone().unwrap_or_default();
    match c {
        'A' => raw.set_cmd(Cmd::Add),
        'E' => raw.set_cmd(Cmd::Edit),
        'D' => raw.set_cmd(Cmd::Del),
        'C' => raw.set_cmd(Cmd::Flush),
        'L' | 'l' => raw.set_cmd(Cmd::List),
        'Z' => raw.set_cmd(Cmd::Zero),
        'S' => raw.set_cmd(Cmd::Save),
        'R' => raw.set_cmd(Cmd::Restore),
        'a' => raw.set_cmd(Cmd::AddDest),
        'e' => raw.set_cmd(Cmd::EditDest),
        'd' => raw.set_cmd(Cmd::DelDest),
        'h' => raw.set_cmd(Cmd::Help),
        'v' => raw.set_cmd(Cmd::Version),
        'n' => raw.set_opt(Opt::Numeric),
        'c' => raw.set_opt(Opt::Connection),
        't' | 'u' => {
            raw.set_opt(Opt::Service)?;
            let protocol = if c == 't' {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            raw.service = Some(ServiceArg {
                protocol,
                vip: parse_addr("service address", &v())?,
            });
            Ok(())
        }
        's' => {
            raw.set_opt(Opt::Scheduler)?;
            raw.scheduler = Some(v().parse().map_err(ArgError)?);
            Ok(())
        }
        'p' => {
            raw.set_opt(Opt::Persistent)?;
            raw.persistent = Some(
                value
                    .as_deref()
                    .map(|s| parse_timeout("persistent", s, 1))
                    .transpose()?,
            );
            Ok(())
        }
        'M' => {
            raw.set_opt(Opt::Netmask)?;
            raw.netmask = Some(v());
            Ok(())
        }
        'r' => {
            raw.set_opt(Opt::Server)?;
            raw.real_server = Some(parse_addr("server address", &v())?);
            Ok(())
        }
        'g' | 'i' | 'm' => {
            raw.set_opt(Opt::Forward)?;
            raw.method = Some(match c {
                'g' => ForwardMethod::DirectRouting,
                'i' => ForwardMethod::Tunnel,
                _ => ForwardMethod::Masquerade,
            });
            Ok(())
        }
        'w' => {
            raw.set_opt(Opt::Weight)?;
            raw.weight = Some(parse_number("weight", &v(), 0, 65_535)?);
            Ok(())
        }
        'x' => {
            raw.set_opt(Opt::UThreshold)?;
            raw.upper = Some(parse_number("u-threshold", &v(), 0, i32::MAX as u32)?);
            Ok(())
        }
        'y' => {
            raw.set_opt(Opt::LThreshold)?;
            raw.lower = Some(parse_number("l-threshold", &v(), 0, i32::MAX as u32)?);
            Ok(())
        }
        'b' => {
            raw.set_opt(Opt::SchedFlags)?;
            raw.flags = parse_sched_flags(&v())?;
            Ok(())
        }
        other => err(format!("unknown option '-{other}'")),
    }
}

fn parse_number(what: &str, s: &str, min: u32, max: u32) -> Result<u32, ArgError> {
    match s.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(format!(
            "illegal {what} specified: {s:?} (expected {min}..={max})"
        )),
    }
}

fn parse_timeout(what: &str, s: &str, min: u32) -> Result<u32, ArgError> {
    match s.parse::<u32>() {
        Ok(n) if (min..=MAX_TIMEOUT_S).contains(&n) => Ok(n),
        _ => err(format!(
            "illegal {what} timeout specified: {s:?} (expected {min}..={MAX_TIMEOUT_S} seconds)"
        )),
    }
}

/// `host[:port]` with a numeric host: `10.0.0.1`, `10.0.0.1:80`,
/// `[2001:db8::1]:80`, `[2001:db8::1]`. A missing port is 0.
pub fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, ArgError> {
    let bad = |why: &str| ArgError(format!("illegal {what} {s:?}: {why}"));
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']' after the IPv6 address"))?;
        match tail {
            "" => (h, None),
            t => (
                h,
                Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
                ),
            ),
        }
    } else if s.parse::<IpAddr>().is_ok() {
        (s, None)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| {
        bad(&format!(
            "{host:?} is not a numeric IP address; dirctl resolves no host names \
             (save rules with ipvsadm -S -n)"
        ))
    })?;
    let port = match port {
        None => 0,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .map_err(|_| bad("the port must be a number 0..=65535"))?,
        Some(p) => port_by_name(p).ok_or_else(|| {
            bad(&format!(
                "unknown service name {p:?}: give the port number \
                 (save rules with ipvsadm -S -n)"
            ))
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Well-known service names, as `getservbyport` names the ports in
/// Debian's and Red Hat's `/etc/services` (what `ipvsadm -S` without `-n`
/// prints). A port with a different name per protocol has both.
const SERVICE_NAMES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("imap2", 143),
    ("imap", 143),
    ("snmp", 161),
    ("bgp", 179),
    ("irc", 194),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("smtps", 465),
    ("isakmp", 500),
    ("syslog", 514),
    ("shell", 514),
    ("printer", 515),
    ("submission", 587),
    ("ldaps", 636),
    ("rsync", 873),
    ("ftps", 990),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("ms-sql-s", 1433),
    ("radius", 1812),
    ("radius-acct", 1813),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("sip", 5060),
    ("sip-tls", 5061),
    ("xmpp-client", 5222),
    ("postgresql", 5432),
    ("redis", 6379),
    ("http-alt", 8080),
    ("webcache", 8080),
];

/// The port of a well-known service name (`http` is 80), if dirctl knows
/// it: see `SERVICE_NAMES`.
pub fn port_by_name(name: &str) -> Option<u16> {
    SERVICE_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// `-M`: a dotted IPv4 mask (`255.255.255.0`) or a prefix length (`24`).
pub fn parse_netmask(s: &str, ipv6: bool) -> Result<u8, ArgError> {
    let max = if ipv6 { 128 } else { 32 };
    if let Ok(n) = s.parse::<u8>()
        && n <= max
    {
        return Ok(n);
    }
    if !ipv6 && let Ok(m) = s.parse::<Ipv4Addr>() {
        let bits = u32::from(m);
        let prefix = bits.leading_ones();
        if bits.checked_shl(prefix).unwrap_or(0) == 0 {
            return Ok(prefix as u8);
        }
    }
    err(format!(
        "illegal netmask {s:?}: give a contiguous dotted mask (255.255.255.0) or a prefix length 0..={max}"
    ))
}

/// `-b flag-1,flag-2` / `sh-fallback,sh-port` / `mh-fallback,mh-port`.
fn parse_sched_flags(s: &str) -> Result<SchedFlags, ArgError> {
    let mut f = SchedFlags::default();
    for word in s.split(',').map(str::trim) {
        match word {
            "flag-1" | "sh-fallback" | "mh-fallback" => f.fallback = true,
            "flag-2" | "sh-port" | "mh-port" => f.port = true,
            other => {
                return err(format!(
                    "invalid scheduler flag {other:?} (expected sh-fallback, sh-port, \
                     mh-fallback, mh-port, flag-1 or flag-2)"
                ));
            }
        }
    }
    Ok(f)
}

fn finish(raw: Raw) -> Result<Invocation, ArgError> {
    // No command at all: ipvsadm lists the table.
    let cmd = raw.cmd.unwrap_or(Cmd::List);
    let (allowed, required) = cmd.table();
    for opt in &raw.opts {
        if !allowed.contains(opt) {
            return err(format!(
                "Illegal '{}' option with the '{}' command",
                opt.name(),
                cmd.name()
            ));
        }
    }
    for opt in required {
        if !raw.opts.contains(opt) {
            return err(format!(
                "You need to supply the '{}' option for the '{}' command",
                opt.name(),
                cmd.name()
            ));
        }
    }
    let service = || {
        raw.service
            .ok_or_else(|| ArgError("missing service".into()))
    };
    let server = || {
        raw.real_server
            .ok_or_else(|| ArgError("missing real server".into()))
    };
    let command = match cmd {
        Cmd::Add | Cmd::Edit => {
            let svc = service()?;
            let netmask = raw
                .netmask
                .as_deref()
                .map(|m| parse_netmask(m, svc.vip.is_ipv6()))
                .transpose()?;
            if netmask.is_some() && raw.persistent.is_none() {
                return err("the netmask (-M) only applies to a persistent service (-p)");
            }
            let opts = ServiceOpts {
                service: svc,
                scheduler: raw.scheduler,
                persistent: raw.persistent,
                netmask,
                flags: raw.flags,
            };
            if cmd == Cmd::Add {
                Command::AddService(opts)
            } else {
                Command::EditService(opts)
            }
        }
        Cmd::Del => Command::DeleteService(service()?),
        Cmd::Flush => Command::Clear,
        Cmd::AddDest | Cmd::EditDest => {
            let opts = ServerOpts {
                service: service()?,
                server: server()?,
                method: raw.method,
                weight: raw.weight,
                upper: raw.upper,
                lower: raw.lower,
            };
            if raw.opts.contains(&Opt::TunType) && opts.method != Some(ForwardMethod::Tunnel) {
                return err("Tunnel options conflict with forward method (--tun-type needs -i)");
            }
            if let (Some(u), Some(l)) = (opts.upper, opts.lower)
                && u != 0
                && l > u
            {
                return err(format!(
                    "the l-threshold {l} must not exceed the u-threshold {u}"
                ));
            }
            if cmd == Cmd::AddDest {
                Command::AddServer(opts)
            } else {
                Command::EditServer(opts)
            }
        }
        Cmd::DelDest => Command::DeleteServer {
            service: service()?,
            server: server()?,
        },
        Cmd::List => {
            let has = |o| raw.opts.contains(&o);
            let exclusive = [Opt::Connection, Opt::Service, Opt::Timeout]
                .into_iter()
                .filter(|o| has(*o))
                .count();
            if exclusive > 1 {
                return err("the 'connection', 'service-address' and 'timeout' options \
                     of the 'list' command exclude each other");
            }
            Command::List(ListOpts {
                numeric: has(Opt::Numeric),
                stats: has(Opt::Stats),
                exact: has(Opt::Exact),
                connections: has(Opt::Connection),
                timeout: has(Opt::Timeout),
                service: raw.service,
                rate: has(Opt::Rate),
                thresholds: has(Opt::Thresholds),
                persistent_conn: has(Opt::PersistentConn),
                tun_info: has(Opt::TunInfo),
                nosort: has(Opt::NoSort),
            })
        }
        Cmd::Zero => Command::Zero(raw.service),
        Cmd::Save => Command::Save,
        Cmd::Restore => Command::Restore,
        Cmd::SetTimeout => {
            let (tcp, tcpfin, udp) = raw.timeouts.unwrap_or_default();
            Command::SetTimeouts { tcp, tcpfin, udp }
        }
        Cmd::Help => Command::Help,
        Cmd::Version => Command::Version,
    };
    Ok(Invocation {
        server: raw.server_addr,
        command,
    })
}

/// The usage text (`dirctl -h`).
pub fn usage() -> String {
    let scheds: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "dirctl: control an LVS director over gRPC, with ipvsadm's syntax
Usage:
  dirctl -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  dirctl -D -t|u service-address
  dirctl -C
  dirctl -a|e -t|u service-address -r server-address [-g|i|m] [-w weight] [-x upper] [-y lower]
  dirctl -d -t|u service-address -r server-address
  dirctl -L|l [-t|u service-address] [-n] [--stats] [--exact]
  dirctl -L|l -c [-n]
  dirctl -L|l --timeout
  dirctl -L|l [-t|u service-address] [-n] --rate|--thresholds|--persistent-conn|--tun-info [--nosort]
  dirctl -Z [-t|u service-address]
  dirctl -S [-n]
  dirctl -R < rules
  dirctl --set tcp tcpfin udp
  dirctl health [-t|u service-address] [-r server-address] [-n]
  dirctl realserver setup|check|undo|decap ...   (see dirctl realserver --help)
  dirctl -h

Options:
  --server ADDR        the director's control API (default: $DIRCTL_SERVER, else 127.0.0.1:7400)
  --tls-ca PEM         talk TLS, trusting this CA for the director's certificate ($DIRCTL_TLS_CA)
  --tls-cert PEM --tls-key PEM   client certificate and key ($DIRCTL_TLS_CERT, $DIRCTL_TLS_KEY)
  --token TOKEN        bearer token ($DIRCTL_TOKEN; or --token-file FILE, $DIRCTL_TOKEN_FILE)
  -t, --tcp-service    service-address is ip[:port] (numeric; IPv6 as [ip]:port)
  -u, --udp-service    service-address is ip[:port]
  -s, --scheduler      one of {}; the default is wlc
  -p, --persistent     persistent service, optional timeout in seconds (default 360)
  -M, --netmask        persistence granularity: dotted mask or prefix length
  -b, --sched-flags    sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2
  -r, --real-server    server-address is ip[:port] (port defaults to the virtual port)
  -g, --gatewaying     direct routing (default)
  -i, --ipip           IPIP tunnelling
  -m, --masquerading   NAT
  -w, --weight         capacity of the real server, 0..=65535 (default 1)
  -x, --u-threshold    upper connection threshold (0 = none)
  -y, --l-threshold    lower connection threshold (0 = 3/4 of upper)
  -c, --connection     list the connection table
  --timeout            list the timeouts (tcp tcpfin udp)
  --stats              list counters
  --rate               list rates (CPS, packets and bytes per second, IPVS's 2 s estimator)
  --thresholds         list the upper and lower connection thresholds
  --persistent-conn    list persistent connections (templates) per real server
  --tun-info           list the tunnel type of each real server
  --sort, --nosort     real servers by address (default), or in configuration order
  --exact              print exact numbers
  -S, --save           print the rules as ipvsadm -S -n does (plus -x/-y, and --set
                       when the timeouts are not the defaults), always numeric
  -R, --restore        apply ipvsadm rules from stdin, all or nothing
  -n, --numeric        numeric output (always numeric; accepted for compatibility)
",
        scheds.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        parse(line.split_whitespace())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }

    fn fails(line: &str) -> String {
        match parse(line.split_whitespace()) {
            Ok(c) => panic!("{line}: parsed as {c:?}"),
            Err(e) => e.0,
        }
    }

    fn svc(p: Protocol, s: &str) -> ServiceArg {
        ServiceArg {
            protocol: p,
            vip: s.parse().unwrap(),
        }
    }

    #[test]
    fn add_and_edit_service() {
        assert_eq!(
            cmd("-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0 -b sh-fallback,sh-port"),
            Command::AddService(ServiceOpts {
                service: svc(Protocol::Tcp, "10.0.0.1:80"),
                scheduler: Some(SchedulerKind::Rr),
                persistent: Some(Some(600)),
                netmask: Some(24),
                flags: SchedFlags {
                    fallback: true,
                    port: true
                },
            })
        );
        // Bundled letters, inline values, -p without a value, long forms.
        let Command::EditService(o) = cmd("-Eu10.0.0.1:53 -srr -p") else {
            panic!()
        };
        assert_eq!(o.service, svc(Protocol::Udp, "10.0.0.1:53"));
        assert_eq!(o.persistent, Some(None));
        let Command::AddService(o) = cmd("--add-service --tcp-service=10.0.0.1 --persistent")
        else {
            panic!()
        };
        assert_eq!(o.service.vip.port(), 0);
        assert_eq!(o.scheduler, None);
        assert_eq!(o.persistent, Some(None));
        let Command::AddService(o) = cmd("-A -t 10.0.0.1:80 -p -s wrr") else {
            panic!()
        };
        assert_eq!(
            (o.persistent, o.scheduler),
            (Some(None), Some(SchedulerKind::Wrr))
        );
        let Command::AddService(o) = cmd("-A -t [2001:db8::1]:443 -p 60 -M 64") else {
            panic!()
        };
        assert_eq!(o.netmask, Some(64));
    }

    #[test]
    fn real_servers() {
        assert_eq!(
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3 -x 100 -y 50"),
            Command::AddServer(ServerOpts {
                service: svc(Protocol::Tcp, "10.0.0.1:80"),
                server: "10.0.1.1:8080".parse().unwrap(),
                method: Some(ForwardMethod::Masquerade),
                weight: Some(3),
                upper: Some(100),
                lower: Some(50),
            })
        );
        let Command::EditServer(o) = cmd("-e -u 10.0.0.1:53 -r 10.0.1.1 -i") else {
            panic!()
        };
        assert_eq!(o.server.port(), 0);
        assert_eq!(o.method, Some(ForwardMethod::Tunnel));
        assert_eq!(o.weight, None);
        assert_eq!(
            cmd("-d -t 10.0.0.1:80 -r 10.0.1.1:80"),
            Command::DeleteServer {
                service: svc(Protocol::Tcp, "10.0.0.1:80"),
                server: "10.0.1.1:80".parse().unwrap(),
            }
        );
        let Command::AddServer(o) = cmd("-a -t 10.0.0.1:80 -r 10.0.1.1 -g") else {
            panic!()
        };
        assert_eq!(o.method, Some(ForwardMethod::DirectRouting));
    }

    #[test]
    fn listing_and_other_commands() {
        assert_eq!(cmd(""), Command::List(ListOpts::default()));
        let Command::List(l) = cmd("-Ln --stats --exact") else {
            panic!()
        };
        assert!(l.numeric && l.stats && l.exact && !l.connections);
        let Command::List(l) = cmd("-Lnc") else {
            panic!()
        };
        assert!(l.connections);
        let Command::List(l) = cmd("-l -n -t 10.0.0.1:80") else {
            panic!()
        };
        assert_eq!(l.service, Some(svc(Protocol::Tcp, "10.0.0.1:80")));
        let Command::List(l) = cmd("-L --timeout") else {
            panic!()
        };
        assert!(l.timeout);
        assert_eq!(cmd("-C"), Command::Clear);
        assert_eq!(cmd("--clear"), Command::Clear);
        assert_eq!(cmd("-Z"), Command::Zero(None));
        assert_eq!(
            cmd("-Z -u 10.0.0.1:53"),
            Command::Zero(Some(svc(Protocol::Udp, "10.0.0.1:53")))
        );
        assert_eq!(
            cmd("-D -t 10.0.0.1:80"),
            Command::DeleteService(svc(Protocol::Tcp, "10.0.0.1:80"))
        );
        assert_eq!(
            cmd("--set 3600 0 60"),
            Command::SetTimeouts {
                tcp: 3600,
                tcpfin: 0,
                udp: 60
            }
        );
        assert_eq!(cmd("-h"), Command::Help);
        let inv = parse(["--server", "10.1.1.1:7400", "-Ln"]).unwrap();
        assert_eq!(inv.server.as_deref(), Some("10.1.1.1:7400"));
        let inv = parse(["-C", "--server=[::1]:7400"]).unwrap();
        assert_eq!(inv.server.as_deref(), Some("[::1]:7400"));
    }

    #[test]
    fn errors_are_sentences() {
        assert_eq!(fails("-A -a -t 10.0.0.1:80"), "multiple commands specified");
        assert_eq!(
            fails("-A -t 10.0.0.1:80 -w 3"),
            "Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            fails("-A -s rr"),
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            fails("-a -t 10.0.0.1:80"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert!(fails("-A -t 10.0.0.1:80 -s fastest").contains("unknown scheduler"));
        assert!(fails("-A -t 10.0.0.300:80").contains("10.0.0.300:80"));
        assert!(fails("-A -t 10.0.0.1:99999").contains("port"));
        assert!(fails("-A -t www.example.com:80").contains("numeric"));
        assert!(fails("-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000").contains("weight"));
        assert!(fails("-a -t 10.0.0.1:80 -r 10.0.1.1 -w -1").contains("weight"));
        assert!(fails("-a -t 10.0.0.1:80 -r 10.0.1.1 -x 5 -y 6").contains("l-threshold"));
        assert!(fails("-a -t 10.0.0.1:80 -r 10.0.1.1 -g -m").contains("multiple"));
        assert!(fails("-A -t 10.0.0.1:80 -M 255.0.255.0 -p").contains("netmask"));
        assert!(fails("-A -t 10.0.0.1:80 -M 24").contains("persistent"));
        assert!(fails("-A -t 10.0.0.1:80 -p 0").contains("persistent"));
        assert!(fails("-A -t 10.0.0.1:80 -b flag-3").contains("flag-3"));
        assert!(fails("--set 1 2").contains("three values"));
        assert!(fails("--set 1 2 99999999").contains("udp"));
        assert!(fails("-Lc -t 10.0.0.1:80").contains("exclude"));
        assert!(fails("-Q").contains("'-Q'"));
        assert!(fails("--bogus").contains("'--bogus'"));
        assert!(fails("-A -t").contains("needs a value"));
        assert!(fails("stray").contains("stray"));
        assert!(fails("-L --stats=1").contains("takes no value"));
        assert!(fails("-C -t 10.0.0.1:80").contains("Illegal"));
    }

    #[test]
    fn addresses_and_masks() {
        assert_eq!(
            parse_addr("x", "[2001:db8::1]").unwrap(),
            "[2001:db8::1]:0".parse().unwrap()
        );
        assert_eq!(
            parse_addr("x", "2001:db8::1").unwrap(),
            "[2001:db8::1]:0".parse().unwrap()
        );
        assert!(parse_addr("x", "[2001:db8::1").is_err());
        assert!(parse_addr("x", "[2001:db8::1]80").is_err());
        assert_eq!(parse_netmask("255.255.255.255", false).unwrap(), 32);
        assert_eq!(parse_netmask("0.0.0.0", false).unwrap(), 0);
        assert_eq!(parse_netmask("255.255.240.0", false).unwrap(), 20);
        assert!(parse_netmask("33", false).is_err());
        assert_eq!(parse_netmask("96", true).unwrap(), 96);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let words = [
            "-A",
            "-t",
            "-p",
            "-",
            "--",
            "--=",
            "-p-",
            "-M",
            "[",
            "]",
            ":",
            "-b",
            ",",
            "--set",
            "10.0.0.1:80",
            "-Lnc",
            "-w",
            "999999999999",
            "--server",
            "é",
            "-é",
        ];
        for a in words {
            for b in words {
                for c in words {
                    let _ = parse([a, b, c]);
                }
            }
        }
    }
}
