//! Thin wrappers over the system calls the I/O module needs, and the
//! kernel ABI constants of `<linux/if_packet.h>` that the `libc` crate does
//! not export on every target.
//!
//! Every `unsafe` block of the crate's packet I/O that is a plain system
//! call lives here, each with its `// SAFETY:` argument; the wrappers take
//! and return safe types (`OwnedFd`, `io::Result`), so the rest of the
//! module reasons about sockets, not pointers. The two exceptions are the
//! ring's memory (`afpacket.rs`: the shared block status words and the
//! block slices) and `sendmmsg`, whose iovec pointers only the TX queue can
//! vouch for.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

// <linux/if_packet.h>. Stable kernel ABI; spelled out here because the
// `libc` crate exports only some of them for linux-gnu.
pub(crate) const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
pub(crate) const PACKET_RX_RING: libc::c_int = 5;
pub(crate) const PACKET_STATISTICS: libc::c_int = 6;
pub(crate) const PACKET_VERSION: libc::c_int = 10;
pub(crate) const PACKET_VNET_HDR: libc::c_int = 15;
pub(crate) const PACKET_COPY_THRESH: libc::c_int = 7;
pub(crate) const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(crate) const PACKET_FANOUT: libc::c_int = 18;
pub(crate) const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
pub(crate) const TPACKET_V2: libc::c_int = 1;
pub(crate) const TPACKET_V3: libc::c_int = 2;
pub(crate) const PACKET_MR_PROMISC: libc::c_ushort = 1;

pub(crate) const PACKET_FANOUT_HASH: u32 = 0;
pub(crate) const PACKET_FANOUT_LB: u32 = 1;
pub(crate) const PACKET_FANOUT_CPU: u32 = 2;
/// Fanout flag: the group skips outgoing frames (Linux 4.20+, the group
/// counterpart of `PACKET_IGNORE_OUTGOING`).
pub(crate) const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;

/// Block status: owned by the kernel / handed to user space.
pub(crate) const TP_STATUS_KERNEL: u32 = 0;
pub(crate) const TP_STATUS_USER: u32 = 1;

/// ETH_P_ALL in network byte order, as `socket(2)` and `bind(2)` want it.
pub(crate) const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// `struct tpacket_req` (TPACKET_V1/V2 rings).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TpacketReq {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
}

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TpacketReq3 {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_blk_tov: u32,
    pub sizeof_priv: u32,
    pub feature_req_word: u32,
}

/// `struct tpacket_stats_v3`. For a V2 socket the kernel fills only the
/// first two fields (`struct tpacket_stats`) and leaves the third 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TpacketStatsV3 {
    pub packets: u32,
    pub drops: u32,
    pub freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PacketMreq {
    pub ifindex: libc::c_int,
    pub kind: libc::c_ushort,
    pub alen: libc::c_ushort,
    pub address: [u8; 8],
}

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, protocol)`; `protocol_be`
/// in network byte order (0: a socket that receives nothing until bound
/// with a protocol).
pub(crate) fn packet_socket(protocol_be: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; on success it returns a fresh
    // descriptor that nothing else owns, so `OwnedFd` may take it.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol_be),
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `socket(AF_INET, SOCK_DGRAM)`: a handle for interface ioctls.
pub(crate) fn inet_dgram_socket() -> io::Result<OwnedFd> {
    // SAFETY: as in `packet_socket`: no pointers, fresh descriptor.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
///
/// `T` must be the plain C struct or integer the option expects; the
/// kernel copies exactly `size_of::<T>()` bytes from `value`.
pub(crate) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live reference to `size_of::<T>()` readable
    // bytes for the duration of the call; the kernel only reads them.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// `getsockopt` of a plain C struct or integer.
pub(crate) fn getsockopt<T: Copy + Default>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable `T` of `len` bytes and `len` a
    // live `socklen_t`; the kernel writes at most `len` bytes. `T` is a
    // plain C type (integers only), so any bytes written are a valid `T`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    check(ret).map(|_| value)
}

/// `recv(2)` of one packet without waiting. Returns its whole length
/// (`MSG_TRUNC`), which exceeds `buf.len()` when it did not fit.
pub(crate) fn recv_dontwait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes; the kernel
    // writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `bind(2)` an AF_PACKET socket to `ifindex` and `protocol_be`.
pub(crate) fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32, protocol_be: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a live sockaddr_ll and the length passed is its size.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// Waits up to `timeout_ms` (−1: forever) for `fd` to become readable.
/// Returns the `revents` bits (0 on timeout).
pub(crate) fn poll_in(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one live pollfd and we pass nfds = 1.
    let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    check(ret).map(|n| if n == 0 { 0 } else { pfd.revents })
}

/// Like [`poll_in`], but also returns early when `wake` is readable.
/// Returns `fd`'s `revents` bits (0 on timeout or wake-up).
pub(crate) fn poll_in_or_wake(
    fd: BorrowedFd<'_>,
    wake: BorrowedFd<'_>,
    timeout_ms: libc::c_int,
) -> io::Result<libc::c_short> {
    let mut pfds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `pfds` is two live pollfds and we pass nfds = 2.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), 2, timeout_ms) };
    check(ret).map(|n| if n == 0 { 0 } else { pfds[0].revents })
}

/// Pins the calling thread to the `n`-th CPU (modulo their number) of
/// those it may run on now, and returns that CPU. Counting within the
/// allowed set, not from CPU 0, keeps this right under a cpuset such as a
/// container's `4-7` (sched_getaffinity(2), sched_setaffinity(2)).
pub fn pin_current_thread(n: usize) -> io::Result<usize> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid empty set (plain bits).
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a live cpu_set_t of `size` bytes for the kernel
    // to fill. Pid 0 is the calling thread.
    check(unsafe { libc::sched_getaffinity(0, size, &mut allowed) })?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every index is below CPU_SETSIZE; CPU_ISSET only reads.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let Some(&cpu) = cpus.get(n % cpus.len().max(1)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: as above, a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the allowed set, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of `size` bytes; the call only
    // reads it. Pid 0 is the calling thread.
    check(unsafe { libc::sched_setaffinity(0, size, &set) })?;
    Ok(cpu)
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd
    // that nothing else owns.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by eventfd and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add 1 to an eventfd's counter (it becomes readable).
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, a live u64, to the fd.
    let ret = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    check(ret as libc::c_int).map(drop)
}

/// Reset an eventfd's counter (readable no more); a no-op if it is 0.
pub(crate) fn eventfd_clear(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into `v`, a live u64. EAGAIN (counter
    // already 0) is the expected "nothing to clear".
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// A shared memory mapping of a packet socket's ring, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving the
// owner to another thread moves the right to use and unmap it.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd`'s ring, shared with the kernel.
    pub(crate) fn ring(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL), so no
        // existing Rust object is aliased; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: NULL"))?;
        Ok(Mmap { ptr, len })
    }

    /// Start of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every
        // borrow of the ring's memory (an `RxBlock`) borrows the socket
        // that owns this mapping, so none outlives it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `sendmmsg(fd, msgs, len, flags)`: returns how many were sent.
///
/// # Safety
/// Every `msg_hdr` in `msgs` must point at live iovecs whose buffers are
/// readable for their lengths, and at a valid (or null) `msg_name`.
pub(crate) unsafe fn sendmmsg(
    fd: BorrowedFd<'_>,
    msgs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: `msgs` is a live slice of that length; the pointers inside
    // are valid per this function's contract. The kernel writes only
    // `msg_len` fields of `msgs`.
    let ret = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            flags,
        )
    };
    check(ret).map(|n| n as usize)
}

/// Copies an interface name into a zeroed `ifreq`. The caller has checked
/// that it is 1..IFNAMSIZ-1 bytes without NUL.
fn ifreq_for(name: &CStr) -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct (a name and a union of integers
    // and sockaddrs); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.to_bytes()) {
        *dst = *src as libc::c_char;
    }
    req
}

/// `ioctl(fd, request, &ifreq{name})` for the SIOCGIF* getters; returns the
/// filled `ifreq`.
pub(crate) fn ioctl_ifreq(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    name: &CStr,
) -> io::Result<libc::ifreq> {
    let mut req = ifreq_for(name);
    // SAFETY: `req` is a live, writable ifreq; the SIOCGIF* requests used
    // by this module read the name and write only inside the struct.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req) };
    check(ret).map(|_| req)
}

/// Reads the union member of an `ifreq` filled by SIOCGIFINDEX.
pub(crate) fn ifreq_ifindex(req: &libc::ifreq) -> libc::c_int {
    // SAFETY: SIOCGIFINDEX wrote `ifru_ifindex`; every union member is
    // plain integers, so reading any of them is defined.
    unsafe { req.ifr_ifru.ifru_ifindex }
}

/// Reads the union member of an `ifreq` filled by SIOCGIFMTU.
pub(crate) fn ifreq_mtu(req: &libc::ifreq) -> libc::c_int {
    // SAFETY: as `ifreq_ifindex`, for SIOCGIFMTU's `ifru_mtu`.
    unsafe { req.ifr_ifru.ifru_mtu }
}

/// Reads the union member of an `ifreq` filled by SIOCGIFHWADDR:
/// (ARPHRD type, first 6 address bytes).
pub(crate) fn ifreq_hwaddr(req: &libc::ifreq) -> (u16, [u8; 6]) {
    // SAFETY: as `ifreq_ifindex`, for SIOCGIFHWADDR's `ifru_hwaddr`
    // (a sockaddr: an integer family and a byte array).
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    (sa.sa_family, mac)
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread.
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes no pointers; it changes only the calling
    // thread's network namespace, which Rust code does not depend on.
    let ret = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    check(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs this thread may run on, as /proc says.
    fn allowed_list() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn a_pinned_thread_runs_on_the_nth_allowed_cpu_only() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for n in [0, 1, cpus, 3 * cpus + 1] {
            // A fresh thread each time: pinning narrows the thread's own
            // set, which the next call would count within.
            let (cpu, list) = std::thread::spawn(move || {
                let cpu = pin_current_thread(n).unwrap();
                (cpu, allowed_list())
            })
            .join()
            .unwrap();
            assert_eq!(list, cpu.to_string(), "n = {n}");
        }
        let first = std::thread::spawn(|| pin_current_thread(0).unwrap())
            .join()
            .unwrap();
        let wrapped = std::thread::spawn(move || pin_current_thread(cpus).unwrap())
            .join()
            .unwrap();
        assert_eq!(first, wrapped, "n counts modulo the allowed CPUs");
    }
}
