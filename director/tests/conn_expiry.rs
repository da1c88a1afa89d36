//! Expiry on a virtual clock, the table bound, NAT reply lookup, and
//! export/import of records.

mod conn_util;

use conn_util::*;
use director::conn::{
    ConnEvent, ConnRecord, ConnState, ConnTable, ImportError, ImportOutcome, Miss, Packet,
    ReplyKey, TableConfig, TcpFlags, TcpState,
};
use director::dest::StatSlot;
use director::{ForwardMethod, Millis, Protocol};

fn syn(client: &str) -> Packet {
    Packet::tcp(sa(client), sa(VIP), TcpFlags::SYN)
}

#[test]
fn entries_expire_exactly_at_their_timeout() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let t0 = Millis(10_000);
    for i in 0..100 {
        t.process_in(
            &svc,
            &syn(&format!("198.51.100.1:{}", 1000 + i)),
            t0,
            0,
            &mut |_| {},
        )
        .unwrap();
    }
    // SYN_RECV: 60 s.
    let due = Millis(t0.0 + 60_000);
    let mut expired = Vec::new();
    let r = t.expire(Millis(due.0 - 1), usize::MAX, &mut |e| expired.push(e));
    assert_eq!(r.expired, 0, "nothing expires a millisecond early");
    assert_eq!(t.conn_count(), 100);
    assert!(
        t.get(&syn("198.51.100.1:1000").key(), Millis(due.0 - 1))
            .is_some()
    );
    assert!(
        t.get(&syn("198.51.100.1:1000").key(), due).is_none(),
        "a lookup treats an entry as gone from its expiry instant, reclaimed or not"
    );
    let r = t.expire(due, usize::MAX, &mut |e| expired.push(e));
    assert_eq!(r.expired, 100);
    assert_eq!(expired.len(), 100);
    assert!(expired.iter().all(|e| matches!(
        e,
        ConnEvent::Expired(rec) if rec.state == ConnState::Tcp(TcpState::SynRecv) && rec.timeout_ms == 0
    )));
    assert!(t.is_empty());
    for d in &ds {
        assert_eq!(
            (d.active_conns(), d.inactive_conns()),
            (0, 0),
            "unbound on expiry"
        );
    }
}

#[test]
fn expiry_work_is_bounded_by_the_budget() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    for i in 0..1000 {
        t.process_in(
            &svc,
            &syn(&format!("198.51.100.2:{}", 1000 + i)),
            Millis(0),
            0,
            &mut |_| {},
        )
        .unwrap();
    }
    let now = Millis(3_600_000);
    let mut calls = 0;
    let mut total = 0;
    while !t.is_empty() {
        let r = t.expire(now, 64, &mut |_| {});
        assert!(
            r.walked <= 64,
            "walked {} slots with a budget of 64",
            r.walked
        );
        total += r.expired;
        calls += 1;
        assert!(calls < 1000, "round-robin expiry must make progress");
    }
    assert_eq!(total, 1000);
    assert!(calls >= 1000 / 64, "bounded work needs several calls");
    assert_counters_match(&t, &ds);
}

#[test]
fn full_table_drops_and_counts() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = ConnTable::new(TableConfig {
        max_entries: 10,
        shards: 4,
        hash_seed: 1,
    });
    for i in 0..10 {
        t.process_in(
            &svc,
            &syn(&format!("198.51.100.3:{}", 1000 + i)),
            Millis(0),
            0,
            &mut |_| {},
        )
        .unwrap();
    }
    for i in 10..15 {
        assert_eq!(
            t.process_in(
                &svc,
                &syn(&format!("198.51.100.3:{}", 1000 + i)),
                Millis(0),
                0,
                &mut |_| {}
            ),
            Err(Miss::TableFull)
        );
    }
    assert_eq!(
        t.len(),
        10,
        "no growth beyond max_entries under a SYN flood"
    );
    assert_eq!(t.drops_full(), 5);
    assert_eq!(ds[0].active_conns(), 10, "refused SYNs bind nothing");
    // Existing flows keep working when full.
    let ack = Packet::tcp(sa("198.51.100.3:1000"), sa(VIP), TcpFlags::ACK);
    assert!(t.process_in(&svc, &ack, Millis(1), 0, &mut |_| {}).is_ok());
    // Room comes back after expiry.
    t.expire(Millis(1_000_000), usize::MAX, &mut |_| {});
    assert!(
        t.process_in(
            &svc,
            &syn("198.51.100.3:2000"),
            Millis(1_000_000),
            0,
            &mut |_| {}
        )
        .is_ok()
    );
}

#[test]
fn no_dest_available_when_all_quiesced() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    ds.iter().for_each(|d| d.set_weight(0));
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    assert_eq!(
        t.process_in(&svc, &syn("198.51.100.4:1000"), Millis(0), 0, &mut |_| {}),
        Err(Miss::NoDestAvailable)
    );
    assert!(t.is_empty(), "a failed schedule leaves nothing behind");
    assert_eq!(t.len(), 0);
}

#[test]
fn nat_replies_are_found_by_real_server_and_client() {
    let ds = dests(3, ForwardMethod::Masquerade);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut placed = Vec::new();
    for i in 0..30 {
        let client = format!("198.51.100.5:{}", 3000 + i);
        let out = t
            .process_in(&svc, &syn(&client), Millis(0), 0, &mut |_| {})
            .unwrap();
        placed.push((client, out.real_server));
    }
    for (client, rs) in &placed {
        let key = ReplyKey {
            protocol: Protocol::Tcp,
            real_server: *rs,
            client: sa(client),
        };
        let out = t
            .process_reply(
                &key,
                TcpFlags::SYN | TcpFlags::ACK,
                60,
                StatSlot::FIRST,
                Millis(1),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(out.vip, sa(VIP), "the reply is rewritten from the VIP");
        let wrong = ReplyKey {
            real_server: sa("10.0.0.99:8080"),
            ..key
        };
        assert_eq!(
            t.process_reply(
                &wrong,
                TcpFlags::ACK,
                60,
                StatSlot::FIRST,
                Millis(1),
                &mut |_| {}
            ),
            Err(Miss::NoConnection)
        );
    }
}

#[test]
fn records_round_trip_through_import() {
    let ds_a = dests(2, ForwardMethod::Masquerade);
    let svc_a = service(Protocol::Tcp, ds_a.clone(), persistence(300, 24));
    let a = table();
    let c1 = Packet::tcp(sa("198.51.100.6:1000"), sa(VIP), TcpFlags::SYN);
    a.process_in(&svc_a, &c1, Millis(0), 0, &mut |_| {})
        .unwrap();
    let ack = Packet::tcp(c1.client, c1.vip, TcpFlags::ACK);
    a.process_in(&svc_a, &ack, Millis(1_000), 0, &mut |_| {})
        .unwrap();

    // The standby has its own Dest objects for the same servers.
    let ds_b = dests(2, ForwardMethod::Masquerade);
    let svc_b = service(Protocol::Tcp, ds_b.clone(), persistence(300, 24));
    let b = table();
    let mut records: Vec<ConnRecord> = Vec::new();
    a.snapshot(Millis(2_000), |r| records.push(r));
    assert_eq!(records.len(), 2);
    assert!(
        records[0].flags.template,
        "templates come first in a snapshot"
    );
    for r in &records {
        assert_eq!(
            b.import_for_service(r, Millis(50_000), &svc_b),
            Ok(ImportOutcome::Created)
        );
    }
    let got = b.get(&c1.key(), Millis(50_000)).unwrap();
    let sent = a.get(&c1.key(), Millis(2_000)).unwrap();
    assert!(
        got.flags.synced && !sent.flags.synced,
        "the importer marks what it learned from sync; the sender scheduled it"
    );
    let mut learned = sent;
    learned.flags.synced = true;
    assert_eq!(
        got, learned,
        "same flow, state, remaining timeout and template link"
    );
    assert_eq!(
        (
            a.synced_count(Millis(2_000)),
            b.synced_count(Millis(50_000))
        ),
        (0, 2)
    );
    assert_eq!(got.state, ConnState::Tcp(TcpState::Established));
    assert!(got.template.is_some());
    assert_counters_match(&b, &ds_b);

    // The standby forwards the established flow without a SYN.
    let out = b
        .process_in(&svc_b, &ack, Millis(51_000), 0, &mut |_| {})
        .unwrap();
    assert_eq!(out.real_server, sent.real_server);
    // A new connection from the same /24 follows the imported template.
    let c2 = Packet::tcp(sa("198.51.100.77:2000"), sa(VIP), TcpFlags::SYN);
    let out = b
        .process_in(&svc_b, &c2, Millis(52_000), 0, &mut |_| {})
        .unwrap();
    assert_eq!(out.real_server, sent.real_server);

    // Re-importing is an update, not a duplicate.
    assert_eq!(
        b.import_for_service(&records[1], Millis(53_000), &svc_b),
        Ok(ImportOutcome::Updated)
    );
    assert_counters_match(&b, &ds_b);
    let unknown = ConnRecord {
        real_server: sa("10.9.9.9:1"),
        ..records[1]
    };
    assert_eq!(
        b.import_for_service(&unknown, Millis(53_000), &svc_b),
        Err(ImportError::UnknownRealServer(sa("10.9.9.9:1")))
    );
}

#[test]
fn without_sync_a_standby_drops_established_flows() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds, None);
    let standby = table();
    let mid = Packet::tcp(
        sa("198.51.100.8:1000"),
        sa(VIP),
        TcpFlags::ACK | TcpFlags::PSH,
    );
    assert_eq!(
        standby.process_in(&svc, &mid, Millis(0), 0, &mut |_| {}),
        Err(Miss::NoConnection),
        "a mid-stream packet with no entry cannot be placed"
    );
}
