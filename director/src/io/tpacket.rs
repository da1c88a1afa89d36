//! The TPACKET_V3 block layout, parsed from a plain byte slice.
//!
//! The kernel fills a block of the RX ring with frames and then hands the
//! whole block to user space ("retires" it: when full, or when the retire
//! timer fires). This module walks one handed-over block and lends each
//! frame as a disjoint `&mut [u8]`, carved with `split_at_mut` from the
//! block's slice, so the only unsafe code of the receive path is making
//! that one slice (in `afpacket.rs`). Tests build fake blocks in a `Vec`.
//!
//! ```text
//! block:  struct tpacket_block_desc (version, offset_to_priv, tpacket_hdr_v1)
//!   +0  version          +4  offset_to_priv
//!   +8  block_status     +12 num_pkts      +16 offset_to_first_pkt
//!   +20 blk_len          +24 seq_num (u64) +32 ts_first, +40 ts_last
//! frame at offset_to_first_pkt, then each tp_next_offset further:
//!   struct tpacket3_hdr
//!   +0  tp_next_offset   +4  tp_sec        +8  tp_nsec
//!   +12 tp_snaplen       +16 tp_len        +20 tp_status
//!   +24 tp_mac (u16)     +26 tp_net (u16)
//!   +28 tp_rxhash        +32 tp_vlan_tci   +36 tp_vlan_tpid (u16)
//!   ... struct sockaddr_ll ... frame bytes at hdr + tp_mac, tp_snaplen long
//! ```
//!
//! The walk trusts nothing: a frame whose header or bytes would fall
//! outside the block, or overlap the previous frame's, ends the walk and
//! is counted as malformed.
//!
//! [`Frames`] and [`FrameMeta`] are shared with the TPACKET_V2 ring
//! (`tpacket2.rs`), whose frames are walked slot by slot instead.

use super::tpacket2::SlotFrames;
use super::vnet::{VNET_HDR_LEN, VnetHdr};
use crate::forward::L4Csum;

/// Offsets in `tpacket_block_desc`.
pub(crate) mod block {
    pub(crate) const STATUS: usize = 8;
    pub(crate) const NUM_PKTS: usize = 12;
    pub(crate) const FIRST: usize = 16;
    pub(crate) const BLK_LEN: usize = 20;
    pub(crate) const SEQ: usize = 24;
    /// Size of the descriptor (the kernel aligns the first frame past it).
    pub(crate) const LEN: usize = 48;
}

/// Offsets in `tpacket3_hdr`.
pub(crate) mod hdr {
    pub(crate) const NEXT: usize = 0;
    pub(crate) const SEC: usize = 4;
    pub(crate) const NSEC: usize = 8;
    pub(crate) const SNAPLEN: usize = 12;
    pub(crate) const LEN: usize = 16;
    pub(crate) const STATUS: usize = 20;
    pub(crate) const MAC: usize = 24;
    pub(crate) const VLAN_TCI: usize = 32;
    pub(crate) const VLAN_TPID: usize = 36;
    /// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`.
    pub(crate) const SIZE: usize = 48;
}

/// `tp_status` bits of a frame.
pub(crate) mod status {
    /// Too big for its slot: the whole frame waits in the socket's queue.
    pub(crate) const COPY: u32 = 1 << 1;
    /// The ring was full and frames were lost before this one.
    pub(crate) const LOSING: u32 = 1 << 2;
    /// CHECKSUM_PARTIAL: the L4 checksum holds only the pseudo-header sum.
    pub(crate) const CSUMNOTREADY: u32 = 1 << 3;
    pub(crate) const VLAN_VALID: u32 = 1 << 4;
    pub(crate) const VLAN_TPID_VALID: u32 = 1 << 6;
    /// The checksum was verified (by the NIC or the stack).
    pub(crate) const CSUM_VALID: u32 = 1 << 7;
}

/// An 802.1Q tag the kernel removed from the frame (VLAN offload), as
/// `tpacket3_hdr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// Priority, DEI and VLAN id.
    pub tci: u16,
    /// The tag's protocol (0x8100, 0x88a8); 0x8100 when the kernel did
    /// not say.
    pub tpid: u16,
}

impl VlanTag {
    /// The 12-bit VLAN id.
    pub fn id(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// What the kernel says about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Length of the frame on the wire. Larger than the lent bytes when
    /// the frame was truncated to the ring (see [`FrameMeta::truncated`]).
    pub wire_len: u32,
    /// Receive time, seconds and nanoseconds (CLOCK_REALTIME).
    pub ts_sec: u32,
    /// Nanoseconds of the receive time.
    pub ts_nsec: u32,
    /// `TP_STATUS_CSUMNOTREADY`: the sender's checksum offload left the L4
    /// checksum partial (typical on veth with tx offload on).
    pub csum_not_ready: bool,
    /// `TP_STATUS_CSUM_VALID`: the checksum was already verified.
    pub csum_valid: bool,
    /// The VLAN tag the kernel stripped, if any.
    pub vlan: Option<VlanTag>,
    /// `TP_STATUS_LOSING`: the ring dropped frames before this one.
    pub losing: bool,
    /// `TP_STATUS_COPY`: the frame did not fit its slot (a merged frame
    /// with offloads on), and the whole of it waits in the socket's queue
    /// (see [`RxConfig::oversize_queue`](super::RxConfig::oversize_queue)):
    /// read it with [`OversizeReader::read`](super::OversizeReader::read).
    pub copied: bool,
    /// Bytes lent (tp_snaplen).
    pub snap_len: u32,
    /// The virtio-net header in front of the frame, on a socket opened
    /// with [`RxConfig::vnet_hdr`](super::RxConfig::vnet_hdr) (GSO type
    /// and segment size of a merged frame); `None` otherwise.
    pub vnet: Option<VnetHdr>,
}

impl FrameMeta {
    /// From a frame header's fields (V2 and V3 share the status bits):
    /// `ts` is (sec, nsec), `vlan` is (tci, tpid).
    #[inline]
    pub(crate) fn from_header(
        status: u32,
        wire_len: u32,
        snap_len: u32,
        ts: (u32, u32),
        vlan: (u16, u16),
    ) -> FrameMeta {
        FrameMeta {
            wire_len,
            ts_sec: ts.0,
            ts_nsec: ts.1,
            csum_not_ready: status & status::CSUMNOTREADY != 0,
            csum_valid: status & status::CSUM_VALID != 0,
            vlan: (status & status::VLAN_VALID != 0).then_some(VlanTag {
                tci: vlan.0,
                tpid: if status & status::VLAN_TPID_VALID != 0 {
                    vlan.1
                } else {
                    0x8100
                },
            }),
            losing: status & status::LOSING != 0,
            copied: status & status::COPY != 0,
            snap_len,
            vnet: None,
        }
    }

    /// The checksum policy for `forward::classify`: on a socket with
    /// virtio-net headers (offloads on), a merged frame or a partial
    /// checksum goes on for the kernel to cut and complete; otherwise
    /// partial checksums are completed; verified ones are trusted, the
    /// rest verified.
    pub fn l4_csum(&self) -> L4Csum {
        match self.vnet {
            Some(v) if v.is_gso() => {
                return L4Csum::Offload {
                    gso_size: v.gso_size,
                };
            }
            Some(_) if self.csum_not_ready => return L4Csum::Offload { gso_size: 0 },
            _ => {}
        }
        if self.csum_not_ready {
            L4Csum::Partial
        } else if self.csum_valid {
            L4Csum::Skip
        } else {
            L4Csum::Verify
        }
    }

    /// Longer than an interface with this MTU can carry: a GSO/GRO
    /// "super-frame" (up to 64 KiB) handed over by a veth or NIC with
    /// offloads on. It cannot be forwarded as one frame (the send fails
    /// with EMSGSIZE); drop it, or turn the offloads off.
    pub fn exceeds_mtu(&self, mtu: u32) -> bool {
        self.wire_len > mtu.saturating_add(14)
    }

    /// A GSO/GRO super-frame handed over with its segment size (on a
    /// socket with `vnet_hdr`): it can be sent on whole with that size.
    pub fn gso(&self) -> Option<VnetHdr> {
        self.vnet.filter(VnetHdr::is_gso)
    }

    /// The frame did not fit the ring's frame limit (or the filter's snap
    /// length): the lent bytes are only its start. Never forward it.
    pub fn truncated(&self) -> bool {
        self.wire_len > self.snap_len
    }
}

/// One received frame, lent from the ring until its block is released.
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The frame from its Ethernet header on, writable in place.
    pub data: &'a mut [u8],
    /// What the kernel says about it.
    pub meta: FrameMeta,
}

pub(crate) fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

pub(crate) fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// What a block's descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub num_pkts: u32,
    pub first: u32,
    pub blk_len: u32,
    pub seq: u64,
}

impl BlockHeader {
    /// Reads the descriptor; `None` if the block is shorter than one.
    pub(crate) fn parse(block: &[u8]) -> Option<BlockHeader> {
        if block.len() < block::LEN {
            return None;
        }
        let seq_lo = u64::from(rd_u32(block, block::SEQ));
        let seq_hi = u64::from(rd_u32(block, block::SEQ + 4));
        let seq = if cfg!(target_endian = "little") {
            seq_lo | (seq_hi << 32)
        } else {
            (seq_lo << 32) | seq_hi
        };
        Some(BlockHeader {
            num_pkts: rd_u32(block, block::NUM_PKTS),
            first: rd_u32(block, block::FIRST),
            blk_len: rd_u32(block, block::BLK_LEN),
            seq,
        })
    }
}

/// The frames of one handed-over batch (a V3 block, or a run of V2
/// slots), in order; each a disjoint `&mut` slice.
#[derive(Debug)]
pub struct Frames<'a>(Walk<'a>);

#[derive(Debug)]
enum Walk<'a> {
    Block(BlockFrames<'a>),
    Slots(SlotFrames<'a>),
}

impl<'a> Frames<'a> {
    /// Walks a V3 `block` (a whole block, descriptor included).
    #[cfg(test)]
    pub(crate) fn new(block: &'a mut [u8]) -> Frames<'a> {
        Self::counted(block, None)
    }

    /// As [`Frames::new`], adding 1 to `counter` if the walk stops early.
    pub(crate) fn counted(block: &'a mut [u8], counter: Option<&'a mut u64>) -> Frames<'a> {
        Frames(Walk::Block(BlockFrames::new(block, counter)))
    }

    /// Walks consecutive V2 frame slots of `frame_size` bytes each, adding
    /// 1 to `counter` per slot that makes no sense (it is skipped).
    pub(crate) fn slots(
        slots: &'a mut [u8],
        frame_size: usize,
        counter: Option<&'a mut u64>,
    ) -> Frames<'a> {
        Frames(Walk::Slots(SlotFrames::new(slots, frame_size, counter)))
    }

    /// Each frame is preceded by a virtio-net header (the socket has
    /// `PACKET_VNET_HDR`): read it into [`FrameMeta::vnet`].
    pub(crate) fn with_vnet(mut self, on: bool) -> Frames<'a> {
        match &mut self.0 {
            Walk::Block(b) => b.vnet = on,
            Walk::Slots(s) => s.vnet = on,
        }
        self
    }

    /// Whether the walk met a malformed frame (V3: and stopped there).
    pub fn malformed(&self) -> bool {
        match &self.0 {
            Walk::Block(b) => b.malformed(),
            Walk::Slots(s) => s.malformed(),
        }
    }

    /// Frames not yet returned, as the kernel counts them.
    pub fn remaining(&self) -> u32 {
        match &self.0 {
            Walk::Block(b) => b.remaining(),
            Walk::Slots(s) => s.remaining(),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = RxFrame<'a>;

    #[inline]
    fn next(&mut self) -> Option<RxFrame<'a>> {
        match &mut self.0 {
            Walk::Block(b) => b.next(),
            Walk::Slots(s) => s.next(),
        }
    }
}

/// The walk over one TPACKET_V3 block's frame chain.
#[derive(Debug)]
pub(crate) struct BlockFrames<'a> {
    /// The not yet lent tail of the block, starting at block offset `base`.
    rest: &'a mut [u8],
    base: usize,
    /// Offset of the next frame header, or `None` when done.
    next: Option<usize>,
    left: u32,
    /// Set when the walk stopped at a frame that made no sense.
    malformed: bool,
    /// Incremented once if the walk stops early (a socket's counter).
    malformed_counter: Option<&'a mut u64>,
    /// Each frame is preceded by a virtio-net header.
    vnet: bool,
}

impl<'a> BlockFrames<'a> {
    /// Walks `block` (a whole block, descriptor included), adding 1 to
    /// `counter` if the walk stops early.
    pub(crate) fn new(block: &'a mut [u8], counter: Option<&'a mut u64>) -> BlockFrames<'a> {
        let (next, left, limit) = match BlockHeader::parse(block) {
            Some(h) => (
                Some(h.first as usize),
                h.num_pkts,
                (h.blk_len as usize).min(block.len()),
            ),
            None => (None, 0, 0),
        };
        let malformed = next.is_none();
        // Bytes past blk_len were not written by the kernel for this block.
        let (block, _) = block.split_at_mut(limit);
        let mut f = BlockFrames {
            rest: block,
            base: 0,
            next,
            left,
            malformed: false,
            malformed_counter: counter,
            vnet: false,
        };
        if malformed {
            f.mark_malformed();
        }
        f
    }

    fn malformed(&self) -> bool {
        self.malformed
    }

    fn remaining(&self) -> u32 {
        self.left
    }

    fn mark_malformed(&mut self) {
        if !self.malformed {
            self.malformed = true;
            if let Some(c) = self.malformed_counter.as_deref_mut() {
                *c += 1;
            }
        }
        self.next = None;
        self.left = 0;
    }

    fn stop_malformed(&mut self) -> Option<RxFrame<'a>> {
        self.mark_malformed();
        None
    }
}

impl<'a> Iterator for BlockFrames<'a> {
    type Item = RxFrame<'a>;

    fn next(&mut self) -> Option<RxFrame<'a>> {
        if self.left == 0 {
            return None;
        }
        let off = self.next?;
        // The header must lie inside what is not yet lent.
        let Some(rel) = off.checked_sub(self.base) else {
            return self.stop_malformed();
        };
        let Some(h) = self.rest.get(rel..rel + hdr::SIZE) else {
            return self.stop_malformed();
        };
        let next_off = rd_u32(h, hdr::NEXT) as usize;
        let snap = rd_u32(h, hdr::SNAPLEN) as usize;
        let status = rd_u32(h, hdr::STATUS);
        let mac = usize::from(rd_u16(h, hdr::MAC));
        let meta = FrameMeta::from_header(
            status,
            rd_u32(h, hdr::LEN),
            snap as u32,
            (rd_u32(h, hdr::SEC), rd_u32(h, hdr::NSEC)),
            (rd_u32(h, hdr::VLAN_TCI) as u16, rd_u16(h, hdr::VLAN_TPID)),
        );
        // The frame's bytes follow its header and must fit the block.
        let start = rel + mac;
        let room = if self.vnet { VNET_HDR_LEN } else { 0 };
        if mac < hdr::SIZE + room || start + snap > self.rest.len() {
            return self.stop_malformed();
        }
        let mut meta = meta;
        if self.vnet {
            meta.vnet = Some(VnetHdr::parse(&self.rest[start - room..start]));
        }
        let rest = std::mem::take(&mut self.rest);
        let (_, tail) = rest.split_at_mut(start);
        let (data, tail) = tail.split_at_mut(snap);
        self.rest = tail;
        self.base = off + mac + snap;
        self.left -= 1;
        self.next = if self.left == 0 {
            None
        } else if next_off == 0 {
            // The descriptor promised more frames than the chain holds.
            self.mark_malformed();
            None
        } else {
            Some(off + next_off)
        };
        Some(RxFrame { data, meta })
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! Builds blocks the way the kernel lays them out.

    use super::*;

    /// Where the kernel puts the MAC header of a frame with no reserve:
    /// TPACKET_ALIGN(TPACKET3_HDRLEN + 16) - 14, with TPACKET3_HDRLEN =
    /// 48 + sizeof(sockaddr_ll) = 68.
    pub(crate) const MAC_OFF: usize = 96 - 14;

    fn align16(x: usize) -> usize {
        (x + 15) & !15
    }

    fn wr32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn wr16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
    }

    /// One frame to put in a fake block.
    pub(crate) struct Fake<'f> {
        pub bytes: &'f [u8],
        pub wire_len: u32,
        pub status: u32,
        pub vlan: (u16, u16),
    }

    impl<'f> Fake<'f> {
        pub(crate) fn plain(bytes: &'f [u8]) -> Self {
            Fake {
                bytes,
                wire_len: bytes.len() as u32,
                status: 0,
                vlan: (0, 0),
            }
        }
    }

    /// A block of `size` bytes holding `frames`, handed to user space.
    pub(crate) fn block(size: usize, frames: &[Fake<'_>]) -> Vec<u8> {
        let mut b = vec![0xaau8; size];
        b[..block::LEN].fill(0);
        wr32(&mut b, 0, 1);
        wr32(&mut b, block::STATUS, crate::io::sys::TP_STATUS_USER);
        wr32(&mut b, block::NUM_PKTS, frames.len() as u32);
        wr32(&mut b, block::FIRST, block::LEN as u32);
        wr32(&mut b, block::SEQ, 7);
        let mut off = block::LEN;
        for (i, f) in frames.iter().enumerate() {
            let h = &mut b[off..off + hdr::SIZE];
            h.fill(0);
            let next = align16(MAC_OFF + f.bytes.len());
            let last = i + 1 == frames.len();
            wr32(h, hdr::NEXT, if last { 0 } else { next as u32 });
            wr32(h, hdr::SEC, 1000 + i as u32);
            wr32(h, hdr::SNAPLEN, f.bytes.len() as u32);
            wr32(h, hdr::LEN, f.wire_len);
            wr32(h, hdr::STATUS, f.status);
            wr16(h, hdr::MAC, MAC_OFF as u16);
            wr16(h, hdr::MAC + 2, (MAC_OFF + 14) as u16);
            wr32(h, hdr::VLAN_TCI, u32::from(f.vlan.0));
            wr16(h, hdr::VLAN_TPID, f.vlan.1);
            b[off + MAC_OFF..off + MAC_OFF + f.bytes.len()].copy_from_slice(f.bytes);
            off += next;
        }
        wr32(&mut b, block::BLK_LEN, off as u32);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Fake, MAC_OFF, block};
    use super::*;

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn walks_every_frame_with_its_bytes_and_metadata() {
        let (a, b, c) = (frame(1, 60), frame(2, 1514), frame(3, 42));
        let mut blk = block(
            8192,
            &[
                Fake::plain(&a),
                Fake {
                    status: status::CSUMNOTREADY | status::VLAN_VALID | status::VLAN_TPID_VALID,
                    vlan: (0x2064, 0x88a8),
                    ..Fake::plain(&b)
                },
                Fake {
                    status: status::CSUM_VALID | status::VLAN_VALID | status::LOSING,
                    vlan: (5, 0),
                    wire_len: 9000,
                    ..Fake::plain(&c)
                },
            ],
        );
        let h = BlockHeader::parse(&blk).unwrap();
        assert_eq!((h.num_pkts, h.first, h.seq), (3, 48, 7));
        let mut frames = Frames::new(&mut blk);
        let got: Vec<(Vec<u8>, FrameMeta)> =
            frames.by_ref().map(|f| (f.data.to_vec(), f.meta)).collect();
        assert!(!frames.malformed());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, a);
        assert_eq!(got[1].0, b);
        assert_eq!(got[2].0, c);

        let m0 = got[0].1;
        assert_eq!(m0.l4_csum(), L4Csum::Verify);
        assert_eq!((m0.vlan, m0.truncated(), m0.losing), (None, false, false));
        assert_eq!(m0.ts_sec, 1000);

        let m1 = got[1].1;
        assert_eq!(m1.l4_csum(), L4Csum::Partial);
        let v = m1.vlan.unwrap();
        assert_eq!((v.tci, v.tpid, v.id()), (0x2064, 0x88a8, 0x64));

        let m2 = got[2].1;
        assert_eq!(m2.l4_csum(), L4Csum::Skip);
        assert_eq!(
            m2.vlan,
            Some(VlanTag {
                tci: 5,
                tpid: 0x8100
            })
        );
        assert!(m2.truncated() && m2.losing);
        assert!(m2.exceeds_mtu(1500) && !m1.exceeds_mtu(1500));
        assert_eq!((m2.wire_len, m2.snap_len), (9000, 42));
    }

    #[test]
    fn frames_are_writable_in_place() {
        let a = frame(9, 64);
        let mut blk = block(4096, &[Fake::plain(&a), Fake::plain(&a)]);
        for f in Frames::new(&mut blk) {
            f.data[0..6].copy_from_slice(&[0xee; 6]);
        }
        for f in Frames::new(&mut blk) {
            assert_eq!(&f.data[..6], &[0xee; 6]);
            assert_eq!(&f.data[6..], &a[6..]);
        }
        // The rewrite landed in the block itself.
        assert_eq!(&blk[48 + MAC_OFF..48 + MAC_OFF + 6], &[0xee; 6]);
    }

    #[test]
    fn empty_block_yields_nothing() {
        let mut blk = block(4096, &[]);
        let mut frames = Frames::new(&mut blk);
        assert!(frames.next().is_none());
        assert!(!frames.malformed());
    }

    #[test]
    fn corrupt_blocks_stop_the_walk_without_panicking() {
        let a = frame(1, 100);
        let good = block(4096, &[Fake::plain(&a), Fake::plain(&a)]);
        let second = 48 + ((MAC_OFF + 100 + 15) & !15);

        // Snap length running past the block.
        let mut b = good.clone();
        b[second + hdr::SNAPLEN..second + hdr::SNAPLEN + 4]
            .copy_from_slice(&100_000u32.to_ne_bytes());
        let mut fr = Frames::new(&mut b);
        assert_eq!(fr.by_ref().count(), 1);
        assert!(fr.malformed());

        // A next offset pointing back into the first frame's bytes.
        let mut b = good.clone();
        b[48..52].copy_from_slice(&16u32.to_ne_bytes());
        let mut fr = Frames::new(&mut b);
        assert_eq!(fr.by_ref().count(), 1);
        assert!(fr.malformed());

        // MAC offset inside the header.
        let mut b = good.clone();
        b[48 + hdr::MAC..48 + hdr::MAC + 2].copy_from_slice(&4u16.to_ne_bytes());
        let mut fr = Frames::new(&mut b);
        assert_eq!(fr.by_ref().count(), 0);
        assert!(fr.malformed());

        // More packets promised than chained.
        let mut b = good.clone();
        b[block::NUM_PKTS..block::NUM_PKTS + 4].copy_from_slice(&5u32.to_ne_bytes());
        let mut fr = Frames::new(&mut b);
        assert_eq!(fr.by_ref().count(), 2);
        assert!(fr.malformed());

        // The socket's counter counts a bad block once.
        let mut b = good.clone();
        b[block::NUM_PKTS..block::NUM_PKTS + 4].copy_from_slice(&5u32.to_ne_bytes());
        let mut counter = 0u64;
        {
            let mut fr = Frames::counted(&mut b, Some(&mut counter));
            assert_eq!(fr.by_ref().count(), 2);
            assert!(fr.next().is_none());
        }
        assert_eq!(counter, 1);

        // First frame offset past the end, and a block too short to parse.
        let mut b = good.clone();
        b[block::FIRST..block::FIRST + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(Frames::new(&mut b).count(), 0);
        let mut short = vec![0u8; 20];
        let mut fr = Frames::new(&mut short);
        assert!(fr.next().is_none() && fr.malformed());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: corrupt single words of a valid block.
        let a = frame(1, 70);
        let good = block(2048, &[Fake::plain(&a), Fake::plain(&a), Fake::plain(&a)]);
        let mut seed = 0x1234_5678u32;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut b = good.clone();
            let pos = (seed as usize % (b.len() / 4)) * 4;
            b[pos..pos + 4].copy_from_slice(&seed.rotate_left(7).to_ne_bytes());
            let mut total = 0;
            for f in Frames::new(&mut b) {
                total += f.data.len();
            }
            assert!(total <= 2048);
        }
    }
}
