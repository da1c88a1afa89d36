//! The connection table (lands with the connection-table work).
