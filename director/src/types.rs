//! Small vocabulary shared by every part of the dataplane.

use std::fmt;
use std::str::FromStr;

/// Transport protocol of a virtual service (ipvsadm `-t` / `-u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, IP protocol 6.
    Tcp,
    /// UDP, IP protocol 17.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IP protocol number, if we balance it.
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// How packets reach a real server (ipvsadm `-g`, `-i`, `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardMethod {
    /// Direct routing ("gatewaying", `-g`): rewrite the destination MAC only.
    /// The real server holds the VIP on a non-ARPing interface and answers
    /// the client directly.
    DirectRouting,
    /// IP-in-IP tunnelling (`-i`): prepend an outer IPv4 header to the real
    /// server; it decapsulates and answers the client directly.
    Tunnel,
    /// Masquerading (`-m`): destination NAT to the real server, which routes
    /// its replies back through the director to be rewritten to the VIP.
    Masquerade,
}

impl ForwardMethod {
    /// ipvsadm's name in listings (`Route`, `Tunnel`, `Masq`).
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMethod::DirectRouting => "Route",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::Masquerade => "Masq",
        }
    }

    /// Whether the real server may listen on a port other than the virtual
    /// port. IPVS allows it only for NAT: with DR and TUN the packet reaches
    /// the real server unchanged, so its port cannot differ.
    pub fn allows_port_mapping(self) -> bool {
        matches!(self, ForwardMethod::Masquerade)
    }
}

impl FromStr for ForwardMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dr" | "route" | "gatewaying" | "g" => Ok(ForwardMethod::DirectRouting),
            "tun" | "tunnel" | "ipip" | "i" => Ok(ForwardMethod::Tunnel),
            "nat" | "masq" | "masquerading" | "m" => Ok(ForwardMethod::Masquerade),
            other => Err(format!(
                "unknown forwarding method {other:?} (expected dr, tun or nat)"
            )),
        }
    }
}

impl fmt::Display for ForwardMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardMethod::DirectRouting => "dr",
            ForwardMethod::Tunnel => "tun",
            ForwardMethod::Masquerade => "nat",
        })
    }
}
