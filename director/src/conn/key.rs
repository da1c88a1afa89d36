//! The keys a connection is found by, and the keyed hash that places it.
//!
//! * [`ConnKey`] — what a packet from the client carries: protocol, client
//!   address:port, virtual address:port (IPVS `ip_vs_conn_in_get`).
//! * [`ReplyKey`] — what a NAT reply from the real server carries: protocol,
//!   real server address:port, client address:port (`ip_vs_conn_out_get`).
//! * [`TemplateKey`] — a persistence template: protocol, client address
//!   masked by the service netmask, VIP and virtual port (0 for FTP and
//!   port-zero services); the client port is always 0, as in the kernel's
//!   `ip_vs_sched_persist`.
//!
//! Internally a key is packed into 38 bytes (`FlowKey`): addresses are
//! stored as 16 bytes, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`). The one
//! ambiguity this leaves — a real IPv6 peer using a mapped address — does
//! not occur on the wire.
//!
//! Every key is hashed first on protocol + client address + client port: that
//! hash picks the shard, so a connection's forward entry and its NAT reply
//! entry (both of which contain the client side) always live in the same
//! shard and one lock covers both. The hash is keyed by a caller-supplied
//! seed so that a SYN flood cannot aim at one hash chain.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::types::Protocol;

/// The FTP control port: persistent FTP services pin every port of the VIP
/// (template virtual port 0), as the kernel does for its FTP helper.
pub const FTP_PORT: u16 = 21;

/// A connection as packets from the client name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client address and port (the packet's source).
    pub client: SocketAddr,
    /// Virtual address and port (the packet's destination).
    pub vip: SocketAddr,
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.protocol, self.client, self.vip)
    }
}

/// A NAT connection as reply packets from the real server name it: they
/// travel from RIP:rport to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Real server address and port (the reply's source).
    pub real_server: SocketAddr,
    /// Client address and port (the reply's destination).
    pub client: SocketAddr,
}

/// A persistence template: which real server a client network is pinned to
/// for one virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client address masked by the service's persistence netmask.
    pub client_net: IpAddr,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port, or 0 when the template covers every port of the VIP
    /// (FTP services, port-zero services).
    pub vport: u16,
}

impl TemplateKey {
    /// The template for a client of a persistent service, as the kernel
    /// builds it: the client address masked to `prefix` bits, client port 0,
    /// and the service port — unless the service is FTP (port 21) or a
    /// port-zero service, whose templates carry port 0 so that data
    /// connections on other ports follow the control connection.
    pub fn for_client(
        protocol: Protocol,
        client: IpAddr,
        prefix: u8,
        service_vip: SocketAddr,
    ) -> TemplateKey {
        let port = service_vip.port();
        TemplateKey {
            protocol,
            client_net: mask(client, prefix),
            vip: service_vip.ip(),
            vport: if port == FTP_PORT || port == 0 {
                0
            } else {
                port
            },
        }
    }
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:0 -> {}",
            self.protocol,
            self.client_net,
            SocketAddr::new(self.vip, self.vport)
        )
    }
}

/// `addr` with all but its first `prefix` bits cleared (`-M netmask`). A
/// prefix longer than the address keeps it whole.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// An address as stored in the table: 16 bytes, IPv4 mapped into IPv6.
pub(crate) type Packed = [u8; 16];

#[inline]
pub(crate) fn pack(ip: IpAddr) -> Packed {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[inline]
pub(crate) fn unpack(p: &Packed) -> IpAddr {
    let a = Ipv6Addr::from(*p);
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

/// The stored form of a connection or template key (38 bytes, alignment 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub client: Packed,
    pub vip: Packed,
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
}

impl FlowKey {
    #[inline]
    pub fn from_conn(k: &ConnKey) -> FlowKey {
        FlowKey {
            client: pack(k.client.ip()),
            vip: pack(k.vip.ip()),
            cport: k.client.port(),
            vport: k.vip.port(),
            proto: k.protocol.number(),
        }
    }

    #[inline]
    pub fn from_template(k: &TemplateKey) -> FlowKey {
        FlowKey {
            client: pack(k.client_net),
            vip: pack(k.vip),
            cport: 0,
            vport: k.vport,
            proto: k.protocol.number(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        // Only keys built from a `Protocol` are ever stored.
        Protocol::from_number(self.proto).unwrap_or(Protocol::Tcp)
    }

    pub fn client(&self) -> SocketAddr {
        SocketAddr::new(unpack(&self.client), self.cport)
    }

    pub fn vip(&self) -> SocketAddr {
        SocketAddr::new(unpack(&self.vip), self.vport)
    }
}

/// A keyed hash for flow keys: folded 64×64→128-bit multiplies (the
/// construction of wyhash/foldhash), keyed by three words derived from the
/// table's seed. Fast (a few ns for a key) and, with a secret seed, not
/// steerable by an attacker choosing source addresses and ports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowHasher {
    k0: u64,
    k1: u64,
    k2: u64,
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline]
fn words(p: &Packed) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&p[..8]);
    hi.copy_from_slice(&p[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FlowHasher {
    pub fn new(seed: u64) -> FlowHasher {
        let mut s = seed;
        // `| 1` keeps every multiplier odd and non-zero.
        FlowHasher {
            k0: splitmix(&mut s) | 1,
            k1: splitmix(&mut s) | 1,
            k2: splitmix(&mut s) | 1,
        }
    }

    /// Hash of the client side: protocol, client address, client port.
    #[inline]
    pub fn client(&self, proto: u8, addr: &Packed, port: u16) -> u64 {
        let (lo, hi) = words(addr);
        let a = fold_mul(lo ^ self.k0, hi ^ self.k1);
        fold_mul(a ^ (u64::from(port) << 8 | u64::from(proto)), self.k2)
    }

    /// Hash of the other side (VIP for the forward index, real server for
    /// the reply index), chained onto the client hash.
    #[inline]
    pub fn peer(&self, client_hash: u64, addr: &Packed, port: u16) -> u64 {
        let (lo, hi) = words(addr);
        let a = fold_mul(lo ^ client_hash ^ self.k1, hi ^ self.k2);
        fold_mul(a ^ u64::from(port), self.k0 ^ client_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_both_families() {
        for ip in ["10.1.2.3", "::1", "2001:db8::7", "0.0.0.0"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(unpack(&pack(ip)), ip);
        }
    }

    #[test]
    fn mask_keeps_prefix_bits() {
        let a: IpAddr = "192.168.7.200".parse().unwrap();
        assert_eq!(mask(a, 24), "192.168.7.0".parse::<IpAddr>().unwrap());
        assert_eq!(mask(a, 32), a);
        assert_eq!(mask(a, 40), a, "prefix longer than the address keeps it");
        assert_eq!(mask(a, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        let b: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        assert_eq!(mask(b, 48), "2001:db8:1::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn template_key_follows_ip_vs_sched_persist() {
        let c: IpAddr = "10.0.0.77".parse().unwrap();
        let k = TemplateKey::for_client(Protocol::Tcp, c, 24, "1.2.3.4:80".parse().unwrap());
        assert_eq!(k.client_net, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(
            k.vport, 80,
            "non-FTP template: <proto, caddr, 0, vaddr, vport>"
        );
        let ftp = TemplateKey::for_client(Protocol::Tcp, c, 32, "1.2.3.4:21".parse().unwrap());
        assert_eq!(ftp.vport, 0, "FTP template: <proto, caddr, 0, vaddr, 0>");
    }

    #[test]
    fn seeded_hash_depends_on_seed_and_every_field() {
        let a = FlowHasher::new(1);
        let b = FlowHasher::new(2);
        let p = pack("10.0.0.1".parse().unwrap());
        let q = pack("10.0.0.2".parse().unwrap());
        assert_ne!(a.client(6, &p, 1000), b.client(6, &p, 1000));
        assert_ne!(a.client(6, &p, 1000), a.client(6, &q, 1000));
        assert_ne!(a.client(6, &p, 1000), a.client(6, &p, 1001));
        assert_ne!(a.client(6, &p, 1000), a.client(17, &p, 1000));
        let h = a.client(6, &p, 1000);
        assert_ne!(a.peer(h, &p, 80), a.peer(h, &p, 81));
        assert_ne!(a.peer(h, &p, 80), a.peer(h, &q, 80));
    }
}
