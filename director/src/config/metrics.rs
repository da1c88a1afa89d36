//! `[metrics]`: the Prometheus endpoint.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9400"   # the default; GET /metrics
//! ```
//!
//! Off unless the table is present. The endpoint is read-only and
//! unauthenticated (as Prometheus exporters are): it shows the services,
//! real servers and pair state, so put it on loopback or a management
//! network, and let a local agent or a firewalled scraper read it.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};

/// Where the endpoint listens when `[metrics]` gives no `listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9400";

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    #[serde(default)]
    listen: Option<Spanned<String>>,
}

/// The metrics endpoint, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served.
    pub listen: SocketAddr,
}

impl RawMetrics {
    pub(crate) fn validate(self, src: &Source<'_>) -> Result<MetricsConfig, ConfigError> {
        let listen = match self.listen {
            None => DEFAULT_METRICS_LISTEN.parse().expect("a valid address"),
            Some(l) => l.get_ref().parse().map_err(|_| {
                src.invalid(
                    l.span(),
                    Problem::Metrics {
                        message: format!(
                            "listen = {:?} is not an IP:PORT address (e.g. \"{DEFAULT_METRICS_LISTEN}\")",
                            l.get_ref()
                        ),
                    },
                )
            })?,
        };
        Ok(MetricsConfig { listen })
    }
}
