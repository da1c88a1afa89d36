//! `Which` and `Watch` end to end: a real tonic server on 127.0.0.1:0 over
//! a dataplane fed with frames, a real client, and the `dirctl which` /
//! `dirctl watch` binaries against it.
//!
//! Which: every source (connection, template, scheduler, no service, no
//! real server) and every refusal; the scheduler's answer is the next real
//! pick, and asking never changes the table or the scheduler. Watch:
//! snapshots in sequence, and the server's task ends when the client
//! cancels.

mod api_util;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use api_util::{DirctlLab, Feeder, Served, ep, key, tcp};
use director::conn::{ConnKey, ConnRecord, ConnState, RecordFlags, TcpState};
use director::{ForwardMethod, Protocol, TcpFlags};
use lb_proto::common as pb;
use lb_proto::control as ctl;
use lb_proto::control::control_client::ControlClient;
use tonic::Code;
use tonic::transport::Channel;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rs(addr: &str, weight: u32) -> pb::RealServerSpec {
    pb::RealServerSpec {
        address: ep(addr),
        method: pb::ForwardMethod::Dr as i32,
        weight: Some(weight),
        ..Default::default()
    }
}

async fn add(
    c: &mut ControlClient<Channel>,
    proto: pb::Protocol,
    vip: &str,
    sched: &str,
    persistence: Option<pb::Persistence>,
    rss: Vec<pb::RealServerSpec>,
) {
    c.add_service(ctl::AddServiceRequest {
        spec: Some(pb::ServiceSpec {
            key: key(proto, vip),
            scheduler: sched.into(),
            persistence,
            ..Default::default()
        }),
        real_servers: rss,
    })
    .await
    .unwrap();
}

const WEB: &str = "192.0.2.10:80";
const STICKY: &str = "192.0.2.10:443";
const ROUND: &str = "192.0.2.10:8080";
const DNS: &str = "192.0.2.53:53";

/// Four services: wlc on :80, rr with /24 persistence on :443, plain rr
/// on :8080, and a UDP service whose servers are all quiesced.
async fn configure(c: &mut ControlClient<Channel>) {
    let tcp = pb::Protocol::Tcp;
    add(
        c,
        tcp,
        WEB,
        "wlc",
        None,
        vec![rs("10.0.0.21:80", 1), rs("10.0.0.22:80", 2)],
    )
    .await;
    add(
        c,
        tcp,
        STICKY,
        "rr",
        Some(pb::Persistence {
            timeout_s: 300,
            netmask_prefix_len: Some(24),
        }),
        vec![rs("10.0.0.21:443", 1), rs("10.0.0.22:443", 1)],
    )
    .await;
    add(
        c,
        tcp,
        ROUND,
        "rr",
        None,
        vec![
            rs("10.0.0.21:8080", 1),
            rs("10.0.0.22:8080", 1),
            rs("10.0.0.23:8080", 1),
        ],
    )
    .await;
    add(
        c,
        pb::Protocol::Udp,
        DNS,
        "rr",
        None,
        vec![rs("10.0.0.31:53", 0), rs("10.0.0.32:53", 0)],
    )
    .await;
}

fn ask(proto: pb::Protocol, client: &str, vip: &str) -> ctl::WhichRequest {
    ctl::WhichRequest {
        protocol: proto as i32,
        client: ep(client),
        vip: ep(vip),
        fwmark: 0,
    }
}

async fn which(c: &mut ControlClient<Channel>, client: &str, vip: &str) -> ctl::WhichResponse {
    c.which(ask(pb::Protocol::Tcp, client, vip))
        .await
        .unwrap()
        .into_inner()
}

fn source(r: &ctl::WhichResponse) -> ctl::WhichSource {
    ctl::WhichSource::try_from(r.source).unwrap()
}

fn real_server(r: &ctl::WhichResponse) -> Option<SocketAddr> {
    r.real_server
        .as_ref()
        .map(|e| SocketAddr::new(e.ip.parse().unwrap(), e.port as u16))
}

/// The real server the table holds for a TCP flow.
fn pinned(srv: &Served, client: &str, vip: &str) -> SocketAddr {
    let k = ConnKey {
        protocol: Protocol::Tcp,
        client: sa(client),
        vip: sa(vip),
    };
    srv.state
        .dp
        .conns()
        .get(&k, srv.now())
        .expect("the flow has an entry")
        .real_server
}

#[tokio::test]
async fn which_answers_from_connection_template_scheduler_or_says_why_not() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    configure(&mut c).await;
    srv.state.dp.set_active(true);
    let mut f = Feeder::new(&srv.state);
    let now = srv.now();

    // A connection made by packets: SYN, then the client's ACK.
    let alice = "198.51.100.7:40000";
    f.feed(now, tcp(sa(alice), sa(WEB), TcpFlags::SYN));
    f.feed(now, tcp(sa(alice), sa(WEB), TcpFlags::ACK));
    let r = which(&mut c, alice, WEB).await;
    assert_eq!(source(&r), ctl::WhichSource::Connection, "{r:?}");
    assert_eq!(real_server(&r), Some(pinned(&srv, alice, WEB)));
    assert_eq!(
        r.reason, "existing ESTABLISHED connection, 900 s left",
        "the tcp timeout (900 s) runs from the last packet"
    );
    assert_eq!(r.scheduler, "wlc");
    assert_eq!(r.service, key(pb::Protocol::Tcp, WEB));
    assert_eq!(r.method, pb::ForwardMethod::Dr as i32);
    let entry = r.connection.as_ref().expect("the entry is returned");
    assert_eq!(entry.state, pb::ConnState::Established as i32);
    assert!(r.template.is_none(), "no persistence, no template");

    // A connection imported from the peer (sync), 812 s left.
    let bob = "198.51.100.8:41000";
    let table = srv.state.dp.services();
    let web = table.get(Protocol::Tcp, sa(WEB)).unwrap();
    srv.state
        .dp
        .conns()
        .import_for_service(
            &ConnRecord {
                protocol: Protocol::Tcp,
                client: sa(bob),
                vip: sa(WEB),
                real_server: sa("10.0.0.22:80"),
                method: ForwardMethod::DirectRouting,
                state: ConnState::Tcp(TcpState::Established),
                timeout_ms: 812_000,
                flags: RecordFlags::default(),
                template: None,
            },
            now,
            web,
        )
        .unwrap();
    let r = which(&mut c, bob, WEB).await;
    assert_eq!(source(&r), ctl::WhichSource::Connection);
    assert_eq!(real_server(&r), Some(sa("10.0.0.22:80")));
    assert_eq!(r.reason, "existing ESTABLISHED connection, 812 s left");

    // A persistent service: the first SYN from 203.0.113.0/24 makes the
    // template; every other client of that /24 follows it.
    let carol = "203.0.113.7:40001";
    f.feed(now, tcp(sa(carol), sa(STICKY), TcpFlags::SYN));
    let carol_rs = pinned(&srv, carol, STICKY);
    let r = which(&mut c, "203.0.113.99:5555", STICKY).await;
    assert_eq!(source(&r), ctl::WhichSource::Template, "{r:?}");
    assert_eq!(real_server(&r), Some(carol_rs));
    assert_eq!(
        r.reason,
        format!("template 203.0.113.0/24 -> {carol_rs}, 300 s left")
    );
    let tpl = r.template.as_ref().expect("the template is returned");
    assert_eq!(tpl.persistence_prefix_len, Some(24));
    assert_eq!(tpl.client, ep("203.0.113.0:0"));
    // Carol's own flow: its entry, with the template that controls it.
    let r = which(&mut c, carol, STICKY).await;
    assert_eq!(source(&r), ctl::WhichSource::Connection);
    assert!(
        r.reason
            .starts_with("existing SYN_RECV connection, 60 s left, under template 203.0.113.0/24"),
        "{}",
        r.reason
    );
    assert!(r.template.is_some(), "a controlled flow names its template");

    // A client of another /24: no template yet, so the scheduler decides,
    // and asking makes neither a template nor an entry.
    let (entries, templates) = (
        srv.state.dp.conns().len(),
        srv.state.dp.conns().template_count(),
    );
    let r = which(&mut c, "192.0.2.200:1000", STICKY).await;
    assert_eq!(source(&r), ctl::WhichSource::Scheduler, "{r:?}");
    assert!(
        r.reason
            .starts_with("no template for 192.0.2.0/24 yet; rr: next in round-robin order")
            && r.reason
                .ends_with("a new connection would pin 192.0.2.0/24 to it for 300 s"),
        "{}",
        r.reason
    );
    assert_eq!(srv.state.dp.conns().len(), entries, "which makes no entry");
    assert_eq!(
        srv.state.dp.conns().template_count(),
        templates,
        "which makes no template"
    );

    // rr: the answer is the next real pick, and asking does not advance
    // the walk — six new clients, each asked about twice, then sent.
    let mut seen = Vec::new();
    for i in 0..6 {
        let client = format!("198.51.100.{}:3000", 50 + i);
        let first = which(&mut c, &client, ROUND).await;
        let again = which(&mut c, &client, ROUND).await;
        assert_eq!(source(&first), ctl::WhichSource::Scheduler);
        assert_eq!(real_server(&first), real_server(&again), "asking twice");
        f.feed(now, tcp(sa(&client), sa(ROUND), TcpFlags::SYN));
        let got = pinned(&srv, &client, ROUND);
        assert_eq!(
            real_server(&first),
            Some(got),
            "client {i}: which said what the scheduler then picked"
        );
        seen.push(got);
    }
    assert_eq!(
        seen,
        [
            sa("10.0.0.21:8080"),
            sa("10.0.0.22:8080"),
            sa("10.0.0.23:8080"),
            sa("10.0.0.21:8080"),
            sa("10.0.0.22:8080"),
            sa("10.0.0.23:8080"),
        ],
        "rr walked once per connection, not per question"
    );

    // wlc explains its choice by the figures.
    let r = which(&mut c, "198.51.100.9:1", WEB).await;
    assert_eq!(source(&r), ctl::WhichSource::Scheduler);
    assert!(
        r.reason.starts_with("wlc: lowest overhead per weight "),
        "{}",
        r.reason
    );

    // No service, no real server.
    let r = which(&mut c, alice, "192.0.2.99:80").await;
    assert_eq!(source(&r), ctl::WhichSource::NoService);
    assert!(r.service.is_none() && r.real_server.is_none());
    assert_eq!(
        r.reason,
        "no virtual service TCP 192.0.2.99:80 (nor a port-zero one on 192.0.2.99): \
         the packet would be dropped"
    );
    let r = c
        .which(ask(pb::Protocol::Udp, "198.51.100.7:5353", DNS))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(source(&r), ctl::WhichSource::NoRealServer);
    assert_eq!(r.service, key(pb::Protocol::Udp, DNS));
    assert!(r.real_server.is_none());
    assert_eq!(
        r.reason,
        "rr: no available real server among 2: 2 quiesced (weight 0): the packet would be dropped"
    );

    // A standby director says it would forward nothing.
    srv.state.dp.set_active(false);
    let r = which(&mut c, "198.51.100.9:1", WEB).await;
    assert!(
        r.reason
            .ends_with("this director is standby: it forwards nothing until it is master")
    );
    srv.state.dp.set_active(true);

    // Bad requests.
    for (req, says) in [
        (
            ctl::WhichRequest {
                client: None,
                ..ask(pb::Protocol::Tcp, alice, WEB)
            },
            "client address is missing",
        ),
        (
            ask(pb::Protocol::Tcp, "[2001:db8::1]:1", WEB),
            "IPv6 is not supported",
        ),
        (
            ctl::WhichRequest {
                vip: Some(pb::Endpoint {
                    ip: "192.0.2.10".into(),
                    port: 70_000,
                }),
                ..ask(pb::Protocol::Tcp, alice, WEB)
            },
            "port 70000 is out of range 0..=65535",
        ),
        (
            ctl::WhichRequest {
                client: Some(pb::Endpoint {
                    ip: "not-an-ip".into(),
                    port: 1,
                }),
                ..ask(pb::Protocol::Tcp, alice, WEB)
            },
            "\"not-an-ip\" is not an IP address",
        ),
    ] {
        let e = c.which(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(says), "{}", e.message());
    }
    srv.stop().await;
}

#[tokio::test]
async fn watch_streams_numbered_snapshots_and_stops_when_the_client_leaves() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    configure(&mut c).await;
    let baseline = Arc::strong_count(&srv.state);

    let mut stream = c
        .watch(ctl::WatchRequest {
            interval_ms: 100,
            include_services: true,
            service: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    for _ in 0..3 {
        let snap = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a snapshot every 100 ms")
            .unwrap()
            .expect("the stream goes on");
        assert_eq!(snap.sequence, last + 1, "1 for the first, then +1 each");
        last = snap.sequence;
        let node = snap.node.expect("node status in every snapshot");
        assert_eq!(node.node_name, "director-a");
        assert_eq!(snap.services.len(), 4, "every service");
        let web = &snap.services[0];
        assert_eq!(web.real_servers.len(), 2, "with its real servers");
        assert!(
            web.rates.is_some() && web.stats.is_some(),
            "rates and stats"
        );
    }
    assert!(
        Arc::strong_count(&srv.state) > baseline,
        "the watch task holds the state"
    );
    drop(stream);
    let gone = async {
        while Arc::strong_count(&srv.state) > baseline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the server's watch task ends when the client cancels");

    // One service only; an unknown one is refused up front.
    let mut one = c
        .watch(ctl::WatchRequest {
            interval_ms: 100,
            include_services: true,
            service: key(pb::Protocol::Tcp, STICKY),
        })
        .await
        .unwrap()
        .into_inner();
    let snap = one.message().await.unwrap().unwrap();
    assert_eq!(snap.services.len(), 1);
    assert_eq!(
        snap.services[0].spec.as_ref().unwrap().key,
        key(pb::Protocol::Tcp, STICKY)
    );
    drop(one);
    let e = c
        .watch(ctl::WatchRequest {
            interval_ms: 0,
            include_services: true,
            service: key(pb::Protocol::Tcp, "192.0.2.99:1"),
        })
        .await
        .expect_err("unknown service refused");
    assert_eq!(e.code(), Code::NotFound);
    srv.stop().await;
}

/// A director configured by `configure`, active, for the dirctl tests.
fn lab() -> DirctlLab {
    DirctlLab::start(async {
        let srv = Served::start(Vec::new()).await;
        configure(&mut srv.client().await).await;
        srv.state.dp.set_active(true);
        srv
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn dirctl_which_prints_the_answer_and_exits_by_it() {
    let lab = lab();
    let mut f = Feeder::new(&lab.srv().state);
    let carol = "203.0.113.7:40001";
    f.feed(lab.srv().now(), tcp(sa(carol), sa(STICKY), TcpFlags::SYN));
    let rs = pinned(lab.srv(), carol, STICKY);

    let out = lab.run("which --client 203.0.113.99:5555 -t 192.0.2.10:443");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "TCP 203.0.113.99:5555 -> 192.0.2.10:443 => {rs} Route\n\
             \x20 source     template\n\
             \x20 reason     template 203.0.113.0/24 -> {rs}, 300 s left\n\
             \x20 service    TCP 192.0.2.10:443 rr\n\
             \x20 template   203.0.113.0/24 -> {rs}, expires in 5m00s\n"
        )
    );

    let out = lab.run("which --client 203.0.113.7:40001 --service 192.0.2.10:443");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "TCP 203.0.113.7:40001 -> 192.0.2.10:443 => {rs} Route\n  source     connection\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  entry      203.0.113.7:40001 -> {rs}, SYN_RECV, expires in 1m00s\n"
        )),
        "{text}"
    );

    let out = lab.run("which -c 198.51.100.1 -t 192.0.2.10:8080");
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).starts_with(
            "TCP 198.51.100.1:0 -> 192.0.2.10:8080 => 10.0.0.21:8080 Route\n  source     scheduler\n  reason     rr: next in round-robin order among 3 available servers\n"
        ),
        "{}",
        stdout(&out)
    );

    // Dropped: exit 1, the answer still printed. `-u` alone makes
    // --service UDP; `-u VIP:PORT` names a UDP service.
    for line in [
        "which --client 198.51.100.1:5353 --service 192.0.2.53:53 -u",
        "which --client 198.51.100.1:5353 -u 192.0.2.53:53",
    ] {
        let out = lab.run(line);
        assert_eq!(out.status.code(), Some(1), "{line}: {out:?}");
        assert!(
            stdout(&out).starts_with(
                "UDP 198.51.100.1:5353 -> 192.0.2.53:53 => dropped: no real server\n  source     no real server\n"
            ),
            "{line}: {}",
            stdout(&out)
        );
    }
    let out = lab.run("which --client 198.51.100.1:1 -t 192.0.2.99:80");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("source     no service"));

    // Refusals: the director's sentence on stderr.
    let out = lab.run("which --client [2001:db8::1]:1 -t 192.0.2.10:80");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("IPv6 is not supported"),
        "{out:?}"
    );
    let out = lab.run("which --client 198.51.100.1:1");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("which service?"));
    let out = lab.run("which --client 198.51.100.1:99999 -t 192.0.2.10:80");
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad port");
}

#[test]
fn dirctl_watch_prints_one_block_per_snapshot_when_not_a_terminal() {
    let lab = lab();
    let out = lab.run("watch --interval 100 --count 2");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "no escape codes into a pipe");
    let blocks: Vec<&str> = text.split("\n\n").collect();
    // Each snapshot: the node lines, a blank line, the service table.
    assert_eq!(blocks.len(), 4, "two snapshots of two parts: {text}");
    for (i, b) in [blocks[0], blocks[2]].iter().enumerate() {
        let lines: Vec<&str> = b.lines().collect();
        assert!(
            lines[0].starts_with(&format!("node director-a  snapshot {}  up ", i + 1)),
            "{b}"
        );
        assert!(lines[0].ends_with("dataplane active"), "{b}");
        assert_eq!(lines[1], "vrrp: not configured");
        assert_eq!(lines[2], "sync: not configured");
        assert_eq!(
            lines[3],
            "connections: 0 (active 0, inactive 0, templates 0, synced 0)"
        );
    }
    let table: Vec<&str> = blocks[1].lines().collect();
    assert_eq!(table[0], director::cli::watch::table_title());
    assert!(
        table[1].starts_with("TCP  192.0.2.10:80 wlc "),
        "{}",
        table[1]
    );
    assert!(
        table[2].starts_with("  -> 10.0.0.21:80                             1        0         0"),
        "{}",
        table[2]
    );
    assert_eq!(table.len(), 1 + 4 + 9, "title, 4 services, 9 real servers");

    let out = lab.run("watch --interval 100 --count 1 -u 192.0.2.53:53");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("UDP  192.0.2.53:53 rr"), "{text}");
    assert!(!text.contains("192.0.2.10:80"), "{text}");
}
