//! Errors of the packet I/O module: which operation failed, on which
//! interface, with the kernel's errno and a hint for the usual causes.

use std::io;

/// A packet I/O set-up or runtime failure.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A system call failed.
    #[error("{op} on {iface}: {source}{}", hint(.source))]
    Sys {
        /// The call, e.g. `setsockopt(PACKET_RX_RING)`.
        op: &'static str,
        /// The interface (name or `ifindex N`) or namespace it was about.
        iface: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The interface name cannot name an interface (empty, too long for
    /// IFNAMSIZ, or containing NUL or '/').
    #[error("interface name {0:?}: must be 1-15 bytes without NUL or '/'")]
    BadIfName(String),
    /// The ring geometry is not one the kernel accepts.
    #[error("ring geometry: {0}")]
    RingConfig(&'static str),
    /// The interface is not Ethernet (AF_PACKET frames would not start
    /// with an Ethernet header).
    #[error("{iface}: not an Ethernet interface (ARPHRD {hw_type})")]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Its ARPHRD_* type.
        hw_type: u16,
    },
}

impl IoError {
    pub(crate) fn sys(op: &'static str, iface: impl Into<String>, source: io::Error) -> IoError {
        IoError::Sys {
            op,
            iface: iface.into(),
            source,
        }
    }

    /// The errno of a failed system call, if this is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// What an operator should check first for the common errnos.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (need CAP_NET_RAW, or root)",
        Some(libc::ENODEV) | Some(libc::ENXIO) => " (no such interface in this network namespace)",
        Some(libc::ENOMEM) => " (ring too large for the memory available: fewer or smaller blocks)",
        Some(libc::ENETDOWN) => " (interface is down)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_interface_errno_and_hint() {
        let e = IoError::sys(
            "setsockopt(PACKET_RX_RING)",
            "eth1",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("setsockopt(PACKET_RX_RING) on eth1: Operation not permitted"),
            "{s}"
        );
        assert!(s.ends_with("(need CAP_NET_RAW, or root)"), "{s}");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }
}
