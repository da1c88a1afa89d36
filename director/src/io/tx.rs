//! The transmit side: frames queued as iovecs and sent in batches with
//! `sendmmsg(2)` on an AF_PACKET socket bound to the egress interface.
//!
//! Nothing is copied on the forwarding path: a rewritten frame is sent
//! straight from the RX ring (one iovec), and a TUN encapsulation as the
//! 34-byte prefix followed by the untouched inner packet still in the ring
//! (two iovecs). Only small frames the dataplane builds itself (ICMP
//! errors, ARP replies) are copied, into a per-slot scratch buffer, and,
//! with offloads on, the segments TUN cuts from a merged frame. With
//! offloads on every message starts with its virtio-net header.
//!
//! ```text
//! TxQueue (per worker, per egress interface; reused)
//!   msgs[i].msg_hdr.msg_iov ──> iovs[i] = [ (vnet hdr), prefix or frame , body ]
//!                                                        │                 └─> RX ring bytes
//!                                                        └─> scratch[i] (copied) or RX ring
//! TxBatch<'a> (borrows the queue and every queued frame for 'a;
//!              flushes on drop, so no pointer outlives its frame)
//! ```
//!
//! The socket is created with protocol 0, so it never receives anything;
//! sends use `MSG_DONTWAIT` and a send that fails (ENOBUFS, EAGAIN,
//! EMSGSIZE, ENETDOWN ...) drops that one frame and is counted: a worker
//! never blocks or panics on transmit.
//!
//! Why not a TPACKET TX ring: its frames must be written into the TX
//! ring's own slots, which means copying every forwarded frame out of the
//! RX ring (and assembling TUN prefix + body by copy), and it still needs
//! a `sendto` per batch to kick the kernel. The TX ring's kernel side
//! attaches its pages to the skb without copying, and `sendmmsg` copies
//! from the RX ring into the skb: one copy per frame either way, and this
//! way needs no second ring. Nor does it save the dominant cost: on
//! veth, a send runs the receiver's whole path (bridge, the next hop's
//! stack) in the sender's context, ~80 % of the worker's CPU in the lab
//! bench's NAT profile, the same with either way of sending. AF_XDP is the
//! next step if sends dominate on a real NIC.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::error::IoError;
use super::iface;
use super::sys;
use super::vnet::{VNET_HDR_LEN, VnetHdr};
use crate::forward::gso::{segment_tcp4, segmented_len};
use crate::forward::tun::PREFIX_LEN;
use crate::forward::{TunHeader, Verdict};

/// Offset of the IPv4 header in an untagged Ethernet frame.
const ETH_LEN: usize = 14;

/// Bytes of per-slot scratch: room for the TUN prefix (34 B), an ICMP
/// error frame (`forward::icmp::MAX_ICMP_FRAME`, 110 B) or an ARP reply.
pub const SCRATCH_LEN: usize = 128;

const _: () = assert!(crate::forward::tun::PREFIX_LEN <= SCRATCH_LEN);

/// Options of a transmit queue.
#[derive(Debug, Clone)]
pub struct TxConfig {
    /// Frames per `sendmmsg` call; a push to a full queue flushes it.
    pub batch: usize,
    /// `PACKET_QDISC_BYPASS`: hand frames to the driver directly, skipping
    /// the qdisc (and packet taps such as tcpdump on this interface). Off
    /// by default: on veth (no qdisc to skip) it measured no cheaper, ~700
    /// ns of CPU per 60-byte frame either way, most of it the receiving
    /// side's softirq work done in the sender's context
    /// (`bench_tx_send_cost_with_and_without_qdisc_bypass`).
    pub qdisc_bypass: bool,
    /// `SO_SNDBUF` in bytes, if not the system default.
    pub sndbuf: Option<usize>,
    /// `PACKET_VNET_HDR`: every frame is sent behind a virtio-net header,
    /// so a GSO super-frame can be handed over whole with its segment
    /// size and a partial checksum left for the kernel
    /// ([`TxBatch::push_verdict_offloaded`]).
    pub vnet_hdr: bool,
}

impl Default for TxConfig {
    fn default() -> Self {
        TxConfig {
            batch: 64,
            qdisc_bypass: false,
            sndbuf: None,
            vnet_hdr: false,
        }
    }
}

/// Transmit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Frames the kernel accepted.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Dropped: no buffer space (ENOBUFS, EAGAIN).
    pub dropped_no_buffer: u64,
    /// Dropped: larger than the interface MTU allows (EMSGSIZE).
    pub dropped_too_big: u64,
    /// Dropped: interface down or gone (ENETDOWN, ENXIO, ENODEV).
    pub dropped_link_down: u64,
    /// Dropped: any other errno (see `last_errno`).
    pub dropped_other: u64,
    /// Not queued: a copied frame or prefix longer than [`SCRATCH_LEN`].
    pub dropped_unfit: u64,
    /// The last errno seen, 0 if none.
    pub last_errno: i32,
}

impl TxStats {
    /// All frames dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_no_buffer
            + self.dropped_too_big
            + self.dropped_link_down
            + self.dropped_other
            + self.dropped_unfit
    }

    fn count_error(&mut self, errno: i32) {
        self.last_errno = errno;
        match errno {
            libc::ENOBUFS | libc::EAGAIN => self.dropped_no_buffer += 1,
            libc::EMSGSIZE => self.dropped_too_big += 1,
            libc::ENETDOWN | libc::ENXIO | libc::ENODEV => self.dropped_link_down += 1,
            _ => self.dropped_other += 1,
        }
    }
}

/// An AF_PACKET send socket on one interface, with preallocated batch
/// storage. One per worker and egress interface.
#[derive(Debug)]
pub struct TxQueue {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    msgs: Box<[libc::mmsghdr]>,
    /// Per message: the virtio-net header (with `vnet`), then up to two
    /// pieces of frame.
    iovs: Box<[[libc::iovec; 3]]>,
    scratch: Box<[[u8; SCRATCH_LEN]]>,
    /// Per message: its virtio-net header's bytes.
    vnet_hdrs: Box<[[u8; VNET_HDR_LEN]]>,
    /// The socket has `PACKET_VNET_HDR`.
    vnet: bool,
    /// Segments cut from a GSO super-frame that cannot leave whole
    /// (TUN), each behind its outer header; grown on demand, reused.
    segments: Vec<u8>,
    /// Their ranges in `segments`, for the current super-frame.
    segment_ranges: Vec<std::ops::Range<usize>>,
    /// Queued messages point into `segments`: flush before reusing it.
    segments_queued: bool,
    /// Queued messages (`msgs[..len]`).
    len: usize,
    stats: TxStats,
}

// SAFETY: the raw pointers inside `msgs` and `iovs` point into this
// value's own boxed storage (which moves with it) or, only while a
// `TxBatch` borrows the queue, at frames that batch borrows; they are
// dereferenced only by `sendmmsg` in `flush`, on the owning thread.
unsafe impl Send for TxQueue {}

impl TxQueue {
    /// Opens a send socket on interface `name` (in the calling thread's
    /// network namespace).
    pub fn open(name: &str, cfg: &TxConfig) -> Result<TxQueue, IoError> {
        let ifindex = iface::if_index(name)?;
        Self::open_inner(name.to_owned(), ifindex, cfg)
    }

    /// Opens a send socket on the interface with index `ifindex`.
    pub fn open_index(ifindex: u32, cfg: &TxConfig) -> Result<TxQueue, IoError> {
        Self::open_inner(format!("ifindex {ifindex}"), ifindex, cfg)
    }

    fn open_inner(iface: String, ifindex: u32, cfg: &TxConfig) -> Result<TxQueue, IoError> {
        let err = |op: &'static str| {
            let iface = iface.clone();
            move |e| IoError::sys(op, iface, e)
        };
        let batch = cfg.batch.clamp(1, 1024);
        // Protocol 0: a send-only socket; no frame is ever queued to it.
        let fd = sys::packet_socket(0).map_err(err("socket(AF_PACKET)"))?;
        let s = fd.as_fd();
        if cfg.qdisc_bypass {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_QDISC_BYPASS, &1i32)
                .map_err(err("setsockopt(PACKET_QDISC_BYPASS)"))?;
        }
        if let Some(n) = cfg.sndbuf {
            let n = n.min(i32::MAX as usize) as i32;
            sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, &n)
                .map_err(err("setsockopt(SO_SNDBUF)"))?;
        }
        if cfg.vnet_hdr {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_VNET_HDR, &1i32)
                .map_err(err("setsockopt(PACKET_VNET_HDR)"))?;
        }
        sys::bind_packet(s, ifindex, 0).map_err(err("bind"))?;

        let empty_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovs = vec![[empty_iov; 3]; batch].into_boxed_slice();
        let msgs: Box<[libc::mmsghdr]> = (0..batch)
            .map(|i| {
                // SAFETY: mmsghdr is a plain C struct of integers and
                // pointers; all-zero (null pointers, zero lengths) is valid.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // Points into the boxed slice, whose heap storage never
                // moves; the socket is bound, so no msg_name.
                m.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Ok(TxQueue {
            fd,
            iface,
            ifindex,
            msgs,
            iovs,
            scratch: vec![[0u8; SCRATCH_LEN]; batch].into_boxed_slice(),
            vnet_hdrs: vec![[0u8; VNET_HDR_LEN]; batch].into_boxed_slice(),
            vnet: cfg.vnet_hdr,
            segments: Vec::new(),
            segment_ranges: Vec::new(),
            segments_queued: false,
            len: 0,
            stats: TxStats::default(),
        })
    }

    /// Starts a batch. Frames queued on it must outlive it (the borrow
    /// checker sees to that); it is sent when full, on
    /// [`TxBatch::flush`], and when dropped.
    pub fn batch<'a>(&'a mut self) -> TxBatch<'a> {
        // A batch that was leaked (mem::forget) could leave entries whose
        // frames are gone: never send them.
        if self.len != 0 {
            self.stats.dropped_other += self.len as u64;
            self.len = 0;
        }
        TxBatch {
            q: self,
            _frames: PhantomData,
        }
    }

    /// Sends one frame now (copying nothing); for control traffic outside
    /// the forwarding loop (gratuitous ARP, VRRP adverts).
    pub fn send_now(&mut self, frame: &[u8]) {
        let mut b = self.batch();
        b.push(frame);
        b.flush();
    }

    /// Counters.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// The interface index frames leave by.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface (name, or `ifindex N`).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Sends `msgs[..len]`; failed frames are dropped and counted.
    fn flush(&mut self) {
        let mut i = 0;
        while i < self.len {
            // SAFETY: entries `i..len` were filled by `TxBatch` pushes in
            // the current batch: their iovecs point at this queue's own
            // scratch slots, virtio-net headers or segment buffer (not
            // resized while `segments_queued`), or at frames borrowed by
            // the live `TxBatch` (its lifetime guarantees they are still
            // valid), with their exact lengths; msg_name is null.
            let r = unsafe {
                sys::sendmmsg(
                    self.fd.as_fd(),
                    &mut self.msgs[i..self.len],
                    libc::MSG_DONTWAIT,
                )
            };
            match r {
                Ok(0) => {
                    // Not expected from sendmmsg; never loop on it.
                    self.stats.count_error(0);
                    i += 1;
                }
                Ok(n) => {
                    self.stats.frames += n as u64;
                    self.stats.bytes += self.msgs[i..i + n]
                        .iter()
                        .map(|m| u64::from(m.msg_len))
                        .sum::<u64>();
                    i += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // sendmmsg reports the error of the first unsent
                    // message: drop that one and carry on with the rest.
                    self.stats.count_error(e.raw_os_error().unwrap_or(0));
                    i += 1;
                }
            }
        }
        self.len = 0;
        self.segments_queued = false;
    }
}

/// Frames queued for one `sendmmsg` batch; borrows them for `'a`.
#[derive(Debug)]
pub struct TxBatch<'a> {
    q: &'a mut TxQueue,
    _frames: PhantomData<&'a [u8]>,
}

impl<'a> TxBatch<'a> {
    /// Takes the next slot, flushing first if the queue is full.
    fn slot(&mut self) -> usize {
        if self.q.len == self.q.msgs.len() {
            self.q.flush();
        }
        let i = self.q.len;
        self.q.len += 1;
        i
    }

    /// Message `i` is the `n` pieces of `iov`, behind virtio-net header
    /// `hdr` if the socket takes one.
    fn set(&mut self, i: usize, iov: [(*const u8, usize); 2], n: usize, hdr: VnetHdr) {
        let q = &mut *self.q;
        let mut pieces = q.iovs[i].iter_mut();
        if q.vnet {
            q.vnet_hdrs[i] = hdr.to_bytes();
            if let Some(dst) = pieces.next() {
                dst.iov_base = q.vnet_hdrs[i].as_mut_ptr().cast();
                dst.iov_len = VNET_HDR_LEN;
            }
        }
        for (dst, (ptr, len)) in pieces.zip(iov) {
            dst.iov_base = ptr.cast_mut().cast();
            dst.iov_len = len;
        }
        q.msgs[i].msg_hdr.msg_iovlen = (n + usize::from(q.vnet)) as _;
        q.msgs[i].msg_len = 0;
    }

    /// Queues a whole frame, sent from where it is (no copy).
    pub fn push(&mut self, frame: &'a [u8]) {
        self.push_with(frame, VnetHdr::NONE);
    }

    /// [`TxBatch::push`] behind virtio-net header `hdr` (ignored unless
    /// the queue was opened with `vnet_hdr`).
    fn push_with(&mut self, frame: &'a [u8], hdr: VnetHdr) {
        let i = self.slot();
        let iov = [(frame.as_ptr(), frame.len()), (std::ptr::null(), 0)];
        self.set(i, iov, 1, hdr);
    }

    /// Queues `prefix` (copied, at most [`SCRATCH_LEN`] bytes) followed by
    /// `body` (not copied): a TUN encapsulation as two iovecs.
    pub fn push_prefixed(&mut self, prefix: &[u8], body: &'a [u8]) {
        self.push_prefixed_with(prefix, body, VnetHdr::NONE);
    }

    fn push_prefixed_with(&mut self, prefix: &[u8], body: &'a [u8], hdr: VnetHdr) {
        if prefix.len() > SCRATCH_LEN {
            self.q.stats.dropped_unfit += 1;
            return;
        }
        let i = self.slot();
        self.q.scratch[i][..prefix.len()].copy_from_slice(prefix);
        let p = self.q.scratch[i].as_ptr();
        self.set(i, [(p, prefix.len()), (body.as_ptr(), body.len())], 2, hdr);
    }

    /// Queues a copy of a small frame (at most [`SCRATCH_LEN`] bytes): an
    /// ICMP error or ARP reply built on the stack.
    pub fn push_copy(&mut self, frame: &[u8]) {
        if frame.len() > SCRATCH_LEN {
            self.q.stats.dropped_unfit += 1;
            return;
        }
        let i = self.slot();
        self.q.scratch[i][..frame.len()].copy_from_slice(frame);
        let p = self.q.scratch[i].as_ptr();
        self.set(
            i,
            [(p, frame.len()), (std::ptr::null(), 0)],
            1,
            VnetHdr::NONE,
        );
    }

    /// Queues what a forwarding [`Verdict`] asks for, `frame` being the
    /// (rewritten) received frame; returns whether anything was queued.
    pub fn push_verdict(&mut self, frame: &'a [u8], verdict: &Verdict) -> bool {
        match verdict {
            Verdict::Transmit { len } => match frame.get(..*len) {
                Some(f) => self.push(f),
                None => {
                    self.q.stats.dropped_unfit += 1;
                    return false;
                }
            },
            Verdict::Encapsulate(h) => match frame.get(h.inner()) {
                Some(inner) => self.push_prefixed(h.prefix(), inner),
                None => {
                    self.q.stats.dropped_unfit += 1;
                    return false;
                }
            },
            Verdict::Icmp { reply, .. } => self.push_copy(reply.as_bytes()),
            Verdict::Drop(_) => return false,
        }
        true
    }

    /// [`TxBatch::push_verdict`] for a frame classified with
    /// [`L4Csum::Offload`](crate::forward::L4Csum::Offload), whose L4
    /// checksum the rewrite left for the kernel to complete; `rx` is the
    /// virtio-net header it arrived with (its GSO type and size). On a
    /// queue opened with `vnet_hdr`:
    /// - a rewritten frame leaves whole behind `NEEDS_CSUM` and the same
    ///   GSO type and size: the kernel (or the receiving stack behind a
    ///   veth) cuts it and completes each segment's checksum;
    /// - a TUN encapsulation of a single packet as it is (`encapsulate`
    ///   completed its checksum: behind an outer header, no decapsulator
    ///   could tell it was partial);
    /// - a TUN encapsulation of a super-frame is cut here into segments,
    ///   each behind its own outer header, with complete checksums: the
    ///   kernel cannot segment a packet inside an IPIP header that it did
    ///   not build itself.
    ///
    /// Without `vnet_hdr` nothing can carry the offload: the frame is
    /// dropped and counted in `dropped_unfit`.
    pub fn push_verdict_offloaded(
        &mut self,
        frame: &'a [u8],
        verdict: &Verdict,
        rx: VnetHdr,
    ) -> bool {
        if !self.q.vnet && !matches!(verdict, Verdict::Icmp { .. } | Verdict::Drop(_)) {
            self.q.stats.dropped_unfit += 1;
            return false;
        }
        match verdict {
            Verdict::Transmit { len } => match frame.get(..*len) {
                Some(f) => match rx.partial_at(f, ETH_LEN) {
                    Some(hdr) => self.push_with(f, hdr),
                    None => self.push(f),
                },
                None => {
                    self.q.stats.dropped_unfit += 1;
                    return false;
                }
            },
            Verdict::Encapsulate(h) => {
                let Some(inner) = frame.get(h.inner()) else {
                    self.q.stats.dropped_unfit += 1;
                    return false;
                };
                if rx.is_gso() {
                    return self.push_segmented(h, inner, rx.gso_size);
                }
                // `tun::encapsulate` completed the inner checksum.
                self.push_prefixed(h.prefix(), inner);
            }
            Verdict::Icmp { reply, .. } => self.push_copy(reply.as_bytes()),
            Verdict::Drop(_) => return false,
        }
        true
    }

    /// Cuts the TCP super-packet `inner` into `mss` segments behind
    /// copies of `h`'s outer header, in the queue's segment buffer.
    fn push_segmented(&mut self, h: &TunHeader, inner: &[u8], mss: u16) -> bool {
        if self.q.segments_queued {
            // The buffer still backs queued messages.
            self.q.flush();
        }
        let need = match segmented_len(inner, mss, PREFIX_LEN) {
            Ok(n) => n,
            Err(_) => {
                self.q.stats.dropped_unfit += 1;
                return false;
            }
        };
        let q = &mut *self.q;
        if q.segments.len() < need {
            q.segments.resize(need, 0);
        }
        q.segment_ranges.clear();
        let ranges = &mut q.segment_ranges;
        if segment_tcp4(inner, mss, PREFIX_LEN, &mut q.segments, |r| ranges.push(r)).is_err() {
            q.stats.dropped_unfit += 1;
            return false;
        }
        for k in 0..self.q.segment_ranges.len() {
            let r = self.q.segment_ranges[k].clone();
            let prefix = h.segment_prefix(r.len() - PREFIX_LEN, k as u16);
            self.q.segments[r.start..r.start + PREFIX_LEN].copy_from_slice(&prefix);
            let i = self.slot();
            // `slot` may have flushed earlier segments; the buffer stays.
            self.q.segments_queued = true;
            let p = self.q.segments[r.clone()].as_ptr();
            self.set(i, [(p, r.len()), (std::ptr::null(), 0)], 1, VnetHdr::NONE);
        }
        true
    }

    /// Frames queued and not yet sent.
    pub fn len(&self) -> usize {
        self.q.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.q.len == 0
    }

    /// Sends everything queued now.
    pub fn flush(&mut self) {
        self.q.flush();
    }

    /// Counters of the queue.
    pub fn stats(&self) -> TxStats {
        self.q.stats
    }
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        self.q.flush();
    }
}
