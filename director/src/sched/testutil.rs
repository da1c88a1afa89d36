//! Helpers shared by the schedulers' unit tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::SchedRequest;
use crate::dest::Dest;
use crate::time::Millis;
use crate::types::{ForwardMethod, Protocol};

/// Real servers 10.0.0.1:80, 10.0.0.2:80, ... with the given weights.
pub(crate) fn dests(weights: &[i32]) -> Vec<Arc<Dest>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
            Arc::new(Dest::new(
                SocketAddr::new(IpAddr::V4(ip), 80),
                ForwardMethod::DirectRouting,
                w,
            ))
        })
        .collect()
}

/// A TCP request from `client` to `dest` at `now`.
pub(crate) fn req_at(client: SocketAddr, dest: SocketAddr, now: Millis) -> SchedRequest {
    SchedRequest {
        protocol: Protocol::Tcp,
        client,
        dest,
        now,
        entropy: 0,
    }
}

/// A request from client 192.0.2.`n` (port 40000) to the VIP 198.51.100.1:80.
pub(crate) fn req(n: u32) -> SchedRequest {
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xC000_0200 + n)), 40000);
    req_at(client, "198.51.100.1:80".parse().unwrap(), Millis::ZERO)
}

/// Index of `d` in `dests` (by identity).
pub(crate) fn index_of(dests: &[Arc<Dest>], d: &Arc<Dest>) -> usize {
    dests
        .iter()
        .position(|x| Arc::ptr_eq(x, d))
        .expect("picked a server of the list")
}
