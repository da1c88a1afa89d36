//! Shared fixtures for the `rewrite_*` tests: frames built with
//! etherparse's `PacketBuilder` (an implementation independent of the code
//! under test) and checks that re-derive every checksum with etherparse.
#![allow(dead_code)]

use director::forward::MacAddr;
use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv4HeaderSlice, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xd1];
pub const RS_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x21];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];

pub const CLIENT: [u8; 4] = [203, 0, 113, 7];
pub const VIP: [u8; 4] = [192, 0, 2, 10];
pub const DIP: [u8; 4] = [10, 0, 0, 1];
pub const RIP: [u8; 4] = [10, 0, 0, 21];

pub fn mac(b: [u8; 6]) -> MacAddr {
    MacAddr(b)
}

/// Layer 4 of a test frame.
#[derive(Debug, Clone)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        fin: bool,
        psh: bool,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
}

/// Everything that describes a test frame.
#[derive(Debug, Clone)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub id: u16,
    pub df: bool,
    pub tos: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Spec {
    /// Client → VIP:`vport` TCP SYN, as it reaches the director.
    pub fn syn(vport: u16) -> Spec {
        Spec {
            src_mac: ROUTER_MAC,
            dst_mac: DIRECTOR_MAC,
            src: CLIENT,
            dst: VIP,
            ttl: 61,
            id: 0x1c46,
            df: true,
            tos: 0,
            l4: L4::Tcp {
                sport: 40000,
                dport: vport,
                seq: 0x0102_0304,
                ack: None,
                syn: true,
                fin: false,
                psh: false,
            },
            payload: vec![],
        }
    }

    /// Client → VIP:`vport` TCP data segment (ACK|PSH) of `len` bytes.
    pub fn data(vport: u16, len: usize) -> Spec {
        Spec {
            l4: L4::Tcp {
                sport: 40000,
                dport: vport,
                seq: 0x0102_0305,
                ack: Some(0xa0b0_c0d0),
                syn: false,
                fin: false,
                psh: true,
            },
            payload: (0..len).map(|i| (i * 7 + 3) as u8).collect(),
            ..Spec::syn(vport)
        }
    }

    /// Client → VIP:`vport` UDP datagram.
    pub fn udp(vport: u16, len: usize) -> Spec {
        Spec {
            l4: L4::Udp {
                sport: 5353,
                dport: vport,
            },
            payload: (0..len).map(|i| (i * 13 + 1) as u8).collect(),
            ..Spec::syn(vport)
        }
    }

    pub fn ip_header(&self) -> Ipv4Header {
        let mut h = Ipv4Header::new(0, self.ttl, IpNumber::TCP, self.src, self.dst).unwrap();
        h.identification = self.id;
        h.dont_fragment = self.df;
        h.dscp = etherparse::IpDscp::try_new(self.tos >> 2).unwrap();
        h.ecn = etherparse::IpEcn::try_new(self.tos & 3).unwrap();
        h
    }

    /// Serialises with etherparse (which computes lengths and checksums).
    pub fn build(&self) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ip(IpHeaders::Ipv4(self.ip_header(), Default::default()));
        let mut out = Vec::new();
        match self.l4 {
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                syn,
                fin,
                psh,
            } => {
                let mut t = b.tcp(sport, dport, seq, 64240);
                if syn {
                    t = t.syn();
                }
                if fin {
                    t = t.fin();
                }
                if psh {
                    t = t.psh();
                }
                if let Some(a) = ack {
                    t = t.ack(a);
                }
                t.write(&mut out, &self.payload).unwrap();
            }
            L4::Udp { sport, dport } => b.udp(sport, dport).write(&mut out, &self.payload).unwrap(),
        }
        out
    }

    pub fn set_dport(&mut self, p: u16) {
        match &mut self.l4 {
            L4::Tcp { dport, .. } | L4::Udp { dport, .. } => *dport = p,
        }
    }

    pub fn set_sport(&mut self, p: u16) {
        match &mut self.l4 {
            L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport = p,
        }
    }
}

/// Parses `frame` with etherparse and checks that the IPv4 header checksum
/// and the TCP/UDP/ICMP checksum in it equal what etherparse computes.
/// Returns the parsed packet for further assertions.
pub fn assert_checksums(frame: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the output");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {:?}", p.net)
    };
    let h = ip.header();
    assert_eq!(
        h.header_checksum(),
        h.to_header().calc_header_checksum(),
        "IPv4 header checksum"
    );
    let (src, dst) = (h.source(), h.destination());
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv4(src, dst).unwrap(),
                "TCP checksum"
            );
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let c = u
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, u.payload())
                    .unwrap();
                assert_eq!(u.checksum(), c, "UDP checksum");
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let expect =
                etherparse::Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum;
            assert_eq!(i.checksum(), expect, "ICMP checksum");
        }
        Some(TransportSlice::Icmpv6(_)) | Some(TransportSlice::Igmp(_)) | None => {
            // An IPIP packet: etherparse stops at the outer header; the
            // caller checks the inner packet separately.
        }
    }
    p
}

/// Recomputes the IPv4 header checksum of `frame` (Ethernet + IPv4) with
/// etherparse, for tests that corrupt a field on purpose and want only
/// that field to be wrong.
pub fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[24] = 0;
    frame[25] = 0;
    let h = Ipv4HeaderSlice::from_slice(&frame[14..14 + ihl])
        .unwrap()
        .to_header();
    let c = h.calc_header_checksum();
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
