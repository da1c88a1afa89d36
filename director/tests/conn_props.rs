//! Property: after any sequence of packets, replies, clock advances,
//! expiry passes and real-server changes, each Dest's active / inactive /
//! persist counters equal a recount over the table's entries, and draining
//! the table brings every counter back to zero.

mod conn_util;

use std::sync::Arc;

use conn_util::*;
use director::conn::{Packet, ReplyKey, TcpFlags};
use director::dest::StatSlot;
use director::{Dest, ForwardMethod, Millis, Protocol};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    In { client: u8, port: u8, flags: u8 },
    Reply { client: u8, port: u8, flags: u8 },
    Advance(u32),
    Expire(u16),
    Quiesce(u8),
    Remove(u8),
}

const FLAG_SETS: [TcpFlags; 8] = [
    TcpFlags::SYN,
    TcpFlags::ACK,
    TcpFlags(0x12), // SYN|ACK
    TcpFlags(0x11), // FIN|ACK
    TcpFlags::RST,
    TcpFlags(0x14), // RST|ACK
    TcpFlags::NONE,
    TcpFlags(0x18), // PSH|ACK
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u8..3, 0u8..8).prop_map(|(client, port, flags)| Op::In { client, port, flags }),
        3 => (0u8..6, 0u8..3, 0u8..8).prop_map(|(client, port, flags)| Op::Reply { client, port, flags }),
        3 => (0u32..400_000).prop_map(Op::Advance),
        2 => (0u16..64).prop_map(Op::Expire),
        1 => (0u8..3).prop_map(Op::Quiesce),
        1 => (0u8..3).prop_map(Op::Remove),
    ]
}

fn client(i: u8, port: u8) -> std::net::SocketAddr {
    // Two /24s, three hosts each.
    sa(&format!(
        "198.51.{}.{}:{}",
        100 + i / 3,
        1 + i % 3,
        1000 + u16::from(port)
    ))
}

fn run(ops: Vec<Op>, method: ForwardMethod, protocol: Protocol, persistent: bool) {
    let ds = dests(3, method);
    let mut svc = service(
        protocol,
        ds.clone(),
        if persistent {
            persistence(120, 24)
        } else {
            None
        },
    );
    let t = table();
    let mut now = Millis(0);
    for op in ops {
        match op {
            Op::In {
                client: c,
                port,
                flags,
            } => {
                let pkt = Packet {
                    protocol,
                    client: client(c, port),
                    vip: sa(VIP),
                    tcp_flags: FLAG_SETS[usize::from(flags)],
                    len: 60,
                    stat_slot: StatSlot::FIRST,
                };
                let _ = t.process_in(&svc, &pkt, now, u64::from(c), &mut |_| {});
            }
            Op::Reply {
                client: c,
                port,
                flags,
            } => {
                let key = Packet::udp(client(c, port), sa(VIP)).key();
                let key = director::conn::ConnKey { protocol, ..key };
                if let Some(rec) = t.get(&key, now) {
                    let reply = ReplyKey {
                        protocol,
                        real_server: rec.real_server,
                        client: client(c, port),
                    };
                    let _ = t.process_reply(
                        &reply,
                        FLAG_SETS[usize::from(flags)],
                        60,
                        StatSlot::FIRST,
                        now,
                        &mut |_| {},
                    );
                }
            }
            Op::Advance(ms) => now = Millis(now.0 + u64::from(ms)),
            Op::Expire(budget) => {
                t.expire(now, usize::from(budget), &mut |_| {});
            }
            Op::Quiesce(i) => {
                let d = &ds[usize::from(i)];
                d.set_weight(if d.weight() == 0 { 1 } else { 0 });
            }
            Op::Remove(i) => {
                let d = &ds[usize::from(i)];
                d.set_available(false);
                let rest: Vec<Arc<Dest>> = svc
                    .dests
                    .iter()
                    .filter(|x| !Arc::ptr_eq(x, d))
                    .cloned()
                    .collect();
                svc = with_dests(&svc, rest);
            }
        }
        assert_counters_match(&t, &ds);
    }
    // Drain: far in the future every connection is dead, then every
    // template controls nothing and dies at its next check.
    for step in 1..=3u64 {
        t.expire(Millis(now.0 + step * 10_000_000), usize::MAX, &mut |_| {});
    }
    assert!(t.is_empty(), "{} entries left after draining", t.len());
    for d in &ds {
        assert_eq!(
            (d.active_conns(), d.inactive_conns(), d.persist_conns()),
            (0, 0, 0),
            "every bind was matched by an unbind"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn counters_equal_recount_dr(ops in prop::collection::vec(op(), 1..120), persistent: bool) {
        run(ops, ForwardMethod::DirectRouting, Protocol::Tcp, persistent);
    }

    #[test]
    fn counters_equal_recount_nat(ops in prop::collection::vec(op(), 1..120), persistent: bool) {
        run(ops, ForwardMethod::Masquerade, Protocol::Tcp, persistent);
    }

    #[test]
    fn counters_equal_recount_udp(ops in prop::collection::vec(op(), 1..120), persistent: bool) {
        run(ops, ForwardMethod::Masquerade, Protocol::Udp, persistent);
    }
}
