//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that an
//! AF_PACKET socket with `PACKET_VNET_HDR` puts in front of every frame it
//! hands over, and expects in front of every frame it is given.
//!
//! It is how a userspace dataplane keeps the kernel's offloads on: a
//! receive ring then sees GRO/TSO "super-frames" of up to 64 KiB together
//! with their segment size, and a send can hand the kernel such a frame
//! back with the same segment size (GSO: the kernel, or the next veth's
//! receiver, cuts it) and with its L4 checksum left for the kernel to
//! complete (`NEEDS_CSUM`). One frame then carries what would otherwise
//! be 40-odd frames, each copied, classified and sent on its own.
//!
//! ```text
//! +0 flags (NEEDS_CSUM 1, DATA_VALID 2)   +1 gso_type (NONE 0, TCPV4 1,
//!    UDP 3, TCPV6 4, UDP_L4 5; | ECN 0x80)  +2 hdr_len  +4 gso_size
//! +6 csum_start  +8 csum_offset            (u16s in host byte order)
//! ```

/// Bytes of the header.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum holds the pseudo-header
/// sum; the checksum of `frame[csum_start..]` goes at `csum_start +
/// csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN`: or'ed into the type (segments carry CWR).
pub const GSO_ECN: u8 = 0x80;

/// One parsed header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// The GSO type, `GSO_ECN` included; 0 for a plain frame.
    pub gso_type: u8,
    /// Bytes of headers (Ethernet to the end of TCP) a segment repeats.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS); 0 for a plain frame.
    pub gso_size: u16,
    /// Where the checksummed part starts (frame offset).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// No offload: a complete frame sent as it is.
    pub const NONE: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header from its 10 bytes (shorter input reads as none).
    pub fn parse(b: &[u8]) -> VnetHdr {
        let Some(b) = b.get(..VNET_HDR_LEN) else {
            return VnetHdr::NONE;
        };
        let u = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// A GSO super-frame (to be cut into `gso_size` segments).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != 0
    }

    /// For an IPv4 TCP/UDP frame whose L4 checksum holds the pseudo-header
    /// sum: `NEEDS_CSUM` at that checksum, with this header's GSO type and
    /// size. `ip_at` is where the IPv4 header starts (14, or 34 behind a
    /// TUN prefix). `None` if the frame is not IPv4 TCP/UDP.
    pub fn partial_at(self, frame: &[u8], ip_at: usize) -> Option<VnetHdr> {
        let ihl = usize::from(frame.get(ip_at)? & 0x0f) * 4;
        let l4 = ip_at + ihl;
        let (csum_offset, l4_hdr) = match frame.get(ip_at + 9)? {
            6 => (16, usize::from(frame.get(l4 + 12)? >> 4) * 4),
            17 => (6, 8),
            _ => return None,
        };
        Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: self.gso_type,
            hdr_len: u16::try_from(l4 + l4_hdr).ok()?,
            gso_size: self.gso_size,
            csum_start: u16::try_from(l4).ok()?,
            csum_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_bytes() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        assert!(h.is_gso());
        assert!(!VnetHdr::NONE.is_gso());
        assert_eq!(VnetHdr::parse(&[1, 2, 3]), VnetHdr::NONE);
    }

    #[test]
    fn partial_at_points_at_the_l4_checksum() {
        // Ethernet + IPv4 with 4 bytes of options + TCP with doff 8.
        let mut f = vec![0u8; 14 + 24 + 32];
        f[14] = 0x46;
        f[14 + 9] = 6;
        f[14 + 24 + 12] = 8 << 4;
        let gso = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            ..VnetHdr::NONE
        };
        let h = gso.partial_at(&f, 14).unwrap();
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset),
            (F_NEEDS_CSUM, 38, 16)
        );
        assert_eq!((h.hdr_len, h.gso_type, h.gso_size), (70, GSO_TCPV4, 1000));
        f[14 + 9] = 17;
        let h = VnetHdr::NONE.partial_at(&f, 14).unwrap();
        assert_eq!((h.csum_start, h.csum_offset, h.hdr_len), (38, 6, 46));
        f[14 + 9] = 1;
        assert_eq!(VnetHdr::NONE.partial_at(&f, 14), None);
        assert_eq!(VnetHdr::NONE.partial_at(&f[..10], 14), None);
    }
}
