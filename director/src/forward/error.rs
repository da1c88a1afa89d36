//! Why a frame was not forwarded, and per-reason drop counters.
//!
//! Every reason the forwarding path refuses a frame is one variant of
//! [`DropReason`], with a stable [`DropReason::as_str`] name that the daemon
//! uses as a metrics label, and one slot in [`DropCounters`]. Nothing here
//! is ever silently discarded: a frame either leaves with a verdict that
//! says where it goes, or it is counted under exactly one reason.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame was dropped (or answered with an ICMP error instead of being
/// forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or an IPv4 ethertype with fewer
    /// bytes than Ethernet + a minimal (20-byte) IPv4 header.
    #[error("frame too short")]
    FrameTooShort = 0,
    /// The ethertype is not IPv4 (0x0800). 802.1Q-tagged frames land here
    /// too: the data interface is expected to be untagged. ARP and IPv6 are
    /// dispatched by the I/O layer before classification.
    #[error("not an IPv4 frame")]
    NotIpv4,
    /// IP version is not 4, or the header length (IHL) is below 5 words.
    #[error("invalid IPv4 version or header length")]
    IpHeaderInvalid,
    /// IP total length is smaller than the header, or the frame ends before
    /// the total length says it should (truncated). Bytes *after* the total
    /// length are Ethernet padding and are legal.
    #[error("IPv4 total length inconsistent with the frame")]
    IpLengthInvalid,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    IpChecksum,
    /// A fragment (MF set or a non-zero offset). The director does not
    /// reassemble: only the first fragment carries ports, so later ones
    /// could not be matched to a connection. Fragments are dropped and
    /// counted here.
    #[error("IPv4 fragment")]
    Fragment,
    /// An IP protocol other than TCP or UDP.
    #[error("unsupported L4 protocol")]
    UnsupportedProtocol,
    /// The IP payload is shorter than a TCP (20) or UDP (8) header.
    #[error("truncated TCP/UDP header")]
    L4Truncated,
    /// TCP data offset below 5 words, or pointing past the IP payload.
    #[error("invalid TCP data offset")]
    TcpDataOffsetInvalid,
    /// UDP length field below 8 or larger than the IP payload.
    #[error("invalid UDP length")]
    UdpLengthInvalid,
    /// The TCP or UDP checksum does not verify.
    #[error("bad TCP/UDP checksum")]
    L4Checksum,
    /// The rewrite target's address family differs from the packet's (an
    /// IPv6 real server for an IPv4 packet); a configuration error.
    #[error("address family mismatch between packet and target")]
    FamilyMismatch,
    /// NAT: TTL was 1 or 0, so forwarding would need TTL 0. Inbound, the
    /// verdict carries the ICMP time-exceeded answer; outbound it is only
    /// dropped.
    #[error("TTL exceeded")]
    TtlExceeded,
    /// TUN: the encapsulated packet would exceed the MTU and the inner
    /// packet has DF set; the verdict carries the ICMP "fragmentation
    /// needed" answer for the client.
    #[error("tunnel packet too big, DF set (ICMP fragmentation needed sent)")]
    FragNeeded,
    /// TUN: the encapsulated packet would exceed the MTU and DF is clear.
    /// The director does not fragment, so it is dropped.
    #[error("tunnel packet too big, DF clear (not fragmented)")]
    TooBigNoDf,
    /// No connection entry, and the packet cannot start one (TCP without
    /// SYN, or a NAT reply with no entry). After a failover without
    /// connection sync, every established flow lands here.
    #[error("no connection for a mid-flow packet")]
    NoConnection,
    /// The scheduler found no real server: all quiesced or overloaded.
    #[error("no destination available")]
    NoDestAvailable,
    /// The connection table is at its bound (SYN-flood protection).
    #[error("connection table full")]
    ConnTableFull,
    /// The next hop's MAC address is not known yet.
    #[error("next-hop MAC address unknown")]
    NoNeighbour,
    /// This director is standby: it holds state but forwards nothing.
    #[error("director is standby")]
    Standby,
    /// A frame with our own source MAC: one we sent. Forwarding it again
    /// would loop it.
    #[error("own frame seen again")]
    OwnFrame,
    /// A GSO/GRO super-frame of a kind the dataplane does not cut or pass
    /// on (UDP segmentation offload): dropped whole.
    #[error("GSO super-frame of an unsupported kind (UDP)")]
    GsoUnsupported,
}

impl DropReason {
    /// Number of reasons (size of [`DropCounters`]).
    pub const COUNT: usize = 22;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::FrameTooShort,
        DropReason::NotIpv4,
        DropReason::IpHeaderInvalid,
        DropReason::IpLengthInvalid,
        DropReason::IpChecksum,
        DropReason::Fragment,
        DropReason::UnsupportedProtocol,
        DropReason::L4Truncated,
        DropReason::TcpDataOffsetInvalid,
        DropReason::UdpLengthInvalid,
        DropReason::L4Checksum,
        DropReason::FamilyMismatch,
        DropReason::TtlExceeded,
        DropReason::FragNeeded,
        DropReason::TooBigNoDf,
        DropReason::NoConnection,
        DropReason::NoDestAvailable,
        DropReason::ConnTableFull,
        DropReason::NoNeighbour,
        DropReason::Standby,
        DropReason::OwnFrame,
        DropReason::GsoUnsupported,
    ];

    /// A stable snake_case name, usable as a metrics label. Never changes
    /// once released: dashboards key on it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::FrameTooShort => "frame_too_short",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::IpHeaderInvalid => "ip_header_invalid",
            DropReason::IpLengthInvalid => "ip_length_invalid",
            DropReason::IpChecksum => "ip_checksum",
            DropReason::Fragment => "fragment",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::L4Truncated => "l4_truncated",
            DropReason::TcpDataOffsetInvalid => "tcp_data_offset_invalid",
            DropReason::UdpLengthInvalid => "udp_length_invalid",
            DropReason::L4Checksum => "l4_checksum",
            DropReason::FamilyMismatch => "family_mismatch",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::FragNeeded => "frag_needed",
            DropReason::TooBigNoDf => "too_big_no_df",
            DropReason::NoConnection => "no_connection",
            DropReason::NoDestAvailable => "no_dest_available",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::Standby => "standby",
            DropReason::OwnFrame => "own_frame",
            DropReason::GsoUnsupported => "gso_unsupported",
        }
    }

    /// Index into [`DropCounters`]. Variants are numbered densely from 0,
    /// in [`DropReason::ALL`] order (checked at compile time below).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

// A variant added without growing COUNT/ALL would index past the counters.
const _: () = assert!(DropReason::GsoUnsupported as usize + 1 == DropReason::COUNT);

/// One relaxed atomic counter per [`DropReason`], shared by all workers.
pub struct DropCounters {
    counts: [AtomicU64; DropReason::COUNT],
}

impl DropCounters {
    /// All counters at zero.
    pub fn new() -> DropCounters {
        DropCounters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Count one frame dropped for `reason`.
    #[inline]
    pub fn count(&self, reason: DropReason) {
        self.counts[reason.index()].fetch_add(1, Relaxed);
    }

    /// Frames dropped for `reason` so far.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()].load(Relaxed)
    }

    /// `(reason, count)` for every reason, in a stable order.
    pub fn snapshot(&self) -> [(DropReason, u64); DropReason::COUNT] {
        DropReason::ALL.map(|r| (r, self.get(r)))
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters::new()
    }
}

impl fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (r, n) in self.snapshot() {
            if n != 0 {
                m.entry(&r.as_str(), &n);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counters_count_per_reason() {
        let c = DropCounters::new();
        c.count(DropReason::Fragment);
        c.count(DropReason::Fragment);
        c.count(DropReason::L4Checksum);
        assert_eq!(c.get(DropReason::Fragment), 2);
        assert_eq!(c.get(DropReason::L4Checksum), 1);
        assert_eq!(c.total(), 3);
        assert_eq!(format!("{c:?}"), r#"{"fragment": 2, "l4_checksum": 1}"#);
    }
}
