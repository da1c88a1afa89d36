//! Connection-table benchmarks: the packet path's lookup of an existing
//! connection (state update and timer re-arm included) over a hot working
//! set and over the whole table, a NAT reply lookup, and inserting a new
//! connection, each at 10^4 and 10^6 entries; prints the table's heap bytes
//! per entry (indexes included) for DR and NAT.
//!
//! `cargo bench -p director --bench conn` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use director::conn::{ConnTable, Packet, ReplyKey, TableConfig, TcpFlags};
use director::dest::StatSlot;
use director::sched::{SchedRequest, Scheduler, SchedulerKind};
use director::service::{Service, ServiceKey};
use director::{Dest, ForwardMethod, Millis, Protocol, Stats};

/// Round robin, local to the bench so it does not depend on `sched`.
#[derive(Debug, Default)]
struct Rr(AtomicUsize);

impl Scheduler for Rr {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }
    fn update(&self, _: &[Arc<Dest>]) {}
    fn schedule(&self, dests: &[Arc<Dest>], _: &SchedRequest) -> Option<Arc<Dest>> {
        let i = self.0.fetch_add(1, Ordering::Relaxed) % dests.len();
        Some(dests[i].clone())
    }
}

const VIP: &str = "192.0.2.10:80";

fn service(method: ForwardMethod) -> Service {
    Service {
        key: ServiceKey {
            protocol: Protocol::Tcp,
            vip: VIP.parse().unwrap(),
        },
        scheduler: Arc::new(Rr::default()),
        dests: (1..=8)
            .map(|i| {
                Arc::new(Dest::new(
                    format!("10.0.0.{i}:8080").parse().unwrap(),
                    method,
                    1,
                ))
            })
            .collect(),
        persistence: None,
        stats: Arc::new(Stats::default()),
    }
}

fn client(i: usize) -> SocketAddr {
    SocketAddr::new(
        Ipv4Addr::from(0x0a00_0000 + (i as u32 >> 8)).into(),
        1024 + (i as u16 & 0xff),
    )
}

fn filled(svc: &Service, n: usize) -> ConnTable {
    let t = ConnTable::new(TableConfig {
        max_entries: 4 * n + 1024,
        ..TableConfig::default()
    });
    let vip: SocketAddr = VIP.parse().unwrap();
    for i in 0..n {
        let pkt = Packet::tcp(client(i), vip, TcpFlags::SYN);
        t.process_in(svc, &pkt, Millis(0), 0, &mut |_| {}).unwrap();
    }
    t
}

fn bench(c: &mut Criterion) {
    let vip: SocketAddr = VIP.parse().unwrap();
    for n in [10_000usize, 1_000_000] {
        for method in [ForwardMethod::DirectRouting, ForwardMethod::Masquerade] {
            let svc = service(method);
            let t = filled(&svc, n);
            println!(
                "conn table, {n} {method} entries: {:.1} heap bytes/entry (indexes included)",
                t.heap_bytes() as f64 / n as f64
            );
            if method == ForwardMethod::DirectRouting {
                // Hot: packets of 4096 flows (a busy working set), so the
                // figure is the table's own cost. Cold: every flow of the
                // table in scrambled order, so nearly every lookup misses
                // the CPU caches (and the TLB at 10^6): memory-bound.
                let mut g = c.benchmark_group("conn_lookup_hit_hot");
                let mut i = 0usize;
                g.bench_function(BenchmarkId::from_parameter(n), |b| {
                    b.iter(|| {
                        i = (i + 17) % 4096;
                        let pkt = Packet::tcp(client(i), vip, TcpFlags::ACK);
                        black_box(t.process_in(&svc, &pkt, Millis(1), 0, &mut |_| {}))
                    })
                });
                g.finish();
                let mut g = c.benchmark_group("conn_lookup_hit_cold");
                let mut i = 0usize;
                g.bench_function(BenchmarkId::from_parameter(n), |b| {
                    b.iter(|| {
                        i = (i + 7919) % n;
                        let pkt = Packet::tcp(client(i), vip, TcpFlags::ACK);
                        black_box(t.process_in(&svc, &pkt, Millis(1), 0, &mut |_| {}))
                    })
                });
                g.finish();

                let mut g = c.benchmark_group("conn_insert");
                let mut next = n;
                g.bench_function(BenchmarkId::from_parameter(n), |b| {
                    b.iter(|| {
                        // Insert a fresh flow, then remove it so the table
                        // stays at n entries: the figure is insert + remove.
                        next += 1;
                        let pkt = Packet::tcp(client(next), vip, TcpFlags::SYN);
                        black_box(t.process_in(&svc, &pkt, Millis(1), 0, &mut |_| {})).ok();
                        t.remove(&pkt.key(), Millis(1), &mut |_| {});
                    })
                });
                g.finish();
            } else {
                let rs: Vec<SocketAddr> = (0..n.min(4096))
                    .map(|i| {
                        t.get(&Packet::tcp(client(i), vip, TcpFlags::ACK).key(), Millis(0))
                            .unwrap()
                            .real_server
                    })
                    .collect();
                let mut g = c.benchmark_group("conn_reply_hit");
                let mut i = 0usize;
                g.bench_function(BenchmarkId::from_parameter(n), |b| {
                    b.iter(|| {
                        i = (i + 17) % rs.len();
                        let key = ReplyKey {
                            protocol: Protocol::Tcp,
                            real_server: rs[i],
                            client: client(i),
                        };
                        black_box(t.process_reply(
                            &key,
                            TcpFlags::ACK,
                            60,
                            StatSlot::FIRST,
                            Millis(1),
                            &mut |_| {},
                        ))
                    })
                });
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
