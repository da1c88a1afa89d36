//! UDP request/response check: send a datagram, expect a reply (matching
//! a pattern, when given). An ICMP port unreachable from the server shows
//! as "connection refused" on the connected socket.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::probe_tcp::io_reason;
use super::{ProbeResult, UdpCheck};

/// Send the payload to `target` and wait for a reply; the caller bounds
/// the time.
pub async fn probe(target: SocketAddr, check: &UdpCheck) -> ProbeResult {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp: {}", io_reason(&e)))?;
    sock.connect(target)
        .await
        .map_err(|e| format!("udp: {}", io_reason(&e)))?;
    sock.send(&check.payload)
        .await
        .map_err(|e| format!("udp: sending: {}", io_reason(&e)))?;
    let mut buf = vec![0u8; 65536];
    let n = sock
        .recv(&mut buf)
        .await
        .map_err(|e| format!("udp: no reply: {}", io_reason(&e)))?;
    if let Some(p) = &check.expect
        && !p.0.is_match(&buf[..n])
    {
        return Err(format!("udp: reply does not match /{}/", p.0.as_str()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Pattern;

    #[tokio::test]
    async fn reply_expected_and_matched() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let mut reply = b"pong ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = server.send_to(&reply, from).await;
            }
        });
        let mut c = UdpCheck {
            payload: b"ping".to_vec(),
            expect: Some(Pattern(regex::bytes::Regex::new("^pong ping$").unwrap())),
        };
        assert_eq!(probe(addr, &c).await, Ok(None));
        c.expect = Some(Pattern(regex::bytes::Regex::new("^nope").unwrap()));
        assert!(
            probe(addr, &c)
                .await
                .unwrap_err()
                .contains("does not match")
        );

        // Nobody there: the kernel's port unreachable ends it at once.
        let gone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        c.expect = None;
        let e = tokio::time::timeout(std::time::Duration::from_secs(2), probe(gone_addr, &c))
            .await
            .expect("ICMP, not a timeout")
            .unwrap_err();
        assert_eq!(e, "udp: no reply: connection refused");
    }
}
