//! Helpers shared by the syncd integration tests: node identities, a TCP
//! proxy the tests cut (as a cut link or a killed process's kernel does)
//! and point elsewhere, and bounded waits.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncd::NodeInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Node `id` of the test cluster ("pair", VRID 51).
pub fn node(id: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        node_name: format!("dir-{id}"),
        cluster_id: "pair".into(),
        vrids: vec![51],
    }
}

/// A TCP proxy whose connections the test can cut, and whose target it can
/// change (a master restarted elsewhere).
pub struct Proxy {
    /// Where subscribers connect.
    pub addr: SocketAddr,
    /// Where the proxy's new connections go.
    pub target: Arc<Mutex<SocketAddr>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on an ephemeral port of 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (t, c) = (target.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inb, _)) = l.accept().await {
                let to = *t.lock().unwrap();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inb, &mut out).await;
                    }
                }));
            }
        });
        Proxy {
            addr,
            target,
            conns,
            task,
        }
    }

    /// Close every connection through the proxy at once.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Wait until `f` holds, failing the test after `secs` seconds.
pub async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
