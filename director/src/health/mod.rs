//! Real-server health checks, as keepalived's checkers do them for LVS:
//! a probe per real server (TCP connect, HTTP GET, UDP request/response,
//! or a command), run on an interval with fall/rise counting, that holds a
//! failed server at weight 0 (or takes it out) until it passes again; a
//! sorry server per service for when quorum is lost; notify and quorum
//! commands on every change.
//!
//! ```text
//!   config (health_check tables) ──► HealthPlan ──► ControlState (configured specs + plan + Overlay)
//!                                                        │ effective specs = configured ⊕ overlay
//!   Monitor (tokio) ── one task per checked server ──────┤──► Dataplane::apply
//!     sleep to CheckState::poll_timeout ─ semaphore ─ probe ─ CheckState::finish ─► verdict
//! ```
//!
//! - [`state`]: the sans-IO part: the fall/rise state machine of one
//!   server and the quorum with hysteresis of a service, with `now` passed
//!   in; unit-tested on a virtual clock.
//! - [`apply`]: the [`Overlay`] of verdicts on the configured services,
//!   which turns the operator's configured weights into the effective
//!   weights the dataplane uses (0 or absent while down, the sorry server
//!   while quorum is lost). The configured weight (`dirctl -e -w`) is never
//!   overwritten by a check, so an edit made while a server is down is what
//!   comes back when it is up.
//! - `probe_*`: the probes themselves, small async functions that return
//!   a [`ProbeResult`] and never decide anything.
//! - [`monitor`]: the driver — tasks, timers, the bound on checks in flight,
//!   notify and quorum commands, and reconciliation after an edit or reload.
//!
//! The configuration side (TOML, validation with file:line) is in
//! `config/health.rs`; these types are its validated output.

pub mod apply;
pub mod monitor;
pub mod probe_cmd;
pub mod probe_http;
pub mod probe_tcp;
pub mod probe_udp;
pub mod state;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::service::ServiceKey;
use crate::service_table::DestSpec;

pub use apply::Overlay;
pub use monitor::{HealthCounters, HealthRegistry, Monitor};
pub use state::{CheckState, Health, Outcome, Quorum, Timing, Transition};

/// Default time between two checks of one server (keepalived `delay_loop`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default time one check may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive failures before a server is marked down.
pub const DEFAULT_FALL: u32 = 3;
/// Default consecutive successes before a server is marked up.
pub const DEFAULT_RISE: u32 = 1;
/// Default bound on checks in flight at once, over every server.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// How long a notify or quorum command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a probe found: a pass (with a weight, for a dynamic command
/// check), or a failure with its reason in an operator's words.
pub type ProbeResult = Result<Option<i32>, String>;

/// What a down verdict does to the server (keepalived `inhibit_on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Effective weight 0: no new connections, existing ones drain
    /// (keepalived with `inhibit_on_failure`).
    #[default]
    Quiesce,
    /// Taken out of the service (keepalived's default); connections bound
    /// to it keep forwarding until they expire.
    Remove,
}

/// A command line: argv, to which notify commands append their arguments.
/// A string in the configuration runs under `/bin/sh -c`, with the
/// appended arguments as `$1`, `$2`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
}

impl CommandLine {
    /// `/bin/sh -c TEXT sh`: the shell's `$0` is `sh`, appended arguments
    /// are `$1`...
    pub fn shell(text: &str) -> CommandLine {
        CommandLine {
            argv: vec!["/bin/sh".into(), "-c".into(), text.into(), "sh".into()],
        }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.argv.len() == 4 && self.argv[0] == "/bin/sh" && self.argv[1] == "-c" {
            return f.write_str(&self.argv[2]);
        }
        f.write_str(&self.argv.join(" "))
    }
}

/// A compiled regular expression that compares by its pattern.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::bytes::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for Pattern {}

/// HTTP GET check (keepalived `HTTP_GET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Request path, starting with `/`.
    pub path: String,
    /// `Host` header; `None` = the real server's address.
    pub host: Option<String>,
    /// Accepted status codes; default 200..=299.
    pub status: Vec<RangeInclusive<u16>>,
    /// SHA-256 the body must have (keepalived `digest`, with sha256).
    pub digest: Option<[u8; 32]>,
    /// A regular expression the body must match.
    pub body: Option<Pattern>,
}

/// UDP request/response check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCheck {
    /// Datagram sent.
    pub payload: Vec<u8>,
    /// A regular expression the reply must match; `None` = any reply.
    pub expect: Option<Pattern>,
}

/// Command check (keepalived `MISC_CHECK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCheck {
    /// What to run; exit 0 = up.
    pub command: CommandLine,
    /// keepalived's `misc_dynamic`: exit 0 = up with the configured
    /// weight, 1 = down, 2..=255 = up with weight (code − 2).
    pub dynamic_weight: bool,
}

/// The kind of probe and its own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect (keepalived `TCP_CHECK`).
    Tcp,
    /// HTTP/1.1 GET.
    Http(HttpCheck),
    /// UDP datagram, reply expected.
    Udp(UdpCheck),
    /// A program's exit status.
    Command(CommandCheck),
}

impl Probe {
    /// `tcp`, `http`, `udp` or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http(_) => "http",
            Probe::Udp(_) => "udp",
            Probe::Command(_) => "command",
        }
    }
}

/// One real server's check, validated: what to probe, when, and what the
/// verdict does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// The probe.
    pub probe: Probe,
    /// Port probed; `None` = the real server's port.
    pub port: Option<u16>,
    /// Fall, rise and the delays.
    pub timing: Timing,
    /// What a down verdict does.
    pub on_failure: OnFailure,
    /// Run when the server goes up: `ARGS... SERVER SERVICE up`.
    pub notify_up: Option<CommandLine>,
    /// Run when the server goes down: `ARGS... SERVER SERVICE down`.
    pub notify_down: Option<CommandLine>,
}

impl CheckSpec {
    /// The address probed for real server `dest`.
    pub fn target(&self, dest: SocketAddr) -> SocketAddr {
        SocketAddr::new(dest.ip(), self.port.unwrap_or(dest.port()))
    }

    /// One line for listings: `http GET /health :8080`.
    pub fn describe(&self) -> String {
        let mut s = match &self.probe {
            Probe::Tcp => "tcp connect".to_string(),
            Probe::Http(h) => format!("http GET {}", h.path),
            Probe::Udp(_) => "udp request".to_string(),
            Probe::Command(c) => format!("command {}", c.command),
        };
        if let Some(p) = self.port {
            s.push_str(&format!(" :{p}"));
        }
        s
    }
}

/// A service's health configuration: its default check, the real servers'
/// overrides, the sorry server and the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceHealth {
    /// The check of every real server without an override.
    pub check: Option<Arc<CheckSpec>>,
    /// Per real server: its own check (`None` = `type = "none"`: unchecked).
    pub overrides: HashMap<SocketAddr, Option<Arc<CheckSpec>>>,
    /// Used while quorum is lost (by default: while no real server is up).
    pub sorry_server: Option<DestSpec>,
    /// Least total weight of the real servers up for the service to be
    /// up (keepalived `quorum`, default 1).
    pub quorum: u32,
    /// Hysteresis around the quorum (keepalived `hysteresis`, default 0).
    pub hysteresis: u32,
    /// Run when quorum is regained: `ARGS... SERVICE up`.
    pub quorum_up: Option<CommandLine>,
    /// Run when quorum is lost: `ARGS... SERVICE down`.
    pub quorum_down: Option<CommandLine>,
}

impl ServiceHealth {
    /// The check in force for real server `dest`.
    pub fn check_for(&self, dest: SocketAddr) -> Option<&Arc<CheckSpec>> {
        match self.overrides.get(&dest) {
            Some(over) => over.as_ref(),
            None => self.check.as_ref(),
        }
    }

    /// Whether anything here needs the monitor (a check, a sorry server,
    /// a quorum other than the default, or quorum commands).
    pub fn is_active(&self) -> bool {
        self.check.is_some()
            || self.overrides.values().any(Option::is_some)
            || self.sorry_server.is_some()
            || self.quorum_up.is_some()
            || self.quorum_down.is_some()
    }
}

/// The health configuration of every service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthPlan {
    /// Per service.
    pub services: HashMap<ServiceKey, ServiceHealth>,
}

impl HealthPlan {
    /// No checks at all.
    pub fn none() -> HealthPlan {
        HealthPlan::default()
    }

    /// The health configuration of `key`, if any.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceHealth> {
        self.services.get(key)
    }

    /// The check in force for real server `dest` of service `key`.
    pub fn check_for(&self, key: &ServiceKey, dest: SocketAddr) -> Option<&Arc<CheckSpec>> {
        self.services.get(key).and_then(|s| s.check_for(dest))
    }
}

/// `tcp/10.11.0.100:80`: a service as one command-line word.
pub fn service_word(key: &ServiceKey) -> String {
    format!(
        "{}/{}",
        key.protocol.to_string().to_ascii_lowercase(),
        key.vip
    )
}

/// `3 s`, `300 ms`, `1.5 s`: a duration in a reason.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
