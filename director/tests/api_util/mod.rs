//! Shared fixtures for the control-API tests: a real tonic server on
//! 127.0.0.1:0 over a [`Dataplane`] with a hand-driven clock, a client, and
//! frames fed through a dataplane [`Worker`] to make connections.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use director::api::{self, ControlState};
use director::dataplane::{Dataplane, DataplaneConfig, IfaceId, StaticNeighbours, Worker};
use director::forward::{L4Csum, MacAddr};
use director::{Millis, ServiceSpec, TcpFlags};
use etherparse::PacketBuilder;
use lb_proto::control::control_client::ControlClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xd1]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x21]);
pub const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A served control state.
pub struct Served {
    pub addr: SocketAddr,
    pub state: Arc<ControlState>,
    pub clock: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), api::ServeError>>>,
}

impl Served {
    /// Serve a fresh dataplane running `specs` on 127.0.0.1:0, from within
    /// a tokio runtime.
    pub async fn start(specs: Vec<ServiceSpec>) -> Served {
        let dp = Arc::new(Dataplane::new(DataplaneConfig::new(DIRECTOR_MAC, DIP)));
        dp.apply(&specs).expect("valid initial specs");
        let clock = Arc::new(AtomicU64::new(1_000));
        let c = Arc::clone(&clock);
        let state = Arc::new(ControlState::new(
            "director-a",
            dp,
            specs,
            Arc::new(move || Millis(c.load(Ordering::Relaxed))),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_listener(
            listener,
            Arc::clone(&state),
            async move {
                let _ = rx.await;
            },
        ));
        Served {
            addr,
            state,
            clock,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> ControlClient<Channel> {
        ControlClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the test server")
    }

    pub fn now(&self) -> Millis {
        Millis(self.clock.load(Ordering::Relaxed))
    }

    pub fn advance(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::Relaxed);
    }

    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// A worker over the served dataplane, with every address on-link.
pub struct Feeder {
    worker: Worker,
    neigh: StaticNeighbours,
}

impl Feeder {
    pub fn new(state: &ControlState) -> Feeder {
        let neigh = StaticNeighbours {
            gateway: Some(director::dataplane::NextHop {
                iface: IfaceId(0),
                mac: RS_MAC,
            }),
            ..Default::default()
        };
        Feeder {
            worker: Worker::new(Arc::clone(&state.dp), 11).unwrap(),
            neigh,
        }
    }

    /// Run one frame through the dataplane at `now`.
    pub fn feed(&mut self, now: Millis, mut frame: Vec<u8>) -> director::dataplane::Action {
        self.worker.process(
            now,
            IfaceId(0),
            &mut frame,
            L4Csum::Verify,
            &self.neigh,
            &mut |_| {},
        )
    }
}

/// A TCP frame from a client to a VIP.
pub fn tcp(client: SocketAddr, vip: SocketAddr, flags: TcpFlags) -> Vec<u8> {
    let (IpAddr::V4(c), IpAddr::V4(v)) = (client.ip(), vip.ip()) else {
        panic!("IPv4 only")
    };
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, DIRECTOR_MAC.0)
        .ipv4(c.octets(), v.octets(), 64)
        .tcp(client.port(), vip.port(), 1000, 64240);
    let b = if flags.syn() { b.syn() } else { b };
    let b = if flags.ack() { b.ack(1) } else { b };
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).unwrap();
    out
}

/// A UDP frame from a client to a VIP.
pub fn udp(client: SocketAddr, vip: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(c), IpAddr::V4(v)) = (client.ip(), vip.ip()) else {
        panic!("IPv4 only")
    };
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, DIRECTOR_MAC.0)
        .ipv4(c.octets(), v.octets(), 64)
        .udp(client.port(), vip.port());
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// A wire endpoint from "ip:port".
pub fn ep(s: &str) -> Option<lb_proto::common::Endpoint> {
    let a: SocketAddr = s.parse().unwrap();
    Some(lb_proto::common::Endpoint {
        ip: a.ip().to_string(),
        port: u32::from(a.port()),
    })
}

/// A wire service key.
pub fn key(proto: lb_proto::common::Protocol, vip: &str) -> Option<lb_proto::common::ServiceKey> {
    Some(lb_proto::common::ServiceKey {
        protocol: proto as i32,
        vip: ep(vip),
        fwmark: 0,
        family: 0,
    })
}

/// A served state on a runtime of its own, so that a test can block on
/// the real `dirctl` binary run against it.
pub struct DirctlLab {
    /// The runtime the server runs on.
    pub rt: tokio::runtime::Runtime,
    srv: Option<Served>,
}

impl DirctlLab {
    /// An empty director.
    pub fn new() -> DirctlLab {
        DirctlLab::start(Served::start(Vec::new()))
    }

    /// The director `served` makes (start it, configure it).
    pub fn start(served: impl std::future::Future<Output = Served>) -> DirctlLab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let srv = rt.block_on(served);
        DirctlLab { rt, srv: Some(srv) }
    }

    /// The server.
    pub fn srv(&self) -> &Served {
        self.srv.as_ref().unwrap()
    }

    /// Run `dirctl <line> --server ADDR`, with `stdin` if given.
    pub fn run_in(&self, line: &str, stdin: Option<&str>) -> std::process::Output {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_dirctl"))
            .args(line.split_whitespace())
            .arg("--server")
            .arg(self.srv().addr.to_string())
            .env_remove("DIRCTL_SERVER")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dirctl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Run `dirctl <line> --server ADDR`.
    pub fn run(&self, line: &str) -> std::process::Output {
        self.run_in(line, None)
    }

    /// Run and expect success; returns stdout.
    pub fn ok(&self, line: &str) -> String {
        self.ok_in(line, None)
    }

    /// Run with `stdin` and expect success; returns stdout.
    pub fn ok_in(&self, line: &str, stdin: Option<&str>) -> String {
        let out = self.run_in(line, stdin);
        assert!(
            out.status.success(),
            "dirctl {line}: {:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and expect failure with exit `code`; returns stderr.
    pub fn fails(&self, line: &str, code: i32) -> String {
        let out = self.run(line);
        assert_eq!(
            out.status.code(),
            Some(code),
            "dirctl {line}: stdout {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for DirctlLab {
    fn drop(&mut self) {
        if let Some(srv) = self.srv.take() {
            self.rt.block_on(srv.stop());
        }
    }
}
