//! The receive socket: AF_PACKET bound to one interface, with a TPACKET_V3
//! memory-mapped ring, a fanout group so several workers share the
//! interface, and a classic BPF filter so only the dataplane's traffic is
//! copied into the ring.
//!
//! ```text
//!  kernel ── fills block k ──(full or retire timer)──> status USER
//!  worker ── recv(): poll(2) until block k is USER ──> RxBlock
//!         ── frames(): &mut [u8] per frame, rewritten in place, queued on
//!            a TxBatch (pointers into the block) and flushed
//!         ── drop(RxBlock): status KERNEL, k += 1
//! ```
//!
//! Set-up order matters: the socket is created with protocol 0 (it
//! receives nothing), gets its filter, options and ring, and only then is
//! bound to the interface with ETH_P_ALL and joined to the fanout group,
//! so no unfiltered frame ever lands in the ring.
//!
//! The unsafe code here is the shared memory: the block status word is
//! read and written as an atomic (the kernel writes it from another CPU),
//! and a handed-over block is turned into one `&mut [u8]` whose lifetime
//! is tied to the `RxBlock` that gives it back.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::bpf::Filter;
use super::error::IoError;
use super::iface;
use super::sys::{self, Mmap};
use super::tpacket::{self, BlockHeader, Frames};

/// How frames are spread over the sockets of a fanout group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanoutMode {
    /// By flow hash (`PACKET_FANOUT_HASH`): all frames of a flow reach the
    /// same socket, so one worker sees a connection's packets in order.
    #[default]
    Hash,
    /// Round robin (`PACKET_FANOUT_LB`).
    RoundRobin,
    /// By the CPU that received the frame (`PACKET_FANOUT_CPU`).
    Cpu,
}

/// Membership in a fanout group. Sockets on one interface with the same
/// group id share its frames; IP defragmentation (`PACKET_FANOUT_FLAG_DEFRAG`)
/// stays off: the dataplane forwards fragments as they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Group id, unique per interface and network namespace.
    pub group: u16,
    /// How frames are spread.
    pub mode: FanoutMode,
}

/// Geometry and options of a receive socket.
#[derive(Debug, Clone)]
pub struct RxConfig {
    /// Bytes per ring block; a multiple of the page size. A block is
    /// handed over whole, so it bounds a batch.
    pub block_size: u32,
    /// Blocks in the ring.
    pub block_count: u32,
    /// The frame size the kernel checks the geometry against (a multiple
    /// of 16). TPACKET_V3 packs frames tightly in a block; a frame longer
    /// than a block is truncated.
    pub frame_size: u32,
    /// How long the kernel waits before handing over a block that is not
    /// full: the latency bound at low rates.
    pub retire_timeout: Duration,
    /// Join a fanout group, or not.
    pub fanout: Option<Fanout>,
    /// Keep only what this filter accepts; `None` keeps everything.
    pub filter: Option<Filter>,
    /// `PACKET_IGNORE_OUTGOING`: do not see frames sent out of this
    /// interface (our own transmissions, and the host stack's).
    pub ignore_outgoing: bool,
    /// Put the interface in promiscuous mode while the socket lives (to
    /// receive frames to a virtual MAC).
    pub promiscuous: bool,
}

impl Default for RxConfig {
    fn default() -> Self {
        RxConfig {
            block_size: 1 << 20,
            block_count: 16,
            frame_size: 2048,
            // The kernel hands a TPACKET_V3 block over when it is full or
            // this old. At low rates every packet waits for it: with 4 ms,
            // small HTTP requests through the director were capped at 16k/s
            // with p99 4.3 ms (lab bench). 1 ms is the kernel's finest.
            retire_timeout: Duration::from_millis(1),
            fanout: None,
            filter: None,
            ignore_outgoing: true,
            promiscuous: false,
        }
    }
}

impl RxConfig {
    fn check(&self) -> Result<(), IoError> {
        let page = 4096;
        if self.block_size == 0 || !self.block_size.is_multiple_of(page) {
            return Err(IoError::RingConfig(
                "block_size must be a non-zero multiple of 4096",
            ));
        }
        if self.block_count == 0 {
            return Err(IoError::RingConfig("block_count must be at least 1"));
        }
        if self.frame_size < 128
            || !self.frame_size.is_multiple_of(16)
            || self.frame_size > self.block_size
        {
            return Err(IoError::RingConfig(
                "frame_size must be a multiple of 16, at least 128, at most block_size",
            ));
        }
        if u64::from(self.block_size) * u64::from(self.block_count) > 1 << 32 {
            return Err(IoError::RingConfig("ring larger than 4 GiB"));
        }
        Ok(())
    }
}

/// Receive counters of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Blocks handed over and released.
    pub blocks: u64,
    /// Frames handed over (as the blocks' descriptors count them).
    pub frames: u64,
    /// Blocks whose frame chain made no sense when walked (never seen from
    /// a sane kernel; counted rather than trusted).
    pub malformed_blocks: u64,
    /// Frames the kernel accepted (after the filter), from
    /// `PACKET_STATISTICS`, summed over reads.
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub kernel_drops: u64,
    /// Times the ring was full ("queue frozen").
    pub kernel_freezes: u64,
}

/// An AF_PACKET receive socket with a TPACKET_V3 ring on one interface.
#[derive(Debug)]
pub struct AfPacket {
    // Field order: the mapping is unmapped before the socket is closed.
    ring: Mmap,
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    block_size: usize,
    block_count: usize,
    /// The next block to hand over (the kernel fills them in order).
    current: usize,
    stats: RxStats,
}

impl AfPacket {
    /// Opens a receive socket on interface `name` (in the calling thread's
    /// network namespace).
    pub fn open(name: &str, cfg: &RxConfig) -> Result<AfPacket, IoError> {
        let ifindex = iface::if_index(name)?;
        Self::open_inner(name.to_owned(), ifindex, cfg)
    }

    /// Opens a receive socket on the interface with index `ifindex`.
    pub fn open_index(ifindex: u32, cfg: &RxConfig) -> Result<AfPacket, IoError> {
        Self::open_inner(format!("ifindex {ifindex}"), ifindex, cfg)
    }

    fn open_inner(iface: String, ifindex: u32, cfg: &RxConfig) -> Result<AfPacket, IoError> {
        cfg.check()?;
        let err = |op: &'static str| {
            let iface = iface.clone();
            move |e| IoError::sys(op, iface, e)
        };
        // Protocol 0: nothing is queued to this socket until `bind` below.
        let fd = sys::packet_socket(0).map_err(err("socket(AF_PACKET)"))?;
        let s = fd.as_fd();
        sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_VERSION, &sys::TPACKET_V3)
            .map_err(err("setsockopt(PACKET_VERSION)"))?;
        if let Some(filter) = &cfg.filter {
            attach_filter(s, filter).map_err(err("setsockopt(SO_ATTACH_FILTER)"))?;
        }
        if cfg.ignore_outgoing {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_IGNORE_OUTGOING, &1i32)
                .map_err(err("setsockopt(PACKET_IGNORE_OUTGOING)"))?;
        }
        let req = sys::TpacketReq3 {
            block_size: cfg.block_size,
            block_nr: cfg.block_count,
            frame_size: cfg.frame_size,
            frame_nr: cfg.block_size / cfg.frame_size * cfg.block_count,
            retire_blk_tov: cfg
                .retire_timeout
                .as_millis()
                .clamp(1, u128::from(u32::MAX)) as u32,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_RX_RING, &req)
            .map_err(err("setsockopt(PACKET_RX_RING)"))?;
        let len = cfg.block_size as usize * cfg.block_count as usize;
        let ring = Mmap::ring(s, len).map_err(err("mmap(ring)"))?;
        sys::bind_packet(s, ifindex, sys::ETH_P_ALL_BE).map_err(err("bind"))?;
        if cfg.promiscuous {
            let mreq = sys::PacketMreq {
                ifindex: ifindex as libc::c_int,
                kind: sys::PACKET_MR_PROMISC,
                ..Default::default()
            };
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(err("setsockopt(PACKET_ADD_MEMBERSHIP)"))?;
        }
        if let Some(f) = cfg.fanout {
            let mode = match f.mode {
                FanoutMode::Hash => sys::PACKET_FANOUT_HASH,
                FanoutMode::RoundRobin => sys::PACKET_FANOUT_LB,
                FanoutMode::Cpu => sys::PACKET_FANOUT_CPU,
            };
            // A fanout group delivers through the group's own hook, which
            // ignores the socket's PACKET_IGNORE_OUTGOING: the group must be
            // told too, or every frame we send comes back to the workers
            // (found in the lab: one echo per forwarded frame).
            let flags = if cfg.ignore_outgoing {
                sys::PACKET_FANOUT_FLAG_IGNORE_OUTGOING
            } else {
                0
            };
            let arg = u32::from(f.group) | ((mode | flags) << 16);
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_FANOUT, &arg)
                .map_err(err("setsockopt(PACKET_FANOUT)"))?;
        }
        Ok(AfPacket {
            ring,
            fd,
            iface,
            ifindex,
            block_size: cfg.block_size as usize,
            block_count: cfg.block_count as usize,
            current: 0,
            stats: RxStats::default(),
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface (name, or `ifindex N`).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The socket, e.g. to register it with an event loop.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Replaces the filter (e.g. when the VIP set changes). Frames already
    /// in the ring were filtered by the old program.
    pub fn set_filter(&mut self, filter: &Filter) -> Result<(), IoError> {
        attach_filter(self.fd.as_fd(), filter)
            .map_err(|e| IoError::sys("setsockopt(SO_ATTACH_FILTER)", self.iface.clone(), e))
    }

    /// The status word of block `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        let off = i * self.block_size + tpacket::block::STATUS;
        debug_assert!(off + 4 <= self.ring.len());
        // SAFETY: `off` is inside the mapping (i < block_count) and 4-byte
        // aligned (blocks are page aligned, the field at offset 8). The
        // word is written concurrently by the kernel, which is what an
        // atomic is for; no `&mut` to this block exists while `&self` is
        // borrowed here (an `RxBlock` holds `&mut self`).
        unsafe { AtomicU32::from_ptr(self.ring.as_ptr().add(off).cast::<u32>()) }
    }

    fn ready(&self) -> bool {
        self.status(self.current).load(Ordering::Acquire) & sys::TP_STATUS_USER != 0
    }

    /// The next block of frames, waiting up to `timeout` for one (with
    /// poll(2): an idle worker sleeps). `Ok(None)` when nothing arrived.
    ///
    /// The frames' bytes stay valid until the returned block is dropped;
    /// queue their transmissions on a [`TxBatch`](super::TxBatch) and
    /// flush it before that.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<RxBlock<'_>>, IoError> {
        if !self.ready() {
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            let revents = match sys::poll_in(self.fd.as_fd(), ms) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(IoError::sys("poll", self.iface.clone(), e)),
            };
            if revents & libc::POLLERR != 0 {
                // E.g. ENETDOWN when the interface goes down. Reading
                // SO_ERROR clears it, so poll does not wake us again for it.
                let so: i32 = sys::getsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)
                    .map_err(|e| IoError::sys("getsockopt(SO_ERROR)", self.iface.clone(), e))?;
                if so != 0 {
                    return Err(IoError::sys(
                        "poll",
                        self.iface.clone(),
                        std::io::Error::from_raw_os_error(so),
                    ));
                }
            }
            if !self.ready() {
                return Ok(None);
            }
        }
        let i = self.current;
        let start = i * self.block_size;
        // SAFETY: block `i` lies inside the mapping. Its status is USER
        // (read with Acquire above, pairing with the kernel's release when
        // it retired the block), so the kernel will not touch these bytes
        // until we store KERNEL in `RxBlock::drop`. The slice borrows
        // `self` mutably through the `RxBlock`, so no other slice of this
        // block (nor the mapping's unmapping) can exist meanwhile.
        let data = unsafe {
            std::slice::from_raw_parts_mut(self.ring.as_ptr().add(start), self.block_size)
        };
        Ok(Some(RxBlock {
            data,
            next: &mut self.current,
            block_count: self.block_count,
            stats: &mut self.stats,
        }))
    }

    /// Counters; also folds in and resets the kernel's `PACKET_STATISTICS`.
    pub fn stats(&mut self) -> RxStats {
        if let Ok(k) = sys::getsockopt::<sys::TpacketStatsV3>(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            sys::PACKET_STATISTICS,
        ) {
            // tp_packets counts every frame, dropped ones included.
            self.stats.kernel_packets += u64::from(k.packets);
            self.stats.kernel_drops += u64::from(k.drops);
            self.stats.kernel_freezes += u64::from(k.freeze_q_cnt);
        }
        self.stats
    }
}

fn attach_filter(fd: BorrowedFd<'_>, filter: &Filter) -> std::io::Result<()> {
    let insns = filter.insns();
    let prog = libc::sock_fprog {
        len: insns.len() as libc::c_ushort,
        // `SockFilter` is `#[repr(C)]` with the layout of `sock_filter`;
        // the kernel only reads (copies) the program during the call.
        filter: insns.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// One block handed over by the kernel. Dropping it gives it back.
#[derive(Debug)]
pub struct RxBlock<'r> {
    data: &'r mut [u8],
    next: &'r mut usize,
    block_count: usize,
    stats: &'r mut RxStats,
}

impl RxBlock<'_> {
    /// The frames of the block, each lent as `&mut [u8]` until the block
    /// is dropped.
    pub fn frames(&mut self) -> Frames<'_> {
        Frames::counted(self.data, Some(&mut self.stats.malformed_blocks))
    }

    /// Frames in the block, as the kernel counted them.
    pub fn len(&self) -> usize {
        BlockHeader::parse(self.data).map_or(0, |h| h.num_pkts as usize)
    }

    /// Whether the block holds no frame (a timer-retired empty block).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kernel's sequence number of the block.
    pub fn seq(&self) -> u64 {
        BlockHeader::parse(self.data).map_or(0, |h| h.seq)
    }
}

impl Drop for RxBlock<'_> {
    fn drop(&mut self) {
        self.stats.blocks += 1;
        self.stats.frames += self.len() as u64;
        let status = &mut self.data[tpacket::block::STATUS..tpacket::block::STATUS + 4];
        // SAFETY: the status word is inside this block, 4-byte aligned
        // (page-aligned block, offset 8), and derived from our `&mut`
        // slice, which is not used again after this store.
        let word = unsafe { AtomicU32::from_ptr(status.as_mut_ptr().cast::<u32>()) };
        // Release: every read and in-place write of the frames happens
        // before the kernel may reuse the block.
        word.store(sys::TP_STATUS_KERNEL, Ordering::Release);
        *self.next = (*self.next + 1) % self.block_count;
    }
}
