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
