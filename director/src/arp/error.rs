//! Why an ARP frame was rejected, what the responder did with the ones it
//! accepted, and one relaxed atomic counter for each.
//!
//! Every frame handed to the responder is counted exactly once: under an
//! [`ArpError`] if it does not parse, otherwise under the [`ArpStat`] of its
//! disposition (reply, conflict, or the reason it needed no answer). The
//! neighbour-cache stats (`learned_new`, `mac_changed`, ...) are counted in
//! addition, since one frame can both be answered and teach us a mapping.
//! The `as_str` names are stable metrics labels: dashboards key on them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame is not a usable Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum ArpError {
    /// Shorter than an Ethernet header.
    #[error("frame too short")]
    FrameTooShort = 0,
    /// The ethertype is not ARP (0x0806). 802.1Q-tagged ARP lands here:
    /// the data interface is untagged.
    #[error("not an ARP frame")]
    NotArp,
    /// The ARP packet ends before its address fields do.
    #[error("truncated ARP packet")]
    Truncated,
    /// Hardware type is not Ethernet (1) or its address length is not 6.
    #[error("ARP hardware type is not Ethernet")]
    UnsupportedHardware,
    /// Protocol type is not IPv4 (0x0800) or its address length is not 4.
    #[error("ARP protocol type is not IPv4")]
    UnsupportedProtocol,
    /// An opcode other than request (1) or reply (2): RARP, InARP, ...
    #[error("unsupported ARP operation")]
    UnsupportedOperation,
    /// The sender hardware address or the Ethernet source is a group
    /// (multicast/broadcast) address or all zeros: no station has it.
    #[error("invalid sender MAC address")]
    InvalidSenderMac,
}

impl ArpError {
    /// Number of reasons.
    pub const COUNT: usize = 7;

    /// Every reason, in counter order.
    pub const ALL: [ArpError; ArpError::COUNT] = [
        ArpError::FrameTooShort,
        ArpError::NotArp,
        ArpError::Truncated,
        ArpError::UnsupportedHardware,
        ArpError::UnsupportedProtocol,
        ArpError::UnsupportedOperation,
        ArpError::InvalidSenderMac,
    ];

    /// A stable snake_case name, usable as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ArpError::FrameTooShort => "frame_too_short",
            ArpError::NotArp => "not_arp",
            ArpError::Truncated => "truncated",
            ArpError::UnsupportedHardware => "unsupported_hardware",
            ArpError::UnsupportedProtocol => "unsupported_protocol",
            ArpError::UnsupportedOperation => "unsupported_operation",
            ArpError::InvalidSenderMac => "invalid_sender_mac",
        }
    }

    /// Index into the counters, dense from 0 in [`ArpError::ALL`] order.
    pub const fn index(self) -> usize {
        self as usize
    }
}

const _: () = assert!(ArpError::InvalidSenderMac as usize + 1 == ArpError::COUNT);

/// What became of a well-formed ARP frame, plus what it taught the
/// neighbour cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ArpStat {
    /// A request for an address we answer for, answered.
    Replied = 0,
    /// Another station claimed one of our addresses.
    Conflict,
    /// A request for one of our addresses while standby: not answered.
    Standby,
    /// A request for the director's own address: left to the kernel.
    OwnAddress,
    /// A request or reply about some other host's address.
    NotForUs,
    /// An ARP reply (to one of our requests, or unsolicited).
    ReplyReceived,
    /// A gratuitous ARP from a neighbour for its own address.
    Announcement,
    /// Another station announcing one of our addresses while we are
    /// standby: the active peer doing its job.
    PeerClaim,
    /// A frame we sent ourselves (our MAC as source), looped back.
    OwnFrame,
    /// Unicast to another station's MAC (seen in promiscuous mode).
    OtherHost,
    /// A sender or target IPv4 address no host can have (multicast,
    /// limited broadcast, loopback).
    BadAddress,
    /// Cache: a new entry created from a frame.
    LearnedNew,
    /// Cache: an existing entry confirmed or resolved.
    LearnedUpdate,
    /// Cache: an existing entry's MAC changed.
    MacChanged,
    /// Cache: a new mapping not stored because the cache is full.
    CacheFull,
}

impl ArpStat {
    /// Number of stats.
    pub const COUNT: usize = 15;

    /// Every stat, in counter order.
    pub const ALL: [ArpStat; ArpStat::COUNT] = [
        ArpStat::Replied,
        ArpStat::Conflict,
        ArpStat::Standby,
        ArpStat::OwnAddress,
        ArpStat::NotForUs,
        ArpStat::ReplyReceived,
        ArpStat::Announcement,
        ArpStat::PeerClaim,
        ArpStat::OwnFrame,
        ArpStat::OtherHost,
        ArpStat::BadAddress,
        ArpStat::LearnedNew,
        ArpStat::LearnedUpdate,
        ArpStat::MacChanged,
        ArpStat::CacheFull,
    ];

    /// A stable snake_case name, usable as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ArpStat::Replied => "replied",
            ArpStat::Conflict => "conflict",
            ArpStat::Standby => "standby",
            ArpStat::OwnAddress => "own_address",
            ArpStat::NotForUs => "not_for_us",
            ArpStat::ReplyReceived => "reply_received",
            ArpStat::Announcement => "announcement",
            ArpStat::PeerClaim => "peer_claim",
            ArpStat::OwnFrame => "own_frame",
            ArpStat::OtherHost => "other_host",
            ArpStat::BadAddress => "bad_address",
            ArpStat::LearnedNew => "learned_new",
            ArpStat::LearnedUpdate => "learned_update",
            ArpStat::MacChanged => "mac_changed",
            ArpStat::CacheFull => "cache_full",
        }
    }

    /// Index into the counters, dense from 0 in [`ArpStat::ALL`] order.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this is what became of a frame (counted once per frame),
    /// rather than a neighbour-cache event counted in addition.
    pub const fn is_disposition(self) -> bool {
        self.index() <= ArpStat::BadAddress.index()
    }
}

const _: () = assert!(ArpStat::CacheFull as usize + 1 == ArpStat::COUNT);

/// Per-reason and per-disposition counters. Atomic so that a metrics
/// thread can read them while the owner of the responder counts.
pub struct ArpCounters {
    errors: [AtomicU64; ArpError::COUNT],
    stats: [AtomicU64; ArpStat::COUNT],
}

impl ArpCounters {
    /// All counters at zero.
    pub fn new() -> ArpCounters {
        ArpCounters {
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            stats: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Count one rejected frame.
    pub fn error(&self, e: ArpError) {
        self.errors[e.index()].fetch_add(1, Relaxed);
    }

    /// Count one disposition or cache event.
    pub fn stat(&self, s: ArpStat) {
        self.stats[s.index()].fetch_add(1, Relaxed);
    }

    /// Frames rejected for `e` so far.
    pub fn errors(&self, e: ArpError) -> u64 {
        self.errors[e.index()].load(Relaxed)
    }

    /// Occurrences of `s` so far.
    pub fn get(&self, s: ArpStat) -> u64 {
        self.stats[s.index()].load(Relaxed)
    }

    /// Rejected frames, all reasons.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Frames handled: every rejected one plus every disposition.
    pub fn total_frames(&self) -> u64 {
        let handled: u64 = ArpStat::ALL
            .iter()
            .filter(|s| s.is_disposition())
            .map(|&s| self.get(s))
            .sum();
        self.total_errors() + handled
    }

    /// `(label, count)` for every reason and stat, errors first, in a
    /// stable order. Error labels are prefixed `malformed_` so that the
    /// two sets never collide.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let errors = ArpError::ALL.map(|e| (format!("malformed_{}", e.as_str()), self.errors(e)));
        let stats = ArpStat::ALL.map(|s| (s.as_str().to_owned(), self.get(s)));
        errors.into_iter().chain(stats).collect()
    }
}

impl Default for ArpCounters {
    fn default() -> Self {
        ArpCounters::new()
    }
}

impl fmt::Debug for ArpCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (label, n) in self.snapshot() {
            if n != 0 {
                m.entry(&label, &n);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_labels_are_dense_and_unique() {
        for (i, e) in ArpError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        for (i, s) in ArpStat::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        let c = ArpCounters::new();
        let mut labels: Vec<_> = c.snapshot().into_iter().map(|(l, _)| l).collect();
        let n = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), n);
        assert_eq!(n, ArpError::COUNT + ArpStat::COUNT);
    }

    #[test]
    fn arp_counters_count() {
        let c = ArpCounters::new();
        c.error(ArpError::NotArp);
        c.stat(ArpStat::Replied);
        c.stat(ArpStat::Replied);
        assert_eq!(c.errors(ArpError::NotArp), 1);
        assert_eq!(c.get(ArpStat::Replied), 2);
        assert_eq!(c.total_errors(), 1);
        assert_eq!(
            format!("{c:?}"),
            r#"{"malformed_not_arp": 1, "replied": 2}"#
        );
    }
}
