//! DR, TUN and NAT as a table: input frame → expected output frame and
//! verdict. Inputs and expected outputs are both built with etherparse's
//! `PacketBuilder` (which computes every length and checksum itself), and
//! every output is re-parsed with etherparse and its checksums recomputed
//! there — the code under test never checks its own checksums.

mod rewrite_util;

use std::net::{IpAddr, SocketAddr};

use director::forward::{
    DropReason, L4Csum, MacPair, OuterTtl, TunParams, Verdict, classify, dr, nat, tun,
};
use etherparse::{
    EtherType, Ethernet2Header, IpHeaders, IpNumber, Ipv4Header, NetSlice, PacketBuilder,
    SlicedPacket, TransportSlice, icmpv4,
};
use proptest::prelude::*;
use rewrite_util::*;

#[derive(Debug, Clone, Copy)]
enum Method {
    Dr,
    Tun { mtu: u16, ttl: OuterTtl, ip_id: u16 },
    NatIn(SocketAddr),
    NatOut(SocketAddr),
}

#[derive(Debug)]
enum Expect {
    /// Forwarded; the output frame.
    Frame(Vec<u8>),
    /// Answered with this ICMP frame; counted under the reason.
    Icmp(Vec<u8>, DropReason),
    /// Dropped.
    Drop(DropReason),
}

const TO_RS: MacPair = MacPair {
    src: director::forward::MacAddr(DIRECTOR_MAC),
    dst: director::forward::MacAddr(RS_MAC),
};
const TO_ROUTER: MacPair = MacPair {
    src: director::forward::MacAddr(DIRECTOR_MAC),
    dst: director::forward::MacAddr(ROUTER_MAC),
};

fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(ip), port)
}

/// Classifies `input`, applies `method`, returns the verdict and the bytes
/// that would go on the wire (output frame or ICMP reply).
fn run(input: &[u8], method: Method) -> (Verdict, Option<Vec<u8>>) {
    let p = classify(input, L4Csum::Verify).expect("test input classifies");
    let mut f = input.to_vec();
    let v = match method {
        Method::Dr => dr::rewrite(&mut f, &p, TO_RS),
        Method::Tun { mtu, ttl, ip_id } => {
            let params = TunParams {
                local: DIP.into(),
                macs: TO_RS,
                mtu,
                ttl,
            };
            tun::encapsulate(&mut f, &p, IpAddr::from(RIP), &params, ip_id)
        }
        Method::NatIn(real) => nat::rewrite_in(&mut f, &p, real, TO_RS),
        Method::NatOut(virt) => nat::rewrite_out(&mut f, &p, virt, TO_ROUTER),
    };
    let out = match &v {
        Verdict::Transmit { len } => Some(f[..*len].to_vec()),
        Verdict::Encapsulate(h) => {
            // Two-iovec form and the single-buffer helper agree.
            let mut two = h.prefix().to_vec();
            two.extend_from_slice(&f[h.inner()]);
            let mut buf = vec![0u8; 2048];
            let n = h.write_to(&f, &mut buf).unwrap();
            assert_eq!(&buf[..n], &two[..]);
            assert_eq!(h.write_to(&f, &mut [0u8; 33]), None);
            Some(two)
        }
        Verdict::Icmp { reply, .. } => Some(reply.as_bytes().to_vec()),
        Verdict::Drop(_) => None,
    };
    (v, out)
}

/// The expected TUN output, built with etherparse: Ethernet to the real
/// server, an outer header written (and checksummed) by etherparse, then
/// the inner IP packet byte for byte.
fn expected_tun(input: &[u8], ttl: u8, ip_id: u16, df: bool, tos: u8) -> Vec<u8> {
    let inner_len = u16::from_be_bytes([input[16], input[17]]);
    let inner = &input[14..14 + usize::from(inner_len)];
    let mut out = Vec::new();
    Ethernet2Header {
        source: DIRECTOR_MAC,
        destination: RS_MAC,
        ether_type: EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    let mut h = Ipv4Header::new(inner_len, ttl, IpNumber::IPV4, DIP, RIP).unwrap();
    h.identification = ip_id;
    h.dont_fragment = df;
    h.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
    h.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
    h.write(&mut out).unwrap();
    out.extend_from_slice(inner);
    out
}

/// The expected ICMP error about `input`, built with etherparse: from
/// `from` to the original source, back to the router's MAC, quoting the
/// original IP header + 8 bytes.
fn expected_icmp(input: &[u8], from: [u8; 4], ty: etherparse::Icmpv4Type, ip_id: u16) -> Vec<u8> {
    let ihl = usize::from(input[14] & 0x0f) * 4;
    let quote = &input[14..14 + ihl + 8];
    let src: [u8; 4] = input[26..30].try_into().unwrap();
    let mut h = Ipv4Header::new(0, 64, IpNumber::ICMP, from, src).unwrap();
    h.identification = ip_id;
    h.dont_fragment = false;
    // Linux: (tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL.
    let tos = (input[15] & 0x1e) | 0xc0;
    h.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
    h.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(DIRECTOR_MAC, ROUTER_MAC)
        .ip(IpHeaders::Ipv4(h, Default::default()))
        .icmpv4(ty)
        .write(&mut out, quote)
        .unwrap();
    out
}

fn frag_needed(mtu: u16) -> etherparse::Icmpv4Type {
    etherparse::Icmpv4Type::DestinationUnreachable(
        icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
    )
}

fn time_exceeded() -> etherparse::Icmpv4Type {
    etherparse::Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit)
}

/// NAT-in expectation: the same packet from etherparse with destination
/// RIP:`rport`, TTL − 1, MACs director → real server.
fn nat_in_expect(spec: &Spec, rport: u16) -> Vec<u8> {
    let mut e = spec.clone();
    e.src_mac = DIRECTOR_MAC;
    e.dst_mac = RS_MAC;
    e.dst = RIP;
    e.set_dport(rport);
    e.ttl -= 1;
    e.build()
}

/// A reply from RIP:`rport` to the client, arriving from the real server.
fn reply(spec: &Spec, rport: u16) -> Spec {
    let mut r = spec.clone();
    r.src_mac = RS_MAC;
    r.dst_mac = DIRECTOR_MAC;
    r.src = RIP;
    r.dst = CLIENT;
    r.ttl = 64;
    let (cport, _) = ports(spec);
    r.set_sport(rport);
    r.set_dport(cport);
    r
}

fn ports(spec: &Spec) -> (u16, u16) {
    match spec.l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
    }
}

/// NAT-out expectation: source VIP:`vport`, TTL − 1, MACs director →
/// router.
fn nat_out_expect(reply: &Spec, vport: u16) -> Vec<u8> {
    let mut e = reply.clone();
    e.src_mac = DIRECTOR_MAC;
    e.dst_mac = ROUTER_MAC;
    e.src = VIP;
    e.set_sport(vport);
    e.ttl -= 1;
    e.build()
}

fn dr_expect(spec: &Spec) -> Vec<u8> {
    let mut e = spec.clone();
    e.src_mac = DIRECTOR_MAC;
    e.dst_mac = RS_MAC;
    e.build()
}

fn cases() -> Vec<(&'static str, Vec<u8>, Method, Expect)> {
    let tun = |mtu| Method::Tun {
        mtu,
        ttl: OuterTtl::default(),
        ip_id: 0x4242,
    };
    let syn = Spec::syn(80);
    let data = Spec::data(80, 10);
    let big = Spec::data(80, 1460); // 1500-byte IP packet
    let udp = Spec::udp(53, 30);
    let mapped = Spec::data(8099, 100);
    let mut nodf = Spec::data(80, 1460);
    nodf.df = false;
    let mut low_ttl = Spec::syn(80);
    low_ttl.ttl = 1;
    let mut ttl2 = Spec::syn(80);
    ttl2.ttl = 2;
    let mut ect = Spec::data(80, 10);
    ect.tos = 0xb8 | 0x02; // EF + ECT(0): copied to the outer header
    let mut ce = Spec::data(80, 10);
    ce.tos = 0x28 | 0x03; // AF11 + CE: outer gets ECT(0) (RFC 6040)
    let mut udp_nocsum = Spec::udp(53, 30);
    udp_nocsum.payload = vec![0; 30];
    let udp_nocsum_frame = {
        let mut f = udp_nocsum.build();
        f[40] = 0;
        f[41] = 0;
        f
    };
    let udp_nocsum_expect = {
        let mut f = nat_in_expect(&udp_nocsum, 5353);
        f[40] = 0;
        f[41] = 0;
        f
    };
    let reply_syn = reply(&syn, 80);
    let reply_mapped = reply(&mapped, 80);
    let reply_udp = reply(&udp, 53);
    let mut reply_low = reply(&syn, 80);
    reply_low.ttl = 1;

    vec![
        (
            "DR TCP SYN",
            syn.build(),
            Method::Dr,
            Expect::Frame(dr_expect(&syn)),
        ),
        (
            "DR TCP data",
            data.build(),
            Method::Dr,
            Expect::Frame(dr_expect(&data)),
        ),
        (
            "DR UDP",
            udp.build(),
            Method::Dr,
            Expect::Frame(dr_expect(&udp)),
        ),
        (
            "DR 1514-byte frame",
            big.build(),
            Method::Dr,
            Expect::Frame(dr_expect(&big)),
        ),
        (
            "DR TTL 1 untouched",
            low_ttl.build(),
            Method::Dr,
            Expect::Frame(dr_expect(&low_ttl)),
        ),
        (
            "TUN TCP SYN",
            syn.build(),
            tun(1500),
            Expect::Frame(expected_tun(&syn.build(), 64, 0x4242, true, 0)),
        ),
        (
            "TUN UDP",
            udp.build(),
            tun(1500),
            Expect::Frame(expected_tun(&udp.build(), 64, 0x4242, true, 0)),
        ),
        (
            "TUN DSCP+ECT(0) copied",
            ect.build(),
            tun(1500),
            Expect::Frame(expected_tun(&ect.build(), 64, 0x4242, true, 0xba)),
        ),
        (
            "TUN CE -> ECT(0)",
            ce.build(),
            tun(1500),
            Expect::Frame(expected_tun(&ce.build(), 64, 0x4242, true, 0x2a)),
        ),
        (
            "TUN inherit TTL, no DF",
            {
                let mut s = Spec::data(80, 10);
                s.df = false;
                s.build()
            },
            Method::Tun {
                mtu: 1500,
                ttl: OuterTtl::Inherit,
                ip_id: 7,
            },
            Expect::Frame(expected_tun(
                &{
                    let mut s = Spec::data(80, 10);
                    s.df = false;
                    s.build()
                },
                61,
                7,
                false,
                0,
            )),
        ),
        (
            "TUN exactly MTU",
            Spec::data(80, 1440).build(),
            tun(1500),
            Expect::Frame(expected_tun(
                &Spec::data(80, 1440).build(),
                64,
                0x4242,
                true,
                0,
            )),
        ),
        (
            "TUN frag needed (DF)",
            big.build(),
            tun(1500),
            Expect::Icmp(
                expected_icmp(&big.build(), VIP, frag_needed(1480), 0x4242),
                DropReason::FragNeeded,
            ),
        ),
        (
            "TUN frag needed, MTU 1400",
            Spec::data(80, 1400).build(),
            tun(1400),
            Expect::Icmp(
                expected_icmp(
                    &Spec::data(80, 1400).build(),
                    VIP,
                    frag_needed(1380),
                    0x4242,
                ),
                DropReason::FragNeeded,
            ),
        ),
        (
            "TUN too big, no DF",
            nodf.build(),
            tun(1500),
            Expect::Drop(DropReason::TooBigNoDf),
        ),
        (
            "NAT-in TCP SYN",
            syn.build(),
            Method::NatIn(sa(RIP, 80)),
            Expect::Frame(nat_in_expect(&syn, 80)),
        ),
        (
            "NAT-in TCP data",
            data.build(),
            Method::NatIn(sa(RIP, 80)),
            Expect::Frame(nat_in_expect(&data, 80)),
        ),
        (
            "NAT-in port map 8099 -> 80",
            mapped.build(),
            Method::NatIn(sa(RIP, 80)),
            Expect::Frame(nat_in_expect(&mapped, 80)),
        ),
        (
            "NAT-in 1514-byte frame",
            big.build(),
            Method::NatIn(sa(RIP, 8080)),
            Expect::Frame(nat_in_expect(&big, 8080)),
        ),
        (
            "NAT-in UDP",
            udp.build(),
            Method::NatIn(sa(RIP, 5353)),
            Expect::Frame(nat_in_expect(&udp, 5353)),
        ),
        (
            "NAT-in UDP checksum 0 stays 0",
            udp_nocsum_frame,
            Method::NatIn(sa(RIP, 5353)),
            Expect::Frame(udp_nocsum_expect),
        ),
        (
            "NAT-in TTL 2 -> 1",
            ttl2.build(),
            Method::NatIn(sa(RIP, 80)),
            Expect::Frame(nat_in_expect(&ttl2, 80)),
        ),
        (
            "NAT-in TTL 1: time exceeded",
            low_ttl.build(),
            Method::NatIn(sa(RIP, 80)),
            Expect::Icmp(
                expected_icmp(&low_ttl.build(), VIP, time_exceeded(), 0),
                DropReason::TtlExceeded,
            ),
        ),
        (
            "NAT-in IPv6 target",
            syn.build(),
            Method::NatIn("[2001:db8::21]:80".parse().unwrap()),
            Expect::Drop(DropReason::FamilyMismatch),
        ),
        (
            "NAT-out TCP SYN-ACK",
            reply_syn.build(),
            Method::NatOut(sa(VIP, 80)),
            Expect::Frame(nat_out_expect(&reply_syn, 80)),
        ),
        (
            "NAT-out port map 80 -> 8099",
            reply_mapped.build(),
            Method::NatOut(sa(VIP, 8099)),
            Expect::Frame(nat_out_expect(&reply_mapped, 8099)),
        ),
        (
            "NAT-out UDP",
            reply_udp.build(),
            Method::NatOut(sa(VIP, 53)),
            Expect::Frame(nat_out_expect(&reply_udp, 53)),
        ),
        (
            "NAT-out TTL 1",
            reply_low.build(),
            Method::NatOut(sa(VIP, 80)),
            Expect::Drop(DropReason::TtlExceeded),
        ),
    ]
}

#[test]
fn table() {
    for (name, input, method, expect) in cases() {
        let (v, out) = run(&input, method);
        match expect {
            Expect::Frame(want) => {
                assert!(
                    matches!(v, Verdict::Transmit { .. } | Verdict::Encapsulate(_)),
                    "{name}: {v:?}"
                );
                let out = out.unwrap();
                assert_eq!(hex(&out), hex(&want), "{name}");
                let parsed = assert_checksums(&out);
                if let Verdict::Encapsulate(_) = v {
                    // The inner packet is untouched and still verifies.
                    let Some(NetSlice::Ipv4(outer)) = &parsed.net else {
                        panic!()
                    };
                    assert_eq!(outer.header().protocol(), IpNumber::IPV4);
                    let mut inner_frame = input[..14].to_vec();
                    inner_frame.extend_from_slice(outer.payload().payload);
                    assert_checksums(&inner_frame);
                    assert_eq!(&inner_frame[..], &input[..inner_frame.len()]);
                }
            }
            Expect::Icmp(want, reason) => {
                assert_eq!(v.drop_reason(), Some(reason), "{name}");
                assert!(matches!(v, Verdict::Icmp { .. }), "{name}: {v:?}");
                let out = out.unwrap();
                assert_eq!(hex(&out), hex(&want), "{name}");
                let parsed = assert_checksums(&out);
                assert!(matches!(parsed.transport, Some(TransportSlice::Icmpv4(_))));
            }
            Expect::Drop(reason) => assert_eq!(v, Verdict::Drop(reason), "{name}"),
        }
    }
}

/// Literal fixtures, so that a regression shows byte by byte. The input
/// is a client SYN 203.0.113.7:40000 → 192.0.2.10:8099 (TTL 61, ID
/// 0x1c46, DF) from the router's MAC to the director's.
const SYN_8099: &str = "
    0200000000d1 0200000000fe 0800
    4500 0028 1c46 4000 3d06 2378 cb00 7107 c000 020a
    9c40 1fa3 0102 0304 0000 0000 5002 faf0 f6f5 0000";

/// The real server's SYN-ACK 10.0.0.21:80 → 203.0.113.7:40000 (TTL 64).
const SYNACK_FROM_RS: &str = "
    0200000000d1 020000000021 0800
    4500 0028 1c46 4000 4006 d86d 0a00 0015 cb00 7107
    0050 9c40 0a0b 0c0d 0102 0305 5012 faf0 b815 0000";

/// The ICMP answer to SYN_8099 when the tunnel MTU is 40.
const ICMP_FRAG_NEEDED: &str = "
    0200000000fe 0200000000d1 0800
    45c0 0038 4242 0000 4001 39b1 c000 020a cb00 7107
    0304 3cfe 0000 0014
    4500 0028 1c46 4000 3d06 2378 cb00 7107 c000 020a
    9c40 1fa3 0102 0304";

fn check_fixture(name: &str, input: &str, method: Method, want: &str) {
    let (_, out) = run(&unhex(input), method);
    let out = out.unwrap();
    assert_checksums(&out);
    assert_eq!(hex(&out), hex(&unhex(want)), "{name}");
}

#[test]
fn hex_fixtures() {
    // The fixtures are what etherparse builds.
    assert_eq!(hex(&unhex(SYN_8099)), hex(&Spec::syn(8099).build()));
    let mut synack = reply(&Spec::syn(8099), 80);
    synack.l4 = L4::Tcp {
        sport: 80,
        dport: 40000,
        seq: 0x0a0b_0c0d,
        ack: Some(0x0102_0305),
        syn: true,
        fin: false,
        psh: false,
    };
    assert_eq!(hex(&unhex(SYNACK_FROM_RS)), hex(&synack.build()));

    // DR: only the two MACs change.
    check_fixture(
        "DR",
        SYN_8099,
        Method::Dr,
        "
        020000000021 0200000000d1 0800
        4500 0028 1c46 4000 3d06 2378 cb00 7107 c000 020a
        9c40 1fa3 0102 0304 0000 0000 5002 faf0 f6f5 0000",
    );

    // NAT-in to 10.0.0.21:80: TTL 3d → 3c, daddr c000020a → 0a000015,
    // dport 1fa3 → 0050; IP checksum 2378 → dc6d, TCP f6f5 → ce3e.
    check_fixture(
        "NAT-in",
        SYN_8099,
        Method::NatIn(sa(RIP, 80)),
        "
        020000000021 0200000000d1 0800
        4500 0028 1c46 4000 3c06 dc6d cb00 7107 0a00 0015
        9c40 0050 0102 0304 0000 0000 5002 faf0 ce3e 0000",
    );

    // NAT-out from 10.0.0.21:80 to VIP:8099: TTL 40 → 3f, saddr
    // 0a000015 → c000020a, sport 0050 → 1fa3; MACs towards the router.
    check_fixture(
        "NAT-out",
        SYNACK_FROM_RS,
        Method::NatOut(sa(VIP, 8099)),
        "
        0200000000fe 0200000000d1 0800
        4500 0028 1c46 4000 3f06 2178 c000 020a cb00 7107
        1fa3 9c40 0a0b 0c0d 0102 0305 5012 faf0 e0cc 0000",
    );

    // TUN: a 34-byte prefix (outer 10.0.0.1 → 10.0.0.21, proto 4, TTL 64,
    // ID 4242, DF copied, length 0x28 + 20 = 0x3c), then the inner packet
    // exactly as it arrived.
    check_fixture(
        "TUN",
        SYN_8099,
        Method::Tun {
            mtu: 1500,
            ttl: OuterTtl::default(),
            ip_id: 0x4242,
        },
        "
        020000000021 0200000000d1 0800
        4500 003c 4242 4000 4004 e466 0a00 0001 0a00 0015
        4500 0028 1c46 4000 3d06 2378 cb00 7107 c000 020a
        9c40 1fa3 0102 0304 0000 0000 5002 faf0 f6f5 0000",
    );

    // TUN with MTU 40 (< 40 + 20): ICMP 3/4 from the VIP to the client,
    // next-hop MTU 20, quoting the IP header + 8 bytes; TOS c0, TTL 64.
    check_fixture(
        "TUN frag needed",
        SYN_8099,
        Method::Tun {
            mtu: 40,
            ttl: OuterTtl::default(),
            ip_id: 0x4242,
        },
        ICMP_FRAG_NEEDED,
    );
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
        2u8..=255,
        any::<bool>(),
        any::<u8>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..1460),
        any::<u32>(),
    )
        .prop_map(|(client, cport, vport, ttl, df, tos, tcp, payload, seq)| {
            let mut s = if tcp {
                Spec::data(vport, 0)
            } else {
                Spec::udp(vport, 0)
            };
            s.src = client;
            s.set_sport(cport);
            s.ttl = ttl;
            s.df = df;
            s.tos = tos;
            s.payload = payload;
            if let L4::Tcp { seq: s0, .. } = &mut s.l4 {
                *s0 = seq;
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// NAT in and out for random packets and random targets: the output is
    /// byte-for-byte what etherparse builds for the rewritten packet (so
    /// every incrementally updated checksum equals a full recomputation).
    #[test]
    fn nat_matches_etherparse(spec in arb_spec(), rip: [u8; 4], rport: u16, vip: [u8; 4]) {
        let mut spec = spec;
        spec.dst = vip;
        let input = spec.build();
        let (_, out) = run(&input, Method::NatIn(sa(rip, rport)));
        let mut e = spec.clone();
        e.src_mac = DIRECTOR_MAC;
        e.dst_mac = RS_MAC;
        e.dst = rip;
        e.set_dport(rport);
        e.ttl -= 1;
        prop_assert_eq!(hex(&out.unwrap()), hex(&e.build()));

        let (_, vport) = ports(&spec);
        let mut r = reply(&spec, rport);
        r.src = rip;
        r.ttl = spec.ttl;
        let (_, out) = run(&r.build(), Method::NatOut(sa(vip, vport)));
        let mut e = r.clone();
        e.src_mac = DIRECTOR_MAC;
        e.dst_mac = ROUTER_MAC;
        e.src = vip;
        e.set_sport(vport);
        e.ttl -= 1;
        prop_assert_eq!(hex(&out.unwrap()), hex(&e.build()));
    }

    /// TUN for random packets and MTUs: encapsulated exactly when it fits,
    /// else ICMP (DF) or drop (no DF); outputs verify with etherparse.
    #[test]
    fn tun_matches_etherparse(spec in arb_spec(), mtu in 68u16..1600, ip_id: u16) {
        let input = spec.build();
        let (v, out) = run(&input, Method::Tun { mtu, ttl: OuterTtl::Fixed(64), ip_id });
        let inner_len = input.len() - 14;
        if inner_len + 20 <= usize::from(mtu) {
            let tos = if spec.tos & 3 == 3 { (spec.tos & !3) | 2 } else { spec.tos };
            prop_assert_eq!(hex(&out.unwrap()), hex(&expected_tun(&input, 64, ip_id, spec.df, tos)));
        } else if spec.df {
            prop_assert_eq!(v.drop_reason(), Some(DropReason::FragNeeded));
            let client = std::net::Ipv4Addr::from(spec.src);
            if client.is_multicast() || client.is_broadcast() || client.is_unspecified() {
                // RFC 1122 §3.2.2: no ICMP error to a non-unicast source.
                prop_assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
                return Ok(());
            }
            let out = out.unwrap();
            prop_assert_eq!(hex(&out), hex(&expected_icmp(&input, spec.dst, frag_needed(mtu - 20), ip_id)));
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            prop_assert!(matches!(p.transport, Some(TransportSlice::Icmpv4(_))));
        } else {
            prop_assert_eq!(v, Verdict::Drop(DropReason::TooBigNoDf));
        }
    }
}
