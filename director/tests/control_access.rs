//! Who may use the control API: mutual TLS and the bearer token, tried with
//! the real `dirctl` binary against a real server on 127.0.0.1:0; and the
//! gRPC health and reflection services beside the control service.
//!
//! Certificates are made here with rcgen (a CA for the pair, another CA for
//! a stranger), written to a temp dir, and given to dirctl by path, as an
//! operator would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use director::Millis;
use director::api::{self, ControlState, ServeOptions, ServerTls, Token};
use director::dataplane::{Dataplane, DataplaneConfig};
use director::forward::MacAddr;
use lb_proto::control::control_client::ControlClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const DIRCTL: &str = env!("CARGO_BIN_EXE_dirctl");

struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// (certificate, key) PEM for `names`.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A temp dir removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("control-access-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    addr: SocketAddr,
    state: Arc<ControlState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), api::ServeError>>,
}

impl Server {
    async fn start(opts: ServeOptions) -> Server {
        let dp = Arc::new(Dataplane::new(DataplaneConfig::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            "10.0.0.1".parse().unwrap(),
        )));
        let state = Arc::new(ControlState::new(
            "director-a",
            dp,
            Vec::new(),
            Arc::new(|| Millis(1_000)),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_with(
            listener,
            Arc::clone(&state),
            opts,
            async move {
                let _ = rx.await;
            },
        ));
        Server {
            addr,
            state,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Run dirctl with `args` (and `env`), bounded in time; (exit code,
/// stdout, stderr).
async fn dirctl(server: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(DIRCTL);
    cmd.args(args).arg("--server").arg(server.to_string());
    for var in [
        "DIRCTL_SERVER",
        "DIRCTL_TOKEN",
        "DIRCTL_TOKEN_FILE",
        "DIRCTL_TLS_CA",
        "DIRCTL_TLS_CERT",
        "DIRCTL_TLS_KEY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("dirctl finished within 20 s")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_operators_certificate_and_refuses_others_clearly() {
    let dir = Dir::new("tls");
    let ca = Ca::new("operators CA");
    let stranger_ca = Ca::new("stranger CA");
    let (srv_cert, srv_key) = ca.issue(&["127.0.0.1", "director-a"]);
    let (op_cert, op_key) = ca.issue(&["operator"]);
    let (x_cert, x_key) = stranger_ca.issue(&["stranger"]);
    let ca_path = dir.write("ca.pem", &ca.pem);
    let op_cert = dir.write("op.crt", &op_cert);
    let op_key = dir.write("op.key", &op_key);
    let x_cert = dir.write("x.crt", &x_cert);
    let x_key = dir.write("x.key", &x_key);
    let srv = Server::start(ServeOptions {
        tls: Some(ServerTls {
            cert_pem: srv_cert.into_bytes(),
            key_pem: srv_key.into_bytes(),
            client_ca_pem: Some(ca.pem.clone().into_bytes()),
        }),
        token: None,
    })
    .await;

    // The operator's certificate: the edit goes through and is listed.
    let tls = [
        "--tls-ca",
        &ca_path,
        "--tls-cert",
        &op_cert,
        "--tls-key",
        &op_key,
    ];
    let (code, _, err) = dirctl(
        srv.addr,
        &[&tls[..], &["-A", "-t", "192.0.2.10:80", "-s", "rr"]].concat(),
        &[],
    )
    .await;
    assert_eq!(code, 0, "the operator's certificate is accepted: {err}");
    let (code, out, err) = dirctl(srv.addr, &[&["-Ln"][..], &tls[..]].concat(), &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TCP  192.0.2.10:80 rr"), "{out}");
    // The same from the environment.
    let (code, _, err) = dirctl(
        srv.addr,
        &["-Ln"],
        &[
            ("DIRCTL_TLS_CA", &ca_path),
            ("DIRCTL_TLS_CERT", &op_cert),
            ("DIRCTL_TLS_KEY", &op_key),
        ],
    )
    .await;
    assert_eq!(code, 0, "TLS options from the environment: {err}");

    // No client certificate.
    let (code, _, err) = dirctl(
        srv.addr,
        &["--tls-ca", &ca_path, "-A", "-t", "192.0.2.11:80"],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "dirctl: cannot reach director at {} with TLS (CA {ca_path}, no client certificate)",
            srv.addr
        )),
        "what was tried is named: {err}"
    );
    assert!(
        err.contains("give --tls-cert and --tls-key"),
        "the fix is named: {err}"
    );

    // A certificate from another CA.
    let (code, _, err) = dirctl(
        srv.addr,
        &[
            "--tls-ca",
            &ca_path,
            "--tls-cert",
            &x_cert,
            "--tls-key",
            &x_key,
            "-A",
            "-t",
            "192.0.2.12:80",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("client certificate {x_cert}")) && err.contains("tls_ca"),
        "the refused certificate and the fix are named: {err}"
    );

    // Plaintext against a TLS server.
    let (code, _, err) = dirctl(srv.addr, &["-Ln"], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("give --tls-ca"), "{err}");

    // Trusting the wrong CA for the server's certificate.
    let other_ca = dir.write("other-ca.pem", &stranger_ca.pem);
    let (code, _, err) = dirctl(
        srv.addr,
        &[
            "--tls-ca",
            &other_ca,
            "--tls-cert",
            &op_cert,
            "--tls-key",
            &op_key,
            "-Ln",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach director") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    let specs = srv.state.specs();
    assert_eq!(
        specs
            .iter()
            .map(|s| s.key.vip.to_string())
            .collect::<Vec<_>>(),
        ["192.0.2.10:80"],
        "no refused client changed anything"
    );
    srv.stop().await;
    let _ = p(&dir.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_is_required_and_each_refusal_says_why() {
    let dir = Dir::new("token");
    let token_file = dir.write("token", "0123456789abcdef-control\n");
    let srv = Server::start(ServeOptions {
        tls: None,
        token: Some(Token::from_file(Path::new(&token_file)).unwrap()),
    })
    .await;

    let (code, _, err) = dirctl(srv.addr, &["-A", "-t", "192.0.2.10:80"], &[]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("dirctl: this director's control API requires a bearer token")
            && err.contains("--token"),
        "{err}"
    );
    let (code, _, err) = dirctl(srv.addr, &["--token", "guess", "-Ln"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("the bearer token was refused"), "{err}");
    assert!(srv.state.specs().is_empty());

    let (code, _, err) = dirctl(
        srv.addr,
        &["-A", "-t", "192.0.2.10:80"],
        &[("DIRCTL_TOKEN", "0123456789abcdef-control")],
    )
    .await;
    assert_eq!(code, 0, "$DIRCTL_TOKEN: {err}");
    let (code, out, err) = dirctl(srv.addr, &["-Ln", "--token-file", &token_file], &[]).await;
    assert_eq!(code, 0, "--token-file: {err}");
    assert!(out.contains("192.0.2.10:80"), "{out}");
    let (code, _, err) = dirctl(
        srv.addr,
        &["status", "--token", "0123456789abcdef-control"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "a subcommand takes the token too: {err}");

    // The raw gRPC status, for other clients.
    let mut c = ControlClient::connect(format!("http://{}", srv.addr))
        .await
        .unwrap();
    let e = c
        .get_node_status(lb_proto::control::GetNodeStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("requires a bearer token"), "{e:?}");

    // Health needs no token (a probe holds no secret); reflection does.
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel(srv.addr).await);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: lb_proto::CONTROL_SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let e = list_services(srv.addr).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    srv.stop().await;
}

/// A plaintext channel to `addr`.
async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The services reflection lists.
async fn list_services(addr: SocketAddr) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut c = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let resp = stream.message().await?.expect("one response");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_serving_and_reflection_lists_the_control_service() {
    let srv = Server::start(ServeOptions::default()).await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel(srv.addr).await);
    for service in ["", "lb.control.v1.Control"] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "health of {service:?}"
        );
    }
    let services = list_services(srv.addr).await.unwrap();
    assert!(
        services.iter().any(|s| s == "lb.control.v1.Control"),
        "{services:?}"
    );
    assert!(
        services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{services:?}"
    );
    srv.stop().await;
}
