//! ARP over Ethernet for IPv4 (RFC 826): parse a received frame into an
//! [`ArpRepr`], and emit requests, replies and gratuitous ARP as complete,
//! padded 60-byte Ethernet frames ([`ArpFrame`]) without touching the heap.
//!
//! Parsing uses etherparse's Ethernet and ARP slices (STYLE.md section 2);
//! this module adds what etherparse leaves to the caller: the checks that
//! the packet is the Ethernet/IPv4 flavour (the only one a director on an
//! Ethernet segment speaks) and that its sender is a plausible station.
//!
//! ```text
//!  Ethernet II header (14 bytes)
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |              destination MAC (6)              |  source MAC   |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+               +
//!  |                    (6)                        | type = 0x0806 |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  ARP, RFC 826, Ethernet/IPv4 (28 bytes)
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |      htype = 1 (Ethernet)     |     ptype = 0x0800 (IPv4)     |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |   hlen = 6    |   plen = 4    |  oper: 1 request, 2 reply     |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |          sender hardware address (SHA, 6 bytes) ...           |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |  ... SHA      |     sender protocol address (SPA, 4 bytes)    |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |  ... SPA      |   target hardware address (THA, 6 bytes) ...  |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |  ... THA                      |  target protocol address (TPA)|
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |  ... TPA                      |  18 bytes of zero padding to
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  the 60-byte Ethernet minimum
//! ```

use std::net::Ipv4Addr;

use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacketSlice, EtherType, Ethernet2Header,
    Ethernet2HeaderSlice,
};

use super::error::ArpError;
use crate::forward::MacAddr;

/// Bytes of an Ethernet II header.
pub const ETH_HEADER_LEN: usize = 14;
/// Bytes of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// Bytes of an emitted frame: Ethernet's 60-byte minimum (without FCS).
/// The 42 bytes of header and ARP are followed by zero padding, as a NIC
/// would add; we pad ourselves because AF_PACKET sends frames as given.
pub const ARP_FRAME_LEN: usize = 60;

/// The ARP operation. Only the two RFC 826 ones are accepted; RARP and
/// InARP opcodes are rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// Opcode 1: who has the target address?
    Request,
    /// Opcode 2: the sender address is at the sender MAC.
    Reply,
}

impl ArpOp {
    fn to_wire(self) -> ArpOperation {
        match self {
            ArpOp::Request => ArpOperation::REQUEST,
            ArpOp::Reply => ArpOperation::REPLY,
        }
    }
}

/// Which form of gratuitous ARP to send. Both carry our address as sender
/// and target protocol address; receivers update an existing cache entry
/// either way (RFC 5227 section 3, RFC 5944 section 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GarpForm {
    /// An ARP request with target hardware address ff:ff:ff:ff:ff:ff, as
    /// keepalived sends: the form most stacks and switches act on.
    #[default]
    Request,
    /// An ARP reply with target hardware address set to our own, as
    /// `arping -A` sends (RFC 5944 section 4.6).
    Reply,
}

/// A parsed Ethernet/IPv4 ARP frame: the Ethernet addresses and the five
/// fields the protocol logic needs. Also the input to the emitters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Request or reply.
    pub op: ArpOp,
    /// SHA: the sender's hardware address.
    pub sender_mac: MacAddr,
    /// SPA: the sender's IPv4 address (0.0.0.0 in an RFC 5227 probe).
    pub sender_ip: Ipv4Addr,
    /// THA: ignored in requests (zero or broadcast by convention).
    pub target_mac: MacAddr,
    /// TPA: the address being asked about (requests) or answered to.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an untrusted Ethernet frame. Bytes after the 28-byte ARP
    /// packet (Ethernet padding, a trailer) are ignored, as every stack
    /// does.
    pub fn parse(frame: &[u8]) -> Result<ArpRepr, ArpError> {
        let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| ArpError::FrameTooShort)?;
        // An 802.1Q tag lands here as "not ARP": the data interface is
        // untagged, like the rest of the dataplane assumes.
        if eth.ether_type() != EtherType::ARP {
            return Err(ArpError::NotArp);
        }
        let payload = &frame[ETH_HEADER_LEN..];
        // The fixed part (8 bytes) names the address sizes; etherparse
        // checks the variable part against them.
        if payload.len() < 8 {
            return Err(ArpError::Truncated);
        }
        let hw = u16::from_be_bytes([payload[0], payload[1]]);
        let proto = u16::from_be_bytes([payload[2], payload[3]]);
        if hw != ArpHardwareId::ETHERNET.0 || payload[4] != 6 {
            return Err(ArpError::UnsupportedHardware);
        }
        if proto != EtherType::IPV4.0 || payload[5] != 4 {
            return Err(ArpError::UnsupportedProtocol);
        }
        let arp = ArpPacketSlice::from_slice(payload).map_err(|_| ArpError::Truncated)?;
        let op = match arp.operation() {
            ArpOperation::REQUEST => ArpOp::Request,
            ArpOperation::REPLY => ArpOp::Reply,
            _ => return Err(ArpError::UnsupportedOperation),
        };
        let eth_src = MacAddr(eth.source());
        let sender_mac = MacAddr(six(arp.sender_hw_addr()));
        // A group or all-zero address is no station: learning it would
        // send unicast traffic to a multicast group or into the void.
        if sender_mac.is_multicast()
            || sender_mac == MacAddr::ZERO
            || eth_src.is_multicast()
            || eth_src == MacAddr::ZERO
        {
            return Err(ArpError::InvalidSenderMac);
        }
        Ok(ArpRepr {
            eth_dst: MacAddr(eth.destination()),
            eth_src,
            op,
            sender_mac,
            sender_ip: Ipv4Addr::from(four(arp.sender_protocol_addr())),
            target_mac: MacAddr(six(arp.target_hw_addr())),
            target_ip: Ipv4Addr::from(four(arp.target_protocol_addr())),
        })
    }

    /// A request asking who has `target_ip`, from `mac`/`ip`. Broadcast
    /// when `unicast` is `None`; sent straight to the known MAC when
    /// re-verifying a stale entry (Linux's unicast probe). THA is zero, as
    /// Linux sends it.
    pub fn request(
        mac: MacAddr,
        ip: Ipv4Addr,
        target_ip: Ipv4Addr,
        unicast: Option<MacAddr>,
    ) -> ArpRepr {
        ArpRepr {
            eth_dst: unicast.unwrap_or(MacAddr::BROADCAST),
            eth_src: mac,
            op: ArpOp::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// The reply to this request, saying its target address is at `mac`.
    /// Sent unicast to the requester's SHA (not the Ethernet source, which
    /// a bridge or proxy may have rewritten), as Linux does. For an RFC 5227
    /// probe (SPA 0.0.0.0) the reply's TPA is 0.0.0.0, again as Linux.
    pub fn reply_to(&self, mac: MacAddr) -> ArpRepr {
        ArpRepr {
            eth_dst: self.sender_mac,
            eth_src: mac,
            op: ArpOp::Reply,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    /// A broadcast gratuitous ARP announcing that `ip` is at `mac`.
    pub fn gratuitous(mac: MacAddr, ip: Ipv4Addr, form: GarpForm) -> ArpRepr {
        let (op, target_mac) = match form {
            GarpForm::Request => (ArpOp::Request, MacAddr::BROADCAST),
            GarpForm::Reply => (ArpOp::Reply, mac),
        };
        ArpRepr {
            eth_dst: MacAddr::BROADCAST,
            eth_src: mac,
            op,
            sender_mac: mac,
            sender_ip: ip,
            target_mac,
            target_ip: ip,
        }
    }

    /// An RFC 5227 probe (request with SPA 0.0.0.0): someone checking
    /// whether an address is free before using it.
    pub fn is_probe(&self) -> bool {
        self.op == ArpOp::Request && self.sender_ip.is_unspecified()
    }

    /// A gratuitous ARP / announcement (SPA = TPA, either opcode): the
    /// sender telling everyone where its address is.
    pub fn is_gratuitous(&self) -> bool {
        !self.sender_ip.is_unspecified() && self.sender_ip == self.target_ip
    }

    /// The frame as bytes: 42 bytes of header and ARP, zero-padded to 60.
    pub fn emit(&self) -> ArpFrame {
        let mut f = [0u8; ARP_FRAME_LEN];
        let eth = Ethernet2Header {
            source: self.eth_src.0,
            destination: self.eth_dst.0,
            ether_type: EtherType::ARP,
        };
        let arp = ArpEthIpv4Packet {
            operation: self.op.to_wire(),
            sender_mac: self.sender_mac.0,
            sender_ipv4: self.sender_ip.octets(),
            target_mac: self.target_mac.0,
            target_ipv4: self.target_ip.octets(),
        };
        f[..ETH_HEADER_LEN].copy_from_slice(&eth.to_bytes());
        f[ETH_HEADER_LEN..ETH_HEADER_LEN + ARP_LEN].copy_from_slice(&arp.to_bytes());
        ArpFrame(f)
    }

    /// Writes the 60-byte frame into the front of `buf` (a TX ring slot)
    /// and returns its length.
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize, BufferTooShort> {
        let out = buf.get_mut(..ARP_FRAME_LEN).ok_or(BufferTooShort)?;
        out.copy_from_slice(&self.emit().0);
        Ok(ARP_FRAME_LEN)
    }
}

/// The caller's buffer cannot hold a 60-byte frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer shorter than the {ARP_FRAME_LEN}-byte ARP frame")]
pub struct BufferTooShort;

/// A complete Ethernet frame carrying ARP, ready to transmit as is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpFrame(pub [u8; ARP_FRAME_LEN]);

impl ArpFrame {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses the frame back (tests and logging).
    pub fn repr(&self) -> ArpRepr {
        // Emitted frames always parse unless built with a group sender MAC,
        // which the constructors never do; fall back to a plain decode so
        // this stays total.
        ArpRepr::parse(&self.0).unwrap_or_else(|_| decode_unchecked(&self.0))
    }
}

impl AsRef<[u8]> for ArpFrame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ArpFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.repr();
        write!(
            f,
            "ArpFrame({:?} {} is-at/who-has {} -> {} ({}))",
            r.op, r.sender_ip, r.sender_mac, r.target_ip, r.eth_dst
        )
    }
}

fn decode_unchecked(f: &[u8; ARP_FRAME_LEN]) -> ArpRepr {
    let a = &f[ETH_HEADER_LEN..];
    ArpRepr {
        eth_dst: MacAddr(six(&f[0..6])),
        eth_src: MacAddr(six(&f[6..12])),
        op: if a[7] == 2 {
            ArpOp::Reply
        } else {
            ArpOp::Request
        },
        sender_mac: MacAddr(six(&a[8..14])),
        sender_ip: Ipv4Addr::from(four(&a[14..18])),
        target_mac: MacAddr(six(&a[18..24])),
        target_ip: Ipv4Addr::from(four(&a[24..28])),
    }
}

fn six(b: &[u8]) -> [u8; 6] {
    let mut out = [0u8; 6];
    out.copy_from_slice(&b[..6]);
    out
}

fn four(b: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(&b[..4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const CLIENT: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const US: MacAddr = MacAddr([0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc]);

    // who-has 192.0.2.10 tell 192.0.2.1, as tcpdump captures it (42 bytes,
    // no padding: captured on the sending host before the NIC pads).
    const REQUEST: &str = "ffffffffffff 525400123456 0806
        0001 0800 06 04 0001 525400123456 c0000201 000000000000 c000020a";

    #[test]
    fn parse_request_fixture() {
        let r = ArpRepr::parse(&hex(REQUEST)).unwrap();
        assert_eq!(r.eth_dst, MacAddr::BROADCAST);
        assert_eq!(r.eth_src, CLIENT);
        assert_eq!(r.op, ArpOp::Request);
        assert_eq!(r.sender_mac, CLIENT);
        assert_eq!(r.sender_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(r.target_mac, MacAddr::ZERO);
        assert_eq!(r.target_ip, Ipv4Addr::new(192, 0, 2, 10));
        assert!(!r.is_probe() && !r.is_gratuitous());
    }

    #[test]
    fn emit_reply_fixture() {
        let r = ArpRepr::parse(&hex(REQUEST)).unwrap().reply_to(US);
        let want = hex("525400123456 020000aabbcc 0806
             0001 0800 06 04 0002 020000aabbcc c000020a 525400123456 c0000201
             000000000000000000000000000000000000");
        assert_eq!(r.emit().as_bytes(), &want[..]);
        let mut buf = [0xeeu8; 64];
        assert_eq!(r.emit_into(&mut buf), Ok(60));
        assert_eq!(&buf[..60], &want[..]);
        assert_eq!(buf[60], 0xee, "nothing written past the frame");
        assert_eq!(r.emit_into(&mut [0u8; 59]), Err(BufferTooShort));
    }

    #[test]
    fn rejects_with_named_reasons() {
        let good = hex(REQUEST);
        let with = |i: usize, b: u8| {
            let mut f = good.clone();
            f[i] = b;
            f
        };
        let cases: [(Vec<u8>, ArpError); 9] = [
            (good[..13].to_vec(), ArpError::FrameTooShort),
            (with(13, 0x00), ArpError::NotArp),
            (good[..20].to_vec(), ArpError::Truncated),
            (good[..41].to_vec(), ArpError::Truncated),
            (with(15, 6), ArpError::UnsupportedHardware),
            (with(18, 16), ArpError::UnsupportedHardware),
            (with(16, 0x86), ArpError::UnsupportedProtocol),
            (with(21, 3), ArpError::UnsupportedOperation),
            (with(22, 0x01), ArpError::InvalidSenderMac),
        ];
        for (frame, want) in cases {
            assert_eq!(ArpRepr::parse(&frame), Err(want), "{want:?}");
        }
    }
}
