//! The generated messages survive prost encode/decode unchanged, for a
//! representative message of each service, and the descriptor set and
//! version constants say what the crate documents.

use lb_proto::common::{
    AddressFamily, ConnEntry, ConnFlag, ConnKey, ConnState, Endpoint, ForwardMethod,
    HealthCheckSpec, HealthCheckType, Persistence, Protocol, Rates, RealServerSpec, SchedulerFlags,
    ServiceConfig, ServiceKey, ServiceSpec, ServiceTable, Stats, TemplateKey, Timeouts, TunnelSpec,
    TunnelType, VrrpState,
};
use lb_proto::control::{
    self, AddServiceRequest, ApplyRulesRequest, ListServicesResponse, NodeStatus, RealServerInfo,
    RuleOp, ServiceInfo, VrrpInstanceStatus, VrrpTransition, rule_op,
};
use lb_proto::sync::{
    self, Ack, DeltaBatch, Hello, MasterMessage, ResumePoint, SubscriberMessage, SyncEvent,
    master_message, subscriber_message, sync_event,
};
use prost::Message;

fn ep(ip: &str, port: u32) -> Endpoint {
    Endpoint {
        ip: ip.to_owned(),
        port,
    }
}

fn tcp_service(vip: &str, port: u32) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp as i32,
        vip: Some(ep(vip, port)),
        fwmark: 0,
        family: AddressFamily::Unspecified as i32,
    }
}

/// Encode, decode, compare; also checks the encoding is not empty.
fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    assert!(!bytes.is_empty(), "{msg:?} encoded to nothing");
    let back = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(&back, msg);
}

fn flow() -> ConnEntry {
    ConnEntry {
        protocol: Protocol::Tcp as i32,
        client: Some(ep("192.0.2.10", 40000)),
        vip: Some(ep("10.0.0.100", 80)),
        real_server: Some(ep("10.0.1.2", 80)),
        method: ForwardMethod::Dr as i32,
        state: ConnState::Established as i32,
        remaining_timeout_ms: 899_500,
        flags: ConnFlag::NoOutput as u32,
        fwmark: 0,
        template: Some(TemplateKey {
            protocol: Protocol::Tcp as i32,
            client_ip: "192.0.2.0".to_owned(),
            vip: Some(ep("10.0.0.100", 80)),
            fwmark: 0,
        }),
        persistence_prefix_len: None,
    }
}

fn template() -> ConnEntry {
    ConnEntry {
        protocol: Protocol::Tcp as i32,
        client: Some(ep("192.0.2.0", 0)),
        vip: Some(ep("10.0.0.100", 80)),
        real_server: Some(ep("10.0.1.2", 80)),
        method: ForwardMethod::Dr as i32,
        state: ConnState::None as i32,
        remaining_timeout_ms: 360_000,
        flags: ConnFlag::Template as u32 | ConnFlag::NoCport as u32,
        fwmark: 0,
        template: None,
        persistence_prefix_len: Some(24),
    }
}

fn service_spec() -> ServiceSpec {
    ServiceSpec {
        key: Some(tcp_service("10.0.0.100", 80)),
        scheduler: "mh".to_owned(),
        scheduler_flags: Some(SchedulerFlags {
            hash_fallback: true,
            hash_port: false,
            mh_table_size: 4093,
        }),
        persistence: Some(Persistence {
            timeout_s: 360,
            netmask_prefix_len: Some(24),
        }),
        one_packet: false,
        health_check: Some(HealthCheckSpec {
            r#type: HealthCheckType::HttpGet as i32,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
            port: 0,
            http_path: "/healthz".to_owned(),
            http_host: String::new(),
            http_expected_status: 200,
            on_failure: 0,
        }),
    }
}

fn real_server(ip: &str, weight: u32) -> RealServerSpec {
    RealServerSpec {
        address: Some(ep(ip, 80)),
        method: ForwardMethod::Tunnel as i32,
        weight: Some(weight),
        upper_threshold: 1000,
        lower_threshold: 800,
        tunnel: Some(TunnelSpec {
            r#type: TunnelType::Ipip as i32,
            port: 0,
            checksum: 0,
        }),
        health_check: None,
    }
}

#[test]
fn control_messages_roundtrip() {
    roundtrip(&AddServiceRequest {
        spec: Some(service_spec()),
        real_servers: vec![real_server("10.0.1.2", 1), real_server("10.0.1.3", 0)],
    });

    roundtrip(&ApplyRulesRequest {
        ops: vec![
            RuleOp {
                op: Some(rule_op::Op::ClearServices(control::ClearServicesRequest {})),
            },
            RuleOp {
                op: Some(rule_op::Op::AddService(AddServiceRequest {
                    spec: Some(service_spec()),
                    real_servers: vec![],
                })),
            },
            RuleOp {
                op: Some(rule_op::Op::AddRealServer(control::AddRealServerRequest {
                    service: Some(tcp_service("10.0.0.100", 80)),
                    real_server: Some(real_server("2001:db8::2", 5)),
                })),
            },
        ],
        replace: true,
        expected_config_version: 41,
        dry_run: false,
    });

    roundtrip(&ListServicesResponse {
        services: vec![ServiceInfo {
            spec: Some(service_spec()),
            real_servers: vec![RealServerInfo {
                spec: Some(real_server("10.0.1.2", 3)),
                active_conns: 12,
                inactive_conns: 4,
                persistent_conns: 2,
                overloaded: false,
                effective_weight: 3,
                stats: Some(Stats {
                    conns: 100,
                    in_packets: 1_000,
                    out_packets: 0,
                    in_bytes: 64_000,
                    out_bytes: 0,
                }),
                rates: Some(Rates {
                    conns_per_sec: 5,
                    in_packets_per_sec: 50,
                    out_packets_per_sec: 0,
                    in_bytes_per_sec: 3_200,
                    out_bytes_per_sec: 0,
                }),
                health: None,
            }],
            stats: None,
            rates: None,
            active_conns: 12,
            inactive_conns: 4,
            persistent_conns: 2,
        }],
        config_version: 42,
    });

    roundtrip(&NodeStatus {
        node_name: "director-a".to_owned(),
        node_id: "a".to_owned(),
        uptime_ms: 12_345,
        vrrp_instances: vec![VrrpInstanceStatus {
            name: "VI_1".to_owned(),
            vrid: 51,
            state: VrrpState::Master as i32,
            priority: 150,
            effective_priority: 150,
            advert_interval_ms: 100,
            vips: vec!["10.0.0.100/24".to_owned()],
            recent_transitions: vec![VrrpTransition {
                at_unix_ms: 1_700_000_000_000,
                from: VrrpState::Backup as i32,
                to: VrrpState::Master as i32,
                reason: "master down timer expired".to_owned(),
            }],
            ..Default::default()
        }],
        config_version: 42,
        ..Default::default()
    });
}

#[test]
fn sync_messages_roundtrip() {
    roundtrip(&SubscriberMessage {
        msg: Some(subscriber_message::Msg::Hello(Hello {
            protocol_version: lb_proto::SYNC_PROTOCOL_VERSION,
            node_id: "b".to_owned(),
            node_name: "director-b".to_owned(),
            cluster_id: "lab".to_owned(),
            vrids: vec![51],
            resume: Some(ResumePoint {
                epoch: 0xdead_beef,
                applied_sequence: 17,
            }),
            service_table_version: 42,
        })),
    });
    roundtrip(&SubscriberMessage {
        msg: Some(subscriber_message::Msg::Ack(Ack {
            applied_sequence: 18,
            applied_at_unix_us: 1_700_000_000_000_123,
            echo_master_time_us: 1_700_000_000_000_100,
            snapshot_id: 1,
            snapshot_entries_applied: 2,
            table_entries: 2,
        })),
    });

    let events = vec![
        SyncEvent {
            event: Some(sync_event::Event::TemplateNew(sync::TemplateNew {
                entry: Some(template()),
            })),
        },
        SyncEvent {
            event: Some(sync_event::Event::ConnNew(sync::ConnNew {
                entry: Some(flow()),
            })),
        },
        SyncEvent {
            event: Some(sync_event::Event::ConnUpdate(sync::ConnUpdate {
                entry: Some(ConnEntry {
                    state: ConnState::FinWait as i32,
                    flags: ConnFlag::NoOutput as u32 | ConnFlag::Inactive as u32,
                    remaining_timeout_ms: 120_000,
                    ..flow()
                }),
                kind: sync::UpdateKind::StateChange as i32,
            })),
        },
        SyncEvent {
            event: Some(sync_event::Event::ConnExpire(sync::ConnExpire {
                key: Some(ConnKey {
                    protocol: Protocol::Tcp as i32,
                    client: Some(ep("192.0.2.10", 40000)),
                    vip: Some(ep("10.0.0.100", 80)),
                }),
            })),
        },
        SyncEvent {
            event: Some(sync_event::Event::TemplateExpire(sync::TemplateExpire {
                key: flow().template,
            })),
        },
    ];
    roundtrip(&MasterMessage {
        msg: Some(master_message::Msg::DeltaBatch(DeltaBatch {
            sequence: 18,
            master_time_us: 1_700_000_000_000_100,
            events,
        })),
    });

    roundtrip(&MasterMessage {
        msg: Some(master_message::Msg::ServiceTable(ServiceTable {
            version: 42,
            services: vec![ServiceConfig {
                spec: Some(service_spec()),
                real_servers: vec![real_server("10.0.1.2", 1)],
            }],
            timeouts: Some(Timeouts {
                tcp_timeout_s: 900,
                tcp_fin_timeout_s: 120,
                udp_timeout_s: 300,
            }),
        })),
    });
}

#[test]
fn defaults_are_unspecified_and_flags_are_bits() {
    let entry = ConnEntry::default();
    assert_eq!(entry.protocol(), Protocol::Unspecified);
    assert_eq!(entry.state(), ConnState::Unspecified);
    assert_eq!(entry.method(), ForwardMethod::Unspecified);
    // An absent optional is distinguishable from an explicit 0.
    assert_eq!(RealServerSpec::default().weight, None);

    let bits = [
        ConnFlag::Template,
        ConnFlag::NoOutput,
        ConnFlag::Inactive,
        ConnFlag::NoCport,
        ConnFlag::OnePacket,
        ConnFlag::Synced,
        ConnFlag::DestRemoved,
    ];
    let mut seen = 0u32;
    for flag in bits {
        let v = flag as u32;
        assert!(v.is_power_of_two(), "{flag:?} = {v} is not a single bit");
        assert_eq!(seen & v, 0, "{flag:?} overlaps another flag");
        seen |= v;
    }
}

#[test]
fn sync_protocol_version_is_the_highest_enum_value() {
    let highest = (1..)
        .take_while(|v| sync::SyncProtocolVersion::try_from(*v).is_ok())
        .last()
        .expect("at least one version");
    assert_eq!(lb_proto::SYNC_PROTOCOL_VERSION, highest as u32);
}

#[test]
fn file_descriptor_set_decodes_and_names_both_services() {
    let fds = prost_types::FileDescriptorSet::decode(lb_proto::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes");
    let mut packages: Vec<&str> = fds.file.iter().map(|f| f.package()).collect();
    packages.sort_unstable();
    assert_eq!(packages, ["lb.common.v1", "lb.control.v1", "lb.sync.v1"]);

    let services: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    assert!(services.contains(&lb_proto::CONTROL_SERVICE_NAME.to_owned()));
    assert!(services.contains(&lb_proto::SYNC_SERVICE_NAME.to_owned()));

    // The generated servers agree on the names.
    use tonic::server::NamedService;
    assert_eq!(
        <control::control_server::ControlServer<()> as NamedService>::NAME,
        lb_proto::CONTROL_SERVICE_NAME
    );
    assert_eq!(
        <sync::conn_sync_server::ConnSyncServer<()> as NamedService>::NAME,
        lb_proto::SYNC_SERVICE_NAME
    );

    // Source info (comments) is kept for reflection clients.
    let control_file = fds
        .file
        .iter()
        .find(|f| f.package() == "lb.control.v1")
        .unwrap();
    let info = control_file
        .source_code_info
        .as_ref()
        .expect("source info kept");
    assert!(
        info.location
            .iter()
            .any(|l| l.leading_comments().contains("Manual failover"))
    );

    // Every Control RPC the contract promises is there.
    let control = &control_file.service[0];
    let methods: Vec<&str> = control.method.iter().map(|m| m.name()).collect();
    for m in [
        "AddService",
        "EditService",
        "DeleteService",
        "ClearServices",
        "GetService",
        "ListServices",
        "AddRealServer",
        "EditRealServer",
        "DeleteRealServer",
        "ZeroCounters",
        "ListConnections",
        "GetTimeouts",
        "SetTimeouts",
        "GetServiceTable",
        "ApplyRules",
        "GetNodeStatus",
        "GetSyncStatus",
        "Failover",
        "Which",
        "Watch",
        "GetHealth",
    ] {
        assert!(methods.contains(&m), "Control.{m} missing");
    }
}
