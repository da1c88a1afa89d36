//! `dirctl`'s ipvsadm side: the command-line syntax ([`args`]), rules
//! files as `ipvsadm -S` writes them ([`rules`], also read by the daemon's
//! configuration), the listing layouts ([`format`](mod@format)) — pure functions, unit
//! tested without a server — and the gRPC client that runs a parsed
//! command ([`client`]), with its TLS and token options ([`access`]).

pub mod access;
pub mod args;
pub mod client;
pub mod format;
pub mod pair;
pub mod rules;
pub mod watch;
pub mod which;
