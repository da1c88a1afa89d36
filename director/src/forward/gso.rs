//! Software TCP segmentation (userspace GSO) of IPv4 super-packets.
//!
//! With GRO on the receiving NIC, or a local sender using TSO/GSO, a
//! frame can carry an IPv4/TCP packet of up to 64 KiB whose payload is
//! meant to leave as segments of at most `gso_size` payload bytes (the
//! MSS, from the `virtio_net_hdr`). The kernel segments such a packet
//! when it transmits it as is, but not once we have wrapped it in our own
//! IPIP header: for the TUN mode [`segment_tcp4`] cuts it here, into the
//! segments the kernel's `inet_gso_segment` + `tcp_gso_segment` would
//! have produced, each behind `headroom` bytes left for the caller's
//! Ethernet + outer IPv4 header (`tun::PREFIX_LEN`), so every segment
//! leaves as one contiguous frame:
//!
//! ```text
//! input  | IP hdr | TCP hdr | mss bytes | mss bytes | ... | rest <= mss |
//!
//! out    | headroom | IP hdr | TCP hdr | mss bytes |    segment 0
//!        | headroom | IP hdr | TCP hdr | mss bytes |    segment 1
//!        ...
//!        | headroom | IP hdr | TCP hdr | rest      |    last segment
//! ```
//!
//! Each segment, as the kernel builds it:
//!
//! - Both headers are copied with their options. Everything not listed
//!   below (TOS, DF, TTL, addresses, ports, ACK number, window, urgent
//!   pointer, options) is the same in every segment.
//! - IP: total length of the segment; ID = original ID + segment index,
//!   wrapping (the kernel's `id++`: each segment is a distinct datagram);
//!   header checksum recomputed.
//! - TCP: sequence number advanced by the payload bytes before the
//!   segment. FIN and PSH only on the last segment: the stream ends, and
//!   is pushed, after its last byte. CWR only on the first: the sender
//!   reduced its window once, and a CWR on every segment would tell the
//!   receiver it did so again and again (RFC 3168 §6.1.2).
//! - TCP checksum computed in full (pseudo-header with the segment's
//!   length, header, payload). The input's checksum field is ignored: a
//!   GSO packet is CHECKSUM_PARTIAL, its field holds only the
//!   pseudo-header sum of the whole super-packet.
//!
//! Where this differs from the kernel: a packet whose payload already fits
//! in one segment yields one segment (a copy with a complete checksum)
//! where the kernel would pass it on unsegmented, so the caller has one
//! case to handle; fragments are refused (a GSO packet is never one); the
//! input's IP header checksum is not verified (the kernel does not either,
//! and every segment gets a fresh one).
//!
//! Nothing here allocates or does I/O.

use std::ops::Range;

use super::checksum::{checksum, get16, get32, l4_checksum_v4, put16};
use super::packet::field::*;
use crate::types::{Protocol, TcpFlags};

/// TCP sequence number, relative to the TCP header.
const TCP_SEQ: usize = 4;

/// Why a super-packet could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// IP version is not 4, or the protocol is not TCP.
    #[error("not an IPv4 TCP packet")]
    NotTcpV4,
    /// A header or length field is inconsistent: shorter than an IPv4
    /// header, IHL < 5, total length below the header or beyond the
    /// buffer, TCP header truncated, data offset < 5 or past the packet.
    #[error("malformed IPv4/TCP packet: inconsistent header or length field")]
    Malformed,
    /// MF set or a non-zero fragment offset: only a whole packet can be
    /// cut into segments.
    #[error("IPv4 fragment: only a whole packet can be segmented")]
    Fragment,
    /// An MSS of 0 would never consume the payload.
    #[error("MSS is 0")]
    MssZero,
    /// `out` cannot hold every segment and its headroom (see
    /// [`segmented_len`]). Nothing was written or emitted.
    #[error("output buffer too small for all segments")]
    OutTooSmall,
}

/// Where the parts of a validated IPv4/TCP packet lie.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// IP header length, options included.
    ihl: usize,
    /// IP + TCP header length, options included: the prefix every
    /// segment repeats.
    hdr: usize,
    /// IP total length; bytes past it are link padding.
    total: usize,
}

impl Layout {
    /// Bytes of TCP payload.
    fn payload(&self) -> usize {
        self.total - self.hdr
    }
}

/// Validates `ip` as an unfragmented IPv4/TCP packet. Never panics.
fn parse(ip: &[u8]) -> Result<Layout, SegmentError> {
    if ip.len() < IPV4_MIN_LEN {
        return Err(SegmentError::Malformed);
    }
    let ver_ihl = ip[IP_VER_IHL];
    if ver_ihl >> 4 != 4 {
        return Err(SegmentError::NotTcpV4);
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(get16(ip, IP_TOTAL_LEN));
    if ihl < IPV4_MIN_LEN || total < ihl || total > ip.len() {
        return Err(SegmentError::Malformed);
    }
    if ip[IP_PROTO] != Protocol::Tcp.number() {
        return Err(SegmentError::NotTcpV4);
    }
    if get16(ip, IP_FLAGS_FRAG) & (IP_MF | IP_OFFSET_MASK) != 0 {
        return Err(SegmentError::Fragment);
    }
    let l4 = &ip[ihl..total];
    if l4.len() < TCP_MIN_LEN {
        return Err(SegmentError::Malformed);
    }
    let doff = usize::from(l4[TCP_DATA_OFFSET] >> 4) * 4;
    if doff < TCP_MIN_LEN || doff > l4.len() {
        return Err(SegmentError::Malformed);
    }
    Ok(Layout {
        ihl,
        hdr: ihl + doff,
        total,
    })
}

/// The number of segments and the bytes of `out` they take. Overflow
/// (an absurd `headroom`) is reported as [`SegmentError::OutTooSmall`]:
/// no buffer could be large enough.
fn plan(l: &Layout, mss: u16, headroom: usize) -> Result<(usize, usize), SegmentError> {
    if mss == 0 {
        return Err(SegmentError::MssZero);
    }
    let payload = l.payload();
    // A packet without payload (a pure ACK) is still one segment.
    let count = payload.div_ceil(usize::from(mss)).max(1);
    let need = headroom
        .checked_add(l.hdr)
        .and_then(|per_segment| per_segment.checked_mul(count))
        .and_then(|headers| headers.checked_add(payload))
        .ok_or(SegmentError::OutTooSmall)?;
    Ok((count, need))
}

/// The bytes of `out` that [`segment_tcp4`] needs to segment `ip`: per
/// segment `headroom` + the IP and TCP headers, plus the payload once.
/// Fails exactly when [`segment_tcp4`] would fail for a large enough
/// `out`.
pub fn segmented_len(ip: &[u8], mss: u16, headroom: usize) -> Result<usize, SegmentError> {
    let l = parse(ip)?;
    plan(&l, mss, headroom).map(|(_, need)| need)
}

/// Cuts the IPv4/TCP packet `ip` (from its IP header; `ip.len()` may
/// exceed the IP total length only by padding, which is ignored) into
/// segments carrying at most `mss` payload bytes each, written one after
/// another into `out`, each preceded by `headroom` bytes this function
/// leaves untouched (the caller writes an Ethernet + outer header there).
///
/// For each segment, in order, calls `emit(range)` where `range` covers
/// the headroom and the segment's IP packet within `out`; consecutive
/// ranges are adjacent, starting at 0. Returns the number of segments:
/// `ceil(payload / mss)`, and 1 for a packet without payload. See the
/// module documentation for the headers of each segment.
///
/// All checks are made before anything is written: on error `out` is
/// untouched and `emit` never called. Never panics; allocates nothing.
pub fn segment_tcp4(
    ip: &[u8],
    mss: u16,
    headroom: usize,
    out: &mut [u8],
    mut emit: impl FnMut(Range<usize>),
) -> Result<usize, SegmentError> {
    let l = parse(ip)?;
    let (count, need) = plan(&l, mss, headroom)?;
    if out.len() < need {
        return Err(SegmentError::OutTooSmall);
    }
    let (hdr, payload) = ip[..l.total].split_at(l.hdr);
    let src = get32(hdr, IP_SRC).to_be_bytes();
    let dst = get32(hdr, IP_DST).to_be_bytes();
    let id = get16(hdr, IP_ID);
    let seq = get32(hdr, l.ihl + TCP_SEQ);
    let flags = hdr[l.ihl + TCP_FLAGS];
    let mss = usize::from(mss);

    let mut at = 0;
    for i in 0..count {
        let offset = i * mss;
        let chunk = &payload[offset..payload.len().min(offset + mss)];
        let seg_len = l.hdr + chunk.len();
        let end = at + headroom + seg_len;
        let seg = &mut out[at + headroom..end];
        seg[..l.hdr].copy_from_slice(hdr);
        seg[l.hdr..].copy_from_slice(chunk);

        // Fits: seg_len <= total, a u16.
        put16(seg, IP_TOTAL_LEN, seg_len as u16);
        // Wraps by design, as the 16-bit ID does.
        put16(seg, IP_ID, id.wrapping_add(i as u16));
        put16(seg, IP_CSUM, 0);
        let c = checksum(&seg[..l.ihl]);
        put16(seg, IP_CSUM, c);

        let tcp = &mut seg[l.ihl..];
        // offset < total <= u16::MAX; sequence space wraps.
        let seg_seq = seq.wrapping_add(offset as u32);
        tcp[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&seg_seq.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TcpFlags::FIN.0 | TcpFlags::PSH.0);
        }
        if i > 0 {
            f &= !TcpFlags::CWR.0;
        }
        tcp[TCP_FLAGS] = f;
        put16(tcp, TCP_CSUM, 0);
        let c = l4_checksum_v4(src, dst, Protocol::Tcp.number(), tcp);
        put16(tcp, TCP_CSUM, c);

        emit(at..end);
        at = end;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::checksum::pseudo_header_v4;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 0, 2, 1];
    const DST: [u8; 4] = [198, 51, 100, 7];
    const MARK: u8 = 0xa5;
    const HEADROOM: usize = 34;

    /// An IPv4/TCP packet with `ip_opts` and `tcp_opts` bytes of options
    /// (multiples of 4) and a CHECKSUM_PARTIAL TCP checksum field (the
    /// pseudo-header sum only), as a GSO sender hands it over.
    fn build(
        payload: &[u8],
        ip_opts: usize,
        tcp_opts: usize,
        flags: u8,
        seq: u32,
        id: u16,
    ) -> Vec<u8> {
        let ihl = IPV4_MIN_LEN + ip_opts;
        let doff = TCP_MIN_LEN + tcp_opts;
        let total = ihl + doff + payload.len();
        let mut p = vec![0u8; total];
        p[IP_VER_IHL] = 0x40 | (ihl / 4) as u8;
        p[IP_TOS] = 0x2a;
        put16(&mut p, IP_TOTAL_LEN, total as u16);
        put16(&mut p, IP_ID, id);
        put16(&mut p, IP_FLAGS_FRAG, IP_DF);
        p[IP_TTL] = 64;
        p[IP_PROTO] = 6;
        p[IP_SRC..IP_SRC + 4].copy_from_slice(&SRC);
        p[IP_DST..IP_DST + 4].copy_from_slice(&DST);
        // IP options: NOPs, then an end-of-list.
        p[IPV4_MIN_LEN..ihl].fill(1);
        if ip_opts > 0 {
            p[ihl - 1] = 0;
        }
        let c = checksum(&p[..ihl]);
        put16(&mut p, IP_CSUM, c);

        let t = &mut p[ihl..];
        put16(t, L4_SPORT, 40000);
        put16(t, L4_DPORT, 80);
        t[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        t[TCP_DATA_OFFSET] = ((doff / 4) as u8) << 4;
        t[TCP_FLAGS] = flags;
        put16(t, 14, 0xffff);
        put16(t, 18, 0x0010);
        // TCP options: NOPs.
        t[TCP_MIN_LEN..doff].fill(1);
        let l4_len = (doff + payload.len()) as u16;
        put16(t, TCP_CSUM, pseudo_header_v4(SRC, DST, 6, l4_len));
        t[doff..].copy_from_slice(payload);
        p
    }

    /// Segments `ip` into a marker-filled buffer of exactly the needed
    /// size; returns the buffer and the emitted ranges.
    fn run(ip: &[u8], mss: u16) -> (Vec<u8>, Vec<Range<usize>>) {
        let need = segmented_len(ip, mss, HEADROOM).unwrap();
        let mut out = vec![MARK; need];
        let mut ranges = Vec::new();
        let n = segment_tcp4(ip, mss, HEADROOM, &mut out, |r| ranges.push(r)).unwrap();
        assert_eq!(n, ranges.len());
        (out, ranges)
    }

    /// Segmenting must fail with `err`, writing and emitting nothing.
    fn fails(ip: &[u8], mss: u16, out_len: usize, err: SegmentError) {
        let mut out = vec![MARK; out_len];
        let mut emitted = 0;
        let r = segment_tcp4(ip, mss, HEADROOM, &mut out, |_| emitted += 1);
        assert_eq!(r, Err(err));
        assert_eq!(emitted, 0);
        assert!(out.iter().all(|&b| b == MARK), "out written on error");
    }

    const ACK: u8 = TcpFlags::ACK.0;

    #[test]
    fn pure_ack_is_one_segment() {
        let ip = build(&[], 0, 12, ACK, 7, 9);
        let (out, ranges) = run(&ip, 1448);
        assert_eq!(ranges, vec![0..HEADROOM + ip.len()]);
        let seg = &out[HEADROOM..];
        assert_eq!(checksum(&seg[..20]), 0);
        assert_eq!(l4_checksum_v4(SRC, DST, 6, &seg[20..]), 0);
        // Identical to the input apart from the completed TCP checksum.
        assert_eq!(seg[..20 + TCP_CSUM], ip[..20 + TCP_CSUM]);
        assert_eq!(seg[20 + TCP_CSUM + 2..], ip[20 + TCP_CSUM + 2..]);
    }

    #[test]
    fn fitting_payload_is_one_complete_copy() {
        let payload = [0x5au8; 1448];
        let flags = ACK | TcpFlags::PSH.0 | TcpFlags::FIN.0 | TcpFlags::CWR.0;
        let ip = build(&payload, 4, 12, flags, u32::MAX - 3, 1);
        let (out, ranges) = run(&ip, 1448);
        assert_eq!(ranges.len(), 1);
        let seg = &out[ranges[0].start + HEADROOM..ranges[0].end];
        assert_eq!(seg[20 + 4 + TCP_FLAGS], flags);
        assert_eq!(l4_checksum_v4(SRC, DST, 6, &seg[24..]), 0);
    }

    #[test]
    fn padding_past_total_length_is_ignored() {
        let mut ip = build(&[1, 2, 3], 0, 0, ACK, 0, 0);
        let unpadded = run(&ip, 2);
        ip.extend_from_slice(&[0xee; 20]);
        assert_eq!(run(&ip, 2), unpadded);
        assert_eq!(unpadded.1.len(), 2);
    }

    #[test]
    fn out_too_small_emits_nothing() {
        let ip = build(&[7u8; 3000], 0, 0, ACK, 0, 0);
        let need = segmented_len(&ip, 1000, HEADROOM).unwrap();
        assert_eq!(need, 3 * (HEADROOM + 40) + 3000);
        fails(&ip, 1000, need - 1, SegmentError::OutTooSmall);
        fails(&ip, 1000, 0, SegmentError::OutTooSmall);
        // An absurd headroom overflows instead of panicking.
        let mut out = [0u8; 64];
        let r = segment_tcp4(&ip, 1000, usize::MAX / 2, &mut out, |_| {});
        assert_eq!(r, Err(SegmentError::OutTooSmall));
    }

    #[test]
    fn mss_zero() {
        let ip = build(&[1u8; 10], 0, 0, ACK, 0, 0);
        fails(&ip, 0, 4096, SegmentError::MssZero);
    }

    #[test]
    fn fragments_are_refused() {
        let mut ip = build(&[1u8; 100], 0, 0, ACK, 0, 0);
        put16(&mut ip, IP_FLAGS_FRAG, IP_MF);
        fails(&ip, 10, 4096, SegmentError::Fragment);
        put16(&mut ip, IP_FLAGS_FRAG, IP_DF | 1);
        fails(&ip, 10, 4096, SegmentError::Fragment);
    }

    #[test]
    fn not_ipv4_or_not_tcp() {
        let mut ip = build(&[1u8; 100], 0, 0, ACK, 0, 0);
        ip[IP_VER_IHL] = 0x65;
        fails(&ip, 10, 4096, SegmentError::NotTcpV4);
        let mut ip = build(&[1u8; 100], 0, 0, ACK, 0, 0);
        ip[IP_PROTO] = 17;
        fails(&ip, 10, 4096, SegmentError::NotTcpV4);
    }

    #[test]
    fn malformed_lengths_and_offsets() {
        let good = build(&[1u8; 100], 0, 0, ACK, 0, 0);
        let m = SegmentError::Malformed;
        // Shorter than an IPv4 header, down to empty.
        for n in 0..IPV4_MIN_LEN {
            fails(&good[..n], 10, 4096, m);
        }
        // IHL below 5.
        let mut ip = good.clone();
        ip[IP_VER_IHL] = 0x44;
        fails(&ip, 10, 4096, m);
        // IHL beyond the total length.
        let mut ip = good.clone();
        ip[IP_VER_IHL] = 0x4f;
        put16(&mut ip, IP_TOTAL_LEN, 40);
        fails(&ip, 10, 4096, m);
        // Total length beyond the buffer: truncated.
        fails(&good[..good.len() - 1], 10, 4096, m);
        // Total length below IP + minimal TCP header.
        let mut ip = good.clone();
        put16(&mut ip, IP_TOTAL_LEN, 39);
        fails(&ip, 10, 4096, m);
        // TCP data offset below 5, and past the packet.
        let mut ip = good.clone();
        ip[20 + TCP_DATA_OFFSET] = 0x40;
        fails(&ip, 10, 4096, m);
        let mut ip = good.clone();
        put16(&mut ip, IP_TOTAL_LEN, 40 + 8);
        ip[20 + TCP_DATA_OFFSET] = 0x80;
        fails(&ip, 10, 4096, m);
    }

    #[test]
    fn ip_id_and_seq_wrap() {
        let ip = build(&[3u8; 30], 0, 0, ACK, u32::MAX - 9, u16::MAX);
        let (out, ranges) = run(&ip, 10);
        let ids: Vec<u16> = ranges
            .iter()
            .map(|r| get16(&out, r.start + HEADROOM + IP_ID))
            .collect();
        let seqs: Vec<u32> = ranges
            .iter()
            .map(|r| get32(&out, r.start + HEADROOM + 20 + TCP_SEQ))
            .collect();
        assert_eq!(ids, vec![u16::MAX, 0, 1]);
        assert_eq!(seqs, vec![u32::MAX - 9, 0, 10]);
    }

    proptest! {
        #[test]
        fn segments_reassemble_and_are_valid(
            payload in proptest::collection::vec(any::<u8>(), 0..20000),
            mss in 1u16..2000,
            ip_opts in (0usize..=10).prop_map(|w| w * 4),
            tcp_opts in (0usize..=10).prop_map(|w| w * 4),
            flags: u8,
            seq: u32,
            id: u16,
            padding in 0usize..8,
        ) {
            let mut ip = build(&payload, ip_opts, tcp_opts, flags, seq, id);
            let total = ip.len();
            ip.resize(total + padding, 0xee);
            let ihl = IPV4_MIN_LEN + ip_opts;
            let hdr = ihl + TCP_MIN_LEN + tcp_opts;
            let (out, ranges) = run(&ip, mss);

            let mss = usize::from(mss);
            let expected = payload.len().div_ceil(mss).max(1);
            prop_assert_eq!(ranges.len(), expected);
            prop_assert_eq!(ranges.last().unwrap().end, out.len());

            let last_flags = TcpFlags::FIN.0 | TcpFlags::PSH.0;
            let mut joined = Vec::with_capacity(payload.len());
            let mut next = 0;
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, next);
                next = r.end;
                prop_assert!(out[r.start..r.start + HEADROOM].iter().all(|&b| b == MARK));
                let seg = &out[r.start + HEADROOM..r.end];
                let (h, data) = seg.split_at(hdr);
                prop_assert!(data.len() <= mss);
                prop_assert!(!data.is_empty() || payload.is_empty());
                joined.extend_from_slice(data);

                // IP: length, checksum, consecutive IDs, rest unchanged.
                prop_assert_eq!(usize::from(get16(h, IP_TOTAL_LEN)), seg.len());
                prop_assert_eq!(checksum(&h[..ihl]), 0);
                prop_assert_eq!(get16(h, IP_ID), id.wrapping_add(i as u16));
                prop_assert_eq!(get16(h, IP_FLAGS_FRAG), IP_DF);
                prop_assert_eq!(&h[IP_TTL..IP_CSUM], &ip[IP_TTL..IP_CSUM]);
                prop_assert_eq!(&h[IP_SRC..ihl], &ip[IP_SRC..ihl]);

                // TCP: checksum, sequence, flags, rest unchanged.
                prop_assert_eq!(l4_checksum_v4(SRC, DST, 6, &seg[ihl..]), 0);
                let seq_i = get32(h, ihl + TCP_SEQ);
                prop_assert_eq!(seq_i, seq.wrapping_add((i * mss) as u32));
                let f = h[ihl + TCP_FLAGS];
                let mut want = flags;
                if i + 1 < ranges.len() {
                    want &= !last_flags;
                }
                if i > 0 {
                    want &= !TcpFlags::CWR.0;
                }
                prop_assert_eq!(f, want);
                prop_assert_eq!(&h[ihl..ihl + TCP_SEQ], &ip[ihl..ihl + TCP_SEQ]);
                prop_assert_eq!(&h[ihl + 8..ihl + TCP_FLAGS], &ip[ihl + 8..ihl + TCP_FLAGS]);
                prop_assert_eq!(&h[ihl + 14..ihl + TCP_CSUM], &ip[ihl + 14..ihl + TCP_CSUM]);
                prop_assert_eq!(&h[ihl + 18..hdr], &ip[ihl + 18..hdr]);

                // etherparse, the independent oracle, agrees.
                let parsed = etherparse::SlicedPacket::from_ip(seg).unwrap();
                let Some(etherparse::NetSlice::Ipv4(v4)) = &parsed.net else {
                    panic!("not IPv4");
                };
                prop_assert_eq!(
                    v4.header().header_checksum(),
                    v4.header().to_header().calc_header_checksum()
                );
                let Some(etherparse::TransportSlice::Tcp(tcp)) = &parsed.transport else {
                    panic!("not TCP");
                };
                prop_assert_eq!(tcp.payload(), data);
                prop_assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(SRC, DST).unwrap());
            }
            prop_assert_eq!(joined, payload);
        }

        /// Never panics, whatever the bytes, MSS, headroom or buffer size.
        #[test]
        fn arbitrary_input_never_panics(
            ip in proptest::collection::vec(any::<u8>(), 0..200),
            mss: u16,
            headroom in 0usize..64,
            out_len in 0usize..2048,
        ) {
            let mut out = vec![0u8; out_len];
            let mut end = 0;
            if let Ok(n) = segment_tcp4(&ip, mss, headroom, &mut out, |r| end = r.end) {
                prop_assert!(n >= 1);
                prop_assert_eq!(Ok(end), segmented_len(&ip, mss, headroom));
            }
        }
    }
}
