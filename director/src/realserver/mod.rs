//! Real-server set-up for DR and TUN (lands with the dataplane issue).
