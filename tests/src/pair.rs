//! A director pair in the lab: a client, two directors and two real
//! servers running nginx, with VRRP between the directors, in one of the
//! three LVS modes. Used by the failover tests, the sync tests and the
//! demo, so there is one place that knows the topology and writes the
//! configs.
//!
//! ```text
//! every mode:
//!   client .10 ── lan 10.41.0.0/24 ── director-a .2, director-b .3   (VIP .100)
//!   director-a .2 ── ha 10.42.0.0/24 ── director-b .3   (the HA link: sync)
//! DR:  rs1 .11, rs2 .12 on the lan (VIP on lo)
//! TUN: router lan .1 ── back 10.43.0.0/24 ── rs1 .11, rs2 .12 (default via
//!      .1; VIP on the tunnel device, userspace IPIP decap)
//! NAT: director-a .2, director-b .3 ── inside 10.44.0.0/24 ── rs1 .11,
//!      rs2 .12 (default via the inside gateway VIP .1, which moves with
//!      the outside VIP in the one VRRP instance); VIP port 8099 → 80
//! ```
//!
//! The sync stream runs on its own link, as operators cable a pair, so a
//! test can cut it while VRRP on the lan goes on.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::wait_until;
use crate::directord::{Bins, Directord};
use crate::http::{HttpServer, NginxOptions};
use crate::lab::{Host, Iface, Lab};
use crate::process::LabChild;

/// The forwarding method of the pair's service (shared with the
/// single-director labs).
pub use crate::modes::Mode;

/// The pair's VIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 41, 0, 100);
/// The VRRP virtual router id.
pub const VRID: u8 = 41;
/// NAT: the real servers' default gateway, a VIP of the pair.
pub const INSIDE_VIP: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 1);
/// NAT: the virtual port (mapped to the real servers' 80).
pub const NAT_PORT: u16 = 8099;

/// One director of the pair, as configured.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name (`director-a`).
    pub name: String,
    /// Its namespace.
    pub host: Host,
    /// Its interface on the lan.
    pub iface: Iface,
    /// Its interface on the sync link.
    pub sync_iface: Iface,
    /// NAT: its interface on the inside segment.
    pub inside_iface: Option<Iface>,
}

/// VRRP settings written into both directors' configs.
#[derive(Debug, Clone)]
pub struct VrrpOptions {
    /// `advert_int`, seconds.
    pub advert_int: f64,
    /// Whether the node may preempt (`nopreempt = !preempt`).
    pub preempt: bool,
    /// `garp_master_delay`, seconds.
    pub garp_delay: f64,
}

impl Default for VrrpOptions {
    fn default() -> Self {
        VrrpOptions {
            advert_int: 0.1,
            preempt: true,
            garp_delay: 5.0,
        }
    }
}

/// The lab and its hosts.
#[derive(Debug)]
pub struct PairLab {
    /// The lab (dropping it removes everything).
    pub lab: Lab,
    /// The forwarding method.
    pub mode: Mode,
    /// The client.
    pub client: Host,
    /// Its interface.
    pub client_iface: Iface,
    /// director-a, director-b.
    pub nodes: [Node; 2],
    /// nginx on rs1 and rs2 (their bodies are "rs1\n", "rs2\n").
    pub servers: Vec<HttpServer>,
    /// The binaries.
    pub bins: Bins,
    /// TUN: the real servers' decapsulators, kept to be stopped with the
    /// lab.
    _decap: Vec<LabChild>,
}

impl PairLab {
    /// Build the DR pair lab (no directors running yet), or `None` when
    /// labs are skipped. `big_mib` sizes each server's /big.bin.
    pub fn dr(name: &str, bins: Bins, big_mib: u32) -> Result<Option<PairLab>> {
        PairLab::new(name, Mode::Dr, bins, big_mib)
    }

    /// [`PairLab::dr`] for `mode` (see the module's drawing).
    pub fn new(name: &str, mode: Mode, bins: Bins, big_mib: u32) -> Result<Option<PairLab>> {
        let Some(lab) = Lab::new_or_skip(name)? else {
            return Ok(None);
        };
        let lan = lab.segment("lan", "10.41.0.0/24")?;
        let ha = lab.segment("ha", "10.42.0.0/24")?;
        let client = lab.host("client")?;
        let client_iface = lab.link(&client, &lan, "10.41.0.10/24")?;
        let mut ifaces = vec![client_iface.clone()];
        // Where the real servers live, and their default route.
        let (rs_net, rs_gateway) = match mode {
            Mode::Dr => (lan.clone(), None),
            Mode::Tun => {
                let back = lab.segment("back", "10.43.0.0/24")?;
                let router = lab.host("router")?;
                ifaces.push(lab.link(&router, &lan, "10.41.0.1/24")?);
                ifaces.push(lab.link(&router, &back, "10.43.0.1/24")?);
                lab.enable_forwarding(&router)?;
                (back, Some("10.43.0.1"))
            }
            Mode::Nat => (lab.segment("inside", "10.44.0.0/24")?, Some("10.44.0.1")),
        };
        let mut nodes = Vec::new();
        for (n, host_name) in [(2u8, "dira"), (3, "dirb")] {
            let host = lab.host(host_name)?;
            let iface = lab.link(&host, &lan, &format!("10.41.0.{n}/24"))?;
            let sync_iface = lab.link(&host, &ha, &format!("10.42.0.{n}/24"))?;
            ifaces.push(iface.clone());
            let inside_iface = if mode == Mode::Nat {
                let i = lab.link(&host, &rs_net, &format!("10.44.0.{n}/24"))?;
                ifaces.push(i.clone());
                Some(i)
            } else {
                None
            };
            nodes.push(Node {
                name: format!("director-{}", &host_name[3..]),
                host,
                iface,
                sync_iface,
                inside_iface,
            });
        }
        let (net, _) = rs_net.network();
        let mut servers = Vec::new();
        let mut helpers = Vec::new();
        for n in 1..=2u8 {
            let h = lab.host(&format!("rs{n}"))?;
            let addr = Ipv4Addr::from(u32::from(net) + 10 + u32::from(n));
            ifaces.push(lab.link(&h, &rs_net, &format!("{addr}/24"))?);
            if let Some(gw) = rs_gateway {
                lab.route(&h, &format!("default via {gw}"))?;
            }
            match mode {
                Mode::Dr => lab.dr_real_server(&h, VIP)?,
                Mode::Tun => helpers.push(lab.tun_real_server(&h, &bins.dirctl, VIP)?),
                Mode::Nat => {}
            }
            servers.push(lab.nginx_with(
                &h,
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
                &format!("rs{n}"),
                &NginxOptions { big_mib },
            )?);
        }
        for i in &ifaces {
            lab.disable_offloads(i)?;
        }
        let [a, b]: [Node; 2] = nodes.try_into().expect("two directors");
        Ok(Some(PairLab {
            lab,
            mode,
            client,
            client_iface,
            nodes: [a, b],
            servers,
            bins,
            _decap: helpers,
        }))
    }

    /// Where clients connect: the VIP and the virtual port.
    pub fn target(&self) -> SocketAddrV4 {
        let port = if self.mode == Mode::Nat { NAT_PORT } else { 80 };
        SocketAddrV4::new(VIP, port)
    }

    /// `http://VIP:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.target())
    }

    /// The real servers' addresses (rs1, rs2).
    pub fn real_servers(&self) -> [Ipv4Addr; 2] {
        let third = match self.mode {
            Mode::Dr => 41,
            Mode::Tun => 43,
            Mode::Nat => 44,
        };
        [
            Ipv4Addr::new(10, third, 0, 11),
            Ipv4Addr::new(10, third, 0, 12),
        ]
    }

    /// The config of node `i` (0 = a, 1 = b) with this VRRP priority.
    /// `extra` is appended verbatim (e.g. a `[sync]` table).
    pub fn config(&self, i: usize, priority: u8, vrrp: &VrrpOptions, extra: &str) -> String {
        let node = &self.nodes[i];
        let method = self.mode.name();
        let [rs1, rs2] = self.real_servers();
        let target = self.target();
        let (interfaces, vips) = match (self.mode, &node.inside_iface) {
            (Mode::Nat, Some(inside)) => (
                format!(
                    "[[interface]]\nname = \"{}\"\naddress = \"{}/24\"\n\n\
                     [[interface]]\nname = \"{}\"\naddress = \"{}/24\"\n\
                     vips = [\"{INSIDE_VIP}\"]   # the real servers' gateway\n",
                    node.iface.name(),
                    node.iface.addr(),
                    inside.name(),
                    inside.addr(),
                ),
                // Both move together: the gateway must follow the VIP.
                format!("virtual_ipaddress = [\"{VIP}\", \"{INSIDE_VIP}\"]\n"),
            ),
            (mode, _) => (
                format!(
                    "[[interface]]\nname = \"{}\"\naddress = \"{}/24\"\n{}",
                    node.iface.name(),
                    node.iface.addr(),
                    if mode == Mode::Tun {
                        "gateway = \"10.41.0.1\"\n"
                    } else {
                        ""
                    },
                ),
                String::new(),
            ),
        };
        format!(
            r#"
[node]
name = "{name}"

{interfaces}
[[service]]
protocol = "tcp"
address = "{target}"
scheduler = "rr"
  [[service.real_server]]
  address = "{rs1}:80"
  method = "{method}"
  [[service.real_server]]
  address = "{rs2}:80"
  method = "{method}"

[[vrrp_instance]]
name = "VI_1"
interface = "{iface}"
virtual_router_id = {VRID}
priority = {priority}
advert_int = {advert}
nopreempt = {nopreempt}
garp_master_delay = {garp}
{vips}{extra}
"#,
            name = node.name,
            iface = node.iface.name(),
            advert = vrrp.advert_int,
            nopreempt = !vrrp.preempt,
            garp = vrrp.garp_delay,
        )
    }

    /// The `[sync]` table for node `i` (plaintext on the HA link).
    pub fn sync_table(&self, i: usize, enabled: bool) -> String {
        let me = self.nodes[i].sync_iface.addr();
        let peer = self.nodes[1 - i].sync_iface.addr();
        format!(
            "[sync]\nlisten = \"{me}:7401\"\npeer = \"{peer}:7401\"\ncluster = \"lab-pair\"\n\
             plaintext = true\nenabled = {enabled}\n"
        )
    }

    /// Start node `i` with `config`.
    pub fn start(&self, i: usize, config: &str) -> Result<Directord> {
        Directord::start(&self.lab, &self.nodes[i].host, &self.bins, config)
            .with_context(|| format!("starting {}", self.nodes[i].name))
    }

    /// The VRRP state `dirctl status` reports for VI_1 on `d` ("MASTER",
    /// "BACKUP", ...).
    pub fn vrrp_state(&self, d: &Directord) -> Result<String> {
        let out = d.dirctl(&self.lab, &["status"])?;
        let line = out
            .lines()
            .find(|l| l.starts_with("vrrp VI_1: "))
            .with_context(|| format!("no VRRP line in dirctl status:\n{out}"))?;
        Ok(line["vrrp VI_1: ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// Wait (bounded) until `d` reports `state`.
    pub fn wait_state(&self, d: &Directord, state: &str, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("{} to become {state}", d.host.name()),
            timeout,
            Duration::from_millis(50),
            || Ok(self.vrrp_state(d)? == state),
        )
    }

    /// A line of `dirctl status` on `d` starting with `prefix`.
    pub fn status_line(&self, d: &Directord, prefix: &str) -> Result<String> {
        let out = d.dirctl(&self.lab, &["status"])?;
        out.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
            .with_context(|| format!("no {prefix:?} line in dirctl status:\n{out}"))
    }

    /// The MAC the client's kernel has for the VIP, if any.
    pub fn client_vip_mac(&self) -> Result<Option<String>> {
        let out = self
            .lab
            .ip(&self.client, &["neigh", "show", &VIP.to_string()])?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string))
    }

    /// `n` HTTP requests to the VIP from the client; every one must get a
    /// 200 from a real server. Returns who answered.
    pub fn requests(&self, n: usize) -> Result<Vec<String>> {
        self.lab.names_of_requests(&self.client, &self.url("/"), n)
    }

    /// Pulls the HA link's cable at node `i` (sync stops; VRRP on the lan
    /// goes on).
    pub fn cut_sync(&self, i: usize) -> Result<()> {
        self.lab.unplug(&self.nodes[i].sync_iface)
    }

    /// Undoes [`PairLab::cut_sync`].
    pub fn restore_sync(&self, i: usize) -> Result<()> {
        self.lab.plug(&self.nodes[i].sync_iface)
    }
}

/// Gratuitous ARP lines for the VIP sent from `mac` in a tcpdump decode
/// (`-e -nn`): "who-has VIP tell VIP" from that source MAC.
pub fn garps_from(decoded: &str, mac: &str) -> usize {
    let (who, tell) = (format!("who-has {VIP} "), format!("tell {VIP},"));
    decoded
        .lines()
        .filter(|l| l.contains(&format!("{mac} > ")) && l.contains(&who) && l.contains(&tell))
        .count()
}

/// Seconds of a tcpdump time of day (`HH:MM:SS.ffffff`).
fn time_of(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?;
    let mut parts = t.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Seconds from the dead master's last VRRP advert (`from_ip`) to the new
/// master's first gratuitous ARP (`new_mac`) in a decode of a capture on
/// the lan (`arp or ip proto 112`); adverts after that (a returning
/// master) do not count.
pub fn takeover_on_the_wire(decoded: &str, from_ip: &str, new_mac: &str) -> Option<f64> {
    let first_garp = decoded
        .lines()
        .filter(|l| garps_from(l, new_mac) == 1)
        .find_map(time_of)?;
    let last_advert = decoded
        .lines()
        .filter(|l| l.contains(&format!("{from_ip} > 224.0.0.18")))
        .filter_map(time_of)
        .take_while(|t| *t < first_garp)
        .last()?;
    Some(first_garp - last_advert)
}
