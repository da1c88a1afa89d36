//! Planner, check and the setup → setup → undo cycle against an in-memory
//! host, without root.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);

/// A host in memory; `apply` changes it the way the kernel would.
#[derive(Debug, Clone)]
struct FakeSystem {
    obs: Observed,
    applied: Vec<Change>,
}

impl System for FakeSystem {
    fn observe(&mut self) -> Result<Observed, Error> {
        Ok(self.obs.clone())
    }

    fn route_to(&mut self, _addr: Ipv4Addr) -> Result<Option<RouteTo>, Error> {
        Ok(Some(RouteTo {
            dev: "eth0".into(),
            via: None,
        }))
    }

    fn apply(&mut self, change: &Change) -> Result<(), Error> {
        let o = &mut self.obs;
        match change {
            Change::CreateLink { name, kind } => {
                o.links.push(LinkInfo {
                    name: name.clone(),
                    kind: match kind {
                        TunnelKind::KernelIpip => LinkKind::Ipip,
                        TunnelKind::UserspaceTun => LinkKind::Tun,
                    },
                    up: false,
                    lower_up: false,
                    noarp: true,
                });
                // New devices start from the `default` values.
                for n in ["arp_ignore", "arp_announce", "rp_filter"] {
                    let v = o.conf("default", n).unwrap_or(0);
                    o.sysctls.insert(conf_key(name, n), v);
                }
            }
            Change::LinkUp { name } => {
                o.links.iter_mut().find(|l| l.name == *name).unwrap().up = true;
            }
            Change::AddAddr { vip, dev } => o.addrs.push(AddrInfo {
                dev: dev.clone(),
                addr: *vip,
                prefix: 32,
                label: Some(format!("{dev}:vip")),
            }),
            Change::SetSysctl { key, to, .. } => {
                o.sysctls.insert(key.clone(), *to);
            }
            Change::DelAddr { vip, dev } => o.addrs.retain(|a| !(a.addr == *vip && a.dev == *dev)),
            Change::DelLink { name, .. } => {
                o.links.retain(|l| l.name != *name);
                o.addrs.retain(|a| a.dev != *name);
                let prefix = format!("net.ipv4.conf.{name}.");
                o.sysctls.retain(|k, _| !k.starts_with(&prefix));
            }
        }
        self.applied.push(change.clone());
        Ok(())
    }
}

/// lo + eth0 (10.1.0.21/24), everything at kernel defaults except strict
/// rp_filter, as many distributions ship.
fn host() -> FakeSystem {
    let mut obs = Observed {
        links: vec![
            LinkInfo {
                name: "lo".into(),
                kind: LinkKind::Loopback,
                up: true,
                lower_up: true,
                noarp: false,
            },
            LinkInfo {
                name: "eth0".into(),
                kind: LinkKind::Other("veth".into()),
                up: true,
                lower_up: true,
                noarp: false,
            },
        ],
        addrs: vec![
            AddrInfo {
                dev: "lo".into(),
                addr: Ipv4Addr::LOCALHOST,
                prefix: 8,
                label: None,
            },
            AddrInfo {
                dev: "eth0".into(),
                addr: Ipv4Addr::new(10, 1, 0, 21),
                prefix: 24,
                label: None,
            },
        ],
        default_route: true,
        ..Observed::default()
    };
    for dev in ["all", "default", "lo", "eth0"] {
        obs.sysctls.insert(conf_key(dev, "arp_ignore"), 0);
        obs.sysctls.insert(conf_key(dev, "arp_announce"), 0);
        obs.sysctls.insert(conf_key(dev, "rp_filter"), 1);
    }
    FakeSystem {
        obs,
        applied: Vec::new(),
    }
}

fn req(mode: Mode) -> Request {
    Request {
        vips: vec![VIP],
        mode,
        dev: None,
        decap: Decap::Auto,
    }
}

fn check_req(mode: Mode) -> CheckRequest {
    CheckRequest {
        vips: vec![VIP],
        mode,
        dev: None,
        director: None,
    }
}

fn state_file() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("dirctl-realserver-unit-{}-{n}", std::process::id()))
        .join(STATE_FILE)
}

fn set(key: &str, v: u32) -> Change {
    let (dev, name) = key.split_once('.').unwrap();
    Change::SetSysctl {
        key: conf_key(dev, name),
        from: if name == "rp_filter" { 1 } else { 0 },
        to: v,
    }
}

fn codes(findings: &[Finding], severity: Severity) -> Vec<&'static str> {
    findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.code)
        .collect()
}

#[test]
fn realserver_dr_plan_puts_the_vip_on_lo_and_quiets_arp() {
    let plan = plan_setup(&req(Mode::Dr), &host().obs).unwrap();
    assert_eq!(
        plan.changes,
        vec![
            Change::AddAddr {
                vip: VIP,
                dev: "lo".into()
            },
            set("all.arp_ignore", 1),
            set("all.arp_announce", 2),
            set("eth0.arp_ignore", 1),
            set("eth0.arp_announce", 2),
        ]
    );
    // DR does not need rp_filter off: it is left alone.
    assert!(plan.notes.iter().any(|n| n.contains("rp_filter left")));
}

#[test]
fn realserver_tun_plan_without_kernel_ipip_uses_a_tun_device() {
    let plan = plan_setup(&req(Mode::Tun), &host().obs).unwrap();
    let dev = DEFAULT_TUN_DEV.to_owned();
    assert_eq!(
        plan.changes[..3],
        [
            Change::CreateLink {
                name: dev.clone(),
                kind: TunnelKind::UserspaceTun
            },
            Change::LinkUp { name: dev.clone() },
            Change::AddAddr {
                vip: VIP,
                dev: dev.clone()
            },
        ]
    );
    // rp_filter off on `all` and on the new device (which starts from
    // `default`, 1 here).
    assert!(plan.changes.contains(&set("all.rp_filter", 0)));
    assert!(plan.changes.contains(&Change::SetSysctl {
        key: conf_key(&dev, "rp_filter"),
        from: 1,
        to: 0
    }));
    assert!(plan.changes.contains(&set("eth0.arp_ignore", 1)));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("dirctl realserver decap --dev lvs-tun0"))
    );
}

#[test]
fn realserver_tun_plan_with_kernel_ipip_uses_tunl0() {
    let mut h = host();
    h.obs.ipip_available = true;
    let plan = plan_setup(&req(Mode::Tun), &h.obs).unwrap();
    assert_eq!(
        plan.changes[0],
        Change::CreateLink {
            name: "tunl0".into(),
            kind: TunnelKind::KernelIpip
        }
    );
    // Forcing userspace overrides the kernel's ability.
    let mut r = req(Mode::Tun);
    r.decap = Decap::Userspace;
    assert_eq!(
        r.target(&h.obs).unwrap().tunnel,
        Some(TunnelKind::UserspaceTun)
    );
}

#[test]
fn realserver_setup_twice_changes_nothing_the_second_time_and_undo_restores() {
    for mode in [Mode::Dr, Mode::Tun] {
        let mut sys = host();
        let before = sys.obs.clone();
        let path = state_file();
        let mut out = Vec::new();
        let first = setup(&mut sys, &req(mode), &path, &mut out).unwrap();
        assert!(first.changed() > 0);
        assert!(path.exists());

        let mut out = Vec::new();
        let second = setup(&mut sys, &req(mode), &path, &mut out).unwrap();
        assert_eq!(second.changed(), 0, "{mode}: {:?}", second.plan.changes);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("nothing to change"), "{text}");
        assert!(text.contains("unchanged: 10.1.0.100/32 on"), "{text}");

        // The decapsulator attached: check passes.
        if mode == Mode::Tun {
            let l = sys.obs.links.iter_mut().find(|l| l.kind == LinkKind::Tun);
            l.unwrap().lower_up = true;
        }
        let findings = check(&check_req(mode), &sys.obs);
        assert!(healthy(&findings), "{mode}: {findings:#?}");
        if mode == Mode::Tun {
            let l = sys.obs.links.iter_mut().find(|l| l.kind == LinkKind::Tun);
            l.unwrap().lower_up = false;
        }

        let mut out = Vec::new();
        undo(&mut sys, &path, &mut out).unwrap();
        assert_eq!(sys.obs, before, "{mode}: undo left a difference");
        assert!(!path.exists());
        // Undo again: nothing recorded, nothing done.
        let again = undo(&mut sys, &path, &mut Vec::new()).unwrap();
        assert_eq!(again.changed(), 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[test]
fn realserver_undo_leaves_a_sysctl_someone_else_changed() {
    let mut sys = host();
    let path = state_file();
    setup(&mut sys, &req(Mode::Dr), &path, &mut Vec::new()).unwrap();
    sys.obs.sysctls.insert(conf_key("all", "arp_ignore"), 2);
    let plan = plan_undo(&State::load(&path).unwrap(), &sys.obs).unwrap();
    assert!(!plan.changes.iter().any(
        |c| matches!(c, Change::SetSysctl { key, .. } if key == "net.ipv4.conf.all.arp_ignore")
    ));
    assert!(plan.notes.iter().any(|n| n.contains("left alone")));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn realserver_undo_refuses_while_the_decapsulator_holds_the_device() {
    let mut sys = host();
    let path = state_file();
    setup(&mut sys, &req(Mode::Tun), &path, &mut Vec::new()).unwrap();
    sys.obs.links.iter_mut().last().unwrap().lower_up = true;
    let err = plan_undo(&State::load(&path).unwrap(), &sys.obs).unwrap_err();
    assert!(matches!(err, Error::DecapRunning { .. }), "{err}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn realserver_arp_conflict_is_refused_by_setup_and_named_by_check() {
    let mut h = host();
    h.obs.addrs.push(AddrInfo {
        dev: "eth0".into(),
        addr: VIP,
        prefix: 32,
        label: None,
    });
    let err = plan_setup(&req(Mode::Dr), &h.obs).unwrap_err();
    assert!(
        matches!(err, Error::ArpConflict { ref dev, .. } if dev == "eth0"),
        "{err}"
    );

    let mut r = check_req(Mode::Dr);
    r.director = Some((
        Ipv4Addr::new(10, 1, 0, 2),
        Some(RouteTo {
            dev: "eth0".into(),
            via: None,
        }),
    ));
    let findings = check(&r, &h.obs);
    let fails = codes(&findings, Severity::Fail);
    assert!(fails.contains(&"arp-conflict"), "{findings:#?}");
    assert!(fails.contains(&"arp-answered"), "{findings:#?}");
    let msg = &findings
        .iter()
        .find(|f| f.code == "arp-conflict")
        .unwrap()
        .message;
    assert!(msg.contains("eth0") && msg.contains("10.1.0.100"), "{msg}");
    assert!(!healthy(&findings));
}

#[test]
fn realserver_check_uses_the_max_of_all_and_device() {
    let mut sys = host();
    let path = state_file();
    setup(&mut sys, &req(Mode::Tun), &path, &mut Vec::new()).unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    sys.obs.links.iter_mut().last().unwrap().lower_up = true;
    let rp = |all: u32, dev: u32| {
        let mut o = sys.obs.clone();
        o.sysctls.insert(conf_key("all", "rp_filter"), all);
        o.sysctls
            .insert(conf_key(DEFAULT_TUN_DEV, "rp_filter"), dev);
        let f = check(&check_req(Mode::Tun), &o);
        f.into_iter()
            .find(|f| f.code == "rp-filter")
            .unwrap()
            .severity
    };
    assert_eq!(rp(0, 0), Severity::Ok);
    assert_eq!(rp(1, 0), Severity::Fail, "all=1 wins over the device's 0");
    assert_eq!(rp(0, 1), Severity::Fail);
    assert_eq!(rp(2, 0), Severity::Ok, "loose passes");
    assert_eq!(rp(2, 1), Severity::Ok, "max(2, 1) = 2, loose");

    let ai = |all: u32, dev: u32| {
        let mut o = sys.obs.clone();
        o.sysctls.insert(conf_key("all", "arp_ignore"), all);
        o.sysctls.insert(conf_key("eth0", "arp_ignore"), dev);
        let f = check(&check_req(Mode::Tun), &o);
        f.into_iter()
            .find(|f| f.code == "arp-ignore")
            .unwrap()
            .severity
    };
    assert_eq!(ai(0, 1), Severity::Ok, "the device's 1 counts");
    assert_eq!(ai(1, 0), Severity::Ok, "all's 1 counts");
    assert_eq!(ai(0, 0), Severity::Fail);
    assert_eq!(
        ai(3, 1),
        Severity::Fail,
        "3 answers for global VIPs and wins"
    );
}

#[test]
fn realserver_setup_repairs_a_dominating_bad_arp_ignore() {
    let mut h = host();
    h.obs.sysctls.insert(conf_key("all", "arp_ignore"), 3);
    h.obs.sysctls.insert(conf_key("eth0", "arp_ignore"), 1);
    let plan = plan_setup(&req(Mode::Dr), &h.obs).unwrap();
    assert!(plan.changes.contains(&Change::SetSysctl {
        key: conf_key("all", "arp_ignore"),
        from: 3,
        to: 1
    }));
    assert!(!plan.changes.iter().any(
        |c| matches!(c, Change::SetSysctl { key, .. } if key == "net.ipv4.conf.eth0.arp_ignore")
    ));
}

#[test]
fn realserver_check_reports_missing_vip_route_and_decapsulator() {
    let mut h = host();
    h.obs.default_route = false;
    let f = check(&check_req(Mode::Tun), &h.obs);
    let fails = codes(&f, Severity::Fail);
    for code in [
        "vip-missing",
        "default-route-missing",
        "no-decap",
        "arp-ignore",
        "arp-announce",
    ] {
        assert!(fails.contains(&code), "{code} missing: {f:#?}");
    }
    // A TUN device nobody reads from is no decapsulator either.
    let mut sys = host();
    let path = state_file();
    setup(&mut sys, &req(Mode::Tun), &path, &mut Vec::new()).unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let f = check(&check_req(Mode::Tun), &sys.obs);
    assert_eq!(codes(&f, Severity::Fail), vec!["no-decap"], "{f:#?}");
}

#[test]
fn realserver_vip_on_a_down_lo_fails_check_and_setup_brings_lo_up() {
    let mut h = host();
    h.obs.links[0].up = false;
    let plan = plan_setup(&req(Mode::Dr), &h.obs).unwrap();
    assert_eq!(plan.changes[0], Change::LinkUp { name: "lo".into() });
    h.obs.addrs.push(AddrInfo {
        dev: "lo".into(),
        addr: VIP,
        prefix: 32,
        label: None,
    });
    let f = check(&check_req(Mode::Dr), &h.obs);
    assert!(
        codes(&f, Severity::Fail).contains(&"vip-dev-down"),
        "{f:#?}"
    );
}

#[test]
fn realserver_vip_with_a_wide_prefix_on_lo_is_refused() {
    let mut h = host();
    h.obs.addrs.push(AddrInfo {
        dev: "lo".into(),
        addr: VIP,
        prefix: 24,
        label: None,
    });
    assert!(matches!(
        plan_setup(&req(Mode::Dr), &h.obs),
        Err(Error::VipPrefix { prefix: 24, .. })
    ));
    let f = check(&check_req(Mode::Dr), &h.obs);
    assert!(codes(&f, Severity::Fail).contains(&"vip-prefix"));
}
