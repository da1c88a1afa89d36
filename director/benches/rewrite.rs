//! Per-packet cost of classification and of each forwarding rewrite (DR,
//! TUN, NAT in, NAT out) on a 64-byte TCP frame and a 1514-byte one (a
//! 1500-byte IP packet). Rewrites are measured on pre-classified frames;
//! `classify` is measured alone, with and without L4 checksum
//! verification (the only step whose cost grows with the payload).
//!
//! With offloads on (`[dataplane] offloads = true`), a 64 000-byte GSO
//! super-frame: NAT leaving its checksum to the kernel (the cost does not
//! grow with the frame), and the userspace segmentation TUN needs
//! (`forward::gso`: a copy and a checksum of every byte).
//!
//! `cargo bench -p director --bench rewrite`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use director::forward::{
    L4Csum, MacAddr, MacPair, TunParams, Verdict, classify, dr, gso, nat, tun,
};
use etherparse::PacketBuilder;

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const VIP: [u8; 4] = [192, 0, 2, 10];
const RIP: [u8; 4] = [10, 0, 0, 21];
const MACS: MacPair = MacPair {
    src: MacAddr([2, 0, 0, 0, 0, 0xd1]),
    dst: MacAddr([2, 0, 0, 0, 0, 0x21]),
};

/// Ethernet + IPv4 + TCP header bytes (no options).
const HDRS: usize = 54;

/// A TCP ACK|PSH frame of exactly `frame_len` bytes.
fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, frame_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..frame_len - 54).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(frame_len);
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xfe], [2, 0, 0, 0, 0, 0xd1])
        .ipv4(src, dst, 61)
        .tcp(sport, dport, 1, 64240)
        .ack(2)
        .psh()
        .write(&mut out, &payload)
        .expect("frame builds");
    assert_eq!(out.len(), frame_len);
    out
}

fn bench(c: &mut Criterion) {
    let real = SocketAddr::new(IpAddr::from(RIP), 80);
    let virt = SocketAddr::new(IpAddr::from(VIP), 8099);
    // A 1500-byte inner packet plus 20 needs an egress MTU above 1500
    // (jumbo frames towards the real servers); the ICMP "fragmentation
    // needed" path at MTU 1500 is measured separately.
    let params = TunParams {
        mtu: 9000,
        ..TunParams::new(Ipv4Addr::new(10, 0, 0, 1), MACS)
    };
    let params_1500 = TunParams::new(Ipv4Addr::new(10, 0, 0, 1), MACS);

    for len in [64usize, 1514] {
        let inbound = tcp_frame(CLIENT, VIP, 40000, 8099, len);
        let outbound = tcp_frame(RIP, CLIENT, 80, 40000, len);
        let p_in = classify(&inbound, L4Csum::Verify).expect("valid");
        let p_out = classify(&outbound, L4Csum::Verify).expect("valid");

        let mut g = c.benchmark_group(format!("classify/{len}"));
        g.bench_function("verify", |b| {
            b.iter(|| classify(black_box(&inbound), L4Csum::Verify))
        });
        g.bench_function("skip", |b| {
            b.iter(|| classify(black_box(&inbound), L4Csum::Skip))
        });
        g.finish();

        let mut g = c.benchmark_group(format!("rewrite/{len}"));
        // DR and TUN do not change anything that a second run depends on,
        // so they run on one buffer.
        let mut f = inbound.clone();
        g.bench_function("dr", |b| {
            b.iter(|| dr::rewrite(black_box(&mut f), &p_in, MACS))
        });
        let mut f = inbound.clone();
        let mut id = 0u16;
        g.bench_function("tun", |b| {
            b.iter(|| {
                id = id.wrapping_add(1);
                let v = tun::encapsulate(black_box(&mut f), &p_in, real.ip(), &params, id);
                debug_assert!(matches!(v, Verdict::Encapsulate(_)));
                v
            })
        });
        if len > 1500 {
            g.bench_function("tun_frag_needed", |b| {
                b.iter(|| {
                    let v = tun::encapsulate(black_box(&mut f), &p_in, real.ip(), &params_1500, 1);
                    debug_assert!(matches!(v, Verdict::Icmp { .. }));
                    v
                })
            });
        }
        // NAT decrements TTL and rewrites an address, so each run first
        // restores the 54 header bytes it touches from the original (a
        // small copy, part of the figure) rather than cloning the frame:
        // a fresh allocation per run would measure cache misses instead.
        let mut f = inbound.clone();
        g.bench_function("nat_in", |b| {
            b.iter(|| {
                f[..HDRS].copy_from_slice(&inbound[..HDRS]);
                nat::rewrite_in(black_box(&mut f), &p_in, real, MACS)
            })
        });
        let mut f = outbound.clone();
        g.bench_function("nat_out", |b| {
            b.iter(|| {
                f[..HDRS].copy_from_slice(&outbound[..HDRS]);
                nat::rewrite_out(black_box(&mut f), &p_out, virt, MACS)
            })
        });
        g.finish();
    }

    // A super-frame with offloads on: 64 000 bytes, 1448-byte segments.
    let big = tcp_frame(CLIENT, VIP, 40000, 8099, 14 + 64_000);
    let offload = L4Csum::Offload { gso_size: 1448 };
    let p_big = classify(&big, offload).expect("valid");
    let mut g = c.benchmark_group("offload/64000");
    g.bench_function("classify", |b| {
        b.iter(|| classify(black_box(&big), offload))
    });
    let mut f = big.clone();
    g.bench_function("nat_in", |b| {
        b.iter(|| {
            f[..HDRS].copy_from_slice(&big[..HDRS]);
            nat::rewrite_in(black_box(&mut f), &p_big, real, MACS)
        })
    });
    let inner = &big[14..];
    let need = gso::segmented_len(inner, 1448, tun::PREFIX_LEN).expect("segmentable");
    let mut out = vec![0u8; need];
    g.bench_function("tun_segment", |b| {
        b.iter(|| {
            gso::segment_tcp4(black_box(inner), 1448, tun::PREFIX_LEN, &mut out, |r| {
                black_box(r);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
