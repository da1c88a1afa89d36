//! One scheduling decision per IPVS scheduler, with 2, 16 and 256 real
//! servers (`schedule/<sched>/<servers>`).
//!
//! Servers have mixed weights (1..=4) and connection counts, so the
//! least-connection family compares real figures. Each iteration takes the
//! next of 1024 prepared requests (distinct clients, destination addresses,
//! ports and entropy), so hashing schedulers do not hit one bucket and lblc
//! / lblcr see a warm cache of 1024 destination addresses.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use director::sched::{self, SchedOptions, SchedRequest, SchedulerKind};
use director::{Dest, ForwardMethod, Millis, Protocol};

fn servers(n: usize) -> Vec<Arc<Dest>> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 80));
            let d = Dest::new(addr, ForwardMethod::DirectRouting, (i % 4) as i32 + 1);
            d.set_counters((i * 7 % 13) as u32, (i * 31 % 97) as u32);
            Arc::new(d)
        })
        .collect()
}

fn requests() -> Vec<SchedRequest> {
    let mut x: u64 = 0x1234_5678;
    (0..1024u32)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            SchedRequest {
                protocol: Protocol::Tcp,
                client: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from((x >> 32) as u32)),
                    1024 + i as u16,
                ),
                dest: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8)),
                    80,
                ),
                now: Millis(1_000),
                entropy: x,
            }
        })
        .collect()
}

fn bench_schedule(c: &mut Criterion) {
    let reqs = requests();
    let mut group = c.benchmark_group("schedule");
    for kind in SchedulerKind::ALL {
        for n in [2usize, 16, 256] {
            let s = sched::new(kind, SchedOptions::default()).expect("default options are valid");
            let ds = servers(n);
            s.update(&ds);
            // Warm the lblc/lblcr caches and lazily built tables.
            for r in &reqs {
                black_box(s.schedule(&ds, r));
            }
            group.bench_with_input(BenchmarkId::new(kind.name(), n), &n, |b, _| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(s.schedule(black_box(&ds), black_box(&reqs[i])))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_schedule);
criterion_main!(benches);
