//! (lands with the daemon work: arp)
