//! HTTP GET check (keepalived `HTTP_GET`): a minimal HTTP/1.1 client over
//! a tokio `TcpStream` — one request with `Connection: close`, the
//! response head parsed with `httparse`, the body read by Content-Length,
//! chunked encoding or to the end, and bounded in size. The server is up
//! if the status is one of those expected and, when asked, the body has
//! the expected SHA-256 or matches the expected regular expression.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::probe_tcp::io_reason;
use super::{HttpCheck, ProbeResult};

/// Largest response (head and body) read; a longer body is cut, and a
/// digest or pattern is checked on what was read.
pub const MAX_RESPONSE: usize = 1 << 20;

/// GET `check.path` from `target`; the caller bounds the time.
pub async fn probe(target: SocketAddr, check: &HttpCheck) -> ProbeResult {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {}", io_reason(&e)))?;
    let host = match &check.host {
        Some(h) => h.clone(),
        None if target.port() == 80 => target.ip().to_string(),
        None => target.to_string(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: directord-health\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        check.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http: sending the request: {}", io_reason(&e)))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // Read until the head is complete.
    let (status, head_len, framing) = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("http: reading the response: {}", io_reason(&e)))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "http: connection closed without a response".into()
            } else {
                "http: connection closed in the response head".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_RESPONSE {
            return Err("http: response head too long".into());
        }
    };
    if !check.status.iter().any(|r| r.contains(&status)) {
        return Err(format!("HTTP {status}"));
    }
    if check.digest.is_none() && check.body.is_none() {
        return Ok(None);
    }
    // The body: what follows the head, then the rest of the stream.
    let mut raw = buf.split_off(head_len);
    loop {
        if framing_complete(&framing, &raw) || raw.len() >= MAX_RESPONSE {
            break;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("http: reading the body: {}", io_reason(&e)))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let body = match framing {
        Framing::Length(n) => {
            if raw.len() < n && raw.len() < MAX_RESPONSE {
                return Err(format!("http: body cut short ({} of {n} bytes)", raw.len()));
            }
            raw.truncate(n);
            raw
        }
        Framing::Chunked => dechunk(&raw).ok_or("http: bad chunked encoding")?,
        Framing::ToEnd => raw,
    };
    if let Some(want) = &check.digest {
        let got: [u8; 32] = Sha256::digest(&body).into();
        if &got != want {
            return Err(format!(
                "HTTP {status}: body digest mismatch (sha256 {}…)",
                hex(&got[..6])
            ));
        }
    }
    if let Some(p) = &check.body
        && !p.0.is_match(&body)
    {
        return Err(format!(
            "HTTP {status}: body does not match /{}/",
            p.0.as_str()
        ));
    }
    Ok(None)
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    ToEnd,
}

/// `Some((status, head length, framing))` once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, Framing)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.unwrap_or(0);
            let mut framing = Framing::ToEnd;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("chunked")
                {
                    framing = Framing::Chunked;
                } else if h.name.eq_ignore_ascii_case("content-length")
                    && framing != Framing::Chunked
                    && let Some(n) = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                {
                    framing = Framing::Length(n);
                }
            }
            Ok(Some((status, len, framing)))
        }
        Err(e) => Err(format!("http: malformed response: {e}")),
    }
}

fn framing_complete(framing: &Framing, raw: &[u8]) -> bool {
    match framing {
        Framing::Length(n) => raw.len() >= *n,
        Framing::Chunked => raw.windows(5).any(|w| w == b"0\r\n\r\n") && dechunk(raw).is_some(),
        Framing::ToEnd => false,
    }
}

/// The body of a complete chunked encoding; `None` if incomplete or bad.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Pattern;
    use tokio::net::TcpListener;

    /// A one-shot server that answers every connection with `response`.
    async fn serve(response: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(response).await;
            }
        });
        addr
    }

    fn check() -> HttpCheck {
        HttpCheck {
            path: "/health".into(),
            host: None,
            status: vec![200..=299],
            digest: None,
            body: None,
        }
    }

    #[tokio::test]
    async fn status_digest_and_pattern() {
        let ok = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
        assert_eq!(probe(ok, &check()).await, Ok(None));
        let err = serve(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(probe(err, &check()).await, Err("HTTP 500".into()));
        let mut c = check();
        c.status = vec![500..=500];
        assert_eq!(probe(err, &c).await, Ok(None), "expected status list");

        let mut d = check();
        d.digest = Some(Sha256::digest(b"ok\n").into());
        assert_eq!(probe(ok, &d).await, Ok(None));
        d.digest = Some(Sha256::digest(b"other").into());
        let e = probe(ok, &d).await.unwrap_err();
        assert!(e.contains("digest mismatch"), "{e}");

        let chunked =
            serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nall\r\n5\r\n good\r\n0\r\n\r\n")
                .await;
        let mut p = check();
        p.body = Some(Pattern(regex::bytes::Regex::new("^all good$").unwrap()));
        assert_eq!(probe(chunked, &p).await, Ok(None));
        p.body = Some(Pattern(regex::bytes::Regex::new("bad").unwrap()));
        assert_eq!(
            probe(chunked, &p).await,
            Err("HTTP 200: body does not match /bad/".into())
        );
        let garbage = serve(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let e = probe(garbage, &check()).await.unwrap_err();
        assert!(e.starts_with("http: malformed response"), "{e}");
    }
}
