//! The TPACKET_V2 frame slot layout, parsed from a plain byte slice.
//!
//! A V2 ring is an array of fixed-size frame slots. The kernel writes one
//! frame into the slot at its head, flips that slot's status to USER and
//! wakes the socket at once (no block, no retire timer: the latency of a
//! V3 ring at low rates is gone). User space consumes slots in order and
//! gives each back by writing KERNEL into its status. `afpacket.rs` hands
//! over a run of consecutive USER slots as one `&mut [u8]`; this module
//! lends each slot's frame from it, so the walk is safe code and tests
//! build fake slots in a `Vec`.
//!
//! ```text
//! slot i at i × frame_size (frames never straddle blocks: the ring is
//! built with block_size a multiple of frame_size):
//!   struct tpacket2_hdr
//!   +0  tp_status        +4  tp_len        +8  tp_snaplen
//!   +12 tp_mac (u16)     +14 tp_net (u16)  +16 tp_sec     +20 tp_nsec
//!   +24 tp_vlan_tci (u16) +26 tp_vlan_tpid (u16) +28 padding
//!   ... struct sockaddr_ll ... frame bytes at slot + tp_mac, tp_snaplen long
//! ```
//!
//! A frame longer than its slot is truncated by the kernel (`tp_snaplen <
//! tp_len`, [`FrameMeta::truncated`]). A slot whose header points outside
//! it is skipped and counted; the walk goes on with the next slot.

use super::tpacket::{FrameMeta, RxFrame, rd_u16, rd_u32};
use super::vnet::{VNET_HDR_LEN, VnetHdr};

/// Offsets in `tpacket2_hdr`.
pub(crate) mod hdr {
    pub(crate) const STATUS: usize = 0;
    pub(crate) const LEN: usize = 4;
    pub(crate) const SNAPLEN: usize = 8;
    pub(crate) const MAC: usize = 12;
    pub(crate) const SEC: usize = 16;
    pub(crate) const NSEC: usize = 20;
    pub(crate) const VLAN_TCI: usize = 24;
    pub(crate) const VLAN_TPID: usize = 26;
    /// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`.
    pub(crate) const SIZE: usize = 32;
}

/// The frames of a run of handed-over slots, one per slot.
#[derive(Debug)]
pub(crate) struct SlotFrames<'a> {
    slots: std::slice::ChunksExactMut<'a, u8>,
    malformed: bool,
    /// Incremented per skipped slot (a socket's counter).
    malformed_counter: Option<&'a mut u64>,
    /// Each frame is preceded by a virtio-net header.
    pub(crate) vnet: bool,
}

impl<'a> SlotFrames<'a> {
    /// Walks `slots`, consecutive slots of `frame_size` bytes (a trailing
    /// partial slot is ignored).
    pub(crate) fn new(
        slots: &'a mut [u8],
        frame_size: usize,
        counter: Option<&'a mut u64>,
    ) -> SlotFrames<'a> {
        SlotFrames {
            slots: slots.chunks_exact_mut(frame_size.max(hdr::SIZE)),
            malformed: false,
            malformed_counter: counter,
            vnet: false,
        }
    }

    pub(crate) fn malformed(&self) -> bool {
        self.malformed
    }

    pub(crate) fn remaining(&self) -> u32 {
        self.slots.len() as u32
    }

    fn count_malformed(&mut self) {
        self.malformed = true;
        if let Some(c) = self.malformed_counter.as_deref_mut() {
            *c += 1;
        }
    }
}

impl<'a> Iterator for SlotFrames<'a> {
    type Item = RxFrame<'a>;

    fn next(&mut self) -> Option<RxFrame<'a>> {
        loop {
            let slot = self.slots.next()?;
            let (h, _) = slot.split_at(hdr::SIZE);
            let status = rd_u32(h, hdr::STATUS);
            let snap = rd_u32(h, hdr::SNAPLEN);
            let mac = usize::from(rd_u16(h, hdr::MAC));
            let meta = FrameMeta::from_header(
                status,
                rd_u32(h, hdr::LEN),
                snap,
                (rd_u32(h, hdr::SEC), rd_u32(h, hdr::NSEC)),
                (rd_u16(h, hdr::VLAN_TCI), rd_u16(h, hdr::VLAN_TPID)),
            );
            let end = mac.checked_add(snap as usize);
            let room = if self.vnet { VNET_HDR_LEN } else { 0 };
            match end {
                Some(end) if mac >= hdr::SIZE + room && end <= slot.len() => {
                    let mut meta = meta;
                    if self.vnet {
                        meta.vnet = Some(VnetHdr::parse(&slot[mac - room..mac]));
                    }
                    return Some(RxFrame {
                        data: &mut slot[mac..end],
                        meta,
                    });
                }
                _ => self.count_malformed(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.slots.len()))
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! Builds slots the way the kernel lays them out.

    use super::hdr;

    /// Where the kernel puts the MAC header with no reserve:
    /// TPACKET_ALIGN(TPACKET2_HDRLEN + 16) − 14, TPACKET2_HDRLEN = 32 + 20.
    pub(crate) const MAC_OFF: usize = 80 - 14;

    fn wr32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn wr16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
    }

    /// `frames.len()` slots of `frame_size` bytes, each handed to user
    /// space, holding the frames (cut to the slot like the kernel does;
    /// `wire_len` is the length before the cut) with `status` bits.
    pub(crate) fn slots(frame_size: usize, frames: &[(&[u8], u32)]) -> Vec<u8> {
        let mut b = vec![0xaau8; frame_size * frames.len()];
        for (i, (bytes, status)) in frames.iter().enumerate() {
            let s = &mut b[i * frame_size..(i + 1) * frame_size];
            s[..hdr::SIZE].fill(0);
            let snap = bytes.len().min(frame_size - MAC_OFF);
            wr32(s, hdr::STATUS, crate::io::sys::TP_STATUS_USER | status);
            wr32(s, hdr::LEN, bytes.len() as u32);
            wr32(s, hdr::SNAPLEN, snap as u32);
            wr16(s, hdr::MAC, MAC_OFF as u16);
            wr16(s, hdr::MAC + 2, (MAC_OFF + 14) as u16);
            wr32(s, hdr::SEC, 2000 + i as u32);
            wr32(s, hdr::NSEC, 5);
            wr16(s, hdr::VLAN_TCI, 0x0007);
            wr16(s, hdr::VLAN_TPID, 0x88a8);
            s[MAC_OFF..MAC_OFF + snap].copy_from_slice(&bytes[..snap]);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{MAC_OFF, slots};
    use super::*;
    use crate::forward::L4Csum;
    use crate::io::tpacket::{Frames, status};

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn walks_every_slot_with_its_bytes_and_metadata() {
        let (a, b, c) = (frame(1, 60), frame(2, 1514), frame(3, 42));
        let vlan = status::VLAN_VALID | status::VLAN_TPID_VALID;
        let mut ring = slots(
            2048,
            &[
                (&a, 0),
                (&b, status::CSUMNOTREADY | vlan),
                (&c, status::CSUM_VALID | status::LOSING),
            ],
        );
        let mut frames = Frames::slots(&mut ring, 2048, None);
        assert_eq!(frames.remaining(), 3);
        let got: Vec<(Vec<u8>, FrameMeta)> =
            frames.by_ref().map(|f| (f.data.to_vec(), f.meta)).collect();
        assert!(!frames.malformed());
        assert_eq!(got.len(), 3);
        assert_eq!((&got[0].0, &got[1].0, &got[2].0), (&a, &b, &c));

        let m0 = got[0].1;
        assert_eq!(m0.l4_csum(), L4Csum::Verify);
        assert_eq!((m0.vlan, m0.truncated(), m0.losing), (None, false, false));
        assert_eq!((m0.ts_sec, m0.ts_nsec, m0.wire_len), (2000, 5, 60));
        let m1 = got[1].1;
        assert_eq!(m1.l4_csum(), L4Csum::Partial);
        let v = m1.vlan.unwrap();
        assert_eq!((v.tci, v.tpid, v.id()), (7, 0x88a8, 7));
        let m2 = got[2].1;
        assert_eq!(m2.l4_csum(), L4Csum::Skip);
        assert!(m2.losing && !m2.truncated());
    }

    #[test]
    fn a_frame_longer_than_its_slot_is_truncated() {
        let big = frame(4, 1514);
        let mut ring = slots(256, &[(&big, 0), (&big[..100], 0)]);
        let got: Vec<_> = Frames::slots(&mut ring, 256, None)
            .map(|f| (f.data.to_vec(), f.meta))
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].1.truncated());
        assert_eq!(
            (got[0].1.wire_len, got[0].1.snap_len),
            (1514, (256 - MAC_OFF) as u32)
        );
        assert_eq!(got[0].0, big[..256 - MAC_OFF]);
        assert!(!got[1].1.truncated());
        assert_eq!(got[1].0, big[..100]);
    }

    #[test]
    fn frames_are_writable_in_place() {
        let a = frame(9, 64);
        let mut ring = slots(512, &[(&a, 0), (&a, 0)]);
        for f in Frames::slots(&mut ring, 512, None) {
            f.data[..6].copy_from_slice(&[0xee; 6]);
        }
        for k in 0..2 {
            let at = k * 512 + MAC_OFF;
            assert_eq!(&ring[at..at + 6], &[0xee; 6]);
            assert_eq!(&ring[at + 6..at + 64], &a[6..]);
        }
    }

    #[test]
    fn a_corrupt_slot_is_skipped_and_counted() {
        let a = frame(1, 100);
        let good = slots(512, &[(&a, 0), (&a, 0), (&a, 0)]);

        // Snap length past the slot, MAC offset inside the header, and a
        // MAC offset + snap length that would overflow.
        let bad: [(usize, u32); 3] = [
            (hdr::SNAPLEN, 100_000),
            (hdr::MAC, 4),
            (hdr::SNAPLEN, u32::MAX),
        ];
        for (field, value) in bad {
            let mut b = good.clone();
            if field == hdr::MAC {
                b[512 + field..512 + field + 2].copy_from_slice(&(value as u16).to_ne_bytes());
            } else {
                b[512 + field..512 + field + 4].copy_from_slice(&value.to_ne_bytes());
            }
            let mut counter = 0u64;
            let n = {
                let mut fr = Frames::slots(&mut b, 512, Some(&mut counter));
                let n = fr.by_ref().count();
                assert!(fr.malformed());
                n
            };
            assert_eq!((n, counter), (2, 1), "field {field}");
        }

        // A trailing partial slot is not a frame.
        let mut b = good.clone();
        b.truncate(512 * 2 + 100);
        assert_eq!(Frames::slots(&mut b, 512, None).count(), 2);
    }

    #[test]
    fn a_virtio_net_header_is_read_from_in_front_of_each_frame() {
        use crate::io::vnet::{F_NEEDS_CSUM, GSO_TCPV4};
        let a = frame(1, 100);
        let mut ring = slots(512, &[(&a, 0), (&a, 0)]);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        ring[MAC_OFF - VNET_HDR_LEN..MAC_OFF].copy_from_slice(&hdr.to_bytes());
        let second = 512 + MAC_OFF;
        ring[second - VNET_HDR_LEN..second].copy_from_slice(&VnetHdr::NONE.to_bytes());
        let got: Vec<_> = Frames::slots(&mut ring, 512, None)
            .with_vnet(true)
            .map(|f| (f.data.to_vec(), f.meta))
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, a);
        assert_eq!(got[0].1.vnet, Some(hdr));
        assert_eq!(got[0].1.gso(), Some(hdr));
        assert_eq!(got[0].1.l4_csum(), L4Csum::Offload { gso_size: 1448 });
        // The second slot's header is all zero: a plain frame.
        assert_eq!(got[1].1.vnet, Some(VnetHdr::NONE));
        assert_eq!(got[1].1.gso(), None);
        // A slot the kernel marked COPY: the whole frame is queued.
        let mut copied = slots(512, &[(&a, status::COPY)]);
        let m = Frames::slots(&mut copied, 512, None).next().unwrap().meta;
        assert!(m.copied);
        assert!(!got[0].1.copied);

        // Without the option nothing is read.
        let plain: Vec<_> = Frames::slots(&mut ring, 512, None)
            .map(|f| f.meta.vnet)
            .collect();
        assert_eq!(plain, vec![None, None]);

        // A MAC offset that leaves no room for the header is malformed.
        let mut bad = ring.clone();
        let mac = (hdr::SIZE + 4) as u16;
        bad[hdr::MAC..hdr::MAC + 2].copy_from_slice(&mac.to_ne_bytes());
        let mut counter = 0u64;
        let n = Frames::slots(&mut bad, 512, Some(&mut counter))
            .with_vnet(true)
            .count();
        assert_eq!((n, counter), (1, 1));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let a = frame(1, 70);
        let good = slots(256, &[(&a, 0), (&a, 0), (&a, 0)]);
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut b = good.clone();
            let pos = (seed as usize % (b.len() / 2)) * 2;
            b[pos..pos + 2].copy_from_slice(&(seed as u16).to_ne_bytes());
            let total: usize = Frames::slots(&mut b, 256, None).map(|f| f.data.len()).sum();
            assert!(total <= b.len());
        }
    }
}
