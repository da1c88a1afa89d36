//! Who may use the control API, and what else its server carries.
//!
//! - TLS ([`ServerTls`]): the server's certificate and key, and optionally
//!   a CA whose client certificates are then required (rustls through
//!   tonic; a client without one, or with one from another CA, fails the
//!   handshake).
//! - A bearer token ([`Token`]): every `lb.control.v1.Control` and
//!   reflection call must carry `authorization: Bearer <token>`; one
//!   without it, or with another token, is refused UNAUTHENTICATED with a
//!   sentence saying which. The comparison takes the same time whatever
//!   the token's first differing byte.
//! - gRPC health (`grpc.health.v1.Health`): `""` and
//!   `lb.control.v1.Control` answer SERVING while the server runs. Health
//!   needs no token, so a probe needs no secret (it reveals nothing).
//! - gRPC reflection (`grpc.reflection.v1` and `v1alpha`) over the
//!   contract's descriptors, so `grpcurl` works without the .proto files.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use lb_proto::control::control_server::ControlServer;
use tokio::net::TcpListener;
use tonic::service::Interceptor;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use super::{ControlService, ControlState, ServeError};

/// The bearer token clients must present.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("control API token_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("control API token_file {path} is empty: put the token on its first line")]
    Empty {
        /// The file.
        path: String,
    },
    /// The token has characters that cannot travel in gRPC metadata.
    #[error(
        "control API token_file {path}: the token must be printable ASCII without spaces \
         (it travels in an HTTP/2 header)"
    )]
    NotPrintable {
        /// The file.
        path: String,
    },
}

impl Token {
    /// A token from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Token(Arc::from(t.as_bytes())))
    }

    /// The token on the first line of `path`.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: p.clone(),
            source,
        })?;
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(TokenError::Empty { path: p });
        }
        Token::new(first).ok_or(TokenError::NotPrintable { path: p })
    }

    /// Whether `given` is this token, in time that depends on the lengths
    /// only.
    fn matches(&self, given: &[u8]) -> bool {
        if given.len() != self.0.len() {
            return false;
        }
        self.0
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The interceptor in front of the control service: checks the bearer
/// token when one is configured, lets everything through otherwise.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<Token>,
}

impl Auth {
    /// Require `token` (or nothing, with `None`).
    pub fn new(token: Option<Token>) -> Auth {
        Auth { token }
    }
}

impl Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(req);
        };
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "this director's control API requires a bearer token: give dirctl --token, \
                 or set DIRCTL_TOKEN (gRPC metadata `authorization: Bearer <token>`)",
            ));
        };
        let given = value.as_bytes();
        let Some(given) = given
            .strip_prefix(b"Bearer ")
            .or_else(|| given.strip_prefix(b"bearer "))
        else {
            return Err(Status::unauthenticated(
                "the authorization metadata is not `Bearer <token>`",
            ));
        };
        if token.matches(given) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "the bearer token was refused: it is not this director's token \
                 ([control] token_file)",
            ))
        }
    }
}

/// The server's TLS material (PEM, already read).
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate chain.
    pub cert_pem: Vec<u8>,
    /// Private key.
    pub key_pem: Vec<u8>,
    /// CA of the accepted client certificates; `None`: none asked for.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_certificates", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    fn config(&self) -> ServerTlsConfig {
        let mut c =
            ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            c = c
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        c
    }
}

/// How the control server authenticates its clients; the default is
/// plaintext without a token (for loopback).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// TLS, with or without client certificates.
    pub tls: Option<ServerTls>,
    /// The bearer token required of every control call.
    pub token: Option<Token>,
}

/// Serve the control API, gRPC health and reflection on `listener` until
/// `shutdown` completes.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<ControlState>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ControlServer<ControlService>>().await;
    let auth = Auth::new(opts.token.clone());
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Only what this server serves (the contract's descriptors
            // also hold the sync service, served elsewhere).
            .with_service_name(lb_proto::CONTROL_SERVICE_NAME)
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &opts.tls {
        builder = builder.tls_config(tls.config())?;
    }
    builder
        .add_service(health_service)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1alpha,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ControlServer::new(ControlService::new(state)),
            auth,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &mut Auth, header: Option<&str>) -> Result<(), Status> {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        auth.call(req).map(drop)
    }

    #[test]
    fn without_a_token_everything_passes() {
        let mut a = Auth::default();
        assert!(call(&mut a, None).is_ok());
        assert!(call(&mut a, Some("Bearer x")).is_ok());
    }

    #[test]
    fn the_token_is_checked_and_each_refusal_says_why() {
        let mut a = Auth::new(Token::new("s3cret-token"));
        assert!(call(&mut a, Some("Bearer s3cret-token")).is_ok());
        let e = call(&mut a, None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("requires a bearer token"), "{e:?}");
        let e = call(&mut a, Some("Bearer s3cret-tokeN")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("refused"), "{e:?}");
        let e = call(&mut a, Some("Bearer s3cret")).unwrap_err();
        assert!(e.message().contains("refused"), "{e:?}");
        let e = call(&mut a, Some("Basic abc")).unwrap_err();
        assert!(e.message().contains("not `Bearer"), "{e:?}");
    }

    #[test]
    fn tokens_are_printable_and_not_empty() {
        assert!(Token::new("  \n").is_none());
        assert!(Token::new("a b").is_none());
        assert!(Token::new(" abc\n").is_some_and(|t| t.matches(b"abc")));
    }
}
