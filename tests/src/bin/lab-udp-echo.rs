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

#[derive(Debug, Default)]
struct Args {
    bind: Option<SocketAddr>,
    name: Option<String>,
    lifetime: Option<Duration>,
    to: Option<SocketAddr>,
    count: Option<u32>,
    timeout: Option<Duration>,
    fresh_port: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bind" => a.bind = Some(value()?.parse().context("--bind")?),
            "--name" => a.name = Some(value()?),
            "--lifetime-secs" => {
                a.lifetime = Some(Duration::from_secs(
                    value()?.parse().context("--lifetime-secs")?,
                ))
            }
            "--to" => a.to = Some(value()?.parse().context("--to")?),
            "--count" => a.count = Some(value()?.parse().context("--count")?),
            "--timeout-ms" => {
                a.timeout = Some(Duration::from_millis(
                    value()?.parse().context("--timeout-ms")?,
                ))
            }
            "--fresh-port" => a.fresh_port = true,
            other => bail!("unknown argument `{other}` (see the file's doc comment)"),
        }
    }
    Ok(a)
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
    let run = || -> Result<()> {
        let a = parse_args()?;
        match (a.to, a.bind, a.name) {
            (Some(to), bind, _) => ask(
                to,
                bind,
                a.count.unwrap_or(1),
                a.timeout.unwrap_or(Duration::from_secs(1)),
                a.fresh_port,
            ),
            (None, Some(bind), Some(name)) => {
                serve(bind, &name, a.lifetime.unwrap_or(Duration::from_secs(300)))
            }
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
