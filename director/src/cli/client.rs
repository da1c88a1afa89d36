//! Runs a parsed ipvsadm command against a director's control API.
//!
//! The server is `--server ADDR`, else `$DIRCTL_SERVER`, else
//! [`DEFAULT_SERVER`]. Errors are one line on stderr: the director's own
//! sentence for a refused request ("dirctl: No such service"), or what was
//! tried for an unreachable one ("dirctl: cannot reach director at
//! 127.0.0.1:7400: connection refused (set --server or DIRCTL_SERVER)").
//! Exit status: 0 done, 1 refused or unreachable, 2 bad command line.

use std::error::Error as _;
use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use lb_proto::common as pb;
use lb_proto::control::{self as ctl, control_client::ControlClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::access::BearerToken;

use super::args::{self, Command, Invocation, ServiceArg};
use super::format::{self, ListFormat, endpoint};
use super::rules::{self, key, server_spec, service_spec};

/// Where the control API listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7400";

/// The environment variable naming the server.
pub const SERVER_ENV: &str = "DIRCTL_SERVER";

/// How long to wait for the director to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The director could not be reached.
    #[error("cannot reach director at {server}: {reason} (set --server or {SERVER_ENV})")]
    Unreachable {
        /// The address tried.
        server: String,
        /// Why, in a few words ("connection refused").
        reason: String,
    },
    /// The director refused the request; its sentence.
    #[error("{0}")]
    Refused(String),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

/// The innermost cause of a transport error, as a few lowercase words.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            use io::ErrorKind as K;
            return match io.kind() {
                kind @ (K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable) => kind.to_string(),
                _ => io.to_string(),
            };
        }
        last = err.to_string();
        cur = err.source();
    }
    last
}

/// The address tried and how, for an error message: the address alone
/// for plaintext without a token (the common, local case), else with
/// what was tried and a hint.
fn tried(server: &str) -> String {
    let o = super::access::options();
    if !o.tls() && o.token.is_none() {
        return server.to_owned();
    }
    format!("{server} with {}", o.describe())
}

/// `why`, with a hint about TLS options unless nothing answered at all
/// (then the address is what to check).
fn with_hint(why: String) -> String {
    const NOBODY: &[&str] = &[
        "connection refused",
        "timed out",
        "host unreachable",
        "network unreachable",
        "address not available",
    ];
    if NOBODY.contains(&why.as_str()) {
        why
    } else {
        format!("{why}; {}", super::access::options().hint())
    }
}

pub(crate) fn status_error(server: &str, s: tonic::Status) -> ClientError {
    // A status the director sent has no source; one with a source was
    // made here from a broken connection (a TLS 1.3 server refusing the
    // client's certificate after the handshake: UNKNOWN or CANCELLED).
    if s.code() == tonic::Code::Unavailable || s.source().is_some() {
        let why = s.source().map_or_else(|| s.message().to_owned(), reason);
        ClientError::Unreachable {
            server: tried(server),
            reason: with_hint(why),
        }
    } else {
        ClientError::Refused(s.message().to_owned())
    }
}

/// A control API client: the channel, with the bearer token (if any) on
/// every call.
pub type Client = ControlClient<InterceptedService<Channel, BearerToken>>;

/// Connect to the control API at `server` (`host:port`, or a full URI),
/// with the TLS and token options in force ([`super::access::options`]).
pub async fn connect(server: &str) -> Result<Client, ClientError> {
    let o = super::access::options();
    let scheme = if o.tls() { "https" } else { "http" };
    let uri = if server.contains("://") {
        server.to_owned()
    } else {
        format!("{scheme}://{server}")
    };
    let unreachable = |reason: String| ClientError::Unreachable {
        server: tried(server),
        reason,
    };
    let mut ep = Endpoint::from_shared(uri)
        .map_err(|_| unreachable("not a valid address (expected HOST:PORT)".into()))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = o.client_tls().map_err(&unreachable)? {
        ep = ep
            .tls_config(tls)
            .map_err(|e| unreachable(format!("TLS configuration: {}", reason(&e))))?;
    }
    let channel = ep
        .connect()
        .await
        .map_err(|e| unreachable(with_hint(reason(&e))))?;
    Ok(ControlClient::with_interceptor(
        channel,
        BearerToken::new(o.token.as_deref()),
    ))
}

/// Run one command against `server`, writing listings to `out`.
pub async fn execute(
    command: &Command,
    server: &str,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut c = connect(server).await?;
    let fail = |s| status_error(server, s);
    match command {
        Command::AddService(o) => {
            c.add_service(ctl::AddServiceRequest {
                spec: Some(service_spec(o)),
                real_servers: Vec::new(),
            })
            .await
            .map_err(fail)?;
        }
        Command::EditService(o) => {
            c.edit_service(ctl::EditServiceRequest {
                spec: Some(service_spec(o)),
            })
            .await
            .map_err(fail)?;
        }
        Command::DeleteService(s) => {
            c.delete_service(ctl::DeleteServiceRequest {
                service: Some(key(*s)),
            })
            .await
            .map_err(fail)?;
        }
        Command::Clear => {
            c.clear_services(ctl::ClearServicesRequest {})
                .await
                .map_err(fail)?;
        }
        Command::AddServer(o) => {
            c.add_real_server(ctl::AddRealServerRequest {
                service: Some(key(o.service)),
                real_server: Some(server_spec(o)),
            })
            .await
            .map_err(fail)?;
        }
        Command::EditServer(o) => {
            c.edit_real_server(ctl::EditRealServerRequest {
                service: Some(key(o.service)),
                real_server: Some(server_spec(o)),
            })
            .await
            .map_err(fail)?;
        }
        Command::DeleteServer { service, server } => {
            c.delete_real_server(ctl::DeleteRealServerRequest {
                service: Some(key(*service)),
                address: Some(endpoint(*server)),
            })
            .await
            .map_err(fail)?;
        }
        Command::Zero(s) => {
            c.zero_counters(ctl::ZeroCountersRequest {
                service: s.map(key),
            })
            .await
            .map_err(fail)?;
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => {
            c.set_timeouts(ctl::SetTimeoutsRequest {
                timeouts: Some(pb::Timeouts {
                    tcp_timeout_s: *tcp,
                    tcp_fin_timeout_s: *tcpfin,
                    udp_timeout_s: *udp,
                }),
            })
            .await
            .map_err(fail)?;
        }
        Command::List(l) if l.timeout => {
            let t = c
                .get_timeouts(ctl::GetTimeoutsRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            out.write_all(format::timeouts(&t.timeouts.unwrap_or_default()).as_bytes())?;
        }
        Command::List(l) if l.connections => {
            out.write_all(format::connections_title().as_bytes())?;
            let mut token = String::new();
            loop {
                let page = c
                    .list_connections(ctl::ListConnectionsRequest {
                        include_templates: true,
                        page_size: 10_000,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                let mut text = String::new();
                for conn in &page.connections {
                    format::connection_line(&mut text, conn);
                }
                out.write_all(text.as_bytes())?;
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        Command::List(l) => {
            let fmt = ListFormat {
                stats: l.stats,
                exact: l.exact,
                rate: l.rate,
                thresholds: l.thresholds,
                persistent_conn: l.persistent_conn,
                tun_info: l.tun_info,
                nosort: l.nosort,
            };
            let options = Some(ctl::ListOptions {
                include_real_servers: true,
                include_stats: l.stats,
                include_rates: l.rate,
                include_health: false,
            });
            let text = match l.service {
                Some(s) => {
                    let info = c
                        .get_service(ctl::GetServiceRequest {
                            service: Some(key(s)),
                            options,
                        })
                        .await
                        .map_err(fail)?
                        .into_inner();
                    format::list_one(&info, fmt)
                }
                None => {
                    let all = c
                        .list_services(ctl::ListServicesRequest { options })
                        .await
                        .map_err(fail)?
                        .into_inner();
                    format::list_all(&all.services, fmt)
                }
            };
            out.write_all(text.as_bytes())?;
        }
        Command::Save => {
            let table = c
                .get_service_table(ctl::GetServiceTableRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            out.write_all(format::save(&table).as_bytes())?;
        }
        Command::Restore => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ClientError::Refused(format!("reading the rules from stdin: {e}")))?;
            let lines = rules::parse(&text)
                .map_err(|e| ClientError::Refused(format!("{e}; nothing was applied")))?;
            c.apply_rules(ctl::ApplyRulesRequest {
                ops: rules::to_ops(&lines),
                ..Default::default()
            })
            .await
            .map_err(|s| match status_error(server, s) {
                ClientError::Refused(msg) => ClientError::Refused(format!(
                    "{}; nothing was applied",
                    rules::Refusal {
                        lines: &lines,
                        message: &msg,
                    }
                )),
                other => other,
            })?;
        }
        Command::Help | Command::Version => {}
    }
    out.flush()?;
    Ok(())
}

/// What `dirctl health` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthArgs {
    /// `--server ADDR`.
    pub server: Option<String>,
    /// `-t|-u VIP:PORT`: one service.
    pub service: Option<ServiceArg>,
    /// `-r RIP[:PORT]`: one real server (port 0 = any).
    pub real_server: Option<std::net::SocketAddr>,
}

/// Parse `dirctl health` arguments (after `health`).
pub fn parse_health(argv: &[String]) -> Result<HealthArgs, args::ArgError> {
    let mut out = HealthArgs::default();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| args::ArgError(format!("option '{what}' needs a value")))
        };
        match a.as_str() {
            "-n" | "--numeric" => {}
            "--server" => out.server = Some(value(a)?),
            "-t" | "--tcp-service" | "-u" | "--udp-service" => {
                let protocol = if a.starts_with("-t") || a == "--tcp-service" {
                    crate::types::Protocol::Tcp
                } else {
                    crate::types::Protocol::Udp
                };
                let vip = args::parse_addr("service address", &value(a)?)?;
                out.service = Some(ServiceArg { protocol, vip });
            }
            "-r" | "--real-server" => {
                out.real_server = Some(args::parse_addr("server address", &value(a)?)?);
            }
            other => {
                return Err(args::ArgError(format!(
                    "unknown option '{other}' for health \
                     (usage: dirctl health [-t|u service-address] [-r server-address])"
                )));
            }
        }
    }
    Ok(out)
}

/// The wall clock, unix ms, for the ages `dirctl health` prints.
#[allow(clippy::disallowed_methods)] // a CLI, not the core
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Run `dirctl health` against `server`.
pub async fn health(h: &HealthArgs, server: &str, out: &mut dyn Write) -> Result<(), ClientError> {
    let mut c = connect(server).await?;
    let resp = c
        .get_health(ctl::GetHealthRequest {
            service: h.service.map(key),
            real_server: h.real_server.map(endpoint),
        })
        .await
        .map_err(|s| status_error(server, s))?
        .into_inner();
    out.write_all(format::health(&resp, unix_now_ms()).as_bytes())?;
    out.flush()?;
    Ok(())
}

fn server_address(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var(SERVER_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// `dirctl health ...` (the arguments after `health`).
pub fn health_main(argv: Vec<String>) -> ExitCode {
    let h = match parse_health(&argv) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("dirctl: {e}");
            return ExitCode::from(2);
        }
    };
    let server = server_address(h.server.clone());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dirctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    match rt.block_on(health(&h, &server, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dirctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `dirctl` with ipvsadm arguments (without the program name).
pub fn main(argv: Vec<String>) -> ExitCode {
    let inv: Invocation = match args::parse(&argv) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("dirctl: {e}\nTry `dirctl -h' for more information.");
            return ExitCode::from(2);
        }
    };
    let mut stdout = io::stdout().lock();
    match inv.command {
        Command::Help => {
            let _ = stdout.write_all(args::usage().as_bytes());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            let _ = writeln!(stdout, "dirctl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let server = server_address(inv.server.clone());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dirctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(&inv.command, &server, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        // `dirctl -Lnc | head`: the reader left; not an error worth a line.
        Err(ClientError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dirctl: {e}");
            ExitCode::FAILURE
        }
    }
}
