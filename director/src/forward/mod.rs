//! Packet classification and rewrite (lands with the forwarding work).
