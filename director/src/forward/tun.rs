//! IP-in-IP tunnelling (ipvsadm `-i`, RFC 2003): the client's packet,
//! untouched, inside a new IPv4 header from the director to the real
//! server. The real server decapsulates it on its tunnel device, where it
//! holds the VIP, and answers the client directly.
//!
//! ```text
//! +----------+---------------------+-----------------------------------+
//! | Ethernet | outer IPv4, 20 B    | inner IPv4 packet, as received    |
//! | 14 B     | DIP -> RIP, proto 4 | = input frame[14 .. 14 + tot_len] |
//! +----------+---------------------+-----------------------------------+
//!  \______ TunHeader::prefix ____/  \______ TunHeader::inner ________/
//! ```
//! (The outer header's fields are laid out as in the `packet` module's
//! RFC 791 diagram.)
//!
//! To avoid copying the payload, [`encapsulate`] returns a 34-byte prefix
//! (Ethernet + outer IPv4) and the byte range of the inner IP packet in the
//! input frame: the I/O layer sends them as two iovecs. [`TunHeader::write_to`]
//! writes the whole frame into a buffer for callers that need one.
//!
//! The outer header follows `ip_vs_tunnel_xmit`: protocol 4, DF copied from
//! the inner packet (IPVS does, with `pmtu_disc` on, its default), TOS
//! copied from the inner packet with ECN encapsulated as RFC 6040's normal
//! mode (`INET_ECN_encapsulate`: CE becomes ECT(0)), ID from a
//! caller-supplied counter. TTL is [`OuterTtl::Fixed`] 64 by default;
//! [`OuterTtl::Inherit`] copies the inner TTL as IPVS does.
//!
//! MTU, as `ensure_mtu_is_adequate` does with an MTU reduced by the 20
//! bytes of the outer header: if inner + 20 would exceed the egress MTU
//! and the inner packet has DF, the client gets ICMP "fragmentation
//! needed" with next-hop MTU = MTU − 20, from the VIP (see the `icmp`
//! module). Without DF IPVS would fragment the outer packet; this
//! dataplane does not fragment, so it drops and counts
//! ([`DropReason::TooBigNoDf`]).

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use super::checksum::{checksum, get16, put16};
use super::error::DropReason;
use super::icmp::{IcmpKind, build_error};
use super::mac::MacPair;
use super::packet::field::*;
use super::packet::{Packet, complete_partial_checksum, ensure_complete};
use super::{Verdict, set_macs};

/// Length of the prefix: Ethernet + outer IPv4 header (no options).
pub const PREFIX_LEN: usize = ETH_LEN + IPV4_MIN_LEN;

/// The ECN field (low two bits of TOS).
const ECN_MASK: u8 = 0x03;
const ECN_CE: u8 = 0x03;
const ECN_ECT0: u8 = 0x02;

/// TTL of the outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterTtl {
    /// A fixed value (the default: 64, Linux's `ip_default_ttl`).
    Fixed(u8),
    /// Copy the inner packet's TTL, as `ip_vs_tunnel_xmit` does.
    Inherit,
}

impl Default for OuterTtl {
    fn default() -> Self {
        OuterTtl::Fixed(64)
    }
}

/// Per-egress settings for tunnelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunParams {
    /// The director's address: the outer source.
    pub local: Ipv4Addr,
    /// Our MAC and the next hop's towards the real server (the real server
    /// itself on-link, or a router).
    pub macs: MacPair,
    /// MTU of the egress link (IP bytes, e.g. 1500).
    pub mtu: u16,
    /// Outer TTL.
    pub ttl: OuterTtl,
}

impl TunParams {
    /// Settings with MTU 1500 and outer TTL 64.
    pub fn new(local: Ipv4Addr, macs: MacPair) -> TunParams {
        TunParams {
            local,
            macs,
            mtu: 1500,
            ttl: OuterTtl::default(),
        }
    }
}

/// An encapsulation: the bytes to send in front of the inner packet and
/// where the inner packet lies in the input frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunHeader {
    prefix: [u8; PREFIX_LEN],
    inner_start: u16,
    // A GSO super-packet ends past 65535 (14 + up to 65535 bytes).
    inner_end: u32,
}

impl TunHeader {
    /// Ethernet header + outer IPv4 header.
    pub fn prefix(&self) -> &[u8; PREFIX_LEN] {
        &self.prefix
    }

    /// The inner IP packet's range in the input frame. Excludes any
    /// Ethernet padding of the input frame: it is not part of the packet.
    pub fn inner(&self) -> Range<usize> {
        usize::from(self.inner_start)..self.inner_end as usize
    }

    /// The prefix for segment `index` (0, 1, ...) of a GSO inner packet
    /// cut into segments, this one `inner_len` IP bytes long: the outer
    /// total length and ID (one more per segment, as the kernel's
    /// segmentation numbers IDs) set, the header checksum recomputed.
    pub fn segment_prefix(&self, inner_len: usize, index: u16) -> [u8; PREFIX_LEN] {
        let mut p = self.prefix;
        let ip = &mut p[ETH_LEN..];
        let total = (inner_len + IPV4_MIN_LEN).min(usize::from(u16::MAX)) as u16;
        put16(ip, IP_TOTAL_LEN, total);
        let id = get16(ip, IP_ID).wrapping_add(index);
        put16(ip, IP_ID, id);
        put16(ip, IP_CSUM, 0);
        let c = checksum(&ip[..IPV4_MIN_LEN]);
        put16(ip, IP_CSUM, c);
        p
    }

    /// Total length of the output frame.
    pub fn len(&self) -> usize {
        PREFIX_LEN + self.inner().len()
    }

    /// Always false: the prefix alone is 34 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes prefix + inner packet into `out`; returns the length, or
    /// `None` if `out` is too short. `frame` must be the input frame.
    pub fn write_to(&self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let inner = frame.get(self.inner())?;
        let out = out.get_mut(..PREFIX_LEN + inner.len())?;
        out[..PREFIX_LEN].copy_from_slice(&self.prefix);
        out[PREFIX_LEN..].copy_from_slice(inner);
        Some(out.len())
    }
}

/// Encapsulates the packet in `frame` towards real server `real`.
///
/// Returns [`Verdict::Encapsulate`], or [`Verdict::Icmp`] /
/// [`Verdict::Drop`] when the result would exceed `params.mtu`.
/// `frame` is written only to complete a CHECKSUM_PARTIAL checksum.
///
/// # Panics
/// If `frame` is not the frame `pkt` was classified from.
#[inline]
pub fn encapsulate(
    frame: &mut [u8],
    pkt: &Packet,
    real: IpAddr,
    params: &TunParams,
    ip_id: u16,
) -> Verdict {
    let IpAddr::V4(real) = real else {
        return Verdict::Drop(DropReason::FamilyMismatch);
    };
    let inner_len = usize::from(pkt.ip_len);
    let outer_len = inner_len + IPV4_MIN_LEN;
    // A GSO super-packet leaves as segments (cut by the I/O layer): each
    // segment must fit, not the whole.
    let largest = if pkt.gso_size > 0 {
        let l4 = usize::from(pkt.l4_offset);
        let tcp_hdr = usize::from(frame[l4 + TCP_DATA_OFFSET] >> 4) * 4;
        (l4 - usize::from(pkt.l3_offset) + tcp_hdr + usize::from(pkt.gso_size)).min(inner_len)
            + IPV4_MIN_LEN
    } else {
        outer_len
    };
    if largest > usize::from(params.mtu) {
        if !pkt.df {
            return Verdict::Drop(DropReason::TooBigNoDf);
        }
        let reason = DropReason::FragNeeded;
        let mtu = params.mtu.saturating_sub(IPV4_MIN_LEN as u16);
        let kind = IcmpKind::FragNeeded { mtu };
        return match build_error(frame, pkt, kind, params.macs.src, ip_id) {
            Some(reply) => Verdict::Icmp { reply, reason },
            None => Verdict::Drop(reason),
        };
    }
    ensure_complete(frame, pkt);
    if pkt.l4_csum_offload && pkt.gso_size == 0 {
        // Completed here rather than left to the kernel: behind an outer
        // header it reaches a decapsulator that cannot know it is partial
        // (a userspace one reads a raw socket; a NIC may not offload inner
        // checksums). A super-packet's segments get theirs when cut.
        let mut p = *pkt;
        complete_partial_checksum(frame, &mut p);
    }

    let l3 = usize::from(pkt.l3_offset);
    let inner_tos = frame[l3 + IP_TOS];
    let mut p = [0u8; PREFIX_LEN];
    set_macs(&mut p, params.macs);
    put16(&mut p, ETH_TYPE, ETHERTYPE_IPV4);

    let ip = &mut p[ETH_LEN..];
    ip[IP_VER_IHL] = 0x45;
    ip[IP_TOS] = if inner_tos & ECN_MASK == ECN_CE {
        (inner_tos & !ECN_MASK) | ECN_ECT0
    } else {
        inner_tos
    };
    // Fits unless a GSO super-packet, whose segments get their own
    // lengths (`TunHeader::segment_prefix`).
    put16(
        ip,
        IP_TOTAL_LEN,
        outer_len.min(usize::from(u16::MAX)) as u16,
    );
    put16(ip, IP_ID, ip_id);
    put16(ip, IP_FLAGS_FRAG, if pkt.df { IP_DF } else { 0 });
    ip[IP_TTL] = match params.ttl {
        OuterTtl::Fixed(t) => t,
        OuterTtl::Inherit => pkt.ttl,
    };
    ip[IP_PROTO] = PROTO_IPIP;
    ip[IP_SRC..IP_SRC + 4].copy_from_slice(&params.local.octets());
    ip[IP_DST..IP_DST + 4].copy_from_slice(&real.octets());
    let c = checksum(&ip[..IPV4_MIN_LEN]);
    put16(ip, IP_CSUM, c);

    Verdict::Encapsulate(TunHeader {
        prefix: p,
        inner_start: pkt.l3_offset,
        inner_end: pkt.l3_end() as u32,
    })
}
