//! Direct routing (ipvsadm `-g`): the frame goes to the real server's MAC
//! with the IP packet unchanged. The real server holds the VIP on a
//! non-ARPing interface, accepts the packet as addressed to itself and
//! answers the client directly, bypassing the director.
//!
//! Only the two Ethernet addresses change. The IP header — TTL included —
//! is left exactly as it arrived, so no checksum is touched and the cost
//! is a 12-byte copy. (Kernel IPVS since Linux 4.x also decrements the TTL
//! here, in `__ip_vs_get_out_rt`; this dataplane deliberately keeps the
//! director invisible at layer 3 for DR, as a bridge-like hop.)

use super::mac::MacPair;
use super::packet::{Packet, ensure_complete, finish_offload};
use super::{Verdict, set_macs};

/// Rewrites `frame` in place for direct routing: destination MAC :=
/// `macs.dst` (the real server), source MAC := `macs.src` (ours).
///
/// # Panics
/// If `frame` is not the frame `pkt` was classified from.
#[inline]
pub fn rewrite(frame: &mut [u8], pkt: &Packet, macs: MacPair) -> Verdict {
    ensure_complete(frame, pkt);
    finish_offload(frame, pkt);
    set_macs(frame, macs);
    Verdict::Transmit { len: frame.len() }
}
