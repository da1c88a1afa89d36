//! Configuration of both sides, and who this node is.
//!
//! Defaults are chosen for the pair on one LAN: 2 ms batching and a 3 ms ack
//! interval keep the lag in single-digit milliseconds; a 200 ms heartbeat
//! (600 ms liveness) is about the VRRP master-down interval at 0.2 s adverts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lb_proto::sync::VrrpBeat;

/// What every heartbeat says about its sender beyond the sync stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBeat {
    /// The sender's VRRP instances.
    pub instances: Vec<VrrpBeat>,
    /// The sender's uptime, ms.
    pub uptime_ms: u64,
    /// Entries in the sender's connection table.
    pub connections: u64,
}

/// The local view carried in every heartbeat (VRRP state, uptime, table
/// size), read when the heartbeat is sent.
pub type NodeViewFn = Arc<dyn Fn() -> NodeBeat + Send + Sync>;

/// The view now, or an empty one.
pub(crate) fn view_of(f: &Option<NodeViewFn>) -> NodeBeat {
    f.as_ref().map(|f| f()).unwrap_or_default()
}

/// Veto on a handover (subscriber side): `Err(reason)` refuses it, e.g.
/// "dataplane not up" or "VRRP instance in FAULT".
pub type ReadinessFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Who this node is, as Hello and Welcome say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Stable id used in the sync protocol.
    pub node_id: String,
    /// Human name, for logs and status.
    pub node_name: String,
    /// Cluster name; both directors of a pair share it.
    pub cluster_id: String,
    /// VRRP virtual router ids this node runs (1..=255); compared sorted.
    pub vrids: Vec<u32>,
}

/// Mutual TLS material, PEM. Both sides present a certificate signed by
/// `ca_pem` and accept only peers whose certificate is.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The pair's CA certificate(s).
    pub ca_pem: Vec<u8>,
    /// This node's certificate chain.
    pub cert_pem: Vec<u8>,
    /// This node's private key.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("TlsConfig")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Master side (server) settings.
#[derive(Clone)]
pub struct MasterConfig {
    /// Heartbeat period both sides use (Welcome.heartbeat_interval_ms); a
    /// side that hears nothing for 3 of them closes the stream.
    pub heartbeat_interval: Duration,
    /// Longest time the subscriber may hold an unacked applied batch.
    pub ack_interval: Duration,
    /// Longest time an event waits in an open batch.
    pub batch_delay: Duration,
    /// Events per batch at most.
    pub max_batch_events: usize,
    /// Encoded bytes per batch (and per snapshot chunk) at most; far below
    /// the 1 MiB message limit of the contract.
    pub max_message_bytes: usize,
    /// Sealed batches retained for resume and slow subscribers, in events.
    pub retain_events: u64,
    /// The same, in encoded bytes.
    pub retain_bytes: usize,
    /// Events the publisher queues before the driver drains them; past it,
    /// events are dropped and every subscriber gets a fresh snapshot.
    pub publisher_capacity: usize,
    /// Protocol versions accepted in Hello.
    pub min_version: u32,
    /// See `min_version`.
    pub max_version: u32,
    /// This node's view (VRRP, uptime, table) for heartbeats.
    pub node_view: Option<NodeViewFn>,
    /// Longest handover wait when a HandoverRequest says 0.
    pub default_handover_wait: Duration,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
            ack_interval: Duration::from_millis(3),
            batch_delay: Duration::from_millis(2),
            max_batch_events: 4096,
            max_message_bytes: 256 * 1024,
            retain_events: 1_000_000,
            retain_bytes: 128 * 1024 * 1024,
            publisher_capacity: 1_000_000,
            min_version: lb_proto::SYNC_MIN_PROTOCOL_VERSION,
            max_version: lb_proto::SYNC_PROTOCOL_VERSION,
            node_view: None,
            default_handover_wait: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for MasterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterConfig")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("ack_interval", &self.ack_interval)
            .field("batch_delay", &self.batch_delay)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("retain_events", &self.retain_events)
            .field("retain_bytes", &self.retain_bytes)
            .field("publisher_capacity", &self.publisher_capacity)
            .field("versions", &(self.min_version..=self.max_version))
            .field("node_view", &self.node_view.is_some())
            .finish_non_exhaustive()
    }
}

/// Subscriber side (client) settings.
#[derive(Clone)]
pub struct SubscriberConfig {
    /// The peer's sync endpoint: "ip:port", or a URI ("http://ip:port").
    pub endpoint: String,
    /// Mutual TLS; `None` = plaintext.
    pub tls: Option<TlsConfig>,
    /// Name the master's certificate must carry; default: the endpoint's host.
    pub tls_server_name: Option<String>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Version sent in Hello (the crate's own unless testing).
    pub protocol_version: u32,
    /// This node's view (VRRP, uptime, table) for heartbeats.
    pub node_view: Option<NodeViewFn>,
    /// Veto on handovers.
    pub readiness: Option<ReadinessFn>,
    /// Liveness before Welcome fixes the heartbeat interval.
    pub hello_timeout: Duration,
}

impl SubscriberConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            protocol_version: lb_proto::SYNC_PROTOCOL_VERSION,
            node_view: None,
            readiness: None,
            hello_timeout: Duration::from_secs(3),
        }
    }
}

impl fmt::Debug for SubscriberConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("tls_server_name", &self.tls_server_name)
            .field("backoff", &(self.backoff_min..self.backoff_max))
            .field("protocol_version", &self.protocol_version)
            .field("readiness", &self.readiness.is_some())
            .finish_non_exhaustive()
    }
}
