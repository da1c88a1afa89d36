//! The ARP responder: what it answers, when, what it learns, what it
//! reports, and that every frame is counted once.

mod arp_util;

use std::net::Ipv4Addr;

use arp_util::*;
use director::Millis;
use director::arp::{
    ArpConfig, ArpError, ArpOp, ArpOutcome, ArpRepr, ArpResponder, ArpStat, Conflict, ConflictKind,
    GarpForm, NeighbourState, Silent,
};
use director::forward::MacAddr;

const T0: Millis = Millis(1_000);

fn active() -> ArpResponder {
    let mut r = responder();
    r.set_active(T0, true);
    r
}

fn reply_of(o: ArpOutcome) -> ArpRepr {
    match o {
        ArpOutcome::Reply(f) => f.repr(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn arp_responder_answers_each_vip_only_while_active() {
    let mut r = responder();
    for vip in [VIP, VIP2, GW_VIP] {
        let req = who_has(ROUTER_MAC, ROUTER_IP, vip);
        assert_eq!(
            r.handle(T0, req.as_bytes()),
            ArpOutcome::Silent(Silent::Standby),
            "a standby director never answers for {vip}"
        );
    }
    r.set_active(T0, true);
    for vip in [VIP, VIP2, GW_VIP] {
        let req = who_has(ROUTER_MAC, ROUTER_IP, vip);
        let rep = reply_of(r.handle(T0, req.as_bytes()));
        assert_eq!(rep.op, ArpOp::Reply);
        assert_eq!((rep.sender_ip, rep.sender_mac), (vip, US_MAC));
        assert_eq!((rep.target_ip, rep.target_mac), (ROUTER_IP, ROUTER_MAC));
        assert_eq!(rep.eth_dst, ROUTER_MAC, "unicast back to the asker");
        assert_eq!(rep.eth_src, US_MAC);
    }
    r.set_active(T0, false);
    let req = who_has(ROUTER_MAC, ROUTER_IP, VIP);
    assert_eq!(
        r.handle(T0, req.as_bytes()),
        ArpOutcome::Silent(Silent::Standby)
    );
    let c = r.counters();
    assert_eq!(c.get(ArpStat::Standby), 4);
    assert_eq!(c.get(ArpStat::Replied), 3);
}

#[test]
fn arp_responder_answers_unicast_reverification_only_while_active() {
    // A router re-verifying its entry for the VIP sends a unicast request
    // to the MAC it knows.
    let req = ArpRepr::request(ROUTER_MAC, ROUTER_IP, VIP, Some(US_MAC)).emit();
    let mut r = responder();
    assert_eq!(
        r.handle(T0, req.as_bytes()),
        ArpOutcome::Silent(Silent::Standby)
    );
    r.set_active(T0, true);
    assert_eq!(reply_of(r.handle(T0, req.as_bytes())).sender_ip, VIP);
}

#[test]
fn arp_responder_never_answers_unknown_addresses() {
    let mut r = active();
    for target in [
        Ipv4Addr::new(192, 0, 2, 99),
        RS_IP,
        PEER_IP,
        Ipv4Addr::new(10, 0, 0, 10),
    ] {
        let req = who_has(ROUTER_MAC, ROUTER_IP, target);
        assert_eq!(
            r.handle(T0, req.as_bytes()),
            ArpOutcome::Silent(Silent::NotForUs),
            "{target}"
        );
    }
    assert_eq!(r.counters().get(ArpStat::NotForUs), 4);
    assert_eq!(r.counters().get(ArpStat::Replied), 0);
}

/// The kernel has the director's own address configured and answers ARP
/// for it; a second answer from userspace would only duplicate it.
#[test]
fn arp_responder_leaves_its_own_address_to_the_kernel_but_learns_the_asker() {
    for is_active in [false, true] {
        let mut r = responder();
        r.set_active(T0, is_active);
        let req = who_has(ROUTER_MAC, ROUTER_IP, US_IP);
        assert_eq!(
            r.handle(T0, req.as_bytes()),
            ArpOutcome::Silent(Silent::OwnAddress)
        );
        assert_eq!(
            r.view().peek(ROUTER_IP),
            Some(ROUTER_MAC),
            "RFC 826: the target (us) adds the sender"
        );
    }
}

#[test]
fn arp_responder_learns_the_requesters_mac() {
    let mut r = active();
    let view = r.view();
    let req = who_has(ROUTER_MAC, ROUTER_IP, VIP);
    reply_of(r.handle(T0, req.as_bytes()));
    assert_eq!(view.lookup(ROUTER_IP), Some(ROUTER_MAC));
    assert!(matches!(
        r.neighbours().state(ROUTER_IP),
        Some(NeighbourState::Reachable {
            mac: ROUTER_MAC,
            ..
        })
    ));
    assert_eq!(r.counters().get(ArpStat::LearnedNew), 1);

    // The router's NIC is replaced: the next request updates the entry.
    let new_mac = MacAddr([0x52, 0x54, 0x00, 0x99, 0x99, 0x99]);
    let req = who_has(new_mac, ROUTER_IP, VIP);
    let rep = reply_of(r.handle(Millis(2_000), req.as_bytes()));
    assert_eq!(rep.eth_dst, new_mac);
    assert_eq!(view.lookup(ROUTER_IP), Some(new_mac));
    assert_eq!(r.counters().get(ArpStat::MacChanged), 1);
}

#[test]
fn arp_responder_merges_but_does_not_create_from_others_traffic() {
    let mut r = active();
    // Traffic about other hosts creates nothing (RFC 826 merge: only
    // existing entries are updated)...
    let req = who_has(RS_MAC, RS_IP, Ipv4Addr::new(192, 0, 2, 99));
    assert_eq!(
        r.handle(T0, req.as_bytes()),
        ArpOutcome::Silent(Silent::NotForUs)
    );
    assert!(!r.neighbours().contains(RS_IP));
    let g = garp(RS_MAC, RS_IP, GarpForm::Request);
    assert_eq!(
        r.handle(T0, g.as_bytes()),
        ArpOutcome::Silent(Silent::Announcement)
    );
    assert!(!r.neighbours().contains(RS_IP), "no entry from a GARP");
    let rep = is_at(RS_MAC, RS_IP);
    assert_eq!(
        r.handle(T0, rep.as_bytes()),
        ArpOutcome::Silent(Silent::ReplyReceived)
    );
    assert!(
        !r.neighbours().contains(RS_IP),
        "no entry from an unsolicited reply"
    );

    // ...but once we asked for it, its reply resolves it, and its later
    // announcements update it.
    assert!(r.want(T0, RS_IP));
    let sent = r.poll_transmit(T0);
    assert!(sent.iter().any(|f| f.repr().target_ip == RS_IP));
    r.handle(Millis(1_100), rep.as_bytes());
    assert_eq!(r.view().lookup(RS_IP), Some(RS_MAC));
    let moved = MacAddr([0x52, 0x54, 0, 0, 0, 0x22]);
    r.handle(
        Millis(1_200),
        garp(moved, RS_IP, GarpForm::Reply).as_bytes(),
    );
    assert_eq!(r.view().lookup(RS_IP), Some(moved));
}

#[test]
fn arp_responder_standby_learns_too() {
    // The standby keeps its cache warm so that it can forward at once
    // after taking over.
    let mut r = responder();
    let req = who_has(ROUTER_MAC, ROUTER_IP, US_IP);
    r.handle(T0, req.as_bytes());
    assert_eq!(r.view().peek(ROUTER_IP), Some(ROUTER_MAC));
    // A request for a VIP we do not own while standby: we are not its
    // target, so nothing is created.
    let req = who_has(RS_MAC, RS_IP, VIP);
    r.handle(T0, req.as_bytes());
    assert!(!r.neighbours().contains(RS_IP));
}

#[test]
fn arp_responder_reports_a_peers_gratuitous_arp_for_our_vip_as_conflict() {
    for form in [GarpForm::Request, GarpForm::Reply] {
        let mut r = active();
        let g = garp(PEER_MAC, VIP, form);
        assert_eq!(
            r.handle(T0, g.as_bytes()),
            ArpOutcome::Conflict(Conflict {
                ip: VIP,
                mac: PEER_MAC,
                kind: ConflictKind::Vip,
                gratuitous: true,
            }),
            "two actives announcing one VIP is a split brain ({form:?})"
        );
        assert!(!r.neighbours().contains(VIP), "our VIP is never learned");
        assert_eq!(r.counters().get(ArpStat::Conflict), 1);
    }
    // While standby the same frame is the active peer doing its job.
    let mut r = responder();
    let g = garp(PEER_MAC, VIP, GarpForm::Request);
    assert_eq!(
        r.handle(T0, g.as_bytes()),
        ArpOutcome::Silent(Silent::PeerClaim)
    );
    assert_eq!(r.counters().get(ArpStat::Conflict), 0);
    assert!(!r.neighbours().contains(VIP));
}

#[test]
fn arp_responder_reports_a_real_server_leaking_vip_arp() {
    // A DR real server without arp_announce=2 asks for the router with the
    // VIP as its source address: it poisons the router's cache.
    let mut r = active();
    let req = who_has(RS_MAC, VIP, ROUTER_IP);
    assert_eq!(
        r.handle(T0, req.as_bytes()),
        ArpOutcome::Conflict(Conflict {
            ip: VIP,
            mac: RS_MAC,
            kind: ConflictKind::Vip,
            gratuitous: false,
        })
    );
}

#[test]
fn arp_responder_reports_duplicate_own_address() {
    let mut r = responder();
    let g = garp(RS_MAC, US_IP, GarpForm::Request);
    assert_eq!(
        r.handle(T0, g.as_bytes()),
        ArpOutcome::Conflict(Conflict {
            ip: US_IP,
            mac: RS_MAC,
            kind: ConflictKind::OwnAddress,
            gratuitous: true,
        })
    );
}

#[test]
fn arp_responder_probes_learn_nothing_and_are_answered_only_for_an_active_vip() {
    let probe = |target| ArpRepr::request(RS_MAC, Ipv4Addr::UNSPECIFIED, target, None).emit();
    let mut r = responder();
    assert_eq!(
        r.handle(T0, probe(VIP).as_bytes()),
        ArpOutcome::Silent(Silent::Standby)
    );
    r.set_active(T0, true);
    // RFC 5227: a host probing for an address in use must get an answer,
    // or it will take the address. Linux answers probes for its own
    // addresses the same way: to the prober's MAC, target address 0.
    let rep = reply_of(r.handle(T0, probe(VIP).as_bytes()));
    assert_eq!((rep.eth_dst, rep.target_mac), (RS_MAC, RS_MAC));
    assert_eq!((rep.sender_ip, rep.target_ip), (VIP, Ipv4Addr::UNSPECIFIED));
    for target in [US_IP, Ipv4Addr::new(192, 0, 2, 77)] {
        assert!(matches!(
            r.handle(T0, probe(target).as_bytes()),
            ArpOutcome::Silent(_)
        ));
    }
    assert!(r.neighbours().is_empty(), "a probe has no sender to learn");
}

#[test]
fn arp_responder_ignores_its_own_frames_and_others_unicast() {
    let mut r = active();
    // Our own GARP and request, looped back by the packet socket.
    for f in [
        garp(US_MAC, VIP, GarpForm::Request),
        who_has(US_MAC, US_IP, RS_IP),
    ] {
        assert_eq!(
            r.handle(T0, f.as_bytes()),
            ArpOutcome::Silent(Silent::OwnFrame)
        );
    }
    // A request for our VIP that is unicast to another station's MAC
    // (visible only in promiscuous mode): not ours to answer.
    let f = ArpRepr::request(ROUTER_MAC, ROUTER_IP, VIP, Some(PEER_MAC)).emit();
    assert_eq!(
        r.handle(T0, f.as_bytes()),
        ArpOutcome::Silent(Silent::OtherHost)
    );
    assert!(r.neighbours().is_empty());
    assert_eq!(r.counters().get(ArpStat::OwnFrame), 2);
    assert_eq!(r.counters().get(ArpStat::OtherHost), 1);
}

#[test]
fn arp_responder_ignores_impossible_addresses() {
    let mut r = active();
    for (spa, tpa) in [
        (Ipv4Addr::new(224, 0, 0, 1), VIP),
        (Ipv4Addr::BROADCAST, VIP),
        (Ipv4Addr::new(127, 0, 0, 1), VIP),
        (ROUTER_IP, Ipv4Addr::new(224, 0, 0, 18)),
        (ROUTER_IP, Ipv4Addr::new(127, 0, 0, 1)),
    ] {
        let f = who_has(ROUTER_MAC, spa, tpa);
        assert_eq!(
            r.handle(T0, f.as_bytes()),
            ArpOutcome::Silent(Silent::BadAddress),
            "{spa} -> {tpa}"
        );
    }
    assert!(r.neighbours().is_empty());
    // A reply with sender 0.0.0.0 is no probe: ignored.
    let f = ArpRepr {
        op: ArpOp::Reply,
        ..ArpRepr::request(ROUTER_MAC, Ipv4Addr::UNSPECIFIED, VIP, Some(US_MAC))
    }
    .emit();
    assert_eq!(
        r.handle(T0, f.as_bytes()),
        ArpOutcome::Silent(Silent::BadAddress)
    );
}

#[test]
fn arp_responder_counts_malformed_frames() {
    let mut r = active();
    let good = who_has(ROUTER_MAC, ROUTER_IP, VIP);
    let mut rarp = good.0;
    rarp[21] = 3;
    let mut ipv6 = good.0;
    ipv6[16..18].copy_from_slice(&[0x86, 0xdd]);
    let frames: [&[u8]; 5] = [
        &[],
        &good.as_bytes()[..30],
        &rarp,
        &ipv6,
        &[0u8; 60], // ethertype 0
    ];
    for f in frames {
        assert!(matches!(r.handle(T0, f), ArpOutcome::Malformed(_)));
    }
    let c = r.counters();
    assert_eq!(c.errors(ArpError::FrameTooShort), 1);
    assert_eq!(c.errors(ArpError::Truncated), 1);
    assert_eq!(c.errors(ArpError::UnsupportedOperation), 1);
    assert_eq!(c.errors(ArpError::UnsupportedProtocol), 1);
    assert_eq!(c.errors(ArpError::NotArp), 1);
    assert_eq!(c.total_errors(), 5);
    assert_eq!(
        c.total_frames(),
        5,
        "a rejected frame counts under its error only"
    );
}

#[test]
fn arp_responder_uses_the_virtual_mac_for_vips_only() {
    let vmac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
    let mut cfg = ArpConfig::new(US_MAC, US_IP, vec![VIP]);
    cfg.vip_mac = Some(vmac);
    let mut r = ArpResponder::new(cfg);
    r.set_active(T0, true);
    let rep = reply_of(r.handle(T0, who_has(ROUTER_MAC, ROUTER_IP, VIP).as_bytes()));
    assert_eq!((rep.eth_src, rep.sender_mac), (vmac, vmac));
    let out = r.poll_transmit(T0);
    assert!(out.iter().all(|f| f.repr().sender_mac == vmac));
    r.want(T0, RS_IP);
    let req = r.poll_transmit(T0);
    assert_eq!(req.len(), 1);
    assert_eq!(
        (req[0].repr().sender_mac, req[0].repr().sender_ip),
        (US_MAC, US_IP),
        "resolution uses the interface's own identity"
    );
    // A request unicast to the virtual MAC is for us too.
    let f = ArpRepr::request(ROUTER_MAC, ROUTER_IP, VIP, Some(vmac)).emit();
    assert!(matches!(r.handle(T0, f.as_bytes()), ArpOutcome::Reply(_)));
}

#[test]
fn arp_responder_every_frame_counted_once() {
    let mut r = active();
    let frames = [
        who_has(ROUTER_MAC, ROUTER_IP, VIP),
        who_has(ROUTER_MAC, ROUTER_IP, US_IP),
        who_has(ROUTER_MAC, ROUTER_IP, RS_IP),
        is_at(RS_MAC, RS_IP),
        garp(PEER_MAC, VIP, GarpForm::Request),
        garp(US_MAC, VIP, GarpForm::Request),
    ];
    for f in &frames {
        r.handle(T0, f.as_bytes());
    }
    r.handle(T0, &[1, 2, 3]);
    let c = r.counters();
    assert_eq!(c.total_frames(), frames.len() as u64 + 1);
    assert_eq!(c.total_errors(), 1);
    for s in [
        ArpStat::Replied,
        ArpStat::OwnAddress,
        ArpStat::NotForUs,
        ArpStat::ReplyReceived,
        ArpStat::Conflict,
        ArpStat::OwnFrame,
    ] {
        assert_eq!(c.get(s), 1, "{}", s.as_str());
    }
}
