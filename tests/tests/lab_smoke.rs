//! Proves the lab harness with real kernel TCP and UDP: a client and two
//! nginx real servers on two segments joined by a router namespace, two
//! labs built at once, and cleanup after drop, after a panic and after a
//! crashed run. Bounded: the whole file runs in a few seconds.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab_tests::{Host, HttpServer, Lab, NginxOptions, UdpAsk, cmd, sweep};

const REQUESTS_PER_SERVER: usize = 20;
const BIG_MIB: u32 = 20;

/// Client on `outside` (10.11.0.0/24), real servers on `inside`
/// (10.12.0.0/24), a router on both with forwarding on in its namespace.
struct Routed {
    lab: Lab,
    client: Host,
    rs: Vec<(Host, Ipv4Addr)>,
}

fn routed(name: &str) -> Result<Option<Routed>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let outside = lab.segment("outside", "10.11.0.0/24")?;
    let inside = lab.segment("inside", "10.12.0.0/24")?;
    let router = lab.host("router")?;
    lab.link(&router, &outside, "10.11.0.1/24")?;
    lab.link(&router, &inside, "10.12.0.1/24")?;
    lab.enable_forwarding(&router)?;
    let client = lab.host("client")?;
    lab.link(&client, &outside, "10.11.0.10/24")?;
    lab.route(&client, "default via 10.11.0.1")?;
    let mut rs = Vec::new();
    for (i, name) in ["rs1", "rs2"].into_iter().enumerate() {
        let host = lab.host(name)?;
        let addr = Ipv4Addr::new(10, 12, 0, 21 + i as u8);
        lab.link(&host, &inside, &format!("{addr}/24"))?;
        lab.route(&host, "default via 10.12.0.1")?;
        rs.push((host, addr));
    }
    Ok(Some(Routed { lab, client, rs }))
}

/// What the root namespace looks like, to prove the lab never touches it.
fn root_snapshot() -> Result<String> {
    let mut s = String::new();
    for argv in [
        &["ip", "-o", "link", "show"][..],
        &["ip", "-o", "addr", "show"],
        &["ip", "route", "show", "table", "all"],
        &["sysctl", "-n", "net.ipv4.ip_forward"],
    ] {
        s += &cmd::run_ok(argv, cmd::DEFAULT_TIMEOUT)?;
    }
    // Counters and timers change by themselves; links, addresses and routes
    // do not.
    Ok(s.lines()
        .filter(|l| !l.contains("valid_lft"))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn assert_gone(prefix: &str, dir: &std::path::Path) {
    let left = sweep::namespaces_with_prefix(prefix);
    assert!(left.is_empty(), "namespaces left after drop: {left:?}");
    let procs = sweep::processes_mentioning(&dir.to_string_lossy());
    assert!(
        procs.is_empty(),
        "processes of the lab left after drop: {procs:?}"
    );
    assert!(!dir.exists(), "lab dir {} left after drop", dir.display());
}

#[test]
fn routed_http_reaches_both_real_servers_then_cleans_up() -> Result<()> {
    if lab_tests::skip_requested() {
        eprintln!("lab test skipped: LAB_SKIP=1");
        return Ok(());
    }
    let before = root_snapshot()?;
    let Some(Routed { lab, client, rs }) = routed("http")? else {
        return Ok(());
    };
    let start = Instant::now();
    let opts = NginxOptions { big_mib: BIG_MIB };
    let servers: Vec<HttpServer> = rs
        .iter()
        .map(|(host, addr)| lab.nginx_with(host, SocketAddrV4::new(*addr, 80), host.name(), &opts))
        .collect::<Result<_>>()?;
    assert_eq!(
        root_snapshot()?,
        before,
        "the lab changed the root namespace"
    );

    // A capture on rs1 shows the client's address arriving through the
    // router (routed, not NATed).
    let rs1_if = "eth0";
    let mut cap = lab.capture(&rs[0].0, rs1_if, "tcp port 80")?;
    let seen = lab.curl(&client, &servers[0].url("/client"))?;
    assert!(
        seen.text().starts_with("10.11.0.10:"),
        "rs1 saw {:?}",
        seen.text()
    );
    let decoded = cap.decode()?;
    assert!(
        decoded.contains("10.11.0.10."),
        "capture has no client packet:\n{decoded}"
    );

    for server in &servers {
        for i in 0..REQUESTS_PER_SERVER {
            let r = lab.curl(&client, &server.url("/"))?;
            assert_eq!(r.status, 200, "request {i} to {}", server.name());
            assert_eq!(r.text(), format!("{}\n", server.name()));
            assert_eq!(r.header("X-Real-Server"), Some(server.name()));
            assert_eq!(r.remote, format!("{}", server.listen()));
            assert!(r.local.starts_with("10.11.0.10:"), "local {}", r.local);
        }
        // + 1 for the /client request rs1 answered above.
        let extra = usize::from(server.name() == "rs1");
        assert_eq!(
            server.requests_served(),
            REQUESTS_PER_SERVER + extra,
            "{}",
            server.name()
        );
    }

    let dl = lab.download(
        &client,
        &servers[1].url("/big.bin"),
        Duration::from_secs(20),
    )?;
    assert_eq!(dl.status, 200);
    assert_eq!(dl.len, u64::from(BIG_MIB) * 1024 * 1024);
    assert_eq!(
        Some(dl.sha256.as_str()),
        servers[1].big_sha256(),
        "download corrupted"
    );
    eprintln!(
        "http: {} requests + {BIG_MIB} MiB in {:?} (download {:?})",
        2 * REQUESTS_PER_SERVER,
        start.elapsed(),
        dl.timing.total
    );

    let (prefix, dir) = (lab.prefix().to_owned(), lab.dir().to_owned());
    drop(servers);
    drop(lab);
    assert_gone(&prefix, &dir);
    Ok(())
}

#[test]
fn routed_udp_request_response() -> Result<()> {
    let Some(Routed { lab, client, rs }) = routed("udp")? else {
        return Ok(());
    };
    let mut servers = Vec::new();
    for (host, addr) in &rs {
        servers.push(lab.udp_echo(host, SocketAddrV4::new(*addr, 9000), host.name())?);
    }
    for server in &servers {
        let ask = UdpAsk {
            count: 10,
            timeout: Duration::from_secs(1),
            ..UdpAsk::default()
        };
        let got = lab.udp_ask(&client, server.bind(), &ask)?;
        assert_eq!(got.len(), 10);
        for (i, x) in got.iter().enumerate() {
            let reply = x
                .reply
                .as_ref()
                .with_context(|| format!("request {i} timed out"))?;
            assert_eq!(reply.text, format!("{} req-{i}", server.name()));
            assert_eq!(reply.from, server.bind().into());
        }
    }
    // A fresh source port per request still gets every answer.
    let ask = UdpAsk {
        count: 5,
        fresh_port: true,
        ..UdpAsk::default()
    };
    let got = lab.udp_ask(&client, servers[0].bind(), &ask)?;
    assert!(
        got.iter()
            .all(|x| x.reply.as_ref().is_some_and(|r| r.server() == "rs1"))
    );
    // Nothing listens on this port: every request times out, bounded.
    let ask = UdpAsk {
        count: 2,
        timeout: Duration::from_millis(200),
        ..UdpAsk::default()
    };
    let got = lab.udp_ask(&client, SocketAddrV4::new(rs[0].1, 9001), &ask)?;
    assert!(got.iter().all(|x| x.reply.is_none()));
    Ok(())
}

#[test]
fn two_labs_built_concurrently_do_not_collide() -> Result<()> {
    if lab_tests::skip_requested() {
        eprintln!("lab test skipped: LAB_SKIP=1");
        return Ok(());
    }
    // Same names and addresses in both labs: only the prefixes differ.
    let run = |tag: &'static str| -> Result<(String, std::path::PathBuf)> {
        let Routed { lab, client, rs } = routed("twin")?.context("skip requested")?;
        let opts = NginxOptions { big_mib: 0 };
        let server = lab.nginx_with(&rs[0].0, SocketAddrV4::new(rs[0].1, 80), tag, &opts)?;
        for _ in 0..5 {
            let r = lab.curl(&client, &server.url("/"))?;
            ensure!(
                r.text() == format!("{tag}\n"),
                "lab {tag} reached {:?}",
                r.text()
            );
        }
        Ok((lab.prefix().to_owned(), lab.dir().to_owned()))
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run("laba"));
        let b = s.spawn(|| run("labb"));
        (a.join(), b.join())
    });
    let (a, b) = (a.expect("thread a")?, b.expect("thread b")?);
    assert_ne!(a.0, b.0, "two labs got the same prefix");
    assert_gone(&a.0, &a.1);
    assert_gone(&b.0, &b.1);
    Ok(())
}

#[test]
fn a_panicking_test_still_removes_its_lab() -> Result<()> {
    if lab_tests::skip_requested() {
        eprintln!("lab test skipped: LAB_SKIP=1");
        return Ok(());
    }
    let seen: Arc<Mutex<Option<(String, std::path::PathBuf)>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::new("panic").expect("lab");
        let host = lab.host("h").expect("host");
        let _server = lab
            .nginx_with(
                &host,
                "127.0.0.1:8080".parse().unwrap(),
                "h",
                &NginxOptions { big_mib: 0 },
            )
            .expect("nginx");
        *seen2.lock().unwrap() = Some((lab.prefix().to_owned(), lab.dir().to_owned()));
        panic!("deliberate panic with a lab and a server alive");
    });
    assert!(result.is_err());
    let (prefix, dir) = seen.lock().unwrap().clone().context("lab never built")?;
    assert_gone(&prefix, &dir);
    Ok(())
}

#[test]
fn new_lab_sweeps_what_a_dead_run_left() -> Result<()> {
    if lab_tests::skip_requested() {
        eprintln!("lab test skipped: LAB_SKIP=1");
        return Ok(());
    }
    // A pid that is certainly dead: a child we have already reaped.
    let mut probe = Command::new("true").spawn()?;
    let pid = probe.id();
    probe.wait()?;
    ensure!(!sweep::pid_alive(pid), "pid {pid} reused already");

    // Build the "crashed run" under a name no sweep matches, move a process
    // into it, and only then give it the stale name (`ip netns attach`), so
    // no concurrent sweep (this process's or another's) sees it half-made.
    // The staging name carries our own (live) pid: other sweeps leave it
    // alone, and if this test process dies, a later sweep removes it.
    let staging = format!("{}{}-999999-staging", sweep::PREFIX_TAG, std::process::id());
    let stale = format!("{}{pid}-0-crashed-host", sweep::PREFIX_TAG);
    cmd::run_ok(&["ip", "netns", "add", &staging], cmd::DEFAULT_TIMEOUT)?;
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &staging, "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()?;
    let setup = (|| -> Result<()> {
        cmd::wait_until(
            "orphan in namespace",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || {
                let pids = cmd::run_ok(&["ip", "netns", "pids", &staging], cmd::DEFAULT_TIMEOUT)?;
                Ok(!pids.trim().is_empty())
            },
        )?;
        let orphan_pid = orphan.id().to_string();
        cmd::run_ok(
            &["ip", "netns", "attach", &stale, &orphan_pid],
            cmd::DEFAULT_TIMEOUT,
        )?;
        Ok(())
    })();
    let _ = cmd::run(&["ip", "netns", "del", &staging], cmd::DEFAULT_TIMEOUT);

    let lab = setup.and_then(|()| Lab::new("sweep"));
    let swept = sweep::namespaces_with_prefix(&stale).is_empty();
    let orphan_gone = orphan.try_wait()?.is_some() || {
        std::thread::sleep(Duration::from_millis(200));
        orphan.try_wait()?.is_some()
    };
    // Clean up ourselves before asserting, whatever happened.
    let _ = orphan.kill();
    let _ = orphan.wait();
    sweep::delete_namespace(&stale);
    drop(lab?);
    assert!(swept, "stale namespace {stale} survived Lab::new");
    assert!(
        orphan_gone,
        "process inside the stale namespace survived Lab::new"
    );
    Ok(())
}

#[test]
fn lvs_helpers_offloads_and_cable_pulls() -> Result<()> {
    let Some(lab) = Lab::new_or_skip("helpers")? else {
        return Ok(());
    };
    let seg = lab.segment("net", "10.13.0.0/24")?;
    let client = lab.host("client")?;
    let rs = lab.host("rs")?;
    let client_if = lab.link(&client, &seg, "10.13.0.10/24")?;
    let rs_if = lab.link(&rs, &seg, "10.13.0.21/24")?;
    assert_eq!(rs_if.mac(), "02:00:0a:0d:00:15");
    let link = lab.ip(&rs, &["link", "show", "eth0"])?;
    assert!(link.contains(rs_if.mac()), "{link}");

    // DR real server: VIP on lo, ARP kept quiet about it.
    let vip = Ipv4Addr::new(10, 13, 0, 100);
    lab.dr_real_server(&rs, vip)?;
    assert!(
        lab.ip(&rs, &["addr", "show", "dev", "lo"])?
            .contains("10.13.0.100/32")
    );
    for (key, want) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
        ("net.ipv4.conf.all.rp_filter", "0"),
    ] {
        assert_eq!(lab.sysctl_get(&rs, key)?, want, "{key}");
    }
    // The client cannot resolve the VIP: no one answers ARP for it.
    let lost = lab.udp_ask(
        &client,
        SocketAddrV4::new(vip, 9000),
        &UdpAsk {
            count: 1,
            timeout: Duration::from_millis(300),
            ..UdpAsk::default()
        },
    )?;
    assert!(lost[0].reply.is_none());

    lab.disable_offloads(&client_if)?;
    let k = lab.exec_ok(&client, &["ethtool", "-k", "eth0"])?;
    assert!(k.contains("tcp-segmentation-offload: off"), "{k}");

    let opts = NginxOptions { big_mib: 0 };
    let server = lab.nginx_with(&rs, SocketAddrV4::new(rs_if.addr(), 80), "rs", &opts)?;
    assert_eq!(lab.curl(&client, &server.url("/"))?.text(), "rs\n");
    lab.unplug(&rs_if)?;
    let short = lab_tests::CurlOptions {
        max_time: Duration::from_millis(700),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    assert!(
        lab.curl_with(&client, &server.url("/"), &short).is_err(),
        "unplugged but reached"
    );
    lab.plug(&rs_if)?;
    // The bridge port forwards at once (forward_delay 0); allow the carrier
    // a moment to come back.
    cmd::wait_until(
        "rs reachable again",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || Ok(lab.curl_with(&client, &server.url("/"), &short).is_ok()),
    )?;
    Ok(())
}
