//! Mutual TLS for the sync stream, through tonic's rustls support (ring).
//!
//! Both directors hold a certificate signed by the pair's CA; the master
//! requires a client certificate signed by it (a backup from another pair,
//! or anyone else, is refused at the handshake), and the subscriber checks
//! the master's certificate against the same CA. Plaintext is used only when
//! no [`TlsConfig`] is configured.

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// Server side: our identity, and client certificates required from `ca_pem`.
pub fn server_tls(t: &TlsConfig) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(&t.cert_pem, &t.key_pem))
        .client_ca_root(Certificate::from_pem(&t.ca_pem))
        .client_auth_optional(false)
}

/// Client side: trust only `ca_pem`, present our identity, expect the
/// master's certificate to name `server_name`.
pub fn client_tls(t: &TlsConfig, server_name: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&t.ca_pem))
        .identity(Identity::from_pem(&t.cert_pem, &t.key_pem))
        .domain_name(server_name)
}
