//! TCP connect check (keepalived `TCP_CHECK`): the server is up if it
//! accepts a connection. The connection is closed at once.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::ProbeResult;

/// Connect to `target`; the caller bounds the time.
pub async fn probe(target: SocketAddr) -> ProbeResult {
    TcpStream::connect(target)
        .await
        .map(|_| None)
        .map_err(|e| format!("connect: {}", io_reason(&e)))
}

/// An I/O error in a few lowercase words ("connection refused").
pub fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        kind @ (K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable
        | K::UnexpectedEof) => kind.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_and_refusals() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(probe(addr).await, Ok(None));
        drop(l);
        assert_eq!(
            probe(addr).await,
            Err("connect: connection refused".to_string())
        );
    }
}
