//! Waking a thread blocked in [`AfPacket::recv_or_wake`](super::AfPacket::recv_or_wake)
//! from another thread: an eventfd in the same poll(2).
//!
//! The ARP thread sleeps on its socket between timers; when the node
//! becomes master it must send its gratuitous ARP now, not at its next
//! timer, so the daemon wakes it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::sys;

/// A wake-up a thread can wait on beside its socket.
#[derive(Debug)]
pub struct Wake {
    fd: OwnedFd,
}

impl Wake {
    /// A new, unsignalled wake-up.
    pub fn new() -> io::Result<Wake> {
        Ok(Wake {
            fd: sys::eventfd()?,
        })
    }

    /// Wake the waiting thread (or the next wait, if none waits now).
    pub fn wake(&self) {
        // Cannot fail short of a counter overflow (2^64 wake-ups unread).
        let _ = sys::eventfd_signal(self.fd.as_fd());
    }

    /// Forget pending wake-ups (the waiter does this before it looks at
    /// what it was woken for).
    pub fn clear(&self) {
        sys::eventfd_clear(self.fd.as_fd());
    }
}

impl AsFd for Wake {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_seen_until_cleared() {
        let w = Wake::new().unwrap();
        let readable = |w: &Wake| sys::poll_in(w.as_fd(), 0).unwrap() != 0;
        assert!(!readable(&w));
        w.wake();
        w.wake();
        assert!(readable(&w));
        w.clear();
        assert!(!readable(&w));
    }
}
