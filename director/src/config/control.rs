//! `[control]`: where the gRPC control API listens and who may use it.
//!
//! ```toml
//! [control]
//! listen = "10.41.0.2:7400"                   # default 127.0.0.1:7400
//! tls_cert = "/etc/directord/control.crt"     # the server's certificate,
//! tls_key = "/etc/directord/control.key"      # and its key (PEM)
//! tls_ca = "/etc/directord/operators-ca.crt"  # client certificates required
//! token_file = "/etc/directord/control.token" # bearer token required
//! ```
//!
//! Loopback is the default. The API changes what the director forwards,
//! so an address other hosts can reach is refused unless clients must
//! authenticate — with a certificate signed by `tls_ca`, or the bearer
//! token in `token_file` — or `allow_unauthenticated = true` says that
//! exposing it is a decision. TLS without `tls_ca` encrypts but does not
//! tell clients apart, so it does not count as authentication. Files are
//! read when the daemon starts, not here.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};

/// The control API's address when neither `[control] listen` nor
/// `directord --control` gives one.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:7400";

/// `[control]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    tls_ca: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    #[serde(default)]
    allow_unauthenticated: bool,
}

/// The server's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlTlsFiles {
    /// The server's certificate (chain).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CA whose client certificates are accepted; `None`: no client
    /// certificate asked for.
    pub client_ca: Option<PathBuf>,
}

/// The control API's listener and access rules, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// TLS, if configured.
    pub tls: Option<ControlTlsFiles>,
    /// File holding the bearer token clients must present.
    pub token_file: Option<PathBuf>,
    /// Serve a non-loopback address without client authentication.
    pub allow_unauthenticated: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: DEFAULT_CONTROL_LISTEN.parse().expect("a valid address"),
            tls: None,
            token_file: None,
            allow_unauthenticated: false,
        }
    }
}

impl ControlConfig {
    /// Whether clients must prove who they are (client certificate or
    /// token).
    pub fn authenticates(&self) -> bool {
        self.token_file.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// Whether serving `listen` with these settings is allowed: loopback
    /// always; any other address only with client authentication or
    /// `allow_unauthenticated = true`. The error is a sentence saying how
    /// to fix it.
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), String> {
        if listen.ip().is_loopback() || self.authenticates() || self.allow_unauthenticated {
            return Ok(());
        }
        Err(format!(
            "the control API on {listen} would be reachable from other hosts with nothing \
             authenticating its clients: give tls_ca (with tls_cert and tls_key) to require \
             client certificates, or token_file to require a bearer token, in [control]; \
             or set allow_unauthenticated = true there to expose it knowingly; \
             or listen on loopback ({DEFAULT_CONTROL_LISTEN})"
        ))
    }
}

fn bad(src: &Source<'_>, span: std::ops::Range<usize>, message: String) -> ConfigError {
    src.invalid(span, Problem::Control { message })
}

fn path(v: Spanned<String>, key: &str, src: &Source<'_>) -> Result<PathBuf, ConfigError> {
    if v.get_ref().trim().is_empty() {
        return Err(bad(
            src,
            v.span(),
            format!("{key} is empty: give a file path"),
        ));
    }
    Ok(PathBuf::from(v.into_inner()))
}

impl RawControl {
    pub(crate) fn validate(
        self,
        src: &Source<'_>,
        table_span: std::ops::Range<usize>,
    ) -> Result<ControlConfig, ConfigError> {
        let (listen, listen_span) = match &self.listen {
            None => (DEFAULT_CONTROL_LISTEN.parse().expect("valid"), table_span),
            Some(l) => (
                l.get_ref().parse::<SocketAddr>().map_err(|_| {
                    bad(
                        src,
                        l.span(),
                        format!(
                            "listen = {:?} is not an IP:PORT address (e.g. \"{DEFAULT_CONTROL_LISTEN}\")",
                            l.get_ref()
                        ),
                    )
                })?,
                l.span(),
            ),
        };
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), ca) => Some(ControlTlsFiles {
                cert: path(cert, "tls_cert", src)?,
                key: path(key, "tls_key", src)?,
                client_ca: ca.map(|c| path(c, "tls_ca", src)).transpose()?,
            }),
            (cert, key, ca) => {
                let span = cert
                    .as_ref()
                    .or(key.as_ref())
                    .or(ca.as_ref())
                    .map(Spanned::span)
                    .unwrap_or_default();
                let message = if ca.is_some() && cert.is_none() && key.is_none() {
                    "tls_ca asks for client certificates, which needs TLS: \
                     give tls_cert and tls_key (the server's certificate and key) too"
                } else {
                    "give both tls_cert and tls_key (the server's certificate and its key)"
                };
                return Err(bad(src, span, message.into()));
            }
        };
        let token_file = self
            .token_file
            .map(|t| path(t, "token_file", src))
            .transpose()?;
        let config = ControlConfig {
            listen,
            tls,
            token_file,
            allow_unauthenticated: self.allow_unauthenticated,
        };
        config
            .check_exposure(listen)
            .map_err(|m| bad(src, listen_span, m))?;
        Ok(config)
    }
}
