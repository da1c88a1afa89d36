//! End to end through the generated code: tiny implementations of the sync
//! service and of control RPCs, served by tonic on a real TCP listener on
//! 127.0.0.1:0, called by the generated tonic clients, shut down via a
//! oneshot.

use std::net::SocketAddr;
use std::time::Duration;

use lb_proto::common::{
    ConnEntry, ConnFlag, ConnState, Endpoint, ForwardMethod, Protocol, VrrpState,
};
use lb_proto::control::control_client::ControlClient;
use lb_proto::control::control_server::{Control, ControlServer};
use lb_proto::control::*;
use lb_proto::sync::conn_sync_client::ConnSyncClient;
use lb_proto::sync::conn_sync_server::{ConnSync, ConnSyncServer};
use lb_proto::sync::{
    Ack, ConnNew, DeltaBatch, Heartbeat, Hello, MasterMessage, SubscriberMessage, SyncError,
    SyncErrorCode, SyncEvent, VrrpBeat, Welcome, master_message, subscriber_message, sync_event,
};
use lb_proto::{SYNC_MIN_PROTOCOL_VERSION, SYNC_PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};

const EPOCH: u64 = 0x5eed_0001;
const MASTER_TIME_US: u64 = 1_700_000_000_000_000;

fn ep(ip: &str, port: u32) -> Endpoint {
    Endpoint {
        ip: ip.to_owned(),
        port,
    }
}

/// The flow the test master streams in its first delta batch.
fn flow() -> ConnEntry {
    ConnEntry {
        protocol: Protocol::Tcp as i32,
        client: Some(ep("192.0.2.10", 40000)),
        vip: Some(ep("10.0.0.100", 80)),
        real_server: Some(ep("10.0.1.2", 80)),
        method: ForwardMethod::Dr as i32,
        state: ConnState::Established as i32,
        remaining_timeout_ms: 900_000,
        flags: ConnFlag::NoOutput as u32,
        ..Default::default()
    }
}

fn master(msg: master_message::Msg) -> Result<MasterMessage, Status> {
    Ok(MasterMessage { msg: Some(msg) })
}

fn subscriber(msg: subscriber_message::Msg) -> SubscriberMessage {
    SubscriberMessage { msg: Some(msg) }
}

// ---- a tiny sync master ----------------------------------------------------

/// Answers a Hello with Welcome and one DeltaBatch, then answers the
/// subscriber's Ack with a Heartbeat carrying the acked sequence. A Hello
/// with a version it does not speak gets SyncError + FAILED_PRECONDITION.
#[derive(Debug)]
struct TestSync;

#[tonic::async_trait]
impl ConnSync for TestSync {
    type SubscribeStream = ReceiverStream<Result<MasterMessage, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscriberMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let hello = match inbound.message().await {
                Ok(Some(SubscriberMessage {
                    msg: Some(subscriber_message::Msg::Hello(hello)),
                })) => hello,
                _ => {
                    let _ = tx
                        .send(Err(Status::invalid_argument("first message must be Hello")))
                        .await;
                    return;
                }
            };
            let supported = SYNC_MIN_PROTOCOL_VERSION..=SYNC_PROTOCOL_VERSION;
            if !supported.contains(&hello.protocol_version) {
                let message = format!(
                    "sync protocol version {} not supported: this master speaks {}..={}",
                    hello.protocol_version, SYNC_MIN_PROTOCOL_VERSION, SYNC_PROTOCOL_VERSION
                );
                let _ = tx
                    .send(master(master_message::Msg::Error(SyncError {
                        code: SyncErrorCode::VersionMismatch as i32,
                        message: message.clone(),
                        min_supported_version: SYNC_MIN_PROTOCOL_VERSION,
                        max_supported_version: SYNC_PROTOCOL_VERSION,
                        master_hint: String::new(),
                    })))
                    .await;
                let _ = tx.send(Err(Status::failed_precondition(message))).await;
                return;
            }
            let welcome = Welcome {
                protocol_version: hello.protocol_version,
                node_id: "a".to_owned(),
                node_name: format!("master-for-{}", hello.node_name),
                epoch: EPOCH,
                resumed: false,
                next_sequence: 0,
                heartbeat_interval_ms: 200,
                ack_interval_ms: 50,
                master_time_us: MASTER_TIME_US,
            };
            let batch = DeltaBatch {
                sequence: 1,
                master_time_us: MASTER_TIME_US + 1_000,
                events: vec![SyncEvent {
                    event: Some(sync_event::Event::ConnNew(ConnNew {
                        entry: Some(flow()),
                    })),
                }],
            };
            for msg in [
                master_message::Msg::Welcome(welcome),
                master_message::Msg::DeltaBatch(batch),
            ] {
                if tx.send(master(msg)).await.is_err() {
                    return;
                }
            }
            if let Ok(Some(SubscriberMessage {
                msg: Some(subscriber_message::Msg::Ack(ack)),
            })) = inbound.message().await
            {
                let beat = Heartbeat {
                    node_id: "a".to_owned(),
                    sender_time_us: MASTER_TIME_US + 2_000,
                    instances: vec![VrrpBeat {
                        vrid: 51,
                        name: "VI_1".to_owned(),
                        state: VrrpState::Master as i32,
                        priority: 150,
                        effective_priority: 150,
                    }],
                    sequence: ack.applied_sequence,
                    service_table_version: 7,
                    uptime_ms: 65_000,
                    connections: 0,
                    entries_behind: 0,
                    // Lag measured on the master's clock from the echo.
                    ms_behind: ((MASTER_TIME_US + 2_000 - ack.echo_master_time_us) / 1_000) as u32,
                };
                let _ = tx.send(master(master_message::Msg::Heartbeat(beat))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

// ---- a tiny control service ------------------------------------------------

/// Implements GetNodeStatus, ListServices and Watch; every other RPC answers
/// UNIMPLEMENTED.
#[derive(Debug)]
struct TestControl;

fn node_status() -> NodeStatus {
    NodeStatus {
        node_name: "director-a".to_owned(),
        node_id: "a".to_owned(),
        uptime_ms: 5_000,
        vrrp_instances: vec![VrrpInstanceStatus {
            name: "VI_1".to_owned(),
            vrid: 51,
            state: VrrpState::Master as i32,
            priority: 150,
            effective_priority: 150,
            advert_interval_ms: 100,
            master_address: "10.0.0.1".to_owned(),
            vips: vec!["10.0.0.100/24".to_owned()],
            ..Default::default()
        }],
        sync: Some(SyncStatus {
            role: SyncRole::Master as i32,
            connected: true,
            entries_behind: 3,
            ms_behind: 4,
            ..Default::default()
        }),
        config_version: 7,
        dataplane: Some(DataplaneStatus {
            mode: DataplaneMode::Active as i32,
            drops: vec![DropCounter {
                reason: "no_service".to_owned(),
                packets: 9,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes `impl Control for $ty` with the given items plus an UNIMPLEMENTED
/// body for each listed RPC (the macro expands before `async_trait` runs).
macro_rules! control_impl {
    (
        impl Control for $ty:ty { $($custom:tt)* }
        unimplemented { $($name:ident($req:ty) -> $resp:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl Control for $ty {
            $($custom)*
            $(
                async fn $name(&self, _request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

control_impl! {
    impl Control for TestControl {
        type WatchStream = ReceiverStream<Result<WatchSnapshot, Status>>;

        async fn get_node_status(
            &self,
            _request: Request<GetNodeStatusRequest>,
        ) -> Result<Response<NodeStatus>, Status> {
            Ok(Response::new(node_status()))
        }

        async fn list_services(
            &self,
            request: Request<ListServicesRequest>,
        ) -> Result<Response<ListServicesResponse>, Status> {
            let options = request.into_inner().options.unwrap_or_default();
            Ok(Response::new(ListServicesResponse {
                services: vec![ServiceInfo {
                    spec: Some(lb_proto::common::ServiceSpec {
                        key: Some(lb_proto::common::ServiceKey {
                            protocol: Protocol::Tcp as i32,
                            vip: Some(ep("10.0.0.100", 80)),
                            ..Default::default()
                        }),
                        scheduler: "wlc".to_owned(),
                        ..Default::default()
                    }),
                    stats: options.include_stats.then(|| lb_proto::common::Stats {
                        conns: 42,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                config_version: 7,
            }))
        }

        async fn watch(
            &self,
            request: Request<WatchRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            let interval_ms = request.into_inner().interval_ms.max(1);
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for sequence in 1..=3 {
                    let snapshot = WatchSnapshot {
                        sequence,
                        at_unix_ms: 1_700_000_000_000 + sequence * u64::from(interval_ms),
                        node: Some(node_status()),
                        services: vec![],
                    };
                    if tx.send(Ok(snapshot)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        }
    }
    unimplemented {
        add_service(AddServiceRequest) -> ConfigChange;
        edit_service(EditServiceRequest) -> ConfigChange;
        delete_service(DeleteServiceRequest) -> ConfigChange;
        clear_services(ClearServicesRequest) -> ConfigChange;
        get_service(GetServiceRequest) -> ServiceInfo;
        add_real_server(AddRealServerRequest) -> ConfigChange;
        edit_real_server(EditRealServerRequest) -> ConfigChange;
        delete_real_server(DeleteRealServerRequest) -> ConfigChange;
        zero_counters(ZeroCountersRequest) -> ZeroCountersResponse;
        list_connections(ListConnectionsRequest) -> ListConnectionsResponse;
        get_timeouts(GetTimeoutsRequest) -> TimeoutsResponse;
        set_timeouts(SetTimeoutsRequest) -> TimeoutsResponse;
        get_service_table(GetServiceTableRequest) -> lb_proto::common::ServiceTable;
        apply_rules(ApplyRulesRequest) -> ApplyRulesResponse;
        get_sync_status(GetSyncStatusRequest) -> SyncStatus;
        failover(FailoverRequest) -> FailoverResponse;
        which(WhichRequest) -> WhichResponse;
        get_health(GetHealthRequest) -> GetHealthResponse;
    }
}

// ---- harness -----------------------------------------------------------------

/// A running server: its address, the shutdown trigger, the serve task.
struct Running {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Trigger shutdown and wait (bounded) for the server to finish cleanly.
    async fn stop(self) {
        self.shutdown.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server shut down within 5 s")
            .expect("serve task did not panic")
            .expect("server returned no error");
    }
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::builder()
            .add_service(ControlServer::new(TestControl))
            .add_service(ConnSyncServer::new(TestSync))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = shutdown_rx.await;
            }),
    );
    Running {
        addr,
        shutdown,
        task,
    }
}

/// Next message of a stream, bounded in time.
async fn next<T>(stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5 s")
}

// ---- tests -------------------------------------------------------------------

#[tokio::test]
async fn sync_stream_hello_welcome_delta_ack_heartbeat() {
    let server = start().await;
    {
        let mut client = ConnSyncClient::connect(server.url())
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(8);
        tx.send(subscriber(subscriber_message::Msg::Hello(Hello {
            protocol_version: SYNC_PROTOCOL_VERSION,
            node_id: "b".to_owned(),
            node_name: "director-b".to_owned(),
            cluster_id: "lab".to_owned(),
            vrids: vec![51],
            resume: None,
            service_table_version: 0,
        })))
        .await
        .unwrap();
        let mut inbound = client
            .subscribe(ReceiverStream::new(rx))
            .await
            .expect("subscribe")
            .into_inner();

        let Some(MasterMessage {
            msg: Some(master_message::Msg::Welcome(welcome)),
        }) = next(&mut inbound).await.expect("welcome")
        else {
            panic!("expected Welcome first");
        };
        assert_eq!(welcome.protocol_version, SYNC_PROTOCOL_VERSION);
        assert_eq!(welcome.epoch, EPOCH);
        assert_eq!(welcome.node_name, "master-for-director-b");
        assert!(!welcome.resumed);
        assert_eq!(welcome.heartbeat_interval_ms, 200);

        let Some(MasterMessage {
            msg: Some(master_message::Msg::DeltaBatch(batch)),
        }) = next(&mut inbound).await.expect("batch")
        else {
            panic!("expected a DeltaBatch");
        };
        assert_eq!(batch.sequence, 1);
        assert_eq!(batch.master_time_us, MASTER_TIME_US + 1_000);
        assert_eq!(batch.events.len(), 1);
        let Some(sync_event::Event::ConnNew(ConnNew { entry: Some(entry) })) =
            &batch.events[0].event
        else {
            panic!("expected ConnNew");
        };
        assert_eq!(entry, &flow());
        assert_eq!(entry.state(), ConnState::Established);
        assert_eq!(entry.client.as_ref().unwrap().ip, "192.0.2.10");
        assert_eq!(entry.real_server.as_ref().unwrap().port, 80);

        tx.send(subscriber(subscriber_message::Msg::Ack(Ack {
            applied_sequence: batch.sequence,
            applied_at_unix_us: MASTER_TIME_US + 1_500,
            echo_master_time_us: batch.master_time_us,
            ..Default::default()
        })))
        .await
        .unwrap();

        let Some(MasterMessage {
            msg: Some(master_message::Msg::Heartbeat(beat)),
        }) = next(&mut inbound).await.expect("heartbeat")
        else {
            panic!("expected a Heartbeat after the Ack");
        };
        assert_eq!(beat.sequence, 1, "master saw our ack");
        assert_eq!(beat.ms_behind, 1, "lag from the echoed master time");
        assert_eq!(beat.instances[0].state(), VrrpState::Master);

        drop(tx);
        assert!(next(&mut inbound).await.expect("clean end").is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn sync_version_mismatch_is_a_clear_error() {
    let server = start().await;
    {
        let mut client = ConnSyncClient::connect(server.url())
            .await
            .expect("connect");
        let hello = subscriber(subscriber_message::Msg::Hello(Hello {
            protocol_version: SYNC_PROTOCOL_VERSION + 98,
            node_id: "b".to_owned(),
            ..Default::default()
        }));
        let mut inbound = client
            .subscribe(tokio_stream::iter([hello]))
            .await
            .expect("subscribe")
            .into_inner();
        let Some(MasterMessage {
            msg: Some(master_message::Msg::Error(err)),
        }) = next(&mut inbound).await.expect("error message")
        else {
            panic!("expected SyncError");
        };
        assert_eq!(err.code(), SyncErrorCode::VersionMismatch);
        assert_eq!(err.max_supported_version, SYNC_PROTOCOL_VERSION);
        assert!(err.message.contains("not supported"), "{}", err.message);
        let status = next(&mut inbound)
            .await
            .expect_err("stream ends with a status");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), err.message);
    }
    server.stop().await;
}

#[tokio::test]
async fn control_unary_and_server_stream() {
    let server = start().await;
    {
        let mut client = ControlClient::connect(server.url()).await.expect("connect");

        let status = client
            .get_node_status(GetNodeStatusRequest {})
            .await
            .expect("GetNodeStatus")
            .into_inner();
        assert_eq!(status, node_status());
        assert_eq!(status.node_name, "director-a");
        assert_eq!(status.vrrp_instances[0].state(), VrrpState::Master);
        assert_eq!(status.sync.as_ref().unwrap().role(), SyncRole::Master);
        assert_eq!(status.dataplane.as_ref().unwrap().drops[0].packets, 9);

        let listing = client
            .list_services(ListServicesRequest {
                options: Some(ListOptions {
                    include_stats: true,
                    ..Default::default()
                }),
            })
            .await
            .expect("ListServices")
            .into_inner();
        assert_eq!(listing.config_version, 7);
        assert_eq!(listing.services.len(), 1);
        let service = &listing.services[0];
        assert_eq!(service.spec.as_ref().unwrap().scheduler, "wlc");
        assert_eq!(service.stats.as_ref().unwrap().conns, 42);

        let mut watch = client
            .watch(WatchRequest {
                interval_ms: 250,
                ..Default::default()
            })
            .await
            .expect("Watch")
            .into_inner();
        let mut sequences = vec![];
        while let Some(snapshot) = next(&mut watch).await.expect("snapshot") {
            assert_eq!(snapshot.node.as_ref().unwrap().config_version, 7);
            assert_eq!(
                snapshot.at_unix_ms,
                1_700_000_000_000 + snapshot.sequence * 250
            );
            sequences.push(snapshot.sequence);
        }
        assert_eq!(sequences, [1, 2, 3]);

        let err = client
            .failover(FailoverRequest::default())
            .await
            .expect_err("Failover is not implemented by the test server");
        assert_eq!(err.code(), Code::Unimplemented);
    }
    server.stop().await;
}
