//! Where the workers send frames: the connected subnet of each data
//! interface, its gateway for everything else, and the MAC addresses the
//! ARP side has resolved (a published, lock-free view per interface).
//!
//! A lookup that finds no MAC asks the ARP side to resolve the address
//! (through a bounded channel, never blocking the worker) and the packet
//! is dropped as `no_neighbour`, as the kernel does with what overflows
//! its ARP queue.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use crate::arp::NeighbourView;
use crate::dataplane::{IfaceId, Neighbours, NextHop};

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
    /// Resolved neighbours, published by this interface's ARP thread.
    pub neighbours: NeighbourView,
    /// Addresses to resolve, for this interface's ARP thread.
    pub wants: SyncSender<Ipv4Addr>,
}

/// Whether `ip` is in the subnet `addr/prefix`.
pub fn contains(addr: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(ip) & mask == u32::from(addr) & mask
}

impl RouteIface {
    /// Whether `ip` is on this interface's subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        contains(self.addr, self.prefix, ip)
    }
}

/// The routing table of the director's data interfaces.
#[derive(Debug, Clone)]
pub struct Routes {
    ifaces: Arc<Vec<RouteIface>>,
}

impl Routes {
    /// Routing over `ifaces`.
    pub fn new(ifaces: Arc<Vec<RouteIface>>) -> Routes {
        Routes { ifaces }
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
        match iface.neighbours.lookup(hop) {
            Some(mac) => Some(NextHop {
                iface: iface.id,
                mac,
            }),
            None => {
                // Full channel: the ARP side is busy; this packet is
                // dropped anyway and the next one asks again.
                let _ = iface.wants.try_send(hop);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::{ArpConfig, ArpResponder};
    use crate::forward::MacAddr;
    use crate::time::Millis;

    #[test]
    fn on_link_hosts_go_direct_others_via_the_gateway_and_misses_ask_arp() {
        let mac0 = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut arp1 = ArpResponder::new(ArpConfig::new(
            MacAddr([2, 0, 0, 0, 0, 2]),
            "10.12.0.1".parse().unwrap(),
            vec![],
        ));
        let arp0 = ArpResponder::new(ArpConfig::new(mac0, "10.11.0.2".parse().unwrap(), vec![]));
        let (tx0, _rx0) = std::sync::mpsc::sync_channel(8);
        let (tx1, rx1) = std::sync::mpsc::sync_channel(8);
        let ifaces = Arc::new(vec![
            RouteIface {
                id: IfaceId(0),
                addr: "10.11.0.2".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.11.0.1".parse().unwrap()),
                neighbours: arp0.view(),
                wants: tx0,
            },
            RouteIface {
                id: IfaceId(1),
                addr: "10.12.0.1".parse().unwrap(),
                prefix: 24,
                gateway: None,
                neighbours: arp1.view(),
                wants: tx1,
            },
        ]);
        let r = Routes::new(ifaces);
        let rs: Ipv4Addr = "10.12.0.11".parse().unwrap();
        let far: Ipv4Addr = "198.51.100.7".parse().unwrap();
        assert_eq!(r.route(rs).map(|(i, h)| (i.id, h)), Some((IfaceId(1), rs)));
        let gw: Ipv4Addr = "10.11.0.1".parse().unwrap();
        assert_eq!(r.route(far).map(|(i, h)| (i.id, h)), Some((IfaceId(0), gw)));

        assert_eq!(r.next_hop(IpAddr::V4(rs)), None, "not resolved yet");
        assert_eq!(
            rx1.try_recv().unwrap(),
            rs,
            "the inside ARP thread is asked to resolve it"
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
        arp1.neighbours_mut().learn(rs, mac, Millis(0));
        assert_eq!(
            r.next_hop(IpAddr::V4(rs)),
            Some(NextHop {
                iface: IfaceId(1),
                mac
            })
        );
    }
}
