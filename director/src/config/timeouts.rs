//! `[timeouts]`: the `ipvsadm --set tcp tcpfin udp` triple.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};
use crate::conn::Timeouts;

/// Largest timeout accepted, in seconds: 31 days, ipvsadm's `MAX_TIMEOUT`.
pub const MAX_TIMEOUT_SECS: u64 = 86_400 * 31;

/// `[timeouts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    tcp: Option<Spanned<i64>>,
    tcpfin: Option<Spanned<i64>>,
    udp: Option<Spanned<i64>>,
}

/// Timeouts set by the configuration; `None` keeps the kernel default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeoutSettings {
    /// TCP ESTABLISHED timeout (default 900 s).
    pub tcp: Option<Duration>,
    /// TCP FIN_WAIT timeout (default 120 s).
    pub tcpfin: Option<Duration>,
    /// UDP timeout (default 300 s).
    pub udp: Option<Duration>,
}

impl TimeoutSettings {
    /// Apply the configured values to `timeouts`, as `ipvsadm --set` does;
    /// values not configured are left as they are.
    pub fn apply(&self, timeouts: &Timeouts) {
        timeouts.set_ipvsadm(
            self.tcp.unwrap_or_default(),
            self.tcpfin.unwrap_or_default(),
            self.udp.unwrap_or_default(),
        );
    }

    /// The kernel defaults with the configured values applied.
    pub fn to_timeouts(&self) -> Timeouts {
        let t = Timeouts::new();
        self.apply(&t);
        t
    }
}

impl RawTimeouts {
    pub(crate) fn validate(self, src: &Source<'_>) -> Result<TimeoutSettings, ConfigError> {
        let defaults = Timeouts::new().ipvsadm();
        let one = |name: &'static str,
                   v: Option<Spanned<i64>>,
                   default: Duration|
         -> Result<Option<Duration>, ConfigError> {
            let Some(v) = v else { return Ok(None) };
            let secs = *v.get_ref();
            match u64::try_from(secs) {
                Ok(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(Some(Duration::from_secs(s))),
                _ => Err(src.invalid(
                    v.span(),
                    Problem::TimeoutOutOfRange {
                        name,
                        secs,
                        max: MAX_TIMEOUT_SECS,
                        default: default.as_secs(),
                    },
                )),
            }
        };
        Ok(TimeoutSettings {
            tcp: one("tcp", self.tcp, defaults.0)?,
            tcpfin: one("tcpfin", self.tcpfin, defaults.1)?,
            udp: one("udp", self.udp, defaults.2)?,
        })
    }
}
