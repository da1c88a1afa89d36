//! The gRPC contract of the director pair, generated at build time from
//! `proto/*.proto` (protox + tonic-prost-build, no system `protoc`).
//!
//! - [`common`] (`lb.common.v1`): types shared by both services: service
//!   and real-server configuration, connection entries, stats, enums.
//! - [`control`] (`lb.control.v1`): the `Control` service each director
//!   serves to `dirctl`, the ipvsadm-compatible CLI: virtual services, real
//!   servers, connections, timeouts, save/restore, node/VRRP/sync status,
//!   manual failover, `which`, `watch`, health.
//! - [`sync`] (`lb.sync.v1`): the `ConnSync` service the VRRP master serves
//!   to its peer: one bidirectional stream carrying a snapshot and then
//!   ordered delta batches of the connection table, acks, heartbeats and
//!   handover coordination.
//!
//! Conventions (addresses as strings, units in field names, `UNSPECIFIED = 0`
//! enums) are described at the top of `proto/common.proto`; the stream,
//! sequence, ack and versioning rules at the top of `proto/sync.proto`.
//! [`FILE_DESCRIPTOR_SET`] holds the encoded descriptors of all three files
//! for gRPC reflection.

#![forbid(unsafe_code)]

/// Generated code, one module per protobuf package (`lb.common.v1` is
/// `lb::common::v1`); the nesting mirrors the packages so that the generated
/// cross-package paths (`super::super::...`) resolve. Use the re-exports
/// [`common`], [`control`] and [`sync`].
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    rustdoc::all
)]
pub mod lb {
    /// `lb.common.v1`.
    pub mod common {
        /// `lb.common.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/lb.common.v1.rs"));
        }
    }
    /// `lb.control.v1`.
    pub mod control {
        /// `lb.control.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/lb.control.v1.rs"));
        }
    }
    /// `lb.sync.v1`.
    pub mod sync {
        /// `lb.sync.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/lb.sync.v1.rs"));
        }
    }
}

pub use lb::common::v1 as common;
pub use lb::control::v1 as control;
pub use lb::sync::v1 as sync;

/// Encoded `google.protobuf.FileDescriptorSet` of `common.proto`,
/// `control.proto` and `sync.proto` (with source info, so comments travel),
/// for `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lb_descriptor.bin"));

/// The sync protocol version this crate speaks: the highest value of
/// [`sync::SyncProtocolVersion`]. Sent in `Hello.protocol_version`.
pub const SYNC_PROTOCOL_VERSION: u32 = sync::SyncProtocolVersion::V1 as u32;

/// Lowest sync protocol version this crate can still talk to.
pub const SYNC_MIN_PROTOCOL_VERSION: u32 = sync::SyncProtocolVersion::V1 as u32;

const _: () =
    assert!(SYNC_MIN_PROTOCOL_VERSION >= 1 && SYNC_MIN_PROTOCOL_VERSION <= SYNC_PROTOCOL_VERSION);

/// Fully qualified gRPC name of the control service, `lb.control.v1.Control`.
pub const CONTROL_SERVICE_NAME: &str = control::control_server::SERVICE_NAME;

/// Fully qualified gRPC name of the sync service, `lb.sync.v1.ConnSync`.
pub const SYNC_SERVICE_NAME: &str = sync::conn_sync_server::SERVICE_NAME;
