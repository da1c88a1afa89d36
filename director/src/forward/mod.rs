//! Packet classification and the three IPVS forwarding rewrites.
//!
//! A worker hands [`classify`] an Ethernet frame and gets a small `Copy`
//! [`Packet`] (addresses, ports, TCP flags, offsets) or a [`DropReason`].
//! After the connection lookup it calls one rewrite, which returns a
//! [`Verdict`]:
//!
//! - [`dr::rewrite`]: direct routing — MACs only, the IP packet untouched.
//! - [`tun::encapsulate`]: IPIP — a 34-byte Ethernet + outer IPv4 prefix to
//!   send in front of the untouched inner packet (two iovecs, no copy), or
//!   an ICMP "fragmentation needed" answer when it would not fit the MTU.
//! - [`nat::rewrite_in`] / [`nat::rewrite_out`]: masquerading — destination
//!   (inbound) or source (outbound) address and port rewritten in place,
//!   checksums fixed incrementally (RFC 1624), TTL decremented as IPVS does.
//!
//! [`gso::segment_tcp4`] cuts a GSO/GRO TCP/IPv4 super-packet into MSS-sized
//! segments, as the kernel's `tcp_gso_segment` would, for the TUN mode.
//!
//! Nothing here allocates, does I/O or reads a clock. ICMP errors are
//! built but not rate-limited: the I/O layer owns time and must limit them
//! (Linux allows about one per second per destination by default).
//!
//! IPv4 TCP and UDP only, untagged Ethernet; the types carry [`IpAddr`]s
//! so that IPv6 can follow without changing callers.
//!
//! [`IpAddr`]: std::net::IpAddr

pub mod checksum;
pub mod dr;
mod error;
pub mod gso;
mod icmp;
mod mac;
pub mod nat;
mod packet;
pub mod tun;

pub use error::{DropCounters, DropReason};
pub use icmp::IcmpReply;
pub use mac::{MacAddr, MacPair, ParseMacError};
pub use packet::{L4Csum, Packet, TcpFlags, classify, complete_partial_checksum};
pub use tun::{OuterTtl, TunHeader, TunParams};

/// What to do with a frame after a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten in place: transmit `frame[..len]`.
    Transmit {
        /// Bytes of the (rewritten) input frame to send.
        len: usize,
    },
    /// TUN: transmit [`TunHeader::prefix`] followed by
    /// `frame[TunHeader::inner]`.
    Encapsulate(TunHeader),
    /// Not forwarded: transmit this ICMP error frame back to the sender
    /// instead, and count `reason`.
    Icmp {
        /// The complete Ethernet frame to send back.
        reply: IcmpReply,
        /// Why the original was not forwarded.
        reason: DropReason,
    },
    /// Not forwarded; nothing to send. Count the reason.
    Drop(DropReason),
}

impl Verdict {
    /// The reason to count, if the original frame was not forwarded.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            Verdict::Transmit { .. } | Verdict::Encapsulate(_) => None,
            Verdict::Icmp { reason, .. } | Verdict::Drop(reason) => Some(*reason),
        }
    }

    /// Counts the drop, if any, in `counters`; returns `self` for chaining.
    #[inline]
    pub fn counted(self, counters: &DropCounters) -> Verdict {
        if let Some(r) = self.drop_reason() {
            counters.count(r);
        }
        self
    }
}

/// Writes the Ethernet addresses of an outgoing frame.
#[inline]
pub(crate) fn set_macs(frame: &mut [u8], macs: MacPair) {
    frame[packet::field::ETH_DST..packet::field::ETH_DST + 6].copy_from_slice(&macs.dst.0);
    frame[packet::field::ETH_SRC..packet::field::ETH_SRC + 6].copy_from_slice(&macs.src.0);
}
