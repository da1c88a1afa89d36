//! What the daemon needs to know about its data interface: index, MAC and
//! MTU, read with the SIOCGIF* ioctls.
//!
//! ioctls rather than `/sys/class/net`: sysfs shows the network namespace
//! of whoever mounted it, while a socket's ioctl answers for the namespace
//! the calling thread is in, which is the one its packet sockets use.

use std::ffi::CString;
use std::os::fd::AsFd;

use super::error::IoError;
use super::sys;
use crate::forward::MacAddr;

/// ARPHRD_ETHER.
const ARPHRD_ETHER: u16 = 1;

/// Index, MAC and MTU of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfInfo {
    /// The name asked for.
    pub name: String,
    /// The kernel's interface index.
    pub index: u32,
    /// Its hardware address.
    pub mac: MacAddr,
    /// Its MTU (IP bytes, without the Ethernet header).
    pub mtu: u32,
}

/// Checks an interface name and converts it for the kernel.
pub(crate) fn c_name(name: &str) -> Result<CString, IoError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && !name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace());
    if !ok {
        return Err(IoError::BadIfName(name.to_owned()));
    }
    CString::new(name).map_err(|_| IoError::BadIfName(name.to_owned()))
}

/// Index, MAC and MTU of `name` in the calling thread's network namespace.
/// Fails with [`IoError::NotEthernet`] for a non-Ethernet interface.
pub fn if_info(name: &str) -> Result<IfInfo, IoError> {
    let c = c_name(name)?;
    let sock = sys::inet_dgram_socket().map_err(|e| IoError::sys("socket(AF_INET)", name, e))?;
    let fd = sock.as_fd();
    let req = sys::ioctl_ifreq(fd, libc::SIOCGIFINDEX, &c)
        .map_err(|e| IoError::sys("ioctl(SIOCGIFINDEX)", name, e))?;
    let index = sys::ifreq_ifindex(&req) as u32;
    let req = sys::ioctl_ifreq(fd, libc::SIOCGIFHWADDR, &c)
        .map_err(|e| IoError::sys("ioctl(SIOCGIFHWADDR)", name, e))?;
    let (hw_type, mac) = sys::ifreq_hwaddr(&req);
    if hw_type != ARPHRD_ETHER {
        return Err(IoError::NotEthernet {
            iface: name.to_owned(),
            hw_type,
        });
    }
    let req = sys::ioctl_ifreq(fd, libc::SIOCGIFMTU, &c)
        .map_err(|e| IoError::sys("ioctl(SIOCGIFMTU)", name, e))?;
    Ok(IfInfo {
        name: name.to_owned(),
        index,
        mac: MacAddr(mac),
        mtu: sys::ifreq_mtu(&req) as u32,
    })
}

/// The interface index of `name`.
pub fn if_index(name: &str) -> Result<u32, IoError> {
    let c = c_name(name)?;
    let sock = sys::inet_dgram_socket().map_err(|e| IoError::sys("socket(AF_INET)", name, e))?;
    let req = sys::ioctl_ifreq(sock.as_fd(), libc::SIOCGIFINDEX, &c)
        .map_err(|e| IoError::sys("ioctl(SIOCGIFINDEX)", name, e))?;
    Ok(sys::ifreq_ifindex(&req) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_the_kernel_cannot_hold() {
        for bad in ["", "a/b", "x\0y", "sixteen-chars-xx", "a b"] {
            assert!(matches!(c_name(bad), Err(IoError::BadIfName(_))), "{bad:?}");
        }
        assert!(c_name("eth0").is_ok());
        assert!(c_name("fifteen-chars-x").is_ok());
    }

    #[test]
    fn loopback_is_not_ethernet_and_missing_is_enodev() {
        // Every namespace has `lo`; no privileges needed to read it.
        assert_eq!(if_index("lo").unwrap(), 1);
        match if_info("lo") {
            Err(IoError::NotEthernet { hw_type, .. }) => assert_eq!(hw_type, 772),
            other => panic!("{other:?}"),
        }
        let e = if_info("nosuchif0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    }
}
