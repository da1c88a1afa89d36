//! Classification: one pass over an Ethernet frame that validates it and
//! extracts everything the connection table and the rewrites need into a
//! small `Copy` [`Packet`], or says why the frame is dropped.
//!
//! Classification reads the frame and never writes it; it allocates
//! nothing. Offsets are checked once here, so the rewrites that take a
//! [`Packet`] index the frame directly.
//!
//! The parse is hand-written rather than built on etherparse's slices
//! because it must map each malformation to exactly one [`DropReason`]
//! (a metrics label), treat bytes past the IP total length as Ethernet
//! padding, verify checksums under the caller's [`L4Csum`] policy, and do
//! it all in one pass over a few fixed offsets. etherparse stays the
//! independent oracle the tests check every output against.
//!
//! Field layouts (only the fields we read or write are named):
//!
//! ```text
//! Ethernet II (IEEE 802.3 clause 3.1.1, untagged)
//!  0                   6                  12      14
//! +-------------------+-------------------+-------+
//! |  destination MAC  |    source MAC     | type  |  type 0x0800 = IPv4
//! +-------------------+-------------------+-------+
//!
//! IPv4 (RFC 791 §3.1)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |0|D|M|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//!
//! TCP (RFC 793 §3.1)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset|       |W|C|R|C|S|S|Y|I|            Window             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! UDP (RFC 768)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Length             |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

pub use crate::types::TcpFlags;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::checksum::{checksum, get16, l4_checksum_v4, pseudo_header_v4, put16};
use super::error::DropReason;
use crate::types::Protocol;

/// Byte offsets of the fields we touch. Ethernet offsets are absolute;
/// IPv4, TCP and UDP offsets are relative to the start of their header.
pub(crate) mod field {
    pub const ETH_DST: usize = 0;
    pub const ETH_SRC: usize = 6;
    pub const ETH_TYPE: usize = 12;
    pub const ETH_LEN: usize = 14;
    pub const ETHERTYPE_IPV4: u16 = 0x0800;

    pub const IP_VER_IHL: usize = 0;
    pub const IP_TOS: usize = 1;
    pub const IP_TOTAL_LEN: usize = 2;
    pub const IP_ID: usize = 4;
    pub const IP_FLAGS_FRAG: usize = 6;
    pub const IP_TTL: usize = 8;
    pub const IP_PROTO: usize = 9;
    pub const IP_CSUM: usize = 10;
    pub const IP_SRC: usize = 12;
    pub const IP_DST: usize = 16;
    pub const IPV4_MIN_LEN: usize = 20;
    pub const IP_DF: u16 = 0x4000;
    pub const IP_MF: u16 = 0x2000;
    pub const IP_OFFSET_MASK: u16 = 0x1fff;
    pub const PROTO_IPIP: u8 = 4;
    pub const PROTO_ICMP: u8 = 1;

    pub const L4_SPORT: usize = 0;
    pub const L4_DPORT: usize = 2;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CSUM: usize = 16;
    pub const TCP_MIN_LEN: usize = 20;
    pub const UDP_LEN: usize = 4;
    pub const UDP_CSUM: usize = 6;
    pub const UDP_HDR_LEN: usize = 8;
}

use field::*;

/// How classification treats the TCP/UDP checksum. The I/O layer knows
/// which applies to each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Csum {
    /// Verify it; a mismatch drops the frame ([`DropReason::L4Checksum`]).
    #[default]
    Verify,
    /// Trust it (the NIC already verified it, or the caller does not care).
    Skip,
    /// The frame came from a local sender with checksum offload (veth,
    /// `TP_STATUS_CSUMNOTREADY`, the kernel's CHECKSUM_PARTIAL): the
    /// checksum field holds only the pseudo-header sum. Nothing can be
    /// verified; the rewrites complete the checksum in software first (see
    /// [`complete_partial_checksum`]) so the frame leaves correct.
    Partial,
    /// The frame leaves through a socket that lets the kernel complete
    /// the L4 checksum (a virtio-net header flagged `NEEDS_CSUM`; see
    /// `io::VnetHdr`), the way it came in with the offloads on: nothing
    /// is verified (a local sender's checksum is partial, a GRO-merged
    /// frame's was verified per segment by the kernel), and every rewrite
    /// leaves the field holding the pseudo-header sum of the final
    /// addresses, which is what the kernel completes. `gso_size` > 0: a
    /// GSO/GRO super-packet, to be cut into segments of that many payload
    /// bytes (TCP only; UDP ones are dropped, [`DropReason::GsoUnsupported`]).
    Offload {
        /// Payload bytes per segment; 0 for a single packet.
        gso_size: u16,
    },
}

/// What classification learned about a valid IPv4 TCP/UDP frame.
///
/// Addresses are [`IpAddr`] so that IPv6 can be added without changing
/// callers; today they are always `V4`. Offsets are into the frame that
/// was classified, and every rewrite requires that same frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Offset of the IP header (14: untagged Ethernet).
    pub l3_offset: u16,
    /// Offset of the TCP/UDP header.
    pub l4_offset: u16,
    /// IP total length (header + payload). The frame may be longer: the
    /// rest is Ethernet padding.
    pub ip_len: u16,
    /// TCP: the IP payload length. UDP: the UDP length field (RFC 768; it
    /// may be shorter than the IP payload, the rest is ignored).
    pub l4_len: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP control bits; empty for UDP.
    pub tcp_flags: TcpFlags,
    /// The IPv4 Don't Fragment bit.
    pub df: bool,
    /// Time to live.
    pub ttl: u8,
    /// Classified with [`L4Csum::Partial`]: the L4 checksum field holds
    /// only the pseudo-header sum until completed.
    pub l4_csum_partial: bool,
    /// Classified with [`L4Csum::Offload`]: the kernel completes the L4
    /// checksum on transmit; rewrites leave the pseudo-header sum there.
    pub l4_csum_offload: bool,
    /// A GSO/GRO super-packet's payload bytes per segment; 0 if a single
    /// packet.
    pub gso_size: u16,
}

impl Packet {
    /// Offset one past the last IP byte (start of any Ethernet padding).
    #[inline]
    pub fn l3_end(&self) -> usize {
        usize::from(self.l3_offset) + usize::from(self.ip_len)
    }

    /// Client-side source `addr:port`.
    #[inline]
    pub fn src_addr(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.src_port)
    }

    /// Destination `addr:port` (the VIP:vport for a packet from a client).
    #[inline]
    pub fn dst_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dst_port)
    }

    /// Offset of the TCP/UDP checksum field in the frame.
    #[inline]
    pub(crate) fn l4_csum_at(&self) -> usize {
        usize::from(self.l4_offset)
            + match self.protocol {
                Protocol::Tcp => TCP_CSUM,
                Protocol::Udp => UDP_CSUM,
            }
    }

    /// Offset one past the last byte covered by the L4 checksum.
    #[inline]
    pub(crate) fn l4_end(&self) -> usize {
        usize::from(self.l4_offset) + usize::from(self.l4_len)
    }
}

#[inline]
fn ipv4_at(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

/// Validates an Ethernet frame carrying IPv4 TCP or UDP and extracts its
/// [`Packet`]. Every malformed case is one [`DropReason`]. Fragments are
/// dropped ([`DropReason::Fragment`]): the director does not reassemble.
///
/// Never panics, whatever the input; allocates nothing.
pub fn classify(frame: &[u8], csum: L4Csum) -> Result<Packet, DropReason> {
    if frame.len() < ETH_LEN {
        return Err(DropReason::FrameTooShort);
    }
    if get16(frame, ETH_TYPE) != ETHERTYPE_IPV4 {
        return Err(DropReason::NotIpv4);
    }
    if frame.len() < ETH_LEN + IPV4_MIN_LEN {
        return Err(DropReason::FrameTooShort);
    }
    let ip = &frame[ETH_LEN..];
    let ver_ihl = ip[IP_VER_IHL];
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < IPV4_MIN_LEN {
        return Err(DropReason::IpHeaderInvalid);
    }
    let ip_len = get16(ip, IP_TOTAL_LEN);
    let total = usize::from(ip_len);
    // Shorter than its own header, or longer than what arrived. Longer
    // frames are fine: Ethernet pads to 60 bytes, and the padding is not
    // part of the IP packet.
    if total < ihl || total > ip.len() {
        return Err(DropReason::IpLengthInvalid);
    }
    let ip = &ip[..total];
    if checksum(&ip[..ihl]) != 0 {
        return Err(DropReason::IpChecksum);
    }
    let flags_frag = get16(ip, IP_FLAGS_FRAG);
    if flags_frag & (IP_MF | IP_OFFSET_MASK) != 0 {
        return Err(DropReason::Fragment);
    }
    let protocol = Protocol::from_number(ip[IP_PROTO]).ok_or(DropReason::UnsupportedProtocol)?;
    let src = ipv4_at(ip, IP_SRC);
    let dst = ipv4_at(ip, IP_DST);
    let l4 = &ip[ihl..];

    let (l4_len, tcp_flags, csum_at) = match protocol {
        Protocol::Tcp => {
            if l4.len() < TCP_MIN_LEN {
                return Err(DropReason::L4Truncated);
            }
            let doff = usize::from(l4[TCP_DATA_OFFSET] >> 4) * 4;
            if doff < TCP_MIN_LEN || doff > l4.len() {
                return Err(DropReason::TcpDataOffsetInvalid);
            }
            (l4.len(), TcpFlags(l4[TCP_FLAGS]), TCP_CSUM)
        }
        Protocol::Udp => {
            if l4.len() < UDP_HDR_LEN {
                return Err(DropReason::L4Truncated);
            }
            let ulen = usize::from(get16(l4, UDP_LEN));
            if ulen < UDP_HDR_LEN || ulen > l4.len() {
                return Err(DropReason::UdpLengthInvalid);
            }
            (ulen, TcpFlags(0), UDP_CSUM)
        }
    };
    let segment = &l4[..l4_len];
    let gso_size = match csum {
        L4Csum::Offload { gso_size } => gso_size,
        _ => 0,
    };
    if gso_size > 0 && protocol != Protocol::Tcp {
        return Err(DropReason::GsoUnsupported);
    }

    if csum == L4Csum::Verify {
        // UDP checksum 0 means the sender computed none (RFC 768).
        let none = protocol == Protocol::Udp && get16(segment, csum_at) == 0;
        if !none && l4_checksum_v4(src, dst, protocol.number(), segment) != 0 {
            return Err(DropReason::L4Checksum);
        }
    }

    Ok(Packet {
        l3_offset: ETH_LEN as u16,
        l4_offset: (ETH_LEN + ihl) as u16,
        ip_len,
        // Both fit: they are at most the IP total length.
        l4_len: l4_len as u16,
        protocol,
        src: IpAddr::V4(Ipv4Addr::from(src)),
        dst: IpAddr::V4(Ipv4Addr::from(dst)),
        src_port: get16(l4, L4_SPORT),
        dst_port: get16(l4, L4_DPORT),
        tcp_flags,
        df: flags_frag & IP_DF != 0,
        ttl: ip[IP_TTL],
        l4_csum_partial: csum == L4Csum::Partial,
        l4_csum_offload: matches!(csum, L4Csum::Offload { .. }),
        gso_size,
    })
}

/// Computes the full TCP/UDP checksum in software and writes it, for a
/// frame whose checksum field holds only the pseudo-header sum (a
/// CHECKSUM_PARTIAL packet from a local veth). Computed from scratch (the
/// field's old content is ignored), so it is idempotent and also repairs a
/// frame whose checksum is simply wrong. A UDP result of 0 is written as
/// 0xFFFF (RFC 768: 0 would mean "no checksum").
///
/// Clears `pkt.l4_csum_partial`.
///
/// # Panics
/// If `frame` is not the frame `pkt` was classified from.
pub fn complete_partial_checksum(frame: &mut [u8], pkt: &mut Packet) {
    let at = pkt.l4_csum_at();
    put16(frame, at, 0);
    let l3 = usize::from(pkt.l3_offset);
    let src = ipv4_at(frame, l3 + IP_SRC);
    let dst = ipv4_at(frame, l3 + IP_DST);
    let segment = &frame[usize::from(pkt.l4_offset)..pkt.l4_end()];
    let mut c = l4_checksum_v4(src, dst, pkt.protocol.number(), segment);
    if c == 0 && pkt.protocol == Protocol::Udp {
        c = 0xffff;
    }
    put16(frame, at, c);
    pkt.l4_csum_partial = false;
}

/// For a packet whose checksum the kernel completes on transmit
/// ([`L4Csum::Offload`]): writes the pseudo-header sum of the frame's
/// (final) addresses and L4 length into the L4 checksum field, which is
/// what the kernel expects there (`~tcp_v4_check(len, saddr, daddr, 0)`).
/// Every rewrite calls this last. Written whole rather than adjusted: a
/// GRO-merged frame arrives with its first segment's full checksum there.
#[inline]
pub(crate) fn finish_offload(frame: &mut [u8], pkt: &Packet) {
    if pkt.l4_csum_offload {
        let l3 = usize::from(pkt.l3_offset);
        let src = ipv4_at(frame, l3 + IP_SRC);
        let dst = ipv4_at(frame, l3 + IP_DST);
        let sum = pseudo_header_v4(src, dst, pkt.protocol.number(), pkt.l4_len);
        put16(frame, pkt.l4_csum_at(), sum);
    }
}

/// Completes a partial checksum if `pkt` says there is one; every rewrite
/// calls this first so a CHECKSUM_PARTIAL frame never leaves incomplete.
#[inline]
pub(crate) fn ensure_complete(frame: &mut [u8], pkt: &Packet) {
    if pkt.l4_csum_partial {
        let mut p = *pkt;
        complete_partial_checksum(frame, &mut p);
    }
}
