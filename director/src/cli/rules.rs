//! ipvsadm rules files: what `ipvsadm -S` writes and `ipvsadm -R` reads,
//! parsed once for `dirctl -R` and for the daemon's `ipvsadm_rules`
//! configuration key.
//!
//! A rules file is one ipvsadm command per line, in the command-line
//! syntax of [`super::args`]: `-A -t 10.0.0.1:80 -s wlc`,
//! `-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1`, `--set 900 120 300`, also
//! `-E -D -C -e -d`. As in ipvsadm, everything from a `#` to the end of the
//! line is a comment, blank lines are skipped, and a word `ipvsadm` (a
//! line written as a shell command) is ignored. Anything else — a listing,
//! `-Z`, an option this director does not support, a host name — is an
//! error naming its line.
//!
//! [`parse`] gives one [`RuleLine`] per command; [`to_ops`] the
//! `ApplyRules` operations, one per line, so a server refusal "op N: ..."
//! maps back to its line with [`locate`].

use std::fmt;

use lb_proto::common as pb;
use lb_proto::control::{self as ctl, rule_op::Op};

use super::args::{self, Command, ServerOpts, ServiceArg, ServiceOpts};
use super::format::endpoint;
use crate::api::convert::{to_method, to_protocol};

/// One command of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// 1-based line number.
    pub line: usize,
    /// The line as written, without its comment, trimmed.
    pub text: String,
    /// The command.
    pub command: Command,
}

/// Why a rules file was refused: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RulesError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, as a sentence.
    pub message: String,
}

/// Parse a rules file. The first bad line stops the parse.
pub fn parse(text: &str) -> Result<Vec<RuleLine>, RulesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = body
            .split_whitespace()
            .filter(|w| *w != "ipvsadm")
            .collect();
        if words.is_empty() {
            continue;
        }
        let fail = |message: String| RulesError { line, message };
        let inv = args::parse(&words).map_err(|e| fail(e.0))?;
        if inv.server.is_some() {
            return Err(fail("--server has no place in a rules file".into()));
        }
        let what = match &inv.command {
            Command::AddService(_)
            | Command::EditService(_)
            | Command::DeleteService(_)
            | Command::Clear
            | Command::AddServer(_)
            | Command::EditServer(_)
            | Command::DeleteServer { .. }
            | Command::SetTimeouts { .. } => None,
            Command::List(_) => Some("-L (list)"),
            Command::Zero(_) => Some("-Z (zero)"),
            Command::Save => Some("-S (save)"),
            Command::Restore => Some("-R (restore)"),
            Command::Help => Some("-h (help)"),
            Command::Version => Some("-v (version)"),
        };
        if let Some(what) = what {
            return Err(fail(format!(
                "{what} is not a rule; a rules file holds -A -E -D -C -a -e -d and --set"
            )));
        }
        out.push(RuleLine {
            line,
            text: body.to_owned(),
            command: inv.command,
        });
    }
    Ok(out)
}

/// A service key on the wire.
pub fn key(s: ServiceArg) -> pb::ServiceKey {
    pb::ServiceKey {
        protocol: to_protocol(s.protocol) as i32,
        vip: Some(endpoint(s.vip)),
        fwmark: 0,
        family: 0,
    }
}

/// `-A`/`-E` options as a wire service spec.
pub fn service_spec(o: &ServiceOpts) -> pb::ServiceSpec {
    pb::ServiceSpec {
        key: Some(key(o.service)),
        scheduler: o.scheduler.map(|s| s.name().to_owned()).unwrap_or_default(),
        scheduler_flags: Some(pb::SchedulerFlags {
            hash_fallback: o.flags.fallback,
            hash_port: o.flags.port,
            mh_table_size: 0,
        }),
        persistence: o.persistent.map(|t| pb::Persistence {
            timeout_s: t.unwrap_or(0),
            netmask_prefix_len: o.netmask.map(u32::from),
        }),
        one_packet: false,
        health_check: None,
    }
}

/// `-a`/`-e` options as a wire real-server spec.
pub fn server_spec(o: &ServerOpts) -> pb::RealServerSpec {
    pb::RealServerSpec {
        address: Some(endpoint(o.server)),
        method: o.method.map_or(pb::ForwardMethod::Unspecified, to_method) as i32,
        weight: o.weight,
        upper_threshold: o.upper.unwrap_or(0),
        lower_threshold: o.lower.unwrap_or(0),
        tunnel: None,
        health_check: None,
    }
}

/// The `ApplyRules` operation of a rule command; `None` for a command
/// that is not a rule (see [`parse`], which refuses those).
pub fn to_op(command: &Command) -> Option<ctl::RuleOp> {
    let op = match command {
        Command::AddService(o) => Op::AddService(ctl::AddServiceRequest {
            spec: Some(service_spec(o)),
            real_servers: Vec::new(),
        }),
        Command::EditService(o) => Op::EditService(ctl::EditServiceRequest {
            spec: Some(service_spec(o)),
        }),
        Command::DeleteService(s) => Op::DeleteService(ctl::DeleteServiceRequest {
            service: Some(key(*s)),
        }),
        Command::Clear => Op::ClearServices(ctl::ClearServicesRequest {}),
        Command::AddServer(o) => Op::AddRealServer(ctl::AddRealServerRequest {
            service: Some(key(o.service)),
            real_server: Some(server_spec(o)),
        }),
        Command::EditServer(o) => Op::EditRealServer(ctl::EditRealServerRequest {
            service: Some(key(o.service)),
            real_server: Some(server_spec(o)),
        }),
        Command::DeleteServer { service, server } => {
            Op::DeleteRealServer(ctl::DeleteRealServerRequest {
                service: Some(key(*service)),
                address: Some(endpoint(*server)),
            })
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => Op::SetTimeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: *tcp,
                tcp_fin_timeout_s: *tcpfin,
                udp_timeout_s: *udp,
            }),
        }),
        Command::List(_)
        | Command::Zero(_)
        | Command::Save
        | Command::Restore
        | Command::Help
        | Command::Version => return None,
    };
    Some(ctl::RuleOp { op: Some(op) })
}

/// One operation per line, in order.
pub fn to_ops(lines: &[RuleLine]) -> Vec<ctl::RuleOp> {
    lines.iter().filter_map(|l| to_op(&l.command)).collect()
}

/// The line an `ApplyRules` refusal ("op N: message") is about, with the
/// message without its "op N: " prefix.
pub fn locate<'a>(lines: &'a [RuleLine], message: &'a str) -> Option<(&'a RuleLine, &'a str)> {
    let rest = message.strip_prefix("op ")?;
    let (n, msg) = rest.split_once(": ")?;
    let line = lines.get(n.parse::<usize>().ok()?)?;
    Some((line, msg))
}

/// A refusal of `ApplyRules` for `lines`, said against the file: `line 7
/// (-a -t ...): No such service`.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// The lines sent.
    pub lines: &'a [RuleLine],
    /// The server's message.
    pub message: &'a str,
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match locate(self.lines, self.message) {
            Some((l, msg)) => write!(f, "line {} ({}): {msg}", l.line, l.text),
            None => f.write_str(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_the_program_name_are_skipped() {
        let text = "\
# saved by ipvsadm
-A -t 10.0.0.1:80 -s wlc   # web

ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1
\t
--set 900 120 300
";
        let lines = parse(text).unwrap();
        let nums: Vec<usize> = lines.iter().map(|l| l.line).collect();
        assert_eq!(nums, [2, 4, 6]);
        assert_eq!(lines[0].text, "-A -t 10.0.0.1:80 -s wlc");
        assert_eq!(to_ops(&lines).len(), 3);
    }

    #[test]
    fn a_bad_line_is_named() {
        let e =
            parse("-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        assert!(e.message.contains("weight"), "{e}");
        let e = parse("-L -n\n").unwrap_err();
        assert!(e.message.contains("not a rule"), "{e}");
        let e = parse("\n\n-A -f 1 -s rr\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("firewall-mark"), "{e}");
        let e = parse("-A -t www.example.com:http -s rr\n").unwrap_err();
        assert!(e.message.contains("www.example.com"), "{e}");
        let e = parse("-A -t 10.0.0.1:gopherish -s rr\n").unwrap_err();
        assert!(e.message.contains("gopherish"), "{e}");
    }

    #[test]
    fn service_names_map_to_ports() {
        let lines = parse("-A -t 10.0.0.1:http -s rr\n-A -u 10.0.0.1:domain -s rr\n").unwrap();
        let Command::AddService(o) = &lines[0].command else {
            panic!()
        };
        assert_eq!(o.service.vip.port(), 80);
        let Command::AddService(o) = &lines[1].command else {
            panic!()
        };
        assert_eq!(o.service.vip.port(), 53);
    }

    #[test]
    fn refusals_point_at_their_line() {
        let lines = parse("-A -t 10.0.0.1:80 -s wlc\n\n-a -t 10.0.0.2:80 -r 10.0.1.1\n").unwrap();
        let r = Refusal {
            lines: &lines,
            message: "op 1: No such service",
        };
        assert_eq!(
            r.to_string(),
            "line 3 (-a -t 10.0.0.2:80 -r 10.0.1.1): No such service"
        );
        let r = Refusal {
            lines: &lines,
            message: "something else",
        };
        assert_eq!(r.to_string(), "something else");
    }
}
