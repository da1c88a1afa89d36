//! `[[vrrp_instance]]`: the VRRP instances that decide which director of
//! the pair owns the VIPs. Key names are keepalived's, so an operator can
//! carry a `vrrp_instance` block over almost line by line:
//!
//! ```toml
//! [[vrrp_instance]]
//! name = "VI_1"
//! interface = "eth0"
//! virtual_router_id = 51
//! priority = 150
//! advert_int = 0.1                 # seconds, centisecond resolution
//! virtual_ipaddress = ["10.11.0.100", "10.12.0.1"]
//! ```
//!
//! The addresses of an instance move together (the outside VIP and, for
//! NAT, the inside gateway VIP). Left out, `virtual_ipaddress` means every
//! address this node answers for; when instances are configured, every
//! such address must belong to exactly one instance, so no VIP is left
//! unowned by mistake.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};
use super::interface::{InterfaceConfig, parse_ipv4};

/// Longest advertisement interval VRRPv3 can carry: 4095 centiseconds.
const MAX_ADVERT_CS: u32 = 4095;

/// `[[vrrp_instance]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrpInstance {
    name: Spanned<String>,
    interface: Spanned<String>,
    virtual_router_id: Spanned<i64>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    advert_int: Option<Spanned<f64>>,
    #[serde(default)]
    nopreempt: bool,
    #[serde(default)]
    preempt_delay: Option<Spanned<f64>>,
    #[serde(default)]
    virtual_ipaddress: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    unicast_peer: Vec<Spanned<String>>,
    #[serde(default)]
    notify: Option<Spanned<String>>,
    #[serde(default)]
    garp_master_delay: Option<Spanned<f64>>,
    #[serde(default)]
    garp_master_repeat: Option<Spanned<i64>>,
    #[serde(default)]
    garp_master_refresh: Option<Spanned<f64>>,
    #[serde(default)]
    garp_master_refresh_repeat: Option<Spanned<i64>>,
}

/// One VRRP instance, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstanceConfig {
    /// Instance name (keepalived's `vrrp_instance NAME`).
    pub name: String,
    /// Interface the adverts are sent and heard on.
    pub interface: String,
    /// The director's own address there: advert source and tie-breaker.
    pub primary_ip: Ipv4Addr,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Priority, 1..=255 (255: address owner, starts as master).
    pub priority: u8,
    /// Advertisement interval in centiseconds, 1..=4095.
    pub advert_interval_cs: u16,
    /// Whether a higher-priority backup takes over from a running master.
    pub preempt: bool,
    /// How long after start-up a backup waits before preempting.
    pub preempt_delay: Duration,
    /// The addresses that move with this instance.
    pub vips: Vec<Ipv4Addr>,
    /// Unicast peers; empty: multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Program and leading arguments run on every state change, with
    /// keepalived's `INSTANCE <name> <state> <priority>` appended.
    pub notify: Option<Vec<String>>,
    /// Gratuitous ARPs per VIP in each burst.
    pub garp_repeat: u32,
    /// Delay of the second burst (zero: none).
    pub garp_delay: Duration,
    /// Period of refresh bursts (`None`: none).
    pub garp_refresh: Option<Duration>,
    /// Gratuitous ARPs per VIP in a refresh burst.
    pub garp_refresh_repeat: u32,
}

fn bad(src: &Source<'_>, span: Range<usize>, instance: &str, message: String) -> ConfigError {
    src.invalid(
        span,
        Problem::Vrrp {
            instance: instance.to_string(),
            message,
        },
    )
}

/// Seconds as written, within `0..=max`, to a duration.
fn seconds(
    v: &Spanned<f64>,
    key: &str,
    max: f64,
    name: &str,
    src: &Source<'_>,
) -> Result<Duration, ConfigError> {
    let s = *v.get_ref();
    if !s.is_finite() || !(0.0..=max).contains(&s) {
        return Err(bad(
            src,
            v.span(),
            name,
            format!("{key} = {s} is out of range 0..={max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

fn count(v: &Spanned<i64>, key: &str, name: &str, src: &Source<'_>) -> Result<u32, ConfigError> {
    let n = *v.get_ref();
    if !(1..=100).contains(&n) {
        return Err(bad(
            src,
            v.span(),
            name,
            format!("{key} = {n} is out of range 1..=100"),
        ));
    }
    Ok(n as u32)
}

impl RawVrrpInstance {
    fn validate(
        self,
        interfaces: &[InterfaceConfig],
        node_vips: &[Ipv4Addr],
        src: &Source<'_>,
    ) -> Result<VrrpInstanceConfig, ConfigError> {
        let name = self.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(bad(
                src,
                self.name.span(),
                "",
                "the instance name is empty".into(),
            ));
        }
        let Some(iface) = interfaces
            .iter()
            .find(|i| &i.name == self.interface.get_ref())
        else {
            let known: Vec<_> = interfaces.iter().map(|i| i.name.as_str()).collect();
            return Err(bad(
                src,
                self.interface.span(),
                &name,
                format!(
                    "interface {:?} is not a configured [[interface]] (known: {})",
                    self.interface.get_ref(),
                    known.join(", ")
                ),
            ));
        };
        let vrid = *self.virtual_router_id.get_ref();
        if !(1..=255).contains(&vrid) {
            return Err(bad(
                src,
                self.virtual_router_id.span(),
                &name,
                format!("virtual_router_id = {vrid} is out of range 1..=255"),
            ));
        }
        let priority = match &self.priority {
            None => 100,
            Some(p) if (1..=255).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => {
                return Err(bad(
                    src,
                    p.span(),
                    &name,
                    format!(
                        "priority = {} is out of range 1..=255 (0 is reserved for a master that leaves)",
                        p.get_ref()
                    ),
                ));
            }
        };
        let advert_interval_cs = match &self.advert_int {
            None => 100,
            Some(a) => {
                let s = *a.get_ref();
                let cs = (s * 100.0).round();
                if !s.is_finite() || cs < 1.0 || cs > f64::from(MAX_ADVERT_CS) {
                    return Err(bad(
                        src,
                        a.span(),
                        &name,
                        format!(
                            "advert_int = {s} is out of range 0.01..=40.95 seconds (VRRPv3 carries centiseconds)"
                        ),
                    ));
                }
                cs as u16
            }
        };
        let preempt_delay = match &self.preempt_delay {
            None => Duration::ZERO,
            Some(d) => seconds(d, "preempt_delay", 1000.0, &name, src)?,
        };
        let vips = match &self.virtual_ipaddress {
            None => node_vips.to_vec(),
            Some(list) => {
                let mut vips = Vec::new();
                for v in list {
                    let ip =
                        parse_ipv4(v, format!("vrrp_instance {name}: virtual_ipaddress"), src)?;
                    if !node_vips.contains(&ip) {
                        return Err(bad(
                            src,
                            v.span(),
                            &name,
                            format!(
                                "{ip} is not an address this node answers for: \
                                 add it to a [[service]] address or an [[interface]] vips list"
                            ),
                        ));
                    }
                    if !vips.contains(&ip) {
                        vips.push(ip);
                    }
                }
                vips
            }
        };
        let mut unicast_peers = Vec::new();
        for p in &self.unicast_peer {
            let ip = parse_ipv4(p, format!("vrrp_instance {name}: unicast_peer"), src)?;
            if ip == iface.address {
                return Err(bad(
                    src,
                    p.span(),
                    &name,
                    format!(
                        "unicast_peer {ip} is this node's own address on {}",
                        iface.name
                    ),
                ));
            }
            unicast_peers.push(ip);
        }
        let notify = match &self.notify {
            None => None,
            Some(n) => {
                let words: Vec<String> = n.get_ref().split_whitespace().map(String::from).collect();
                if words.is_empty() {
                    return Err(bad(src, n.span(), &name, "notify is empty".into()));
                }
                Some(words)
            }
        };
        let garp_repeat = match &self.garp_master_repeat {
            None => 5,
            Some(r) => count(r, "garp_master_repeat", &name, src)?,
        };
        let garp_refresh_repeat = match &self.garp_master_refresh_repeat {
            None => 1,
            Some(r) => count(r, "garp_master_refresh_repeat", &name, src)?,
        };
        let garp_delay = match &self.garp_master_delay {
            None => Duration::from_secs(5),
            Some(d) => seconds(d, "garp_master_delay", 3600.0, &name, src)?,
        };
        let garp_refresh = match &self.garp_master_refresh {
            None => None,
            Some(d) => Some(seconds(d, "garp_master_refresh", 86_400.0, &name, src)?)
                .filter(|d| !d.is_zero()),
        };
        Ok(VrrpInstanceConfig {
            name,
            interface: iface.name.clone(),
            primary_ip: iface.address,
            vrid: vrid as u8,
            priority: priority as u8,
            advert_interval_cs,
            preempt: !self.nopreempt,
            preempt_delay,
            vips,
            unicast_peers,
            notify,
            garp_repeat,
            garp_delay,
            garp_refresh,
            garp_refresh_repeat,
        })
    }
}

/// Validate every instance and the relations between them: unique names,
/// one VRID per interface, each node VIP in exactly one instance.
pub(crate) fn validate_all(
    raw: Vec<Spanned<RawVrrpInstance>>,
    interfaces: &[InterfaceConfig],
    node_vips: &[Ipv4Addr],
    src: &Source<'_>,
) -> Result<Vec<VrrpInstanceConfig>, ConfigError> {
    let mut out: Vec<VrrpInstanceConfig> = Vec::new();
    let mut names = HashSet::new();
    let mut owner: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut last_span = 0..0;
    for entry in raw {
        let span = entry.span();
        last_span = span.clone();
        let inst = entry.into_inner().validate(interfaces, node_vips, src)?;
        if !names.insert(inst.name.clone()) {
            return Err(bad(
                src,
                span,
                &inst.name,
                "a vrrp_instance of this name is already defined".into(),
            ));
        }
        if let Some(other) = out
            .iter()
            .find(|o| o.interface == inst.interface && o.vrid == inst.vrid)
        {
            return Err(bad(
                src,
                span,
                &inst.name,
                format!(
                    "virtual_router_id {} on {} is already used by vrrp_instance {}",
                    inst.vrid, inst.interface, other.name
                ),
            ));
        }
        for vip in &inst.vips {
            if let Some(first) = owner.insert(*vip, inst.name.clone()) {
                return Err(bad(
                    src,
                    span.clone(),
                    &inst.name,
                    format!(
                        "{vip} already moves with vrrp_instance {first}: an address belongs to one instance"
                    ),
                ));
            }
        }
        out.push(inst);
    }
    if !out.is_empty()
        && let Some(orphan) = node_vips.iter().find(|v| !owner.contains_key(v))
    {
        return Err(bad(
            src,
            last_span,
            &out[out.len() - 1].name,
            format!(
                "{orphan} is in no vrrp_instance's virtual_ipaddress: no director would ever answer for it"
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::time::Duration;

    const BASE: &str = r#"
[node]
name = "a"

[[interface]]
name = "eth0"
address = "10.11.0.2/24"

[[interface]]
name = "eth1"
address = "10.12.0.2/24"
vips = ["10.12.0.1"]

[[service]]
protocol = "tcp"
address = "10.11.0.100:80"

  [[service.real_server]]
  address = "10.12.0.11"
  method = "nat"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), "pair.toml")
    }

    fn refused(extra: &str) -> String {
        parse(extra).expect_err("must be refused").to_string()
    }

    #[test]
    fn keepalived_names_and_defaults() {
        let c = parse(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
             advert_int = 0.1\nunicast_peer = [\"10.11.0.3\"]\nnotify = \"/bin/echo hi\"\n",
        )
        .unwrap();
        let v = &c.vrrp_instances()[0];
        assert_eq!((v.vrid, v.priority, v.advert_interval_cs), (51, 100, 10));
        assert!(v.preempt, "keepalived preempts by default");
        assert_eq!(
            v.primary_ip,
            "10.11.0.2".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(
            v.vips,
            vec![
                "10.11.0.100".parse::<std::net::Ipv4Addr>().unwrap(),
                "10.12.0.1".parse().unwrap()
            ],
            "no virtual_ipaddress: every address of the node moves with the instance"
        );
        assert_eq!(
            v.notify.as_deref(),
            Some(&["/bin/echo".to_string(), "hi".to_string()][..])
        );
        assert_eq!(
            (v.garp_repeat, v.garp_delay, v.garp_refresh),
            (5, Duration::from_secs(5), None)
        );
    }

    #[test]
    fn no_instance_means_no_vrrp() {
        assert!(parse("").unwrap().vrrp_instances().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_instance() {
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 256\n",
        );
        assert!(e.starts_with("pair.toml:24:21:"), "{e}");
        assert!(
            e.contains("vrrp_instance VI_1: virtual_router_id = 256 is out of range 1..=255"),
            "{e}"
        );
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth9\"\nvirtual_router_id = 5\n",
        );
        assert!(
            e.contains("interface \"eth9\" is not a configured [[interface]] (known: eth0, eth1)"),
            "{e}"
        );
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\nadvert_int = 41\n",
        );
        assert!(e.contains("advert_int = 41 is out of range"), "{e}");
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\npriority = 0\n",
        );
        assert!(e.contains("priority = 0 is out of range 1..=255"), "{e}");
    }

    #[test]
    fn every_vip_belongs_to_exactly_one_instance() {
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.11.0.100\"]\n",
        );
        assert!(
            e.contains("10.12.0.1 is in no vrrp_instance's virtual_ipaddress"),
            "{e}"
        );
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             [[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"eth1\"\nvirtual_router_id = 6\n\
             virtual_ipaddress = [\"10.12.0.1\"]\n",
        );
        assert!(
            e.contains("10.12.0.1 already moves with vrrp_instance VI_1"),
            "{e}"
        );
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.11.0.100\", \"10.11.0.99\", \"10.12.0.1\"]\n",
        );
        assert!(
            e.contains("10.11.0.99 is not an address this node answers for"),
            "{e}"
        );
        let ok = parse(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.11.0.100\"]\n\
             [[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"eth1\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.12.0.1\"]\n",
        );
        assert!(
            ok.is_ok(),
            "the same VRID on another interface is another router: {ok:?}"
        );
        let e = refused(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.11.0.100\"]\n\
             [[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvirtual_router_id = 5\n\
             virtual_ipaddress = [\"10.12.0.1\"]\n",
        );
        assert!(
            e.contains("virtual_router_id 5 on eth0 is already used by vrrp_instance VI_1"),
            "{e}"
        );
    }
}
