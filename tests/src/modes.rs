//! The single-director lab of each LVS mode: a client, a director (or
//! another balancer in its place) and two nginx real servers, plus a router
//! where TUN needs one. The directord lab tests, the demo and the benchmark
//! all build these, so there is one place that knows the address plan; each
//! starts its own balancer with its own configuration.
//!
//! ```text
//! DR:  client .10, director .2, rs1 .11, rs2 .12 on lan 10.21.0.0/24;
//!      VIP 10.21.0.100 on the real servers' lo
//! TUN: client .10, director .2, router .1 on front 10.22.0.0/24;
//!      router .1, rs1 .11, rs2 .12 on back 10.32.0.0/24 (default via .1);
//!      VIP 10.22.0.100 on the real servers' tunnel device (userspace decap)
//! NAT: client .10, director .2 on outside 10.23.0.0/24 (VIP .100);
//!      director .2, rs1 .11, rs2 .12 on inside 10.33.0.0/24, the real
//!      servers' default via the inside gateway .1, which the director holds
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Result, bail};

use crate::http::{HttpServer, NginxOptions};
use crate::lab::{Host, Iface, Lab, Segment};
use crate::process::LabChild;
use crate::udp::UdpServer;

/// The forwarding method of a lab's service (these labs' and the pair's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: real servers on the client's segment.
    Dr,
    /// IPIP tunnelling to real servers behind a router.
    Tun,
    /// Masquerading, real servers behind the director's second NIC.
    Nat,
}

impl Mode {
    /// `dr`, `tun`, `nat` (the config's method names).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::Nat => "nat",
        }
    }
}

/// The VIP of `mode`'s single-director lab.
pub fn vip(mode: Mode) -> Ipv4Addr {
    match mode {
        Mode::Dr => Ipv4Addr::new(10, 21, 0, 100),
        Mode::Tun => Ipv4Addr::new(10, 22, 0, 100),
        Mode::Nat => Ipv4Addr::new(10, 23, 0, 100),
    }
}

/// Where the real servers' UDP echo servers listen in `mode`'s lab. A DR
/// or TUN real server's binds the VIP, so that its replies leave from the
/// VIP (bound to 0.0.0.0 it would answer from its own address and the
/// client would drop the reply); NAT's port 53 maps to 5353.
pub fn udp_bind(mode: Mode) -> SocketAddrV4 {
    match mode {
        Mode::Nat => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353),
        _ => SocketAddrV4::new(vip(mode), 53),
    }
}

/// What stands at the director's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// directord in the host of this name. In NAT it answers for the
    /// inside gateway 10.33.0.1 itself, so its own inside address is .2.
    Directord(&'static str),
    /// A kernel balancer (nftables DNAT, HAProxy) in the host of this name;
    /// NAT only. It holds the inside gateway .1 and the VIP as addresses.
    Kernel(&'static str),
    /// None (DR only): the client reaches the real servers at their own
    /// addresses, so they hold no VIP.
    None,
}

/// What the users of one topology differ in.
#[derive(Debug, Clone)]
pub struct LvsOptions {
    /// What stands at the director's place.
    pub balancer: Balancer,
    /// Size of each real server's `/big.bin` in MiB; 0 serves none.
    pub big_mib: u32,
    /// Whether the real servers also run a UDP echo server (on
    /// [`udp_bind`]).
    pub udp: bool,
    /// `dirctl`, for the TUN real servers' setup and decapsulator.
    pub dirctl: String,
    /// Leave every interface's offloads (TSO/GSO, GRO, checksum) on, as
    /// veths come: senders hand over 64 KiB super-frames. Off: turned
    /// off on every interface, so every frame is MTU-sized.
    pub offloads: bool,
}

/// What a directord configuration for one of these labs varies in; the
/// addresses come from the lab's plan.
#[derive(Debug, Clone)]
pub struct DirectordConfig<'a> {
    /// `[node] name`.
    pub node: &'a str,
    /// Text between `[node]` and the interfaces: a `[dataplane]` section
    /// (with comments), or nothing.
    pub dataplane: &'a str,
    /// Scheduler of the TCP service (the UDP one is `rr`).
    pub scheduler: &'a str,
    /// The TCP service's virtual port; the real servers listen on 80 (in
    /// NAT a different port is mapped).
    pub port: u16,
    /// Also a UDP service on port 53, to the real servers' echo servers
    /// ([`udp_bind`]'s port).
    pub udp: bool,
}

/// directord's configuration for `mode`'s lab: its data interfaces, a TCP
/// service on the VIP to both real servers' nginx, and optionally a UDP
/// one.
pub fn directord_config(mode: Mode, c: &DirectordConfig<'_>) -> String {
    let (interfaces, rs_net) = match mode {
        Mode::Dr => ("name = \"eth0\"\naddress = \"10.21.0.2/24\"\n", "10.21.0"),
        Mode::Tun => (
            "name = \"eth0\"\naddress = \"10.22.0.2/24\"\ngateway = \"10.22.0.1\"\n",
            "10.32.0",
        ),
        Mode::Nat => (
            "name = \"eth0\"\naddress = \"10.23.0.2/24\"\n[[interface]]\nname = \"eth1\"\n\
             address = \"10.33.0.2/24\"\nvips = [\"10.33.0.1\"]\n",
            "10.33.0",
        ),
    };
    let service = |protocol: &str, port: u16, scheduler: &str, rs_port: u16| {
        let mut s = format!(
            "[[service]]\nprotocol = \"{protocol}\"\naddress = \"{}:{port}\"\n\
             scheduler = \"{scheduler}\"\n",
            vip(mode)
        );
        for n in [11, 12] {
            s.push_str(&format!(
                "  [[service.real_server]]\n  address = \"{rs_net}.{n}:{rs_port}\"\n  \
                 method = \"{}\"\n",
                mode.name()
            ));
        }
        s
    };
    let mut text = format!(
        "\n[node]\nname = \"{}\"\n{}[[interface]]\n{interfaces}{}",
        c.node,
        c.dataplane,
        service("tcp", c.port, c.scheduler, 80)
    );
    if c.udp {
        text.push_str(&service("udp", 53, "rr", udp_bind(mode).port()));
    }
    text
}

/// A built lab of one mode, its balancer not started. Fields drop in
/// order: the servers stop before the lab removes the namespaces.
#[derive(Debug)]
pub struct LvsLab {
    /// The forwarding method.
    pub mode: Mode,
    /// The client.
    pub client: Host,
    /// The host at the director's place; `None` for [`Balancer::None`].
    pub director: Option<Host>,
    /// Every host, in the order built.
    pub hosts: Vec<Host>,
    /// Every host interface, in the order built; offloads are off on all
    /// unless [`LvsOptions::offloads`].
    pub ifaces: Vec<Iface>,
    /// nginx on rs1 and rs2 (their bodies are "rs1\n", "rs2\n"), on every
    /// address: DR and TUN real servers receive on the VIP.
    pub servers: Vec<HttpServer>,
    /// The real servers' UDP echo servers, with [`LvsOptions::udp`].
    pub udp_servers: Vec<UdpServer>,
    /// TUN: the real servers' decapsulators.
    pub decaps: Vec<LabChild>,
    /// The lab (dropping it removes everything).
    pub lab: Lab,
}

impl LvsLab {
    /// Builds `mode`'s topology in `lab` (which names the namespaces):
    /// hosts, links, routes, the real servers set up and serving, and
    /// offloads off on every interface.
    pub fn build(lab: Lab, mode: Mode, opts: &LvsOptions) -> Result<LvsLab> {
        let mut b = Builder {
            lab,
            hosts: Vec::new(),
            ifaces: Vec::new(),
        };
        let front = match mode {
            Mode::Dr => b.dr(opts.balancer)?,
            Mode::Tun => b.tun(opts.balancer)?,
            Mode::Nat => b.nat(opts.balancer)?,
        };
        let mut lvs = LvsLab {
            mode,
            client: front.client,
            director: front.director,
            hosts: b.hosts,
            ifaces: b.ifaces,
            servers: Vec::new(),
            udp_servers: Vec::new(),
            decaps: Vec::new(),
            lab: b.lab,
        };
        for n in 1..=2u8 {
            lvs.real_server(n, &front.rs_net, front.rs_gateway, opts)?;
        }
        for i in lvs.ifaces.iter().filter(|_| !opts.offloads) {
            // With them on, a veth hands an AF_PACKET reader merged 64 KiB
            // frames; both ends of every path must have them off, unless
            // the balancer is to take them as they come.
            lvs.lab.disable_offloads(i)?;
        }
        Ok(lvs)
    }

    /// Real server `rsN` at `.1N` on `net`: its default route, the mode's
    /// real-server setup, nginx, and with `opts.udp` a UDP echo server.
    fn real_server(
        &mut self,
        n: u8,
        net: &Segment,
        gateway: Option<Ipv4Addr>,
        opts: &LvsOptions,
    ) -> Result<()> {
        let lab = &self.lab;
        let name = format!("rs{n}");
        let h = lab.host(&name)?;
        let addr = net.host_addr(10 + u32::from(n));
        self.ifaces.push(lab.link(&h, net, &format!("{addr}/24"))?);
        self.hosts.push(h.clone());
        if let Some(gw) = gateway {
            lab.route(&h, &format!("default via {gw}"))?;
        }
        match self.mode {
            Mode::Dr if opts.balancer != Balancer::None => {
                lab.dr_real_server(&h, vip(self.mode))?;
            }
            Mode::Tun => {
                let decap = lab.tun_real_server(&h, &opts.dirctl, vip(self.mode))?;
                self.decaps.push(decap);
            }
            _ => {}
        }
        let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
        let nginx = NginxOptions {
            big_mib: opts.big_mib,
        };
        self.servers
            .push(lab.nginx_with(&h, listen, &name, &nginx)?);
        if opts.udp {
            let echo = lab.udp_echo(&h, udp_bind(self.mode), &name)?;
            self.udp_servers.push(echo);
        }
        Ok(())
    }
}

/// The lab while the hosts in front of the real servers are built, with
/// the hosts and interfaces made so far.
struct Builder {
    lab: Lab,
    hosts: Vec<Host>,
    ifaces: Vec<Iface>,
}

/// The hosts in front of the real servers, and where those go.
struct Front {
    client: Host,
    director: Option<Host>,
    /// The real servers' segment.
    rs_net: Segment,
    /// The real servers' default gateway, when the client is on another
    /// segment.
    rs_gateway: Option<Ipv4Addr>,
}

impl Builder {
    /// A host named `name` with one interface per `(segment, cidr)`, in
    /// order (`eth0`, `eth1`, ...).
    fn host(&mut self, name: &str, links: &[(&Segment, &str)]) -> Result<Host> {
        let h = self.lab.host(name)?;
        for (seg, cidr) in links {
            self.ifaces.push(self.lab.link(&h, seg, cidr)?);
        }
        self.hosts.push(h.clone());
        Ok(h)
    }

    /// LVS-DR: everyone on one segment; the real servers hold the VIP on
    /// lo.
    fn dr(&mut self, balancer: Balancer) -> Result<Front> {
        let lan = self.lab.segment("lan", "10.21.0.0/24")?;
        let client = self.host("client", &[(&lan, "10.21.0.10/24")])?;
        let director = match balancer {
            Balancer::Directord(name) => Some(self.host(name, &[(&lan, "10.21.0.2/24")])?),
            Balancer::Kernel(_) => bail!("DR has no kernel balancer"),
            Balancer::None => None,
        };
        Ok(Front {
            client,
            director,
            rs_net: lan,
            rs_gateway: None,
        })
    }

    /// LVS-TUN: the real servers are off-link behind a router; the director
    /// reaches them through it with IPIP, and they answer the client
    /// directly.
    fn tun(&mut self, balancer: Balancer) -> Result<Front> {
        let Balancer::Directord(name) = balancer else {
            bail!("TUN has only directord at the director's place");
        };
        let front = self.lab.segment("front", "10.22.0.0/24")?;
        let back = self.lab.segment("back", "10.32.0.0/24")?;
        let router = self.host(
            "router",
            &[(&front, "10.22.0.1/24"), (&back, "10.32.0.1/24")],
        )?;
        self.lab.enable_forwarding(&router)?;
        let client = self.host("client", &[(&front, "10.22.0.10/24")])?;
        let director = self.host(name, &[(&front, "10.22.0.2/24")])?;
        Ok(Front {
            client,
            director: Some(director),
            rs_net: back,
            rs_gateway: Some(Ipv4Addr::new(10, 32, 0, 1)),
        })
    }

    /// LVS-NAT, the classic two-NIC set-up: the client outside, the real
    /// servers inside with their default route via the inside gateway,
    /// which the balancer holds.
    fn nat(&mut self, balancer: Balancer) -> Result<Front> {
        let outside = self.lab.segment("outside", "10.23.0.0/24")?;
        let inside = self.lab.segment("inside", "10.33.0.0/24")?;
        let client = self.host("client", &[(&outside, "10.23.0.10/24")])?;
        let (name, inside_cidr) = match balancer {
            Balancer::Directord(name) => (name, "10.33.0.2/24"),
            Balancer::Kernel(name) => (name, "10.33.0.1/24"),
            Balancer::None => bail!("NAT needs a balancer"),
        };
        let director = self.host(name, &[(&outside, "10.23.0.2/24"), (&inside, inside_cidr)])?;
        if let Balancer::Kernel(_) = balancer {
            let vip = format!("{}/32", vip(Mode::Nat));
            self.lab
                .ip(&director, &["addr", "add", &vip, "dev", "eth0"])?;
        }
        Ok(Front {
            client,
            director: Some(director),
            rs_net: inside,
            rs_gateway: Some(Ipv4Addr::new(10, 33, 0, 1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nat_config_maps_the_port_and_holds_the_inside_gateway() {
        let text = directord_config(
            Mode::Nat,
            &DirectordConfig {
                node: "nat-lab",
                dataplane: "[dataplane]\nworkers = 2\n",
                scheduler: "rr",
                port: 8099,
                udp: true,
            },
        );
        assert_eq!(
            text,
            r#"
[node]
name = "nat-lab"
[dataplane]
workers = 2
[[interface]]
name = "eth0"
address = "10.23.0.2/24"
[[interface]]
name = "eth1"
address = "10.33.0.2/24"
vips = ["10.33.0.1"]
[[service]]
protocol = "tcp"
address = "10.23.0.100:8099"
scheduler = "rr"
  [[service.real_server]]
  address = "10.33.0.11:80"
  method = "nat"
  [[service.real_server]]
  address = "10.33.0.12:80"
  method = "nat"
[[service]]
protocol = "udp"
address = "10.23.0.100:53"
scheduler = "rr"
  [[service.real_server]]
  address = "10.33.0.11:5353"
  method = "nat"
  [[service.real_server]]
  address = "10.33.0.12:5353"
  method = "nat"
"#
        );
    }
}
