//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Full sums are used where a packet is built (the TUN outer header, ICMP
//! errors) or verified (classification). Rewrites of existing packets never
//! re-sum the payload: they fold the difference between old and new field
//! values into the existing checksum with RFC 1624 equation 3,
//! `HC' = ~(~HC + ~m + m')`, which is exact (it equals a full recomputation
//! whenever the old checksum was itself computed, not forged) and costs a
//! handful of additions regardless of packet size.
//!
//! All values here are in network byte order *as numbers*: a 16-bit word
//! is `u16::from_be_bytes` of two packet bytes.

/// Folds a 32-bit one's-complement accumulator to 16 bits with end-around
/// carry. Returns 0 only if the accumulator is 0.
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last
/// byte is padded with zero), folded to 16 bits but not complemented.
///
/// Reads four bytes at a time into a 64-bit accumulator in native order
/// and swaps once at the end: RFC 1071 §2(B) shows the sum is byte-order
/// independent, so the swap of a native-order sum is the big-endian sum.
/// That keeps the loop free of per-word shifts and lets it vectorise.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    if rest.len() >= 2 {
        acc += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        i = 2;
    }
    if i < rest.len() {
        // Odd trailing byte: the high-order byte of a zero-padded word.
        acc += u64::from(u16::from_ne_bytes([rest[i], 0]));
    }
    // The folded sum is in native order; its bytes read big-endian give
    // the network-order value.
    u16::from_be_bytes(fold(acc).to_ne_bytes())
}

/// The Internet checksum of `data`: the complement of its one's-complement
/// sum. Over a header whose checksum field holds the correct value this
/// returns 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Adds two folded one's-complement sums.
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// One's-complement sum of the IPv4 pseudo-header (RFC 793 §3.1,
/// RFC 768) used by the TCP and UDP checksums:
///
/// ```text
///  +--------+--------+--------+--------+
///  |           Source Address          |
///  +--------+--------+--------+--------+
///  |         Destination Address       |
///  +--------+--------+--------+--------+
///  |  zero  |  PTCL  |    L4 Length    |
///  +--------+--------+--------+--------+
/// ```
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u16 {
    let acc = u64::from(u16::from_be_bytes([src[0], src[1]]))
        + u64::from(u16::from_be_bytes([src[2], src[3]]))
        + u64::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u64::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u64::from(protocol)
        + u64::from(l4_len);
    fold(acc)
}

/// The TCP/UDP checksum of `segment` (header + payload, whose checksum
/// field is included as it stands — zero it first to compute, leave it to
/// verify). A verifying caller expects 0.
#[inline]
pub fn l4_checksum_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    // The caller guarantees segment.len() <= 65535 (it came from an IPv4
    // packet), so the length fits the pseudo-header field.
    let len = segment.len() as u16;
    !add(pseudo_header_v4(src, dst, protocol, len), sum(segment))
}

/// An accumulated change to the words covered by a checksum, applied with
/// RFC 1624 eqn. 3. Several field changes (address, port, TTL) are summed
/// first and folded into the checksum once; that equals applying them one
/// after another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change.
    pub const fn new() -> Delta {
        Delta(0)
    }

    /// A 16-bit word changes from `old` to `new` (adds `~m + m'`).
    #[inline]
    pub const fn word(self, old: u16, new: u16) -> Delta {
        Delta(self.0 + (!old) as u64 + new as u64)
    }

    /// A 32-bit field (an IPv4 address) changes from `old` to `new`.
    #[inline]
    pub const fn dword(self, old: u32, new: u32) -> Delta {
        self.word((old >> 16) as u16, (new >> 16) as u16)
            .word(old as u16, new as u16)
    }

    /// Applies the change to checksum `hc`: `~(~HC + Σ(~m + m'))`.
    #[inline]
    pub const fn apply(self, hc: u16) -> u16 {
        !fold((!hc) as u64 + self.0)
    }

    /// As [`Delta::apply`], for a UDP checksum: 0 means "no checksum" and
    /// stays 0 (RFC 768); a computed 0 is transmitted as 0xFFFF.
    #[inline]
    pub const fn apply_udp(self, hc: u16) -> u16 {
        if hc == 0 {
            return 0;
        }
        match self.apply(hc) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// RFC 1624 eqn. 3 for one 16-bit field: the new checksum when a word
/// covered by checksum `hc` changes from `old` to `new`.
#[inline]
pub const fn update16(hc: u16, old: u16, new: u16) -> u16 {
    Delta::new().word(old, new).apply(hc)
}

/// RFC 1624 eqn. 3 for a 32-bit field (two words).
#[inline]
pub const fn update32(hc: u16, old: u32, new: u32) -> u16 {
    Delta::new().dword(old, new).apply(hc)
}

/// Reads the big-endian u16 at `at`.
#[inline]
pub(crate) fn get16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Writes `v` big-endian at `at`.
#[inline]
pub(crate) fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Reads the big-endian u32 at `at`.
#[inline]
pub(crate) fn get32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Applies `delta` in place to the 16-bit checksum stored at `at`.
#[inline]
pub fn apply_at(buf: &mut [u8], at: usize, delta: Delta) {
    let hc = get16(buf, at);
    put16(buf, at, delta.apply(hc));
}

/// Applies `delta` in place to a UDP checksum stored at `at`, keeping 0
/// ("no checksum") as 0 and never writing a computed 0.
#[inline]
pub fn apply_udp_at(buf: &mut [u8], at: usize, delta: Delta) {
    let hc = get16(buf, at);
    put16(buf, at, delta.apply_udp(hc));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straightforward RFC 1071 reference: big-endian words, u32 sum.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from(pair[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_known_checksum() {
        // A textbook header (Wikipedia "IPv4 header checksum"): b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives 0x0000
        // with eqn. 3 (eqn. 2 would give the wrong 0xffff).
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn udp_zero_stays_zero_and_computed_zero_is_ffff() {
        assert_eq!(Delta::new().word(1, 2).apply_udp(0), 0);
        assert_eq!(Delta::new().word(0x5555, 0x3285).apply_udp(0xdd2f), 0xffff);
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            prop_assert_eq!(sum(&data), reference_sum(&data));
        }

        /// RFC 1624: incremental update equals full recomputation, for any
        /// buffer and any set of 16- and 32-bit field rewrites.
        #[test]
        fn incremental_equals_full(
            mut data in proptest::collection::vec(any::<u8>(), 8..600),
            edits in proptest::collection::vec((any::<usize>(), any::<u32>(), any::<bool>()), 1..6),
        ) {
            // Word 0 holds the checksum, so it is part of the covered data
            // as in real headers; word 1 is never edited and never zero
            // (like an IPv4 version/IHL byte), so the sum is never the
            // all-zero case where 0x0000 and 0xffff are both "zero".
            data[0] = 0;
            data[1] = 0;
            data[2] = 0x45;
            let c = checksum(&data);
            put16(&mut data, 0, c);
            let mut delta = Delta::new();
            let words = data.len() / 2;
            for (pos, val, wide) in edits {
                if wide && words >= 4 {
                    let at = 4 + (pos % (words - 3)) * 2;
                    let old = get32(&data, at);
                    data[at..at + 4].copy_from_slice(&val.to_be_bytes());
                    delta = delta.dword(old, val);
                } else {
                    let at = 4 + (pos % (words - 2)) * 2;
                    let old = get16(&data, at);
                    put16(&mut data, at, val as u16);
                    delta = delta.word(old, val as u16);
                }
            }
            let incremental = delta.apply(c);
            put16(&mut data, 0, 0);
            let full = checksum(&data);
            prop_assert_eq!(incremental, full);
        }

        /// Applied one by one or summed in one Delta: same result.
        #[test]
        fn delta_is_compositional(hc in 0u16..0xffff, a: u16, b: u16, c: u32, d: u32) {
            let seq = update32(update16(hc, a, b), c, d);
            let once = Delta::new().word(a, b).dword(c, d).apply(hc);
            prop_assert_eq!(seq, once);
        }
    }
}
