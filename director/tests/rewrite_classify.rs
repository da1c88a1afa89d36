//! Classification: one row per drop reason (input frame → reason), the
//! accepted cases (TCP SYN, TCP data, UDP, Ethernet padding, UDP without
//! checksum, CHECKSUM_PARTIAL), and proptests that no input panics.

mod rewrite_util;

use std::net::{IpAddr, Ipv4Addr};

use director::Protocol;
use director::forward::{
    DropCounters, DropReason, L4Csum, MacPair, TcpFlags, Verdict, classify,
    complete_partial_checksum, dr, nat, tun,
};
use proptest::prelude::*;
use rewrite_util::*;

/// A valid frame with one thing changed by `mutate`.
fn mutated(spec: Spec, mutate: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = spec.build();
    mutate(&mut f);
    f
}

/// Sets the IP total length and truncates/pads the frame to match.
fn set_ip_len(f: &mut Vec<u8>, len: usize) {
    f.truncate(14 + len);
    f[16..18].copy_from_slice(&(len as u16).to_be_bytes());
    fix_ip_checksum(f);
}

#[test]
fn each_drop_reason() {
    use DropReason::*;
    let tcp = || Spec::data(80, 10);
    let udp = || Spec::udp(53, 10);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], FrameTooShort),
        ("13 bytes", vec![0; 13], FrameTooShort),
        (
            "IPv4 ethertype, 33 bytes",
            mutated(tcp(), |f| f.truncate(33)),
            FrameTooShort,
        ),
        (
            "IPv6 ethertype",
            mutated(tcp(), |f| f[12..14].copy_from_slice(&[0x86, 0xdd])),
            NotIpv4,
        ),
        (
            "ARP ethertype",
            mutated(tcp(), |f| f[12..14].copy_from_slice(&[0x08, 0x06])),
            NotIpv4,
        ),
        (
            "802.1Q tag",
            mutated(tcp(), |f| f[12..14].copy_from_slice(&[0x81, 0x00])),
            NotIpv4,
        ),
        (
            "version 6",
            mutated(tcp(), |f| f[14] = 0x65),
            IpHeaderInvalid,
        ),
        ("IHL 4", mutated(tcp(), |f| f[14] = 0x44), IpHeaderInvalid),
        ("IHL 0", mutated(tcp(), |f| f[14] = 0x40), IpHeaderInvalid),
        (
            "frame truncated below total length",
            mutated(tcp(), |f| {
                f.pop();
            }),
            IpLengthInvalid,
        ),
        (
            "total length below IHL",
            mutated(tcp(), |f| f[16..18].copy_from_slice(&[0, 19])),
            IpLengthInvalid,
        ),
        (
            "IHL 15 past total length",
            mutated(Spec::syn(80), |f| {
                f[14] = 0x4f;
                f.truncate(14 + 40);
                f[16..18].copy_from_slice(&[0, 40]);
            }),
            IpLengthInvalid,
        ),
        (
            "header checksum",
            mutated(tcp(), |f| f[25] ^= 0x01),
            IpChecksum,
        ),
        (
            "TTL changed, checksum not",
            mutated(tcp(), |f| f[22] -= 1),
            IpChecksum,
        ),
        (
            "MF set",
            mutated(tcp(), |f| {
                f[20] |= 0x20;
                fix_ip_checksum(f)
            }),
            Fragment,
        ),
        (
            "offset 1",
            mutated(tcp(), |f| {
                f[21] = 1;
                fix_ip_checksum(f)
            }),
            Fragment,
        ),
        (
            "offset 8191, DF",
            mutated(tcp(), |f| {
                f[20] = 0x5f;
                f[21] = 0xff;
                fix_ip_checksum(f)
            }),
            Fragment,
        ),
        ("ICMP echo", icmp_echo(), UnsupportedProtocol),
        (
            "GRE",
            mutated(tcp(), |f| {
                f[23] = 47;
                fix_ip_checksum(f)
            }),
            UnsupportedProtocol,
        ),
        (
            "IPIP",
            mutated(tcp(), |f| {
                f[23] = 4;
                fix_ip_checksum(f)
            }),
            UnsupportedProtocol,
        ),
        (
            "TCP header 19 bytes",
            mutated(Spec::syn(80), |f| set_ip_len(f, 20 + 19)),
            L4Truncated,
        ),
        (
            "UDP header 7 bytes",
            mutated(Spec::udp(53, 0), |f| set_ip_len(f, 20 + 7)),
            L4Truncated,
        ),
        (
            "TCP data offset 4",
            mutated(tcp(), |f| f[46] = 0x40 | (f[46] & 0x0f)),
            TcpDataOffsetInvalid,
        ),
        (
            "TCP data offset past payload",
            mutated(Spec::syn(80), |f| f[46] = 0xf0),
            TcpDataOffsetInvalid,
        ),
        (
            "UDP length 7",
            mutated(udp(), |f| f[38..40].copy_from_slice(&[0, 7])),
            UdpLengthInvalid,
        ),
        (
            "UDP length past IP payload",
            mutated(udp(), |f| f[38..40].copy_from_slice(&[0, 19])),
            UdpLengthInvalid,
        ),
        (
            "TCP payload byte flipped",
            mutated(tcp(), |f| *f.last_mut().unwrap() ^= 0x80),
            L4Checksum,
        ),
        (
            "TCP checksum field",
            mutated(tcp(), |f| f[51] ^= 0x01),
            L4Checksum,
        ),
        (
            "UDP payload byte flipped",
            mutated(udp(), |f| *f.last_mut().unwrap() ^= 0x80),
            L4Checksum,
        ),
        (
            "UDP checksum 0xffff, computed not 0",
            mutated(udp(), |f| f[40..42].copy_from_slice(&[0xff, 0xff])),
            L4Checksum,
        ),
    ];
    let counters = DropCounters::new();
    for (name, frame, reason) in &cases {
        let got = classify(frame, L4Csum::Verify);
        assert_eq!(got, Err(*reason), "{name}: {}", hex(frame));
        counters.count(*reason);
    }
    // Every packet-level reason has at least one row.
    for r in [
        FrameTooShort,
        NotIpv4,
        IpHeaderInvalid,
        IpLengthInvalid,
        IpChecksum,
        Fragment,
        UnsupportedProtocol,
        L4Truncated,
        TcpDataOffsetInvalid,
        UdpLengthInvalid,
        L4Checksum,
    ] {
        assert!(counters.get(r) > 0, "no case for {}", r.as_str());
    }
    assert_eq!(counters.total(), cases.len() as u64);
}

fn icmp_echo() -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(ROUTER_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

#[test]
fn checksum_errors_pass_with_skip_and_partial() {
    let f = mutated(Spec::data(80, 10), |f| *f.last_mut().unwrap() ^= 0x80);
    assert!(classify(&f, L4Csum::Skip).is_ok());
    assert!(classify(&f, L4Csum::Partial).is_ok());
    // The IP header checksum is always verified.
    let f = mutated(Spec::data(80, 10), |f| f[25] ^= 1);
    assert_eq!(classify(&f, L4Csum::Skip), Err(DropReason::IpChecksum));
}

#[test]
fn accepted_tcp_syn_data_and_udp() {
    let p = classify(&Spec::syn(80).build(), L4Csum::Verify).unwrap();
    assert_eq!(p.protocol, Protocol::Tcp);
    assert_eq!(p.src, IpAddr::V4(Ipv4Addr::from(CLIENT)));
    assert_eq!(p.dst, IpAddr::V4(Ipv4Addr::from(VIP)));
    assert_eq!((p.src_port, p.dst_port), (40000, 80));
    assert_eq!(p.tcp_flags, TcpFlags::SYN);
    assert!(p.tcp_flags.syn() && !p.tcp_flags.ack());
    assert_eq!(
        (p.l3_offset, p.l4_offset, p.ip_len, p.l4_len),
        (14, 34, 40, 20)
    );
    assert!(p.df);
    assert_eq!(p.ttl, 61);
    assert_eq!(p.dst_addr().to_string(), "192.0.2.10:80");
    assert_eq!(format!("{:?}", p.tcp_flags), "SYN");

    let p = classify(&Spec::data(8099, 100).build(), L4Csum::Verify).unwrap();
    assert_eq!(p.tcp_flags, TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!(format!("{:?}", p.tcp_flags), "ACK|PSH");
    assert_eq!((p.ip_len, p.l4_len), (140, 120));

    let p = classify(&Spec::udp(53, 30).build(), L4Csum::Verify).unwrap();
    assert_eq!(p.protocol, Protocol::Udp);
    assert_eq!((p.src_port, p.dst_port, p.l4_len), (5353, 53, 38));
    assert_eq!(p.tcp_flags, TcpFlags(0));
}

#[test]
fn udp_checksum_zero_means_none() {
    let f = mutated(Spec::udp(53, 10), |f| f[40..42].copy_from_slice(&[0, 0]));
    assert!(classify(&f, L4Csum::Verify).is_ok());
}

#[test]
fn udp_length_shorter_than_ip_payload_is_accepted() {
    // RFC 768 length below the IP payload: Linux trims the rest; we ignore
    // it too (the checksum covers only the UDP length).
    let mut spec = Spec::udp(53, 4);
    spec.payload.clear();
    let mut f = spec.build(); // UDP length 8, checksum over the header
    f.extend_from_slice(&[1, 2, 3, 4]);
    let l = 32u16;
    f[16..18].copy_from_slice(&l.to_be_bytes());
    fix_ip_checksum(&mut f);
    let p = classify(&f, L4Csum::Verify).unwrap();
    assert_eq!((p.ip_len, p.l4_len), (32, 8));
}

/// A 60-byte minimum Ethernet frame carrying a short UDP datagram: the
/// 14 bytes after the IP total length are padding, not part of the packet.
#[test]
fn ethernet_padding_is_ignored() {
    let unpadded = Spec::udp(53, 4).build();
    assert_eq!(unpadded.len(), 46);
    for pad_byte in [0x00, 0xa5] {
        let mut f = unpadded.clone();
        f.resize(60, pad_byte);
        let p = classify(&f, L4Csum::Verify).unwrap();
        assert_eq!((p.ip_len, p.l3_end()), (32, 46));

        // NAT keeps the frame length (padding included) and fixes sums.
        let mut out = f.clone();
        let macs = MacPair {
            src: mac(DIRECTOR_MAC),
            dst: mac(RS_MAC),
        };
        let v = nat::rewrite_in(&mut out, &p, "10.0.0.21:53".parse().unwrap(), macs);
        assert_eq!(v, Verdict::Transmit { len: 60 });
        assert_checksums(&out[..46]);
        assert_eq!(out[46..], f[46..], "padding untouched");

        // TUN carries the IP packet only, without the padding.
        let mut inp = f.clone();
        let params = tun::TunParams::new(DIP.into(), macs);
        let Verdict::Encapsulate(h) = tun::encapsulate(&mut inp, &p, IpAddr::from(RIP), &params, 1)
        else {
            panic!()
        };
        assert_eq!(h.inner(), 14..46);
        assert_eq!(
            &h.prefix()[16..18],
            &[0, 52],
            "outer total length = 32 + 20"
        );
    }
}

/// Pseudo-header sum, folded and not complemented: what a CHECKSUM_PARTIAL
/// packet from a veth carries in its checksum field. Computed here by
/// hand, independently of the crate.
fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u16 {
    let mut s: u32 = 0;
    for w in [
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
        u16::from(proto),
        len,
    ] {
        s += u32::from(w);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A frame as a local sender with checksum offload hands it over: its L4
/// checksum field holds only the pseudo-header sum.
struct Partial {
    /// The frame with its full checksum.
    good: Vec<u8>,
    /// The same with the pseudo-header sum in the checksum field.
    partial: Vec<u8>,
    /// Offset of the checksum field.
    csum_at: usize,
    proto: u8,
    l4_len: u16,
}

impl Partial {
    fn of(spec: &Spec) -> Partial {
        let good = spec.build();
        let (csum_at, proto) = if matches!(spec.l4, L4::Tcp { .. }) {
            (50, 6)
        } else {
            (40, 17)
        };
        let l4_len = (good.len() - 34) as u16;
        let mut partial = good.clone();
        partial[csum_at..csum_at + 2]
            .copy_from_slice(&pseudo_sum(CLIENT, VIP, proto, l4_len).to_be_bytes());
        Partial {
            good,
            partial,
            csum_at,
            proto,
            l4_len,
        }
    }
}

#[test]
fn partial_checksum_is_completed() {
    for spec in [Spec::data(80, 33), Spec::udp(53, 17), Spec::syn(80)] {
        let Partial { good, partial, .. } = Partial::of(&spec);

        assert_eq!(
            classify(&partial, L4Csum::Verify),
            Err(DropReason::L4Checksum)
        );
        let mut p = classify(&partial, L4Csum::Partial).unwrap();
        assert!(p.l4_csum_partial);
        let mut f = partial.clone();
        complete_partial_checksum(&mut f, &mut p);
        assert!(!p.l4_csum_partial);
        assert_eq!(f, good, "completed checksum equals etherparse's");

        // And a rewrite of a partial frame completes it on the way.
        let p = classify(&partial, L4Csum::Partial).unwrap();
        let mut f = partial.clone();
        let macs = MacPair {
            src: mac(DIRECTOR_MAC),
            dst: mac(RS_MAC),
        };
        nat::rewrite_in(&mut f, &p, "10.0.0.21:8080".parse().unwrap(), macs);
        assert_checksums(&f);
        let mut f = partial.clone();
        dr::rewrite(&mut f, &p, macs);
        assert_eq!(f[12..], good[12..]);
    }
}

/// What the kernel does with a `NEEDS_CSUM` frame on transmit: the
/// checksum of `f[l4..]`, the field included as it stands (it holds the
/// pseudo-header sum), written into the field.
fn kernel_completes(f: &mut [u8], l4: usize, csum_at: usize) {
    let c = !director::forward::checksum::sum(&f[l4..]);
    f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn offloaded_checksum_is_left_as_the_pseudo_header_sum_of_the_new_addresses() {
    let macs = MacPair {
        src: mac(DIRECTOR_MAC),
        dst: mac(RS_MAC),
    };
    for spec in [Spec::data(80, 33), Spec::udp(53, 17), Spec::syn(80)] {
        let Partial {
            good,
            partial,
            csum_at,
            proto,
            l4_len,
        } = Partial::of(&spec);
        // A local sender's partial checksum, and a GRO-merged frame's full
        // one of its first segment: both are rewritten to the new
        // pseudo-header sum, which the kernel then completes correctly.
        for input in [&partial, &good] {
            let p = classify(input, L4Csum::Offload { gso_size: 0 }).unwrap();
            assert!(p.l4_csum_offload && !p.l4_csum_partial);

            let mut f = input.clone();
            let rip = [10, 0, 0, 21];
            nat::rewrite_in(&mut f, &p, "10.0.0.21:8080".parse().unwrap(), macs);
            let field = u16::from_be_bytes([f[csum_at], f[csum_at + 1]]);
            assert_eq!(field, pseudo_sum(CLIENT, rip, proto, l4_len));
            kernel_completes(&mut f, 34, csum_at);
            assert_checksums(&f);

            let mut f = input.clone();
            dr::rewrite(&mut f, &p, macs);
            let field = u16::from_be_bytes([f[csum_at], f[csum_at + 1]]);
            assert_eq!(field, pseudo_sum(CLIENT, VIP, proto, l4_len));
            kernel_completes(&mut f, 34, csum_at);
            assert_eq!(f[12..], good[12..]);

            // TUN completes it itself: a decapsulator behind the outer
            // header could not tell it was partial.
            let mut f = input.clone();
            let params = tun::TunParams::new(DIP.into(), macs);
            let Verdict::Encapsulate(h) =
                tun::encapsulate(&mut f, &p, IpAddr::from(RIP), &params, 7)
            else {
                panic!("encapsulated")
            };
            assert_eq!(&f[h.inner()], &good[14..]);
        }
    }
}

#[test]
fn gso_super_packets_fit_the_tunnel_by_their_segments_and_udp_ones_are_dropped() {
    let macs = MacPair {
        src: mac(DIRECTOR_MAC),
        dst: mac(RS_MAC),
    };
    // 4000 bytes of payload: too big for a 1500-byte link as one packet.
    let big = Spec::data(80, 4000).build();
    let mut params = tun::TunParams::new(DIP.into(), macs);
    params.mtu = 1500;
    // Segments of 1440 + 40 bytes of headers + 20 of outer header fit.
    let p = classify(&big, L4Csum::Offload { gso_size: 1440 }).unwrap();
    assert_eq!(p.gso_size, 1440);
    let mut f = big.clone();
    let v = tun::encapsulate(&mut f, &p, IpAddr::from(RIP), &params, 7);
    let Verdict::Encapsulate(h) = v else {
        panic!("{v:?}")
    };
    assert_eq!(h.inner(), 14..big.len());
    // The outer header of segment 2 of 1000 inner bytes.
    let pre = h.segment_prefix(1000, 2);
    assert_eq!(u16::from_be_bytes([pre[16], pre[17]]), 1020);
    assert_eq!(u16::from_be_bytes([pre[18], pre[19]]), 9);
    assert_eq!(director::forward::checksum::checksum(&pre[14..34]), 0);
    // 1460-byte segments do not fit behind 20 more bytes: PMTU discovery.
    let p = classify(&big, L4Csum::Offload { gso_size: 1460 }).unwrap();
    let mut f = big.clone();
    let v = tun::encapsulate(&mut f, &p, IpAddr::from(RIP), &params, 7);
    assert_eq!(v.drop_reason(), Some(DropReason::FragNeeded));
    // Merged UDP is neither cut nor passed on.
    let udp = Spec::udp(53, 3000).build();
    assert_eq!(
        classify(&udp, L4Csum::Offload { gso_size: 1000 }),
        Err(DropReason::GsoUnsupported)
    );
    assert!(classify(&udp, L4Csum::Offload { gso_size: 0 }).is_ok());
}

#[test]
fn verdict_counting() {
    let c = DropCounters::new();
    let v = Verdict::Drop(DropReason::TooBigNoDf).counted(&c);
    assert_eq!(v.drop_reason(), Some(DropReason::TooBigNoDf));
    Verdict::Transmit { len: 60 }.counted(&c);
    assert_eq!(c.total(), 1);
    assert_eq!(c.get(DropReason::TooBigNoDf), 1);
}

/// Every checksum policy, with and without GSO.
const ALL_POLICIES: [L4Csum; 5] = [
    L4Csum::Verify,
    L4Csum::Skip,
    L4Csum::Partial,
    L4Csum::Offload { gso_size: 0 },
    L4Csum::Offload { gso_size: 100 },
];

/// Runs every rewrite on `frame` if it classifies; must not panic.
fn exercise(frame: &[u8], csum: L4Csum) {
    let Ok(p) = classify(frame, csum) else { return };
    assert!(p.l3_end() <= frame.len());
    let macs = MacPair {
        src: mac(DIRECTOR_MAC),
        dst: mac(RS_MAC),
    };
    let mut f = frame.to_vec();
    let _ = dr::rewrite(&mut f, &p, macs);
    let mut f = frame.to_vec();
    let _ = nat::rewrite_in(&mut f, &p, "10.0.0.21:80".parse().unwrap(), macs);
    let mut f = frame.to_vec();
    let _ = nat::rewrite_out(&mut f, &p, "192.0.2.10:80".parse().unwrap(), macs);
    let mut f = frame.to_vec();
    let mut params = tun::TunParams::new(DIP.into(), macs);
    params.mtu = 100;
    if let Verdict::Encapsulate(h) = tun::encapsulate(&mut f, &p, IpAddr::from(RIP), &params, 7) {
        let mut out = vec![0; h.len()];
        assert_eq!(h.write_to(&f, &mut out), Some(h.len()));
    }
}

fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (0usize..3, 0usize..200).prop_map(|(kind, len)| match kind {
        0 => Spec::syn(80).build(),
        1 => Spec::data(80, len).build(),
        _ => Spec::udp(53, len).build(),
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), ipv4: bool) {
        let mut bytes = bytes;
        if ipv4 && bytes.len() >= 15 {
            // Make it past the ethertype check often enough to matter.
            bytes[12] = 0x08;
            bytes[13] = 0x00;
            bytes[14] = 0x45;
        }
        for csum in ALL_POLICIES {
            exercise(&bytes, csum);
        }
    }

    #[test]
    fn truncations_never_panic(frame in valid_frame(), cut in any::<prop::sample::Index>()) {
        let n = cut.index(frame.len() + 1);
        let r = classify(&frame[..n], L4Csum::Verify);
        if n < frame.len() {
            prop_assert!(r.is_err(), "truncated to {} of {} accepted", n, frame.len());
        } else {
            prop_assert!(r.is_ok());
        }
        for csum in ALL_POLICIES {
            exercise(&frame[..n], csum);
        }
    }

    #[test]
    fn mutations_never_panic(frame in valid_frame(), at in any::<prop::sample::Index>(), val: u8) {
        let mut f = frame;
        let i = at.index(f.len());
        f[i] = val;
        for csum in ALL_POLICIES {
            exercise(&f, csum);
        }
    }
}
