//! The example configurations under `deploy/examples/` load, and yield the
//! services, interfaces and ARP addresses they describe.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use director::config::{Config, ConfigError};
use director::forward::OuterTtl;
use director::sched::SchedulerKind;
use director::{ForwardMethod, Persistence, Protocol, ServiceSpec, ServiceTable};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn load(name: &str) -> Config {
    let path = examples_dir().join(name);
    Config::load(&path).unwrap_or_else(|e| panic!("{name} must load: {e}"))
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn service<'a>(specs: &'a [ServiceSpec], protocol: Protocol, vip: &str) -> &'a ServiceSpec {
    specs
        .iter()
        .find(|s| s.key.protocol == protocol && s.key.vip == sock(vip))
        .unwrap_or_else(|| panic!("no service {protocol} {vip}"))
}

/// (address, method, weight) of each real server, in file order.
fn dests(s: &ServiceSpec) -> Vec<(SocketAddr, ForwardMethod, i32)> {
    s.dests
        .iter()
        .map(|d| (d.addr, d.method, d.weight))
        .collect()
}

#[test]
fn config_every_example_loads_and_its_services_build_a_table() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let table = ServiceTable::empty().rebuild(&c.service_specs()).unwrap();
            assert_eq!(table.len(), c.service_specs().len(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 3, "dr, tun and nat examples at least");
}

#[test]
fn config_examples_have_health_checks() {
    use director::health::Probe;
    let c = load("dr.toml");
    let web = service(&c.service_specs(), Protocol::Tcp, "10.11.0.100:80").key;
    let h = c
        .health_plan()
        .service(&web)
        .expect("dr web has health checks");
    assert!(matches!(h.check.as_ref().unwrap().probe, Probe::Http(_)));
    assert_eq!(h.sorry_server.unwrap().addr, sock("10.12.0.99:80"));
    assert_eq!(h.check_for(sock("10.12.0.12:80")).unwrap().port, Some(8080));
    let c = load("tun.toml");
    let tls = service(&c.service_specs(), Protocol::Tcp, "10.11.0.100:443").key;
    let h = c.health_plan().service(&tls).unwrap();
    assert!(matches!(
        h.check_for(sock("10.22.0.12:443")).unwrap().probe,
        Probe::Command(_)
    ));
    let c = load("nat.toml");
    let dns = service(&c.service_specs(), Protocol::Udp, "10.11.0.100:53").key;
    let Probe::Udp(u) = &c
        .health_plan()
        .service(&dns)
        .unwrap()
        .check
        .as_ref()
        .unwrap()
        .probe
    else {
        panic!("udp check")
    };
    assert_eq!(u.payload.len(), 17);
}

#[test]
fn config_dr_example() {
    let c = load("dr.toml");
    assert_eq!(c.node().name, "director-a");
    assert_eq!(c.dataplane().workers, 1);
    assert_eq!(c.dataplane().max_connections, 1 << 20);
    assert!(c.dataplane().verify_checksums);
    let t = c.timeouts();
    assert_eq!(t.tcp, Some(Duration::from_secs(900)));
    assert_eq!(t.tcpfin, Some(Duration::from_secs(120)));
    assert_eq!(t.udp, Some(Duration::from_secs(300)));

    let ifs = c.interfaces();
    assert_eq!(ifs.len(), 2);
    assert_eq!(
        (ifs[0].name.as_str(), ifs[0].address, ifs[0].prefix_len),
        ("eth0", ip("10.11.0.2"), 24)
    );
    assert_eq!(ifs[0].gateway, Some(ip("10.11.0.1")));
    assert_eq!(ifs[1].gateway, None);

    let specs = c.service_specs();
    assert_eq!(specs.len(), 2);
    let web = service(&specs, Protocol::Tcp, "10.11.0.100:80");
    assert_eq!(web.scheduler, SchedulerKind::Wlc);
    assert_eq!(web.persistence, None);
    assert_eq!(
        dests(web),
        [
            (sock("10.12.0.11:80"), ForwardMethod::DirectRouting, 1),
            (sock("10.12.0.12:80"), ForwardMethod::DirectRouting, 2),
            (sock("10.12.0.13:80"), ForwardMethod::DirectRouting, 0),
        ],
        "an omitted real-server port is the virtual port; route = dr"
    );
    assert_eq!(
        (web.dests[1].upper_threshold, web.dests[1].lower_threshold),
        (1000, 800)
    );

    let all = service(&specs, Protocol::Tcp, "10.11.0.101:0");
    assert_eq!(all.scheduler, SchedulerKind::Sh);
    assert!(all.sched_opts.fallback && all.sched_opts.port);
    assert_eq!(
        all.persistence,
        Some(Persistence {
            timeout: Duration::from_secs(360),
            netmask_prefix: 24
        }),
        "persistence = true is IPVS's 360 s"
    );
    assert_eq!(
        dests(all),
        [
            (sock("10.12.0.11:0"), ForwardMethod::DirectRouting, 1),
            (sock("10.12.0.12:0"), ForwardMethod::DirectRouting, 1),
        ]
    );

    let vips = c.vips_by_interface();
    assert_eq!(vips.len(), 2);
    assert_eq!(vips[0].interface, "eth0");
    assert_eq!(vips[0].addresses, [ip("10.11.0.100"), ip("10.11.0.101")]);
    assert!(vips[1].addresses.is_empty());
}

#[test]
fn config_tun_example() {
    let c = load("tun.toml");
    assert_eq!(c.dataplane().tun_ttl, OuterTtl::Fixed(64));
    let specs = c.service_specs();
    let https = service(&specs, Protocol::Tcp, "10.11.0.100:443");
    assert_eq!(https.scheduler, SchedulerKind::Mh);
    assert!(https.sched_opts.fallback && https.sched_opts.port);
    assert_eq!(https.sched_opts.mh_table_size, 4093);
    assert_eq!(
        dests(https),
        [
            (sock("10.21.0.11:443"), ForwardMethod::Tunnel, 1),
            (sock("10.22.0.12:443"), ForwardMethod::Tunnel, 3),
        ]
    );
    let dns = service(&specs, Protocol::Udp, "10.11.0.100:53");
    assert_eq!(dns.scheduler, SchedulerKind::Rr);
    assert!(!dns.sched_opts.fallback && !dns.sched_opts.port);
    assert!(dns.dests.iter().all(|d| d.method == ForwardMethod::Tunnel));
    assert_eq!(c.all_vips(), [ip("10.11.0.100")], "one VIP, answered once");
}

#[test]
fn config_nat_example_maps_ports_and_answers_for_the_inner_gateway() {
    let c = load("nat.toml");
    assert_eq!(c.dataplane().max_connections, 262_144);
    assert_eq!(c.dataplane().table_config().max_entries, 262_144);
    assert_eq!(c.timeouts().tcp, Some(Duration::from_secs(3600)));
    assert_eq!(c.timeouts().tcpfin, None, "not set: the default stays");
    assert_eq!(
        c.timeouts().to_timeouts().ipvsadm(),
        (
            Duration::from_secs(3600),
            Duration::from_secs(120),
            Duration::from_secs(60)
        )
    );

    let specs = c.service_specs();
    let web = service(&specs, Protocol::Tcp, "10.11.0.100:8099");
    assert_eq!(web.scheduler, SchedulerKind::Wrr);
    assert_eq!(
        web.persistence,
        Some(Persistence {
            timeout: Duration::from_secs(600),
            netmask_prefix: 32
        })
    );
    assert_eq!(
        dests(web),
        [
            (sock("10.12.0.11:80"), ForwardMethod::Masquerade, 3),
            (sock("10.12.0.12:80"), ForwardMethod::Masquerade, 1),
        ],
        "NAT maps 8099 to 80; masq = nat"
    );
    let dns = service(&specs, Protocol::Udp, "10.11.0.100:53");
    assert_eq!(dns.scheduler, SchedulerKind::Lc);
    assert!(
        dns.dests
            .iter()
            .all(|d| d.method == ForwardMethod::Masquerade)
    );
    assert!(dns.dests.iter().all(|d| d.addr.port() == 5353));

    let vips = c.vips_by_interface();
    assert_eq!(vips[0].interface, "eth0");
    assert_eq!(vips[0].addresses, [ip("10.11.0.100")]);
    assert_eq!(vips[1].interface, "eth1");
    assert_eq!(
        vips[1].addresses,
        [ip("10.12.0.1")],
        "the inner gateway VIP"
    );
    assert_eq!(c.interface("eth1").unwrap().vips, [ip("10.12.0.1")]);
}

#[test]
fn config_a_missing_file_is_named_in_the_error() {
    let err = Config::load("/nonexistent/directord.toml").unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("/nonexistent/directord.toml: cannot read"),
        "{msg}"
    );
    assert!(err.location().is_none());
}
