//! The receive socket: AF_PACKET bound to one interface, with a
//! memory-mapped ring (TPACKET_V2 or TPACKET_V3, [`RingVersion`]), a
//! fanout group so several workers share the interface, and a classic BPF
//! filter so only the dataplane's traffic is copied into the ring.
//!
//! ```text
//! V3 kernel ── fills block k ──(full or retire timer)──> status USER
//!    worker ── recv(): poll(2) until block k is USER ──> RxBlock
//!           ── drop(RxBlock): status KERNEL, k += 1
//! V2 kernel ── writes frame k, status USER, wakes the socket at once
//!    worker ── recv(): poll(2) until slot k is USER; takes the run of USER
//!              slots k..k+n (bounded, never past the ring's end) ──> RxBlock
//!           ── drop(RxBlock): status KERNEL on each, k += n
//! both      ── frames(): &mut [u8] per frame, rewritten in place, queued on
//!              a TxBatch (pointers into the ring) and flushed before drop
//! ```
//!
//! V3 hands over nothing until a block fills or its retire timer (1 ms at
//! the finest) fires, so at low and moderate rates every packet waits for
//! the timer: the lab bench measured small HTTP requests through the
//! director capped at 16k/s with a 4 ms timer and 64k/s with 1 ms. V2
//! hands over each frame as it is written; it costs a little more per
//! frame at high rates (a status word per frame instead of per block).
//!
//! Set-up order matters: the socket is created with protocol 0 (it
//! receives nothing), gets its filter, options and ring, and only then is
//! bound to the interface with ETH_P_ALL and joined to the fanout group,
//! so no unfiltered frame ever lands in the ring.
//!
//! The unsafe code here is the shared memory: the block (V3) or frame (V2)
//! status words are read and written as atomics (the kernel writes them
//! from another CPU), and a handed-over block or run of frames is turned
//! into one `&mut [u8]` whose lifetime is tied to the `RxBlock` that gives
//! it back.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::bpf::Filter;
use super::error::IoError;
use super::iface;
use super::sys::{self, Mmap};
use super::tpacket::{self, BlockHeader, Frames};
use super::tpacket2;
use super::vnet::{VNET_HDR_LEN, VnetHdr};

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

/// The ring layout of a receive socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingVersion {
    /// TPACKET_V2: fixed-size frame slots, each handed over (and the
    /// socket woken) as soon as the kernel has written it. No added
    /// latency at any rate; the default.
    #[default]
    V2,
    /// TPACKET_V3: frames packed into blocks, a block handed over when it
    /// is full or `retire_timeout` old. Fewer status words per frame at
    /// high rates, up to `retire_timeout` of added latency at low ones.
    V3,
}

impl std::str::FromStr for RingVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v2" | "V2" | "tpacket_v2" => Ok(RingVersion::V2),
            "v3" | "V3" | "tpacket_v3" => Ok(RingVersion::V3),
            _ => Err(format!("ring `{s}`: want v2 or v3")),
        }
    }
}

impl std::fmt::Display for RingVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingVersion::V2 => "v2",
            RingVersion::V3 => "v3",
        })
    }
}

/// Geometry and options of a receive socket.
#[derive(Debug, Clone)]
pub struct RxConfig {
    /// TPACKET_V2 or TPACKET_V3.
    pub version: RingVersion,
    /// Bytes per ring block; a multiple of the page size (V2: and of
    /// `frame_size`). V3 hands a block over whole, so it bounds a batch.
    pub block_size: u32,
    /// Blocks in the ring.
    pub block_count: u32,
    /// The frame size the kernel checks the geometry against (a multiple
    /// of 16). V2: the slot size, header included (a 2048-byte slot holds
    /// a 1982-byte frame; longer ones are truncated). V3 packs frames
    /// tightly in a block; a frame longer than a block is truncated.
    pub frame_size: u32,
    /// V3: how long the kernel waits before handing over a block that is
    /// not full: the latency bound at low rates. Unused by V2.
    pub retire_timeout: Duration,
    /// V2: the most frames handed over in one [`RxBlock`]. Unused by V3.
    pub max_batch: u32,
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
    /// `PACKET_VNET_HDR`: each frame comes with a virtio-net header
    /// ([`FrameMeta::vnet`](super::FrameMeta::vnet)), so GRO/TSO
    /// super-frames arrive with their segment size. Such frames are up to
    /// 64 KiB, far larger than a V2 slot: see `oversize_queue`
    /// ([`RxConfig::for_offloads`] sets both).
    pub vnet_hdr: bool,
    /// V2: bytes of socket queue for frames too big for their slot
    /// (`PACKET_COPY_THRESH`, `SO_RCVBUFFORCE`). The kernel still marks
    /// such a frame's slot, in order (`FrameMeta::copied`), and queues the
    /// whole frame on the socket, where [`OversizeReader::read`] takes it.
    /// Slots stay small for the many small frames, and a merged frame
    /// takes only its own size, while it waits. `None`: such frames are
    /// cut to the slot ([`FrameMeta::truncated`](super::FrameMeta::truncated)).
    pub oversize_queue: Option<usize>,
}
impl Default for RxConfig {
    fn default() -> Self {
        RxConfig {
            version: RingVersion::default(),
            block_size: 1 << 20,
            block_count: 16,
            frame_size: 2048,
            // The kernel hands a TPACKET_V3 block over when it is full or
            // this old. At low rates every packet waits for it: with 4 ms,
            // small HTTP requests through the director were capped at 16k/s
            // with p99 4.3 ms (lab bench). 1 ms is the kernel's finest.
            retire_timeout: Duration::from_millis(1),
            max_batch: 256,
            fanout: None,
            filter: None,
            ignore_outgoing: true,
            promiscuous: false,
            vnet_hdr: false,
            oversize_queue: None,
        }
    }
}

impl RxConfig {
    /// This configuration with offloads on: virtio-net headers and, for a
    /// V2 ring, a socket queue of four times the ring's size for merged
    /// frames (a V3 ring packs frames of any size into its blocks).
    pub fn for_offloads(mut self) -> RxConfig {
        self.vnet_hdr = true;
        if self.version == RingVersion::V2 {
            let bytes = u64::from(self.block_size) * u64::from(self.block_count);
            self.oversize_queue = Some(usize::try_from(bytes * 4).unwrap_or(usize::MAX));
        }
        self
    }

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
        if self.version == RingVersion::V2 {
            if !self.block_size.is_multiple_of(self.frame_size) {
                return Err(IoError::RingConfig(
                    "a V2 ring's block_size must be a multiple of frame_size",
                ));
            }
            if self.max_batch == 0 {
                return Err(IoError::RingConfig("max_batch must be at least 1"));
            }
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
    /// Batches handed over and released (V3: blocks).
    pub blocks: u64,
    /// Frames handed over (as the kernel counts them).
    pub frames: u64,
    /// V3: blocks whose frame chain made no sense when walked; V2: frame
    /// slots whose header made no sense (skipped). Never seen from a sane
    /// kernel; counted rather than trusted.
    pub malformed_blocks: u64,
    /// Frames the kernel accepted (after the filter), from
    /// `PACKET_STATISTICS`, summed over reads.
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub kernel_drops: u64,
    /// Times the ring was full ("queue frozen").
    pub kernel_freezes: u64,
}

/// Where the status words are: one per block (V3) or per frame slot (V2).
#[derive(Debug, Clone, Copy)]
enum Layout {
    Blocks {
        block_size: usize,
        block_count: usize,
    },
    Slots {
        frame_size: usize,
        frame_count: usize,
        max_batch: usize,
    },
}

impl Layout {
    /// Units (blocks or slots) in the ring.
    fn units(&self) -> usize {
        match *self {
            Layout::Blocks { block_count, .. } => block_count,
            Layout::Slots { frame_count, .. } => frame_count,
        }
    }

    /// Byte offset of unit `i` and of its status word.
    fn offsets(&self, i: usize) -> (usize, usize) {
        match *self {
            Layout::Blocks { block_size, .. } => {
                (i * block_size, i * block_size + tpacket::block::STATUS)
            }
            Layout::Slots { frame_size, .. } => {
                (i * frame_size, i * frame_size + tpacket2::hdr::STATUS)
            }
        }
    }
}

/// An AF_PACKET receive socket with a TPACKET_V2 or V3 ring on one
/// interface.
#[derive(Debug)]
pub struct AfPacket {
    // Field order: the mapping is unmapped before the socket is closed.
    ring: Mmap,
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    layout: Layout,
    /// Frames come with a virtio-net header.
    vnet: bool,
    /// The next block or slot to hand over (the kernel fills them in
    /// order).
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
        let version = match cfg.version {
            RingVersion::V2 => sys::TPACKET_V2,
            RingVersion::V3 => sys::TPACKET_V3,
        };
        sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_VERSION, &version)
            .map_err(err("setsockopt(PACKET_VERSION)"))?;
        if let Some(filter) = &cfg.filter {
            attach_filter(s, filter).map_err(err("setsockopt(SO_ATTACH_FILTER)"))?;
        }
        if cfg.ignore_outgoing {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_IGNORE_OUTGOING, &1i32)
                .map_err(err("setsockopt(PACKET_IGNORE_OUTGOING)"))?;
        }
        // Before the ring: the kernel refuses it on a socket with one.
        if cfg.vnet_hdr {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_VNET_HDR, &1i32)
                .map_err(err("setsockopt(PACKET_VNET_HDR)"))?;
        }
        if let Some(bytes) = cfg.oversize_queue {
            sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_COPY_THRESH, &1i32)
                .map_err(err("setsockopt(PACKET_COPY_THRESH)"))?;
            // Past rmem_max needs CAP_NET_ADMIN (directord has it); without
            // it, what rmem_max allows.
            let n = bytes.min(i32::MAX as usize / 2) as i32;
            sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &n)
                .or_else(|_| sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, &n))
                .map_err(err("setsockopt(SO_RCVBUF)"))?;
        }
        let frame_nr = cfg.block_size / cfg.frame_size * cfg.block_count;
        let layout = match cfg.version {
            RingVersion::V2 => {
                let req = sys::TpacketReq {
                    block_size: cfg.block_size,
                    block_nr: cfg.block_count,
                    frame_size: cfg.frame_size,
                    frame_nr,
                };
                sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_RX_RING, &req)
                    .map_err(err("setsockopt(PACKET_RX_RING)"))?;
                Layout::Slots {
                    frame_size: cfg.frame_size as usize,
                    frame_count: frame_nr as usize,
                    max_batch: cfg.max_batch as usize,
                }
            }
            RingVersion::V3 => {
                let req = sys::TpacketReq3 {
                    block_size: cfg.block_size,
                    block_nr: cfg.block_count,
                    frame_size: cfg.frame_size,
                    frame_nr,
                    retire_blk_tov: cfg
                        .retire_timeout
                        .as_millis()
                        .clamp(1, u128::from(u32::MAX)) as u32,
                    sizeof_priv: 0,
                    feature_req_word: 0,
                };
                sys::setsockopt(s, libc::SOL_PACKET, sys::PACKET_RX_RING, &req)
                    .map_err(err("setsockopt(PACKET_RX_RING)"))?;
                Layout::Blocks {
                    block_size: cfg.block_size as usize,
                    block_count: cfg.block_count as usize,
                }
            }
        };
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
            layout,
            vnet: cfg.vnet_hdr,
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

    /// The ring layout this socket was opened with.
    pub fn version(&self) -> RingVersion {
        match self.layout {
            Layout::Blocks { .. } => RingVersion::V3,
            Layout::Slots { .. } => RingVersion::V2,
        }
    }

    /// The status word of block or slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        assert!(i < self.layout.units());
        let (_, off) = self.layout.offsets(i);
        debug_assert!(off + 4 <= self.ring.len());
        // SAFETY: `off` is inside the mapping (i < units, and the mapping
        // is units × unit size long) and 4-byte aligned (blocks are page
        // aligned with the field at offset 8; V2 slots are multiples of 16
        // bytes with the field at offset 0). The word is written
        // concurrently by the kernel, which is what an atomic is for; no
        // `&mut` to this unit exists while `&self` is borrowed here (an
        // `RxBlock` holds `&mut self`).
        unsafe { AtomicU32::from_ptr(self.ring.as_ptr().add(off).cast::<u32>()) }
    }

    fn is_user(&self, i: usize) -> bool {
        self.status(i).load(Ordering::Acquire) & sys::TP_STATUS_USER != 0
    }

    fn ready(&self) -> bool {
        self.is_user(self.current)
    }

    /// The next block of frames (V2: the run of frames ready now, at most
    /// `max_batch`), waiting up to `timeout` for one (with poll(2): an
    /// idle worker sleeps). `Ok(None)` when nothing arrived.
    ///
    /// The frames' bytes stay valid until the returned block is dropped;
    /// queue their transmissions on a [`TxBatch`](super::TxBatch) and
    /// flush it before that.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<RxBlock<'_>>, IoError> {
        self.recv_or_wake(timeout, None)
    }

    /// [`AfPacket::recv`] that also returns `Ok(None)` as soon as `wake`
    /// is signalled (the caller clears it).
    pub fn recv_or_wake(
        &mut self,
        timeout: Duration,
        wake: Option<&super::Wake>,
    ) -> Result<Option<RxBlock<'_>>, IoError> {
        if !self.ready() {
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            let polled = match wake {
                Some(w) => sys::poll_in_or_wake(self.fd.as_fd(), w.as_fd(), ms),
                None => sys::poll_in(self.fd.as_fd(), ms),
            };
            let revents = match polled {
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
        let (start, units, kind) = match self.layout {
            Layout::Blocks {
                block_size,
                block_count,
            } => (i * block_size, block_size, Kind::Block { block_count }),
            Layout::Slots {
                frame_size,
                frame_count,
                max_batch,
            } => {
                // The run of slots the kernel has handed over, in order;
                // it stops at the first one still the kernel's, at the
                // batch bound and at the ring's end (the slice must be
                // contiguous; the next call starts at slot 0).
                let limit = max_batch.min(frame_count - i);
                let mut n = 1;
                while n < limit && self.is_user(i + n) {
                    n += 1;
                }
                let seq = self.stats.blocks;
                (
                    i * frame_size,
                    n * frame_size,
                    Kind::Slots {
                        frame_size,
                        frame_count,
                        n,
                        seq,
                    },
                )
            }
        };
        debug_assert!(start + units <= self.ring.len());
        // SAFETY: the range lies inside the mapping (units below the
        // ring's count, V2 runs stopped at the ring's end). Every block or
        // slot in it has status USER (read with Acquire above, pairing
        // with the kernel's release when it handed the unit over), so the
        // kernel will not touch these bytes until we store KERNEL in
        // `RxBlock::drop`. The slice borrows `self` mutably through the
        // `RxBlock`, so no other slice of the ring (nor the mapping's
        // unmapping) can exist meanwhile.
        let data = unsafe { std::slice::from_raw_parts_mut(self.ring.as_ptr().add(start), units) };
        Ok(Some(RxBlock {
            data,
            next: &mut self.current,
            kind,
            vnet: self.vnet,
            fd: self.fd.as_fd(),
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

/// What an [`RxBlock`] covers.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One V3 block of a ring of `block_count`.
    Block { block_count: usize },
    /// `n` consecutive V2 slots of a ring of `frame_count`; `seq` counts
    /// the batches of the socket.
    Slots {
        frame_size: usize,
        frame_count: usize,
        n: usize,
        seq: u64,
    },
}

/// One block (V3) or run of frames (V2) handed over by the kernel.
/// Dropping it gives it back.
#[derive(Debug)]
pub struct RxBlock<'r> {
    data: &'r mut [u8],
    next: &'r mut usize,
    kind: Kind,
    vnet: bool,
    fd: BorrowedFd<'r>,
    stats: &'r mut RxStats,
}

impl<'r> RxBlock<'r> {
    /// What reads the whole of the frames marked
    /// [`copied`](super::FrameMeta::copied), while [`RxBlock::frames`]
    /// lends the block's frames.
    pub fn oversize_reader(&self) -> OversizeReader<'r> {
        OversizeReader {
            fd: self.fd,
            vnet: self.vnet,
        }
    }

    /// The frames of the block, each lent as `&mut [u8]` until the block
    /// is dropped.
    pub fn frames(&mut self) -> Frames<'_> {
        let counter = Some(&mut self.stats.malformed_blocks);
        match self.kind {
            Kind::Block { .. } => Frames::counted(self.data, counter),
            Kind::Slots { frame_size, .. } => Frames::slots(self.data, frame_size, counter),
        }
        .with_vnet(self.vnet)
    }

    /// Frames in the block, as the kernel counted them.
    pub fn len(&self) -> usize {
        match self.kind {
            Kind::Block { .. } => BlockHeader::parse(self.data).map_or(0, |h| h.num_pkts as usize),
            Kind::Slots { n, .. } => n,
        }
    }

    /// Whether the block holds no frame (a timer-retired empty V3 block;
    /// never for V2).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// V3: the kernel's sequence number of the block; V2: the socket's
    /// count of batches before this one.
    pub fn seq(&self) -> u64 {
        match self.kind {
            Kind::Block { .. } => BlockHeader::parse(self.data).map_or(0, |h| h.seq),
            Kind::Slots { seq, .. } => seq,
        }
    }
}

/// Reads frames too big for their slot from the socket's queue, in the
/// order their slots were marked.
#[derive(Debug, Clone, Copy)]
pub struct OversizeReader<'r> {
    fd: BorrowedFd<'r>,
    vnet: bool,
}

/// Room for the largest frame the kernel merges (64 KiB of IP), its
/// Ethernet header and a virtio-net header.
const OVERSIZE_LEN: usize = 65_536 + 64;

impl OversizeReader<'_> {
    /// The next queued frame, read into `buf` (grown to fit the largest
    /// once, then reused), with its virtio-net header if the socket has
    /// them. `None` when nothing is queued (the kernel had no room to
    /// queue it: the frame is lost) or it did not fit.
    pub fn read<'b>(&self, buf: &'b mut Vec<u8>) -> Option<(Option<VnetHdr>, &'b mut [u8])> {
        if buf.len() < OVERSIZE_LEN {
            buf.resize(OVERSIZE_LEN, 0);
        }
        let n = sys::recv_dontwait(self.fd, buf).ok()?;
        if n > buf.len() {
            return None;
        }
        let (hdr, frame) = buf[..n].split_at_mut(if self.vnet { VNET_HDR_LEN } else { 0 });
        let vnet = self.vnet.then(|| VnetHdr::parse(hdr));
        Some((vnet, frame))
    }
}

/// Gives the unit starting at `unit[status_off..]` back to the kernel.
fn release(unit: &mut [u8], status_off: usize) {
    let status = &mut unit[status_off..status_off + 4];
    // SAFETY: the status word is inside this unit and 4-byte aligned
    // (page-aligned block with the word at offset 8, or a slot of a
    // multiple of 16 bytes with it at offset 0), and derived from our
    // `&mut` slice, which is not used again after this store.
    let word = unsafe { AtomicU32::from_ptr(status.as_mut_ptr().cast::<u32>()) };
    // Release: every read and in-place write of the frames happens before
    // the kernel may reuse the unit.
    word.store(sys::TP_STATUS_KERNEL, Ordering::Release);
}

impl Drop for RxBlock<'_> {
    fn drop(&mut self) {
        let len = self.len();
        self.stats.blocks += 1;
        self.stats.frames += len as u64;
        match self.kind {
            Kind::Block { block_count } => {
                release(self.data, tpacket::block::STATUS);
                *self.next = (*self.next + 1) % block_count;
            }
            Kind::Slots {
                frame_size,
                frame_count,
                n,
                ..
            } => {
                for slot in self.data.chunks_exact_mut(frame_size) {
                    release(slot, tpacket2::hdr::STATUS);
                }
                *self.next = (*self.next + n) % frame_count;
            }
        }
    }
}
