//! Ethernet (EUI-48) addresses: the only layer-2 identity the rewrites
//! need. Parsed from and shown as `aa:bb:cc:dd:ee:ff`, as `ip link` does.

use std::fmt;
use std::str::FromStr;

/// A 6-byte Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The I/G bit: a group (multicast or broadcast) address.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected aa:bb:cc:dd:ee:ff)")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// Source and destination MAC of an outgoing frame: ours, and the next
/// hop's (the real server, or the router towards it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacPair {
    /// Our interface's address.
    pub src: MacAddr,
    /// The next hop's address.
    pub dst: MacAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let m = MacAddr([0x02, 0x00, 0x5e, 0x0a, 0xbc, 0xff]);
        assert_eq!(m.to_string(), "02:00:5e:0a:bc:ff");
        assert_eq!("02:00:5e:0a:bc:ff".parse::<MacAddr>().unwrap(), m);
        assert_eq!("02-00-5E-0A-BC-FF".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "02:00:5e:0a:bc",
            "02:00:5e:0a:bc:ff:00",
            "02:00:5e:0a:bc:fff",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!m.is_multicast());
    }
}
