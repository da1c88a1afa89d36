//! `dirctl`'s ipvsadm side: the command-line syntax ([`args`]), the
//! listing layouts ([`format`]) — pure functions, unit tested without a
//! server — and the gRPC client that runs a parsed command ([`client`]),
//! with its TLS and token options ([`access`]).

pub mod access;
pub mod args;
pub mod client;
pub mod format;
pub mod pair;
