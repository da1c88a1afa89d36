//! `[services] ipvsadm_rules = "rules"`: virtual services loaded from a
//! file in `ipvsadm -S` syntax, read by the same parser as `dirctl -R`
//! ([`crate::cli::rules`]) and applied by the same operations as the
//! `ApplyRules` RPC ([`crate::api::rules::apply_ops`]), after the
//! `[[service]]` tables of the configuration. A relative path is taken
//! from the configuration file's directory. `--set` lines in it override
//! `[timeouts]`. Errors name the rules file and its line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Location, Problem, Source};
use super::timeouts::TimeoutSettings;
use crate::api::rules::{TimeoutChange, apply_ops};
use crate::cli::rules as parser;
use crate::health::HealthPlan;
use crate::service_table::{ServiceSpec, ServiceTable};

/// `[services]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServices {
    ipvsadm_rules: Option<Spanned<String>>,
}

impl RawServices {
    /// Read the rules file, if one is named, and apply it on top of
    /// `specs` and `timeouts`.
    pub(crate) fn apply(
        self,
        specs: &mut Vec<ServiceSpec>,
        timeouts: &mut TimeoutSettings,
        plan: &HealthPlan,
        src: &Source<'_>,
    ) -> Result<(), ConfigError> {
        let Some(path) = self.ipvsadm_rules else {
            return Ok(());
        };
        let span = path.span();
        let path = resolve(src.origin, path.get_ref());
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            src.invalid(
                span.clone(),
                Problem::Rules {
                    message: format!("ipvsadm_rules: cannot read {shown}: {e}"),
                    config: src.origin.to_string(),
                },
            )
        })?;
        let at_line = |line: usize, message: String| ConfigError::Invalid {
            at: Location {
                origin: shown.clone(),
                line,
                column: None,
            },
            problem: Box::new(Problem::Rules {
                message,
                config: src.origin.to_string(),
            }),
        };
        let lines = parser::parse(&text).map_err(|e| at_line(e.line, e.message))?;
        let mut next = specs.clone();
        let mut change = TimeoutChange::default();
        apply_ops(&mut next, &mut change, plan, &parser::to_ops(&lines)).map_err(|s| {
            match parser::locate(&lines, s.message()) {
                Some((l, msg)) => at_line(l.line, format!("{}: {msg}", l.text)),
                None => at_line(1, s.message().to_owned()),
            }
        })?;
        if let Err(e) = ServiceTable::empty().rebuild(&next) {
            return Err(at_line(1, e.to_string()));
        }
        let secs = |s: u32| (s != 0).then(|| Duration::from_secs(u64::from(s)));
        timeouts.tcp = secs(change.tcp).or(timeouts.tcp);
        timeouts.tcpfin = secs(change.tcpfin).or(timeouts.tcpfin);
        timeouts.udp = secs(change.udp).or(timeouts.udp);
        *specs = next;
        Ok(())
    }
}

/// `path` as given if absolute, else next to the configuration file.
fn resolve(origin: &str, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match Path::new(origin).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}
