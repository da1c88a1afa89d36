//! `[[interface]]`: the data interfaces, the director's own address on
//! each, the next hop, and the extra addresses it answers ARP for.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};

/// Longest Linux interface name (`IFNAMSIZ` − 1).
const IFNAME_MAX: usize = 15;

/// `[[interface]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterface {
    name: Spanned<String>,
    address: Spanned<String>,
    gateway: Option<Spanned<String>>,
    #[serde(default)]
    vips: Vec<Spanned<String>>,
}

/// A data interface, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// Linux interface name, e.g. `eth0`.
    pub name: String,
    /// The director's own address on it: ARP source, TUN outer source.
    pub address: Ipv4Addr,
    /// Prefix length of the interface's subnet.
    pub prefix_len: u8,
    /// Next hop for destinations off this subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Extra addresses this node answers ARP for here while master (e.g.
    /// the NAT real servers' gateway VIP), in configuration order.
    pub vips: Vec<Ipv4Addr>,
}

impl InterfaceConfig {
    /// The subnet mask as a number.
    pub fn netmask(&self) -> u32 {
        mask(self.prefix_len)
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.netmask())
    }

    /// Whether `ip` is on this interface's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.netmask() == u32::from(self.address) & self.netmask()
    }
}

/// The addresses one interface answers ARP for while this node is master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceVips {
    /// The interface name.
    pub interface: String,
    /// Its explicit `vips` first, then the service VIPs placed on it, each
    /// once, in configuration order.
    pub addresses: Vec<Ipv4Addr>,
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// Validate every interface and the relations between them.
pub(crate) fn validate_all(
    raw: Vec<Spanned<RawInterface>>,
    src: &Source<'_>,
) -> Result<Vec<InterfaceConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::Invalid {
            at: src.whole_file(),
            problem: Box::new(Problem::NoInterfaces),
        });
    }
    let mut configs: Vec<InterfaceConfig> = Vec::with_capacity(raw.len());
    let mut names: HashSet<String> = HashSet::new();
    let mut vip_owner: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut vip_spans: Vec<(Ipv4Addr, Range<usize>)> = Vec::new();
    for entry in raw {
        let span = entry.span();
        let r = entry.into_inner();
        let name_span = r.name.span();
        let name = r.name.into_inner();
        check_name(&name).map_err(|reason| {
            src.invalid(
                name_span.clone(),
                Problem::BadInterfaceName {
                    name: name.clone(),
                    reason,
                },
            )
        })?;
        if !names.insert(name.clone()) {
            return Err(src.invalid(span, Problem::DuplicateInterface { name }));
        }
        let (address, prefix_len) = parse_own_address(&name, &r.address, src)?;
        if let Some(first) = configs.iter().find(|c| c.address == address) {
            return Err(src.invalid(
                r.address.span(),
                Problem::DuplicateOwnAddress {
                    address,
                    first: first.name.clone(),
                    second: name,
                },
            ));
        }
        let mut cfg = InterfaceConfig {
            name,
            address,
            prefix_len,
            gateway: None,
            vips: Vec::new(),
        };
        if let Some(g) = r.gateway {
            let what = format!("interface {}: gateway", cfg.name);
            let gateway = parse_ipv4(&g, what, src)?;
            if gateway == cfg.address {
                return Err(src.invalid(
                    g.span(),
                    Problem::GatewayIsOwnAddress {
                        interface: cfg.name.clone(),
                        gateway,
                    },
                ));
            }
            if !cfg.contains(gateway) {
                return Err(src.invalid(
                    g.span(),
                    Problem::GatewayOutsideSubnet {
                        interface: cfg.name.clone(),
                        gateway,
                        subnet: format!("{}/{}", cfg.network(), cfg.prefix_len),
                    },
                ));
            }
            cfg.gateway = Some(gateway);
        }
        for v in &r.vips {
            let what = format!("interface {}: vip", cfg.name);
            let vip = parse_ipv4(v, what.clone(), src)?;
            check_unicast(vip, format!("{what} {vip}")).map_err(|p| src.invalid(v.span(), p))?;
            if let Some(first) = vip_owner.get(&vip) {
                return Err(src.invalid(
                    v.span(),
                    Problem::DuplicateVip {
                        address: vip,
                        first: first.clone(),
                        second: cfg.name.clone(),
                    },
                ));
            }
            vip_owner.insert(vip, cfg.name.clone());
            vip_spans.push((vip, v.span()));
            cfg.vips.push(vip);
        }
        configs.push(cfg);
    }
    // An explicit VIP may not be any interface's own address (checked once
    // all interfaces are known, so order in the file does not matter).
    for (vip, span) in vip_spans {
        if let Some(owner) = configs.iter().find(|c| c.address == vip) {
            let lister = &vip_owner[&vip];
            return Err(src.invalid(
                span,
                Problem::VipIsInterfaceAddress {
                    what: format!("interface {lister}: vip"),
                    address: vip,
                    interface: owner.name.clone(),
                },
            ));
        }
    }
    Ok(configs)
}

/// Linux's `dev_valid_name`: 1..=15 bytes, not `.` or `..`, no `/`, `:`
/// or white space.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > IFNAME_MAX {
        return Err("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are reserved");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err("it contains '/', ':' or white space");
    }
    Ok(())
}

fn parse_own_address(
    interface: &str,
    value: &Spanned<String>,
    src: &Source<'_>,
) -> Result<(Ipv4Addr, u8), ConfigError> {
    let text = value.get_ref();
    let bad = |reason: String| {
        src.invalid(
            value.span(),
            Problem::BadCidr {
                interface: interface.to_string(),
                value: text.clone(),
                reason,
            },
        )
    };
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(bad("the prefix length is missing".into()));
    };
    let address: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad(format!("{addr:?} is not an IPv4 address")))?;
    let prefix_len: u8 = match prefix.parse::<u8>() {
        Ok(p) if p <= 32 && !prefix.starts_with('+') => p,
        _ => return Err(bad(format!("prefix length {prefix:?} is not 0..=32"))),
    };
    let unusable = |reason| {
        src.invalid(
            value.span(),
            Problem::BadOwnAddress {
                interface: interface.to_string(),
                address,
                prefix: prefix_len,
                reason,
            },
        )
    };
    if address.is_unspecified()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_loopback()
    {
        return Err(unusable(
            "it is not a unicast host address (0.0.0.0, loopback, multicast or broadcast)",
        ));
    }
    if prefix_len <= 30 {
        let host = u32::from(address) & !mask(prefix_len);
        if host == 0 {
            return Err(unusable("it is the subnet's network address"));
        }
        if host == !mask(prefix_len) {
            return Err(unusable("it is the subnet's broadcast address"));
        }
    }
    Ok((address, prefix_len))
}

/// Parse an IPv4 address, naming `what` in the error.
pub(crate) fn parse_ipv4(
    value: &Spanned<String>,
    what: String,
    src: &Source<'_>,
) -> Result<Ipv4Addr, ConfigError> {
    let text = value.get_ref();
    text.parse::<Ipv4Addr>().map_err(|_| {
        let problem = if text.parse::<std::net::Ipv6Addr>().is_ok() {
            Problem::Ipv6Unsupported {
                what,
                value: text.clone(),
            }
        } else {
            Problem::BadIpv4 {
                what,
                value: text.clone(),
            }
        };
        src.invalid(value.span(), problem)
    })
}

/// A VIP or real server must be a unicast host address; `subject` names
/// the value in the error.
pub(crate) fn check_unicast(vip: Ipv4Addr, subject: String) -> Result<(), Problem> {
    let reason = if vip.is_unspecified() {
        "it is the unspecified address"
    } else if vip.is_multicast() {
        "it is a multicast address"
    } else if vip.is_broadcast() {
        "it is the broadcast address"
    } else if vip.is_loopback() {
        "it is a loopback address"
    } else {
        return Ok(());
    };
    Err(Problem::UnusableAddress { subject, reason })
}

/// The interface that answers ARP for a service VIP: the one whose subnet
/// contains it (the longest prefix if several do, the first of those if
/// tied), else the first interface.
pub(crate) fn home_of(interfaces: &[InterfaceConfig], vip: Ipv4Addr) -> usize {
    let mut best: Option<(usize, u8)> = None;
    for (i, c) in interfaces.iter().enumerate() {
        if c.contains(vip) && best.is_none_or(|(_, p)| c.prefix_len > p) {
            best = Some((i, c.prefix_len));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Which addresses each interface answers ARP for: its explicit `vips`,
/// then each service VIP not listed explicitly anywhere, on its
/// [`home_of`] interface.
pub(crate) fn vips_by_interface(
    interfaces: &[InterfaceConfig],
    service_vips: impl IntoIterator<Item = Ipv4Addr>,
) -> Vec<InterfaceVips> {
    let mut out: Vec<InterfaceVips> = interfaces
        .iter()
        .map(|c| InterfaceVips {
            interface: c.name.clone(),
            addresses: c.vips.clone(),
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    for vip in service_vips {
        if out.iter().any(|v| v.addresses.contains(&vip)) {
            continue;
        }
        out[home_of(interfaces, vip)].addresses.push(vip);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: &str, prefix: u8) -> InterfaceConfig {
        InterfaceConfig {
            name: name.into(),
            address: addr.parse().unwrap(),
            prefix_len: prefix,
            gateway: None,
            vips: vec![],
        }
    }

    #[test]
    fn subnet_arithmetic() {
        let c = iface("eth0", "10.11.0.2", 24);
        assert_eq!(c.network(), Ipv4Addr::new(10, 11, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 11, 0, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 11, 1, 1)));
        let all = iface("eth0", "10.11.0.2", 0);
        assert!(all.contains(Ipv4Addr::new(192, 0, 2, 1)));
        let host = iface("eth0", "10.11.0.2", 32);
        assert!(!host.contains(Ipv4Addr::new(10, 11, 0, 3)));
    }

    #[test]
    fn service_vips_go_to_the_most_specific_subnet_else_the_first_interface() {
        let mut a = iface("eth0", "10.0.0.2", 8);
        let b = iface("eth1", "10.11.0.2", 24);
        a.vips.push(Ipv4Addr::new(10, 11, 0, 7));
        let ifs = [a, b];
        let vips = vips_by_interface(
            &ifs,
            [
                Ipv4Addr::new(10, 11, 0, 100),
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(10, 11, 0, 100),
                Ipv4Addr::new(10, 11, 0, 7),
            ],
        );
        assert_eq!(
            vips[0].addresses,
            [
                Ipv4Addr::new(10, 11, 0, 7),
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(192, 0, 2, 1)
            ],
            "explicit first; off-subnet VIPs on the first interface; an explicit VIP stays put"
        );
        assert_eq!(vips[1].addresses, [Ipv4Addr::new(10, 11, 0, 100)]);
    }

    #[test]
    fn interface_names_follow_linux_rules() {
        assert!(check_name("eth0").is_ok());
        assert!(check_name("enp0s31f6.100").is_ok());
        for bad in ["", ".", "..", "a/b", "eth0:1", "eth 0", "sixteen-chars-xx"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
