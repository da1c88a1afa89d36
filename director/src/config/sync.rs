//! `[sync]`: the connection-sync link between the two directors.
//!
//! ```toml
//! [sync]
//! listen = "10.41.0.2:7401"   # served while this node is VRRP master
//! peer = "10.41.0.3:7401"     # the other director's `listen`
//! cluster = "lab-pair"        # both directors must agree
//! plaintext = true            # or: tls_ca / tls_cert / tls_key (PEM files)
//! ```
//!
//! The link is mutual TLS unless `plaintext = true` says otherwise: a
//! plaintext sync link must be a decision, never an accident.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};

/// `[sync]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    listen: Spanned<String>,
    peer: Spanned<String>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    plaintext: bool,
    #[serde(default)]
    tls_ca: Option<Spanned<String>>,
    #[serde(default)]
    tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    refresh_interval: Option<Spanned<f64>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// PEM files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTlsFiles {
    /// CA that signs both directors' certificates.
    pub ca: PathBuf,
    /// This director's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The sync link, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Where this node serves the sync stream while master.
    pub listen: SocketAddr,
    /// The peer's sync endpoint, subscribed to while backup.
    pub peer: SocketAddr,
    /// Cluster name both directors must share.
    pub cluster: String,
    /// Mutual TLS; `None` only with `plaintext = true`.
    pub tls: Option<SyncTlsFiles>,
    /// How often the master re-sends the timers of flows that saw traffic,
    /// so the backup's copies do not expire while the flows live.
    pub refresh_interval: Duration,
    /// `enabled = false` keeps the table but runs no sync (to show what
    /// sync does: without it, a failover breaks established flows).
    pub enabled: bool,
}

fn bad(src: &Source<'_>, span: std::ops::Range<usize>, message: String) -> ConfigError {
    src.invalid(span, Problem::Sync { message })
}

fn addr(v: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<SocketAddr, ConfigError> {
    v.get_ref().parse().map_err(|_| {
        bad(
            src,
            v.span(),
            format!("{key} = {:?} is not an IP:PORT address", v.get_ref()),
        )
    })
}

impl RawSync {
    pub(crate) fn validate(self, src: &Source<'_>) -> Result<SyncConfig, ConfigError> {
        let listen = addr(&self.listen, "listen", src)?;
        let peer = addr(&self.peer, "peer", src)?;
        if listen == peer {
            return Err(bad(
                src,
                self.peer.span(),
                format!("peer {peer} is this node's own listen address"),
            ));
        }
        let tls = match (self.tls_ca, self.tls_cert, self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(SyncTlsFiles {
                ca: PathBuf::from(ca.into_inner()),
                cert: PathBuf::from(cert.into_inner()),
                key: PathBuf::from(key.into_inner()),
            }),
            (None, None, None) if self.plaintext => None,
            (None, None, None) => {
                return Err(bad(
                    src,
                    self.listen.span(),
                    "the sync link needs tls_ca, tls_cert and tls_key (mutual TLS), \
                     or plaintext = true to run it unencrypted on a trusted link"
                        .into(),
                ));
            }
            _ => {
                return Err(bad(
                    src,
                    self.listen.span(),
                    "give all three of tls_ca, tls_cert and tls_key".into(),
                ));
            }
        };
        if tls.is_some() && self.plaintext {
            return Err(bad(
                src,
                self.listen.span(),
                "plaintext = true and TLS files together: choose one".into(),
            ));
        }
        let refresh_interval = match self.refresh_interval {
            None => Duration::from_secs(60),
            Some(r) => {
                let s = *r.get_ref();
                if !s.is_finite() || !(1.0..=3600.0).contains(&s) {
                    return Err(bad(
                        src,
                        r.span(),
                        format!("refresh_interval = {s} is out of range 1..=3600 seconds"),
                    ));
                }
                Duration::from_secs_f64(s)
            }
        };
        Ok(SyncConfig {
            listen,
            peer,
            cluster: self.cluster.unwrap_or_else(|| "default".into()),
            tls,
            refresh_interval,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}
