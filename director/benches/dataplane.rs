//! The whole per-packet cost: classify (with L4 checksum verification),
//! service lookup, connection lookup and state update, rewrite. This is the
//! "lookup and rewrite" figure of the dataplane, per method.
//!
//! * `hot/*`: 4096 established flows, cycled — the table fits in cache.
//! * `cold_1M/*`: 10^6 established flows, packets of 65 536 of them picked
//!   at random — nearly every lookup misses the CPU caches.
//!
//! Every iteration restores the frame from its template (a 64-byte copy)
//! because NAT rewrites it in place; the copy is part of every figure.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use director::conn::TableConfig;
use director::dataplane::{
    Action, Dataplane, DataplaneConfig, IfaceId, NextHop, StaticNeighbours, Worker,
};
use director::forward::{L4Csum, MacAddr, Verdict};
use director::sched::{SchedOptions, SchedulerKind};
use director::{DestSpec, ForwardMethod, Millis, Protocol, ServiceKey, ServiceSpec};
use etherparse::PacketBuilder;

const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xd1]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 21), Ipv4Addr::new(10, 0, 0, 22)];
const NOW: Millis = Millis(1_000);

fn frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, DIRECTOR_MAC.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v.resize(64, 0); // minimum Ethernet frame, padding after the IP packet
    v
}

/// Client number `i` as a distinct address:port.
fn client(i: u32) -> (Ipv4Addr, u16) {
    let ip = Ipv4Addr::from(0x0a40_0000 + (i >> 10));
    (ip, 10_000 + (i & 1023) as u16)
}

struct Setup {
    worker: Worker,
    neigh: StaticNeighbours,
    /// Client → VIP packets of established flows.
    inbound: Vec<Vec<u8>>,
    /// Real server → client replies (NAT only).
    replies: Vec<Vec<u8>>,
}

fn setup(method: ForwardMethod, flows: u32, sample: u32) -> Setup {
    let mut cfg = DataplaneConfig::new(DIRECTOR_MAC, DIP);
    cfg.table = TableConfig {
        max_entries: flows as usize * 2,
        ..TableConfig::default()
    };
    let dp = Arc::new(Dataplane::new(cfg));
    let spec = ServiceSpec {
        key: ServiceKey {
            protocol: Protocol::Tcp,
            vip: SocketAddr::new(IpAddr::V4(VIP), 80),
        },
        scheduler: SchedulerKind::Rr,
        sched_opts: SchedOptions::default(),
        persistence: None,
        dests: RS
            .iter()
            .map(|&ip| DestSpec {
                addr: SocketAddr::new(IpAddr::V4(ip), 80),
                method,
                weight: 1,
                upper_threshold: 0,
                lower_threshold: 0,
            })
            .collect(),
    };
    dp.apply(&[spec]).unwrap();
    dp.set_active(true);
    let mut neigh = StaticNeighbours {
        gateway: Some(NextHop {
            iface: IfaceId(0),
            mac: MacAddr([0x02, 0, 0, 0, 0, 0xfe]),
        }),
        ..StaticNeighbours::default()
    };
    for (i, ip) in RS.iter().enumerate() {
        neigh.host(IpAddr::V4(*ip), MacAddr([0x02, 0, 0, 0, 0, 0x21 + i as u8]));
    }
    let mut worker = Worker::new(dp, 1).unwrap();
    for i in 0..flows {
        let mut f = frame(client(i), (VIP, 80), true);
        let a = worker.process(NOW, IfaceId(0), &mut f, L4Csum::Verify, &neigh, &mut |_| {});
        assert!(matches!(
            a,
            Action::Handled {
                verdict: Verdict::Transmit { .. } | Verdict::Encapsulate(_),
                ..
            }
        ));
    }
    // A fixed pseudo-random sample of the flows.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut inbound = Vec::new();
    let mut replies = Vec::new();
    for n in 0..sample {
        let i = if sample == flows {
            n
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(flows)) as u32
        };
        let c = client(i);
        inbound.push(frame(c, (VIP, 80), false));
        // rr over two servers from flow 0: even flows on RS[0].
        let rs = RS[(i % 2) as usize];
        replies.push(frame((rs, 80), c, false));
    }
    Setup {
        worker,
        neigh,
        inbound,
        replies,
    }
}

fn run(c: &mut Criterion, name: &str, s: &mut Setup, replies: bool) {
    let frames = if replies { &s.replies } else { &s.inbound };
    let mut buf = [0u8; 64];
    let mut i = 0usize;
    let Setup { worker, neigh, .. } = s;
    c.bench_function(name, |b| {
        b.iter(|| {
            buf.copy_from_slice(&frames[i]);
            i = (i + 1) % frames.len();
            let a = worker.process(
                NOW,
                IfaceId(0),
                &mut buf,
                L4Csum::Verify,
                neigh,
                &mut |_| {},
            );
            debug_assert!(matches!(a, Action::Handled { .. }));
            black_box(a)
        })
    });
}

fn pipeline(c: &mut Criterion) {
    for (label, method) in [
        ("dr", ForwardMethod::DirectRouting),
        ("tun", ForwardMethod::Tunnel),
        ("nat_in", ForwardMethod::Masquerade),
    ] {
        let mut s = setup(method, 4096, 4096);
        run(c, &format!("pipeline/hot/{label}"), &mut s, false);
        if method == ForwardMethod::Masquerade {
            run(c, "pipeline/hot/nat_out", &mut s, true);
        }
    }
    for (label, method) in [
        ("dr", ForwardMethod::DirectRouting),
        ("nat_in", ForwardMethod::Masquerade),
    ] {
        let mut s = setup(method, 1_000_000, 65_536);
        run(c, &format!("pipeline/cold_1M/{label}"), &mut s, false);
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
