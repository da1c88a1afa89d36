//! VRRPv3 advertisements on the wire (RFC 9568 §5, RFC 5798 §5), IPv4 only.
//!
//! Why hand-written: no maintained crate speaks VRRPv3, and the format is
//! eight bytes plus an address list. The decoder takes the whole IPv4
//! datagram exactly as a raw socket delivers it (IP header included),
//! because two of the RFC's receive checks live in the IP header (TTL 255,
//! protocol 112) and the checksum covers a pseudo-header built from it.
//!
//! Every reason a datagram is refused is a [`Reject`] variant with a stable
//! snake_case [`Reject::name`], so the driver can count drops per reason
//! ([`Counters`]) and an operator can tell a TTL problem (a router in the
//! path) from a checksum problem (a peer computing it differently).
//!
//! The encoder emits the whole IPv4 datagram too: the driver sends with
//! `IP_HDRINCL`, as keepalived does, so the source address is the
//! instance's primary address whatever the routing table prefers, and the
//! TTL is 255 whatever socket options say.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------+-------+---------------+---------------+---------------+
//! |  IPv4 header: TTL 255, protocol 112, dst 224.0.0.18 or a peer |
//! +-------+-------+---------------+---------------+---------------+
//! |Vers(3)|Type(1)|     VRID      |   Priority    | Address count |
//! +-------+-------+---------------+---------------+---------------+
//! | rsvd  | Max Advert Interval   |           Checksum            |
//! |       | (12 bits, centisec.)  |  (with the IPv4 pseudo-header)|
//! +-------+-----------------------+-------------------------------+
//! |             IPv4 address 1 ... IPv4 address <count>           |
//! +---------------------------------------------------------------+
//! ```
//!
//! Checksum: RFC 5798 §5.2.8 defines it over the VRRP message and a
//! pseudo-header (source, destination, zero, protocol 112, VRRP length).
//! RFC 9568 reworded the IPv4 case, but every deployed VRRPv3 speaker we
//! interoperate with (keepalived, FRR) includes the pseudo-header with the
//! datagram's real destination (the group, or the unicast peer), so we do
//! too; a peer that disagrees shows up as `bad_checksum` in the counters.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts go to (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Adverts are sent with, and only accepted with, IP TTL 255 (§5.1.1.3).
pub const TTL: u8 = 255;
/// The protocol version this module speaks.
pub const VERSION: u8 = 3;
/// The only packet type: ADVERTISEMENT (§5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed VRRP header, before the address list.
pub const HEADER_LEN: usize = 8;
/// Length of the IPv4 header the encoder writes (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// Largest Max Advertise Interval the 12-bit field holds (40.95 s).
pub const MAX_INTERVAL_CS: u16 = 0x0fff;
/// IP TOS the encoder writes: precedence "internetwork control", as
/// keepalived sends.
pub const TOS_NETWORK_CONTROL: u8 = 0xc0;

/// Byte offsets inside the VRRP message (after the IP header).
mod field {
    pub(super) const VERS_TYPE: usize = 0;
    pub(super) const VRID: usize = 1;
    pub(super) const PRIORITY: usize = 2;
    pub(super) const COUNT: usize = 3;
    pub(super) const INTERVAL: core::ops::Range<usize> = 4..6;
    pub(super) const CHECKSUM: core::ops::Range<usize> = 6..8;
}

/// Byte offsets inside the IPv4 header.
mod ip {
    pub(super) const VERSION_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const TOTAL_LEN: core::ops::Range<usize> = 2..4;
    pub(super) const IDENT: core::ops::Range<usize> = 4..6;
    pub(super) const FLAGS_FRAG: core::ops::Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: core::ops::Range<usize> = 10..12;
    pub(super) const SRC: core::ops::Range<usize> = 12..16;
    pub(super) const DST: core::ops::Range<usize> = 16..20;
}

/// One VRRPv3 ADVERTISEMENT, decoded (or to be encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Router ID, 1..=255.
    pub vrid: u8,
    /// Sender's priority; 0 means "the master is leaving" (§5.2.4).
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits, nonzero).
    pub max_advert_interval_cs: u16,
    /// The virtual addresses (at least one, at most 255).
    pub addresses: Vec<Ipv4Addr>,
}

/// A datagram that passed every receive check: the advert and the IP
/// addresses it came with (the source is the sender's primary address,
/// used for the equal-priority tie-break).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// IP source: the sender's primary address.
    pub src: Ipv4Addr,
    /// IP destination: the multicast group or our unicast address.
    pub dst: Ipv4Addr,
    /// The advert.
    pub advert: Advert,
}

/// Why a received datagram was dropped. Each variant is one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// Shorter than an IPv4 header, or than its own IP total length.
    #[error("datagram truncated")]
    Truncated,
    /// Not IPv4, header length under 20 or beyond the total length.
    #[error("malformed IPv4 header")]
    BadIpHeader,
    /// A fragment (MF set or nonzero offset): not a whole advert.
    #[error("IPv4 fragment")]
    Fragment,
    /// IP protocol is not 112.
    #[error("IP protocol is not VRRP (112)")]
    NotVrrp,
    /// IP TTL is not 255: the packet crossed a router (RFC 5798 §5.1.1.3).
    #[error("IP TTL is not 255")]
    BadTtl,
    /// VRRP version is not 3 (§7.1).
    #[error("VRRP version is not 3")]
    BadVersion,
    /// VRRP type is not 1, ADVERTISEMENT (§5.2.2).
    #[error("VRRP type is not ADVERTISEMENT (1)")]
    BadType,
    /// The VRRP message is not exactly 8 bytes plus 4 per address (§7.1).
    #[error("VRRP length does not match the address count")]
    BadLength,
    /// The checksum over pseudo-header and message is wrong (§5.2.8).
    #[error("VRRP checksum mismatch")]
    BadChecksum,
    /// No configured instance has this VRID (§7.1).
    #[error("VRID not configured here")]
    UnknownVrid,
    /// Address count is 0; the RFC's minimum is 1 (§5.2.5).
    #[error("advert carries no address")]
    NoAddresses,
    /// Max Advertise Interval is 0: it would make the down timer expire
    /// at once.
    #[error("advert interval is zero")]
    ZeroInterval,
}

impl Reject {
    /// Every reason, in counter order.
    pub const ALL: [Reject; 12] = [
        Reject::Truncated,
        Reject::BadIpHeader,
        Reject::Fragment,
        Reject::NotVrrp,
        Reject::BadTtl,
        Reject::BadVersion,
        Reject::BadType,
        Reject::BadLength,
        Reject::BadChecksum,
        Reject::UnknownVrid,
        Reject::NoAddresses,
        Reject::ZeroInterval,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::BadIpHeader => "bad_ip_header",
            Reject::Fragment => "fragment",
            Reject::NotVrrp => "not_vrrp",
            Reject::BadTtl => "bad_ttl",
            Reject::BadVersion => "bad_version",
            Reject::BadType => "bad_type",
            Reject::BadLength => "bad_length",
            Reject::BadChecksum => "bad_checksum",
            Reject::UnknownVrid => "unknown_vrid",
            Reject::NoAddresses => "no_addresses",
            Reject::ZeroInterval => "zero_interval",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Drop counters, one per [`Reject`]. Atomic so that a driver task can
/// count while a handle reads, without a lock.
#[derive(Debug)]
pub struct Counters {
    counts: [AtomicU64; Reject::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

impl Counters {
    /// All zero.
    pub fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; Reject::ALL.len()],
        }
    }

    /// Count one drop.
    pub fn record(&self, reason: Reject) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops so far for one reason.
    pub fn get(&self, reason: Reject) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Drops so far, all reasons.
    pub fn total(&self) -> u64 {
        Reject::ALL.iter().map(|r| self.get(*r)).sum()
    }

    /// `(name, count)` for every reason, in [`Reject::ALL`] order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Reject::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .collect()
    }
}

/// Decode one IPv4 datagram carrying a VRRPv3 advert, with every receive
/// check of RFC 5798 §7.1. `vrid_known` says whether an instance here is
/// configured for a VRID. Never panics, whatever the bytes.
pub fn decode(packet: &[u8], vrid_known: impl Fn(u8) -> bool) -> Result<Received, Reject> {
    let (header, payload) = split_ipv4(packet)?;
    if header[ip::PROTOCOL] != IPPROTO_VRRP {
        return Err(Reject::NotVrrp);
    }
    if header[ip::TTL] != TTL {
        return Err(Reject::BadTtl);
    }
    let src = addr_at(header, ip::SRC.start);
    let dst = addr_at(header, ip::DST.start);
    let advert = decode_vrrp(payload, src, dst, vrid_known)?;
    Ok(Received { src, dst, advert })
}

/// Decode the VRRP message alone (after the IP header), given the IP
/// addresses for the checksum's pseudo-header.
pub fn decode_vrrp(
    msg: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    vrid_known: impl Fn(u8) -> bool,
) -> Result<Advert, Reject> {
    if msg.len() < HEADER_LEN {
        return Err(Reject::BadLength);
    }
    if msg[field::VERS_TYPE] >> 4 != VERSION {
        return Err(Reject::BadVersion);
    }
    if msg[field::VERS_TYPE] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(Reject::BadType);
    }
    let count = usize::from(msg[field::COUNT]);
    if msg.len() != HEADER_LEN + 4 * count {
        return Err(Reject::BadLength);
    }
    if checksum(src, dst, msg) != 0 {
        return Err(Reject::BadChecksum);
    }
    let vrid = msg[field::VRID];
    if !vrid_known(vrid) {
        return Err(Reject::UnknownVrid);
    }
    if count == 0 {
        return Err(Reject::NoAddresses);
    }
    let interval = be16(msg, field::INTERVAL.start) & MAX_INTERVAL_CS;
    if interval == 0 {
        return Err(Reject::ZeroInterval);
    }
    let addresses = (0..count)
        .map(|i| addr_at(msg, HEADER_LEN + 4 * i))
        .collect();
    Ok(Advert {
        vrid,
        priority: msg[field::PRIORITY],
        max_advert_interval_cs: interval,
        addresses,
    })
}

/// The IPv4 header and the payload it frames, after the structural checks.
fn split_ipv4(packet: &[u8]) -> Result<(&[u8], &[u8]), Reject> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(Reject::Truncated);
    }
    let ihl = usize::from(packet[ip::VERSION_IHL] & 0x0f) * 4;
    if packet[ip::VERSION_IHL] >> 4 != 4 || ihl < IPV4_HEADER_LEN {
        return Err(Reject::BadIpHeader);
    }
    let total = usize::from(be16(packet, ip::TOTAL_LEN.start));
    if total > packet.len() {
        return Err(Reject::Truncated);
    }
    if ihl > total {
        return Err(Reject::BadIpHeader);
    }
    if be16(packet, ip::FLAGS_FRAG.start) & 0x3fff != 0 {
        return Err(Reject::Fragment);
    }
    Ok((&packet[..ihl], &packet[ihl..total]))
}

impl Advert {
    /// Length of the VRRP message (header and addresses).
    pub fn vrrp_len(&self) -> usize {
        HEADER_LEN + 4 * self.address_count()
    }

    /// Addresses that fit the 8-bit count; more are not emitted
    /// (configuration validation refuses them before they get here).
    fn address_count(&self) -> usize {
        self.addresses.len().min(usize::from(u8::MAX))
    }

    /// Append the VRRP message, checksummed for `src` → `dst`.
    pub fn emit_vrrp(&self, src: Ipv4Addr, dst: Ipv4Addr, out: &mut Vec<u8>) {
        let start = out.len();
        let count = self.address_count();
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count as u8);
        // Reserved bits zero on transmit (§5.2.6).
        out.extend_from_slice(&(self.max_advert_interval_cs & MAX_INTERVAL_CS).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.addresses[..count] {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum(src, dst, &out[start..]);
        out[start + field::CHECKSUM.start..start + field::CHECKSUM.end]
            .copy_from_slice(&sum.to_be_bytes());
    }

    /// The whole IPv4 datagram (20-byte header, TTL 255, protocol 112,
    /// TOS 0xc0, DF clear) carrying this advert from `src` to `dst`.
    pub fn to_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Vec<u8> {
        let total = IPV4_HEADER_LEN + self.vrrp_len();
        let mut out = Vec::with_capacity(total);
        out.push(0x45);
        out.push(TOS_NETWORK_CONTROL);
        out.extend_from_slice(&(total as u16).to_be_bytes());
        out.extend_from_slice(&ident.to_be_bytes());
        out.extend_from_slice(&[0, 0, TTL, IPPROTO_VRRP, 0, 0]);
        out.extend_from_slice(&src.octets());
        out.extend_from_slice(&dst.octets());
        let sum = !fold(sum_words(&out, 0));
        out[ip::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        debug_assert_eq!(out[ip::TOS], TOS_NETWORK_CONTROL);
        debug_assert_eq!(be16(&out, ip::IDENT.start), ident);
        self.emit_vrrp(src, dst, &mut out);
        out
    }
}

/// The VRRP checksum: one's complement of the one's complement sum of the
/// IPv4 pseudo-header and `msg`. Over a message whose checksum field is
/// already filled in, a correct one yields 0.
pub fn checksum(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = IPPROTO_VRRP;
    // The message length always fits: a datagram is at most 64 KiB.
    pseudo[10..12].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    !fold(sum_words(msg, sum_words(&pseudo, 0)))
}

fn sum_words(bytes: &[u8], mut acc: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand from the RFC 5798 §5.1 layout: 10.0.0.1 →
    /// 224.0.0.18, VRID 51, priority 100, one address 10.0.0.100, interval
    /// 100 cs, IP id 1. Checksums worked out on paper:
    /// IP header: 0x45c0+0x0020+0x0001+0xff70+0x0a00+0x0001+0xe000+0x0012
    ///   = 0x22f64 → 0x2f66 → !0x2f66 = 0xd099.
    /// VRRP: pseudo (0x0a00+0x0001+0xe000+0x0012+0x0070+0x000c = 0xea8f)
    ///   + 0x3133+0x6401+0x0064+0x0a00+0x0064 = 0x18a8b → 0x8a8c → 0x7573.
    const FIXTURE: &str = "45c0 0020 0001 0000 ff70 d099 0a00 0001 e000 0012 \
                           3133 6401 0064 7573 0a00 0064";

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn fixture_advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 100,
            max_advert_interval_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 0, 0, 100)],
        }
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    #[test]
    fn parse_hand_written_fixture() {
        let got = decode(&hex(FIXTURE), |v| v == 51).expect("RFC 5798 7.1: valid advert");
        assert_eq!(got.src, SRC);
        assert_eq!(got.dst, MULTICAST_GROUP);
        assert_eq!(got.advert, fixture_advert());
    }

    #[test]
    fn emit_matches_hand_written_fixture() {
        let bytes = fixture_advert().to_ipv4(SRC, MULTICAST_GROUP, 1);
        assert_eq!(
            bytes,
            hex(FIXTURE),
            "RFC 5798 5.2.8: checksum with IPv4 pseudo-header"
        );
    }

    /// Captured with `tcpdump -x` from keepalived 2.2.7 (`vrrp_version 3`,
    /// VRID 51, priority 100, `advert_int 0.5`, VIP 10.213.0.100) in a test
    /// namespace: 10.213.0.1 → 224.0.0.18, IP id 1.
    const KEEPALIVED: &str = "45c0 0020 0001 0000 ff70 cfc4 0ad5 0001 \
                              e000 0012 3133 6401 0032 73fb 0ad5 0064";

    fn keepalived_advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 100,
            max_advert_interval_cs: 50,
            addresses: vec![Ipv4Addr::new(10, 213, 0, 100)],
        }
    }

    #[test]
    fn parse_keepalived_capture() {
        let got = decode(&hex(KEEPALIVED), |v| v == 51).expect("keepalived's advert is valid");
        assert_eq!(got.src, Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(got.advert, keepalived_advert());
    }

    #[test]
    fn emit_is_byte_identical_to_keepalived() {
        let src = Ipv4Addr::new(10, 213, 0, 1);
        let ours = keepalived_advert().to_ipv4(src, MULTICAST_GROUP, 1);
        assert_eq!(
            ours,
            hex(KEEPALIVED),
            "same TOS, TTL, flags and checksums as keepalived"
        );
    }

    #[test]
    fn unicast_checksum_uses_the_peer_as_destination() {
        let peer = Ipv4Addr::new(10, 0, 0, 2);
        let bytes = fixture_advert().to_ipv4(SRC, peer, 7);
        assert!(decode(&bytes, |_| true).is_ok());
        // The same VRRP bytes claimed to go to the group fail the checksum.
        let mut moved = bytes.clone();
        moved[16..20].copy_from_slice(&MULTICAST_GROUP.octets());
        assert_eq!(decode(&moved, |_| true), Err(Reject::BadChecksum));
    }

    fn mutate(f: impl FnOnce(&mut Vec<u8>)) -> Result<Received, Reject> {
        let mut b = hex(FIXTURE);
        f(&mut b);
        decode(&b, |v| v == 51)
    }

    /// Rewrite the VRRP checksum after a field change, so the check under
    /// test is the one that fires.
    fn fix_vrrp_checksum(b: &mut [u8]) {
        b[26] = 0;
        b[27] = 0;
        let sum = checksum(SRC, MULTICAST_GROUP, &b[20..]);
        b[26..28].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn every_receive_check_has_its_reason() {
        assert_eq!(mutate(|b| b.truncate(19)), Err(Reject::Truncated));
        assert_eq!(mutate(|b| b.truncate(31)), Err(Reject::Truncated));
        assert_eq!(mutate(|b| b[0] = 0x65), Err(Reject::BadIpHeader));
        assert_eq!(mutate(|b| b[0] = 0x44), Err(Reject::BadIpHeader));
        assert_eq!(mutate(|b| b[6] = 0x20), Err(Reject::Fragment));
        assert_eq!(mutate(|b| b[9] = 17), Err(Reject::NotVrrp));
        assert_eq!(
            mutate(|b| b[8] = 254),
            Err(Reject::BadTtl),
            "RFC 5798 5.1.1.3: TTL 255"
        );
        let v2 = mutate(|b| {
            b[20] = 0x21;
            fix_vrrp_checksum(b)
        });
        assert_eq!(v2, Err(Reject::BadVersion), "RFC 5798 7.1: version 3");
        let t2 = mutate(|b| {
            b[20] = 0x32;
            fix_vrrp_checksum(b)
        });
        assert_eq!(t2, Err(Reject::BadType), "RFC 5798 5.2.2: type 1");
        let count2 = mutate(|b| {
            b[23] = 2;
            fix_vrrp_checksum(b)
        });
        assert_eq!(
            count2,
            Err(Reject::BadLength),
            "RFC 5798 7.1: complete packet"
        );
        assert_eq!(
            mutate(|b| b[31] ^= 1),
            Err(Reject::BadChecksum),
            "RFC 5798 5.2.8"
        );
        let other = decode(&hex(FIXTURE), |v| v == 52);
        assert_eq!(
            other,
            Err(Reject::UnknownVrid),
            "RFC 5798 7.1: VRID configured"
        );
        let zero_int = mutate(|b| {
            b[24] = 0xf0;
            b[25] = 0;
            fix_vrrp_checksum(b)
        });
        assert_eq!(zero_int, Err(Reject::ZeroInterval));
    }

    #[test]
    fn zero_addresses_is_refused() {
        let mut a = fixture_advert();
        a.addresses.clear();
        let b = a.to_ipv4(SRC, MULTICAST_GROUP, 1);
        assert_eq!(
            decode(&b, |_| true),
            Err(Reject::NoAddresses),
            "RFC 5798 5.2.5: Count IPvX Addr minimum value is 1"
        );
    }

    #[test]
    fn reserved_bits_are_ignored_on_receive() {
        let got = mutate(|b| {
            b[24] |= 0xf0;
            fix_vrrp_checksum(b)
        });
        assert_eq!(
            got.unwrap().advert.max_advert_interval_cs,
            100,
            "RFC 5798 5.2.6"
        );
    }

    #[test]
    fn trailing_bytes_past_total_length_are_ignored() {
        let got = mutate(|b| b.extend_from_slice(&[0xde, 0xad]));
        assert!(got.is_ok());
    }

    #[test]
    fn reject_names_are_distinct_snake_case() {
        let names: std::collections::HashSet<_> = Reject::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Reject::ALL.len());
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL is in declaration order");
            assert!(
                r.name()
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'_')
            );
        }
    }

    #[test]
    fn counters_count_per_reason() {
        let c = Counters::new();
        c.record(Reject::BadTtl);
        c.record(Reject::BadTtl);
        c.record(Reject::BadChecksum);
        assert_eq!(c.get(Reject::BadTtl), 2);
        assert_eq!(c.total(), 3);
        assert!(c.snapshot().contains(&("bad_checksum", 1)));
    }
}
