//! Health checks in directord's configuration: what a good file gives
//! (defaults, overrides merged over the service's check, sorry server,
//! quorum), and bad checks refused whole with file:line:column and a
//! sentence an operator can act on.

use std::time::Duration;

use director::config::{Config, HealthProblem, Problem};
use director::health::{OnFailure, Probe};

/// Lines 1–6.
const BASE: &str = r#"[node]
name = "a"

[[interface]]
name = "eth0"
address = "10.11.0.2/24"
"#;

/// Lines 7–15: a service with two real servers; `rest` starts on line 16.
fn svc(rest: &str) -> String {
    format!(
        r#"{BASE}[[service]]
protocol = "tcp"
address = "10.11.0.100:80"
  [[service.real_server]]
  address = "10.11.0.11"
  method = "dr"
  [[service.real_server]]
  address = "10.11.0.12"
  method = "dr"
{rest}"#
    )
}

fn parse(text: &str) -> Result<Config, director::config::ConfigError> {
    Config::parse(text, "t.toml")
}

#[test]
fn defaults_overrides_sorry_server_and_quorum() {
    let text = format!(
        r#"{BASE}[[service]]
protocol = "tcp"
address = "10.11.0.100:80"
quorum = 2
hysteresis = 1
quorum_down = ["/usr/bin/logger", "quorum"]
  [service.health_check]
  type = "http"
  path = "/health"
  status = [200, "300-302"]
  interval = 0.3
  fall = 2
  notify_down = "echo down"
  [service.sorry_server]
  address = "10.11.0.99"
  method = "dr"
  [[service.real_server]]
  address = "10.11.0.11"
  method = "dr"
    [service.real_server.health_check]
    port = 8080
  [[service.real_server]]
  address = "10.11.0.12"
  method = "dr"
    [service.real_server.health_check]
    type = "tcp"
    on_failure = "remove"
  [[service.real_server]]
  address = "10.11.0.13"
  method = "dr"
    [service.real_server.health_check]
    type = "none"
  [[service.real_server]]
  address = "10.11.0.14"
  method = "dr"
"#
    );
    let c = parse(&text).unwrap();
    let key = c.service_specs()[0].key;
    let h = c.health_plan().service(&key).unwrap();
    assert_eq!((h.quorum, h.hysteresis), (2, 1));
    assert_eq!(
        h.quorum_down.as_ref().unwrap().argv,
        ["/usr/bin/logger", "quorum"]
    );
    assert_eq!(
        h.sorry_server.unwrap().addr,
        "10.11.0.99:80".parse().unwrap()
    );

    let base = h.check.as_ref().unwrap();
    let Probe::Http(http) = &base.probe else {
        panic!("http")
    };
    assert_eq!(http.path, "/health");
    assert_eq!(http.status, vec![200..=200, 300..=302]);
    assert_eq!(base.timing.interval, Duration::from_millis(300));
    assert_eq!(
        base.timing.retry_delay,
        Duration::from_millis(300),
        "default: the interval"
    );
    assert_eq!(base.timing.timeout, Duration::from_secs(1));
    assert_eq!((base.timing.fall, base.timing.rise), (2, 1));
    assert_eq!(
        base.on_failure,
        OnFailure::Quiesce,
        "default: inhibit_on_failure"
    );

    let rs = |n: u8| format!("10.11.0.{n}:80").parse().unwrap();
    let r1 = h.check_for(rs(11)).unwrap();
    assert_eq!(r1.port, Some(8080), "override");
    assert_eq!(r1.probe, base.probe, "the rest from the service's check");
    assert_eq!(r1.timing.fall, 2);
    let r2 = h.check_for(rs(12)).unwrap();
    assert_eq!(
        r2.probe,
        Probe::Tcp,
        "type changed: http keys not inherited"
    );
    assert_eq!(r2.on_failure, OnFailure::Remove);
    assert_eq!(
        r2.timing.interval,
        Duration::from_millis(300),
        "timing inherited"
    );
    assert!(r2.notify_down.is_some(), "notify inherited");
    assert!(h.check_for(rs(13)).is_none(), "type = none: unchecked");
    assert_eq!(
        h.check_for(rs(14)),
        Some(base),
        "no override: the service's"
    );
}

#[test]
fn a_service_without_health_keys_has_no_plan() {
    let c = parse(&svc("")).unwrap();
    assert!(c.health_plan().services.is_empty());
}

#[test]
fn udp_and_command_checks() {
    let c = parse(&svc(r#"  [service.health_check]
  type = "command"
  command = "/usr/local/bin/check --fast"
  dynamic_weight = true
  timeout = 2
"#))
    .unwrap();
    let key = c.service_specs()[0].key;
    let check = c
        .health_plan()
        .service(&key)
        .unwrap()
        .check
        .clone()
        .unwrap();
    let Probe::Command(cmd) = &check.probe else {
        panic!("command")
    };
    assert!(cmd.dynamic_weight);
    assert_eq!(
        cmd.command.argv[..3],
        ["/bin/sh", "-c", "/usr/local/bin/check --fast"]
    );

    let c = parse(&svc(r#"  [service.health_check]
  type = "udp"
  port = 53
  payload_hex = "00 01 02"
  expect = "^\\x00"
"#))
    .unwrap();
    let check = c
        .health_plan()
        .service(&key)
        .unwrap()
        .check
        .clone()
        .unwrap();
    let Probe::Udp(udp) = &check.probe else {
        panic!("udp")
    };
    assert_eq!(udp.payload, [0, 1, 2]);
    assert_eq!(check.port, Some(53));
}

/// (name, text after the service, expected `t.toml:line:col`, a check on
/// the problem, words in the message)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    fn(&HealthProblem) -> bool,
    &'static [&'static str],
);

#[test]
fn bad_checks_are_refused_at_the_key_with_a_reason() {
    let cases: &[Case] = &[
        (
            "unknown type",
            "  [service.health_check]\n  type = \"ping\"\n",
            "t.toml:17:10",
            |p| matches!(p, HealthProblem::UnknownType { .. }),
            &["ping", "tcp, http, udp, command or none"],
        ),
        (
            "no type",
            "  [service.health_check]\n  interval = 1\n",
            "t.toml:16:",
            |p| matches!(p, HealthProblem::NoType),
            &["no type"],
        ),
        (
            "key of another kind",
            "  [service.health_check]\n  type = \"tcp\"\n  path = \"/x\"\n",
            "t.toml:18:10",
            |p| matches!(p, HealthProblem::NotForType { key: "path", .. }),
            &["path only applies to http checks", "this check is tcp"],
        ),
        (
            "interval too short",
            "  [service.health_check]\n  type = \"tcp\"\n  interval = 0.01\n",
            "t.toml:18:14",
            |p| {
                matches!(
                    p,
                    HealthProblem::DurationOutOfRange {
                        key: "interval",
                        ..
                    }
                )
            },
            &["interval = 0.01 s is out of range 0.1..=3600"],
        ),
        (
            "fall zero",
            "  [service.health_check]\n  type = \"tcp\"\n  fall = 0\n",
            "t.toml:18:10",
            |p| matches!(p, HealthProblem::CountOutOfRange { key: "fall", .. }),
            &["fall = 0", "1..=1000"],
        ),
        (
            "bad status",
            "  [service.health_check]\n  type = \"http\"\n  status = [200, \"299-200\"]\n",
            "t.toml:18:18",
            |p| matches!(p, HealthProblem::BadStatus { .. }),
            &["\"299-200\"", "HTTP status"],
        ),
        (
            "bad regex",
            "  [service.health_check]\n  type = \"http\"\n  body = \"(unclosed\"\n",
            "t.toml:18:10",
            |p| matches!(p, HealthProblem::BadPattern { key: "body", .. }),
            &["body is not a valid regular expression"],
        ),
        (
            "bad digest",
            "  [service.health_check]\n  type = \"http\"\n  digest = \"abc\"\n",
            "t.toml:18:12",
            |p| matches!(p, HealthProblem::BadDigest { .. }),
            &["SHA-256", "64 hex digits"],
        ),
        (
            "udp without payload",
            "  [service.health_check]\n  type = \"udp\"\n",
            "t.toml:16:",
            |p| matches!(p, HealthProblem::Missing { kind: "udp", .. }),
            &["a udp check needs payload"],
        ),
        (
            "command without command",
            "  [service.health_check]\n  type = \"command\"\n",
            "t.toml:16:",
            |p| {
                matches!(
                    p,
                    HealthProblem::Missing {
                        kind: "command",
                        ..
                    }
                )
            },
            &["a command check needs command"],
        ),
        (
            "empty command",
            "  [service.health_check]\n  type = \"command\"\n  command = []\n",
            "t.toml:18:13",
            |p| matches!(p, HealthProblem::EmptyCommand { key: "command" }),
            &["command is empty"],
        ),
        (
            "bad on_failure",
            "  [service.health_check]\n  type = \"tcp\"\n  on_failure = \"drop\"\n",
            "t.toml:18:16",
            |p| matches!(p, HealthProblem::BadOnFailure { .. }),
            &["\"drop\"", "quiesce", "remove"],
        ),
        (
            "port zero",
            "  [service.health_check]\n  type = \"tcp\"\n  port = 0\n",
            "t.toml:18:10",
            |p| matches!(p, HealthProblem::PortOutOfRange { value: 0 }),
            &["port = 0"],
        ),
    ];
    for (name, rest, at, is, words) in cases {
        let err = parse(&svc(rest)).expect_err(name);
        let msg = err.to_string();
        assert!(msg.starts_with(at), "{name}: expected at {at}: {msg}");
        let Some(Problem::Health { problem, subject }) = err.problem() else {
            panic!("{name}: not a health problem: {msg}");
        };
        assert!(is(problem), "{name}: {problem:?}");
        assert!(
            subject.contains("health check of virtual service TCP 10.11.0.100:80"),
            "{name}: {subject}"
        );
        for w in *words {
            assert!(msg.contains(w), "{name}: {w:?} not in {msg}");
        }
    }
}

#[test]
fn service_level_refusals() {
    // Hysteresis above the quorum (the quorum is on line 10).
    let text = format!(
        "{BASE}[[service]]\nprotocol = \"tcp\"\naddress = \"10.11.0.100:80\"\nquorum = 1\nhysteresis = 2\n"
    );
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().starts_with("t.toml:11:14:"), "{err}");
    assert!(
        err.to_string()
            .contains("hysteresis = 2 is above quorum = 1"),
        "{err}"
    );

    // A sorry server that is also a real server.
    let err = parse(&svc(
        "  [service.sorry_server]\n  address = \"10.11.0.12\"\n  method = \"dr\"\n",
    ))
    .unwrap_err();
    assert!(err.to_string().starts_with("t.toml:16:"), "{err}");
    assert!(err.to_string().contains("also a real server"), "{err}");

    // A sorry server breaking the service table's rules (port mapping in DR).
    let err = parse(&svc(
        "  [service.sorry_server]\n  address = \"10.11.0.99:8080\"\n  method = \"dr\"\n",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("needs NAT"), "{err}");

    // A real server's override is checked merged, and points into it.
    let text = format!(
        r#"{BASE}[[service]]
protocol = "tcp"
address = "10.11.0.100:80"
  [service.health_check]
  type = "tcp"
  [[service.real_server]]
  address = "10.11.0.11"
  method = "dr"
    [service.real_server.health_check]
    rise = 5000
"#
    );
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().starts_with("t.toml:16:12:"), "{err}");
    assert!(
        err.to_string()
            .contains("health check of real server 10.11.0.11:80 of TCP 10.11.0.100:80"),
        "{err}"
    );
    // Unknown keys are refused by the parser, as everywhere in the file.
    let err = parse(&svc(
        "  [service.health_check]\n  type = \"tcp\"\n  intervall = 2\n",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
}
