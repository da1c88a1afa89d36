//! The kernel's hash functions, reproduced bit for bit so that a director
//! maps a client to the same real server as Linux IPVS would (and as its
//! peer director does).
//!
//! Every function here is pure and unseeded. Where the kernel could use a
//! secret key, the IPVS schedulers do not: the Maglev scheduler hashes with
//! two fixed `hsiphash` keys written into `ip_vs_mh.c`, and we use the same
//! constants. On 64-bit kernels `hsiphash` is SipHash-1-3 truncated to 32
//! bits, which is what [`hsiphash_u32`] computes, so our Maglev permutations
//! and lookups equal an x86-64 kernel's.

use std::net::IpAddr;

/// The multiplier of the kernel's old multiplicative hashes (`2654435761`,
/// ⌊2³² / φ⌋ rounded to a prime), used by dh and lblc.
pub(crate) const GOLDEN_PRIME: u32 = 2_654_435_761;

/// `GOLDEN_RATIO_32` of `include/linux/hash.h` (since Linux 4.7), the
/// multiplier of `hash_32`, used by sh and lblcr.
pub(crate) const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The address folded to 32 bits in host order, as IPVS's hash functions
/// take it: IPv4 as is; IPv6 as the XOR of its four 32-bit words.
pub(crate) fn fold_addr(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            word(0) ^ word(4) ^ word(8) ^ word(12)
        }
    }
}

/// `(addr * 2654435761) & mask`: the bucket of dh, lblc (and the old sh).
/// The kernel multiplies in `unsigned long`; only the low bits survive the
/// mask, so 32-bit wrapping arithmetic gives the same bucket.
#[inline]
pub(crate) fn golden_bucket(v: u32, bits: u32) -> usize {
    (v.wrapping_mul(GOLDEN_PRIME) & ((1u32 << bits) - 1)) as usize
}

/// The kernel's `hash_32(val, bits)`: multiply by `GOLDEN_RATIO_32` and keep
/// the top `bits` bits.
#[inline]
pub(crate) fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// A `hsiphash_key_t` on a 64-bit kernel: two 64-bit words.
pub(crate) type HsipKey = [u64; 2];

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// The kernel's `hsiphash()` of one 32-bit value (four bytes, little-endian
/// in memory) on a 64-bit machine: SipHash-1-3, output folded to 32 bits.
pub(crate) fn hsiphash_u32(value: u32, key: &HsipKey) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    // Four bytes of input: no full 8-byte block, one final block holding
    // the length in its top byte.
    let b = (4u64 << 56) | u64::from(value);
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    ((v[0] ^ v[1]) ^ (v[2] ^ v[3])) as u32
}

/// Greatest common divisor (the kernel's `gcd()`), for wrr and mh.
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The kernel's `fls()`: 1-based index of the most significant set bit,
/// 0 for 0.
pub(crate) fn fls(v: u32) -> u32 {
    32 - v.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsiphash_matches_kernel_self_test_vector() {
        // lib/siphash_kunit.c (64-bit): key 00..0f, input bytes 00 01 02 03
        // must hash to test_vectors_hsiphash[4].
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(
            hsiphash_u32(0x0302_0100, &key),
            0x88d3_8328,
            "hsiphash_1u32 must equal the kernel's SipHash-1-3 self-test vector"
        );
    }

    #[test]
    fn hash_32_keeps_top_bits() {
        assert_eq!(
            hash_32(1, 8),
            0x61,
            "hash_32: top bits of val * GOLDEN_RATIO_32"
        );
        assert_eq!(hash_32(0, 10), 0);
    }

    #[test]
    fn golden_bucket_depends_on_low_bits_only() {
        // The kernel's multiplicative dh/lblc hash: low `bits` of the product.
        assert_eq!(
            golden_bucket(1, 8),
            0xB1,
            "dh/lblc: (addr * 2654435761) & mask"
        );
        assert_eq!(
            golden_bucket(0x0100_0001, 8),
            0xB1,
            "only the low bits of the product survive the mask"
        );
    }

    #[test]
    fn ipv6_folds_by_xor() {
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!(fold_addr(ip), 1);
        let ip: IpAddr = "1::1".parse().unwrap();
        assert_eq!(
            fold_addr(ip),
            0x0001_0000 ^ 1,
            "IPv6: ip6[0]^ip6[1]^ip6[2]^ip6[3]"
        );
    }

    #[test]
    fn gcd_and_fls() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 5), 5);
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(4093), 12);
    }
}
