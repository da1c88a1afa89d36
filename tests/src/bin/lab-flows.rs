//! `lab-flows`: many long-lived HTTP/1.1 keep-alive connections, each
//! sending a request and reading the reply every `--interval-ms`, for
//! `--duration-s`. What a user of a failing-over balancer feels: whether a
//! connection broke (reset, EOF, timeout), whether it moved to another
//! real server (the body names the server), and the longest gap between
//! two replies.
//!
//! Runs inside the client's namespace; prints one line per connection and
//! a summary:
//!
//! ```text
//! conn 17 server=rs1 moved=0 replies=240 max_gap_ms=412 error=-
//! summary conns=200 ok=200 broken=0 moved=0 gap_p50_ms=55 gap_p99_ms=420 gap_max_ms=431
//! ```
//!
//! ```text
//! lab-flows --target IP:PORT [--conns N] [--interval-ms MS] [--duration-s S]
//! ```
//!
//! Defaults: 200 connections, 50 ms, 10 s. Bounded: at most `--conns`
//! connections (≤ 1000), each at most one request per interval, for at
//! most `--duration-s` (≤ 300) seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;

/// Many long-lived HTTP/1.1 keep-alive connections through a balancer, each
/// sending a request and reading the reply every interval; prints one line
/// per connection and a summary (broken, moved to another real server,
/// longest gap between replies).
#[derive(Debug, Parser)]
#[command(name = "lab-flows", args_override_self = true)]
struct Args {
    /// Where to connect (the VIP and port)
    #[arg(long, value_name = "IP:PORT", value_parser = parse_target)]
    target: SocketAddr,
    /// Connections to open, at most 1000
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(0..=1000)
    )]
    conns: u32,
    /// Time between two requests on a connection, in ms
    #[arg(long, value_name = "MS", default_value_t = 50)]
    interval_ms: u64,
    /// How long to run, in seconds, at most 300
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=300)
    )]
    duration_s: u64,
}

/// `--target`: an address with a port other than 0.
fn parse_target(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|e| format!("{e}; want IP:PORT"))?;
    if a.port() == 0 {
        return Err("port 0; want IP:PORT".into());
    }
    Ok(a)
}

/// What one connection saw.
#[derive(Debug, Default, Clone)]
struct Flow {
    server: String,
    moved: u32,
    replies: u64,
    max_gap: Duration,
    error: Option<String>,
}

/// One request and its reply on an open connection; returns the body.
fn exchange(r: &mut BufReader<TcpStream>, host: &str) -> Result<String> {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab-flows\r\n\r\n");
    r.get_mut().write_all(req.as_bytes()).context("send")?;
    let mut status = String::new();
    ensure!(
        r.read_line(&mut status).context("read status")? > 0,
        "connection closed by peer (EOF)"
    );
    ensure!(status.starts_with("HTTP/1.1 200"), "status line {status:?}");
    let mut len = None;
    loop {
        let mut line = String::new();
        ensure!(
            r.read_line(&mut line).context("read header")? > 0,
            "EOF in headers"
        );
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = Some(v.trim().parse::<usize>().context("content-length")?);
        }
        if l.eq_ignore_ascii_case("connection: close") {
            bail!("server closed the keep-alive connection");
        }
    }
    let len = len.context("no content-length")?;
    ensure!(len <= 4096, "unexpected body of {len} bytes");
    let mut body = vec![0; len];
    r.read_exact(&mut body).context("read body")?;
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

fn run_flow(target: SocketAddr, interval: Duration, until: Instant) -> Flow {
    let mut f = Flow::default();
    let stream = match TcpStream::connect_timeout(&target, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => {
            f.error = Some(format!("connect: {e}"));
            return f;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let host = target.ip().to_string();
    let mut r = BufReader::new(stream);
    let mut last = Instant::now();
    while Instant::now() < until {
        match exchange(&mut r, &host) {
            Ok(server) => {
                let now = Instant::now();
                if f.replies > 0 {
                    f.max_gap = f.max_gap.max(now - last);
                    if server != f.server {
                        f.moved += 1;
                    }
                }
                f.server = server;
                f.replies += 1;
                last = now;
            }
            Err(e) => {
                f.error = Some(format!("{e:#}"));
                return f;
            }
        }
        std::thread::sleep(interval);
    }
    f
}

fn percentile(sorted: &[u128], q: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let target = args.target;
    let conns = args.conns as usize;
    let interval = Duration::from_millis(args.interval_ms);
    let duration = Duration::from_secs(args.duration_s);
    let until = Instant::now() + duration;
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            // Spread the connections over one interval, as independent
            // users would be.
            let offset = interval * i as u32 / conns.max(1) as u32;
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    std::thread::sleep(offset);
                    run_flow(target, interval, until)
                })
        })
        .collect::<std::io::Result<_>>()?;
    let flows: Vec<Flow> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| Flow {
                error: Some("thread panicked".into()),
                ..Flow::default()
            })
        })
        .collect();
    let mut gaps: Vec<u128> = Vec::new();
    let (mut broken, mut moved) = (0, 0);
    for (i, f) in flows.iter().enumerate() {
        println!(
            "conn {i} server={} moved={} replies={} max_gap_ms={} error={}",
            if f.server.is_empty() { "-" } else { &f.server },
            f.moved,
            f.replies,
            f.max_gap.as_millis(),
            f.error.as_deref().unwrap_or("-")
        );
        broken += usize::from(f.error.is_some());
        moved += usize::from(f.moved > 0);
        gaps.push(f.max_gap.as_millis());
    }
    gaps.sort_unstable();
    println!(
        "summary conns={} ok={} broken={broken} moved={moved} gap_p50_ms={} gap_p99_ms={} gap_max_ms={}",
        flows.len(),
        flows.len() - broken,
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or(0)
    );
    Ok(())
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
        // As lab_tests::flows starts it.
        let a = Args::try_parse_from([
            "f",
            "--target",
            "10.0.0.100:80",
            "--conns",
            "200",
            "--interval-ms",
            "50",
            "--duration-s",
            "16",
        ])
        .unwrap();
        assert_eq!((a.conns, a.interval_ms, a.duration_s), (200, 50, 16));
        let a = Args::try_parse_from(["f", "--target=10.0.0.100:80"]).unwrap();
        assert_eq!((a.conns, a.interval_ms, a.duration_s), (200, 50, 10));
        for bad in [
            &["f"][..],
            &["f", "--target", "10.0.0.100:0"],
            &["f", "--target", "10.0.0.100:80", "--conns", "1001"],
            &["f", "--target", "10.0.0.100:80", "--duration-s", "301"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
