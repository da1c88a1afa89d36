//! The daemon's configuration file (TOML): parsed, validated whole, and
//! turned into the values the rest of the director uses — [`ServiceSpec`]s
//! for [`ServiceTable::rebuild`](crate::ServiceTable::rebuild), the
//! interfaces and the addresses each answers ARP for, dataplane settings,
//! and `ipvsadm --set` timeouts.
//!
//! A configuration is refused whole if anything in it is wrong: [`Config`]
//! exists only for a file that passed every check, including the service
//! table's own validation (`ServiceTable::empty().rebuild(..)`), so a
//! scheduler or port-mapping error surfaces at load time, not at run time.
//! Unknown keys are errors, so a typo is never silently ignored. Every
//! error names the file, line and column ([`ConfigError`]).
//!
//! ```toml
//! [node]
//! name = "director-a"
//!
//! [[interface]]
//! name = "eth0"
//! address = "10.11.0.2/24"
//!
//! [[service]]
//! protocol = "tcp"
//! address = "10.11.0.100:80"
//!
//!   [[service.real_server]]
//!   address = "10.11.0.11"
//!   method = "dr"
//! ```
//!
//! Services may also come from a file in `ipvsadm -S` syntax (what
//! `dirctl -S` and `ipvsadm -S -n` print), applied after the
//! `[[service]]` tables; its `--set` lines override `[timeouts]`, and its
//! errors name the rules file and line (`rules.rs`):
//!
//! ```toml
//! [services]
//! ipvsadm_rules = "rules"   # relative to this file's directory
//! ```
//!
//! One file per table: `node`, `dataplane`, `timeouts`, `interface`,
//! `service` (and `health`, the health-check keys of a service),
//! `services` (`rules`), `vrrp`, `sync`, `control` (the control API's
//! listener and access) and `metrics` (the Prometheus endpoint). Each holds
//! the table's raw serde struct (spans kept for error
//! locations) and its validated form; a new table is a new file plus a
//! field in `RawConfig`. Parsing reads no clock; the only things it asks
//! the system are the file ([`Config::load`]), the rules file it names,
//! and the CPU count, for the default number of workers.

mod control;
mod dataplane;
mod error;
mod health;
mod interface;
mod metrics;
mod node;
mod rules;
mod service;
mod sync;
mod timeouts;
mod vrrp;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

pub use control::{ControlConfig, ControlTlsFiles, DEFAULT_CONTROL_LISTEN};
pub use dataplane::{DataplaneSettings, MAX_CONNECTIONS_LIMIT, WorkerFanout};
pub use error::{ConfigError, Location, Problem};
pub use health::{HealthProblem, MAX_COUNT, MAX_DELAY, MIN_INTERVAL};
pub use interface::{InterfaceConfig, InterfaceVips};
pub use metrics::{DEFAULT_METRICS_LISTEN, MetricsConfig};
pub use node::NodeConfig;
pub use sync::{SyncConfig, SyncTlsFiles};
pub use timeouts::{MAX_TIMEOUT_SECS, TimeoutSettings};
pub use vrrp::VrrpInstanceConfig;

use crate::health::HealthPlan;
use crate::service_table::ServiceSpec;
use error::Source;

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: node::RawNode,
    #[serde(default)]
    dataplane: dataplane::RawDataplane,
    #[serde(default)]
    timeouts: timeouts::RawTimeouts,
    #[serde(default)]
    interface: Vec<Spanned<interface::RawInterface>>,
    #[serde(default)]
    service: Vec<Spanned<service::RawService>>,
    #[serde(default)]
    services: rules::RawServices,
    #[serde(default)]
    vrrp_instance: Vec<Spanned<vrrp::RawVrrpInstance>>,
    #[serde(default)]
    sync: Option<sync::RawSync>,
    #[serde(default)]
    control: Option<Spanned<control::RawControl>>,
    #[serde(default)]
    metrics: Option<metrics::RawMetrics>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    origin: String,
    node: NodeConfig,
    dataplane: DataplaneSettings,
    timeouts: TimeoutSettings,
    interfaces: Vec<InterfaceConfig>,
    services: Vec<ServiceSpec>,
    vrrp: Vec<VrrpInstanceConfig>,
    sync: Option<SyncConfig>,
    health: HealthPlan,
    control: ControlConfig,
    metrics: Option<MetricsConfig>,
}

impl Config {
    /// Read and validate the file at `path`; errors name it as given.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        Config::parse(&text, &origin)
    }

    /// Validate `text`; errors name `origin` (a file name, or e.g.
    /// `<stdin>`).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let src = Source { origin, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| src.syntax(&e))?;
        let node = raw.node.validate(&src)?;
        let dataplane = raw.dataplane.validate(&src, raw.interface.len())?;
        let mut timeouts = raw.timeouts.validate(&src)?;
        let interfaces = interface::validate_all(raw.interface, &src)?;
        let (mut services, health) = service::validate_all(raw.service, &interfaces, &src)?;
        raw.services
            .apply(&mut services, &mut timeouts, &health, &src)?;
        let mut config = Config {
            origin: origin.to_string(),
            node,
            dataplane,
            timeouts,
            interfaces,
            services,
            health,
            vrrp: Vec::new(),
            sync: raw.sync.map(|s| s.validate(&src)).transpose()?,
            control: match raw.control {
                None => ControlConfig::default(),
                Some(c) => {
                    let span = c.span();
                    c.into_inner().validate(&src, span)?
                }
            },
            metrics: raw.metrics.map(|m| m.validate(&src)).transpose()?,
        };
        config.vrrp = vrrp::validate_all(
            raw.vrrp_instance,
            &config.interfaces,
            &config.all_vips(),
            &src,
        )?;
        Ok(config)
    }

    /// The name the configuration was loaded under (its path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `[node]`: this director's identity.
    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    /// `[dataplane]`, with defaults filled in.
    pub fn dataplane(&self) -> &DataplaneSettings {
        &self.dataplane
    }

    /// `[timeouts]`: apply with [`TimeoutSettings::apply`] to the
    /// connection table's [`Timeouts`](crate::conn::Timeouts).
    pub fn timeouts(&self) -> &TimeoutSettings {
        &self.timeouts
    }

    /// The data interfaces, in file order (at least one).
    pub fn interfaces(&self) -> &[InterfaceConfig] {
        &self.interfaces
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&InterfaceConfig> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The virtual services, in file order, ready for
    /// [`ServiceTable::rebuild`](crate::ServiceTable::rebuild) (which
    /// accepts them: that was checked).
    pub fn service_specs(&self) -> Vec<ServiceSpec> {
        self.services.clone()
    }

    /// The health checks, sorry servers and quorums of the services
    /// (config/health.rs); empty if none is configured.
    pub fn health_plan(&self) -> &HealthPlan {
        &self.health
    }

    /// Which addresses each interface answers ARP for while this node is
    /// master, one entry per interface in file order: the interface's
    /// explicit `vips`, then every service VIP — on the interface whose
    /// subnet contains it (the most specific one), else on the first
    /// interface. A service VIP listed explicitly in some interface's
    /// `vips` is answered there only. Each address appears once.
    pub fn vips_by_interface(&self) -> Vec<InterfaceVips> {
        let service_vips = self.services.iter().filter_map(|s| match s.key.vip.ip() {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        });
        interface::vips_by_interface(&self.interfaces, service_vips)
    }

    /// `[[vrrp_instance]]`s, in file order; empty when VRRP does not run
    /// (the node's role is then set by hand).
    pub fn vrrp_instances(&self) -> &[VrrpInstanceConfig] {
        &self.vrrp
    }

    /// `[sync]`, if the node syncs its connection table with a peer.
    pub fn sync(&self) -> Option<&SyncConfig> {
        self.sync.as_ref()
    }

    /// `[control]`: the control API's address and access rules (loopback,
    /// no TLS, no token when the table is absent).
    pub fn control(&self) -> &ControlConfig {
        &self.control
    }

    /// `[metrics]`, if the Prometheus endpoint is on.
    pub fn metrics(&self) -> Option<&MetricsConfig> {
        self.metrics.as_ref()
    }

    /// Every address this node answers ARP for while master, each once.
    pub fn all_vips(&self) -> Vec<Ipv4Addr> {
        self.vips_by_interface()
            .into_iter()
            .flat_map(|v| v.addresses)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ForwardMethod;
    use crate::forward::OuterTtl;
    use std::time::Duration;

    const MINIMAL: &str = r#"
[node]
name = "a"

[[interface]]
name = "eth0"
address = "10.11.0.2/24"
"#;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c = Config::parse(MINIMAL, "m.toml").unwrap();
        assert_eq!(c.node().name, "a");
        assert_eq!(c.origin(), "m.toml");
        let dp = c.dataplane();
        assert!(dp.workers >= 1);
        assert_eq!(dp.max_connections, 1 << 20);
        assert_eq!(dp.tun_ttl, OuterTtl::Fixed(64));
        assert!(dp.verify_checksums);
        assert_eq!(*c.timeouts(), TimeoutSettings::default());
        assert!(c.service_specs().is_empty());
        assert_eq!(c.interface("eth0").unwrap().prefix_len, 24);
        assert!(c.vips_by_interface()[0].addresses.is_empty());
    }

    #[test]
    fn defaults_of_a_service_and_a_real_server() {
        let text = format!(
            "{MINIMAL}\n[[service]]\nprotocol = \"udp\"\naddress = \"10.11.0.100:53\"\n\
             [[service.real_server]]\naddress = \"10.11.0.11\"\nmethod = \"-g\"\n"
        );
        let c = Config::parse(&text, "m.toml").unwrap();
        let s = &c.service_specs()[0];
        assert_eq!(
            s.scheduler,
            crate::sched::SchedulerKind::Wlc,
            "IPVS default"
        );
        assert_eq!(s.sched_opts, crate::sched::SchedOptions::default());
        assert_eq!(s.persistence, None);
        let d = s.dests[0];
        assert_eq!(
            d.addr,
            "10.11.0.11:53".parse().unwrap(),
            "port omitted = virtual port"
        );
        assert_eq!(d.method, ForwardMethod::DirectRouting);
        assert_eq!((d.weight, d.upper_threshold, d.lower_threshold), (1, 0, 0));
    }

    #[test]
    fn timeouts_apply_as_ipvsadm_set() {
        let text = format!("{MINIMAL}\n[timeouts]\ntcp = 3600\nudp = 10\n");
        let c = Config::parse(&text, "m.toml").unwrap();
        let t = c.timeouts().to_timeouts();
        assert_eq!(
            t.ipvsadm(),
            (
                Duration::from_secs(3600),
                Duration::from_secs(120),
                Duration::from_secs(10)
            )
        );
    }

    #[test]
    fn tun_ttl_may_inherit() {
        let text = format!("{MINIMAL}\n[dataplane]\ntun_ttl = \"inherit\"\n");
        let c = Config::parse(&text, "m.toml").unwrap();
        assert_eq!(c.dataplane().tun_ttl, OuterTtl::Inherit);
    }

    #[test]
    fn fanout_is_by_flow_hash_unless_cpu_is_asked_for() {
        let c = Config::parse(MINIMAL, "m.toml").unwrap();
        assert_eq!(c.dataplane().fanout, WorkerFanout::Hash);
        let text = format!("{MINIMAL}\n[dataplane]\nfanout = \"cpu\"\n");
        let c = Config::parse(&text, "m.toml").unwrap();
        assert_eq!(c.dataplane().fanout, WorkerFanout::Cpu);
    }

    #[test]
    fn rx_ring_is_v2_unless_v3_is_asked_for() {
        use crate::io::RingVersion;
        let c = Config::parse(MINIMAL, "m.toml").unwrap();
        assert_eq!(c.dataplane().rx_ring, RingVersion::V2);
        let text = format!("{MINIMAL}\n[dataplane]\nrx_ring = \"v3\"\n");
        let c = Config::parse(&text, "m.toml").unwrap();
        assert_eq!(c.dataplane().rx_ring, RingVersion::V3);
        let text = format!("{MINIMAL}\n[dataplane]\nrx_ring = \"v4\"\n");
        let e = Config::parse(&text, "m.toml").unwrap_err().to_string();
        assert!(
            e.contains("rx_ring = \"v4\"") && e.contains("m.toml:"),
            "{e}"
        );
    }
}
