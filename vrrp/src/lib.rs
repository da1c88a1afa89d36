//! VRRPv3 (RFC 5798) for the director pair: wire format, the election state
//! machine and gratuitous ARP. Lands with the VRRP issue; this crate holds
//! its place in the workspace so the layout is fixed from the start.

#![forbid(unsafe_code)]
