//! Operating a director, in the namespace lab: the Prometheus endpoint of a
//! real `directord` scraped over HTTP after real traffic and compared with
//! `dirctl`'s listing; and `directord` run as an unprivileged user with only
//! CAP_NET_RAW and CAP_NET_ADMIN (what deploy/systemd/directord.service
//! grants), still forwarding and answering its control API.
//!
//! Bounded: 40 requests per test, every command with a deadline; the lab
//! (namespaces, processes) is removed on every exit path by the harness.
//! All traffic stays inside the lab's namespaces.

#![allow(clippy::disallowed_methods)] // a test owns its clock

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lab_tests::{Bins, Directord, Host, HttpServer, Lab, NginxOptions};

const DIRECTORD: &str = env!("CARGO_BIN_EXE_directord");
const DIRCTL: &str = env!("CARGO_BIN_EXE_dirctl");

const VIP: &str = "10.27.0.100:80";
const RS1: &str = "10.27.0.11:80";
const RS2: &str = "10.27.0.12:80";

/// The lab's configuration; `vrrp` adds a VRRP instance (alone on its
/// segment, it becomes master after Master_Down_Interval).
fn config(name: &str, vrrp: bool) -> String {
    let vrrp = if vrrp {
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\n\
         virtual_router_id = 51\npriority = 150\nadvert_int = 0.1\n"
    } else {
        ""
    };
    format!(
        r#"
[node]
name = "{name}"
[[interface]]
name = "eth0"
address = "10.27.0.2/24"
[metrics]
listen = "127.0.0.1:9400"
[[service]]
protocol = "tcp"
address = "{VIP}"
scheduler = "wrr"
  [service.health_check]
  type = "tcp"
  interval = 0.3
  timeout = 1
  rise = 1
  fall = 2
  [[service.real_server]]
  address = "{RS1}"
  method = "dr"
  weight = 3
  [[service.real_server]]
  address = "{RS2}"
  method = "dr"
  weight = 1
{vrrp}"#
    )
}

/// A client, a director and two DR real servers with nginx on one segment.
struct OpsLab {
    lab: Lab,
    client: Host,
    director: Directord,
    _servers: Vec<HttpServer>,
}

fn ops_lab(
    name: &str,
    vrrp: bool,
    wrapper: &[&str],
    before_start: impl Fn(&Lab, &Host) -> Result<()>,
) -> Result<Option<OpsLab>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let lan = lab.segment("lan", "10.27.0.0/24")?;
    let vip = Ipv4Addr::new(10, 27, 0, 100);
    let client = lab.host("client")?;
    let mut ifaces = vec![lab.link(&client, &lan, "10.27.0.10/24")?];
    let dir = lab.host("director")?;
    ifaces.push(lab.link(&dir, &lan, "10.27.0.2/24")?);
    let mut servers = Vec::new();
    for n in 1..=2u8 {
        let h = lab.host(&format!("rs{n}"))?;
        ifaces.push(lab.link(&h, &lan, &format!("10.27.0.1{n}/24"))?);
        lab.dr_real_server(&h, vip)?;
        servers.push(lab.nginx_with(
            &h,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
            &format!("rs{n}"),
            &NginxOptions { big_mib: 1 },
        )?);
    }
    for i in &ifaces {
        lab.disable_offloads(i)?;
    }
    before_start(&lab, &dir)?;
    let bins = Bins {
        directord: DIRECTORD.into(),
        dirctl: DIRCTL.into(),
    };
    let director = Directord::start_with(&lab, &dir, &bins, &config(name, vrrp), wrapper)?;
    Ok(Some(OpsLab {
        lab,
        client,
        director,
        _servers: servers,
    }))
}

/// One scrape: the body and its content type.
fn scrape(lab: &Lab, host: &Host, path: &str) -> Result<(u16, String, String)> {
    let out = lab.exec_timeout(
        host,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{content_type}",
            &format!("http://127.0.0.1:9400{path}"),
        ],
        Duration::from_secs(10),
    )?;
    ensure!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').context("curl's status line")?;
    let (code, ctype) = tail.split_once(' ').unwrap_or((tail, ""));
    Ok((code.parse()?, ctype.to_owned(), body.to_owned()))
}

/// `series -> value` of a text exposition.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn rs_series(name: &str, rs: &str, extra: &str) -> String {
    format!("{name}{{protocol=\"tcp\",vip=\"{VIP}\",real_server=\"{rs}\",method=\"dr\"{extra}}}")
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series}; have:\n{}", keys(m)))
}

fn keys(m: &HashMap<String, f64>) -> String {
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    k.into_iter().map(|s| format!("  {s}\n")).collect()
}

/// Wait (bounded) until both real servers' checks say up.
fn wait_up(o: &OpsLab, dir: &Host) -> Result<HashMap<String, f64>> {
    let t0 = Instant::now();
    loop {
        let (_, _, body) = scrape(&o.lab, dir, "/metrics")?;
        let m = samples(&body);
        let up = [RS1, RS2].iter().all(|rs| {
            m.get(&rs_series("lvs_real_server_health", rs, ",state=\"up\"")) == Some(&1.0)
        });
        if up {
            return Ok(m);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the health checks did not say up within 10 s:\n{body}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// From `dirctl -Ln` (`-> RIP Forward Weight ActiveConn InActConn`) or
/// `-Ln --stats` (`-> RIP Conns InPkts OutPkts InBytes OutBytes`): the
/// numeric columns of `rs`'s line.
fn columns(listing: &str, rs: &str) -> Vec<u64> {
    listing
        .lines()
        .find(|l| l.trim_start().starts_with("->") && l.contains(&format!(" {rs} ")))
        .map(|l| {
            l.split_whitespace()
                .skip(2)
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metrics_of_a_running_director_match_its_listing() -> Result<()> {
    let Some(o) = ops_lab("metrics", false, &[], |_, _| Ok(()))? else {
        return Ok(());
    };
    let dir = o.director.host.clone();
    let before = wait_up(&o, &dir)?;
    assert_eq!(
        value(
            &before,
            &rs_series("lvs_real_server_connections_total", RS1, "")
        ),
        0.0
    );

    let names = o
        .lab
        .names_of_requests(&o.client, "http://10.27.0.100/", 40)?;
    let n1 = names.iter().filter(|n| *n == "rs1").count();
    assert_eq!(n1, 30, "wrr 3:1 over 40 connections: {names:?}");

    let stats = o.director.dirctl(&o.lab, &["-Ln", "--stats"])?;
    let list = o.director.dirctl(&o.lab, &["-Ln"])?;
    let (code, ctype, body) = scrape(&o.lab, &dir, "/metrics")?;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(
        body.trim_end().ends_with("# EOF"),
        "an OpenMetrics page ends with # EOF"
    );
    let m = samples(&body);

    for (rs, scheduled) in [(RS1, 30.0), (RS2, 10.0)] {
        let st = columns(&stats, rs);
        let ls = columns(&list, rs);
        let conns = value(&m, &rs_series("lvs_real_server_connections_total", rs, ""));
        assert_eq!(conns, scheduled, "scheduler decisions for {rs}");
        assert_eq!(
            conns, st[0] as f64,
            "= dirctl -Ln --stats Conns for {rs}:\n{stats}"
        );
        let in_pkts = value(
            &m,
            &rs_series("lvs_real_server_packets_total", rs, ",direction=\"in\""),
        );
        assert_eq!(in_pkts, st[1] as f64, "InPkts of {rs}:\n{stats}");
        assert!(
            in_pkts >= 4.0 * scheduled,
            "SYN, ACK, request, FIN at least"
        );
        let in_bytes = value(
            &m,
            &rs_series("lvs_real_server_bytes_total", rs, ",direction=\"in\""),
        );
        assert_eq!(in_bytes, st[3] as f64, "InBytes of {rs}:\n{stats}");
        let active = value(&m, &rs_series("lvs_real_server_connections_active", rs, ""));
        let inactive = value(
            &m,
            &rs_series("lvs_real_server_connections_inactive", rs, ""),
        );
        assert_eq!(
            (active, inactive),
            (ls[1] as f64, ls[2] as f64),
            "ActiveConn/InActConn of {rs}:\n{list}"
        );
        assert_eq!(
            active + inactive,
            scheduled,
            "every connection still in the table"
        );
        assert_eq!(
            value(&m, &rs_series("lvs_real_server_weight", rs, "")),
            ls[0] as f64,
            "configured weight"
        );
        assert_eq!(
            value(&m, &rs_series("lvs_real_server_effective_weight", rs, "")),
            ls[0] as f64,
            "up: effective = configured"
        );
    }
    let svc = format!("{{protocol=\"tcp\",vip=\"{VIP}\"}}");
    assert_eq!(
        value(&m, &format!("lvs_service_connections_total{svc}")),
        40.0
    );
    assert_eq!(value(&m, &format!("lvs_service_quorum_up{svc}")), 1.0);
    assert_eq!(value(&m, "lvs_forwarding"), 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("lvs_build_info{node=\"metrics\",")),
        "{}",
        keys(&m)
    );
    assert_eq!(
        value(&m, "lvs_connection_table_entries{kind=\"connection\"}"),
        40.0
    );
    assert!(value(&m, "lvs_health_checks_total") >= 2.0);
    assert!(m.contains_key("lvs_dataplane_drops_total{reason=\"no_connection\"}"));
    // Every packet scheduled to a real server came through a worker's ring
    // and went out again; status shows the same counters (read after the
    // scrape, so never smaller).
    let forwarded: f64 = [RS1, RS2]
        .iter()
        .map(|rs| {
            value(
                &m,
                &rs_series("lvs_real_server_packets_total", rs, ",direction=\"in\""),
            )
        })
        .sum();
    let frames_in = value(&m, "lvs_dataplane_frames_total{direction=\"in\"}");
    let frames_out = value(&m, "lvs_dataplane_frames_total{direction=\"out\"}");
    assert!(
        frames_in >= forwarded && frames_out >= forwarded,
        "frames in {frames_in}, out {frames_out}, forwarded {forwarded}"
    );
    let workers = value(&m, "lvs_dataplane_workers");
    assert!(workers >= 1.0, "{workers} workers");
    let status = o.director.dirctl(&o.lab, &["status"])?;
    let line = status
        .lines()
        .find(|l| l.contains("worker(s) on eth0 (af_packet)"))
        .with_context(|| format!("no worker line in:\n{status}"))?;
    let n: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "workers, frames in, frames out: {line}");
    assert_eq!(n[0], workers, "{line}");
    assert!(n[1] >= frames_in && n[2] >= frames_out, "{line}");
    for family in [
        "lvs_real_server_connections",
        "lvs_vrrp_state",
        "lvs_sync_behind_seconds",
        "lvs_dataplane_drops",
    ] {
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "HELP text of {family}"
        );
    }
    assert!(
        !m.keys().any(|k| k.starts_with("lvs_vrrp_state{")),
        "no VRRP configured, no VRRP series"
    );

    let (code, _, _) = scrape(&o.lab, &dir, "/nope")?;
    assert_eq!(code, 404);
    Ok(())
}

/// The capabilities deploy/systemd/directord.service grants, and nothing
/// else: user nobody, no new privileges.
const UNPRIVILEGED: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw,+net_admin",
    "--ambient-caps=-all,+net_raw,+net_admin",
    "--bounding-set=-all,+net_raw,+net_admin",
    "--no-new-privs",
    "--",
];

#[test]
fn directord_needs_only_net_raw_and_net_admin() -> Result<()> {
    // Forwarding on at start, so that directord has to turn it off
    // (a net sysctl: CAP_NET_ADMIN in the namespace suffices).
    let Some(o) = ops_lab("caps", true, UNPRIVILEGED, |lab, dir| {
        lab.sysctl(dir, "net.ipv4.conf.eth0.forwarding", "1")
    })?
    else {
        return Ok(());
    };
    let dir = o.director.host.clone();
    let pid = o.director.proc.id();
    // `ip netns exec` execs setpriv, which execs directord: same pid.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("directord's /proc status")?;
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65534", "runs as nobody:\n{status}");
    assert_eq!(
        field("CapEff:"),
        "0000000000003000",
        "effective: cap_net_admin, cap_net_raw only"
    );

    let out = o.director.output();
    assert!(
        out.contains("net.ipv4.conf.eth0.forwarding: 1 → 0"),
        "turned forwarding off without root:\n{out}"
    );
    assert!(
        out.contains("drops VIP traffic") && !out.contains("no ingress drop"),
        "nftables netdev ingress drop installed with CAP_NET_ADMIN:\n{out}"
    );
    assert_eq!(
        o.lab
            .sysctl_get(&dir, "net.ipv4.conf.eth0.forwarding")?
            .trim(),
        "0"
    );
    wait_up(&o, &dir)?;
    // VRRP on a raw socket (CAP_NET_RAW): alone, it becomes master.
    let t0 = Instant::now();
    let vi = "{vrrp_instance=\"VI_1\",vrid=\"51\",interface=\"eth0\"}";
    let m = loop {
        let m = samples(&scrape(&o.lab, &dir, "/metrics")?.2);
        if m.get(&format!("lvs_vrrp_master{vi}")) == Some(&1.0) {
            break m;
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "VRRP did not become master within 10 s:\n{}\n{}",
            keys(&m),
            o.director.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        value(
            &m,
            &format!("lvs_vrrp_state{}", vi.replace('}', ",state=\"master\"}"))
        ),
        1.0
    );
    assert!(value(&m, "lvs_vrrp_transitions_total{vrrp_instance=\"VI_1\"}") >= 1.0);
    assert!(value(&m, "lvs_vrrp_adverts_sent_total") >= 1.0);
    assert_eq!(value(&m, &format!("lvs_vrrp_priority{vi}")), 150.0);
    let names = o
        .lab
        .names_of_requests(&o.client, "http://10.27.0.100/", 8)?;
    assert_eq!(
        names.iter().filter(|n| *n == "rs1").count(),
        6,
        "forwards on AF_PACKET as nobody: {names:?}"
    );
    let list = o.director.dirctl(&o.lab, &["-Ln", "--stats"])?;
    assert_eq!(
        columns(&list, RS1).first(),
        Some(&6),
        "control API:\n{list}"
    );
    let (code, _, _) = scrape(&o.lab, &dir, "/metrics")?;
    assert_eq!(code, 200);
    Ok(())
}
