//! Masquerading (ipvsadm `-m`): destination NAT towards the real server,
//! and source NAT of its replies back to the VIP.
//!
//! Inbound (client → VIP:vport) the destination address and port become
//! the real server's (`ip_vs_nat_xmit` + the protocol's `dnat_handler`);
//! outbound (RIP:rport → client, the real server routing through the
//! director) the source becomes VIP:vport (`handle_response` +
//! `snat_handler`). The port may differ (VIP:8099 → RIP:80).
//!
//! Checksums are fixed incrementally (RFC 1624): the IPv4 header checksum
//! for the address and the TTL, the TCP/UDP checksum for the address (it
//! is in the pseudo-header) and the port. The payload is never re-read, so
//! the cost does not depend on packet size. A UDP checksum of 0 ("none")
//! stays 0.
//!
//! TTL: decremented by one in both directions, as a Linux director does.
//! Inbound, IPVS takes the packet at LOCAL_IN and `ip_vs_nat_xmit` →
//! `__ip_vs_get_out_rt` → `decrement_ttl` decrements it (and answers
//! TTL ≤ 1 with ICMP time exceeded); outbound, the reply is a routed packet
//! that `ip_forward` has already decremented (dropping TTL ≤ 1 with ICMP)
//! before the FORWARD hook where IPVS rewrites it. NAT makes the director
//! a router hop, so it behaves as one. Inbound TTL ≤ 1 is answered with an
//! ICMP time exceeded from the VIP (the address the client sent to, as
//! `icmp_send` picks for a local destination); outbound it is dropped and
//! counted only, since the kernel would answer from the director's inside
//! address, which this crate is not told.

use std::net::{IpAddr, SocketAddr};

use super::checksum::{Delta, apply_at, apply_udp_at, get16, get32, put16};
use super::error::DropReason;
use super::icmp::{IcmpKind, build_error};
use super::mac::MacPair;
use super::packet::field::*;
use super::packet::{Packet, ensure_complete, finish_offload};
use super::{Verdict, set_macs};
use crate::types::Protocol;

/// Inbound: rewrites destination to `real` (RIP:rport), decrements TTL,
/// sets MACs for the inside next hop (`macs.dst`: the real server).
///
/// # Panics
/// If `frame` is not the frame `pkt` was classified from.
#[inline]
pub fn rewrite_in(frame: &mut [u8], pkt: &Packet, real: SocketAddr, macs: MacPair) -> Verdict {
    if pkt.ttl <= 1 {
        let reason = DropReason::TtlExceeded;
        return match build_error(frame, pkt, IcmpKind::TimeExceeded, macs.src, 0) {
            Some(reply) => Verdict::Icmp { reply, reason },
            None => Verdict::Drop(reason),
        };
    }
    rewrite(frame, pkt, real, IP_DST, L4_DPORT, macs)
}

/// Outbound: rewrites source to `virt` (VIP:vport), decrements TTL, sets
/// MACs for the outside next hop (`macs.dst`: the client or its router).
///
/// # Panics
/// If `frame` is not the frame `pkt` was classified from.
#[inline]
pub fn rewrite_out(frame: &mut [u8], pkt: &Packet, virt: SocketAddr, macs: MacPair) -> Verdict {
    if pkt.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExceeded);
    }
    rewrite(frame, pkt, virt, IP_SRC, L4_SPORT, macs)
}

/// Replaces the address at IP offset `addr_at` and the port at L4 offset
/// `port_at` with `to`, decrements TTL, fixes both checksums.
#[inline]
fn rewrite(
    frame: &mut [u8],
    pkt: &Packet,
    to: SocketAddr,
    addr_at: usize,
    port_at: usize,
    macs: MacPair,
) -> Verdict {
    let IpAddr::V4(new_ip) = to.ip() else {
        return Verdict::Drop(DropReason::FamilyMismatch);
    };
    ensure_complete(frame, pkt);
    let l3 = usize::from(pkt.l3_offset);
    let l4 = usize::from(pkt.l4_offset);

    let old_ip = get32(frame, l3 + addr_at);
    let new_ip = u32::from(new_ip);
    let old_port = get16(frame, l4 + port_at);
    let new_port = to.port();
    // TTL shares a 16-bit word with the protocol; TTL >= 2 here, so the
    // subtraction cannot borrow into the protocol byte.
    let old_ttl_proto = get16(frame, l3 + IP_TTL);
    let new_ttl_proto = old_ttl_proto - 0x0100;

    let addr = Delta::new().dword(old_ip, new_ip);
    apply_at(frame, l3 + IP_CSUM, addr.word(old_ttl_proto, new_ttl_proto));
    let l4_delta = addr.word(old_port, new_port);
    // Left to the kernel (offloads on): `finish_offload` below writes the
    // pseudo-header sum of the new addresses instead.
    if !pkt.l4_csum_offload {
        match pkt.protocol {
            Protocol::Tcp => apply_at(frame, l4 + TCP_CSUM, l4_delta),
            Protocol::Udp => apply_udp_at(frame, l4 + UDP_CSUM, l4_delta),
        }
    }
    frame[l3 + addr_at..l3 + addr_at + 4].copy_from_slice(&new_ip.to_be_bytes());
    put16(frame, l4 + port_at, new_port);
    put16(frame, l3 + IP_TTL, new_ttl_proto);
    finish_offload(frame, pkt);
    set_macs(frame, macs);
    Verdict::Transmit { len: frame.len() }
}
