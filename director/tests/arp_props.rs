//! Properties: no input bytes panic the ARP parser or the responder; every
//! well-formed frame survives emit → parse unchanged; and whatever the
//! input, a standby responder never answers and every frame is counted
//! exactly once.

mod arp_util;

use std::net::Ipv4Addr;

use arp_util::*;
use director::Millis;
use director::arp::{ArpOp, ArpOutcome, ArpRepr};
use director::forward::MacAddr;
use proptest::prelude::*;

fn unicast_mac() -> impl Strategy<Value = MacAddr> {
    // Mapped rather than filtered: filters reject too often in long
    // frame sequences.
    any::<[u8; 6]>().prop_map(|mut m| {
        m[0] &= 0xfe;
        if m == [0; 6] {
            m[5] = 1;
        }
        MacAddr(m)
    })
}

fn any_mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    // Mostly our segment, so that VIPs, our own address and neighbours
    // come up often, plus anything at all.
    prop_oneof![
        3 => (0u8..=255).prop_map(|h| Ipv4Addr::new(192, 0, 2, h)),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn repr() -> impl Strategy<Value = ArpRepr> {
    (
        any_mac(),
        unicast_mac(),
        any::<bool>(),
        unicast_mac(),
        addr(),
        any_mac(),
        addr(),
    )
        .prop_map(|(dst, src, req, sha, spa, tha, tpa)| ArpRepr {
            eth_dst: dst,
            eth_src: src,
            op: if req { ArpOp::Request } else { ArpOp::Reply },
            sender_mac: sha,
            sender_ip: spa,
            target_mac: tha,
            target_ip: tpa,
        })
}

/// A valid frame with some bytes overwritten and a random length: close
/// enough to ARP to reach the deep checks.
fn mangled() -> impl Strategy<Value = Vec<u8>> {
    (
        repr(),
        prop::collection::vec((0usize..64, any::<u8>()), 0..6),
        0usize..70,
    )
        .prop_map(|(r, edits, len)| {
            let mut f = r.emit().as_bytes().to_vec();
            f.resize(64, 0);
            for (i, b) in edits {
                f[i] = b;
            }
            f.truncate(len);
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arp_parser_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = ArpRepr::parse(&bytes);
    }

    #[test]
    fn arp_parser_never_panics_on_mangled_frames(bytes in mangled()) {
        if let Ok(r) = ArpRepr::parse(&bytes) {
            // Whatever parses re-emits to the same 42 bytes.
            let f = r.emit();
            prop_assert_eq!(&f.as_bytes()[..42], &bytes[..42]);
        }
    }

    #[test]
    fn arp_emit_parse_round_trip(r in repr()) {
        let f = r.emit();
        prop_assert_eq!(ArpRepr::parse(f.as_bytes()), Ok(r));
        prop_assert_eq!(etherparse_repr(f.as_bytes()), r, "etherparse agrees");
        prop_assert!(f.as_bytes()[42..].iter().all(|&b| b == 0), "zero padding");
    }

    #[test]
    fn arp_responder_total_and_silent_when_standby(
        frames in prop::collection::vec(
            prop_oneof![mangled(), repr().prop_map(|r| r.emit().as_bytes().to_vec())],
            1..40,
        ),
        active in any::<bool>(),
    ) {
        let mut r = responder();
        r.set_active(Millis(0), active);
        for (i, f) in frames.iter().enumerate() {
            let out = r.handle(Millis(i as u64 * 100), f);
            if let ArpOutcome::Reply(reply) = out {
                prop_assert!(active, "a standby director answered {:?}", reply);
                let rep = reply.repr();
                prop_assert!(r.is_vip(rep.sender_ip), "answered for a non-VIP");
                prop_assert_eq!(rep.sender_mac, US_MAC);
            }
            // Never learn our own addresses.
            prop_assert!(!r.neighbours().contains(US_IP));
            prop_assert!(!r.neighbours().contains(VIP));
        }
        prop_assert_eq!(r.counters().total_frames(), frames.len() as u64);
        // And the timers stay sane afterwards.
        let mut last = None;
        for _ in 0..10_000 {
            let Some(t) = r.poll_timeout() else { break };
            if t > Millis(10_000_000) {
                break;
            }
            prop_assert!(last < Some(t), "poll_timeout went nowhere: {:?}", t);
            last = Some(t);
            r.poll_transmit(t);
        }
    }
}
