//! The planner: from what the real server looks like now ([`Observed`]) and
//! what the operator asked for, the list of changes that `setup` or `undo`
//! must make. Pure, so every rule (and idempotence: a set-up host plans
//! nothing) is tested without root.

use std::fmt;
use std::net::Ipv4Addr;

use super::Error;
use super::model::{LinkKind, Observed, conf_key, split_conf_key};
use super::state::State;

/// Forwarding method the real server takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: the director rewrites only the MAC.
    Dr,
    /// IPIP tunnelling: the director wraps the packet in an outer IPv4
    /// header to the real server.
    Tun,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Dr => "dr",
            Mode::Tun => "tun",
        })
    }
}

/// Who takes the outer IPIP header off in TUN mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap {
    /// The kernel's ipip device if the kernel has one, else userspace.
    Auto,
    /// The kernel's ipip device.
    Kernel,
    /// `dirctl realserver decap` writing into a TUN device.
    Userspace,
}

/// The device a TUN-mode real server decapsulates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// A kernel ipip device.
    KernelIpip,
    /// A persistent TUN device fed by the userspace decapsulator.
    UserspaceTun,
}

impl TunnelKind {
    /// Default device name.
    pub fn default_dev(self) -> &'static str {
        match self {
            TunnelKind::KernelIpip => "tunl0",
            TunnelKind::UserspaceTun => DEFAULT_TUN_DEV,
        }
    }

    /// The name used in the state file and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::KernelIpip => "ipip",
            TunnelKind::UserspaceTun => "tun",
        }
    }

    /// Inverse of [`TunnelKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ipip" => Some(TunnelKind::KernelIpip),
            "tun" => Some(TunnelKind::UserspaceTun),
            _ => None,
        }
    }

    fn matches(self, kind: &LinkKind) -> bool {
        match self {
            TunnelKind::KernelIpip => *kind == LinkKind::Ipip,
            TunnelKind::UserspaceTun => *kind == LinkKind::Tun,
        }
    }
}

/// Default name of the userspace decapsulator's TUN device.
pub const DEFAULT_TUN_DEV: &str = "lvs-tun0";

/// What the operator asked `setup` (and `check`) for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The virtual addresses.
    pub vips: Vec<Ipv4Addr>,
    /// DR or TUN.
    pub mode: Mode,
    /// Device to hold the VIPs (default `lo` for DR, the tunnel for TUN).
    pub dev: Option<String>,
    /// TUN only: who decapsulates.
    pub decap: Decap,
}

/// Where the VIPs go, decided from the request and the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Device holding the VIPs.
    pub dev: String,
    /// TUN mode: the tunnel kind.
    pub tunnel: Option<TunnelKind>,
}

impl Request {
    /// Resolves the VIP device: `--dev`, else `lo` (DR), else `tunl0` when
    /// the kernel has ipip and `lvs-tun0` (userspace) when it has not.
    pub fn target(&self, obs: &Observed) -> Result<Target, Error> {
        let tunnel = match (self.mode, self.decap) {
            (Mode::Dr, _) => None,
            (Mode::Tun, Decap::Kernel) => Some(TunnelKind::KernelIpip),
            (Mode::Tun, Decap::Userspace) => Some(TunnelKind::UserspaceTun),
            (Mode::Tun, Decap::Auto) => {
                // An existing device named by --dev decides; else the kernel.
                let by_dev =
                    self.dev
                        .as_deref()
                        .and_then(|d| obs.link(d))
                        .and_then(|l| match l.kind {
                            LinkKind::Ipip => Some(TunnelKind::KernelIpip),
                            LinkKind::Tun => Some(TunnelKind::UserspaceTun),
                            _ => None,
                        });
                Some(by_dev.unwrap_or(if obs.ipip_available {
                    TunnelKind::KernelIpip
                } else {
                    TunnelKind::UserspaceTun
                }))
            }
        };
        let dev = match (&self.dev, tunnel) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.default_dev().to_owned(),
            (None, None) => "lo".to_owned(),
        };
        check_ifname(&dev)?;
        Ok(Target { dev, tunnel })
    }
}

fn check_ifname(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "all"
        && name != "default"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadDevice(name.to_owned()))
    }
}

/// One change to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the tunnel device.
    CreateLink {
        /// Device name.
        name: String,
        /// Kernel ipip or persistent TUN.
        kind: TunnelKind,
    },
    /// Set a device administratively up.
    LinkUp {
        /// Device name.
        name: String,
    },
    /// Add `vip/32` to `dev`.
    AddAddr {
        /// The VIP.
        vip: Ipv4Addr,
        /// Device.
        dev: String,
    },
    /// Set a sysctl.
    SetSysctl {
        /// Full key, `net.ipv4.conf.all.arp_ignore`.
        key: String,
        /// Value before.
        from: u32,
        /// Value after.
        to: u32,
    },
    /// Remove `vip/32` from `dev`.
    DelAddr {
        /// The VIP.
        vip: Ipv4Addr,
        /// Device.
        dev: String,
    },
    /// Delete the tunnel device.
    DelLink {
        /// Device name.
        name: String,
        /// Kernel ipip or persistent TUN.
        kind: TunnelKind,
    },
}

impl fmt::Display for Change {
    /// Human form, "what: before → after".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateLink { name, kind } => {
                write!(f, "device {name}: absent → {} device", kind.as_str())
            }
            Change::LinkUp { name } => write!(f, "device {name}: down → up"),
            Change::AddAddr { vip, dev } => write!(f, "{vip}/32 on {dev}: absent → present"),
            Change::SetSysctl { key, from, to } => write!(f, "{key}: {from} → {to}"),
            Change::DelAddr { vip, dev } => write!(f, "{vip}/32 on {dev}: present → absent"),
            Change::DelLink { name, kind } => {
                write!(f, "device {name}: {} device → absent", kind.as_str())
            }
        }
    }
}

/// The outcome of planning: the changes in the order to make them, and
/// what was already right (printed, so a second run says why it did
/// nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes, in order.
    pub changes: Vec<Change>,
    /// Things already as wanted.
    pub unchanged: Vec<String>,
    /// Remarks for the operator (e.g. how to run the decapsulator).
    pub notes: Vec<String>,
}

/// `arp_ignore` values under which the host does not answer ARP for an
/// address held on another device: 1 and 2 (only addresses on the incoming
/// interface), 8 (never). 0, 3 (which answers for global-scope addresses,
/// as a VIP is) and the reserved 4-7 answer.
pub fn arp_ignore_ok(v: u32) -> bool {
    matches!(v, 1 | 2 | 8)
}

/// `arp_announce` 2 is the only value that never uses a VIP as the source
/// of the host's own ARP requests (the kernel treats values above 2 as 0).
pub fn arp_announce_ok(v: u32) -> bool {
    v == 2
}

/// Plans `setup`.
pub fn plan_setup(req: &Request, obs: &Observed) -> Result<Plan, Error> {
    if req.vips.is_empty() {
        return Err(Error::NoVip);
    }
    let target = req.target(obs)?;
    let mut plan = Plan::default();
    let dev = target.dev.as_str();

    // The VIP device: must exist (or be ours to create) and must not ARP.
    let mut created = false;
    match (obs.link(dev), target.tunnel) {
        (Some(link), Some(kind)) if !kind.matches(&link.kind) => {
            return Err(Error::WrongDeviceKind {
                dev: dev.to_owned(),
                want: kind.as_str(),
            });
        }
        (Some(link), _) if link.arps() => {
            return Err(Error::ArpingDevice(dev.to_owned()));
        }
        (Some(link), _) => {
            plan.unchanged.push(format!("device {dev} exists"));
            if !link.up {
                plan.changes.push(Change::LinkUp { name: dev.into() });
            } else {
                plan.unchanged.push(format!("device {dev} is up"));
            }
        }
        (None, Some(kind)) => {
            created = true;
            plan.changes.push(Change::CreateLink {
                name: dev.into(),
                kind,
            });
            plan.changes.push(Change::LinkUp { name: dev.into() });
        }
        (None, None) => return Err(Error::NoSuchDevice(dev.to_owned())),
    }

    for &vip in &req.vips {
        let here: Vec<_> = obs.addrs_of(vip).collect();
        if let Some(a) = here
            .iter()
            .find(|a| obs.link(&a.dev).is_some_and(|l| l.arps()))
        {
            return Err(Error::ArpConflict {
                vip,
                dev: a.dev.clone(),
            });
        }
        match here.iter().find(|a| a.dev == dev) {
            Some(a) if a.prefix == 32 => plan.unchanged.push(format!("{vip}/32 on {dev}")),
            Some(a) => {
                return Err(Error::VipPrefix {
                    vip,
                    dev: dev.into(),
                    prefix: a.prefix,
                });
            }
            None => {
                if let Some(other) = here.first() {
                    return Err(Error::VipElsewhere {
                        vip,
                        dev: other.dev.clone(),
                        want: dev.into(),
                    });
                }
                plan.changes.push(Change::AddAddr {
                    vip,
                    dev: dev.into(),
                });
            }
        }
    }

    // ARP: `all` and every ARPing device, so the settings also hold if
    // someone later resets `all` (the kernel acts on max(all, dev)).
    let mut arp_scopes = vec!["all".to_owned()];
    arp_scopes.extend(obs.arp_links().iter().map(|l| l.name.clone()));
    for scope in &arp_scopes {
        sysctl_to(&mut plan, obs, scope, "arp_ignore", 1, arp_ignore_ok);
        sysctl_to(&mut plan, obs, scope, "arp_announce", 2, arp_announce_ok);
    }

    match target.tunnel {
        None => plan.notes.push(
            "rp_filter left as it is: in DR, requests arrive on the interface the \
             replies to the client leave by"
                .into(),
        ),
        Some(kind) => {
            // Decapsulated packets arrive on the tunnel device with the
            // client's source address, whose route leaves by another
            // device: strict reverse-path filtering (max(all, dev) == 1)
            // would drop them.
            sysctl_to(&mut plan, obs, "all", "rp_filter", 0, |v| v == 0);
            if created {
                // A new device starts with the `default` values.
                let from = obs.conf("default", "rp_filter").unwrap_or(0);
                if from != 0 {
                    plan.changes.push(Change::SetSysctl {
                        key: conf_key(dev, "rp_filter"),
                        from,
                        to: 0,
                    });
                }
            } else {
                sysctl_to(&mut plan, obs, dev, "rp_filter", 0, |v| v == 0);
            }
            if kind == TunnelKind::UserspaceTun {
                plan.notes.push(format!(
                    "the kernel has {} ipip device here: IPIP is decapsulated in userspace. \
                     Run the decapsulator in the foreground (e.g. as a systemd service, \
                     Restart=always): dirctl realserver decap --dev {dev}",
                    if obs.ipip_available { "an" } else { "no" }
                ));
            }
        }
    }
    Ok(plan)
}

fn sysctl_to(
    plan: &mut Plan,
    obs: &Observed,
    scope: &str,
    name: &str,
    to: u32,
    ok: impl Fn(u32) -> bool,
) {
    let key = conf_key(scope, name);
    match obs.conf(scope, name) {
        Some(v) if ok(v) => plan.unchanged.push(format!("{key} = {v}")),
        Some(from) => plan.changes.push(Change::SetSysctl { key, from, to }),
        // A device without /proc/sys entries (vanished while we looked):
        // nothing to set.
        None => plan.notes.push(format!("{key}: not present, skipped")),
    }
}

/// Plans `undo` from what `setup` recorded. A sysctl changed again since
/// setup (by someone else) is left alone and said so.
pub fn plan_undo(state: &State, obs: &Observed) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    // A TUN device still held open by the decapsulator cannot be deleted
    // (`ip tuntap del` needs to attach to it): refuse before changing
    // anything rather than stop half-way.
    for (name, kind) in &state.links {
        if *kind == TunnelKind::UserspaceTun && obs.link(name).is_some_and(|l| l.lower_up) {
            return Err(Error::DecapRunning {
                dev: name.clone(),
                pids: obs.decap_pids.clone(),
            });
        }
    }
    let removed_links: Vec<&str> = state
        .links
        .iter()
        .filter(|(n, _)| obs.link(n).is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    for (vip, dev) in &state.addrs {
        if obs.addrs_of(*vip).any(|a| a.dev == *dev) {
            plan.changes.push(Change::DelAddr {
                vip: *vip,
                dev: dev.clone(),
            });
        } else {
            plan.unchanged
                .push(format!("{vip}/32 on {dev}: already absent"));
        }
    }
    for s in &state.sysctls {
        let Some((dev, name)) = split_conf_key(&s.key) else {
            plan.notes
                .push(format!("{}: not a per-device sysctl, skipped", s.key));
            continue;
        };
        if removed_links.contains(&dev) {
            // Goes away with the device.
            continue;
        }
        match obs.conf(dev, name) {
            None => plan.unchanged.push(format!("{}: gone", s.key)),
            Some(now) if now == s.before => plan
                .unchanged
                .push(format!("{} = {now} (as before setup)", s.key)),
            Some(now) if now == s.set_to => plan.changes.push(Change::SetSysctl {
                key: s.key.clone(),
                from: now,
                to: s.before,
            }),
            Some(now) => plan.notes.push(format!(
                "{} is {now}, changed since setup set it to {}: left alone (was {} before setup)",
                s.key, s.set_to, s.before
            )),
        }
    }
    for (name, kind) in &state.links {
        if obs.link(name).is_some() {
            plan.changes.push(Change::DelLink {
                name: name.clone(),
                kind: *kind,
            });
        } else {
            plan.unchanged
                .push(format!("device {name}: already absent"));
        }
    }
    Ok(plan)
}
