//! `check`: reads the real server's state and says, one finding at a time,
//! what would break LVS traffic to it. Pure over [`Observed`], so each rule
//! (the ARP conflict, the max(all, dev) rule) is tested without root.

use std::fmt;
use std::net::Ipv4Addr;

use super::model::{LinkKind, Observed};
use super::plan::{DEFAULT_TUN_DEV, Mode, arp_announce_ok, arp_ignore_ok};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Works, but deserves a look.
    Warn,
    /// Traffic would break.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Short tag, stable for scripts and tests (`vip-missing`, `arp-conflict`).
    pub code: &'static str,
    /// The explanation.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Ok => "ok  ",
            Severity::Warn => "WARN",
            Severity::Fail => "FAIL",
        };
        write!(f, "{tag} [{}] {}", self.code, self.message)
    }
}

/// How this host reaches the director (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTo {
    /// Outgoing device.
    pub dev: String,
    /// Gateway, if not on-link.
    pub via: Option<Ipv4Addr>,
}

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    /// The VIPs.
    pub vips: Vec<Ipv4Addr>,
    /// DR or TUN.
    pub mode: Mode,
    /// The tunnel device to look at (TUN), when not the usual one.
    pub dev: Option<String>,
    /// The director, and this host's route to it.
    pub director: Option<(Ipv4Addr, Option<RouteTo>)>,
}

fn finding(severity: Severity, code: &'static str, message: String) -> Finding {
    Finding {
        severity,
        code,
        message,
    }
}

/// Runs every rule.
pub fn check(req: &CheckRequest, obs: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    check_vips(req, obs, &mut out);
    check_arp(obs, &mut out);
    if req.mode == Mode::Tun {
        check_tunnel(req, obs, &mut out);
    }
    if obs.default_route {
        out.push(finding(
            Severity::Ok,
            "default-route",
            "a default route exists (replies go straight to the clients)".into(),
        ));
    } else {
        out.push(finding(
            Severity::Fail,
            "default-route-missing",
            "no IPv4 default route: replies go from the real server straight to the \
             clients, not back through the director, so it needs a route to them"
                .into(),
        ));
    }
    if let Some((addr, route)) = &req.director {
        check_director(req, obs, *addr, route.as_ref(), &mut out);
    }
    out
}

fn check_vips(req: &CheckRequest, obs: &Observed, out: &mut Vec<Finding>) {
    for &vip in &req.vips {
        let here: Vec<_> = obs.addrs_of(vip).collect();
        if here.is_empty() {
            out.push(finding(
                Severity::Fail,
                "vip-missing",
                format!(
                    "VIP {vip} is not configured on any interface: the kernel would drop \
                     packets the director sends for it (add it as {vip}/32 on {})",
                    if req.mode == Mode::Dr {
                        "lo"
                    } else {
                        "the tunnel device"
                    }
                ),
            ));
            continue;
        }
        for a in here {
            let arps = obs.link(&a.dev).is_some_and(|l| l.arps());
            if arps {
                out.push(finding(
                    Severity::Fail,
                    "arp-conflict",
                    format!(
                        "VIP {vip} is on {}, an interface that answers ARP: this host would \
                         answer ARP for the VIP and steal the director's traffic (the \
                         classic LVS ARP problem); move it to lo (DR) or the tunnel device \
                         (TUN) as {vip}/32",
                        a.dev
                    ),
                ));
            } else if obs.link(&a.dev).is_some_and(|l| !l.up) {
                out.push(finding(
                    Severity::Fail,
                    "vip-dev-down",
                    format!(
                        "VIP {vip} is on {}, which is down: the kernel does not treat \
                         addresses of a down device as local; `ip link set {} up`",
                        a.dev, a.dev
                    ),
                ));
            } else if a.prefix != 32 {
                out.push(finding(
                    Severity::Fail,
                    "vip-prefix",
                    format!(
                        "VIP {vip} is on {} as /{}: everything in that subnet becomes local \
                         to this host; use {vip}/32",
                        a.dev, a.prefix
                    ),
                ));
            } else {
                out.push(finding(
                    Severity::Ok,
                    "vip",
                    format!("VIP {vip}/32 is on {}, which does not ARP", a.dev),
                ));
            }
        }
    }
}

fn check_arp(obs: &Observed, out: &mut Vec<Finding>) {
    let all = |name| obs.conf("all", name).unwrap_or(0);
    for link in obs.arp_links() {
        let dev = link.name.as_str();
        let own = |name| obs.conf(dev, name).unwrap_or(0);
        let ai = obs.effective(dev, "arp_ignore");
        if arp_ignore_ok(ai) {
            out.push(finding(
                Severity::Ok,
                "arp-ignore",
                format!("{dev}: arp_ignore {ai} (answers ARP only for its own addresses)"),
            ));
        } else {
            out.push(finding(
                Severity::Fail,
                "arp-ignore",
                format!(
                    "{dev}: effective arp_ignore is {ai} (max of all={} and {dev}={}): \
                     {dev} would answer ARP for a VIP held on another device; set \
                     net.ipv4.conf.all.arp_ignore=1 (and {dev})",
                    all("arp_ignore"),
                    own("arp_ignore")
                ),
            ));
        }
        let aa = obs.effective(dev, "arp_announce");
        if arp_announce_ok(aa) {
            out.push(finding(
                Severity::Ok,
                "arp-announce",
                format!("{dev}: arp_announce {aa} (never uses a VIP as ARP source)"),
            ));
        } else {
            out.push(finding(
                Severity::Fail,
                "arp-announce",
                format!(
                    "{dev}: effective arp_announce is {aa} (max of all={} and {dev}={}): \
                     ARP requests from {dev} may carry a VIP as sender address and \
                     poison the neighbours' caches; set net.ipv4.conf.all.arp_announce=2",
                    all("arp_announce"),
                    own("arp_announce")
                ),
            ));
        }
    }
}

fn check_tunnel(req: &CheckRequest, obs: &Observed, out: &mut Vec<Finding>) {
    // The decapsulating device: --dev, else a kernel ipip device, else the
    // userspace TUN device.
    let dev = req
        .dev
        .as_deref()
        .and_then(|d| obs.link(d))
        .or_else(|| obs.links.iter().find(|l| l.kind == LinkKind::Ipip && l.up))
        .or_else(|| obs.link(DEFAULT_TUN_DEV))
        .or_else(|| obs.links.iter().find(|l| l.kind == LinkKind::Tun));
    let Some(link) = dev else {
        out.push(finding(
            Severity::Fail,
            "no-decap",
            format!(
                "no IPIP decapsulator: no ipip device and no userspace TUN device \
                 ({DEFAULT_TUN_DEV}); IPIP packets from the director would be dropped (and \
                 answered with ICMP protocol unreachable). Run `dirctl realserver setup --mode \
                 tun` {}",
                if obs.ipip_available {
                    ""
                } else {
                    "(this kernel has no ipip: it sets up userspace decapsulation)"
                }
            ),
        ));
        return;
    };
    let name = link.name.as_str();
    match &link.kind {
        LinkKind::Ipip if link.up => out.push(finding(
            Severity::Ok,
            "decap",
            format!("kernel ipip device {name} is up"),
        )),
        LinkKind::Ipip => out.push(finding(
            Severity::Fail,
            "decap-down",
            format!("kernel ipip device {name} is down: `ip link set {name} up`"),
        )),
        LinkKind::Tun if link.up && link.lower_up => out.push(finding(
            Severity::Ok,
            "decap",
            format!(
                "userspace decapsulator attached to {name}{}",
                match obs.decap_pids.as_slice() {
                    [] => String::new(),
                    pids => format!(" (pid {pids:?})"),
                }
            ),
        )),
        LinkKind::Tun if !link.up => out.push(finding(
            Severity::Fail,
            "decap-down",
            format!("TUN device {name} is down: `ip link set {name} up`"),
        )),
        LinkKind::Tun => out.push(finding(
            Severity::Fail,
            "no-decap",
            format!(
                "TUN device {name} has no decapsulator attached: IPIP packets would be \
                 dropped; run `dirctl realserver decap --dev {name}`"
            ),
        )),
        other => out.push(finding(
            Severity::Fail,
            "no-decap",
            format!("{name} is a {other:?} device, not an ipip or TUN device"),
        )),
    }
    let rp = obs.effective(name, "rp_filter");
    let (all, own) = (
        obs.conf("all", "rp_filter").unwrap_or(0),
        obs.conf(name, "rp_filter").unwrap_or(0),
    );
    let detail = format!("max of all={all} and {name}={own}");
    out.push(match rp {
        1 => finding(
            Severity::Fail,
            "rp-filter",
            format!(
                "{name}: effective rp_filter is 1, strict ({detail}): decapsulated packets \
                 come from clients routed via another interface and would be dropped; set \
                 net.ipv4.conf.all.rp_filter=0 and net.ipv4.conf.{name}.rp_filter=0"
            ),
        ),
        0 => finding(
            Severity::Ok,
            "rp-filter",
            format!("{name}: rp_filter off ({detail})"),
        ),
        v => finding(
            Severity::Ok,
            "rp-filter",
            format!("{name}: rp_filter {v}, loose ({detail}): passes while a route to the clients exists"),
        ),
    });
}

fn check_director(
    req: &CheckRequest,
    obs: &Observed,
    director: Ipv4Addr,
    route: Option<&RouteTo>,
    out: &mut Vec<Finding>,
) {
    let Some(route) = route else {
        out.push(finding(
            Severity::Fail,
            "director-unreachable",
            format!("no route to the director {director}"),
        ));
        return;
    };
    let dev = route.dev.as_str();
    if let (Mode::Dr, Some(via)) = (req.mode, route.via) {
        out.push(finding(
            Severity::Warn,
            "director-not-on-link",
            format!(
                "the director {director} is reached via the gateway {via}: DR needs the \
                 director and the real server on one L2 segment"
            ),
        ));
    }
    // An ARP request for the VIP from the director arrives on `dev`. The
    // host answers it if the VIP is on `dev`, or if arp_ignore lets it
    // answer for addresses on other devices.
    let ai = obs.effective(dev, "arp_ignore");
    for &vip in &req.vips {
        let on_dev = obs.addrs_of(vip).any(|a| a.dev == dev);
        let answers = on_dev || (obs.addrs_of(vip).next().is_some() && !arp_ignore_ok(ai));
        out.push(if answers {
            finding(
                Severity::Fail,
                "arp-answered",
                format!(
                    "an ARP request for {vip} from the director {director} (arriving on \
                     {dev}) would be answered by this host ({})",
                    if on_dev {
                        format!("the VIP is on {dev}")
                    } else {
                        format!("effective arp_ignore on {dev} is {ai}")
                    }
                ),
            )
        } else {
            finding(
                Severity::Ok,
                "arp-not-answered",
                format!(
                    "an ARP request for {vip} from the director {director} (arriving on \
                     {dev}) would not be answered by this host (arp_ignore {ai}, VIP not on \
                     {dev})"
                ),
            )
        });
    }
}

/// True when no finding is a failure.
pub fn healthy(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity != Severity::Fail)
}
