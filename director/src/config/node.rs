//! `[node]`: who this director is.

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};

/// `[node]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    name: Spanned<String>,
}

/// The director's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name, used in logs and status (e.g. `director-a`).
    pub name: String,
}

impl RawNode {
    pub(crate) fn validate(self, src: &Source<'_>) -> Result<NodeConfig, ConfigError> {
        let span = self.name.span();
        let name = self.name.into_inner();
        if name.trim().is_empty() {
            return Err(src.invalid(span, Problem::EmptyNodeName));
        }
        Ok(NodeConfig { name })
    }
}
