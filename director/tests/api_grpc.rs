//! The control API end to end: a real tonic server on 127.0.0.1:0 over a
//! dataplane, a real tonic client. Every mutation is checked through the
//! listing and the running table; every bad request gets its status code
//! and sentence and leaves the configuration exactly as it was.

mod api_util;

use std::collections::HashSet;
use std::net::SocketAddr;

use api_util::{Feeder, Served, ep, key, tcp, udp};
use director::TcpFlags;
use director::dataplane::Action;
use director::forward::Verdict;
use lb_proto::common as pb;
use lb_proto::control as ctl;
use lb_proto::control::control_client::ControlClient;
use tonic::Code;
use tonic::transport::Channel;

fn tcp_key(vip: &str) -> Option<pb::ServiceKey> {
    key(pb::Protocol::Tcp, vip)
}

fn spec(vip: &str, sched: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        key: tcp_key(vip),
        scheduler: sched.into(),
        ..Default::default()
    }
}

fn rs(addr: &str, method: pb::ForwardMethod, weight: u32) -> pb::RealServerSpec {
    pb::RealServerSpec {
        address: ep(addr),
        method: method as i32,
        weight: Some(weight),
        ..Default::default()
    }
}

fn all_options() -> Option<ctl::ListOptions> {
    Some(ctl::ListOptions {
        include_real_servers: true,
        include_stats: true,
        include_rates: false,
        include_health: false,
    })
}

async fn list(c: &mut ControlClient<Channel>) -> ctl::ListServicesResponse {
    c.list_services(ctl::ListServicesRequest {
        options: all_options(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn add(c: &mut ControlClient<Channel>, spec: pb::ServiceSpec, rss: Vec<pb::RealServerSpec>) {
    c.add_service(ctl::AddServiceRequest {
        spec: Some(spec),
        real_servers: rss,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn services_and_real_servers_add_edit_delete_and_list() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;

    let v1 = c
        .add_service(ctl::AddServiceRequest {
            spec: Some(spec("192.0.2.10:80", "rr")),
            real_servers: vec![rs("10.0.0.21:80", pb::ForwardMethod::Dr, 2)],
        })
        .await
        .unwrap()
        .into_inner()
        .config_version;
    assert!(v1 >= 1);

    // The running table has it too.
    let table = srv.state.dp.services();
    let svc = table
        .get(director::Protocol::Tcp, "192.0.2.10:80".parse().unwrap())
        .expect("service in the dataplane");
    assert_eq!(svc.dests.len(), 1);
    assert_eq!(svc.dests[0].weight(), 2);
    assert_eq!(table.version(), v1);

    // Real servers: NAT may map ports; port 0 means the virtual port.
    let v2 = c
        .add_real_server(ctl::AddRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.22:8080", pb::ForwardMethod::Nat, 1)),
        })
        .await
        .unwrap()
        .into_inner()
        .config_version;
    assert!(v2 > v1);
    c.add_real_server(ctl::AddRealServerRequest {
        service: tcp_key("192.0.2.10:80"),
        real_server: Some(pb::RealServerSpec {
            address: ep("10.0.0.23:0"),
            ..Default::default()
        }),
    })
    .await
    .unwrap();

    let l = list(&mut c).await;
    assert_eq!(l.services.len(), 1);
    let s = &l.services[0];
    assert_eq!(s.spec.as_ref().unwrap().scheduler, "rr");
    let addrs: Vec<_> = s
        .real_servers
        .iter()
        .map(|r| {
            let spec = r.spec.as_ref().unwrap();
            let a = spec.address.as_ref().unwrap();
            (a.ip.clone(), a.port, spec.method, spec.weight)
        })
        .collect();
    assert_eq!(
        addrs,
        vec![
            (
                "10.0.0.21".into(),
                80,
                pb::ForwardMethod::Dr as i32,
                Some(2)
            ),
            (
                "10.0.0.22".into(),
                8080,
                pb::ForwardMethod::Nat as i32,
                Some(1)
            ),
            (
                "10.0.0.23".into(),
                80,
                pb::ForwardMethod::Dr as i32,
                Some(1)
            ),
        ]
    );
    assert!(s.stats.is_some(), "include_stats");

    // Edit the service: scheduler and persistence change, servers stay.
    let mut edited = spec("192.0.2.10:80", "wlc");
    edited.persistence = Some(pb::Persistence {
        timeout_s: 0,
        netmask_prefix_len: Some(24),
    });
    c.edit_service(ctl::EditServiceRequest { spec: Some(edited) })
        .await
        .unwrap();
    let got = c
        .get_service(ctl::GetServiceRequest {
            service: tcp_key("192.0.2.10:80"),
            options: all_options(),
        })
        .await
        .unwrap()
        .into_inner();
    let gs = got.spec.unwrap();
    assert_eq!(gs.scheduler, "wlc");
    assert_eq!(
        gs.persistence,
        Some(pb::Persistence {
            timeout_s: 360,
            netmask_prefix_len: Some(24)
        })
    );
    assert_eq!(got.real_servers.len(), 3, "ipvsadm -E keeps the servers");

    // Edit a real server, then delete one.
    c.edit_real_server(ctl::EditRealServerRequest {
        service: tcp_key("192.0.2.10:80"),
        real_server: Some(pb::RealServerSpec {
            address: ep("10.0.0.21:80"),
            weight: Some(0),
            upper_threshold: 100,
            lower_threshold: 10,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let d = srv
        .state
        .dp
        .services()
        .get(director::Protocol::Tcp, "192.0.2.10:80".parse().unwrap())
        .unwrap()
        .dest("10.0.0.21:80".parse().unwrap())
        .cloned()
        .unwrap();
    assert_eq!((d.weight(), d.thresholds()), (0, (100, 10)));
    c.delete_real_server(ctl::DeleteRealServerRequest {
        service: tcp_key("192.0.2.10:80"),
        address: ep("10.0.0.23:0"),
    })
    .await
    .unwrap();
    assert_eq!(list(&mut c).await.services[0].real_servers.len(), 2);

    // A second service, listed in key order (TCP before UDP, then VIP).
    add(
        &mut c,
        pb::ServiceSpec {
            key: key(pb::Protocol::Udp, "192.0.2.53:53"),
            ..Default::default()
        },
        vec![],
    )
    .await;
    add(&mut c, spec("192.0.2.9:443", "sh"), vec![]).await;
    let l = list(&mut c).await;
    let keys: Vec<_> = l
        .services
        .iter()
        .map(|s| {
            let k = s.spec.as_ref().unwrap().key.as_ref().unwrap();
            (k.protocol, k.vip.as_ref().unwrap().ip.clone())
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (pb::Protocol::Tcp as i32, "192.0.2.9".into()),
            (pb::Protocol::Tcp as i32, "192.0.2.10".into()),
            (pb::Protocol::Udp as i32, "192.0.2.53".into()),
        ]
    );
    assert_eq!(l.services[2].spec.as_ref().unwrap().scheduler, "wlc");
    assert_eq!(l.config_version, srv.state.config_version());

    c.delete_service(ctl::DeleteServiceRequest {
        service: tcp_key("192.0.2.9:443"),
    })
    .await
    .unwrap();
    assert_eq!(list(&mut c).await.services.len(), 2);
    let before = srv.state.config_version();
    let v = c
        .clear_services(ctl::ClearServicesRequest {})
        .await
        .unwrap()
        .into_inner()
        .config_version;
    assert!(v > before);
    assert!(list(&mut c).await.services.is_empty());
    assert!(srv.state.dp.services().is_empty());
    assert!(srv.state.specs().is_empty());
    srv.stop().await;
}

/// What must not move when a request is refused.
fn snapshot(srv: &Served) -> (Vec<director::ServiceSpec>, u64, Vec<director::DestSpec>) {
    let table = srv.state.dp.services();
    let running = table.specs().into_iter().flat_map(|s| s.dests).collect();
    (srv.state.specs(), table.version(), running)
}

#[tokio::test]
async fn every_bad_request_gets_its_code_and_sentence_and_changes_nothing() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    add(
        &mut c,
        spec("192.0.2.10:80", "rr"),
        vec![rs("10.0.0.21:80", pb::ForwardMethod::Dr, 1)],
    )
    .await;
    let before = snapshot(&srv);

    let mut checks: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = Vec::new();
    macro_rules! check {
        ($name:expr, $call:expr, $code:expr, $msg:expr) => {
            checks.push(($name, $call.await.map(|_| ()), $code, $msg));
        };
    }
    check!(
        "edit unknown service",
        c.edit_service(ctl::EditServiceRequest {
            spec: Some(spec("192.0.2.99:80", "rr"))
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "delete unknown service",
        c.delete_service(ctl::DeleteServiceRequest {
            service: tcp_key("192.0.2.10:81")
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "udp is another service",
        c.delete_service(ctl::DeleteServiceRequest {
            service: key(pb::Protocol::Udp, "192.0.2.10:80")
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "server of unknown service",
        c.add_real_server(ctl::AddRealServerRequest {
            service: tcp_key("192.0.2.99:80"),
            real_server: Some(rs("10.0.0.22:80", pb::ForwardMethod::Dr, 1)),
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "edit unknown server",
        c.edit_real_server(ctl::EditRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.22:80", pb::ForwardMethod::Dr, 1)),
        }),
        Code::NotFound,
        "No such destination"
    );
    check!(
        "delete unknown server",
        c.delete_real_server(ctl::DeleteRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            address: ep("10.0.0.21:81"),
        }),
        Code::NotFound,
        "No such destination"
    );
    check!(
        "duplicate service",
        c.add_service(ctl::AddServiceRequest {
            spec: Some(spec("192.0.2.10:80", "wlc")),
            real_servers: vec![],
        }),
        Code::AlreadyExists,
        "Service already exists"
    );
    check!(
        "duplicate server",
        c.add_real_server(ctl::AddRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.21:0", pb::ForwardMethod::Nat, 5)),
        }),
        Code::AlreadyExists,
        "Destination already exists"
    );
    let mut bad_ip = spec("192.0.2.11:80", "rr");
    bad_ip.key.as_mut().unwrap().vip.as_mut().unwrap().ip = "192.0.2.300".into();
    check!(
        "bad address",
        c.add_service(ctl::AddServiceRequest {
            spec: Some(bad_ip),
            real_servers: vec![],
        }),
        Code::InvalidArgument,
        "\"192.0.2.300\" is not an IP address"
    );
    let mut bad_port = spec("192.0.2.11:80", "rr");
    bad_port.key.as_mut().unwrap().vip.as_mut().unwrap().port = 70_000;
    check!(
        "bad port",
        c.add_service(ctl::AddServiceRequest {
            spec: Some(bad_port),
            real_servers: vec![],
        }),
        Code::InvalidArgument,
        "port 70000 is out of range 0..=65535"
    );
    check!(
        "weight 70000",
        c.edit_real_server(ctl::EditRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.21:80", pb::ForwardMethod::Dr, 70_000)),
        }),
        Code::InvalidArgument,
        "weight 70000 is out of range 0..=65535"
    );
    check!(
        "DR port mapping",
        c.add_real_server(ctl::AddRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.22:8080", pb::ForwardMethod::Dr, 1)),
        }),
        Code::InvalidArgument,
        "port mapping needs NAT"
    );
    check!(
        "TUN on the virtual port is fine",
        c.edit_real_server(ctl::EditRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(pb::RealServerSpec {
                address: ep("10.0.0.21:80"),
                method: pb::ForwardMethod::Tunnel as i32,
                ..Default::default()
            }),
        }),
        Code::Ok,
        ""
    );
    check!(
        "unknown scheduler",
        c.edit_service(ctl::EditServiceRequest {
            spec: Some(spec("192.0.2.10:80", "fastest"))
        }),
        Code::InvalidArgument,
        "unknown scheduler \"fastest\""
    );
    check!(
        "thresholds",
        c.edit_real_server(ctl::EditRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(pb::RealServerSpec {
                address: ep("10.0.0.21:80"),
                upper_threshold: 5,
                lower_threshold: 6,
                ..Default::default()
            }),
        }),
        Code::InvalidArgument,
        "lower threshold 6 is above upper threshold 5"
    );
    check!(
        "port 0 without persistence",
        c.add_service(ctl::AddServiceRequest {
            spec: Some(spec("192.0.2.11:0", "rr")),
            real_servers: vec![],
        }),
        Code::InvalidArgument,
        "needs persistence"
    );
    check!(
        "no key",
        c.delete_service(ctl::DeleteServiceRequest { service: None }),
        Code::InvalidArgument,
        "service key is missing"
    );
    check!(
        "fwmark",
        c.delete_service(ctl::DeleteServiceRequest {
            service: Some(pb::ServiceKey {
                fwmark: 7,
                ..Default::default()
            })
        }),
        Code::Unimplemented,
        "firewall-mark"
    );
    check!(
        "zero unknown",
        c.zero_counters(ctl::ZeroCountersRequest {
            service: tcp_key("192.0.2.99:80")
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "get unknown",
        c.get_service(ctl::GetServiceRequest {
            service: tcp_key("192.0.2.99:80"),
            options: None
        }),
        Code::NotFound,
        "No such service"
    );
    check!(
        "bad timeout",
        c.set_timeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 100,
                tcp_fin_timeout_s: 0,
                udp_timeout_s: 99_999_999,
            })
        }),
        Code::InvalidArgument,
        "udp timeout 99999999 s is out of range"
    );
    check!(
        "synced and local",
        c.list_connections(ctl::ListConnectionsRequest {
            only_synced: true,
            only_local: true,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "exclude each other"
    );
    check!(
        "page too big",
        c.list_connections(ctl::ListConnectionsRequest {
            page_size: 10_001,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "page_size 10001"
    );
    check!(
        "junk token",
        c.list_connections(ctl::ListConnectionsRequest {
            page_token: "junk".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "page_token"
    );
    check!(
        "empty rule op",
        c.apply_rules(ctl::ApplyRulesRequest {
            ops: vec![ctl::RuleOp { op: None }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "op 0: "
    );

    let mut failures = Vec::new();
    for (name, got, code, msg) in checks {
        let (got_code, got_msg) = match &got {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_owned()),
        };
        if got_code != code || !got_msg.contains(msg) {
            failures.push(format!(
                "{name}: got {got_code:?} {got_msg:?}, want {code:?} containing {msg:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The one request that was fine (TUN on the same port) changed the
    // method; put it back and the configuration must equal the start.
    c.edit_real_server(ctl::EditRealServerRequest {
        service: tcp_key("192.0.2.10:80"),
        real_server: Some(rs("10.0.0.21:80", pb::ForwardMethod::Dr, 1)),
    })
    .await
    .unwrap();
    let after = snapshot(&srv);
    assert_eq!(after.0, before.0, "configured specs unchanged");
    assert_eq!(after.2, before.2, "running real servers unchanged");
    assert_eq!(
        after.1,
        before.1 + 2,
        "only the two accepted edits published versions"
    );
    let t = c
        .get_timeouts(ctl::GetTimeoutsRequest {})
        .await
        .unwrap()
        .into_inner()
        .timeouts
        .unwrap();
    assert_eq!(
        (t.tcp_timeout_s, t.tcp_fin_timeout_s, t.udp_timeout_s),
        (900, 120, 300),
        "a refused --set changes no timeout"
    );
    srv.stop().await;
}

#[tokio::test]
async fn connections_are_listed_filtered_and_paged_and_counters_zeroed() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    let mut web = spec("192.0.2.10:80", "rr");
    web.persistence = Some(pb::Persistence {
        timeout_s: 600,
        netmask_prefix_len: Some(24),
    });
    add(
        &mut c,
        web,
        vec![
            rs("10.0.0.21:80", pb::ForwardMethod::Dr, 1),
            rs("10.0.0.22:80", pb::ForwardMethod::Dr, 1),
        ],
    )
    .await;
    add(
        &mut c,
        pb::ServiceSpec {
            key: key(pb::Protocol::Udp, "192.0.2.53:53"),
            scheduler: "rr".into(),
            ..Default::default()
        },
        vec![rs("10.0.0.31:53", pb::ForwardMethod::Dr, 1)],
    )
    .await;
    srv.state.dp.set_active(true);

    let vip: SocketAddr = "192.0.2.10:80".parse().unwrap();
    let dns: SocketAddr = "192.0.2.53:53".parse().unwrap();
    let mut f = Feeder::new(&srv.state);
    let now = srv.now();
    // Five TCP clients in two /24s, three UDP flows.
    let tcp_clients = [
        "203.0.113.7:40001",
        "203.0.113.7:40002",
        "203.0.113.8:40003",
        "198.51.100.1:50000",
        "198.51.100.2:50001",
    ];
    for cl in tcp_clients {
        let a = f.feed(now, tcp(cl.parse().unwrap(), vip, TcpFlags::SYN));
        assert!(
            matches!(
                a,
                Action::Handled {
                    verdict: Verdict::Transmit { .. },
                    ..
                }
            ),
            "{a:?}"
        );
    }
    for p in [1000, 1001, 1002] {
        let cl = SocketAddr::new("203.0.113.9".parse().unwrap(), p);
        f.feed(now, udp(cl, dns, b"query"));
    }
    // 5 TCP flows + 2 templates + 3 UDP flows.
    assert_eq!(srv.state.dp.conns().len(), 10);
    srv.advance(1_500);

    let page = |token: String, size: u32, templates: bool| ctl::ListConnectionsRequest {
        include_templates: templates,
        page_size: size,
        page_token: token,
        ..Default::default()
    };
    // Whole table, in pages of 3: each entry exactly once.
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c
            .list_connections(page(token, 3, true))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.table_size, 10);
        assert!(r.connections.len() <= 3);
        pages += 1;
        for conn in r.connections {
            let e = conn.entry.clone().unwrap();
            let id = format!(
                "{:?}|{:?}|{:?}|{}",
                e.protocol,
                e.client,
                e.vip,
                e.flags & 1
            );
            assert!(seen.insert(id), "listed twice: {conn:?}");
            all.push(conn);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(all.len(), 10);
    assert_eq!(pages, 4);

    // Templates first, with ipvsadm's state names and flags.
    let templates: Vec<_> = all
        .iter()
        .filter(|c| c.entry.as_ref().unwrap().flags & pb::ConnFlag::Template as u32 != 0)
        .collect();
    assert_eq!(templates.len(), 2);
    assert!(all[..2].iter().all(|c| templates.contains(&c)));
    for t in &templates {
        let e = t.entry.as_ref().unwrap();
        assert_eq!(t.state_name, "NONE");
        assert_eq!(e.state, pb::ConnState::None as i32);
        assert_eq!(e.client.as_ref().unwrap().port, 0);
        assert_ne!(e.flags & pb::ConnFlag::NoCport as u32, 0);
        assert_eq!(e.persistence_prefix_len, Some(24));
        assert!(e.client.as_ref().unwrap().ip.ends_with(".0"), "{e:?}");
    }
    let tcp_flows: Vec<_> = all.iter().filter(|c| c.state_name == "SYN_RECV").collect();
    assert_eq!(tcp_flows.len(), 5);
    for fl in &tcp_flows {
        let e = fl.entry.as_ref().unwrap();
        assert_eq!(
            e.remaining_timeout_ms,
            60_000 - 1_500,
            "SYN_RECV 60 s, 1.5 s gone"
        );
        assert!(e.template.is_some(), "persistent flows name their template");
        assert_ne!(e.flags & pb::ConnFlag::NoOutput as u32, 0, "DR: no output");
        assert_eq!(e.method, pb::ForwardMethod::Dr as i32);
    }
    let udp_flows: Vec<_> = all.iter().filter(|c| c.state_name == "UDP").collect();
    assert_eq!(udp_flows.len(), 3);
    assert_eq!(
        udp_flows[0].entry.as_ref().unwrap().state,
        pb::ConnState::Udp as i32
    );

    // Filters.
    let count = |r: ctl::ListConnectionsResponse| r.connections.len();
    let by_service = c
        .list_connections(ctl::ListConnectionsRequest {
            service: key(pb::Protocol::Udp, "192.0.2.53:53"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(by_service), 3);
    let no_templates = c
        .list_connections(page(String::new(), 0, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(no_templates), 8);
    let by_client = c
        .list_connections(ctl::ListConnectionsRequest {
            client: Some(pb::Endpoint {
                ip: "203.0.113.7".into(),
                port: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(by_client), 2);
    let by_client_port = c
        .list_connections(ctl::ListConnectionsRequest {
            client: Some(pb::Endpoint {
                ip: String::new(),
                port: 50000,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(by_client_port), 1);
    let rs21 = c
        .list_connections(ctl::ListConnectionsRequest {
            real_server: Some(pb::Endpoint {
                ip: "10.0.0.31".into(),
                port: 0,
            }),
            include_templates: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(rs21), 3);
    let synced = c
        .list_connections(ctl::ListConnectionsRequest {
            only_synced: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        count(synced),
        0,
        "every entry here was scheduled by this node, none learned from sync"
    );
    let local = c
        .list_connections(ctl::ListConnectionsRequest {
            only_local: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(local), 8, "all of them local");
    // A token is bound to its filters.
    let first = c
        .list_connections(page(String::new(), 2, true))
        .await
        .unwrap()
        .into_inner();
    let err = c
        .list_connections(page(first.next_page_token, 2, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Counters and connection counts in the listing.
    let l = list(&mut c).await;
    let web = &l.services[0];
    assert_eq!(web.stats.unwrap().conns, 5);
    assert_eq!(web.stats.unwrap().in_packets, 5);
    assert_eq!(web.active_conns, 5, "SYN_RECV is active");
    assert_eq!(web.persistent_conns, 2);
    let per_rs: u64 = web
        .real_servers
        .iter()
        .map(|r| r.stats.unwrap().conns)
        .sum();
    assert_eq!(per_rs, 5);
    let dns_info = &l.services[1];
    assert_eq!(dns_info.inactive_conns, 3, "UDP flows are inactive");

    // -Z for one service, then for all.
    let z = c
        .zero_counters(ctl::ZeroCountersRequest {
            service: key(pb::Protocol::Udp, "192.0.2.53:53"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(z.services_zeroed, 1);
    let l = list(&mut c).await;
    assert_eq!(l.services[0].stats.unwrap().conns, 5);
    assert_eq!(l.services[1].stats.unwrap(), pb::Stats::default());
    assert_eq!(
        l.services[1].real_servers[0].stats.unwrap(),
        pb::Stats::default()
    );
    let z = c
        .zero_counters(ctl::ZeroCountersRequest { service: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(z.services_zeroed, 2);
    let l = list(&mut c).await;
    assert_eq!(l.services[0].stats.unwrap(), pb::Stats::default());
    assert_eq!(l.services[0].active_conns, 5, "-Z leaves connections");

    // Deleting a real server flags its connections.
    c.delete_service(ctl::DeleteServiceRequest {
        service: key(pb::Protocol::Udp, "192.0.2.53:53"),
    })
    .await
    .unwrap();
    let orphans = c
        .list_connections(ctl::ListConnectionsRequest {
            client: Some(pb::Endpoint {
                ip: "203.0.113.9".into(),
                port: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(orphans.connections.len(), 3, "they keep forwarding");
    for o in orphans.connections {
        assert_ne!(o.entry.unwrap().flags & pb::ConnFlag::DestRemoved as u32, 0);
    }
    srv.stop().await;
}

#[tokio::test]
async fn timeouts_are_read_and_set_at_run_time() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    let t = c
        .get_timeouts(ctl::GetTimeoutsRequest {})
        .await
        .unwrap()
        .into_inner();
    let tt = t.timeouts.unwrap();
    assert_eq!(
        (tt.tcp_timeout_s, tt.tcp_fin_timeout_s, tt.udp_timeout_s),
        (900, 120, 300)
    );
    assert_eq!(t.state_timeouts.len(), 12);
    let v0 = t.config_version;

    let r = c
        .set_timeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 3600,
                tcp_fin_timeout_s: 0,
                udp_timeout_s: 10,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let rt = r.timeouts.unwrap();
    assert_eq!(
        (rt.tcp_timeout_s, rt.tcp_fin_timeout_s, rt.udp_timeout_s),
        (3600, 120, 10),
        "0 = unchanged"
    );
    assert!(r.config_version > v0, "timeouts are part of the rule set");
    let est = r
        .state_timeouts
        .iter()
        .find(|s| s.state == pb::ConnState::Established as i32)
        .unwrap();
    assert_eq!(est.timeout_s, 3600);
    let (tcp, fin, udp) = srv.state.dp.conns().timeouts().ipvsadm();
    assert_eq!(
        (tcp.as_secs(), fin.as_secs(), udp.as_secs()),
        (3600, 120, 10),
        "the connection table uses them"
    );
    srv.stop().await;
}

#[tokio::test]
async fn node_status_reports_name_uptime_mode_counts_and_drops() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    add(
        &mut c,
        spec("192.0.2.10:80", "rr"),
        vec![rs("10.0.0.21:80", pb::ForwardMethod::Dr, 1)],
    )
    .await;
    let vip: SocketAddr = "192.0.2.10:80".parse().unwrap();
    let mut f = Feeder::new(&srv.state);
    // Standby: VIP traffic is dropped and counted.
    f.feed(
        srv.now(),
        tcp("203.0.113.7:40000".parse().unwrap(), vip, TcpFlags::SYN),
    );
    f.feed(
        srv.now(),
        tcp("203.0.113.7:40001".parse().unwrap(), vip, TcpFlags::SYN),
    );
    srv.advance(2_500);
    let s = c
        .get_node_status(ctl::GetNodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.node_name, "director-a");
    assert_eq!(s.uptime_ms, 2_500);
    assert!(s.now_unix_ms > 1_600_000_000_000);
    assert_eq!(s.config_version, srv.state.config_version());
    let dp = s.dataplane.unwrap();
    assert_eq!(dp.mode, ctl::DataplaneMode::Standby as i32);
    assert_eq!(dp.dropped_packets, 2);
    assert_eq!(dp.drops.len(), 1);
    assert_eq!(dp.drops[0].reason, "standby");
    assert_eq!(dp.drops[0].packets, 2);
    assert!(s.vrrp_instances.is_empty() && s.sync.is_none());

    srv.state.dp.set_active(true);
    f.feed(
        srv.now(),
        tcp("203.0.113.7:40002".parse().unwrap(), vip, TcpFlags::SYN),
    );
    let s = c
        .get_node_status(ctl::GetNodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.dataplane.unwrap().mode, ctl::DataplaneMode::Active as i32);
    let n = s.connections.unwrap();
    assert_eq!((n.total, n.active, n.inactive, n.templates), (1, 1, 0, 0));
    srv.stop().await;
}

#[tokio::test]
async fn replace_specs_is_all_or_nothing_and_visible_over_the_api() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    add(&mut c, spec("192.0.2.10:80", "rr"), vec![]).await;
    let before = srv.state.specs();
    let mut bad = before.clone();
    bad.push(bad[0].clone());
    assert!(srv.state.replace_specs(bad).is_err());
    assert_eq!(srv.state.specs(), before);
    let mut good = before.clone();
    good[0].scheduler = director::sched::SchedulerKind::Wrr;
    let v = srv.state.replace_specs(good).unwrap();
    let l = list(&mut c).await;
    assert_eq!(l.config_version, v);
    assert_eq!(l.services[0].spec.as_ref().unwrap().scheduler, "wrr");
    srv.stop().await;
}

/// The pair side of a node that is a sync backup: its rules come from the
/// master. (The lab test `pair_ops_lab` shows the same with two directord.)
#[derive(Debug)]
struct Backup;

impl director::api::PairView for Backup {
    fn vrrp_instances(&self) -> Vec<ctl::VrrpInstanceStatus> {
        Vec::new()
    }
    fn rules_master(&self) -> Option<String> {
        Some("director-a (10.42.0.2:7401)".into())
    }
}

#[tokio::test]
async fn a_sync_backup_refuses_rule_changes_naming_its_master() {
    let srv = Served::start(Vec::new()).await;
    let mut c = srv.client().await;
    // No VRRP yet: failover has no peer to go to.
    let e = c
        .failover(ctl::FailoverRequest::default())
        .await
        .expect_err("no VRRP, no failover");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("no VRRP"), "{}", e.message());

    add(&mut c, spec("192.0.2.10:80", "rr"), vec![]).await;
    srv.state.set_pair(std::sync::Arc::new(Backup));
    let before = snapshot(&srv);
    let refused = |e: tonic::Status| {
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains("sync backup")
                && e.message().contains("director-a (10.42.0.2:7401)"),
            "{}",
            e.message()
        );
    };
    refused(
        c.add_service(ctl::AddServiceRequest {
            spec: Some(spec("192.0.2.11:80", "rr")),
            real_servers: vec![],
        })
        .await
        .unwrap_err(),
    );
    refused(
        c.add_real_server(ctl::AddRealServerRequest {
            service: tcp_key("192.0.2.10:80"),
            real_server: Some(rs("10.0.0.1:80", pb::ForwardMethod::Dr, 1)),
        })
        .await
        .unwrap_err(),
    );
    refused(
        c.set_timeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 60,
                tcp_fin_timeout_s: 0,
                udp_timeout_s: 0,
            }),
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(snapshot(&srv), before, "nothing applied on the backup");
    // Reading is fine.
    assert_eq!(list(&mut c).await.services.len(), 1);
    srv.stop().await;
}
