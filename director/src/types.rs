//! Small vocabulary shared by every part of the dataplane.

use std::fmt;
use std::ops::BitOr;
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

/// TCP control bits (byte 13 of the TCP header); empty for UDP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flag.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function (ignored by the state machine).
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag of `other` is set.
    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// SYN set.
    #[inline]
    pub fn syn(self) -> bool {
        self.contains(TcpFlags::SYN)
    }
    /// ACK set.
    #[inline]
    pub fn ack(self) -> bool {
        self.contains(TcpFlags::ACK)
    }
    /// FIN set.
    #[inline]
    pub fn fin(self) -> bool {
        self.contains(TcpFlags::FIN)
    }
    /// RST set.
    #[inline]
    pub fn rst(self) -> bool {
        self.contains(TcpFlags::RST)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::CWR, "CWR"),
            (TcpFlags::ECE, "ECE"),
            (TcpFlags::URG, "URG"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::FIN, "FIN"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| self.contains(*bit))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}
