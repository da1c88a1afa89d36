//! What the real server looks like now: links, IPv4 addresses, the ARP and
//! reverse-path sysctls, the default route. Built by the live system from
//! `ip` output and /proc, or by hand in tests; the parsers here are pure so
//! the odd corners of `ip -o` output are tested without root.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The three per-interface sysctls the helper reads and sets.
pub const CONF_NAMES: [&str; 3] = ["arp_ignore", "arp_announce", "rp_filter"];

/// `net.ipv4.conf.<dev>.<name>`.
pub fn conf_key(dev: &str, name: &str) -> String {
    format!("net.ipv4.conf.{dev}.{name}")
}

/// Splits a key made by [`conf_key`] into device and name; device names
/// may contain dots (`eth0.100`), names do not.
pub fn split_conf_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("net.ipv4.conf.")?.rsplit_once('.')
}

/// What kind of link a device is, as far as the helper cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// `lo`.
    Loopback,
    /// A kernel IPIP tunnel (`tunl0` or `ip link add ... type ipip`).
    Ipip,
    /// A TUN device (the userspace decapsulator's).
    Tun,
    /// Anything else (`veth`, physical NICs, bridges, dummies, ...).
    Other(String),
}

/// One network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name without the `@peer` suffix `ip` prints for veths.
    pub name: String,
    /// Its kind.
    pub kind: LinkKind,
    /// Administratively up (`UP` flag).
    pub up: bool,
    /// Carrier present (`LOWER_UP`); for a TUN device: a process has it
    /// open, which is how `check` sees a running decapsulator.
    pub lower_up: bool,
    /// `NOARP`: the device neither sends nor answers ARP.
    pub noarp: bool,
}

impl LinkInfo {
    /// True for devices that take part in ARP on a segment: a VIP there is
    /// the classic LVS ARP conflict, and their ARP sysctls matter.
    pub fn arps(&self) -> bool {
        self.kind != LinkKind::Loopback && !self.noarp
    }
}

/// One IPv4 address on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Device holding it.
    pub dev: String,
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Label when it differs from the device name (`lo:vip`).
    pub label: Option<String>,
}

/// The real server's current state, as far as set-up and check need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// All links.
    pub links: Vec<LinkInfo>,
    /// All IPv4 addresses.
    pub addrs: Vec<AddrInfo>,
    /// `net.ipv4.conf.<dev>.<name>` → value, for `all`, `default` and every
    /// device, for the names in `CONF_NAMES`.
    pub sysctls: BTreeMap<String, u32>,
    /// Whether the main table has an IPv4 default route.
    pub default_route: bool,
    /// Whether the kernel can make an `ipip` device (module loaded, built
    /// in, or loadable).
    pub ipip_available: bool,
    /// Pids of `dirctl realserver decap` processes in this network
    /// namespace (for messages; attachment is read from the TUN carrier).
    pub decap_pids: Vec<u32>,
}

impl Observed {
    /// The link called `name`.
    pub fn link(&self, name: &str) -> Option<&LinkInfo> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Every place `addr` is configured.
    pub fn addrs_of(&self, addr: Ipv4Addr) -> impl Iterator<Item = &AddrInfo> {
        self.addrs.iter().filter(move |a| a.addr == addr)
    }

    /// A sysctl value, if known.
    pub fn conf(&self, dev: &str, name: &str) -> Option<u32> {
        self.sysctls.get(&conf_key(dev, name)).copied()
    }

    /// The value the kernel acts on for `arp_ignore`, `arp_announce` and
    /// `rp_filter`: the larger of `all` and the device's own (the kernel's
    /// `IN_DEV_MAXCONF`). Unknown values count as 0.
    pub fn effective(&self, dev: &str, name: &str) -> u32 {
        self.conf("all", name)
            .unwrap_or(0)
            .max(self.conf(dev, name).unwrap_or(0))
    }

    /// Links that ARP on a segment, in name order.
    pub fn arp_links(&self) -> Vec<&LinkInfo> {
        let mut v: Vec<&LinkInfo> = self.links.iter().filter(|l| l.arps()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Parses `ip -o -d link show`: one line per link, continuation parts
/// separated by a backslash.
pub fn parse_links(text: &str) -> Vec<LinkInfo> {
    text.lines().filter_map(parse_link_line).collect()
}

fn parse_link_line(line: &str) -> Option<LinkInfo> {
    // "2: eth0@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 ...\    link/ether ..."
    let mut parts = line.split('\\');
    let head = parts.next()?;
    let mut fields = head.splitn(3, ": ");
    fields.next()?.trim().parse::<u32>().ok()?;
    let name = fields.next()?.split('@').next()?.trim().to_owned();
    let rest = fields.next()?;
    let flags = rest
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .map(|(f, _)| f.split(',').collect::<Vec<_>>())
        .unwrap_or_default();
    let has = |f: &str| flags.contains(&f);
    let segments: Vec<&str> = parts.map(str::trim).collect();
    let link_type = segments
        .iter()
        .find_map(|s| s.strip_prefix("link/"))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    // `-d` adds a segment starting with the rtnl kind ("veth", "tun type
    // tun ...", "ipip ipip remote any ..."); the fallback tunl0 has none, but
    // its link type is "ipip".
    let detail_kind = segments
        .iter()
        .filter(|s| !s.starts_with("link/"))
        .find_map(|s| s.split_whitespace().next())
        .filter(|k| !k.contains("promiscuity"));
    let kind = if has("LOOPBACK") || link_type == "loopback" {
        LinkKind::Loopback
    } else if link_type == "ipip" || detail_kind == Some("ipip") {
        LinkKind::Ipip
    } else if detail_kind == Some("tun") {
        LinkKind::Tun
    } else {
        LinkKind::Other(detail_kind.unwrap_or(link_type).to_owned())
    };
    Some(LinkInfo {
        name,
        kind,
        up: has("UP"),
        lower_up: has("LOWER_UP"),
        noarp: has("NOARP"),
    })
}

/// Parses `ip -o -4 addr show`.
pub fn parse_addrs(text: &str) -> Vec<AddrInfo> {
    text.lines().filter_map(parse_addr_line).collect()
}

fn parse_addr_line(line: &str) -> Option<AddrInfo> {
    // "1: lo    inet 10.9.9.8/32 scope global lo:vip\       valid_lft forever ..."
    let main = line.split('\\').next()?;
    let tokens: Vec<&str> = main.split_whitespace().collect();
    let dev = tokens.get(1)?.trim_end_matches(':').split('@').next()?;
    let at = tokens.iter().position(|t| *t == "inet")?;
    let (addr, prefix) = tokens.get(at + 1)?.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    // `ip` prints the label last; it equals the device name unless set.
    let last = *tokens.last()?;
    let label = (last != dev && last.starts_with(&format!("{dev}:"))).then(|| last.to_owned());
    Some(AddrInfo {
        dev: dev.to_owned(),
        addr,
        prefix,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: &str = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 addrgenmode eui64
2: lvs-tun0: <NO-CARRIER,POINTOPOINT,MULTICAST,NOARP,UP> mtu 1500 qdisc pfifo_fast state DOWN mode DEFAULT group default qlen 500\\    link/none  promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \\    tun type tun pi off vnet_hdr off persist on addrgenmode eui64
3: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 02:00:0a:0d:00:15 brd ff:ff:ff:ff:ff:ff link-netns sw promiscuity 0 \\    veth addrgenmode eui64
4: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/ipip 0.0.0.0 brd 0.0.0.0 promiscuity 0 \\    ipip ipip remote any local any ttl inherit nopmtudisc
";

    #[test]
    fn parses_links_of_every_kind() {
        let links = parse_links(LINKS);
        assert_eq!(links.len(), 4);
        assert_eq!(links[0].kind, LinkKind::Loopback);
        assert!(links[0].up && !links[0].arps());
        assert_eq!(links[1].name, "lvs-tun0");
        assert_eq!(links[1].kind, LinkKind::Tun);
        assert!(links[1].up && !links[1].lower_up && links[1].noarp);
        assert_eq!(links[2].name, "eth0");
        assert_eq!(links[2].kind, LinkKind::Other("veth".into()));
        assert!(links[2].arps());
        assert_eq!(links[3].name, "tunl0");
        assert_eq!(links[3].kind, LinkKind::Ipip);
    }

    #[test]
    fn parses_addresses_and_labels() {
        let text = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 10.9.9.8/32 scope global lo:vip\\       valid_lft forever preferred_lft forever
3: eth0    inet 10.13.0.21/24 brd 10.13.0.255 scope global eth0\\       valid_lft forever preferred_lft forever
";
        let a = parse_addrs(text);
        assert_eq!(a.len(), 3);
        assert_eq!(a[1].addr, Ipv4Addr::new(10, 9, 9, 8));
        assert_eq!(a[1].prefix, 32);
        assert_eq!(a[1].label.as_deref(), Some("lo:vip"));
        assert_eq!(a[2].dev, "eth0");
        assert_eq!(a[2].label, None);
    }

    #[test]
    fn effective_value_is_the_max_of_all_and_device() {
        let mut o = Observed::default();
        o.sysctls.insert(conf_key("all", "rp_filter"), 0);
        o.sysctls.insert(conf_key("tunl0", "rp_filter"), 1);
        assert_eq!(o.effective("tunl0", "rp_filter"), 1);
        o.sysctls.insert(conf_key("all", "rp_filter"), 2);
        o.sysctls.insert(conf_key("tunl0", "rp_filter"), 0);
        assert_eq!(o.effective("tunl0", "rp_filter"), 2);
    }
}
