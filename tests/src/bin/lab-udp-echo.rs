//! A tiny UDP request/response server and client for the lab.
//!
//! Server: `lab-udp-echo --bind ADDR:PORT --name rs1 [--lifetime-secs N]`
//! answers every datagram with `<name> <request>`, so a client can tell
//! which real server a flow reached. It exits by itself after the lifetime
//! (default 300 s) in case a crashed test never killed it.
//!
//! Client: `lab-udp-echo --to ADDR:PORT [--count N] [--timeout-ms T]
//! [--fresh-port] [--bind ADDR:PORT]` sends `req-<i>` N times, one at a
//! time, and prints one line per request:
//! `ok <i> <rtt_us> <from> <reply>` or `timeout <i>`.
//! `--fresh-port` uses a new socket (a new source port, so a new flow for a
//! load balancer) for every request. The client never waits longer than
//! count × timeout in total.

#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// A tiny UDP request/response server and client for the lab.
///
/// The server answers every datagram with `<name> <request>`; the client
/// sends `req-<i>` COUNT times, one at a time, and prints one line per
/// request: `ok <i> <rtt_us> <from> <reply>` or `timeout <i>`.
#[derive(Debug, Parser)]
#[command(
    name = "lab-udp-echo",
    args_override_self = true,
    override_usage = "lab-udp-echo --bind ADDR:PORT --name NAME [--lifetime-secs N]    (server)\n       \
                      lab-udp-echo --to ADDR:PORT [--count N] [--timeout-ms T] [--fresh-port] \
                      [--bind ADDR:PORT]    (client)"
)]
struct Args {
    /// Server: the address to serve on. Client: the local address to send
    /// from (default: the kernel's choice)
    #[arg(long, value_name = "ADDR:PORT", required_unless_present = "to")]
    bind: Option<SocketAddr>,
    /// Server: the name it prefixes replies with
    #[arg(long, value_name = "NAME", required_unless_present = "to")]
    name: Option<String>,
    /// Server: exit after this many seconds, in case a crashed test never
    /// killed it
    #[arg(long, value_name = "N", default_value_t = 300)]
    lifetime_secs: u64,
    /// Client: where to send the requests (makes it a client)
    #[arg(long, value_name = "ADDR:PORT")]
    to: Option<SocketAddr>,
    /// Client: requests to send, one after the other
    #[arg(long, value_name = "N", default_value_t = 1)]
    count: u32,
    /// Client: how long to wait for each reply, in ms
    #[arg(long, value_name = "T", default_value_t = 1000)]
    timeout_ms: u64,
    /// Client: a new socket (source port, hence flow) for every request
    #[arg(long)]
    fresh_port: bool,
}

fn serve(bind: SocketAddr, name: &str, lifetime: Duration) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    // A read timeout turns the receive loop into one bounded in time.
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < lifetime {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e).context("recv_from"),
        };
        let mut reply = Vec::with_capacity(name.len() + 1 + n);
        reply.extend_from_slice(name.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        // A send error (e.g. no route back yet) loses one reply, not the server.
        if let Err(e) = sock.send_to(&reply, from) {
            eprintln!("send_to {from}: {e}");
        }
    }
    Ok(())
}

fn ask(
    to: SocketAddr,
    bind: Option<SocketAddr>,
    count: u32,
    timeout: Duration,
    fresh: bool,
) -> Result<()> {
    let local = bind.unwrap_or_else(|| "0.0.0.0:0".parse().expect("literal address"));
    let open = || -> Result<UdpSocket> {
        let s = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
        s.set_read_timeout(Some(timeout))?;
        Ok(s)
    };
    let mut sock = open()?;
    let mut buf = [0u8; 2048];
    for i in 0..count {
        if fresh && i > 0 {
            sock = open()?;
        }
        let req = format!("req-{i}");
        let sent = Instant::now();
        sock.send_to(req.as_bytes(), to)
            .with_context(|| format!("send_to {to}"))?;
        // Skip stray replies (e.g. a late answer to an earlier request) but
        // never wait past this request's deadline.
        let answered = loop {
            let left = timeout.saturating_sub(sent.elapsed());
            if left.is_zero() {
                break None;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).replace(['\n', '\t'], " ");
                    if text.ends_with(&format!(" {req}")) {
                        break Some((from, text));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break None;
                }
                // ICMP port unreachable shows up as a refused receive.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break None,
                Err(e) => return Err(e).context("recv_from"),
            }
        };
        match answered {
            Some((from, text)) => {
                println!("ok {i} {} {from} {text}", sent.elapsed().as_micros())
            }
            None => println!("timeout {i}"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<()> {
        match (a.to, a.bind, a.name) {
            (Some(to), bind, _) => ask(
                to,
                bind,
                a.count,
                Duration::from_millis(a.timeout_ms),
                a.fresh_port,
            ),
            (None, Some(bind), Some(name)) => {
                serve(bind, &name, Duration::from_secs(a.lifetime_secs))
            }
            // clap already requires --bind and --name without --to.
            _ => bail!("server: --bind ADDR:PORT --name NAME; client: --to ADDR:PORT"),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-udp-echo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn invocations() {
        // As lab_tests::udp starts a server and a client.
        let a = Args::try_parse_from(["e", "--bind", "10.0.0.1:9000", "--name", "rs1"]).unwrap();
        assert_eq!(a.name.as_deref(), Some("rs1"));
        assert_eq!(a.lifetime_secs, 300);
        let a = Args::try_parse_from([
            "e",
            "--to",
            "10.0.0.100:53",
            "--count",
            "4",
            "--timeout-ms",
            "500",
            "--fresh-port",
            "--bind",
            "10.0.0.2:0",
        ])
        .unwrap();
        assert_eq!((a.count, a.timeout_ms, a.fresh_port), (4, 500, true));
        let a = Args::try_parse_from(["e", "--to", "10.0.0.100:53"]).unwrap();
        assert_eq!((a.count, a.timeout_ms, a.bind), (1, 1000, None));
        for bad in [
            &["e"][..],
            &["e", "--bind", "10.0.0.1:9000"],
            &["e", "--to", "nowhere"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
