//! Packet I/O on AF_PACKET: the only module of the crate that talks to the
//! kernel, and the only one allowed `unsafe` (each block says why it is
//! sound in a `// SAFETY:` comment; most of them are in `sys.rs`).
//!
//! - [`AfPacket`]: a receive socket on one interface with a TPACKET_V2
//!   ring (each frame handed over as it arrives; the default) or a
//!   TPACKET_V3 one (frames batched in blocks; [`RingVersion`]), a fanout
//!   group ([`Fanout`], flow hash by default) so N workers share the
//!   interface, `PACKET_IGNORE_OUTGOING`, and a classic BPF [`Filter`]
//!   built from the dataplane's predicates (ARP, IPv4 to the VIPs, IPv4
//!   from the NAT real servers, VRRP). [`AfPacket::recv`] waits with
//!   poll(2) — an idle worker sleeps — and hands over one ring block or
//!   run of frames ([`RxBlock`]) whose frames are lent as `&mut [u8]` with
//!   their [`FrameMeta`] (checksum partial/verified, stripped VLAN tag);
//!   dropping the block gives it back to the kernel. Nothing is allocated
//!   per frame.
//! - [`TxQueue`]/[`TxBatch`]: batched `sendmmsg` of frames straight from
//!   the ring, prefix + body for TUN (two iovecs), and small copied frames
//!   (ICMP, ARP); errors are counted in [`TxStats`], never raised.
//! - [`if_info`]: index, MAC, MTU of an interface; [`run_in_netns`]: open
//!   sockets in another network namespace.
//! - [`pin_current_thread`]: a worker pinned to the CPU whose frames it
//!   takes (with [`FanoutMode::Cpu`]).
//!
//! A worker's loop:
//!
//! ```no_run
//! # use director::io::*;
//! # use std::time::Duration;
//! # fn main() -> Result<(), IoError> {
//! let filter = Filter::builder().arp().ipv4_to(["10.0.0.100".parse().unwrap()]).build().unwrap();
//! let cfg = RxConfig { filter: Some(filter), fanout: Some(Fanout { group: 7, mode: FanoutMode::Hash }), ..RxConfig::default() };
//! let mut rx = AfPacket::open("eth1", &cfg)?;
//! let mut tx = TxQueue::open("eth1", &TxConfig::default())?;
//! loop {
//!     let Some(mut block) = rx.recv(Duration::from_millis(100))? else { continue };
//!     let mut batch = tx.batch();
//!     for frame in block.frames() {
//!         if frame.meta.truncated() { continue }
//!         // ... classify with frame.meta.l4_csum(), rewrite frame.data in place ...
//!         batch.push(frame.data);
//!     }
//!     // `batch` flushes when dropped, before `block` returns to the kernel.
//! }
//! # }
//! ```
//!
//! What the kernel hands over on a veth with offloads on (observed in the
//! lab): frames from a local sender's UDP/TCP carry
//! `TP_STATUS_CSUMNOTREADY`, their L4 checksum holding only the
//! pseudo-header sum ([`FrameMeta::l4_csum`] maps it to
//! `L4Csum::Partial`, and the rewrites complete it before sending); with
//! TSO/GSO on, a TCP sender's segments arrive as single "frames" of up to
//! 64 KiB ([`FrameMeta::exceeds_mtu`]), which a plain socket cannot send
//! on (EMSGSIZE, counted in [`TxStats`]). Two ways to run:
//! - offloads off on the data interfaces (the daemon's default, and the
//!   lab's `disable_offloads`): every frame is MTU-sized;
//! - offloads on, with [`RxConfig::for_offloads`] and
//!   [`TxConfig::vnet_hdr`]: every frame comes and goes behind a
//!   [`VnetHdr`] that gives a merged frame's segment size (a merged frame
//!   too big for its V2 slot waits whole in the socket's queue, read with
//!   [`OversizeReader`] in step with its marked slot), and
//!   [`TxBatch::push_verdict_offloaded`] hands it back to the kernel whole
//!   (checksum left partial, the same segment size), or cuts it itself
//!   for TUN.

#![allow(unsafe_code)]

mod afpacket;
mod bpf;
mod error;
mod iface;
mod netns;
mod sys;
mod tpacket;
mod tpacket2;
mod tx;
mod vnet;
mod wake;

pub use afpacket::{
    AfPacket, Fanout, FanoutMode, OversizeReader, RingVersion, RxBlock, RxConfig, RxStats,
};
pub use bpf::{Filter, FilterBuilder, FilterTooLong, MAX_INSNS, SockFilter, op};
pub use error::IoError;
pub use iface::{IfInfo, if_index, if_info};
pub use netns::{netns_path, run_in_netns};
pub use sys::pin_current_thread;
pub use tpacket::{FrameMeta, Frames, RxFrame, VlanTag};
pub use tx::{SCRATCH_LEN, TxBatch, TxConfig, TxQueue, TxStats};
pub use vnet::{F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};
pub use wake::Wake;
