//! Property tests for the wire format: the decoder takes untrusted bytes
//! from the network, so it must never panic, and whatever the encoder
//! writes the decoder must read back unchanged.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use vrrp::packet::{Advert, MULTICAST_GROUP, Reject, decode};

fn advert() -> impl Strategy<Value = Advert> {
    (
        1u8..=255,
        any::<u8>(),
        1u16..=4095,
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 1..=40),
    )
        .prop_map(|(vrid, priority, interval, addresses)| Advert {
            vrid,
            priority,
            max_advert_interval_cs: interval,
            addresses,
        })
}

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

proptest! {
    #[test]
    fn decode_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes, |_| true);
    }

    #[test]
    fn encode_then_decode_round_trips(a in advert(), src in addr(), dst in addr(), id in any::<u16>()) {
        let bytes = a.to_ipv4(src, dst, id);
        let got = decode(&bytes, |v| v == a.vrid).expect("RFC 5798 7.1: our own encoding passes every receive check");
        prop_assert_eq!(got.src, src);
        prop_assert_eq!(got.dst, dst);
        prop_assert_eq!(got.advert, a);
    }

    /// Flip, overwrite or cut bytes of a valid datagram: never a panic,
    /// and a single flipped bit in the VRRP part is always caught (by the
    /// checksum or an earlier field check).
    #[test]
    fn decode_never_panics_on_mutated_adverts(
        a in advert(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = a.to_ipv4(Ipv4Addr::new(10, 0, 0, 1), MULTICAST_GROUP, 1);
        for (at, v) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        let _ = decode(&bytes, |_| true);
        let n = cut.index(bytes.len() + 1);
        let _ = decode(&bytes[..n], |_| true);
    }

    #[test]
    fn one_flipped_bit_in_the_advert_is_rejected(a in advert(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = a.to_ipv4(Ipv4Addr::new(10, 0, 0, 1), MULTICAST_GROUP, 1);
        let i = 20 + at.index(bytes.len() - 20);
        // The 4 reserved bits are ignored on receive (RFC 5798 5.2.6), but
        // still covered by the checksum.
        bytes[i] ^= 1 << bit;
        let got = decode(&bytes, |_| true);
        prop_assert!(got.is_err(), "flipped bit {bit} of byte {i} went unnoticed");
        prop_assert_ne!(got, Err(Reject::Truncated));
    }
}
