//! Connection-table synchronisation between the two directors: snapshot and
//! ordered deltas over a gRPC stream, acks and lag accounting. Lands with the
//! sync issue; this crate holds its place in the workspace.

#![forbid(unsafe_code)]
