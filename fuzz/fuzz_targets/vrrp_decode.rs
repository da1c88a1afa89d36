//! Fuzz the VRRPv3 decoder with arbitrary IPv4 datagrams: it must never
//! panic, and anything it accepts must re-encode to a datagram it accepts
//! again with the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rx) = vrrp::packet::decode(data, |v| v % 2 == 1) {
        let again = rx.advert.to_ipv4(rx.src, rx.dst, 1);
        let back = vrrp::packet::decode(&again, |_| true).expect("re-encoded advert decodes");
        assert_eq!(back.advert, rx.advert);
    }
});
