//! The dataplane core at work on synthetic traffic: real Ethernet frames
//! through the real schedulers, connection table and DR/TUN/NAT rewrites,
//! each output decoded by an independent parser (etherparse), with the
//! state printed the way `ipvsadm -Ln --stats` and `ipvsadm -Lnc` print it.
//!
//! `deploy/lab/core-demo.sh` runs it; `deploy/lab/demo.sh` shows the real
//! daemon between network namespaces.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use director::conn::ConnEvent;
use director::dataplane::{
    Action, Dataplane, DataplaneConfig, IfaceId, NextHop, StaticNeighbours, Worker,
};
use director::forward::{DropReason, L4Csum, MacAddr, Verdict};
use director::sched::{SchedOptions, SchedulerKind};
use director::{
    DestSpec, ForwardMethod, Millis, Persistence, Protocol, ServiceKey, ServiceSpec, ServiceTable,
};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xd1]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn rs(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 20 + n)
}

fn rs_mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x20 + n])
}

fn service(
    protocol: Protocol,
    port: u16,
    scheduler: SchedulerKind,
    dests: &[(u8, u16, ForwardMethod, i32)],
) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            protocol,
            vip: SocketAddr::new(IpAddr::V4(VIP), port),
        },
        scheduler,
        sched_opts: SchedOptions::default(),
        persistence: None,
        dests: dests
            .iter()
            .map(|&(n, p, method, weight)| DestSpec {
                addr: SocketAddr::new(IpAddr::V4(rs(n)), p),
                method,
                weight,
                upper_threshold: 0,
                lower_threshold: 0,
            })
            .collect(),
    }
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(203, 0, 113, 1 + (i % 200) as u8),
        30_000 + i as u16,
    )
}

fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: &str, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(ROUTER_MAC.0, DIRECTOR_MAC.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let b = if flags.contains('F') { b.fin() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("frame");
    v
}

fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC.0, DIRECTOR_MAC.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .expect("frame");
    v
}

struct Run {
    worker: Worker,
    neigh: StaticNeighbours,
    now: Millis,
    events: usize,
    /// Which real server (by destination MAC) each service's new flows got.
    picks: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Run {
    fn send(&mut self, mut frame: Vec<u8>) -> (Action, Vec<u8>) {
        let events = &mut self.events;
        let a = self.worker.process(
            self.now,
            IfaceId(0),
            &mut frame,
            L4Csum::Verify,
            &self.neigh,
            &mut |_: ConnEvent| *events += 1,
        );
        let out = match a {
            Action::Handled {
                verdict: Verdict::Transmit { len },
                ..
            } => frame[..len].to_vec(),
            Action::Handled {
                verdict: Verdict::Encapsulate(h),
                ..
            } => {
                let mut v = h.prefix().to_vec();
                v.extend_from_slice(&frame[h.inner()]);
                v
            }
            _ => Vec::new(),
        };
        (a, out)
    }
}

/// Recompute the IPv4 header checksum after editing a header field, with
/// etherparse, so the frame is a well-formed fragment rather than a bad
/// checksum.
fn fix_ip_checksum(frame: &mut [u8]) {
    let mut h = etherparse::Ipv4HeaderSlice::from_slice(&frame[14..])
        .expect("IPv4")
        .to_header();
    h.header_checksum = h.calc_header_checksum();
    frame[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
}

/// One line describing a frame, decoded by etherparse (not by our code).
fn describe(frame: &[u8]) -> String {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return "(undecodable)".into();
    };
    let mac = MacAddr(frame[..6].try_into().expect("6 bytes"));
    let Some(NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        return format!("→ {mac} (not IPv4)");
    };
    let h = ip.header();
    let (src, dst) = (h.source_addr(), h.destination_addr());
    let l4 = match p.transport.as_ref() {
        Some(TransportSlice::Tcp(t)) => {
            format!(
                "TCP {src}:{} > {dst}:{}",
                t.source_port(),
                t.destination_port()
            )
        }
        Some(TransportSlice::Udp(u)) => {
            format!(
                "UDP {src}:{} > {dst}:{}",
                u.source_port(),
                u.destination_port()
            )
        }
        _ => {
            // IPIP: decode the inner header too.
            if h.protocol() == etherparse::IpNumber::IPV4 {
                let inner = &frame[14 + usize::from(h.ihl()) * 4..];
                let ih = etherparse::Ipv4HeaderSlice::from_slice(inner).expect("inner IPv4");
                return format!(
                    "→ {mac}  IPIP {src} > {dst} carrying {} > {} (outer checksum {})",
                    ih.source_addr(),
                    ih.destination_addr(),
                    if h.to_header().calc_header_checksum() == h.header_checksum() {
                        "ok"
                    } else {
                        "BAD"
                    }
                );
            }
            format!("IP {src} > {dst} proto {:?}", h.protocol())
        }
    };
    format!("→ {mac}  {l4}")
}

/// `ipvsadm -Ln` and `ipvsadm -Ln --stats`, in ipvsadm's layout.
fn listing(table: &ServiceTable) {
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn");
    for s in table.services() {
        let persist = s
            .persistence
            .map(|p| {
                format!(
                    " persistent {} mask /{}",
                    p.timeout.as_secs(),
                    p.netmask_prefix
                )
            })
            .unwrap_or_default();
        println!(
            "{:<4} {} {}{persist}",
            s.key.protocol.to_string(),
            s.key.vip,
            s.scheduler.kind().name()
        );
        for d in &s.dests {
            println!(
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                d.addr().to_string(),
                d.method().ipvsadm_name(),
                d.weight(),
                d.active_conns(),
                d.inactive_conns()
            );
        }
    }
    println!();
    println!(
        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
    );
    println!("  -> RemoteAddress:Port");
    let row = |label: String, st: director::dest::StatsSnapshot| {
        println!(
            "{label:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            st.conns, st.in_pkts, st.out_pkts, st.in_bytes, st.out_bytes
        );
    };
    for s in table.services() {
        row(
            format!("{:<4} {}", s.key.protocol.to_string(), s.key.vip),
            s.stats.snapshot(),
        );
        for d in &s.dests {
            row(format!("  -> {}", d.addr()), d.stats.snapshot());
        }
    }
}

fn main() {
    use ForwardMethod::{DirectRouting as Dr, Masquerade as Nat, Tunnel as Tun};
    let dp = Arc::new(Dataplane::new(DataplaneConfig::new(DIRECTOR_MAC, DIP)));
    let mut web = service(
        Protocol::Tcp,
        80,
        SchedulerKind::Wrr,
        &[(1, 80, Dr, 3), (2, 80, Dr, 1)],
    );
    let tun = service(
        Protocol::Tcp,
        443,
        SchedulerKind::Mh,
        &[(3, 443, Tun, 1), (4, 443, Tun, 1)],
    );
    let mut nat = service(
        Protocol::Tcp,
        8099,
        SchedulerKind::Wlc,
        &[(5, 80, Nat, 1), (6, 80, Nat, 1)],
    );
    nat.persistence = Some(Persistence {
        timeout: Duration::from_secs(360),
        netmask_prefix: 24,
    });
    let dns = service(
        Protocol::Udp,
        53,
        SchedulerKind::Sh,
        &[(1, 53, Dr, 1), (2, 53, Dr, 1)],
    );

    println!("== 1. configuration: four virtual services, all three forwarding methods");
    let specs = vec![web.clone(), tun, nat, dns];
    dp.apply(&specs).expect("valid configuration");
    dp.set_active(true);
    let mut bad = web.clone();
    bad.key.vip.set_port(8080);
    bad.dests[0].method = Tun;
    match dp.services().rebuild(&[bad]) {
        Err(e) => println!("refused, as IPVS would: {e}"),
        Ok(_) => println!("UNEXPECTED: DR/TUN port mapping accepted"),
    }

    let mut neigh = StaticNeighbours {
        gateway: Some(NextHop {
            iface: IfaceId(0),
            mac: ROUTER_MAC,
        }),
        ..StaticNeighbours::default()
    };
    for n in 1..=6 {
        neigh.host(IpAddr::V4(rs(n)), rs_mac(n));
    }
    let mut run = Run {
        worker: Worker::new(Arc::clone(&dp), 42).expect("one worker"),
        neigh,
        now: Millis(0),
        events: 0,
        picks: BTreeMap::new(),
    };
    let name_of = |mac: &[u8]| -> String {
        (1..=6)
            .find(|&n| rs_mac(n).0 == mac[..6])
            .map(|n| rs(n).to_string())
            .unwrap_or_else(|| "?".into())
    };

    println!("\n== 2. traffic: 400 TCP connections to each TCP service, 400 DNS queries");
    let mut samples = Vec::new();
    for i in 0..400u32 {
        let c = client(i);
        for (port, label) in [(80u16, "DR  :80"), (443, "TUN :443"), (8099, "NAT :8099")] {
            let (_, out) = run.send(tcp(c, (VIP, port), "S", b""));
            let who = name_of(&out);
            *run.picks
                .entry(label.into())
                .or_default()
                .entry(who)
                .or_default() += 1;
            if i == 0 {
                samples.push(format!("{label}  SYN   {}", describe(&out)));
            }
            if port == 8099 {
                // The real server answers through the director (NAT).
                let out_ip = SlicedPacket::from_ethernet(&out).expect("parsed");
                let Some(NetSlice::Ipv4(ip)) = out_ip.net.as_ref() else {
                    continue;
                };
                let rip = ip.header().destination_addr();
                let (_, back) = run.send(tcp((rip, 80), c, "SA", b""));
                if i == 0 {
                    samples.push(format!("NAT reply    {}", describe(&back)));
                }
            }
            run.send(tcp(c, (VIP, port), "A", b"GET / HTTP/1.1\r\n\r\n"));
        }
        let (_, out) = run.send(udp(c, (VIP, 53), b"\x12\x34 query"));
        let who = name_of(&out);
        *run.picks
            .entry("UDP :53 (sh)".into())
            .or_default()
            .entry(who)
            .or_default() += 1;
    }
    for s in &samples {
        println!("  {s}");
    }
    println!("\nnew connections per real server:");
    println!("  (DR wrr 3:1; TUN mh; NAT wlc with persistence /24: all 400 clients are in");
    println!("   203.0.113.0/24, so one template pins them all to one server; UDP sh)");
    for (svc, m) in &run.picks {
        let line: Vec<String> = m.iter().map(|(rs, n)| format!("{rs}: {n}")).collect();
        println!("  {svc:<14} {}", line.join("   "));
    }

    println!("\n== 3. half of the DR clients close their connections (FIN)");
    for i in 0..200u32 {
        run.send(tcp(client(i), (VIP, 80), "FA", b""));
    }
    listing(&dp.services());

    println!("\n== 4. bad input: dropped and counted, never forwarded, service unharmed");
    let mut garbage = tcp(client(9_000), (VIP, 80), "S", b"");
    garbage[24] ^= 0xff; // IPv4 header checksum
    run.send(garbage);
    let mut short = tcp(client(9_001), (VIP, 80), "S", b"");
    short.truncate(40);
    run.send(short);
    let mut frag = tcp(client(9_002), (VIP, 80), "S", b"");
    frag[20] |= 0x20; // more fragments
    fix_ip_checksum(&mut frag);
    run.send(frag);
    run.send(tcp(client(9_003), (VIP, 80), "A", b"no such connection"));
    for (reason, n) in dp.drops().snapshot() {
        if n > 0 {
            println!("  dropped {n:>3}  {}", reason.as_str());
        }
    }
    let (a, _) = run.send(tcp(client(9_004), (VIP, 80), "S", b""));
    println!("  a fresh SYN afterwards: {a:?}");

    println!("\n== 5. quiesce 10.0.0.21 (ipvsadm -e -w 0): new flows drain to the other server");
    web.dests[0].weight = 0;
    let mut specs = specs;
    specs[0] = web;
    dp.apply(&specs).expect("valid edit");
    let mut drained: BTreeMap<String, u32> = BTreeMap::new();
    for i in 10_000..10_100u32 {
        let (_, out) = run.send(tcp(client(i), (VIP, 80), "S", b""));
        *drained.entry(name_of(&out)).or_default() += 1;
    }
    println!("  100 new connections: {drained:?}");
    let (_, out) = run.send(tcp(client(300), (VIP, 80), "A", b"still here"));
    println!(
        "  an established flow of 10.0.0.21 keeps going: {}",
        describe(&out)
    );

    println!("\n== 6. time passes on the driver's clock: entries expire by their IPVS timeouts");
    let conns = dp.conns();
    println!(
        "  t=0        {:>5} connections, {} templates",
        conns.conn_count(),
        conns.template_count()
    );
    for (label, secs) in [
        ("t=2m+1s", 121),
        ("t=6m", 360),
        ("t=16m", 960),
        ("t=23m", 1380),
    ] {
        run.now = Millis(secs * 1000);
        conns.expire(run.now, usize::MAX, &mut |_| {});
        println!(
            "  {label:<10} {:>5} connections, {} templates",
            conns.conn_count(),
            conns.template_count()
        );
    }
    println!(
        "  ({} connection-table events were reported for the sync stream)",
        run.events
    );
    let no_conn = dp.drops().get(DropReason::NoConnection);
    println!(
        "\ndone: {} frames dropped in all ({no_conn} mid-flow without a connection).",
        dp.drops().total()
    );
}
