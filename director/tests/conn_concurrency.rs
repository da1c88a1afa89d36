//! Several threads insert and look up disjoint and overlapping flows at once;
//! at the end the counters agree with the table and every flow has exactly
//! one entry.

mod conn_util;

use std::sync::Arc;
use std::thread;

use conn_util::*;
use director::conn::{ConnEvent, Packet, TcpFlags};
use director::dest::StatSlot;
use director::{ForwardMethod, Millis, Protocol};

#[test]
fn threads_share_the_table() {
    const THREADS: usize = 6;
    const FLOWS: usize = 2_000;
    let ds = dests(4, ForwardMethod::Masquerade);
    let svc = Arc::new(service(Protocol::Tcp, ds.clone(), None));
    let t = Arc::new(table());
    let created: usize = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|id| {
                let (t, svc) = (t.clone(), svc.clone());
                s.spawn(move || {
                    let mut created = 0;
                    for i in 0..FLOWS {
                        // Even threads share flows ("shared"), odd ones own theirs.
                        let client = if id % 2 == 0 {
                            format!("198.51.100.1:{}", 10_000 + i)
                        } else {
                            format!("198.51.{}.2:{}", 100 + id, 10_000 + i)
                        };
                        for flags in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK | TcpFlags::PSH] {
                            // Each thread counts in its own stats slot, as
                            // each dataplane worker does.
                            let pkt = Packet::tcp(sa(&client), sa(VIP), flags)
                                .with_len(60)
                                .in_slot(StatSlot::new(id).unwrap());
                            let out = t
                                .process_in(&svc, &pkt, Millis(i as u64), id as u64, &mut |e| {
                                    if let ConnEvent::Created(_) = e {
                                        created += 1;
                                    }
                                })
                                .expect("every packet of a created flow is placed");
                            assert!(t.get(&pkt.key(), Millis(i as u64)).is_some());
                            let _ = out;
                        }
                    }
                    created
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let odd_threads = THREADS / 2;
    let expected = FLOWS * odd_threads + FLOWS;
    assert_eq!(
        t.conn_count(),
        expected,
        "one entry per flow, shared flows not duplicated"
    );
    assert_eq!(created, expected, "each flow was created exactly once");
    assert_eq!(svc.stats.snapshot().conns, expected as u64);
    assert_counters_match(&t, &ds);
    let total: u32 = ds
        .iter()
        .map(|d| d.active_conns() + d.inactive_conns())
        .sum();
    assert_eq!(total as usize, expected);

    // Expire concurrently with lookups.
    thread::scope(|s| {
        s.spawn(|| {
            while !t.is_empty() {
                t.expire(Millis(10_000_000), 512, &mut |_| {});
            }
        });
        s.spawn(|| {
            for i in 0..FLOWS {
                let pkt = Packet::tcp(
                    sa(&format!("198.51.100.1:{}", 10_000 + i)),
                    sa(VIP),
                    TcpFlags::ACK,
                );
                let _ = t.get(&pkt.key(), Millis(0));
            }
        });
    });
    t.expire(Millis(10_000_000), usize::MAX, &mut |_| {});
    assert!(t.is_empty());
    assert_counters_match(&t, &ds);
}
