//! `directord` forwarding real kernel TCP between network namespaces, in
//! the three LVS modes: a client, a director, real servers running nginx,
//! and a router where a mode needs one. The director runs the real binary
//! on AF_PACKET; `dirctl` inspects it over its gRPC control API.
//!
//! Bounded: each test sends at most a few hundred requests, every command
//! has a deadline, and the lab (namespaces, processes) is removed on every
//! exit path by the harness.

use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, Result};
use lab_tests::modes::{self, Mode};
use lab_tests::{
    Balancer, Directord, Host, HttpServer, Lab, LabChild, LvsLab, LvsOptions, UdpAsk, UdpServer,
};

const DIRECTORD: &str = env!("CARGO_BIN_EXE_directord");
const DIRCTL: &str = env!("CARGO_BIN_EXE_dirctl");

/// `n` requests from `client` to `url`; returns the names of the real
/// servers that answered, in order. Every request must succeed.
fn requests(lab: &Lab, client: &Host, url: &str, n: usize) -> Result<Vec<String>> {
    lab.names_of_requests(client, url, n)
}

/// One lab for one LVS mode: a client, a director, two real servers with
/// nginx and a UDP echo server.
struct ModeLab {
    lab: Lab,
    client: Host,
    director: Directord,
    servers: Vec<HttpServer>,
    /// `http://VIP:PORT`
    base: String,
    /// VIP and port of the UDP service.
    udp: SocketAddrV4,
    /// The real servers' UDP echo servers and TUN decapsulators, held only
    /// to keep them running.
    _helpers: (Vec<UdpServer>, Vec<LabChild>),
}

/// `mode`'s lab (see `lab_tests::modes`) with both real servers serving
/// HTTP, with a /big.bin of `big_mib` MiB, and UDP; directord not started.
fn build(name: &str, mode: Mode, big_mib: u32) -> Result<Option<LvsLab>> {
    build_with(name, mode, big_mib, false)
}

/// [`build`], with every interface's offloads left on when `offloads`.
fn build_with(name: &str, mode: Mode, big_mib: u32, offloads: bool) -> Result<Option<LvsLab>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let opts = LvsOptions {
        balancer: Balancer::Directord("director"),
        big_mib,
        udp: true,
        dirctl: DIRCTL.into(),
        offloads,
    };
    LvsLab::build(lab, mode, &opts).map(Some)
}

/// Which real-server names answered, counted.
fn count(names: &[String], who: &str) -> usize {
    names.iter().filter(|n| *n == who).count()
}

/// directord in `mode`'s lab as `node`, with `dataplane` (or nothing), rr
/// on TCP and UDP.
fn config(mode: Mode, node: &str, dataplane: &str, port: u16) -> String {
    modes::directord_config(
        mode,
        &modes::DirectordConfig {
            node,
            dataplane,
            scheduler: "rr",
            port,
            udp: true,
        },
    )
}

/// The DR lab's configuration.
fn dr_config() -> String {
    config(Mode::Dr, "dr-lab", "", 80)
}

/// LVS-DR: everyone on one segment; real servers hold the VIP on lo.
fn dr_lab(name: &str, config: &str, big_mib: u32) -> Result<Option<ModeLab>> {
    let Some(net) = build(name, Mode::Dr, big_mib)? else {
        return Ok(None);
    };
    ModeLab::start(net, config, "http://10.21.0.100").map(Some)
}

/// LVS-TUN: the real servers are off-link behind a router; the director
/// reaches them through it with IPIP, and they answer the client directly.
/// This kernel has no ipip module, so each real server runs the project's
/// userspace decapsulator (`dirctl realserver decap`).
fn tun_lab(name: &str) -> Result<Option<ModeLab>> {
    let Some(net) = build(name, Mode::Tun, 50)? else {
        return Ok(None);
    };
    ModeLab::start(
        net,
        &config(Mode::Tun, "tun-lab", "", 80),
        "http://10.22.0.100",
    )
    .map(Some)
}

/// LVS-NAT, the classic two-NIC set-up: clients outside, real servers
/// inside with their default route via the inside gateway VIP, which the
/// director answers for; the virtual port 8099 maps to the servers' 80.
fn nat_lab(name: &str) -> Result<Option<ModeLab>> {
    let Some(net) = build(name, Mode::Nat, 50)? else {
        return Ok(None);
    };
    // A stale ingress table of the same instance, as a killed directord
    // would leave it, that drops everything: start must replace it.
    let stale = net.lab.unique_path("stale", ".nft");
    std::fs::write(
        &stale,
        "table netdev directord_nat_lab {\n  chain old {\n    type filter hook ingress \
         device \"eth0\" priority 0; policy drop;\n  }\n}\n",
    )?;
    let dir = net.director.as_ref().context("a director")?;
    net.lab
        .exec_ok(dir, &["nft", "-f", &stale.to_string_lossy()])?;
    // Two workers per interface, spread by receiving CPU and pinned: NAT's
    // two directions meet in the shared connection table whichever worker
    // the fanout picks, and a flow whose sender moves between CPUs moves
    // between workers too.
    let dataplane = "[dataplane]\nworkers = 2\nfanout = \"cpu\"\n";
    ModeLab::start(
        net,
        &config(Mode::Nat, "nat-lab", dataplane, 8099),
        "http://10.23.0.100:8099",
    )
    .map(Some)
}

impl ModeLab {
    /// Starts directord with `config` in `net`'s director; `base` is
    /// `http://VIP:PORT` of the HTTP service.
    fn start(net: LvsLab, config: &str, base: &str) -> Result<ModeLab> {
        let LvsLab {
            mode,
            client,
            director,
            servers,
            udp_servers,
            decaps,
            lab,
            ..
        } = net;
        let host = director.context("a director")?;
        let director = Directord::start(&lab, &host, &lab_tests::bins!(), config)?;
        Ok(ModeLab {
            lab,
            client,
            director,
            servers,
            base: base.into(),
            udp: SocketAddrV4::new(modes::vip(mode), 53),
            _helpers: (udp_servers, decaps),
        })
    }

    /// The checks every mode must pass: 100 HTTP requests all answered and
    /// split by rr, the connection table and counters agreeing, a 50 MiB
    /// download intact, a UDP service answering. Returns the `-Ln --stats`
    /// listing for mode-specific checks.
    fn common_checks(&mut self) -> Result<String> {
        let lab = &self.lab;
        let names = requests(lab, &self.client, &format!("{}/", self.base), 100)?;
        assert_eq!(
            count(&names, "rs1"),
            50,
            "rr splits 100 connections 50/50: {names:?}"
        );
        for pair in names.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "rr alternates between the real servers: {names:?}"
            );
        }
        assert_eq!(
            self.servers[0].requests_served(),
            50,
            "rs1's own access log"
        );
        assert_eq!(
            self.servers[1].requests_served(),
            50,
            "rs2's own access log"
        );

        let list = self.director.dirctl(lab, &["-Ln", "--stats"])?;
        let conns: Vec<u64> = list
            .lines()
            .filter(|l| l.trim_start().starts_with("->") && l.contains(":80 "))
            .map(|l| {
                l.split_whitespace()
                    .nth(2)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(conns, vec![50, 50], "connections per real server:\n{list}");
        let table = self.director.dirctl(lab, &["-Lnc"])?;
        let tcp: Vec<&str> = table.lines().filter(|l| l.starts_with("TCP")).collect();
        assert_eq!(tcp.len(), 100, "one entry per connection:\n{table}");
        for e in &tcp {
            let state = e.split_whitespace().nth(2).unwrap_or("");
            assert!(
                [
                    "FIN_WAIT",
                    "TIME_WAIT",
                    "CLOSE",
                    "CLOSE_WAIT",
                    "LAST_ACK",
                    "ESTABLISHED"
                ]
                .contains(&state),
                "each entry has the state of its connection: {e}"
            );
        }

        let big = format!("{}/big.bin", self.base);
        for _ in 0..2 {
            let d = lab.download(&self.client, &big, Duration::from_secs(60))?;
            let server = if self.servers[0].big_sha256() == Some(d.sha256.as_str()) {
                0
            } else {
                1
            };
            assert_eq!(d.status, 200);
            assert_eq!(
                Some(d.len),
                self.servers[server].big_len(),
                "download length"
            );
            assert_eq!(
                Some(d.sha256.as_str()),
                self.servers[server].big_sha256(),
                "50 MiB download intact (sha256)"
            );
        }

        let udp = lab.udp_ask(
            &self.client,
            self.udp,
            &UdpAsk {
                count: 10,
                timeout: Duration::from_secs(2),
                fresh_port: true,
                bind: None,
            },
        )?;
        let replies: Vec<String> = udp
            .iter()
            .filter_map(|x| x.reply.as_ref().map(|r| r.text.clone()))
            .collect();
        assert_eq!(replies.len(), 10, "every UDP request answered: {udp:?}");
        let from_rs1 = replies.iter().filter(|r| r.starts_with("rs1 ")).count();
        assert_eq!(from_rs1, 5, "UDP flows split by rr too: {replies:?}");
        for x in &udp {
            let r = x.reply.as_ref().expect("answered");
            assert_eq!(
                r.from.to_string(),
                self.udp.to_string(),
                "the reply comes from the VIP"
            );
        }
        Ok(list)
    }

    /// Stop the director and return what it printed (stdout and stderr).
    fn stop(&mut self) -> String {
        self.director.proc.stop_gracefully(Duration::from_secs(5));
        self.director.output()
    }
}

#[test]
fn dr_balances_tcp_and_udp_downloads_intact_and_nothing_loops() -> Result<()> {
    let Some(mut m) = dr_lab("dr", &dr_config(), 50)? else {
        return Ok(());
    };
    let list = m.common_checks()?;
    // A short HTTP/1.1 exchange is 5-7 client packets, a 50 MiB download
    // some thousands of ACKs. Far more would mean frames looping through
    // the director (its own transmissions seen again), which happened once
    // through the AF_PACKET fanout group.
    let in_pkts: u64 = list
        .lines()
        .find(|l| l.starts_with("TCP  10.21.0.100:80"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(in_pkts < 100_000, "packets in: {in_pkts}\n{list}");
    let out = m.stop();
    assert!(
        out.contains("dropped frames by reason: {}"),
        "nothing dropped on a healthy path:\n{out}"
    );
    Ok(())
}

/// Bytes and frames `iface` of `host` has received, as its kernel counts
/// them (a GSO/GRO super-frame is one frame).
fn rx_counters(lab: &Lab, host: &Host, iface: &str) -> Result<(u64, u64)> {
    let read = |what: &str| -> Result<u64> {
        let path = format!("/sys/class/net/{iface}/statistics/{what}");
        let text = lab.exec_ok(host, &["cat", &path])?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: `{text}`"))
    };
    Ok((read("rx_bytes")?, read("rx_packets")?))
}

/// Average bytes per frame `iface` received while `f` ran.
fn bytes_per_frame(
    lab: &Lab,
    host: &Host,
    iface: &str,
    f: impl FnOnce() -> Result<()>,
) -> Result<u64> {
    let (b0, p0) = rx_counters(lab, host, iface)?;
    f()?;
    let (b1, p1) = rx_counters(lab, host, iface)?;
    Ok((b1 - b0) / (p1 - p0).max(1))
}

/// With `[dataplane] offloads = true` and the veths' offloads on, senders
/// hand the director TSO super-frames of up to 64 KiB: in every mode a
/// 20 MiB upload (client → VIP) and a 50 MiB download arrive intact, the
/// director's interfaces receive frames far larger than the MTU (so the
/// merged path is what ran), and nothing is dropped (TUN: but for path MTU
/// discovery).
#[test]
fn offloads_on_merged_frames_are_forwarded_intact_in_every_mode() -> Result<()> {
    for (mode, base, port, inside) in [
        (Mode::Dr, "http://10.21.0.100", 80, "eth0"),
        (Mode::Tun, "http://10.22.0.100", 80, "eth0"),
        (Mode::Nat, "http://10.23.0.100:8099", 8099, "eth1"),
    ] {
        let Some(net) = build_with(&format!("off{}", mode.name()), mode, 50, true)? else {
            return Ok(());
        };
        let node = format!("{}-offloads", mode.name());
        let config = config(mode, &node, "[dataplane]\noffloads = true\n", port);
        let mut m = ModeLab::start(net, &config, base)?;
        let lab = &m.lab;
        let host = m.director.host.clone();

        let names = requests(lab, &m.client, &format!("{base}/"), 20)?;
        assert_eq!(count(&names, "rs1"), 10, "{mode:?}: rr split: {names:?}");
        // UDP with the client's checksum left partial by its veth: the
        // director leaves it for the kernel (DR, NAT) or completes it (TUN).
        let udp = lab.udp_ask(
            &m.client,
            m.udp,
            &UdpAsk {
                count: 6,
                timeout: Duration::from_secs(2),
                fresh_port: true,
                bind: None,
            },
        )?;
        let answered = udp.iter().filter(|x| x.reply.is_some()).count();
        assert_eq!(answered, 6, "{mode:?}: every UDP request answered: {udp:?}");

        let (file, sha) = lab.test_file(20)?;
        let mut up_frame = 0;
        for n in 0..2 {
            let name = format!("up-{n}.bin");
            up_frame = up_frame.max(bytes_per_frame(lab, &host, "eth0", || {
                let r = lab.upload(
                    &m.client,
                    &format!("{base}/upload/{name}"),
                    &file,
                    Duration::from_secs(60),
                )?;
                anyhow::ensure!(r.status == 201, "{mode:?}: upload answered {}", r.status);
                Ok(())
            })?);
            // rr: the two uploads go one to each real server.
            let got: Vec<_> = m
                .servers
                .iter()
                .filter_map(|s| s.uploaded(&name).ok())
                .collect();
            assert_eq!(got.len(), 1, "{mode:?}: {name} stored once");
            assert_eq!(
                got[0],
                (20 << 20, sha.clone()),
                "{mode:?}: {name} arrived intact"
            );
        }

        let big = format!("{base}/big.bin");
        let mut down_frame = 0;
        for _ in 0..2 {
            let mut d = None;
            down_frame = down_frame.max(bytes_per_frame(lab, &host, inside, || {
                d = Some(lab.download(&m.client, &big, Duration::from_secs(60))?);
                Ok(())
            })?);
            let d = d.context("downloaded")?;
            assert_eq!(d.status, 200);
            assert!(
                m.servers
                    .iter()
                    .any(|s| s.big_sha256() == Some(d.sha256.as_str())),
                "{mode:?}: 50 MiB download intact (sha256)"
            );
        }
        // The client's TSO makes the uploads' frames large in every mode;
        // in NAT the real servers' replies come through the director too.
        assert!(
            up_frame > 8000,
            "{mode:?}: the director received merged upload frames ({up_frame} B/frame)"
        );
        if mode == Mode::Nat {
            assert!(
                down_frame > 8000,
                "NAT: the director received merged download frames ({down_frame} B/frame)"
            );
        }
        let out = m.stop();
        assert!(
            out.contains("offloads left on"),
            "{mode:?}: the daemon left the offloads on:\n{out}"
        );
        // TUN adds 20 bytes: the upload's first full-sized segments are
        // answered with "fragmentation needed" (path MTU discovery, as
        // IPVS does), and the client sends smaller ones from then on.
        let drops = out
            .lines()
            .find_map(|l| l.split_once("dropped frames by reason: "))
            .map(|(_, d)| d.split(';').next().unwrap_or(d).trim().to_owned())
            .with_context(|| format!("{mode:?}: drop summary in\n{out}"))?;
        let only_pmtu = drops.starts_with("{\"frag_needed\": ") && !drops.contains(',');
        assert!(
            drops == "{}" || (mode == Mode::Tun && only_pmtu),
            "{mode:?}: nothing dropped: {drops}\n{out}"
        );
        eprintln!(
            "{mode:?}: upload {up_frame} B/frame, download {down_frame} B/frame at the director"
        );
    }
    Ok(())
}

/// The pitfall `offloads = true` exists for, and its counter: directord
/// with offloads off turns them off on its own interface, but a client's
/// TSO still hands it 64 KiB frames across the veth. They do not fit the
/// ring's 2 KiB slots, so they are lost there, and `dirctl status` says so
/// (`rx_ring_overflow`) instead of the loss going unseen.
#[test]
fn merged_frames_with_offloads_off_are_counted_as_lost_at_the_ring() -> Result<()> {
    let Some(net) = build_with("offoff", Mode::Dr, 0, true)? else {
        return Ok(());
    };
    let mut m = ModeLab::start(net, &dr_config(), "http://10.21.0.100")?;
    let lab = &m.lab;
    let (file, _) = lab.test_file(1)?;
    // Whether it completes (TCP falls back to single segments after a
    // timeout) does not matter here: what was lost must be counted.
    let _ = lab.upload(
        &m.client,
        "http://10.21.0.100/upload/lost.bin",
        &file,
        Duration::from_secs(3),
    );
    let status = m.director.dirctl(lab, &["status"])?;
    let lost: u64 = status
        .split("rx_ring_overflow ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no rx_ring_overflow count in\n{status}"))?;
    assert!(lost > 0, "{status}");
    let out = m.stop();
    assert!(out.contains("lost at full rings "), "{out}");
    Ok(())
}

#[test]
fn tun_reaches_real_servers_behind_a_router_through_userspace_decap() -> Result<()> {
    let Some(mut m) = tun_lab("tun")? else {
        return Ok(());
    };
    m.common_checks()?;
    let out = m.stop();
    assert!(
        out.contains("dropped frames by reason: {}"),
        "nothing dropped:\n{out}"
    );
    Ok(())
}

#[test]
fn nat_maps_8099_to_80_across_two_nics_both_ways() -> Result<()> {
    let Some(mut m) = nat_lab("nat")? else {
        return Ok(());
    };
    let list = m.common_checks()?;
    let svc = list
        .lines()
        .find(|l| l.starts_with("TCP  10.23.0.100:8099"))
        .unwrap_or_default()
        .to_string();
    let out_pkts: u64 = svc
        .split_whitespace()
        .nth(4)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        out_pkts >= 300,
        "NAT carries the replies back, 4+ per request (OutPkts): {svc}"
    );
    let seen = m
        .lab
        .exec_ok(&m.client, &["ip", "neigh", "show", "10.23.0.100"])?;
    assert!(
        seen.contains("lladdr"),
        "the client resolved the VIP through our ARP: {seen}"
    );
    // The kernel was kept out: the VIP traffic and the NAT replies were
    // dropped at ingress (after the dataplane had them), on the table that
    // replaced the stale one.
    let table = m.lab.exec_ok(
        &m.director.host,
        &["nft", "list", "table", "netdev", "directord_nat_lab"],
    )?;
    let counted = |rule: &str| -> u64 {
        // Summed over the chains of both interfaces.
        table
            .lines()
            .filter(|l| l.contains(rule))
            .filter_map(|l| l.split("counter packets ").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(
        !table.contains("chain old"),
        "stale table replaced:\n{table}"
    );
    assert!(
        counted("ip daddr @vips") >= 300,
        "VIP traffic dropped:\n{table}"
    );
    assert!(
        counted("ip saddr @nat_rips") >= 300,
        "NAT replies dropped:\n{table}"
    );
    let out = m.stop();
    let tables = m
        .lab
        .exec_ok(&m.director.host, &["nft", "list", "tables"])?;
    assert!(
        !tables.contains("directord_nat_lab"),
        "the table goes with the daemon: {tables}\n{out}"
    );
    assert!(
        out.contains("dropped frames by reason: {}"),
        "nothing dropped:\n{out}"
    );
    Ok(())
}

#[test]
fn weight_changes_apply_to_new_connections_and_zero_drains_without_breaking_flows() -> Result<()> {
    let Some(mut m) = dr_lab(
        "weights",
        &dr_config().replace("scheduler = \"rr\"", "scheduler = \"wrr\""),
        20,
    )?
    else {
        return Ok(());
    };
    let lab = &m.lab;
    let url = format!("{}/", m.base);
    // ipvsadm -e -w 2: wrr now sends two of every three new connections to rs1.
    m.director.dirctl(
        lab,
        &[
            "-e",
            "-t",
            "10.21.0.100:80",
            "-r",
            "10.21.0.11:80",
            "-g",
            "-w",
            "2",
        ],
    )?;
    let names = requests(lab, &m.client, &url, 30)?;
    assert_eq!(
        count(&names, "rs1"),
        20,
        "wrr 2:1 after the edit: {names:?}"
    );

    // A slow download from rs1 in flight while rs1 is quiesced: it must
    // finish intact, and new connections must all go to rs2.
    let rs1 = m
        .servers
        .iter()
        .position(|s| s.name() == "rs1")
        .expect("rs1");
    let want = m.servers[rs1].big_sha256().expect("big file").to_string();
    let mut slow = None;
    for _ in 0..3 {
        // The next wrr pick: find the one that lands on rs1.
        let body = lab.unique_path("slow", "bin");
        let body_s = body.to_string_lossy().to_string();
        let child = lab.spawn(
            &m.client,
            &[
                "curl",
                "-s",
                "--noproxy",
                "*",
                "--limit-rate",
                "8M",
                "-o",
                &body_s,
                "-w",
                "%{http_code} %{size_download}",
                &format!("{}/big.bin", m.base),
            ],
        )?;
        std::thread::sleep(Duration::from_millis(300));
        let on_rs1 = m.servers[rs1].access_log().contains("big.bin")
            || lab
                .exec_ok(&m.client, &["ss", "-tn", "state", "established"])?
                .contains("10.21.0.100:80");
        slow = Some((child, body));
        if on_rs1 {
            break;
        }
    }
    m.director.dirctl(
        lab,
        &[
            "-e",
            "-t",
            "10.21.0.100:80",
            "-r",
            "10.21.0.11:80",
            "-g",
            "-w",
            "0",
        ],
    )?;
    let names = requests(lab, &m.client, &url, 20)?;
    assert_eq!(
        count(&names, "rs2"),
        20,
        "weight 0 drains: no new connection to rs1: {names:?}"
    );
    let (mut child, body) = slow.expect("started");
    let status = child
        .wait_timeout(Duration::from_secs(30))?
        .context("slow download did not finish")?;
    assert!(status.success(), "download in flight survived the drain");
    let got = lab_tests::sha256_file(&body)?;
    let other = m.servers[1 - rs1].big_sha256().unwrap_or_default();
    assert!(
        got == want || got == other,
        "download intact across the weight change"
    );

    // SIGHUP with a broken file: refused whole, the running table kept.
    m.director.reload("[node]\nname = 'x'\n[[interface]]\nname = 'eth0'\naddress = '10.21.0.2/24'\n[[service]]\nprotocol = 'tcp'\naddress = '10.21.0.100:80'\nscheduler = 'nope'\n")?;
    std::thread::sleep(Duration::from_millis(300));
    let still = m.director.dirctl(lab, &["-Ln"])?;
    assert!(
        still.contains("10.21.0.11:80") && still.contains("wrr"),
        "running table kept:\n{still}"
    );
    // A good file: applied, weights as written (rr, 1:1).
    m.director.reload(&dr_config())?;
    std::thread::sleep(Duration::from_millis(300));
    let names = requests(lab, &m.client, &url, 10)?;
    assert_eq!(
        count(&names, "rs1"),
        5,
        "reloaded: rr again over both: {names:?}"
    );
    let out = m.stop();
    assert!(
        out.contains("reload refused") && out.contains("unknown scheduler"),
        "{out}"
    );
    Ok(())
}

#[test]
fn garbage_frames_are_dropped_and_counted_and_service_goes_on() -> Result<()> {
    use director::io::{TxConfig, TxQueue, netns_path, run_in_netns};
    let Some(mut m) = dr_lab("garbage", &dr_config(), 1)? else {
        return Ok(());
    };
    let dmac = m
        .lab
        .exec_ok(&m.director.host, &["cat", "/sys/class/net/eth0/address"])?;
    let dmac: Vec<u8> = dmac
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap_or(0))
        .collect();
    let smac = [0x02u8, 0, 10, 21, 0, 10];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let eth = |t: [u8; 2]| -> Vec<u8> { [&dmac[..], &smac[..], &t[..]].concat() };
    let syn = |flags_fix: &dyn Fn(&mut Vec<u8>)| -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(smac, dmac.clone().try_into().unwrap())
            .ipv4([10, 21, 0, 10], [10, 21, 0, 100], 64)
            .tcp(40_000, 80, 1, 1000)
            .syn()
            .write(&mut v, b"x")
            .unwrap();
        flags_fix(&mut v);
        v
    };
    // Frames not addressed to a VIP never reach the dataplane: the
    // workers' kernel filter passes only IPv4 to a VIP (or from a NAT real
    // server). Garbage addressed to the VIP does reach it, and is counted.
    // An IPv4 header of version 7.
    frames.push(
        [
            eth([8, 0]),
            vec![
                0x75, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 21, 0, 10, 10, 21, 0, 100,
            ],
            vec![0xa5; 20],
        ]
        .concat(),
    );
    // A header claiming 1400 bytes in a 54-byte frame (truncated).
    frames.push(
        [
            eth([8, 0]),
            vec![
                0x45, 0, 0x05, 0x78, 0, 0, 0, 0, 64, 6, 0, 0, 10, 21, 0, 10, 10, 21, 0, 100,
            ],
            vec![0x5a; 20],
        ]
        .concat(),
    );
    // Bad IPv4 header checksum.
    frames.push(syn(&|v| v[24] ^= 0xff));
    // Bad TCP checksum.
    frames.push(syn(&|v| {
        let n = v.len();
        v[n - 1] ^= 0x55
    }));
    // A fragment (MF set), checksum fixed so it is a valid fragment.
    frames.push(syn(&|v| {
        v[20] |= 0x20;
        let mut h = etherparse::Ipv4HeaderSlice::from_slice(&v[14..])
            .unwrap()
            .to_header();
        h.header_checksum = h.calc_header_checksum();
        v[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
    }));
    // A mid-stream segment of no connection.
    frames.push({
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(smac, dmac.clone().try_into().unwrap())
            .ipv4([10, 21, 0, 10], [10, 21, 0, 100], 64)
            .tcp(40_001, 80, 1, 1000)
            .ack(1)
            .write(&mut v, b"data")
            .unwrap();
        v
    });
    let ns = netns_path(m.client.ns());
    let sent = run_in_netns(&ns, || -> std::result::Result<_, director::io::IoError> {
        let mut tx = TxQueue::open("eth0", &TxConfig::default())?;
        for _ in 0..10 {
            for f in &frames {
                tx.send_now(f);
            }
        }
        Ok(tx.stats())
    })??;
    assert_eq!(sent.frames, 60, "all garbage left the client: {sent:?}");
    std::thread::sleep(Duration::from_millis(200));
    let after = m.director.dirctl(&m.lab, &["-Ln", "--stats"])?;
    let in_pkts = after
        .lines()
        .find(|l| l.starts_with("TCP  10.21.0.100:80"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_string();
    assert_eq!(in_pkts, "0", "no garbage frame was forwarded:\n{after}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        m.director.proc.is_running(),
        "directord survived the garbage"
    );
    let names = requests(&m.lab, &m.client, &format!("{}/", m.base), 10)?;
    assert_eq!(count(&names, "rs1"), 5, "service goes on: {names:?}");
    let out = m.stop();
    for reason in ["ip_checksum", "l4_checksum", "fragment", "no_connection"] {
        assert!(
            out.contains(&format!("\"{reason}\": 10")),
            "10 × {reason} counted:\n{out}"
        );
    }
    for reason in ["ip_header_invalid", "ip_length_invalid"] {
        assert!(
            out.contains(&format!("\"{reason}\": 10")),
            "10 × {reason} counted:\n{out}"
        );
    }
    let after = m.director.dirctl(&m.lab, &["-Ln", "--stats"]);
    assert!(after.is_err(), "director stopped");
    Ok(())
}

#[test]
fn dr_and_tun_port_mapping_is_refused_by_the_config() -> Result<()> {
    for method in ["dr", "tun"] {
        let cfg = format!(
            "[node]\nname = 'x'\n[[interface]]\nname = 'eth0'\naddress = '10.21.0.2/24'\n\
             [[service]]\nprotocol = 'tcp'\naddress = '10.21.0.100:8099'\n\
             [[service.real_server]]\naddress = '10.21.0.11:80'\nmethod = '{method}'\n"
        );
        let path = std::env::temp_dir().join(format!(
            "directord-portmap-{method}-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, cfg)?;
        let out = std::process::Command::new(DIRECTORD)
            .args(["--check-config", "--config"])
            .arg(&path)
            .output()?;
        let _ = std::fs::remove_file(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "refused: {err}");
        assert!(
            err.contains(":9:1:") && err.contains("port mapping needs NAT"),
            "names the line and the reason: {err}"
        );
    }
    Ok(())
}
