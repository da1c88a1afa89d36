//! Where the workers send frames: the connected subnet of each data
//! interface, its gateway for everything else, and the MAC addresses the
//! ARP side has resolved (a published, lock-free view per interface).
//!
//! A lookup that finds no MAC asks the ARP side to resolve the address
//! (through a bounded channel, never blocking the worker) and the packet
//! is dropped as `no_neighbour`, as the kernel does with what overflows
//! its ARP queue.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use arc_swap::ArcSwap;

use crate::dataplane::{IfaceId, Neighbours, NextHop};
use crate::forward::MacAddr;

/// The resolved neighbours of one interface, replaced whole on change.
pub type NeighbourView = ArcSwap<HashMap<Ipv4Addr, MacAddr>>;

/// One data interface as routing sees it.
#[derive(Debug)]
pub struct RouteIface {
    /// Its index in the dataplane.
    pub id: IfaceId,
    /// Its own address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The router for destinations off its subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Resolved neighbours, published by the ARP side.
    pub neighbours: Arc<NeighbourView>,
}

impl RouteIface {
    /// Whether `ip` is on this interface's subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// A resolution request: which interface, which address.
pub type Want = (IfaceId, Ipv4Addr);

/// The routing table of the director's data interfaces.
#[derive(Debug, Clone)]
pub struct Routes {
    ifaces: Arc<Vec<RouteIface>>,
    wants: SyncSender<Want>,
}

impl Routes {
    /// Routing over `ifaces`; unresolved addresses are sent to `wants`.
    pub fn new(ifaces: Arc<Vec<RouteIface>>, wants: SyncSender<Want>) -> Routes {
        Routes { ifaces, wants }
    }

    /// The interface and the on-link address (the host itself, or the
    /// gateway) that frames for `ip` go to.
    pub fn route(&self, ip: Ipv4Addr) -> Option<(&RouteIface, Ipv4Addr)> {
        if let Some(i) = self.ifaces.iter().find(|i| i.on_link(ip)) {
            return Some((i, ip));
        }
        let i = self.ifaces.iter().find(|i| i.gateway.is_some())?;
        Some((i, i.gateway?))
    }
}

impl Neighbours for Routes {
    fn next_hop(&self, ip: IpAddr) -> Option<NextHop> {
        let IpAddr::V4(ip) = ip else { return None };
        let (iface, hop) = self.route(ip)?;
        match iface.neighbours.load().get(&hop) {
            Some(&mac) => Some(NextHop {
                iface: iface.id,
                mac,
            }),
            None => {
                // Full channel: the ARP side is busy; this packet is
                // dropped anyway and the next one asks again.
                let _ = self.wants.try_send((iface.id, hop));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(id: u8, addr: &str, prefix: u8, gw: Option<&str>) -> RouteIface {
        RouteIface {
            id: IfaceId(id),
            addr: addr.parse().unwrap(),
            prefix,
            gateway: gw.map(|g| g.parse().unwrap()),
            neighbours: Arc::new(ArcSwap::from_pointee(HashMap::new())),
        }
    }

    #[test]
    fn on_link_hosts_go_direct_others_via_the_gateway_and_misses_ask_arp() {
        let ifaces = Arc::new(vec![
            iface(0, "10.11.0.2", 24, Some("10.11.0.1")),
            iface(1, "10.12.0.1", 24, None),
        ]);
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let r = Routes::new(Arc::clone(&ifaces), tx);
        let rs: Ipv4Addr = "10.12.0.11".parse().unwrap();
        let far: Ipv4Addr = "198.51.100.7".parse().unwrap();
        assert_eq!(r.route(rs).map(|(i, h)| (i.id, h)), Some((IfaceId(1), rs)));
        let gw: Ipv4Addr = "10.11.0.1".parse().unwrap();
        assert_eq!(r.route(far).map(|(i, h)| (i.id, h)), Some((IfaceId(0), gw)));

        assert_eq!(r.next_hop(IpAddr::V4(rs)), None, "not resolved yet");
        assert_eq!(
            rx.try_recv().unwrap(),
            (IfaceId(1), rs),
            "ARP is asked to resolve it"
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
        ifaces[1]
            .neighbours
            .store(Arc::new(HashMap::from([(rs, mac)])));
        assert_eq!(
            r.next_hop(IpAddr::V4(rs)),
            Some(NextHop {
                iface: IfaceId(1),
                mac
            })
        );
    }
}
