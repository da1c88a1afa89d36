//! The health monitor driving a real control state, without root: real
//! servers are TCP listeners on loopback (NAT, so ports may differ), the
//! monitor runs on tokio with real time, and everything is read back over
//! the gRPC API as `dirctl` would — health states, configured versus
//! effective weight (an operator's edit while down is what returns), the
//! sorry server while quorum is lost, and reconciliation on reload.

// Waiting on real time is what this test is about.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use director::api::{self, ControlState};
use director::dataplane::{Dataplane, DataplaneConfig};
use director::forward::MacAddr;
use director::health::{
    CheckSpec, CommandLine, HealthPlan, Monitor, OnFailure, Probe, ServiceHealth, Timing,
};
use director::sched::{SchedOptions, SchedulerKind};
use director::{DestSpec, ForwardMethod, Millis, Protocol, ServiceKey, ServiceSpec};
use lb_proto::common as pb;
use lb_proto::control::{self as ctl, control_client::ControlClient};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const LIMIT: Duration = Duration::from_secs(10);

fn key() -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        vip: "10.0.0.100:80".parse().unwrap(),
    }
}

fn nat(addr: SocketAddr, weight: i32) -> DestSpec {
    DestSpec {
        addr,
        method: ForwardMethod::Masquerade,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

/// `echo "$@" >> log`: a command that records its arguments.
fn record(log: &std::path::Path) -> Option<CommandLine> {
    Some(CommandLine::shell(&format!(
        "echo \"$@\" >> {}",
        log.display()
    )))
}

fn plan(sorry: SocketAddr, logs: &std::path::Path) -> HealthPlan {
    let check = CheckSpec {
        probe: Probe::Tcp,
        port: None,
        timing: Timing {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            retry_delay: Duration::from_millis(50),
            fall: 2,
            rise: 1,
        },
        on_failure: OnFailure::Quiesce,
        notify_up: record(&logs.join("notify.log")),
        notify_down: record(&logs.join("notify.log")),
    };
    let mut p = HealthPlan::none();
    p.services.insert(
        key(),
        ServiceHealth {
            check: Some(Arc::new(check)),
            sorry_server: Some(nat(sorry, 1)),
            quorum: 1,
            quorum_up: record(&logs.join("quorum.log")),
            quorum_down: record(&logs.join("quorum.log")),
            ..ServiceHealth::default()
        },
    );
    p
}

async fn health(c: &mut ControlClient<Channel>) -> ctl::GetHealthResponse {
    c.get_health(ctl::GetHealthRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// (state, configured, effective) of `addr`.
fn of(h: &ctl::GetHealthResponse, addr: SocketAddr) -> (ctl::HealthState, u32, u32) {
    let e = h
        .entries
        .iter()
        .find(|e| {
            e.real_server
                .as_ref()
                .is_some_and(|ep| ep.port == u32::from(addr.port()))
        })
        .unwrap_or_else(|| panic!("{addr} not in {h:?}"));
    let rs = e.health.clone().unwrap();
    (rs.state(), rs.configured_weight, rs.effective_weight)
}

async fn wait_for(
    c: &mut ControlClient<Channel>,
    what: &str,
    ok: impl Fn(&ctl::GetHealthResponse) -> bool,
) -> ctl::GetHealthResponse {
    let t0 = Instant::now();
    loop {
        let h = health(c).await;
        if ok(&h) {
            return h;
        }
        assert!(t0.elapsed() < LIMIT, "{what} within {LIMIT:?}: {h:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Real servers listed for the service: (port, effective weight).
async fn listed(c: &mut ControlClient<Channel>) -> Vec<(u32, u32)> {
    let all = c
        .list_services(ctl::ListServicesRequest {
            options: Some(ctl::ListOptions {
                include_real_servers: true,
                include_health: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    all.services[0]
        .real_servers
        .iter()
        .map(|r| {
            (
                r.spec.as_ref().unwrap().address.as_ref().unwrap().port,
                r.effective_weight,
            )
        })
        .collect()
}

#[tokio::test]
async fn verdicts_move_effective_weights_never_configured_ones() {
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = la.local_addr().unwrap();
    let b = lb.local_addr().unwrap();
    let sorry: SocketAddr = "127.0.0.3:8080".parse().unwrap();
    let logs = std::env::temp_dir().join(format!("health-api-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let specs = vec![ServiceSpec {
        key: key(),
        scheduler: SchedulerKind::Wrr,
        sched_opts: SchedOptions::default(),
        persistence: None,
        dests: vec![nat(a, 1), nat(b, 1)],
    }];
    let dp = Arc::new(Dataplane::new(DataplaneConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        "10.0.0.1".parse().unwrap(),
    )));
    dp.apply(&specs).unwrap();
    let start = Instant::now();
    let clock: api::Clock = Arc::new(move || Millis(start.elapsed().as_millis() as u64));
    let state = Arc::new(
        ControlState::new("a", Arc::clone(&dp), specs.clone(), clock)
            .with_health(plan(sorry, &logs))
            .unwrap(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let monitor = tokio::spawn(Monitor::new(Arc::clone(&state), 4).run(async {
        let _ = stop_rx.await;
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let (srv_tx, srv_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve_listener(listener, Arc::clone(&state), async {
        let _ = srv_rx.await;
    }));
    let mut c = ControlClient::connect(format!("http://{api_addr}"))
        .await
        .unwrap();

    use ctl::HealthState::{Down, Unchecked, Up};
    wait_for(&mut c, "both up", |h| of(h, a).0 == Up && of(h, b).0 == Up).await;

    // a's listener goes: refused, down after 2 failures, effective weight 0.
    drop(la);
    let h = wait_for(&mut c, "a down", |h| of(h, a).0 == Down).await;
    assert_eq!(of(&h, a), (Down, 1, 0));
    let rs = h
        .entries
        .iter()
        .find(|e| e.real_server.as_ref().unwrap().port == u32::from(a.port()));
    let detail = rs.unwrap().health.clone().unwrap();
    assert_eq!(detail.last_failure_reason, "connect: connection refused");
    assert_eq!(detail.checker, "tcp connect");
    assert!(
        detail
            .recent_transitions
            .iter()
            .any(|t| t.reason.starts_with("2 consecutive failures"))
    );
    assert_eq!(
        listed(&mut c).await,
        vec![(u32::from(a.port()), 0), (u32::from(b.port()), 1)],
        "the listing shows the effective weight"
    );
    assert_eq!(state.specs(), specs, "the configuration is untouched");
    let live = dp.services();
    let svc = live.get(Protocol::Tcp, key().vip).unwrap();
    assert_eq!(svc.dest(a).unwrap().weight(), 0, "the dataplane uses 0");

    // The operator sets a's weight while it is down.
    c.edit_real_server(ctl::EditRealServerRequest {
        service: Some(api::convert::to_service_key(key())),
        real_server: Some(pb::RealServerSpec {
            address: Some(api::convert::to_endpoint(a)),
            method: pb::ForwardMethod::Nat as i32,
            weight: Some(5),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let h = health(&mut c).await;
    assert_eq!(of(&h, a), (Down, 5, 0), "configured 5, still held at 0");

    // b goes too: quorum lost, the sorry server takes over.
    drop(lb);
    let h = wait_for(&mut c, "quorum lost", |h| {
        h.services.first().is_some_and(|s| !s.quorum_up)
    })
    .await;
    assert!(h.services[0].sorry_server_active);
    assert_eq!(
        listed(&mut c).await,
        vec![
            (u32::from(a.port()), 0),
            (u32::from(b.port()), 0),
            (8080, 1)
        ],
        "the sorry server is listed while in use"
    );

    // a is back: up with the operator's weight; the sorry server leaves.
    let _la = TcpListener::bind(a).await.unwrap();
    let h = wait_for(&mut c, "a up", |h| of(h, a).0 == Up).await;
    assert_eq!(of(&h, a), (Up, 5, 5));
    let h = wait_for(&mut c, "quorum back", |h| h.services[0].quorum_up).await;
    assert!(!h.services[0].sorry_server_active);
    assert_eq!(
        listed(&mut c).await,
        vec![(u32::from(a.port()), 5), (u32::from(b.port()), 0)]
    );

    // A real server may not be the sorry server.
    let e = c
        .add_real_server(ctl::AddRealServerRequest {
            service: Some(api::convert::to_service_key(key())),
            real_server: Some(pb::RealServerSpec {
                address: Some(api::convert::to_endpoint(sorry)),
                method: pb::ForwardMethod::Nat as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("sorry server"), "{}", e.message());

    // Reload without checks: every verdict goes, weights as configured.
    state
        .replace_config(state.specs(), HealthPlan::none())
        .unwrap();
    let h = wait_for(&mut c, "unchecked", |h| of(h, b).0 == Unchecked).await;
    assert_eq!(of(&h, b), (Unchecked, 1, 1), "b's weight comes back");
    assert!(h.services.is_empty());
    let counters = state.health.counters.snapshot();
    assert!(
        counters.checks > 0 && counters.failures >= 4 && counters.went_down >= 2,
        "{counters:?}"
    );

    // The notify and quorum commands ran with their arguments.
    let want_notify = [
        format!("{a} tcp/10.0.0.100:80 up"),
        format!("{a} tcp/10.0.0.100:80 down"),
        format!("{b} tcp/10.0.0.100:80 down"),
    ];
    let want_quorum = ["tcp/10.0.0.100:80 down", "tcp/10.0.0.100:80 up"];
    let t0 = Instant::now();
    loop {
        let notify = std::fs::read_to_string(logs.join("notify.log")).unwrap_or_default();
        let quorum = std::fs::read_to_string(logs.join("quorum.log")).unwrap_or_default();
        let done = want_notify.iter().all(|w| notify.lines().any(|l| l == w))
            && quorum.lines().collect::<Vec<_>>() == want_quorum;
        if done {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "notify:\n{notify}\nquorum:\n{quorum}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(&logs);

    let _ = stop_tx.send(());
    monitor.await.unwrap();
    let _ = srv_tx.send(());
    server.await.unwrap().unwrap();
}
