//! [`Subscriber::stream_losses`]: the hint the pair gives VRRP when the
//! master may have died. Real TCP on 127.0.0.1: a master whose connection
//! is closed under it (as a killed process's kernel does) is a loss; a
//! master that steps down (SHUTTING_DOWN) is not. Every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use syncd::mem::{self, MemTable};
use syncd::{MasterConfig, Subscriber, SubscriberConfig, SyncServer};
use tokio::net::TcpListener;

mod common;
use common::{Proxy, node, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stream_is_a_loss_a_step_down_is_not() {
    let table = Arc::new(MemTable::with_entries((0..100).map(mem::flow_entry)));
    let cfg = MasterConfig {
        heartbeat_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let (server, _publisher) = SyncServer::new(node("a"), table, cfg);
    server.set_serving(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = listener.local_addr().unwrap();
    let serving = server.clone();
    let serve = tokio::spawn(async move {
        let _ = serving.serve(listener, None, std::future::pending()).await;
    });
    let relay = Proxy::start(master).await;
    let sub_cfg = SubscriberConfig {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..SubscriberConfig::new(relay.addr.to_string())
    };
    let sub = Subscriber::spawn(node("b"), sub_cfg, Arc::new(MemTable::new()));
    let mut losses = sub.stream_losses();
    until("synced", 10, || sub.status().snapshots_applied == 1).await;
    assert_eq!(losses.borrow().count, 0);

    // The master's side closes without a word.
    relay.cut();
    tokio::time::timeout(Duration::from_secs(5), losses.changed())
        .await
        .expect("a loss within 5 s")
        .expect("subscriber running");
    let l = losses.borrow_and_update().clone();
    assert_eq!(l.count, 1, "{l:?}");
    assert!(l.last_at.is_some());
    assert!(!l.last_reason.is_empty(), "{l:?}");

    // Back again, then an orderly step-down: SHUTTING_DOWN is no loss.
    until("reconnected", 10, || {
        let s = sub.status();
        s.connected && s.reconnects >= 1
    })
    .await;
    let errors = sub.status().errors;
    server.set_serving(false);
    until("closed by the master", 5, || {
        let s = sub.status();
        !s.connected && s.errors > errors
    })
    .await;
    // NOT_MASTER refusals follow while it is not serving; none is a loss.
    until("a NOT_MASTER refusal", 5, || {
        sub.status()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("not the sync master")
    })
    .await;
    assert_eq!(
        losses.borrow().count,
        1,
        "SHUTTING_DOWN and NOT_MASTER say the master is alive: {:?}",
        losses.borrow()
    );
    sub.shutdown().await;
    assert!(
        losses.changed().await.is_err(),
        "the channel closes with the subscriber, and stopping it is no loss"
    );
    serve.abort();
}
