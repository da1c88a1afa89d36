//! The tonic layer over real TCP on 127.0.0.1 (ephemeral ports): a
//! [`SyncServer`] serving an in-memory table, a [`Subscriber`] applying into
//! another, sometimes through a small TCP proxy the test can cut to force a
//! reconnect or to point at a restarted master. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb_proto::common::{ServiceTable, VrrpState};
use lb_proto::sync::conn_sync_client::ConnSyncClient;
use lb_proto::sync::{
    Hello, MasterMessage, SubscriberMessage, SyncErrorCode, VrrpBeat, master_message,
    subscriber_message,
};
use syncd::mem::{self, MemTable};
use syncd::{
    ConnSink, HandoverError, MasterConfig, Publisher, Subscriber, SubscriberConfig, SyncServer,
    TlsConfig,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::{Proxy, node, until};

fn master_cfg() -> MasterConfig {
    MasterConfig {
        heartbeat_interval: Duration::from_millis(100),
        node_view: Some(Arc::new(|| syncd::NodeBeat {
            instances: vec![VrrpBeat {
                vrid: 51,
                name: "VI_1".into(),
                state: VrrpState::Master as i32,
                priority: 150,
                effective_priority: 150,
            }],
            uptime_ms: 65_000,
            connections: 1_000,
        })),
        ..Default::default()
    }
}

fn sub_cfg(addr: SocketAddr) -> SubscriberConfig {
    SubscriberConfig {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..SubscriberConfig::new(addr.to_string())
    }
}

struct Master {
    server: SyncServer,
    publisher: Publisher,
    table: Arc<MemTable>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Master {
    /// Applies locally and publishes, as the dataplane does.
    fn change(&self, ev: lb_proto::sync::SyncEvent) {
        self.table.apply_local(ev.clone());
        self.publisher.push(ev);
    }

    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.server.set_serving(false);
        self.task.abort();
    }
}

async fn start_master(table: Arc<MemTable>, tls: Option<TlsConfig>, serving: bool) -> Master {
    start_master_with(table, tls, serving, master_cfg()).await
}

async fn start_master_with(
    table: Arc<MemTable>,
    tls: Option<TlsConfig>,
    serving: bool,
    cfg: MasterConfig,
) -> Master {
    let (server, publisher) = SyncServer::new(node("a"), table.clone(), cfg);
    if serving {
        server.set_serving(true);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.serve(listener, tls.as_ref(), async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    Master {
        server,
        publisher,
        table,
        addr,
        stop: Some(stop),
        task,
    }
}

fn equal(a: &MemTable, b: &MemTable) -> bool {
    mem::diff(&a.snapshot_map(), &b.snapshot_map()).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_10k_then_deltas() {
    let table = Arc::new(MemTable::with_entries((0..10_000).map(mem::flow_entry)));
    table.set_service_table(ServiceTable {
        version: 3,
        ..Default::default()
    });
    let m = start_master(table.clone(), None, true).await;
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(m.addr), sink.clone());
    until("10k entries synced", 10, || sink.len() == 10_000).await;
    let st = sub.status();
    assert!(st.connected);
    assert_eq!(st.snapshots_applied, 1);
    assert_eq!(st.last_snapshot.unwrap().entries, 10_000);
    assert_eq!(st.master_node_name, "dir-a");
    assert_eq!(sink.table().version, 3, "the rule set is replicated");

    for i in 10_000..11_000 {
        m.change(mem::flow_new(i));
    }
    for i in 0..500 {
        m.change(mem::flow_expire(i));
    }
    for i in 500..600 {
        m.change(mem::flow_update(
            i,
            lb_proto::common::ConnState::FinWait,
            120_000,
        ));
    }
    until("deltas applied", 10, || equal(&table, &sink)).await;
    until("master sees lag zero", 5, || {
        let s = m.server.status();
        s.subscribers.len() == 1
            && s.subscribers[0].entries_behind == 0
            && s.subscribers[0].acked_sequence == s.last_sequence
    })
    .await;
    let s = m.server.status().subscribers[0].clone();
    assert_eq!(s.node_name, "dir-b");
    assert_eq!(s.snapshots_sent, 1);
    assert!(
        s.bytes_sent > 10_000 * 30,
        "bytes counted: {}",
        s.bytes_sent
    );
    assert!(s.last_snapshot_duration.is_some());

    // The rule set follows changes.
    table.set_service_table(ServiceTable {
        version: 4,
        ..Default::default()
    });
    m.publisher.service_table_changed();
    until("new rule set", 5, || sink.table().version == 4).await;

    // Heartbeats carry the master's VRRP view: the second heartbeat path.
    until("a master heartbeat", 5, || {
        sub.last_master_heartbeat().is_some()
    })
    .await;
    let hb = sub.last_master_heartbeat().unwrap();
    assert_eq!(hb.node_id, "a");
    assert_eq!(hb.view.instances[0].state, VrrpState::Master as i32);
    assert_eq!((hb.view.uptime_ms, hb.view.connections), (65_000, 1_000));
    sub.shutdown().await;
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resumes_and_restart_resnapshots() {
    let table = Arc::new(MemTable::with_entries((0..1000).map(mem::flow_entry)));
    let m = start_master(table.clone(), None, true).await;
    let proxy = Proxy::start(m.addr).await;
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(proxy.addr), sink.clone());
    until("initial sync", 10, || {
        equal(&table, &sink) && sub.status().snapshots_applied == 1
    })
    .await;
    let epoch = sub.status().epoch;

    // Cut the connection; changes go on meanwhile.
    proxy.cut();
    for i in 1000..1200 {
        m.change(mem::flow_new(i));
    }
    until("reconnected and caught up", 10, || {
        equal(&table, &sink) && sub.status().reconnects >= 1
    })
    .await;
    let st = sub.status();
    assert_eq!(
        st.snapshots_applied, 1,
        "resumed with deltas, no second snapshot"
    );
    assert_eq!(st.epoch, epoch);

    // The master restarts (a new process: a new epoch) behind the proxy.
    let m2 = start_master(table.clone(), None, true).await;
    *proxy.target.lock().unwrap() = m2.addr;
    m.stop();
    proxy.cut();
    for i in 1200..1300 {
        table.apply_local(mem::flow_new(i));
    }
    until("resynced from the new master", 10, || {
        sub.status().snapshots_applied == 2 && equal(&table, &sink)
    })
    .await;
    assert_ne!(sub.status().epoch, epoch, "new epoch");
    for i in 1300..1400 {
        m2.change(mem::flow_new(i));
    }
    until("deltas from the new master", 10, || equal(&table, &sink)).await;
    sub.shutdown().await;
    m2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_closes_with_shutting_down_and_serving_again_is_a_new_epoch() {
    let table = Arc::new(MemTable::with_entries((0..100).map(mem::flow_entry)));
    let m = start_master(table.clone(), None, true).await;
    m.server.set_master_hint("192.0.2.2:7001");
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(m.addr), sink.clone());
    until("synced", 10, || equal(&table, &sink)).await;
    let epoch = sub.status().epoch;
    m.server.set_serving(false);
    until("stream closed", 5, || !sub.status().connected).await;
    let st = sub.status();
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("stepping down"),
        "{:?}",
        st.last_error
    );
    // Not serving: NOT_MASTER with the hint.
    until("NOT_MASTER seen", 5, || {
        sub.status()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("not the sync master")
    })
    .await;
    assert_eq!(sub.status().master_hint, "192.0.2.2:7001");
    assert_eq!(
        sink.len(),
        100,
        "the synced table is kept while the master is away"
    );
    m.server.set_serving(true);
    until("new epoch, new snapshot", 10, || {
        let s = sub.status();
        s.connected && s.epoch != epoch && s.snapshots_applied == 2
    })
    .await;
    sub.shutdown().await;
    m.stop();
}

async fn raw_stream(
    addr: SocketAddr,
    first: SubscriberMessage,
) -> (Vec<MasterMessage>, tonic::Status) {
    let mut c = ConnSyncClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(first).await.unwrap();
    let mut s = c
        .subscribe(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .expect("bounded")
        {
            Ok(Some(m)) => got.push(m),
            Ok(None) => panic!("stream ended without a status"),
            Err(st) => return (got, st),
        }
    }
}

fn hello(version: u32) -> SubscriberMessage {
    SubscriberMessage {
        msg: Some(subscriber_message::Msg::Hello(Hello {
            protocol_version: version,
            node_id: "b".into(),
            node_name: "dir-b".into(),
            cluster_id: "pair".into(),
            vrids: vec![51],
            ..Default::default()
        })),
    }
}

fn sync_error(msgs: &[MasterMessage]) -> lb_proto::sync::SyncError {
    match &msgs.last().expect("a message").msg {
        Some(master_message::Msg::Error(e)) => e.clone(),
        other => panic!("SyncError expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_not_master_version_garbage() {
    let table = Arc::new(MemTable::new());
    let m = start_master(table.clone(), None, false).await;
    m.server.set_master_hint("192.0.2.2:7001");

    let (msgs, st) = raw_stream(m.addr, hello(1)).await;
    let e = sync_error(&msgs);
    assert_eq!(e.code, SyncErrorCode::NotMaster as i32);
    assert_eq!(e.master_hint, "192.0.2.2:7001");
    assert_eq!(st.code(), tonic::Code::Unavailable);

    m.server.set_serving(true);
    let (msgs, st) = raw_stream(m.addr, hello(2)).await;
    let e = sync_error(&msgs);
    assert_eq!(e.code, SyncErrorCode::VersionMismatch as i32);
    assert_eq!(
        e.message,
        "sync protocol version 2 not supported: this master speaks 1..=1"
    );
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);

    let ack_first = SubscriberMessage {
        msg: Some(subscriber_message::Msg::Ack(Default::default())),
    };
    let (msgs, st) = raw_stream(m.addr, ack_first).await;
    assert_eq!(
        sync_error(&msgs).code,
        SyncErrorCode::ProtocolViolation as i32
    );
    assert_eq!(st.code(), tonic::Code::InvalidArgument);

    // The Subscriber reports the version refusal as a sentence.
    let sink = Arc::new(MemTable::new());
    let cfg = SubscriberConfig {
        protocol_version: 2,
        ..sub_cfg(m.addr)
    };
    let sub = Subscriber::spawn(node("b"), cfg, sink);
    until("refusal reported", 5, || sub.status().last_error.is_some()).await;
    let err = sub.status().last_error.unwrap();
    assert!(
        err.contains("sync protocol version 2 not supported"),
        "{err}"
    );
    assert!(!sub.status().connected);
    sub.shutdown().await;
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_ok_refused_and_no_subscriber() {
    let table = Arc::new(MemTable::with_entries((0..1000).map(mem::flow_entry)));
    let m = start_master(table.clone(), None, true).await;
    let e = m
        .server
        .handover(Duration::from_secs(1), false, "test".into())
        .await
        .unwrap_err();
    assert_eq!(e, HandoverError::NoSubscriber);
    assert_eq!(e.to_string(), "no subscriber connected");
    let forced = m
        .server
        .handover(Duration::from_secs(1), true, "test".into())
        .await
        .unwrap();
    assert!(forced.forced);

    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(m.addr), sink.clone());
    until("synced", 10, || equal(&table, &sink)).await;
    for i in 1000..3000 {
        m.change(mem::flow_new(i));
    }
    let r = m
        .server
        .handover(
            Duration::from_secs(2),
            false,
            "manual failover by operator".into(),
        )
        .await
        .unwrap();
    assert!(!r.forced);
    assert_eq!(r.acked_sequence, r.final_sequence);
    assert_eq!(r.entries_behind_at_switch, 0);
    assert_eq!(r.peer, "dir-b");
    assert_eq!(
        sink.len(),
        3000,
        "everything produced before the handover is applied"
    );
    sub.shutdown().await;

    // A subscriber whose dataplane is not up refuses.
    let cfg = SubscriberConfig {
        readiness: Some(Arc::new(|| Err("dataplane not up".to_owned()))),
        ..sub_cfg(m.addr)
    };
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), cfg, sink.clone());
    until("synced", 10, || {
        m.server.status().subscribers.len() == 1 && equal(&table, &sink)
    })
    .await;
    let e = m
        .server
        .handover(Duration::from_secs(2), false, "test".into())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "subscriber dir-b refused: dataplane not up");
    sub.shutdown().await;
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_initiated_handover() {
    let table = Arc::new(MemTable::with_entries((0..10).map(mem::flow_entry)));
    let m = start_master(table.clone(), None, true).await;
    let (tx, rx) = std::sync::mpsc::channel();
    m.server.on_peer_handover(move |r| {
        let _ = tx.send(r);
    });
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(m.addr), sink.clone());
    until("synced", 10, || {
        equal(&table, &sink) && sub.status().connected
    })
    .await;
    sub.request_handover(Duration::from_secs(2), false, "operator on dir-b".into())
        .await
        .unwrap();
    let r = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the master's handover finished");
    assert!(r.is_ok(), "{r:?}");
    sub.shutdown().await;
    m.stop();
}

struct Pki {
    ca_pem: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem().into_bytes(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn tls(&self, names: &[&str]) -> TlsConfig {
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TlsConfig {
            ca_pem: self.ca_pem.clone(),
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_the_pair_and_refuses_strangers() {
    let pair = Pki::new("pair CA");
    let other = Pki::new("other CA");
    let table = Arc::new(MemTable::with_entries((0..500).map(mem::flow_entry)));
    let m = start_master(table.clone(), Some(pair.tls(&["127.0.0.1", "dir-a"])), true).await;

    let sink = Arc::new(MemTable::new());
    let cfg = SubscriberConfig {
        tls: Some(pair.tls(&["dir-b"])),
        ..sub_cfg(m.addr)
    };
    let sub = Subscriber::spawn(node("b"), cfg, sink.clone());
    until("synced over mutual TLS", 10, || equal(&table, &sink)).await;
    sub.shutdown().await;

    // A client certificate from another CA (trusting the right CA).
    let mut stranger = other.tls(&["dir-x"]);
    stranger.ca_pem = pair.ca_pem.clone();
    let sink = Arc::new(MemTable::new());
    let cfg = SubscriberConfig {
        tls: Some(stranger),
        ..sub_cfg(m.addr)
    };
    let sub = Subscriber::spawn(node("x"), cfg, sink.clone());
    until("refusal reported", 10, || sub.status().errors >= 2).await;
    assert!(!sub.status().connected);
    assert_eq!(sink.len(), 0);
    assert!(m.server.status().subscribers.is_empty());
    let err = sub.status().last_error.unwrap_or_default();
    // In TLS 1.3 the server checks the client's certificate after the
    // client has sent its Finished: the client sees either the server's
    // UnknownCA alert or, when its first write races the alert, the
    // connection closing under it. Either way it is refused (asserted
    // above: not connected, nothing applied, no subscriber on the master).
    assert!(
        err.contains("UnknownCA") || err.contains("transport error"),
        "the master refuses the certificate: {err}"
    );
    sub.shutdown().await;

    // No client certificate at all: a plaintext client is refused too.
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("y"), sub_cfg(m.addr), sink.clone());
    until("plaintext refused", 10, || sub.status().errors >= 2).await;
    assert_eq!(sink.len(), 0);
    sub.shutdown().await;
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_returns_once_the_subscriber_has_everything_pushed() {
    let table = Arc::new(MemTable::with_entries((0..100).map(mem::flow_entry)));
    let idle = start_master(Arc::new(MemTable::new()), None, false).await;
    assert!(
        !idle.server.flush(Duration::from_millis(50)).await,
        "nothing to flush when not serving"
    );
    idle.stop();

    let m = start_master(table.clone(), None, true).await;
    let sink = Arc::new(MemTable::new());
    let sub = Subscriber::spawn(node("b"), sub_cfg(m.addr), sink.clone());
    until("synced", 10, || equal(&table, &sink)).await;
    // Pushed just before a master stops serving: still in the publisher's
    // queue or an open batch when flush is called.
    for i in 100..600 {
        m.change(mem::flow_new(i));
    }
    assert!(m.server.flush(Duration::from_secs(2)).await);
    assert_eq!(
        sink.len(),
        600,
        "every event pushed before the flush is applied when it returns"
    );
    sub.shutdown().await;
    m.stop();
}

/// A peer that stopped reading (frozen, or its end of a cut link gone)
/// must not keep its session listed once the master closes the stream:
/// the closing messages wait at most a second for room, so the same node
/// reconnecting is accepted rather than refused as a duplicate of the
/// stuck stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stopped_reading_does_not_block_its_reconnection() {
    // A snapshot in small messages, far more than the HTTP/2 windows and
    // the stream's queue hold together, so the master's sends to the
    // silent peer fill up.
    let table = Arc::new(MemTable::with_entries((0..100_000).map(mem::flow_entry)));
    let cfg = MasterConfig {
        max_message_bytes: 2048,
        ..master_cfg()
    };
    let m = start_master_with(table.clone(), None, true, cfg).await;
    let mut c = ConnSyncClient::connect(format!("http://{}", m.addr))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello(1)).await.unwrap();
    // Held open and never read.
    let _stuck = c
        .subscribe(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    until("the silent peer is subscribed", 10, || {
        !m.server.status().subscribers.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Step down and up: the old stream is closed, a new epoch serves.
    m.server.set_serving(false);
    m.server.set_serving(true);

    // The same node comes back on a new connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = None;
    loop {
        let mut c = ConnSyncClient::connect(format!("http://{}", m.addr))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(hello(1)).await.unwrap();
        let mut s = c
            .subscribe(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .expect("bounded");
        match first {
            Ok(Some(MasterMessage {
                msg: Some(master_message::Msg::Error(e)),
            })) => last = Some(e),
            Ok(Some(_)) => break,
            other => panic!("neither accepted nor refused: {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after 5 s: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(e) = last {
        assert_eq!(e.code, SyncErrorCode::DuplicateSubscriber as i32, "{e:?}");
    }
    m.stop();
}
