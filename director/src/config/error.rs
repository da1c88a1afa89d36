//! Why a configuration file was refused, and where.
//!
//! Every error but an unreadable file carries a [`Location`] — file, line
//! and, when known, column — so that `directord` can print one line such as
//! `nat.toml:14:1: real server ... uses dr forwarding on port 8080, but the
//! virtual port is 80: ...` that an operator can act on without reading
//! code. Value-level problems (an unknown scheduler, a weight out of range)
//! point at the value; entry-level problems (port mapping, duplicates) point
//! at the `[[service]]` or `[[service.real_server]]` header of the entry.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use crate::service_table::SpecError;

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or whatever name the text was parsed under).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters, when the problem has a precise place.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{}:{}:{}", self.origin, self.line, c),
            None => write!(f, "{}:{}", self.origin, self.line),
        }
    }
}

/// Why a configuration was refused. Nothing of a refused configuration is
/// used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        /// The path given.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or does not fit the schema: a syntax error, an
    /// unknown key (often a typo), a missing required key, or a value of
    /// the wrong type.
    #[error("{at}: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description.
        message: String,
    },
    /// The file is well-formed but a value or a combination is wrong.
    #[error("{at}: {problem}")]
    Invalid {
        /// The offending value or entry.
        at: Location,
        /// What is wrong with it (boxed: keeps `Result<_, ConfigError>` small).
        problem: Box<Problem>,
    },
}

impl ConfigError {
    /// Where the problem is, unless the file could not be read at all.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { at, .. } | ConfigError::Invalid { at, .. } => Some(at),
        }
    }

    /// The semantic problem, if this is one (not a read or syntax error).
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Invalid { problem, .. } => Some(problem.as_ref()),
            _ => None,
        }
    }
}

/// A semantic problem in a well-formed configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// `[node] name` is empty.
    #[error(
        "the node name is empty: give each director a name for logs and status, e.g. name = \"director-a\""
    )]
    EmptyNodeName,
    /// `workers = 0`.
    #[error(
        "workers = 0: the dataplane needs at least one worker thread \
         (omit the key for the CPUs shared out among the data interfaces)"
    )]
    ZeroWorkers,
    /// More workers than the dataplane can account for.
    #[error(
        "workers = {workers} is out of range: at most {max} per interface with {interfaces} \
         data interface(s) ({} worker threads in all)",
        crate::dest::STAT_SLOTS
    )]
    TooManyWorkers {
        /// The number given.
        workers: i64,
        /// Data interfaces, each with `workers` threads.
        interfaces: usize,
        /// The most per interface.
        max: usize,
    },
    /// `max_connections` is zero, negative or absurdly large.
    #[error(
        "max_connections = {value} is out of range 1..={max} \
         (it bounds connections plus persistence templates)"
    )]
    MaxConnectionsOutOfRange {
        /// The number given.
        value: i64,
        /// Largest accepted.
        max: u64,
    },
    /// `tun_ttl` outside 1..=255.
    #[error(
        "tun_ttl = {value} is out of range: give 1..=255, \
         or \"inherit\" to copy the inner packet's TTL as IPVS does"
    )]
    TunTtlOutOfRange {
        /// The number given.
        value: i64,
    },
    /// `rx_ring` other than `"v2"` or `"v3"`.
    #[error(
        "rx_ring = \"{value}\" is not a ring layout: give \"v2\" (each frame handed over \
         as it arrives, the default) or \"v3\" (frames batched in blocks, up to 1 ms later)"
    )]
    UnknownRxRing {
        /// The value given.
        value: String,
    },
    /// `fanout` other than `"hash"` or `"cpu"`.
    #[error(
        "fanout = \"{value}\" is not a way to spread frames over workers: give \"hash\" \
         (by flow, the default) or \"cpu\" (by receiving CPU, workers pinned)"
    )]
    UnknownFanout {
        /// The value given.
        value: String,
    },
    /// `[dataplane] ring_mib` outside 1..=1024.
    #[error("ring_mib = {value} is out of range: each worker's receive ring takes 1 to 1024 MiB")]
    RingMibOutOfRange {
        /// The value given.
        value: i64,
    },
    /// A `[timeouts]` value outside what `ipvsadm --set` accepts.
    #[error(
        "timeout {name} = {secs} is out of range 1..={max} seconds \
         (omit the key to keep the default of {default} s)"
    )]
    TimeoutOutOfRange {
        /// `tcp`, `tcpfin` or `udp`.
        name: &'static str,
        /// The number given.
        secs: i64,
        /// Largest accepted.
        max: u64,
        /// The default kept when the key is omitted.
        default: u64,
    },
    /// No `[[interface]]` table.
    #[error(
        "no [[interface]] is configured: the director needs at least one data \
         interface, e.g. [[interface]] name = \"eth0\" address = \"10.11.0.2/24\""
    )]
    NoInterfaces,
    /// An interface name Linux would refuse.
    #[error("interface name {name:?} is not a valid Linux interface name: {reason}")]
    BadInterfaceName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two `[[interface]]` tables with the same name.
    #[error("interface {name} is configured twice; merge the two [[interface]] tables")]
    DuplicateInterface {
        /// The repeated name.
        name: String,
    },
    /// `address` of an interface is not `a.b.c.d/len`.
    #[error(
        "interface {interface}: address {value:?} is not an IPv4 address with a prefix \
         length such as \"10.11.0.2/24\": {reason}"
    )]
    BadCidr {
        /// The interface.
        interface: String,
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The interface address is a valid CIDR but not a usable host address.
    #[error(
        "interface {interface}: {address}/{prefix} cannot be the director's own address: {reason}"
    )]
    BadOwnAddress {
        /// The interface.
        interface: String,
        /// The address.
        address: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// Two interfaces with the same own address.
    #[error(
        "interface {second} has address {address}, which is already the address of interface {first}"
    )]
    DuplicateOwnAddress {
        /// The address.
        address: Ipv4Addr,
        /// The interface that has it first.
        first: String,
        /// The interface that repeats it.
        second: String,
    },
    /// A gateway that is not on the interface's subnet.
    #[error(
        "interface {interface}: gateway {gateway} is outside the interface's subnet \
         {subnet}; a next hop must be directly reachable on the interface"
    )]
    GatewayOutsideSubnet {
        /// The interface.
        interface: String,
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The interface's subnet, as `network/len`.
        subnet: String,
    },
    /// The gateway is the director's own address.
    #[error("interface {interface}: gateway {gateway} is the director's own address on it")]
    GatewayIsOwnAddress {
        /// The interface.
        interface: String,
        /// The gateway given.
        gateway: Ipv4Addr,
    },
    /// A text where an IPv4 address is expected.
    #[error("{what} {value:?} is not an IPv4 address such as \"10.11.0.1\"")]
    BadIpv4 {
        /// Which value (e.g. "interface eth0: gateway").
        what: String,
        /// The text given.
        value: String,
    },
    /// An address that cannot be a VIP or a real server.
    #[error("{subject} cannot be used: {reason}")]
    UnusableAddress {
        /// The value and its context, e.g. "interface eth0: vip 0.0.0.0".
        subject: String,
        /// Why.
        reason: &'static str,
    },
    /// A VIP that is also an interface's own address.
    #[error(
        "{what} {address} is the own address of interface {interface}; a virtual \
         address must be an extra address that moves between the two directors"
    )]
    VipIsInterfaceAddress {
        /// Which value (e.g. "virtual service TCP 10.11.0.2:80: the VIP").
        what: String,
        /// The address.
        address: Ipv4Addr,
        /// The interface that owns it.
        interface: String,
    },
    /// The same address in `vips` twice.
    #[error(
        "interface {second}: vip {address} is already listed on interface {first}; \
         list each address once, on the interface that should answer ARP for it"
    )]
    DuplicateVip {
        /// The address.
        address: Ipv4Addr,
        /// The interface that lists it first.
        first: String,
        /// The interface that repeats it.
        second: String,
    },
    /// A service address that is not `IPv4:port`.
    #[error(
        "service address {value:?} is not VIP:port, e.g. \"10.11.0.100:80\" \
         (port 0 means all ports)"
    )]
    BadServiceAddress {
        /// The text given.
        value: String,
    },
    /// A real-server address that is neither `IPv4:port` nor `IPv4`.
    #[error(
        "real server {value:?} of {service}: the address is neither IP:port nor IP \
         (an IP alone means the virtual port), e.g. \"10.12.0.11:80\""
    )]
    BadRealServerAddress {
        /// The service, e.g. `TCP 10.11.0.100:80`.
        service: String,
        /// The text given.
        value: String,
    },
    /// An IPv6 address: the dataplane forwards IPv4 only.
    #[error("{what} {value} is IPv6, but the dataplane forwards IPv4 only")]
    Ipv6Unsupported {
        /// Which value.
        what: String,
        /// The address given.
        value: String,
    },
    /// `protocol` other than tcp or udp.
    #[error("unknown protocol {value:?} (expected tcp or udp)")]
    UnknownProtocol {
        /// The text given.
        value: String,
    },
    /// `scheduler` is not one of the fourteen IPVS names.
    #[error("virtual service {service}: {reason}")]
    UnknownScheduler {
        /// The service.
        service: String,
        /// The scheduler parser's message, with the list of valid names.
        reason: String,
    },
    /// `method` is not dr, tun or nat (or an ipvsadm synonym).
    #[error(
        "real server {dest} of {service}: {reason} (ipvsadm's route/tunnel/masq and -g/-i/-m are accepted too)"
    )]
    UnknownMethod {
        /// The service.
        service: String,
        /// The real server.
        dest: String,
        /// The method parser's message.
        reason: String,
    },
    /// A scheduler flag ipvsadm `-b` does not know.
    #[error(
        "virtual service {service}: unknown scheduler flag {flag:?} (expected sh-fallback, \
         sh-port, mh-fallback or mh-port, or ipvsadm's flag-1 / flag-2)"
    )]
    UnknownFlag {
        /// The service.
        service: String,
        /// The flag given.
        flag: String,
    },
    /// A flag for a scheduler other than the service's.
    #[error(
        "virtual service {service}: flag {flag} only changes the {applies_to} scheduler, \
         but this service uses {scheduler}"
    )]
    FlagNotForScheduler {
        /// The service.
        service: String,
        /// The flag given.
        flag: String,
        /// The scheduler(s) the flag is for.
        applies_to: &'static str,
        /// The service's scheduler.
        scheduler: String,
    },
    /// `mh_table_size` on a service that does not use mh.
    #[error(
        "virtual service {service}: mh_table_size only applies to the mh scheduler, \
         but this service uses {scheduler}"
    )]
    MhTableSizeWithoutMh {
        /// The service.
        service: String,
        /// The service's scheduler.
        scheduler: String,
    },
    /// `mh_table_size` is negative or beyond u32.
    #[error(
        "virtual service {service}: mh_table_size = {value} is out of range (use a prime such as 4093)"
    )]
    MhTableSizeOutOfRange {
        /// The service.
        service: String,
        /// The number given.
        value: i64,
    },
    /// `persistence` out of ipvsadm's range.
    #[error(
        "virtual service {service}: persistence = {secs} is out of range 1..={max} seconds \
         (as ipvsadm -p; write persistence = true for the IPVS default of 360 s)"
    )]
    PersistenceOutOfRange {
        /// The service.
        service: String,
        /// The number given.
        secs: i64,
        /// Largest accepted.
        max: u64,
    },
    /// `persistence_netmask` outside 0..=32.
    #[error(
        "virtual service {service}: persistence_netmask = {prefix} is not a prefix length \
         0..=32 for IPv4"
    )]
    NetmaskOutOfRange {
        /// The service.
        service: String,
        /// The number given.
        prefix: i64,
    },
    /// `persistence_netmask` without `persistence`.
    #[error(
        "virtual service {service}: persistence_netmask is set but persistence is not; \
         add persistence = true (or a number of seconds), or remove the netmask"
    )]
    NetmaskWithoutPersistence {
        /// The service.
        service: String,
    },
    /// A weight beyond what even the service check can hold.
    #[error("real server {dest} of {service}: weight {weight} is out of range 0..=65535")]
    WeightOutOfRange {
        /// The service.
        service: String,
        /// The real server.
        dest: String,
        /// The weight given.
        weight: i64,
    },
    /// A `[[vrrp_instance]]` value or combination is wrong.
    #[error("vrrp_instance {instance}: {message}")]
    Vrrp {
        /// The instance's name (empty if it has none).
        instance: String,
        /// What is wrong, in an operator's words.
        message: String,
    },
    /// `[sync]` is wrong.
    #[error("sync: {message}")]
    Sync {
        /// What is wrong, in an operator's words.
        message: String,
    },
    /// `[control]` is wrong.
    #[error("control: {message}")]
    Control {
        /// What is wrong, in an operator's words.
        message: String,
    },
    /// `[metrics]` is wrong.
    #[error("metrics: {message}")]
    Metrics {
        /// What is wrong, in an operator's words.
        message: String,
    },
    /// A health check, sorry server or quorum setting is wrong.
    #[error("{subject}: {problem}")]
    Health {
        /// What it belongs to, e.g. "health check of virtual service TCP 10.11.0.100:80".
        subject: String,
        /// What is wrong.
        problem: super::health::HealthProblem,
    },
    /// Refused by the service table's own validation
    /// ([`ServiceTable::rebuild`](crate::ServiceTable::rebuild)).
    #[error("{0}")]
    Service(#[from] SpecError),
    /// A line of the ipvsadm rules file named by `[services]
    /// ipvsadm_rules` is wrong (the location is the rules file's line).
    #[error("{message} (ipvsadm rules loaded by {config})")]
    Rules {
        /// What is wrong.
        message: String,
        /// The configuration file that named the rules file.
        config: String,
    },
}

/// The text being parsed, to turn byte spans into locations and errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub origin: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// The location of the byte offset `span.start`.
    pub fn at(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        // Spans are at char boundaries; guard anyway so a bad span cannot panic.
        let before = self.text.get(..start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            origin: self.origin.to_string(),
            line,
            column: Some(column),
        }
    }

    /// A location for problems of the whole file (line 1, no column).
    pub fn whole_file(&self) -> Location {
        Location {
            origin: self.origin.to_string(),
            line: 1,
            column: None,
        }
    }

    /// A semantic error at `span`.
    pub fn invalid(&self, span: Range<usize>, problem: impl Into<Problem>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(span),
            problem: Box::new(problem.into()),
        }
    }

    /// A syntax or schema error from the TOML deserializer.
    pub fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let at = match e.span() {
            Some(span) => self.at(span),
            None => self.whole_file(),
        };
        ConfigError::Syntax {
            at,
            message: plain_words(e.message().trim_end()),
        }
    }
}

/// Serde's type names in the parser's messages, in an operator's words.
fn plain_words(message: &str) -> String {
    message
        .replace("expected i64", "expected an integer")
        .replace("expected u32", "expected an integer 0..=4294967295")
        .replace(
            "expected a sequence",
            "expected an array (a list in [...], or one [[table]] per entry)",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let src = Source {
            origin: "x.toml",
            text: "a = 1\n# é\nbé = 2\n",
        };
        assert_eq!(src.at(0..1).to_string(), "x.toml:1:1");
        assert_eq!(src.at(4..5).to_string(), "x.toml:1:5");
        let b = src.text.find("bé").unwrap();
        assert_eq!(src.at(b..b + 1).to_string(), "x.toml:3:1");
        let eq = src.text.rfind('=').unwrap();
        assert_eq!(
            src.at(eq..eq + 1).to_string(),
            "x.toml:3:4",
            "columns count characters"
        );
        assert_eq!(
            src.at(999..1000).line,
            4,
            "a span past the end does not panic"
        );
        assert_eq!(src.whole_file().to_string(), "x.toml:1");
    }
}
