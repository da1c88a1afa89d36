//! [`Subscriber::stream_losses`]: the hint the pair gives VRRP when the
//! master may have died. Real TCP on 127.0.0.1: a master whose connection
//! is closed under it (as a killed process's kernel does) is a loss; a
//! master that steps down (SHUTTING_DOWN) is not. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncd::mem::{self, MemTable};
use syncd::{MasterConfig, NodeInfo, Subscriber, SubscriberConfig, SyncServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        node_name: format!("dir-{id}"),
        cluster_id: "pair".into(),
        vrids: vec![51],
    }
}

/// A TCP relay in front of the master whose connections the test closes,
/// as the kernel of a killed master process closes its sockets.
struct Relay {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inb, _)) = l.accept().await {
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inb, &mut out).await;
                    }
                }));
            }
        });
        Relay { addr, conns, task }
    }

    fn close_all(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.close_all();
        self.task.abort();
    }
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

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
    let relay = Relay::start(master).await;
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
    relay.close_all();
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
