//! A director pair in the lab: a client, two directors and two real
//! servers running nginx on one segment (LVS-DR), with VRRP between the
//! directors. Used by the failover tests, the sync tests and the demo, so
//! there is one place that knows the topology and writes the configs.
//!
//! ```text
//!   client .10 ── lan 10.41.0.0/24 ── director-a .2, director-b .3
//!                                 └── rs1 .11, rs2 .12 (VIP .100 on lo, nginx)
//!   director-a .2 ── sync 10.42.0.0/24 ── director-b .3   (the HA link)
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

/// The pair's VIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 41, 0, 100);
/// The VRRP virtual router id.
pub const VRID: u8 = 41;

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
}

impl PairLab {
    /// Build the DR pair lab (no directors running yet), or `None` when
    /// labs are skipped. `big_mib` sizes each server's /big.bin.
    pub fn dr(name: &str, bins: Bins, big_mib: u32) -> Result<Option<PairLab>> {
        let Some(lab) = Lab::new_or_skip(name)? else {
            return Ok(None);
        };
        let lan = lab.segment("lan", "10.41.0.0/24")?;
        let ha = lab.segment("ha", "10.42.0.0/24")?;
        let client = lab.host("client")?;
        let client_iface = lab.link(&client, &lan, "10.41.0.10/24")?;
        let mut ifaces = vec![client_iface.clone()];
        let mut nodes = Vec::new();
        for (n, host_name) in [(2u8, "dira"), (3, "dirb")] {
            let host = lab.host(host_name)?;
            let iface = lab.link(&host, &lan, &format!("10.41.0.{n}/24"))?;
            let sync_iface = lab.link(&host, &ha, &format!("10.42.0.{n}/24"))?;
            ifaces.push(iface.clone());
            nodes.push(Node {
                name: format!("director-{}", &host_name[3..]),
                host,
                iface,
                sync_iface,
            });
        }
        let mut servers = Vec::new();
        for n in 1..=2u8 {
            let h = lab.host(&format!("rs{n}"))?;
            ifaces.push(lab.link(&h, &lan, &format!("10.41.0.1{n}/24"))?);
            lab.dr_real_server(&h, VIP)?;
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
            client,
            client_iface,
            nodes: [a, b],
            servers,
            bins,
        }))
    }

    /// The config of node `i` (0 = a, 1 = b) with this VRRP priority.
    /// `extra` is appended verbatim (e.g. a `[sync]` table).
    pub fn config(&self, i: usize, priority: u8, vrrp: &VrrpOptions, extra: &str) -> String {
        let node = &self.nodes[i];
        format!(
            r#"
[node]
name = "{name}"

[[interface]]
name = "{iface}"
address = "{addr}/24"

[[service]]
protocol = "tcp"
address = "{VIP}:80"
scheduler = "rr"
  [[service.real_server]]
  address = "10.41.0.11:80"
  method = "dr"
  [[service.real_server]]
  address = "10.41.0.12:80"
  method = "dr"

[[vrrp_instance]]
name = "VI_1"
interface = "{iface}"
virtual_router_id = {VRID}
priority = {priority}
advert_int = {advert}
nopreempt = {nopreempt}
garp_master_delay = {garp}
{extra}
"#,
            name = node.name,
            iface = node.iface.name(),
            addr = node.iface.addr(),
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
        self.lab
            .names_of_requests(&self.client, &format!("http://{VIP}/"), n)
    }
}
