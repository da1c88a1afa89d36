//! Packet I/O on AF_PACKET (lands with the dataplane issue).
