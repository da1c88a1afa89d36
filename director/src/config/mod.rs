//! (lands with the daemon work: config)
