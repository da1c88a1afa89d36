//! ICMP errors the director sends instead of forwarding: "fragmentation
//! needed" when a tunnelled packet would exceed the MTU with DF set, and
//! "time exceeded" when NAT would forward a packet whose TTL ran out.
//!
//! Built as IPVS builds them through `icmp_send()`: the source address is
//! the original packet's destination (the VIP — `__icmp_send` uses
//! `iph->daddr` when the packet was addressed to a local address, which the
//! VIP is on an IPVS director), TTL 64, TOS = the original's TOS bits with
//! precedence "internetwork control" (0xc0), DF clear. The quote is the
//! original IP header + the first 8 bytes of its payload (RFC 792); that is
//! what a client needs to find its socket (Linux quotes up to 576 bytes,
//! which RFC 1812 permits but does not require). The reply is a complete
//! Ethernet frame back to the MAC the original came from, held inline
//! (at most 110 bytes) so no allocation is needed.
//!
//! ```text
//! ICMP error (RFC 792; next-hop MTU from RFC 1191 §4)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           unused = 0          | Next-Hop MTU (3/4) or unused  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Internet Header + 64 bits of Original Data Datagram      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::checksum::{checksum, put16};
use super::mac::{MacAddr, MacPair};
use super::packet::Packet;
use super::packet::field::*;

/// Largest reply: Ethernet 14 + IPv4 20 + ICMP 8 + quoted header (≤ 60)
/// + 8 bytes of payload.
pub const MAX_ICMP_FRAME: usize = ETH_LEN + IPV4_MIN_LEN + 8 + 60 + 8;

/// TTL of locally generated ICMP (Linux `ip_default_ttl`).
const ICMP_TTL: u8 = 64;
/// IPTOS_PREC_INTERNETCONTROL, which Linux ORs into the TOS of errors.
const TOS_PREC_INTERNETCONTROL: u8 = 0xc0;
/// IPTOS_TOS_MASK (RT_TOS): the TOS bits Linux keeps from the original.
const TOS_MASK: u8 = 0x1e;

/// Which ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpKind {
    /// Type 3 code 4, with the next-hop MTU.
    FragNeeded { mtu: u16 },
    /// Type 11 code 0 (TTL exceeded in transit).
    TimeExceeded,
}

/// A complete Ethernet frame carrying an ICMP error, held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IcmpReply {
    buf: [u8; MAX_ICMP_FRAME],
    len: u8,
}

impl IcmpReply {
    /// The frame to transmit.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl fmt::Debug for IcmpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IcmpReply(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// RFC 1122 §3.2.2: never send an ICMP error about a datagram whose source
/// does not name a single host, or that was sent to a broadcast or
/// multicast address.
fn may_answer(pkt: &Packet) -> bool {
    let unicast = |a: IpAddr| match a {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
    };
    unicast(pkt.src) && unicast(pkt.dst)
}

/// Builds the ICMP error about the (unmodified) frame `frame`, from
/// `pkt.dst`, to `pkt.src`, sent back to the MAC it came from with
/// `our_mac` as source. `None` if RFC 1122 forbids answering.
pub(crate) fn build_error(
    frame: &[u8],
    pkt: &Packet,
    kind: IcmpKind,
    our_mac: MacAddr,
    ip_id: u16,
) -> Option<IcmpReply> {
    if !may_answer(pkt) {
        return None;
    }
    let (IpAddr::V4(orig_src), IpAddr::V4(orig_dst)) = (pkt.src, pkt.dst) else {
        return None;
    };
    let l3 = usize::from(pkt.l3_offset);
    let quote_len = (usize::from(pkt.l4_offset) + 8).min(pkt.l3_end()) - l3;
    let icmp_len = 8 + quote_len;
    let ip_len = IPV4_MIN_LEN + icmp_len;
    let mut r = IcmpReply {
        buf: [0; MAX_ICMP_FRAME],
        len: (ETH_LEN + ip_len) as u8,
    };
    let b = &mut r.buf;

    // Back where it came from: the original's source MAC.
    let mut sender = [0u8; 6];
    sender.copy_from_slice(&frame[ETH_SRC..ETH_SRC + 6]);
    super::set_macs(
        b,
        MacPair {
            src: our_mac,
            dst: MacAddr(sender),
        },
    );
    put16(b, ETH_TYPE, ETHERTYPE_IPV4);

    let ip = &mut b[ETH_LEN..ETH_LEN + ip_len];
    ip[IP_VER_IHL] = 0x45;
    ip[IP_TOS] = (frame[l3 + IP_TOS] & TOS_MASK) | TOS_PREC_INTERNETCONTROL;
    put16(ip, IP_TOTAL_LEN, ip_len as u16);
    put16(ip, IP_ID, ip_id);
    put16(ip, IP_FLAGS_FRAG, 0);
    ip[IP_TTL] = ICMP_TTL;
    ip[IP_PROTO] = PROTO_ICMP;
    ip[IP_SRC..IP_SRC + 4].copy_from_slice(&Ipv4Addr::octets(&orig_dst));
    ip[IP_DST..IP_DST + 4].copy_from_slice(&Ipv4Addr::octets(&orig_src));
    let c = checksum(&ip[..IPV4_MIN_LEN]);
    put16(ip, IP_CSUM, c);

    let icmp = &mut ip[IPV4_MIN_LEN..];
    match kind {
        IcmpKind::FragNeeded { mtu } => {
            icmp[0] = 3;
            icmp[1] = 4;
            put16(icmp, 6, mtu);
        }
        IcmpKind::TimeExceeded => {
            icmp[0] = 11;
            icmp[1] = 0;
        }
    }
    icmp[8..8 + quote_len].copy_from_slice(&frame[l3..l3 + quote_len]);
    let c = checksum(icmp);
    put16(icmp, 2, c);
    Some(r)
}
