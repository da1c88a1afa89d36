//! ARP wire format: hex fixtures parsed and emitted both ways, and every
//! emitted frame read back by etherparse's own (independent) decoder.

mod arp_util;

use std::net::Ipv4Addr;

use arp_util::*;
use director::arp::{ARP_FRAME_LEN, ArpError, ArpFrame, ArpOp, ArpRepr, GarpForm};
use director::forward::MacAddr;

/// "who-has 192.0.2.10 tell 192.0.2.1" as it arrives from the wire:
/// padded to 60 bytes by the sender's NIC (the padding here is not zero,
/// as some NICs leave it, to show that it is ignored).
const REQUEST_FROM_ROUTER: &str = "
    ffffffffffff 525400123456 0806
    0001 0800 06 04 0001
    525400123456 c0000201
    000000000000 c000020a
    deadbeefdeadbeefdeadbeefdeadbeefdead";

/// Our answer: "192.0.2.10 is-at 02:00:00:aa:bb:cc", unicast to the asker.
const REPLY_TO_ROUTER: &str = "
    525400123456 020000aabbcc 0806
    0001 0800 06 04 0002
    020000aabbcc c000020a
    525400123456 c0000201
    000000000000000000000000000000000000";

/// keepalived's gratuitous ARP: a broadcast request, SPA = TPA = VIP,
/// THA = ff:ff:ff:ff:ff:ff.
const GARP_REQUEST: &str = "
    ffffffffffff 020000aabbcc 0806
    0001 0800 06 04 0001
    020000aabbcc c000020a
    ffffffffffff c000020a
    000000000000000000000000000000000000";

/// The reply form (`arping -A`): THA = our own MAC.
const GARP_REPLY: &str = "
    ffffffffffff 020000aabbcc 0806
    0001 0800 06 04 0002
    020000aabbcc c000020a
    020000aabbcc c000020a
    000000000000000000000000000000000000";

/// Our request resolving a real server: broadcast, THA zero, as Linux.
const REQUEST_FOR_RS: &str = "
    ffffffffffff 020000aabbcc 0806
    0001 0800 06 04 0001
    020000aabbcc c0000202
    000000000000 c0000215
    000000000000000000000000000000000000";

/// The unicast probe re-verifying a stale entry.
const PROBE_RS: &str = "
    525400000021 020000aabbcc 0806
    0001 0800 06 04 0001
    020000aabbcc c0000202
    000000000000 c0000215
    000000000000000000000000000000000000";

fn check_emit(frame: ArpFrame, fixture: &str, want: ArpRepr) {
    assert_eq!(frame.as_bytes(), &hex(fixture)[..], "bytes of {want:?}");
    assert_eq!(frame.as_bytes().len(), ARP_FRAME_LEN);
    assert_eq!(etherparse_repr(frame.as_bytes()), want, "etherparse agrees");
    assert_eq!(ArpRepr::parse(frame.as_bytes()), Ok(want), "round trip");
}

#[test]
fn arp_request_fixture_parses_like_etherparse() {
    let bytes = hex(REQUEST_FROM_ROUTER);
    let r = ArpRepr::parse(&bytes).unwrap();
    assert_eq!(
        r,
        ArpRepr {
            eth_dst: MacAddr::BROADCAST,
            eth_src: ROUTER_MAC,
            op: ArpOp::Request,
            sender_mac: ROUTER_MAC,
            sender_ip: ROUTER_IP,
            target_mac: MacAddr::ZERO,
            target_ip: VIP,
        }
    );
    assert_eq!(etherparse_repr(&bytes), r, "etherparse agrees");
}

#[test]
fn arp_reply_emitted_for_the_fixture_request() {
    let req = ArpRepr::parse(&hex(REQUEST_FROM_ROUTER)).unwrap();
    let reply = req.reply_to(US_MAC);
    check_emit(reply.emit(), REPLY_TO_ROUTER, reply);
    let mut slot = [0u8; 2048];
    assert_eq!(reply.emit_into(&mut slot), Ok(60));
    assert_eq!(&slot[..60], &hex(REPLY_TO_ROUTER)[..]);
}

#[test]
fn arp_gratuitous_both_forms() {
    for (form, fixture) in [
        (GarpForm::Request, GARP_REQUEST),
        (GarpForm::Reply, GARP_REPLY),
    ] {
        let g = ArpRepr::gratuitous(US_MAC, VIP, form);
        assert!(g.is_gratuitous(), "{form:?}");
        assert!(!g.is_probe());
        check_emit(g.emit(), fixture, g);
    }
}

#[test]
fn arp_requests_broadcast_and_unicast_probe() {
    let r = ArpRepr::request(US_MAC, US_IP, RS_IP, None);
    check_emit(r.emit(), REQUEST_FOR_RS, r);
    let p = ArpRepr::request(US_MAC, US_IP, RS_IP, Some(RS_MAC));
    check_emit(p.emit(), PROBE_RS, p);
}

#[test]
fn arp_probe_reply_goes_back_to_the_prober_with_zero_target() {
    // RFC 5227 probe from a host checking whether the VIP is free.
    let probe = ArpRepr::request(RS_MAC, Ipv4Addr::UNSPECIFIED, VIP, None);
    assert!(probe.is_probe() && !probe.is_gratuitous());
    let reply = probe.reply_to(US_MAC);
    assert_eq!(reply.eth_dst, RS_MAC);
    assert_eq!(reply.sender_ip, VIP);
    assert_eq!(reply.target_ip, Ipv4Addr::UNSPECIFIED);
    assert_eq!(reply.target_mac, RS_MAC);
}

#[test]
fn arp_rejects_everything_but_ethernet_ipv4() {
    let good = hex(REQUEST_FROM_ROUTER);
    let patch = |at: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    // An 802.1Q-tagged ARP request (VLAN 100).
    let mut tagged = good[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged.extend_from_slice(&good[12..]);
    // IPv4 instead of ARP.
    let ipv4 = patch(12, &[0x08, 0x00]);
    let cases = [
        (vec![], ArpError::FrameTooShort),
        (good[..13].to_vec(), ArpError::FrameTooShort),
        (tagged, ArpError::NotArp),
        (ipv4, ArpError::NotArp),
        (good[..14].to_vec(), ArpError::Truncated),
        (good[..41].to_vec(), ArpError::Truncated),
        // IEEE 802 hardware type (6), used on Token Ring.
        (patch(14, &[0x00, 0x06]), ArpError::UnsupportedHardware),
        // Ethernet with 8-byte addresses.
        (patch(18, &[8]), ArpError::UnsupportedHardware),
        // IPv6 protocol type.
        (patch(16, &[0x86, 0xdd]), ArpError::UnsupportedProtocol),
        (patch(19, &[16]), ArpError::UnsupportedProtocol),
        // RARP request / reply, InARP.
        (patch(20, &[0x00, 0x03]), ArpError::UnsupportedOperation),
        (patch(20, &[0x00, 0x04]), ArpError::UnsupportedOperation),
        (patch(20, &[0x00, 0x08]), ArpError::UnsupportedOperation),
        (patch(20, &[0x00, 0x00]), ArpError::UnsupportedOperation),
        // Sender MAC broadcast, multicast, zero; Ethernet source multicast.
        (patch(22, &[0xff; 6]), ArpError::InvalidSenderMac),
        (
            patch(22, &[0x01, 0, 0x5e, 0, 0, 1]),
            ArpError::InvalidSenderMac,
        ),
        (patch(22, &[0; 6]), ArpError::InvalidSenderMac),
        (
            patch(6, &[0x33, 0x33, 0, 0, 0, 1]),
            ArpError::InvalidSenderMac,
        ),
    ];
    for (frame, want) in cases {
        assert_eq!(ArpRepr::parse(&frame), Err(want), "{}", want.as_str());
    }
    // The exact 42-byte minimum (no padding) is fine.
    assert!(ArpRepr::parse(&good[..42]).is_ok());
}
