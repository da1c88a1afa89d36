//! Persistence templates (`-p timeout -M netmask`): pinning, netmask
//! grouping, the n_control rule, rescheduling when a real server leaves,
//! and quiesced servers keeping their clients.

mod conn_util;

use conn_util::*;
use director::conn::{ConnEvent, Packet, TcpFlags, TemplateKey};
use director::{ForwardMethod, Millis, Protocol};

fn syn(client: &str) -> Packet {
    Packet::tcp(sa(client), sa(VIP), TcpFlags::SYN)
}

#[test]
fn clients_of_one_slash_24_share_a_real_server() {
    let ds = dests(3, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), persistence(360, 24));
    let t = table();
    let mut servers = std::collections::HashSet::new();
    for host in 1..50 {
        let out = t
            .process_in(
                &svc,
                &syn(&format!("203.0.113.{host}:4000")),
                Millis(0),
                0,
                &mut |_| {},
            )
            .unwrap();
        servers.insert(out.real_server);
    }
    assert_eq!(
        servers.len(),
        1,
        "-M 255.255.255.0 groups a /24 on one server"
    );
    assert_eq!(t.template_count(), 1);
    let other = t
        .process_in(&svc, &syn("203.0.114.1:4000"), Millis(0), 0, &mut |_| {})
        .unwrap();
    assert_ne!(
        Some(&other.real_server),
        servers.iter().next(),
        "another /24 gets its own template (round robin moves on)"
    );
    assert_eq!(t.template_count(), 2);
    let sum: u32 = ds.iter().map(|d| d.persist_conns()).sum();
    assert_eq!(sum, 2, "templates count in persist_conns");
    assert_counters_match(&t, &ds);
}

#[test]
fn template_outlives_its_connections_then_expires() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), persistence(360, 32));
    let t = table();
    let client = "203.0.113.5:5000";
    let tk = TemplateKey::for_client(Protocol::Tcp, sa(client).ip(), 32, sa(VIP));
    let mut ev = Vec::new();
    t.process_in(&svc, &syn(client), Millis(0), 0, &mut |e| ev.push(e))
        .unwrap();
    assert!(
        matches!(ev[0], ConnEvent::Created(r) if r.flags.template),
        "the template is reported before its connection"
    );
    t.process_in(
        &svc,
        &Packet::tcp(sa(client), sa(VIP), TcpFlags::ACK),
        Millis(1_000),
        0,
        &mut |_| {},
    )
    .unwrap();
    // ESTABLISHED lasts 900 s from t=1 s; the template's own 360 s run out
    // first, but it controls a connection: the kernel re-arms it (60 s).
    let r = t.expire(Millis(360_000), usize::MAX, &mut |_| {});
    assert_eq!(r.rearmed, 1);
    assert!(
        t.get_template(&tk, Millis(400_000)).is_some(),
        "n_control > 0: a template cannot expire while it controls connections"
    );
    for s in (420_000..=900_000).step_by(60_000) {
        t.expire(Millis(s), usize::MAX, &mut |_| {});
        assert!(t.get_template(&tk, Millis(s)).is_some());
    }
    // The connection expires at 901 s; the template at its next check.
    let mut gone = Vec::new();
    t.expire(Millis(901_000), usize::MAX, &mut |e| gone.push(e));
    assert_eq!(gone.len(), 1, "the connection goes first");
    assert_eq!(t.template_count(), 1);
    assert!(
        t.get_template(&tk, Millis(901_000)).is_some(),
        "the template outlives it"
    );
    let mut when = None;
    for s in (901_000..=1_100_000).step_by(1_000) {
        t.expire(Millis(s), usize::MAX, &mut |e| {
            if matches!(e, ConnEvent::Expired(r) if r.flags.template) {
                when.get_or_insert(s);
            }
        });
    }
    let when = when.expect("the template expires once it controls nothing");
    assert!(
        (901_000..=960_000).contains(&when),
        "expired at {when} ms: within one 60 s recheck of its last connection"
    );
    assert!(t.is_empty());
    assert!(ds.iter().all(|d| d.persist_conns() == 0));
}

#[test]
fn template_without_connections_lasts_its_timeout_from_the_last_new_connection() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), persistence(360, 32));
    let t = table();
    let client = "203.0.113.6:5000";
    let tk = TemplateKey::for_client(Protocol::Tcp, sa(client).ip(), 32, sa(VIP));
    t.process_in(&svc, &syn(client), Millis(0), 0, &mut |_| {})
        .unwrap();
    // A second connection at t=30 s re-arms the template to 390 s.
    t.process_in(
        &svc,
        &syn("203.0.113.6:5001"),
        Millis(30_000),
        0,
        &mut |_| {},
    )
    .unwrap();
    // Both SYN_RECV connections die at 60 s and 90 s.
    t.expire(Millis(90_000), usize::MAX, &mut |_| {});
    assert_eq!(t.conn_count(), 0);
    t.expire(Millis(389_999), usize::MAX, &mut |_| {});
    assert!(t.get_template(&tk, Millis(389_999)).is_some());
    assert!(
        t.get_template(&tk, Millis(390_000)).is_none(),
        "each new connection re-arms the template for the persistence timeout"
    );
    t.expire(Millis(390_000), usize::MAX, &mut |_| {});
    assert!(t.is_empty());
}

#[test]
fn removed_real_server_reschedules_but_quiesced_keeps_clients() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), persistence(360, 32));
    let t = table();
    let client = "203.0.113.7";
    let first = t
        .process_in(
            &svc,
            &syn(&format!("{client}:1")),
            Millis(0),
            0,
            &mut |_| {},
        )
        .unwrap()
        .real_server;
    let pinned = ds.iter().find(|d| d.addr() == first).unwrap().clone();

    // Quiesce: weight 0 stops new clients, not persistent ones
    // (expire_quiescent_template = 0).
    pinned.set_weight(0);
    let out = t
        .process_in(
            &svc,
            &syn(&format!("{client}:2")),
            Millis(1_000),
            0,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        out.real_server, first,
        "a quiesced server keeps its persistent clients"
    );
    let newcomer = t
        .process_in(&svc, &syn("203.0.113.200:1"), Millis(1_000), 0, &mut |_| {})
        .unwrap();
    assert_ne!(newcomer.real_server, first, "but gets no new ones");

    // Remove it from the service: ip_vs_check_template fails, reschedule.
    pinned.set_available(false);
    let others: Vec<_> = ds.iter().filter(|d| d.addr() != first).cloned().collect();
    let svc2 = with_dests(&svc, others);
    let out = t
        .process_in(
            &svc2,
            &syn(&format!("{client}:3")),
            Millis(2_000),
            0,
            &mut |_| {},
        )
        .unwrap();
    assert_ne!(
        out.real_server, first,
        "the template's server is gone: schedule again"
    );
    // Existing connections to the removed server keep forwarding.
    let old = Packet::tcp(sa(&format!("{client}:1")), sa(VIP), TcpFlags::ACK);
    assert_eq!(
        t.process_in(&svc2, &old, Millis(3_000), 0, &mut |_| {})
            .unwrap()
            .real_server,
        first,
        "expire_nodest_conn = 0: connections follow their server until they end"
    );
    assert_counters_match(&t, &ds);
    // Everything drains, including the retired template.
    t.expire(Millis(10_000_000), usize::MAX, &mut |_| {});
    t.expire(Millis(20_000_000), usize::MAX, &mut |_| {});
    assert!(t.is_empty());
    assert_counters_match(&t, &ds);
    assert!(ds.iter().all(|d| d.persist_conns() == 0));
}

#[test]
fn ftp_template_covers_every_port() {
    let ds = dests(3, ForwardMethod::DirectRouting);
    let mut svc = service(Protocol::Tcp, ds.clone(), persistence(360, 32));
    svc.key.vip = sa("192.0.2.10:21");
    let t = table();
    let out = t
        .process_in(
            &svc,
            &Packet::tcp(sa("203.0.113.9:1000"), sa("192.0.2.10:21"), TcpFlags::SYN),
            Millis(0),
            0,
            &mut |_| {},
        )
        .unwrap();
    let tk = TemplateKey::for_client(Protocol::Tcp, sa("203.0.113.9:0").ip(), 32, svc.key.vip);
    assert_eq!(tk.vport, 0);
    let rec = t.get_template(&tk, Millis(1)).unwrap();
    assert_eq!(rec.real_server, out.real_server);
    let conn = t
        .get(
            &Packet::tcp(sa("203.0.113.9:1000"), sa("192.0.2.10:21"), TcpFlags::ACK).key(),
            Millis(1),
        )
        .unwrap();
    assert_eq!(
        conn.template,
        Some(tk),
        "the connection's template link names the all-ports template"
    );
}
