//! The daemon's operator-facing listeners: the control API with its
//! access rules (`[control]`, or `--control` on the command line) and the
//! Prometheus endpoint (`[metrics]`). Files named in the configuration
//! (certificates, keys, the token) are read here, at start, so a missing
//! or unreadable one stops the daemon with its path before it serves.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use crate::api::{ServeOptions, ServerTls, Token};
use crate::config::ControlConfig;

/// Where the control API listens and how it checks its clients.
#[derive(Debug, Clone)]
pub struct ControlPlan {
    /// The address to bind.
    pub listen: SocketAddr,
    /// TLS and token, read from their files.
    pub opts: ServeOptions,
    /// One line for the start-up banner: address and access rules.
    pub describe: String,
}

fn read(what: &str, p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("control API {what}: reading {}", p.display()))
}

/// The control API as `cfg` says, with `listen_override` (`--control`)
/// in place of its address when given. A non-loopback address needs
/// client authentication (see [`ControlConfig::check_exposure`]),
/// whichever way it was given.
pub fn control_plan(
    cfg: &ControlConfig,
    listen_override: Option<SocketAddr>,
) -> anyhow::Result<ControlPlan> {
    let listen = listen_override.unwrap_or(cfg.listen);
    cfg.check_exposure(listen).map_err(|m| {
        if listen_override.is_some() {
            anyhow::anyhow!("--control {listen}: {m}")
        } else {
            anyhow::anyhow!(m)
        }
    })?;
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| -> anyhow::Result<ServerTls> {
            Ok(ServerTls {
                cert_pem: read("tls_cert", &t.cert)?,
                key_pem: read("tls_key", &t.key)?,
                client_ca_pem: t
                    .client_ca
                    .as_ref()
                    .map(|c| read("tls_ca", c))
                    .transpose()?,
            })
        })
        .transpose()?;
    let token = cfg
        .token_file
        .as_ref()
        .map(|p| Token::from_file(p))
        .transpose()?;
    let mut rules = Vec::new();
    match &tls {
        Some(t) if t.client_ca_pem.is_some() => rules.push("TLS with client certificates"),
        Some(_) => rules.push("TLS"),
        None => rules.push("plaintext"),
    }
    if token.is_some() {
        rules.push("bearer token");
    }
    if !listen.ip().is_loopback() && !cfg.authenticates() {
        rules.push("UNAUTHENTICATED (allow_unauthenticated = true)");
    }
    if token.is_some() && tls.is_none() && !listen.ip().is_loopback() {
        rules.push("warning: the token crosses the network in clear text; add tls_cert/tls_key");
    }
    Ok(ControlPlan {
        listen,
        opts: ServeOptions { tls, token },
        describe: format!("{listen} ({})", rules.join(", ")),
    })
}
