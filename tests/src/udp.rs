//! UDP request/response in the lab, through the `lab-udp-echo` binary of
//! this package (a server per real server, a client per exchange).

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::lab::{Host, Lab};
use crate::process::LabChild;

/// Environment variable that names the `lab-udp-echo` binary explicitly.
pub const UDP_ECHO_ENV: &str = "LAB_UDP_ECHO";

/// Finds the `lab-udp-echo` binary: `$LAB_UDP_ECHO`, else next to the
/// running test executable (`target/<profile>/deps/..`), where cargo puts
/// this package's binaries when it builds its integration tests. Another
/// package's tests must build it first (`cargo build -p lab-tests --bins`)
/// or set the variable.
pub fn udp_echo_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(UDP_ECHO_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe.parent();
    // deps/ first, then the profile dir; two levels are enough.
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("lab-udp-echo");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    bail!(
        "lab-udp-echo not found near {}; build it (`cargo build -p lab-tests --bins`) \
         or set {UDP_ECHO_ENV}",
        exe.display()
    )
}

/// A running UDP echo server; killed on drop.
#[derive(Debug)]
pub struct UdpServer {
    child: LabChild,
    name: String,
    bind: SocketAddrV4,
}

impl UdpServer {
    /// Name it prefixes replies with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bound address.
    pub fn bind(&self) -> SocketAddrV4 {
        self.bind
    }

    /// The process.
    pub fn process(&mut self) -> &mut LabChild {
        &mut self.child
    }
}

/// Options for [`Lab::udp_ask`].
#[derive(Debug, Clone)]
pub struct UdpAsk {
    /// Requests to send, one after the other.
    pub count: u32,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// A new socket (source port, hence flow) per request.
    pub fresh_port: bool,
    /// Local address to bind, if not the kernel's choice.
    pub bind: Option<SocketAddrV4>,
}

impl Default for UdpAsk {
    fn default() -> Self {
        Self {
            count: 1,
            timeout: Duration::from_secs(1),
            fresh_port: false,
            bind: None,
        }
    }
}

/// One request and, if it came, its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpExchange {
    /// Request number (the request payload is `req-<seq>`).
    pub seq: u32,
    /// The reply, or `None` on timeout.
    pub reply: Option<UdpReply>,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpReply {
    /// Round-trip time.
    pub rtt: Duration,
    /// Where the reply came from.
    pub from: SocketAddr,
    /// Reply payload, `<server name> req-<seq>`.
    pub text: String,
}

impl UdpReply {
    /// The name of the server that answered.
    pub fn server(&self) -> &str {
        self.text.split(' ').next().unwrap_or("")
    }
}

fn parse_exchanges(out: &str) -> Result<Vec<UdpExchange>> {
    out.lines()
        .map(|line| {
            let mut f = line.splitn(5, ' ');
            match (f.next(), f.next()) {
                (Some("timeout"), Some(seq)) => Ok(UdpExchange {
                    seq: seq.parse().context("seq")?,
                    reply: None,
                }),
                (Some("ok"), Some(seq)) => {
                    let (Some(rtt), Some(from), Some(text)) = (f.next(), f.next(), f.next()) else {
                        bail!("short line `{line}`");
                    };
                    Ok(UdpExchange {
                        seq: seq.parse().context("seq")?,
                        reply: Some(UdpReply {
                            rtt: Duration::from_micros(rtt.parse().context("rtt")?),
                            from: from.parse().context("from")?,
                            text: text.to_owned(),
                        }),
                    })
                }
                _ => bail!("unexpected line `{line}`"),
            }
        })
        .collect()
}

impl Lab {
    /// Starts a UDP echo server named `name` on `bind` in `host`; returns
    /// once the socket is bound.
    pub fn udp_echo(&self, host: &Host, bind: SocketAddrV4, name: &str) -> Result<UdpServer> {
        ensure!(
            !name.is_empty() && !name.contains(char::is_whitespace),
            "server name `{name}`"
        );
        let bin = udp_echo_bin()?;
        let bin_s = bin.to_string_lossy();
        let bind_s = bind.to_string();
        let mut child = self.spawn(host, &[&bin_s, "--bind", &bind_s, "--name", name])?;
        let ready =
            self.wait_listening(host, true, *bind.ip(), bind.port(), Duration::from_secs(10));
        if let Err(e) = ready {
            let exited = child.try_wait().ok().flatten();
            bail!(
                "udp echo `{name}` not ready ({e:#}); exited: {exited:?}; stderr: {}",
                child.stderr_text().trim()
            );
        }
        Ok(UdpServer {
            child,
            name: name.to_owned(),
            bind,
        })
    }

    /// Sends `opts.count` requests from `host` to `to`, one at a time, and
    /// returns every exchange (timeouts included). Bounded by
    /// count × timeout.
    pub fn udp_ask(
        &self,
        host: &Host,
        to: SocketAddrV4,
        opts: &UdpAsk,
    ) -> Result<Vec<UdpExchange>> {
        let bin = udp_echo_bin()?;
        let bin_s = bin.to_string_lossy();
        let to_s = to.to_string();
        let count = opts.count.to_string();
        let timeout_ms = opts.timeout.as_millis().to_string();
        let bind_s = opts.bind.map(|b| b.to_string());
        let mut argv = vec![
            &*bin_s,
            "--to",
            &to_s,
            "--count",
            &count,
            "--timeout-ms",
            &timeout_ms,
        ];
        if opts.fresh_port {
            argv.push("--fresh-port");
        }
        if let Some(b) = &bind_s {
            argv.extend(["--bind", b.as_str()]);
        }
        let deadline = opts.timeout * opts.count.max(1) + Duration::from_secs(5);
        let out = self.exec_timeout(host, &argv, deadline)?;
        crate::cmd::check(&argv, &out)
            .with_context(|| format!("udp client in `{}`", host.name()))?;
        parse_exchanges(&String::from_utf8_lossy(&out.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_parse() {
        let got = parse_exchanges("ok 0 153 10.12.0.21:9000 rs1 req-0\ntimeout 1\n").unwrap();
        assert_eq!(got.len(), 2);
        let r = got[0].reply.as_ref().unwrap();
        assert_eq!(r.server(), "rs1");
        assert_eq!(r.text, "rs1 req-0");
        assert_eq!(r.rtt, Duration::from_micros(153));
        assert_eq!(
            got[1],
            UdpExchange {
                seq: 1,
                reply: None
            }
        );
        assert!(parse_exchanges("what").is_err());
    }
}
