//! `dirctl realserver` in the namespace lab, against real kernels: DR set-up
//! proven with a real TCP connection to nginx on the VIP, the classic ARP
//! conflict caught by `check`, and TUN mode on this kernel (which has no
//! ipip module) through the userspace decapsulator, with malformed IPIP
//! dropped and counted.
//!
//! The test lives in the director package (not in tests/) because only
//! there does cargo build `dirctl` first and name it in
//! `CARGO_BIN_EXE_dirctl`: always the binary of the code under test.
//!
//! The "director" of the TUN tests is this test binary itself, re-run
//! inside the director namespace (`realserver_lab_helper_process` with
//! `DIRCTL_LAB_HELPER` set): a small encapsulator that reads client → VIP
//! packets with an AF_PACKET socket and sends them IPIP to the real server
//! through a raw protocol-4 socket, or a one-shot sender of hand-built
//! IPIP packets. Being a lab process, it dies with its namespace.
//!
//! Bounded: every wait has a deadline and the traffic is a few requests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use lab_tests::{CurlOptions, Host, Lab, LabChild, NginxOptions, cmd, http_url, sweep};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const DIRCTL: &str = env!("CARGO_BIN_EXE_dirctl");
const HELPER_ENV: &str = "DIRCTL_LAB_HELPER";
const HELPER_TEST: &str = "realserver_lab_helper_process";
const WAIT: Duration = Duration::from_secs(10);

fn dirctl(lab: &Lab, host: &Host, args: &[&str]) -> Result<Output> {
    let mut argv = vec![DIRCTL, "realserver"];
    argv.extend_from_slice(args);
    lab.exec(host, &argv)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `dirctl realserver ARGS` and insists on exit status 0.
fn dirctl_ok(lab: &Lab, host: &Host, args: &[&str]) -> Result<String> {
    let out = dirctl(lab, host, args)?;
    let t = text(&out);
    ensure!(out.status.success(), "dirctl {args:?} failed: {t}");
    Ok(t)
}

fn state_dir(lab: &Lab) -> String {
    lab.dir().join("rs-state").to_string_lossy().into_owned()
}

fn short_curl() -> CurlOptions {
    CurlOptions {
        max_time: Duration::from_millis(1500),
        connect_timeout: Duration::from_millis(1000),
        ..Default::default()
    }
}

/// The MAC the real server's `ip neigh` entry for `addr` in `host` holds,
/// if it has one.
fn neigh_lladdr(lab: &Lab, host: &Host, addr: Ipv4Addr) -> Result<Option<String>> {
    let out = lab.ip(host, &["neigh", "show", &addr.to_string()])?;
    let t: Vec<&str> = out.split_whitespace().collect();
    Ok(t.iter()
        .position(|x| *x == "lladdr")
        .and_then(|i| t.get(i + 1))
        .map(|s| (*s).to_owned()))
}

#[test]
fn realserver_lab_dr_setup_check_undo() -> Result<()> {
    let Some(lab) = Lab::new_or_skip("rsdr")? else {
        return Ok(());
    };
    let seg = lab.segment("net", "10.61.0.0/24")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    let rs = lab.host("rs")?;
    lab.link(&client, &seg, "10.61.0.10/24")?;
    lab.link(&director, &seg, "10.61.0.2/24")?;
    let rs_if = lab.link(&rs, &seg, "10.61.0.21/24")?;
    lab.route(&rs, "default via 10.61.0.1")?;
    let vip = Ipv4Addr::new(10, 61, 0, 100);
    let vip_s = vip.to_string();
    let sd = state_dir(&lab);

    let before: Vec<String> = ["all.arp_ignore", "all.arp_announce", "eth0.arp_ignore"]
        .iter()
        .map(|k| lab.sysctl_get(&rs, &format!("net.ipv4.conf.{k}")))
        .collect::<Result<_>>()?;
    let setup = ["setup", "--mode", "dr", "--vip", &vip_s, "--state-dir", &sd];
    let first = dirctl_ok(&lab, &rs, &setup)?;
    for want in [
        "change: 10.61.0.100/32 on lo: absent → present",
        "+ ip addr add 10.61.0.100/32 dev lo label lo:vip",
        "change: net.ipv4.conf.all.arp_ignore: 0 → 1",
        "+ sysctl -q -w net.ipv4.conf.eth0.arp_announce=2",
    ] {
        ensure!(
            first.contains(want),
            "setup output lacks `{want}`:\n{first}"
        );
    }
    let second = dirctl_ok(&lab, &rs, &setup)?;
    ensure!(
        second.contains("nothing to change") && !second.lines().any(|l| l.starts_with("change:")),
        "second setup changed something:\n{second}"
    );
    ensure!(
        lab.ip(&rs, &["addr", "show", "dev", "lo"])?
            .contains("10.61.0.100/32")
    );

    let check = [
        "check",
        "--mode",
        "dr",
        "--vip",
        &vip_s,
        "--director",
        "10.61.0.2",
    ];
    let ok = dirctl_ok(&lab, &rs, &check)?;
    ensure!(ok.contains("this real server is ready"), "{ok}");
    ensure!(ok.contains("[arp-not-answered]"), "{ok}");

    // Nobody answers ARP for the VIP: the client's attempt leaves no
    // lladdr, and the capture on the real server shows the request and no
    // reply.
    let mut cap = lab.capture(&rs, "eth0", "arp")?;
    let url = http_url(vip, 80, "/");
    ensure!(
        lab.curl_with(&client, &url, &short_curl()).is_err(),
        "something answered for the VIP"
    );
    let arp = cap.decode()?;
    ensure!(arp.contains("Request who-has 10.61.0.100"), "{arp}");
    ensure!(
        !arp.contains("is-at"),
        "the real server answered ARP:\n{arp}"
    );
    ensure!(neigh_lladdr(&lab, &client, vip)?.is_none());

    // DR without a director: frames to the real server's MAC with the VIP
    // as destination IP, which is what a DR director sends. The kernel
    // takes them (the VIP is local on lo) and nginx answers from the VIP.
    let server = lab.nginx_with(
        &rs,
        SocketAddrV4::new(vip, 80),
        "rs",
        &NginxOptions { big_mib: 0 },
    )?;
    lab.ip(
        &client,
        &[
            "neigh",
            "replace",
            &vip_s,
            "lladdr",
            rs_if.mac(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )?;
    let page = lab.curl(&client, &server.url("/client"))?;
    ensure!(
        page.text().starts_with("10.61.0.10:") && page.text().contains("10.61.0.100:80"),
        "{:?}",
        page.text()
    );
    drop(server);

    let undone = dirctl_ok(&lab, &rs, &["undo", "--state-dir", &sd])?;
    ensure!(
        undone.contains("10.61.0.100/32 on lo: present → absent"),
        "{undone}"
    );
    let after: Vec<String> = ["all.arp_ignore", "all.arp_announce", "eth0.arp_ignore"]
        .iter()
        .map(|k| lab.sysctl_get(&rs, &format!("net.ipv4.conf.{k}")))
        .collect::<Result<_>>()?;
    assert_eq!(after, before, "undo did not restore the sysctls");
    ensure!(!Path::new(&sd).join("realserver.state").exists());
    let bad = dirctl(&lab, &rs, &check)?;
    ensure!(!bad.status.success(), "check passed after undo");
    ensure!(text(&bad).contains("[vip-missing]"), "{}", text(&bad));
    Ok(())
}

#[test]
fn realserver_lab_arp_conflict_is_caught() -> Result<()> {
    let Some(lab) = Lab::new_or_skip("rsarp")? else {
        return Ok(());
    };
    let seg = lab.segment("net", "10.63.0.0/24")?;
    let client = lab.host("client")?;
    let rs = lab.host("rs")?;
    lab.link(&client, &seg, "10.63.0.10/24")?;
    let rs_if = lab.link(&rs, &seg, "10.63.0.21/24")?;
    lab.route(&rs, "default via 10.63.0.1")?;
    let vip = "10.63.0.100";
    // The classic mistake: the VIP on the real interface.
    lab.ip(&rs, &["addr", "add", &format!("{vip}/32"), "dev", "eth0"])?;

    let out = dirctl(
        &lab,
        &rs,
        &[
            "check",
            "--mode",
            "dr",
            "--vip",
            vip,
            "--director",
            "10.63.0.2",
        ],
    )?;
    let t = text(&out);
    ensure!(
        !out.status.success(),
        "check passed with the VIP on eth0:\n{t}"
    );
    let line = t
        .lines()
        .find(|l| l.contains("[arp-conflict]"))
        .with_context(|| format!("no arp-conflict finding:\n{t}"))?;
    ensure!(
        line.starts_with("FAIL") && line.contains("on eth0"),
        "{line}"
    );
    ensure!(t.contains("[arp-answered]"), "{t}");

    // And it is real: the client resolves the VIP to the real server.
    let _ = lab.curl_with(&client, &http_url(vip.parse()?, 80, "/"), &short_curl());
    ensure!(
        neigh_lladdr(&lab, &client, vip.parse()?)?.as_deref() == Some(rs_if.mac()),
        "the client did not resolve the VIP to the real server"
    );

    // setup refuses rather than leave the conflict in place.
    let sd = state_dir(&lab);
    let out = dirctl(
        &lab,
        &rs,
        &["setup", "--mode", "dr", "--vip", vip, "--state-dir", &sd],
    )?;
    ensure!(!out.status.success(), "setup accepted the conflict");
    ensure!(text(&out).contains("ARP conflict"), "{}", text(&out));
    Ok(())
}

/// Client, "director" and real server on one segment; the client reaches
/// the VIP (off the segment) via the director.
struct TunLab {
    lab: Lab,
    client: Host,
    director: Host,
    rs: Host,
    vip: Ipv4Addr,
    state_dir: String,
}

const TUN_VIP: Ipv4Addr = Ipv4Addr::new(10, 62, 1, 100);
const TUN_RS: Ipv4Addr = Ipv4Addr::new(10, 62, 0, 21);
const TUN_DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 62, 0, 2);

fn tun_lab(name: &str) -> Result<Option<TunLab>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let seg = lab.segment("net", "10.62.0.0/24")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    let rs = lab.host("rs")?;
    let client_if = lab.link(&client, &seg, "10.62.0.10/24")?;
    lab.link(&director, &seg, &format!("{TUN_DIRECTOR}/24"))?;
    lab.link(&rs, &seg, &format!("{TUN_RS}/24"))?;
    lab.route(&rs, "default via 10.62.0.1")?;
    lab.route(&client, &format!("{TUN_VIP}/32 via {TUN_DIRECTOR}"))?;
    // The encapsulator copies the client's packets as they are: with tx
    // checksum offload their TCP checksums would still be partial.
    lab.disable_offloads(&client_if)?;
    let state_dir = state_dir(&lab);
    let t = TunLab {
        lab,
        client,
        director,
        rs,
        vip: TUN_VIP,
        state_dir,
    };
    let vip = t.vip.to_string();
    let out = dirctl_ok(
        &t.lab,
        &t.rs,
        &[
            "setup",
            "--mode",
            "tun",
            "--vip",
            &vip,
            "--state-dir",
            &t.state_dir,
        ],
    )?;
    ensure!(
        out.contains("+ ip tuntap add dev lvs-tun0 mode tun")
            && out.contains("dirctl realserver decap --dev lvs-tun0"),
        "TUN setup did not fall back to userspace decapsulation:\n{out}"
    );
    Ok(Some(t))
}

impl TunLab {
    fn check(&self) -> Result<Output> {
        let vip = self.vip.to_string();
        dirctl(
            &self.lab,
            &self.rs,
            &["check", "--mode", "tun", "--vip", &vip],
        )
    }

    fn start_decap(&self) -> Result<LabChild> {
        let mut child = self.lab.spawn(
            &self.rs,
            &[
                DIRCTL,
                "realserver",
                "decap",
                "--dev",
                "lvs-tun0",
                "--stats-interval",
                "0.1",
            ],
        )?;
        wait_output(&mut child, "decap: running")?;
        Ok(child)
    }

    /// The test binary, re-run in the director namespace as a helper.
    fn helper_argv(&self, mode: &str, exe: &str) -> Vec<String> {
        vec![
            "env".into(),
            format!("{HELPER_ENV}={mode}"),
            format!("DIRCTL_LAB_VIP={}", self.vip),
            format!("DIRCTL_LAB_RS={TUN_RS}"),
            exe.into(),
            "--exact".into(),
            HELPER_TEST.into(),
            "--nocapture".into(),
            "--test-threads".into(),
            "1".into(),
        ]
    }

    fn start_encapsulator(&self) -> Result<LabChild> {
        let exe = std::env::current_exe()?.to_string_lossy().into_owned();
        let argv = self.helper_argv("encap", &exe);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut child = self.lab.spawn(&self.director, &argv)?;
        wait_output(&mut child, "encap: ready")?;
        Ok(child)
    }

    fn send_from_director(&self, what: &str) -> Result<()> {
        let exe = std::env::current_exe()?.to_string_lossy().into_owned();
        let argv = self.helper_argv(what, &exe);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.lab.exec(&self.director, &argv)?;
        ensure!(out.status.success(), "sender failed: {}", text(&out));
        Ok(())
    }

    fn curl_vip(&self) -> Result<String> {
        let r = self
            .lab
            .curl(&self.client, &http_url(self.vip, 80, "/client"))?;
        Ok(r.text())
    }
}

fn wait_output(child: &mut LabChild, needle: &str) -> Result<()> {
    let label = child.label().to_owned();
    cmd::wait_until(
        &format!("`{needle}` from {label}"),
        WAIT,
        Duration::from_millis(20),
        || {
            if child.try_wait()?.is_some() {
                bail!(
                    "{label} exited: {}{}",
                    child.stdout_text(),
                    child.stderr_text()
                );
            }
            Ok(child.stdout_text().contains(needle))
        },
    )
}

/// The value of `key=` in the last line starting with `prefix`.
fn counter(out: &str, prefix: &str, key: &str) -> Option<u64> {
    let line = out.lines().rev().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Stops the decapsulator with SIGTERM and returns its output, which must
/// end with the final counters.
fn stop_decap(mut decap: LabChild) -> Result<String> {
    decap.signal("TERM");
    let status = decap
        .wait_timeout(WAIT)?
        .context("decap did not stop on SIGTERM")?;
    let out = decap.stdout_text();
    ensure!(
        status.success(),
        "decap exited {status}: {out}{}",
        decap.stderr_text()
    );
    ensure!(out.contains("decap final: "), "{out}");
    Ok(out)
}

fn assert_dead(pids: &[u32]) -> Result<()> {
    for &pid in pids {
        ensure!(!sweep::pid_alive(pid), "process {pid} outlived its lab");
    }
    Ok(())
}

#[test]
fn realserver_lab_tun_userspace_decap_carries_tcp() -> Result<()> {
    let Some(t) = tun_lab("rstun")? else {
        return Ok(());
    };
    let TunLab { lab, rs, .. } = &t;
    let no_decap = t.check()?;
    ensure!(
        !no_decap.status.success(),
        "check passed without a decapsulator"
    );
    ensure!(
        text(&no_decap).contains("[no-decap]"),
        "{}",
        text(&no_decap)
    );

    // Without the ipip module and without our raw socket, the real server's
    // kernel answers IPIP with ICMP protocol unreachable...
    let mut icmp = lab.capture(&t.director, "eth0", "icmp and dst host 10.62.0.2")?;
    t.send_from_director("valid")?;
    let seen = icmp.decode()?;
    ensure!(
        seen.contains("protocol 4 unreachable"),
        "expected ICMP protocol unreachable without a decapsulator, saw:\n{seen}"
    );

    // ... and with the decapsulator's raw socket open, it does not.
    let decap = t.start_decap()?;
    let mut icmp = lab.capture(&t.director, "eth0", "icmp and dst host 10.62.0.2")?;
    t.send_from_director("valid")?;
    cmd::wait_until(
        "decap counts the packet",
        WAIT,
        Duration::from_millis(50),
        || Ok(counter(&decap.stdout_text(), "decap stats:", "decapsulated").unwrap_or(0) >= 1),
    )?;
    let seen = icmp.decode()?;
    ensure!(
        !seen.contains("unreachable"),
        "ICMP with decap running:\n{seen}"
    );

    let ok = t.check()?;
    ensure!(
        ok.status.success(),
        "check failed with decap running: {}",
        text(&ok)
    );
    ensure!(text(&ok).contains("userspace decapsulator attached to lvs-tun0"));

    // Real kernel TCP: client → director (encapsulates) → real server
    // (decapsulates) → nginx; the replies go straight to the client.
    let server = lab.nginx_with(
        rs,
        SocketAddrV4::new(t.vip, 80),
        "rs",
        &NginxOptions { big_mib: 0 },
    )?;
    let encap = t.start_encapsulator()?;
    let mut replies = lab.capture(&t.director, "eth0", "tcp and src host 10.62.1.100")?;
    for i in 0..5 {
        let page = t.curl_vip().with_context(|| format!("request {i}"))?;
        ensure!(
            page.starts_with("10.62.0.10:") && page.contains("10.62.1.100:80"),
            "{page:?}"
        );
    }
    ensure!(server.requests_served() == 5);
    let via_director = replies.decode()?;
    ensure!(
        via_director.trim().is_empty(),
        "replies passed the director:\n{via_director}"
    );

    let pids = [decap.id(), encap.id()];
    let out = stop_decap(decap)?;
    eprintln!("decap output:\n{out}");
    let decapsulated = counter(&out, "decap final:", "decapsulated").unwrap_or(0);
    // Two lone packets plus at least SYN, ACK, request, FIN per request.
    ensure!(decapsulated >= 2 + 5 * 3, "{out}");
    ensure!(counter(&out, "decap final:", "dropped") == Some(0), "{out}");

    // undo refuses nothing now that the device is free, and cleans up.
    let undone = dirctl_ok(lab, rs, &["undo", "--state-dir", &t.state_dir])?;
    ensure!(
        undone.contains("+ ip tuntap del dev lvs-tun0 mode tun"),
        "{undone}"
    );
    ensure!(!lab.ip(rs, &["link", "show"])?.contains("lvs-tun0"));
    drop(encap);
    drop(server);
    drop(t);
    assert_dead(&pids)
}

#[test]
fn realserver_lab_malformed_ipip_is_dropped_and_counted() -> Result<()> {
    let Some(t) = tun_lab("rsbad")? else {
        return Ok(());
    };
    let decap = t.start_decap()?;
    t.send_from_director("malformed")?;
    cmd::wait_until(
        "decap counts 5 drops",
        WAIT,
        Duration::from_millis(50),
        || Ok(counter(&decap.stdout_text(), "decap stats:", "dropped").unwrap_or(0) >= 5),
    )?;

    // Still decapsulating: a real connection after the garbage.
    let server = t.lab.nginx_with(
        &t.rs,
        SocketAddrV4::new(t.vip, 80),
        "rs",
        &NginxOptions { big_mib: 0 },
    )?;
    let encap = t.start_encapsulator()?;
    let page = t.curl_vip()?;
    ensure!(page.starts_with("10.62.0.10:"), "{page:?}");

    let pids = [decap.id(), encap.id()];
    let out = stop_decap(decap)?;
    for (key, want) in [
        ("inner_truncated", 1),
        ("inner_not_ipv4", 1),
        ("inner_too_short", 1),
        ("inner_bad_checksum", 1),
        ("inner_dst_not_vip", 1),
        ("dropped", 5),
    ] {
        ensure!(
            counter(&out, "decap final:", key) == Some(want),
            "{key} != {want}: {out}"
        );
    }
    ensure!(counter(&out, "decap final:", "decapsulated").unwrap_or(0) >= 3);
    drop(encap);
    drop(server);
    drop(t);
    assert_dead(&pids)
}

// ---------------------------------------------------------------------------
// The helper process, run inside the director namespace.

/// Does nothing in a normal test run; with `DIRCTL_LAB_HELPER` set (by the
/// TUN tests, in the director namespace) it is the encapsulator or the
/// packet sender.
#[test]
fn realserver_lab_helper_process() -> Result<()> {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return Ok(());
    };
    let env_addr = |k: &str| -> Result<Ipv4Addr> {
        std::env::var(k)
            .with_context(|| format!("{k} unset"))?
            .parse()
            .with_context(|| k.to_owned())
    };
    let vip = env_addr("DIRCTL_LAB_VIP")?;
    let rs = env_addr("DIRCTL_LAB_RS")?;
    let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4)))?;
    let to = SockAddr::from(SocketAddrV4::new(rs, 0));
    let client = Ipv4Addr::new(10, 62, 0, 10);
    match mode.as_str() {
        "encap" => encapsulate(&tx, &to, vip),
        "valid" => {
            // UDP to the discard port: decapsulated, then refused by the
            // real server's kernel towards the (real) client, not to us.
            tx.send_to(&ipv4(17, client, vip, &udp(9)), &to)?;
            Ok(())
        }
        "malformed" => {
            let good = ipv4(17, client, vip, &udp(9));
            let mut wrong_version = good.clone();
            wrong_version[0] = 0x65;
            let mut bad_sum = good.clone();
            bad_sum[8] ^= 1;
            let stray = ipv4(17, client, Ipv4Addr::new(10, 62, 1, 99), &udp(9));
            for payload in [
                &good[..good.len() - 4], // truncated: total length says 4 more
                &wrong_version[..],
                &good[..12],
                &bad_sum[..],
                &stray[..],
            ] {
                tx.send_to(payload, &to)?;
            }
            Ok(())
        }
        other => bail!("unknown helper mode {other}"),
    }
}

/// Reads client → VIP packets arriving at the director (AF_PACKET, IP
/// layer) and sends each to the real server inside IPIP; the kernel adds
/// the outer header. The director itself does not forward (ip_forward 0)
/// and holds no VIP, so its kernel drops these packets silently.
fn encapsulate(tx: &Socket, to: &SockAddr, vip: Ipv4Addr) -> Result<()> {
    const ETH_P_IP: u16 = 0x0800;
    let rx = Socket::new(
        Domain::PACKET,
        Type::DGRAM,
        Some(Protocol::from(i32::from(ETH_P_IP.to_be()))),
    )?;
    rx.set_read_timeout(Some(Duration::from_millis(200)))?;
    println!("encap: ready");
    std::io::stdout().flush()?;
    let mut buf = vec![0u8; 65536];
    // Bounded even if nobody kills us (the lab does, with the namespace):
    // at most this many reads, each at most one read timeout long.
    let mut sent = 0u64;
    for _ in 0..100_000 {
        let n = match (&rx).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let p = &buf[..n];
        if n >= 20 && p[0] >> 4 == 4 && p[9] != 4 && p[16..20] == vip.octets() {
            tx.send_to(p, to)?;
            sent += 1;
            println!("encap: forwarded {sent}");
        }
    }
    Ok(())
}

fn udp(port: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&40000u16.to_be_bytes());
    u[2..4].copy_from_slice(&port.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

/// An IPv4 packet with a correct header checksum.
fn ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let tot = u16::try_from(20 + payload.len()).expect("small packet");
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&tot.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(payload);
    p
}
