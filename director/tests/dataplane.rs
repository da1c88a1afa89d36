//! The whole packet path: frames in, rewritten frames out, through the
//! service table, the connection table, the schedulers and the DR/TUN/NAT
//! rewrites together. Frames are built and checked with etherparse, an
//! independent parser: checksums are recomputed there, never by the code
//! under test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use director::conn::{ConnEvent, ConnKey, ConnState, TcpState};
use director::dataplane::{
    Action, Dataplane, DataplaneConfig, IfaceId, Interface, NextHop, StaticNeighbours, Worker,
};
use director::forward::{DropReason, L4Csum, MacAddr, Verdict};
use director::sched::{SchedOptions, SchedulerKind};
use director::{
    DestSpec, ForwardMethod, Millis, Persistence, Protocol, ServiceKey, ServiceSpec, TcpFlags,
};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xd1]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x21]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x22]);
const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 22);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

struct Lab {
    worker: Worker,
    neigh: StaticNeighbours,
    events: Vec<ConnEvent>,
    now: Millis,
}

impl Lab {
    fn new(specs: &[ServiceSpec]) -> Lab {
        let dp = Arc::new(Dataplane::new(DataplaneConfig::new(DIRECTOR_MAC, DIP)));
        dp.apply(specs).expect("valid specs");
        dp.set_active(true);
        let mut neigh = StaticNeighbours::default();
        neigh.host(IpAddr::V4(RS1), RS1_MAC);
        neigh.host(IpAddr::V4(RS2), RS2_MAC);
        neigh.host(IpAddr::V4(CLIENT), CLIENT_MAC);
        Lab {
            worker: Worker::new(dp, 7).unwrap(),
            neigh,
            events: Vec::new(),
            now: Millis(1_000),
        }
    }

    fn dp(&self) -> &Arc<Dataplane> {
        self.worker.dataplane()
    }

    /// Runs one frame; returns the action and the frame's bytes as sent
    /// (TUN: prefix + inner packet; ICMP: the reply).
    fn run(&mut self, mut frame: Vec<u8>) -> (Action, Vec<u8>) {
        let events = &mut self.events;
        let action = self.worker.process(
            self.now,
            IfaceId(0),
            &mut frame,
            L4Csum::Verify,
            &self.neigh,
            &mut |e| events.push(e),
        );
        let out = match action {
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
            Action::Handled {
                verdict: Verdict::Icmp { reply, .. },
                ..
            } => reply.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        (action, out)
    }
}

fn spec(
    port: u16,
    sched: SchedulerKind,
    dests: &[(Ipv4Addr, u16, ForwardMethod, i32)],
) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            protocol: Protocol::Tcp,
            vip: SocketAddr::new(IpAddr::V4(VIP), port),
        },
        scheduler: sched,
        sched_opts: SchedOptions::default(),
        persistence: None,
        dests: dests
            .iter()
            .map(|&(ip, p, method, weight)| DestSpec {
                addr: SocketAddr::new(IpAddr::V4(ip), p),
                method,
                weight,
                upper_threshold: 0,
                lower_threshold: 0,
            })
            .collect(),
    }
}

fn tcp(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: TcpFlags,
    payload: &[u8],
    macs: (MacAddr, MacAddr),
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if flags.syn() { b.syn() } else { b };
    let b = if flags.ack() { b.ack(1) } else { b };
    let b = if flags.fin() { b.fin() } else { b };
    let b = if flags.rst() { b.rst() } else { b };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

fn client_tcp(cport: u16, vport: u16, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    tcp(
        (CLIENT, cport),
        (VIP, vport),
        flags,
        payload,
        (CLIENT_MAC, DIRECTOR_MAC),
    )
}

/// Parses with etherparse, checks every checksum, returns
/// (dst mac, src ip, dst ip, src port, dst port, payload).
fn parse(frame: &[u8]) -> ([u8; 6], Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the output");
    let eth = match p.link.as_ref().unwrap() {
        etherparse::LinkSlice::Ethernet2(e) => e.to_header(),
        other => panic!("not ethernet: {other:?}"),
    };
    let Some(NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        panic!("not ipv4")
    };
    let iph = ip.header().to_header();
    assert_eq!(
        iph.header_checksum,
        iph.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let (sp, dp, payload) = match p.transport.as_ref().expect("transport") {
        TransportSlice::Tcp(t) => {
            let th = t.to_header();
            let want = th.calc_checksum_ipv4(&iph, t.payload()).unwrap();
            assert_eq!(th.checksum, want, "TCP checksum (etherparse)");
            (th.source_port, th.destination_port, t.payload().to_vec())
        }
        TransportSlice::Udp(u) => {
            let uh = u.to_header();
            (uh.source_port, uh.destination_port, u.payload().to_vec())
        }
        other => panic!("unexpected transport {other:?}"),
    };
    (
        eth.destination,
        Ipv4Addr::from(iph.source),
        Ipv4Addr::from(iph.destination),
        sp,
        dp,
        payload,
    )
}

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;

#[test]
fn dr_round_robin_alternates_and_keeps_each_flow_on_its_server() {
    use ForwardMethod::DirectRouting as Dr;
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, Dr, 1), (RS2, 80, Dr, 1)],
    )]);
    let mut first_mac = Vec::new();
    for cport in 40_000..40_006 {
        let input = client_tcp(cport, 80, SYN, b"");
        let (action, out) = lab.run(input.clone());
        assert!(
            matches!(
                action,
                Action::Handled {
                    verdict: Verdict::Transmit { .. },
                    ..
                }
            ),
            "{action:?}"
        );
        let (dmac, src, dst, sp, dp, _) = parse(&out);
        assert_eq!(
            (src, dst, sp, dp),
            (CLIENT, VIP, cport, 80),
            "DR leaves IP/TCP untouched"
        );
        assert_eq!(
            &out[14..],
            &input[14..],
            "DR changes nothing past the Ethernet header"
        );
        assert_eq!(out[6..12], DIRECTOR_MAC.0, "source MAC is the director's");
        first_mac.push(dmac);
    }
    assert_eq!(
        first_mac,
        [
            RS1_MAC.0, RS2_MAC.0, RS1_MAC.0, RS2_MAC.0, RS1_MAC.0, RS2_MAC.0
        ],
        "rr alternates between the real servers"
    );
    // Mid-flow packets of each connection stay on the server it got.
    for (i, cport) in (40_000..40_006).enumerate() {
        let (_, out) = lab.run(client_tcp(cport, 80, ACK, b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(
            parse(&out).0,
            first_mac[i],
            "flow {cport} stays on its real server"
        );
    }
    let svc = lab.dp().services();
    let s = svc
        .get(Protocol::Tcp, SocketAddr::new(IpAddr::V4(VIP), 80))
        .unwrap();
    let (d1, d2) = (s.dests[0].stats.snapshot(), s.dests[1].stats.snapshot());
    assert_eq!(
        (d1.conns, d2.conns),
        (3, 3),
        "connections scheduled per real server"
    );
    assert_eq!(
        (d1.in_pkts, d2.in_pkts),
        (6, 6),
        "packets in per real server"
    );
    assert_eq!(
        s.stats.snapshot().in_pkts,
        12,
        "service packets in = sum of real servers"
    );
    assert_eq!(
        s.stats.snapshot().in_bytes,
        d1.in_bytes + d2.in_bytes,
        "service bytes = sum of real servers"
    );
    let key = ConnKey {
        protocol: Protocol::Tcp,
        client: SocketAddr::new(IpAddr::V4(CLIENT), 40_000),
        vip: SocketAddr::new(IpAddr::V4(VIP), 80),
    };
    let rec = lab
        .dp()
        .conns()
        .get(&key, lab.now)
        .expect("flow in the table");
    assert_eq!(
        rec.state,
        ConnState::Tcp(TcpState::Established),
        "SYN then ACK: ESTABLISHED"
    );
    assert_eq!(lab.dp().conns().conn_count(), 6);
    let created = lab
        .events
        .iter()
        .filter(|e| matches!(e, ConnEvent::Created(_)))
        .count();
    assert_eq!(created, 6, "one Created event per new flow, for sync");
}

#[test]
fn nat_maps_the_port_both_ways_with_correct_checksums() {
    let mut lab = Lab::new(&[spec(
        8099,
        SchedulerKind::Wlc,
        &[(RS1, 80, ForwardMethod::Masquerade, 1)],
    )]);
    let (action, out) = lab.run(client_tcp(41_000, 8099, SYN, b""));
    assert!(
        matches!(
            action,
            Action::Handled {
                verdict: Verdict::Transmit { .. },
                ..
            }
        ),
        "{action:?}"
    );
    let (dmac, src, dst, sp, dp, _) = parse(&out);
    assert_eq!(dmac, RS1_MAC.0);
    assert_eq!(
        (src, dst, sp, dp),
        (CLIENT, RS1, 41_000, 80),
        "DNAT VIP:8099 → RIP:80"
    );

    // The real server's SYN-ACK comes back through the director.
    let reply = tcp(
        (RS1, 80),
        (CLIENT, 41_000),
        SYN | ACK,
        b"",
        (RS1_MAC, DIRECTOR_MAC),
    );
    let (action, out) = lab.run(reply);
    assert!(
        matches!(
            action,
            Action::Handled {
                verdict: Verdict::Transmit { .. },
                ..
            }
        ),
        "{action:?}"
    );
    let (dmac, src, dst, sp, dp, _) = parse(&out);
    assert_eq!(dmac, CLIENT_MAC.0);
    assert_eq!(
        (src, dst, sp, dp),
        (VIP, CLIENT, 8099, 41_000),
        "SNAT RIP:80 → VIP:8099"
    );

    let (_, out) = lab.run(client_tcp(41_000, 8099, ACK, b"hello"));
    assert_eq!(parse(&out).5, b"hello", "payload intact through NAT");
    let svc = lab.dp().services();
    let s = svc
        .get(Protocol::Tcp, SocketAddr::new(IpAddr::V4(VIP), 8099))
        .unwrap();
    let st = s.dests[0].stats.snapshot();
    assert_eq!(
        (st.in_pkts, st.out_pkts),
        (2, 1),
        "NAT counts both directions"
    );
    assert_eq!(s.stats.snapshot().out_pkts, 1);
}

#[test]
fn tun_prepends_an_outer_header_and_leaves_the_inner_packet_alone() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS2, 80, ForwardMethod::Tunnel, 1)],
    )]);
    let input = client_tcp(42_000, 80, SYN, b"");
    let (action, out) = lab.run(input.clone());
    assert!(
        matches!(
            action,
            Action::Handled {
                verdict: Verdict::Encapsulate(_),
                ..
            }
        ),
        "{action:?}"
    );
    let outer = etherparse::Ipv4HeaderSlice::from_slice(&out[14..])
        .unwrap()
        .to_header();
    assert_eq!(
        outer.protocol,
        etherparse::IpNumber::IPV4,
        "IP-in-IP (protocol 4)"
    );
    assert_eq!(
        Ipv4Addr::from(outer.source),
        DIP,
        "outer source: the director"
    );
    assert_eq!(
        Ipv4Addr::from(outer.destination),
        RS2,
        "outer destination: the real server"
    );
    assert_eq!(
        outer.header_checksum,
        outer.calc_header_checksum(),
        "outer checksum"
    );
    assert_eq!(usize::from(outer.total_len), out.len() - 14);
    assert_eq!(&out[34..], &input[14..], "inner packet untouched");
    assert_eq!(out[..6], RS2_MAC.0);
}

#[test]
fn mid_flow_packets_without_a_connection_are_dropped_and_counted() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    let (action, _) = lab.run(client_tcp(43_000, 80, ACK, b"data"));
    assert_eq!(
        action,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::NoConnection),
            egress: IfaceId(0)
        }
    );
    assert_eq!(lab.dp().drops().get(DropReason::NoConnection), 1);
    assert_eq!(
        lab.dp().conns().len(),
        0,
        "a mid-flow packet never creates a connection"
    );
}

#[test]
fn frames_that_are_not_ours_pass_and_malformed_ones_are_counted() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    // ARP who-has: for the ARP responder, not the dataplane.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC.0);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(lab.run(arp).0, Action::NotOurs);
    // VRRP (IP protocol 112): for the VRRP driver.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, DIRECTOR_MAC.0)
        .ipv4(DIP.octets(), [224, 0, 0, 18], 255)
        .udp(1, 1)
        .write(&mut f, &[0; 8])
        .unwrap();
    f[23] = 112; // the IP protocol byte: VRRP
    assert_eq!(lab.run(f).0, Action::NotOurs);
    // TCP to an address that is no VIP, not a NAT reply either.
    let other = tcp((CLIENT, 1), (DIP, 22), SYN, b"", (CLIENT_MAC, DIRECTOR_MAC));
    assert_eq!(lab.run(other).0, Action::NotOurs);
    assert_eq!(lab.dp().drops().total(), 0, "none of these is a drop");

    // A SYN to the VIP with a broken IP header checksum.
    let mut bad = client_tcp(44_000, 80, SYN, b"");
    bad[24] ^= 0xff;
    assert_eq!(
        lab.run(bad).0,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::IpChecksum),
            egress: IfaceId(0)
        }
    );
    // A TCP segment cut short.
    let mut short = client_tcp(44_001, 80, SYN, b"");
    short.truncate(14 + 20 + 10);
    let (action, _) = lab.run(short);
    assert!(
        matches!(
            action,
            Action::Handled {
                verdict: Verdict::Drop(_),
                ..
            }
        ),
        "{action:?}"
    );
    // A bad TCP checksum.
    let mut badsum = client_tcp(44_002, 80, SYN, b"x");
    let n = badsum.len();
    badsum[n - 1] ^= 0x55;
    assert_eq!(
        lab.run(badsum).0,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::L4Checksum),
            egress: IfaceId(0)
        }
    );
    assert_eq!(lab.dp().drops().total(), 3);
    assert_eq!(
        lab.dp().conns().len(),
        0,
        "no malformed frame created a connection"
    );
    // The service still works.
    let (action, _) = lab.run(client_tcp(44_003, 80, SYN, b""));
    assert!(matches!(
        action,
        Action::Handled {
            verdict: Verdict::Transmit { .. },
            ..
        }
    ));
}

#[test]
fn weight_zero_drains_new_flows_but_keeps_existing_ones() {
    use ForwardMethod::DirectRouting as Dr;
    let s = spec(
        80,
        SchedulerKind::Wrr,
        &[(RS1, 80, Dr, 1), (RS2, 80, Dr, 1)],
    );
    let mut lab = Lab::new(std::slice::from_ref(&s));
    let mut on = Vec::new();
    for cport in 45_000..45_004 {
        on.push(parse(&lab.run(client_tcp(cport, 80, SYN, b"")).1).0);
    }
    let mut quiesced = s.clone();
    quiesced.dests[0].weight = 0; // ipvsadm -e -w 0 for RS1
    lab.dp().apply(&[quiesced]).unwrap();
    for (i, cport) in (45_000..45_004).enumerate() {
        let (_, out) = lab.run(client_tcp(cport, 80, ACK, b""));
        assert_eq!(
            parse(&out).0,
            on[i],
            "an existing flow keeps its server after weight 0"
        );
    }
    for cport in 45_100..45_110 {
        let (_, out) = lab.run(client_tcp(cport, 80, SYN, b""));
        assert_eq!(
            parse(&out).0,
            RS2_MAC.0,
            "new flows avoid the quiesced server"
        );
    }
}

#[test]
fn persistence_pins_a_client_across_connections() {
    use ForwardMethod::DirectRouting as Dr;
    let mut s = spec(
        443,
        SchedulerKind::Rr,
        &[(RS1, 443, Dr, 1), (RS2, 443, Dr, 1)],
    );
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(360),
        netmask_prefix: 32,
    });
    let mut lab = Lab::new(&[s]);
    let first = parse(&lab.run(client_tcp(46_000, 443, SYN, b"")).1).0;
    for cport in 46_001..46_010 {
        let (_, out) = lab.run(client_tcp(cport, 443, SYN, b""));
        assert_eq!(
            parse(&out).0,
            first,
            "one client, one real server while persistent"
        );
    }
    assert_eq!(lab.dp().conns().template_count(), 1);
}

#[test]
fn unknown_next_hop_is_dropped_and_counted() {
    let far = Ipv4Addr::new(10, 9, 9, 9);
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(far, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    let (action, _) = lab.run(client_tcp(47_000, 80, SYN, b""));
    assert_eq!(
        action,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::NoNeighbour),
            egress: IfaceId(0)
        }
    );
    assert_eq!(lab.dp().drops().get(DropReason::NoNeighbour), 1);
}

#[test]
fn connections_expire_on_the_virtual_clock() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    lab.run(client_tcp(48_000, 80, SYN, b""));
    // SYN_RECV: 60 s (IPVS default). One millisecond before, still there.
    lab.now = lab.now + Duration::from_secs(60) - Duration::from_millis(1);
    let mut expired = 0;
    lab.dp()
        .conns()
        .expire(lab.now, 1 << 20, &mut |_| expired += 1);
    assert_eq!((expired, lab.dp().conns().len()), (0, 1));
    lab.now = lab.now + Duration::from_millis(1);
    lab.dp()
        .conns()
        .expire(lab.now, 1 << 20, &mut |_| expired += 1);
    assert_eq!(
        (expired, lab.dp().conns().len()),
        (1, 0),
        "gone exactly at 60 s"
    );
    let svc = lab.dp().services();
    let s = svc
        .get(Protocol::Tcp, SocketAddr::new(IpAddr::V4(VIP), 80))
        .unwrap();
    assert_eq!(
        s.dests[0].active_conns() + s.dests[0].inactive_conns(),
        0,
        "counters back to 0"
    );
}

#[test]
fn a_standby_node_forwards_nothing_and_keeps_its_table_untouched() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    lab.dp().set_active(false);
    let (action, _) = lab.run(client_tcp(49_000, 80, SYN, b""));
    assert_eq!(
        action,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::Standby),
            egress: IfaceId(0)
        }
    );
    assert_eq!(lab.dp().conns().len(), 0, "standby creates no connection");
    assert_eq!(lab.dp().drops().get(DropReason::Standby), 1);
    lab.dp().set_active(true);
    let (action, _) = lab.run(client_tcp(49_000, 80, SYN, b""));
    assert!(matches!(
        action,
        Action::Handled {
            verdict: Verdict::Transmit { .. },
            ..
        }
    ));
}

#[test]
fn a_draining_node_forwards_its_flows_but_starts_none() {
    let mut lab = Lab::new(&[spec(
        80,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::DirectRouting, 1)],
    )]);
    let (action, _) = lab.run(client_tcp(49_100, 80, SYN, b""));
    assert!(matches!(
        action,
        Action::Handled {
            verdict: Verdict::Transmit { .. },
            ..
        }
    ));
    // Mastership lost: stop creating, keep forwarding the table's flows.
    lab.dp().set_draining(true);
    lab.dp().set_active(false);
    assert!(lab.dp().is_draining());
    let (action, out) = lab.run(client_tcp(49_100, 80, ACK, b"GET /"));
    assert!(
        matches!(
            action,
            Action::Handled {
                verdict: Verdict::Transmit { .. },
                ..
            }
        ),
        "an existing flow goes on while draining: {action:?}"
    );
    assert_eq!(out[..6], RS1_MAC.0, "to the real server it had");
    let (action, _) = lab.run(client_tcp(49_101, 80, SYN, b""));
    assert_eq!(
        action,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::Standby),
            egress: IfaceId(0)
        },
        "a new flow is the new master's"
    );
    assert_eq!(lab.dp().conns().len(), 1, "draining creates no connection");
    // Drain over: plain standby.
    lab.dp().set_draining(false);
    let (action, _) = lab.run(client_tcp(49_100, 80, ACK, b"more"));
    assert_eq!(
        action,
        Action::Handled {
            verdict: Verdict::Drop(DropReason::Standby),
            egress: IfaceId(0)
        }
    );
    // Becoming active ends a drain: `is_draining` is a standby state.
    lab.dp().set_draining(true);
    lab.dp().set_active(true);
    assert!(!lab.dp().is_draining());
}

#[test]
fn two_nic_nat_sends_each_direction_out_of_its_own_interface() {
    // Classic LVS-NAT: clients on the outside NIC (0), real servers on the
    // inside NIC (1), each with its own MAC.
    const INSIDE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0xd1]);
    let mut cfg = DataplaneConfig::new(DIRECTOR_MAC, DIP);
    cfg.ifaces.push(Interface {
        mac: INSIDE_MAC,
        ip: Ipv4Addr::new(10, 1, 0, 1),
        mtu: 1500,
    });
    let dp = Arc::new(Dataplane::new(cfg));
    dp.apply(&[spec(
        8099,
        SchedulerKind::Rr,
        &[(RS1, 80, ForwardMethod::Masquerade, 1)],
    )])
    .unwrap();
    dp.set_active(true);
    let mut neigh = StaticNeighbours::default();
    neigh.hosts.insert(
        IpAddr::V4(RS1),
        NextHop {
            iface: IfaceId(1),
            mac: RS1_MAC,
        },
    );
    neigh.hosts.insert(
        IpAddr::V4(CLIENT),
        NextHop {
            iface: IfaceId(0),
            mac: CLIENT_MAC,
        },
    );
    let mut w = Worker::new(dp, 3).unwrap();
    let mut f = client_tcp(50_000, 8099, SYN, b"");
    let a = w.process(
        lab_now(),
        IfaceId(0),
        &mut f,
        L4Csum::Verify,
        &neigh,
        &mut |_| {},
    );
    let Action::Handled {
        verdict: Verdict::Transmit { len },
        egress,
    } = a
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        egress,
        IfaceId(1),
        "to the real server: out of the inside NIC"
    );
    assert_eq!(f[6..12], INSIDE_MAC.0, "source MAC: the inside NIC's");
    assert_eq!(parse(&f[..len]).0, RS1_MAC.0);
    let mut r = tcp(
        (RS1, 80),
        (CLIENT, 50_000),
        SYN | ACK,
        b"",
        (RS1_MAC, INSIDE_MAC),
    );
    let a = w.process(
        lab_now(),
        IfaceId(1),
        &mut r,
        L4Csum::Verify,
        &neigh,
        &mut |_| {},
    );
    let Action::Handled {
        verdict: Verdict::Transmit { len },
        egress,
    } = a
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        egress,
        IfaceId(0),
        "back to the client: out of the outside NIC"
    );
    assert_eq!(r[6..12], DIRECTOR_MAC.0);
    let (dmac, src, _, sp, _, _) = parse(&r[..len]);
    assert_eq!((dmac, src, sp), (CLIENT_MAC.0, VIP, 8099));
}

fn lab_now() -> Millis {
    Millis(1_000)
}
