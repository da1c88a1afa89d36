//! `[control]` and `[metrics]`: what they accept, and that each refusal
//! names file:line:column and says how to fix it.

use std::path::PathBuf;

use director::config::{Config, DEFAULT_CONTROL_LISTEN, Problem};

/// Lines 1–6.
const BASE: &str = r#"[node]
name = "a"

[[interface]]
name = "eth0"
address = "10.11.0.2/24"
"#;

fn parse(rest: &str) -> Result<Config, String> {
    Config::parse(&format!("{BASE}{rest}"), "t.toml").map_err(|e| e.to_string())
}

#[test]
fn without_the_tables_the_api_is_on_loopback_and_metrics_are_off() {
    let c = parse("").unwrap();
    assert_eq!(c.control().listen.to_string(), DEFAULT_CONTROL_LISTEN);
    assert!(c.control().tls.is_none() && c.control().token_file.is_none());
    assert!(c.metrics().is_none(), "metrics are off by default");
    let c = parse("[metrics]\n").unwrap();
    assert_eq!(
        c.metrics().unwrap().listen.to_string(),
        "127.0.0.1:9400",
        "an empty [metrics] listens on loopback"
    );
}

#[test]
fn a_reachable_address_needs_client_authentication_or_an_explicit_yes() {
    let e = parse("[control]\nlisten = \"0.0.0.0:7400\"\n").unwrap_err();
    assert!(e.starts_with("t.toml:8:10: control: "), "{e}");
    for w in [
        "reachable from other hosts",
        "tls_ca",
        "token_file",
        "allow_unauthenticated = true",
    ] {
        assert!(e.contains(w), "{w:?} in {e}");
    }
    // TLS alone encrypts but does not tell clients apart.
    let e = parse(
        "[control]\nlisten = \"10.11.0.2:7400\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
    )
    .unwrap_err();
    assert!(e.starts_with("t.toml:8:10:"), "{e}");

    let c = parse("[control]\nlisten = \"10.11.0.2:7400\"\ntoken_file = \"/etc/t\"\n").unwrap();
    assert_eq!(c.control().token_file, Some(PathBuf::from("/etc/t")));
    let c = parse(
        "[control]\nlisten = \"[::]:7400\"\ntls_cert = \"c\"\ntls_key = \"k\"\ntls_ca = \"ca\"\n",
    )
    .unwrap();
    let tls = c.control().tls.clone().unwrap();
    assert_eq!(tls.client_ca, Some(PathBuf::from("ca")));
    let c = parse("[control]\nlisten = \"0.0.0.0:7400\"\nallow_unauthenticated = true\n").unwrap();
    assert!(c.control().allow_unauthenticated);
}

#[test]
fn incomplete_tls_and_bad_addresses_are_refused_where_they_are() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[control]\ntls_ca = \"ca.pem\"\n",
            "t.toml:8:10:",
            &["needs TLS", "tls_cert and tls_key"],
        ),
        (
            "[control]\ntls_cert = \"c.pem\"\n",
            "t.toml:8:12:",
            &["both tls_cert and tls_key"],
        ),
        (
            "[control]\nlisten = \"localhost\"\n",
            "t.toml:8:10:",
            &["not an IP:PORT address"],
        ),
        (
            "[control]\ntoken_file = \"\"\n",
            "t.toml:8:14:",
            &["token_file is empty"],
        ),
        (
            "[control]\nlisten = \"127.0.0.1:7400\"\ntoken = \"x\"\n",
            "t.toml:9:1:",
            &["unknown field `token`"],
        ),
        (
            "[metrics]\nlisten = \"9400\"\n",
            "t.toml:8:10:",
            &["metrics:", "not an IP:PORT address"],
        ),
        (
            "[metrics]\nport = 9400\n",
            "t.toml:8:1:",
            &["unknown field `port`"],
        ),
    ];
    let mut failures = Vec::new();
    for (rest, at, words) in cases {
        match parse(rest) {
            Ok(_) => failures.push(format!("{rest:?}: accepted")),
            Err(e) => {
                if !e.starts_with(at) {
                    failures.push(format!("{rest:?}: expected at {at}, got {e}"));
                }
                for w in *words {
                    if !e.contains(w) {
                        failures.push(format!("{rest:?}: missing {w:?} in {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_problem_is_structured() {
    let e = Config::parse(&format!("{BASE}[control]\nlisten = \"x\"\n"), "t.toml").unwrap_err();
    assert!(
        matches!(e.problem(), Some(Problem::Control { .. })),
        "{e:?}"
    );
    assert_eq!(e.location().unwrap().line, 8);
}

#[test]
fn the_pair_examples_secure_their_api_and_export_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    for (file, addr) in [
        ("node-a.toml", "10.41.0.2:7400"),
        ("node-b.toml", "10.41.0.3:7400"),
    ] {
        let c = Config::load(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ctl = c.control();
        assert_eq!(ctl.listen.to_string(), addr, "{file}");
        assert!(
            ctl.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            "{file}: client certificates required"
        );
        assert!(!ctl.allow_unauthenticated, "{file}");
        assert_eq!(
            c.metrics().map(|m| m.listen.to_string()).as_deref(),
            Some("127.0.0.1:9400"),
            "{file}"
        );
    }
}
