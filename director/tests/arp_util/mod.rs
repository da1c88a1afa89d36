//! Shared fixtures for the ARP tests: a director interface, its VIPs, a
//! client router, a peer director and a real server, and frame builders.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use director::arp::{ArpConfig, ArpFrame, ArpOp, ArpRepr, ArpResponder, GarpForm};
use director::forward::MacAddr;
use etherparse::{ArpOperation, NetSlice, SlicedPacket};

/// Our interface.
pub const US_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc]);
/// The director's own (kernel-owned) address.
pub const US_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Two VIPs and the NAT inner gateway VIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The second VIP.
pub const VIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// The inner gateway VIP real servers route through (NAT).
pub const GW_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The client-side router.
pub const ROUTER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// Its address.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The other director.
pub const PEER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0xdd, 0xee, 0xff]);
/// Its own address.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
/// A real server.
pub const RS_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x21]);
/// Its address.
pub const RS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);

/// Hex with whitespace → bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    assert!(s.len().is_multiple_of(2), "odd hex fixture");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A standby responder for our interface with the three VIPs.
pub fn responder() -> ArpResponder {
    ArpResponder::new(ArpConfig::new(US_MAC, US_IP, vec![VIP, VIP2, GW_VIP]))
}

/// A broadcast request from `mac`/`ip` asking for `target`.
pub fn who_has(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> ArpFrame {
    ArpRepr::request(mac, ip, target, None).emit()
}

/// A reply from `mac`/`ip` to us.
pub fn is_at(mac: MacAddr, ip: Ipv4Addr) -> ArpFrame {
    ArpRepr {
        eth_dst: US_MAC,
        eth_src: mac,
        op: ArpOp::Reply,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: US_MAC,
        target_ip: US_IP,
    }
    .emit()
}

/// A gratuitous ARP from `mac` for `ip`.
pub fn garp(mac: MacAddr, ip: Ipv4Addr, form: GarpForm) -> ArpFrame {
    ArpRepr::gratuitous(mac, ip, form).emit()
}

/// etherparse's reading of a frame, as an [`ArpRepr`]: an independent
/// decoder for everything we emit.
pub fn etherparse_repr(frame: &[u8]) -> ArpRepr {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses it");
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("not Ethernet II: {other:?}"),
    };
    let Some(NetSlice::Arp(arp)) = p.net else {
        panic!("etherparse sees no ARP")
    };
    let a = arp.to_packet().try_eth_ipv4().expect("Ethernet/IPv4 ARP");
    ArpRepr {
        eth_dst: MacAddr(eth.destination()),
        eth_src: MacAddr(eth.source()),
        op: match a.operation {
            ArpOperation::REQUEST => ArpOp::Request,
            ArpOperation::REPLY => ArpOp::Reply,
            other => panic!("opcode {other:?}"),
        },
        sender_mac: MacAddr(a.sender_mac),
        sender_ip: a.sender_ipv4_addr(),
        target_mac: MacAddr(a.target_mac),
        target_ip: a.target_ipv4_addr(),
    }
}
