//! The VRRPv3 election state machine (RFC 5798 §6, with RFC 9568's
//! clarifications), sans-IO: no clock, no sockets.
//!
//! Why sans-IO: failover timing is the product. Taking `now` as an
//! argument lets tests step a pair of routers through an election on a
//! virtual clock and assert the exact instant a backup takes over, in
//! microseconds of test time. The tokio driver (`driver.rs`) is a thin
//! loop around this: it feeds received adverts and expired timers in, and
//! carries out the returned [`Action`]s.
//!
//! Time is a `Duration` since an origin the caller chooses. Each state
//! keeps its own timer inside the `Run` enum, so a Master can't have a
//! Master_Down timer running and a Backup can't send adverts.
//!
//! Beyond the RFC, four operator features, each kept out of the RFC's
//! rules except where stated:
//! - `preempt_delay` (keepalived's meaning): for that long after start-up
//!   (or after the interface comes back), a lower-priority master is
//!   accepted as if preemption were off.
//! - `step_down` / `release`: manual failover. The master advertises
//!   priority 0 (the peer takes over after its Skew_Time) and then behaves
//!   as `nopreempt` until released; its Master_Down timer still runs, so it
//!   takes over again if the peer dies.
//! - `peer_alive`: a second heartbeat path (the sync stream). In Backup it
//!   restarts the Master_Down timer exactly as an accepted advert from the
//!   current master would; it is ignored after that master resigned
//!   (priority 0) and while we are preempting it, so it never delays a
//!   handover the RFC would make.
//! - `peer_suspect`: the sync stream to the master ended abruptly (a killed
//!   process's kernel closes its sockets at once). In Backup it brings the
//!   Master_Down timer forward to one Master_Adver_Interval + Skew_Time;
//!   a live master's next advert restarts the timer as usual, so only a
//!   dead master is replaced, after ~1 interval instead of 3.
//! - `interface_down` / `interface_up`: the Fault state (keepalived's).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::packet::{Advert, MAX_INTERVAL_CS, MULTICAST_GROUP};

/// Longest `preempt_delay` accepted (keepalived's limit).
pub const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// The address owner's priority: starts as Master, always preempts.
pub const OWNER_PRIORITY: u8 = 255;

/// One virtual router's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Name for logs, status and notify scripts (keepalived's `iname`).
    pub name: String,
    /// Virtual Router ID, 1..=255.
    pub vrid: u8,
    /// 1..=255; 255 is the address owner.
    pub priority: u8,
    /// Advertisement_Interval in centiseconds, 1..=4095.
    pub advert_interval_cs: u16,
    /// Preempt_Mode (RFC default true).
    pub preempt: bool,
    /// keepalived's preempt_delay; zero for none.
    pub preempt_delay: Duration,
    /// Our primary address: IP source of adverts, tie-breaker.
    pub primary_ip: Ipv4Addr,
    /// The virtual addresses advertised (1..=255 of them).
    pub vips: Vec<Ipv4Addr>,
    /// Unicast peers; empty means multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
}

/// A configuration field out of range. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `name` is empty.
    #[error("vrrp instance: name must not be empty")]
    EmptyName,
    /// `vrid` is 0.
    #[error("vrrp instance {name}: vrid 0 is invalid, use 1..=255")]
    Vrid {
        /// Instance name.
        name: String,
    },
    /// `priority` is 0, which is reserved for "master stopping".
    #[error(
        "vrrp instance {name}: priority 0 is reserved for the master's stop advert \
         (RFC 5798 5.2.4), use 1..=255"
    )]
    Priority {
        /// Instance name.
        name: String,
    },
    /// `advert_interval_cs` is 0 or above 4095.
    #[error("vrrp instance {name}: advert_interval_cs {value} is outside 1..=4095 centiseconds")]
    AdvertInterval {
        /// Instance name.
        name: String,
        /// The value given.
        value: u16,
    },
    /// `preempt_delay` is longer than [`MAX_PREEMPT_DELAY`].
    #[error("vrrp instance {name}: preempt_delay {value:?} is longer than 1000 s")]
    PreemptDelay {
        /// Instance name.
        name: String,
        /// The value given.
        value: Duration,
    },
    /// `primary_ip` is not a unicast address.
    #[error("vrrp instance {name}: primary_ip {value} is not a unicast address")]
    PrimaryIp {
        /// Instance name.
        name: String,
        /// The value given.
        value: Ipv4Addr,
    },
    /// `vips` is empty or longer than an advert can carry.
    #[error(
        "vrrp instance {name}: vips has {count} addresses, an advert carries 1..=255 \
         (RFC 5798 5.2.5)"
    )]
    VipCount {
        /// Instance name.
        name: String,
        /// How many were given.
        count: usize,
    },
    /// An entry of `vips` is not a unicast address.
    #[error("vrrp instance {name}: vips entry {value} is not a unicast address")]
    Vip {
        /// Instance name.
        name: String,
        /// The value given.
        value: Ipv4Addr,
    },
    /// An entry of `unicast_peers` is not unicast, or is our own primary.
    #[error(
        "vrrp instance {name}: unicast_peers entry {value} must be a unicast address \
         other than primary_ip"
    )]
    UnicastPeer {
        /// Instance name.
        name: String,
        /// The value given.
        value: Ipv4Addr,
    },
}

fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast())
}

impl InstanceConfig {
    /// Check every field's range; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = || self.name.clone();
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.vrid == 0 {
            return Err(ConfigError::Vrid { name: name() });
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority { name: name() });
        }
        let value = self.advert_interval_cs;
        if value == 0 || value > MAX_INTERVAL_CS {
            return Err(ConfigError::AdvertInterval {
                name: name(),
                value,
            });
        }
        if self.preempt_delay > MAX_PREEMPT_DELAY {
            let value = self.preempt_delay;
            return Err(ConfigError::PreemptDelay {
                name: name(),
                value,
            });
        }
        if !is_unicast(self.primary_ip) {
            let value = self.primary_ip;
            return Err(ConfigError::PrimaryIp {
                name: name(),
                value,
            });
        }
        self.validate_lists()
    }

    fn validate_lists(&self) -> Result<(), ConfigError> {
        let name = || self.name.clone();
        let count = self.vips.len();
        if count == 0 || count > usize::from(u8::MAX) {
            return Err(ConfigError::VipCount {
                name: name(),
                count,
            });
        }
        if let Some(&value) = self.vips.iter().find(|a| !is_unicast(**a)) {
            return Err(ConfigError::Vip {
                name: name(),
                value,
            });
        }
        let bad_peer = |a: &&Ipv4Addr| !is_unicast(**a) || **a == self.primary_ip;
        if let Some(&value) = self.unicast_peers.iter().find(bad_peer) {
            return Err(ConfigError::UnicastPeer {
                name: name(),
                value,
            });
        }
        Ok(())
    }

    /// Where adverts go: the multicast group, or each unicast peer.
    pub fn destinations(&self) -> Vec<Ipv4Addr> {
        if self.unicast_peers.is_empty() {
            vec![MULTICAST_GROUP]
        } else {
            self.unicast_peers.clone()
        }
    }

    /// The advert this instance sends with `priority`.
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.vrid,
            priority,
            max_advert_interval_cs: self.advert_interval_cs,
            addresses: self.vips.clone(),
        }
    }
}

/// The RFC's states (RFC 5798 §6.4) plus keepalived's Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running (before start, after shutdown).
    Initialize,
    /// Watching the master, ready to take over.
    Backup,
    /// Owning the virtual addresses, advertising.
    Master,
    /// Interface down: neither advertising nor watching.
    Fault,
}

impl State {
    /// keepalived's names: "INIT", "BACKUP", "MASTER", "FAULT".
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule caused a transition; `Display` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Initialize → Backup at start-up (RFC 5798 §6.4.1).
    Startup,
    /// Initialize → Master: priority 255 (§6.4.1).
    StartupOwner,
    /// Backup → Master: no advert for Master_Down_Interval (§6.4.2).
    MasterDown,
    /// Backup → Master: the sync stream to the master broke and no advert
    /// came for one Master_Adver_Interval + Skew_Time after that.
    MasterSuspectedDown,
    /// Backup → Master: the master sent priority 0; Skew_Time passed.
    PriorityZero {
        /// The resigning master.
        from: Ipv4Addr,
    },
    /// Backup → Master: we discarded a lower-priority master's adverts
    /// (Preempt_Mode) and Master_Down_Interval passed.
    Preempt {
        /// The master we displaced.
        master: Ipv4Addr,
        /// Its priority.
        priority: u8,
    },
    /// Master → Backup: an advert with a higher priority (§6.4.3).
    HigherPriority {
        /// The new master.
        from: Ipv4Addr,
        /// Its priority.
        priority: u8,
    },
    /// Master → Backup: equal priority from a higher address (§6.4.3).
    EqualPriorityHigherAddress {
        /// The new master.
        from: Ipv4Addr,
    },
    /// Master → Backup by `step_down`.
    StepDown,
    /// → Fault by `interface_down`.
    InterfaceDown,
    /// Fault → Backup/Master by `interface_up`.
    InterfaceUp,
    /// → Initialize by `shutdown`.
    Shutdown,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Startup => write!(f, "startup"),
            Reason::StartupOwner => write!(f, "startup as address owner (255)"),
            Reason::MasterDown => write!(f, "master down interval expired"),
            Reason::MasterSuspectedDown => write!(
                f,
                "sync stream to the master lost, then no advert for one interval + skew time"
            ),
            Reason::PriorityZero { from } => write!(f, "priority 0 advert from {from}: skew time"),
            Reason::Preempt { master, priority } => {
                write!(
                    f,
                    "preempting lower priority master {master} (priority {priority})"
                )
            }
            Reason::HigherPriority { from, priority } => {
                write!(
                    f,
                    "higher priority advert from {from} (priority {priority})"
                )
            }
            Reason::EqualPriorityHigherAddress { from } => {
                write!(f, "equal priority advert from higher address {from}")
            }
            Reason::StepDown => write!(f, "step down (manual failover)"),
            Reason::InterfaceDown => write!(f, "interface down"),
            Reason::InterfaceUp => write!(f, "interface up"),
            Reason::Shutdown => write!(f, "shutdown"),
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority to every destination.
    SendAdvert {
        /// 0 when resigning, else the configured priority.
        priority: u8,
    },
    /// The state changed (notify scripts, claim or release the VIPs).
    Transition {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// The rule that fired.
        reason: Reason,
    },
}

/// A snapshot for the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Instance name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Current state.
    pub state: State,
    /// Configured priority.
    pub priority: u8,
    /// Priority we stand for now: 0 while stepped down, stopped or faulty.
    pub effective_priority: u8,
    /// Configured Advertisement_Interval.
    pub advert_interval_cs: u16,
    /// Master_Adver_Interval: learned from the master in Backup, ours
    /// otherwise.
    pub master_adver_interval_cs: u16,
    /// The master: `None` if unknown, our primary when we are master.
    pub master_addr: Option<Ipv4Addr>,
    /// When, from, to and why of the last transition.
    pub last_transition: Option<(Duration, State, State, Reason)>,
}

/// Skew_Time for `priority` under `interval_cs` (RFC 5798 §6.1):
/// ((256 − priority) × Master_Adver_Interval) / 256.
///
/// Computed in microseconds (truncated), not rounded to centiseconds: the
/// RFC gives the formula but no rounding, and whole centiseconds would
/// erase the skew at sub-second intervals (0.1 s at priority ≥ 231 gives
/// 0 cs), which is what separates competing backups. keepalived, our
/// interop peer, also keeps microseconds.
pub fn skew_time(priority: u8, interval_cs: u16) -> Duration {
    let weight = 256 - u64::from(priority);
    Duration::from_micros(weight * u64::from(interval_cs) * 10_000 / 256)
}

/// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time (§6.1).
pub fn master_down_interval(priority: u8, interval_cs: u16) -> Duration {
    3 * centiseconds(interval_cs) + skew_time(priority, interval_cs)
}

/// A centisecond count as a `Duration`.
pub fn centiseconds(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

/// The virtual router MAC address, 00:00:5e:00:01:VRID (RFC 5798 §7.3).
pub fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// Why the Backup's Master_Down timer is set where it is: decides the
/// [`Reason`] if it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Restarted by the master's last accepted advert (or start-up).
    Master,
    /// The master sent priority 0: the timer is Skew_Time.
    Resigned { from: Ipv4Addr },
    /// We are discarding a lower-priority master's adverts.
    Preempting { master: Ipv4Addr, priority: u8 },
    /// `peer_suspect` brought the timer forward; an advert undoes it.
    Suspected,
}

/// Per-state data; each state owns its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Initialize,
    Backup {
        master_down_at: Duration,
        watch: Watch,
    },
    Master {
        adver_at: Duration,
    },
    Fault,
}

impl Run {
    fn state(&self) -> State {
        match self {
            Run::Initialize => State::Initialize,
            Run::Backup { .. } => State::Backup,
            Run::Master { .. } => State::Master,
            Run::Fault => State::Fault,
        }
    }
}

/// The last master we heard from while Backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    addr: Ipv4Addr,
    priority: u8,
}

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Instance {
    cfg: InstanceConfig,
    run: Run,
    /// Between `start` and `shutdown`.
    running: bool,
    /// What `interface_down`/`interface_up` last said.
    link_up: bool,
    /// Set by `step_down`, cleared by `release`: do not preempt.
    held: bool,
    /// Preemption allowed from this instant (start-up + preempt_delay).
    preempt_from: Duration,
    /// Master_Adver_Interval (§6.1), centiseconds.
    master_adver_interval_cs: u16,
    heard: Option<Heard>,
    last_transition: Option<(Duration, State, State, Reason)>,
}

impl Instance {
    /// A stopped instance (Initialize) for a valid configuration.
    pub fn new(cfg: InstanceConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            master_adver_interval_cs: cfg.advert_interval_cs,
            cfg,
            run: Run::Initialize,
            running: false,
            link_up: true,
            held: false,
            preempt_from: Duration::ZERO,
            heard: None,
            last_transition: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// Startup event (§6.4.1): Master if we own the addresses (255),
    /// otherwise Backup; Fault if the interface is down.
    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        if self.running {
            return Vec::new();
        }
        self.running = true;
        self.preempt_from = now + self.cfg.preempt_delay;
        if !self.link_up {
            return self.transition(now, Run::Fault, Reason::InterfaceDown);
        }
        let owner = self.cfg.priority == OWNER_PRIORITY && !self.held;
        let reason = if owner {
            Reason::StartupOwner
        } else {
            Reason::Startup
        };
        self.enter_service(now, reason)
    }

    /// Leave Initialize or Fault for Master (owner) or Backup.
    fn enter_service(&mut self, now: Duration, reason: Reason) -> Vec<Action> {
        if self.cfg.priority == OWNER_PRIORITY && !self.held {
            return self.become_master(now, reason);
        }
        self.master_adver_interval_cs = self.cfg.advert_interval_cs;
        self.heard = None;
        let backup = Run::Backup {
            master_down_at: now + self.master_down_interval(),
            watch: Watch::Master,
        };
        self.transition(now, backup, reason)
    }

    fn become_master(&mut self, now: Duration, reason: Reason) -> Vec<Action> {
        self.heard = None;
        let adver_at = now + centiseconds(self.cfg.advert_interval_cs);
        let mut actions = vec![Action::SendAdvert {
            priority: self.cfg.priority,
        }];
        actions.extend(self.transition(now, Run::Master { adver_at }, reason));
        actions
    }

    fn transition(&mut self, now: Duration, to: Run, reason: Reason) -> Vec<Action> {
        let from = self.run.state();
        self.run = to;
        let to = to.state();
        self.last_transition = Some((now, from, to, reason));
        vec![Action::Transition { from, to, reason }]
    }

    /// A valid advert for our VRID from `src` (already checked by
    /// [`crate::packet::decode`]).
    pub fn handle_advert(&mut self, now: Duration, src: Ipv4Addr, adv: &Advert) -> Vec<Action> {
        if src == self.cfg.primary_ip || adv.vrid != self.cfg.vrid {
            return Vec::new();
        }
        match self.run {
            Run::Backup { master_down_at, .. } => self.backup_advert(now, master_down_at, src, adv),
            Run::Master { .. } => self.master_advert(now, src, adv),
            Run::Initialize | Run::Fault => Vec::new(),
        }
    }

    /// §6.4.2, Backup receives an ADVERTISEMENT.
    fn backup_advert(
        &mut self,
        now: Duration,
        master_down_at: Duration,
        src: Ipv4Addr,
        adv: &Advert,
    ) -> Vec<Action> {
        self.heard = Some(Heard {
            addr: src,
            priority: adv.priority,
        });
        let run = if adv.priority == 0 {
            // Set the Master_Down_Timer to Skew_Time.
            let at = now + skew_time(self.cfg.priority, self.master_adver_interval_cs);
            Run::Backup {
                master_down_at: at,
                watch: Watch::Resigned { from: src },
            }
        } else if self.accepts(now, adv.priority) {
            // Learn Master_Adver_Interval, recompute Skew_Time and
            // Master_Down_Interval, restart the timer.
            self.master_adver_interval_cs = adv.max_advert_interval_cs.clamp(1, MAX_INTERVAL_CS);
            let at = now + self.master_down_interval();
            Run::Backup {
                master_down_at: at,
                watch: Watch::Master,
            }
        } else {
            // Preempt_Mode and a lower priority: discard, let the timer run.
            let watch = Watch::Preempting {
                master: src,
                priority: adv.priority,
            };
            Run::Backup {
                master_down_at,
                watch,
            }
        };
        self.run = run;
        Vec::new()
    }

    /// Whether a Backup takes an advert of `priority` as a live master
    /// (restarting its timer) rather than discarding it to preempt.
    fn accepts(&self, now: Duration, priority: u8) -> bool {
        !self.may_preempt(now) || priority >= self.cfg.priority
    }

    /// Preempt_Mode as it stands now: configured (the owner always
    /// preempts, §6.1), unless stepped down or within preempt_delay.
    fn may_preempt(&self, now: Duration) -> bool {
        let configured = self.cfg.preempt || self.cfg.priority == OWNER_PRIORITY;
        configured && !self.held && now >= self.preempt_from
    }

    /// §6.4.3, Master receives an ADVERTISEMENT.
    fn master_advert(&mut self, now: Duration, src: Ipv4Addr, adv: &Advert) -> Vec<Action> {
        let ours = self.cfg.priority;
        let send = Action::SendAdvert { priority: ours };
        if adv.priority == 0 {
            // Send an ADVERTISEMENT, reset the Adver_Timer.
            let adver_at = now + centiseconds(self.cfg.advert_interval_cs);
            self.run = Run::Master { adver_at };
            return vec![send];
        }
        let reason = if adv.priority > ours {
            Reason::HigherPriority {
                from: src,
                priority: adv.priority,
            }
        } else if adv.priority == ours && u32::from(src) > u32::from(self.cfg.primary_ip) {
            Reason::EqualPriorityHigherAddress { from: src }
        } else {
            // RFC 9568 §6.4.3: discard, and advertise at once so the
            // sender (and learning bridges) see the right master.
            return vec![send];
        };
        self.master_adver_interval_cs = adv.max_advert_interval_cs.clamp(1, MAX_INTERVAL_CS);
        self.heard = Some(Heard {
            addr: src,
            priority: adv.priority,
        });
        let master_down_at = now + self.master_down_interval();
        let backup = Run::Backup {
            master_down_at,
            watch: Watch::Master,
        };
        self.transition(now, backup, reason)
    }

    /// Call when `now >= next_timeout()`; earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Action> {
        match self.run {
            Run::Backup {
                master_down_at,
                watch,
            } if now >= master_down_at => {
                let reason = match watch {
                    Watch::Master => Reason::MasterDown,
                    Watch::Suspected => Reason::MasterSuspectedDown,
                    Watch::Resigned { from } => Reason::PriorityZero { from },
                    Watch::Preempting { master, priority } => Reason::Preempt { master, priority },
                };
                self.become_master(now, reason)
            }
            Run::Master { adver_at } if now >= adver_at => {
                let adver_at = now + centiseconds(self.cfg.advert_interval_cs);
                self.run = Run::Master { adver_at };
                vec![Action::SendAdvert {
                    priority: self.cfg.priority,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn next_timeout(&self) -> Option<Duration> {
        match self.run {
            Run::Backup { master_down_at, .. } => Some(master_down_at),
            Run::Master { adver_at } => Some(adver_at),
            Run::Initialize | Run::Fault => None,
        }
    }

    /// Shutdown event: a Master sends priority 0 (§6.4.3); every state
    /// goes to Initialize.
    pub fn shutdown(&mut self, now: Duration) -> Vec<Action> {
        self.running = false;
        self.heard = None;
        match self.run {
            Run::Initialize => Vec::new(),
            Run::Master { .. } => self.resign(now, Run::Initialize, Reason::Shutdown),
            Run::Backup { .. } | Run::Fault => {
                self.transition(now, Run::Initialize, Reason::Shutdown)
            }
        }
    }

    /// Advertise priority 0, then move to `to`.
    fn resign(&mut self, now: Duration, to: Run, reason: Reason) -> Vec<Action> {
        let mut actions = vec![Action::SendAdvert { priority: 0 }];
        actions.extend(self.transition(now, to, reason));
        actions
    }

    /// Manual failover: a Master advertises priority 0 and becomes Backup;
    /// in any state, preemption is off until [`Instance::release`].
    pub fn step_down(&mut self, now: Duration) -> Vec<Action> {
        self.held = true;
        if !matches!(self.run, Run::Master { .. }) {
            return Vec::new();
        }
        self.master_adver_interval_cs = self.cfg.advert_interval_cs;
        self.heard = None;
        let master_down_at = now + self.master_down_interval();
        let backup = Run::Backup {
            master_down_at,
            watch: Watch::Master,
        };
        self.resign(now, backup, Reason::StepDown)
    }

    /// End a step-down: preemption per configuration again. Preempting
    /// a lower-priority master then follows the RFC (its adverts are
    /// discarded and Master_Down_Interval runs out).
    pub fn release(&mut self, _now: Duration) -> Vec<Action> {
        self.held = false;
        Vec::new()
    }

    /// Whether a step-down is in force.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The sync stream says the master is alive: in Backup, restart the
    /// Master_Down timer as an accepted advert from the current master
    /// would. Ignored after the master resigned (priority 0), while we
    /// are preempting it, and in other states.
    pub fn peer_alive(&mut self, now: Duration) -> Vec<Action> {
        let Run::Backup { watch, .. } = self.run else {
            return Vec::new();
        };
        if matches!(watch, Watch::Resigned { .. }) {
            return Vec::new();
        }
        if let Some(h) = self.heard
            && !self.accepts(now, h.priority)
        {
            return Vec::new();
        }
        let master_down_at = now + self.master_down_interval();
        self.run = Run::Backup {
            master_down_at,
            watch: Watch::Master,
        };
        Vec::new()
    }

    /// The sync stream to the master ended abruptly (its process may be
    /// dead): in Backup, bring the Master_Down timer forward to one
    /// Master_Adver_Interval + Skew_Time from `now`, if that is sooner.
    /// Never delays the timer; no effect in other states or while
    /// preempting (that timer runs out anyway). The master's next advert
    /// (or a sync heartbeat) restarts the timer as usual, so a live master
    /// keeps its role: a cut sync link alone makes no second master.
    pub fn peer_suspect(&mut self, now: Duration) -> Vec<Action> {
        let Run::Backup {
            master_down_at,
            watch,
        } = self.run
        else {
            return Vec::new();
        };
        if matches!(watch, Watch::Preempting { .. }) {
            return Vec::new();
        }
        let at = now + centiseconds(self.master_adver_interval_cs) + self.skew_time();
        if at < master_down_at {
            self.run = Run::Backup {
                master_down_at: at,
                watch: match watch {
                    Watch::Resigned { .. } => watch,
                    _ => Watch::Suspected,
                },
            };
        }
        Vec::new()
    }

    /// The interface went down: Fault. A Master first sends priority 0 (it
    /// may not get out; the peer then waits Master_Down_Interval).
    pub fn interface_down(&mut self, now: Duration) -> Vec<Action> {
        self.link_up = false;
        if !self.running {
            return Vec::new();
        }
        self.heard = None;
        match self.run {
            Run::Master { .. } => self.resign(now, Run::Fault, Reason::InterfaceDown),
            Run::Backup { .. } | Run::Initialize => {
                self.transition(now, Run::Fault, Reason::InterfaceDown)
            }
            Run::Fault => Vec::new(),
        }
    }

    /// The interface is back: from Fault, start over as at start-up
    /// (preempt_delay counts again from now).
    pub fn interface_up(&mut self, now: Duration) -> Vec<Action> {
        self.link_up = true;
        if !self.running || self.run != Run::Fault {
            return Vec::new();
        }
        self.preempt_from = now + self.cfg.preempt_delay;
        self.enter_service(now, Reason::InterfaceUp)
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.run.state()
    }

    /// Skew_Time now (our priority, the current Master_Adver_Interval).
    pub fn skew_time(&self) -> Duration {
        skew_time(self.cfg.priority, self.master_adver_interval_cs)
    }

    /// Master_Down_Interval now.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.cfg.priority, self.master_adver_interval_cs)
    }

    /// A snapshot for the control API.
    pub fn status(&self) -> Status {
        let state = self.state();
        let effective_priority = match state {
            State::Master => self.cfg.priority,
            State::Backup if !self.held => self.cfg.priority,
            _ => 0,
        };
        let (master_adver_interval_cs, master_addr) = match state {
            State::Master => (self.cfg.advert_interval_cs, Some(self.cfg.primary_ip)),
            State::Backup => (self.master_adver_interval_cs, self.heard.map(|h| h.addr)),
            _ => (self.cfg.advert_interval_cs, None),
        };
        Status {
            name: self.cfg.name.clone(),
            vrid: self.cfg.vrid,
            state,
            priority: self.cfg.priority,
            effective_priority,
            advert_interval_cs: self.cfg.advert_interval_cs,
            master_adver_interval_cs,
            master_addr,
            last_transition: self.last_transition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> InstanceConfig {
        InstanceConfig {
            name: "vi_1".into(),
            vrid: 51,
            priority: 100,
            advert_interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_ip: Ipv4Addr::new(10, 0, 0, 1),
            vips: vec![Ipv4Addr::new(10, 0, 0, 100)],
            unicast_peers: vec![],
        }
    }

    #[test]
    fn validate_names_the_field() {
        type Change = Box<dyn Fn(&mut InstanceConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.name.clear()), "name"),
            (Box::new(|c| c.vrid = 0), "vrid"),
            (Box::new(|c| c.priority = 0), "priority"),
            (Box::new(|c| c.advert_interval_cs = 0), "advert_interval_cs"),
            (
                Box::new(|c| c.advert_interval_cs = 4096),
                "advert_interval_cs",
            ),
            (
                Box::new(|c| c.preempt_delay = Duration::from_secs(1001)),
                "preempt_delay",
            ),
            (
                Box::new(|c| c.primary_ip = Ipv4Addr::UNSPECIFIED),
                "primary_ip",
            ),
            (Box::new(|c| c.vips.clear()), "vips"),
            (
                Box::new(|c| c.vips = vec![Ipv4Addr::new(10, 0, 0, 1); 256]),
                "vips",
            ),
            (
                Box::new(|c| c.vips.push(Ipv4Addr::new(224, 0, 0, 1))),
                "vips",
            ),
            (
                Box::new(|c| c.unicast_peers.push(c.primary_ip)),
                "unicast_peers",
            ),
        ];
        for (change, field) in cases {
            let mut c = cfg();
            change(&mut c);
            let err = c.validate().expect_err(field).to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
            assert!(Instance::new(c).is_err());
        }
        assert_eq!(cfg().validate(), Ok(()));
    }

    #[test]
    fn skew_and_down_interval_follow_rfc_6_1() {
        // (256-100)*100cs/256 = 60.9375 cs = 609.375 ms.
        assert_eq!(skew_time(100, 100), Duration::from_micros(609_375));
        assert_eq!(
            master_down_interval(100, 100),
            Duration::from_micros(3_609_375)
        );
        // 0.1 s adverts at priority 254: 2*10/256 cs = 0.78125 ms, not 0.
        assert_eq!(skew_time(254, 10), Duration::from_micros(781));
        assert_eq!(skew_time(255, 4095), Duration::from_micros(159_960));
    }

    #[test]
    fn virtual_mac_is_rfc_7_3() {
        assert_eq!(virtual_mac(51), [0, 0, 0x5e, 0, 1, 51]);
    }

    #[test]
    fn names() {
        assert_eq!(State::Initialize.name(), "INIT");
        assert_eq!(State::Fault.to_string(), "FAULT");
        assert_eq!(
            Reason::MasterDown.to_string(),
            "master down interval expired"
        );
        let from = Ipv4Addr::new(10, 0, 0, 2);
        let r = Reason::HigherPriority {
            from,
            priority: 200,
        };
        assert!(
            r.to_string()
                .starts_with("higher priority advert from 10.0.0.2")
        );
    }

    #[test]
    fn start_is_idempotent_and_start_with_link_down_is_fault() {
        let mut i = Instance::new(cfg()).unwrap();
        i.interface_down(Duration::ZERO);
        let a = i.start(Duration::ZERO);
        assert_eq!(i.state(), State::Fault);
        assert_eq!(a.len(), 1);
        assert!(i.start(Duration::ZERO).is_empty());
        i.interface_up(Duration::from_secs(1));
        assert_eq!(i.state(), State::Backup);
    }

    #[test]
    fn own_and_foreign_vrid_adverts_are_ignored() {
        let mut i = Instance::new(cfg()).unwrap();
        i.start(Duration::ZERO);
        let before = i.next_timeout();
        let mut adv = cfg().advert(200);
        assert!(
            i.handle_advert(Duration::from_millis(5), cfg().primary_ip, &adv)
                .is_empty()
        );
        adv.vrid = 52;
        let other = Ipv4Addr::new(10, 0, 0, 2);
        assert!(
            i.handle_advert(Duration::from_millis(5), other, &adv)
                .is_empty()
        );
        assert_eq!(i.next_timeout(), before);
    }
}
