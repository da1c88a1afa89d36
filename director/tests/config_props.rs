//! Whatever the text, the parser returns a value or an error that names
//! the file and a line inside it — it never panics.

use director::ServiceTable;
use director::config::{Config, ConfigError};
use proptest::prelude::*;

const DR: &str = include_str!("../../deploy/examples/dr.toml");
const NAT: &str = include_str!("../../deploy/examples/nat.toml");
const TUN: &str = include_str!("../../deploy/examples/tun.toml");

/// Parse; on success the services must build a table, on failure the
/// error must point inside the text.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, "p.toml") {
        Ok(c) => {
            let built = ServiceTable::empty().rebuild(&c.service_specs());
            prop_assert!(
                built.is_ok(),
                "accepted specs must build: {:?}",
                built.err()
            );
            prop_assert!(!c.interfaces().is_empty());
            prop_assert_eq!(c.vips_by_interface().len(), c.interfaces().len());
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("p.toml:"), "{}", msg);
            let read_error = matches!(e, ConfigError::Read { .. });
            prop_assert!(!read_error, "parse never reads a file");
            let at = e.location().unwrap();
            let lines = text.lines().count().max(1) + 1;
            prop_assert!(
                at.line >= 1 && at.line <= lines,
                "{} in {} lines",
                msg,
                lines
            );
        }
    }
    Ok(())
}

fn fragment() -> impl Strategy<Value = String> {
    let headers = prop::sample::select(vec![
        "[node]",
        "[dataplane]",
        "[timeouts]",
        "[[interface]]",
        "[[service]]",
        "[[service.real_server]]",
        "[interface]",
        "[service.real_server]",
    ])
    .prop_map(str::to_string);
    let keys = prop::sample::select(vec![
        "name",
        "workers",
        "max_connections",
        "tun_ttl",
        "verify_checksums",
        "rx_ring",
        "tcp",
        "tcpfin",
        "udp",
        "address",
        "gateway",
        "vips",
        "protocol",
        "scheduler",
        "flags",
        "mh_table_size",
        "persistence",
        "persistence_netmask",
        "method",
        "weight",
        "upper_threshold",
        "lower_threshold",
        "real_server",
    ]);
    let values = prop::sample::select(vec![
        "\"eth0\"",
        "\"eth1\"",
        "\"10.11.0.2/24\"",
        "\"10.11.0.2/0\"",
        "\"10.11.0.2/32\"",
        "\"10.12.0.2/24\"",
        "\"10.11.0.1\"",
        "\"10.11.0.100:80\"",
        "\"10.11.0.100:0\"",
        "\"10.11.0.100\"",
        "\"10.12.0.11:8080\"",
        "\"[::1]:80\"",
        "\"tcp\"",
        "\"udp\"",
        "\"mh\"",
        "\"sh\"",
        "\"wrr\"",
        "\"dr\"",
        "\"nat\"",
        "\"tun\"",
        "\"inherit\"",
        "[\"sh-port\", \"mh-fallback\"]",
        "[\"10.11.0.9\"]",
        "[{ address = \"10.12.0.1\", method = \"dr\" }]",
        "true",
        "false",
        "0",
        "1",
        "32",
        "33",
        "251",
        "4093",
        "65535",
        "65536",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "1.5",
        "1979-05-27",
    ]);
    prop_oneof![
        headers,
        (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        "\\PC{0,12}",
    ]
}

/// `key = value` from `values`, or nothing.
fn maybe(key: &'static str, values: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop::option::of(prop::sample::select(values))
        .prop_map(move |v| v.map_or(String::new(), |v| format!("{key} = {v}\n")))
}

fn real_server() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "\"10.12.0.11:80\"",
            "\"10.12.0.12\"",
            "\"10.12.0.11:8080\"",
            "\"10.11.0.2:80\"",
            "\"0.0.0.0:80\"",
            "\"[2001:db8::1]:80\"",
            "\"x\"",
        ]),
        prop::sample::select(vec!["\"dr\"", "\"tun\"", "\"nat\"", "\"-m\"", "\"bogus\""]),
        maybe(
            "weight",
            vec!["0", "1", "65535", "65536", "-1", "99999999999"],
        ),
        maybe("upper_threshold", vec!["0", "10", "4294967295"]),
        maybe("lower_threshold", vec!["0", "20"]),
    )
        .prop_map(|(a, m, w, u, l)| {
            format!("[[service.real_server]]\naddress = {a}\nmethod = {m}\n{w}{u}{l}")
        })
}

/// A `[[service]]` block with mostly well-typed, sometimes wrong, values:
/// it reaches the semantic checks rather than the TOML parser's.
fn service_block() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["\"tcp\"", "\"udp\"", "\"tcp\"", "\"UDP\"", "\"sctp\""]),
        prop::sample::select(vec![
            "\"10.11.0.100:80\"",
            "\"10.11.0.100:0\"",
            "\"10.9.0.100:80\"",
            "\"192.0.2.1:443\"",
            "\"10.9.0.2:80\"",
            "\"224.0.0.1:80\"",
        ]),
        maybe(
            "scheduler",
            vec![
                "\"rr\"",
                "\"wlc\"",
                "\"sh\"",
                "\"mh\"",
                "\"lblcr\"",
                "\"xx\"",
            ],
        ),
        maybe(
            "flags",
            vec![
                "[]",
                "[\"sh-port\"]",
                "[\"mh-fallback\", \"mh-port\"]",
                "[\"flag-1\"]",
                "[\"flag-3\"]",
            ],
        ),
        maybe(
            "mh_table_size",
            vec!["251", "4093", "4000", "131071", "131072", "-5"],
        ),
        maybe(
            "persistence",
            vec!["true", "false", "0", "1", "360", "2678401"],
        ),
        maybe("persistence_netmask", vec!["0", "24", "32", "33", "-1"]),
        prop::collection::vec(real_server(), 0..4),
    )
        .prop_map(|(p, a, s, f, m, pe, nm, rs)| {
            format!(
                "[[service]]\nprotocol = {p}\naddress = {a}\n{s}{f}{m}{pe}{nm}{}",
                rs.concat()
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn config_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text)?;
    }

    #[test]
    fn config_arbitrary_bytes_as_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn config_toml_shaped_text_never_panics(lines in prop::collection::vec(fragment(), 0..40)) {
        let text = format!(
            "[node]\nname = \"a\"\n[[interface]]\nname = \"eth9\"\naddress = \"10.9.0.2/16\"\n{}",
            lines.join("\n")
        );
        check(&text)?;
    }

    #[test]
    fn config_generated_services_are_accepted_only_if_the_table_accepts_them(
        blocks in prop::collection::vec(service_block(), 0..4),
    ) {
        let text = format!(
            "[node]\nname = \"a\"\n[[interface]]\nname = \"eth9\"\naddress = \"10.9.0.2/16\"\n{}",
            blocks.concat()
        );
        check(&text)?;
    }

    #[test]
    fn config_damaged_examples_never_panic(
        which in 0..3usize,
        at in any::<prop::sample::Index>(),
        len in 0..40usize,
        insert in "\\PC{0,8}",
    ) {
        let base = [DR, NAT, TUN][which];
        let mut start = at.index(base.len() + 1);
        while !base.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + len).min(base.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        let text = format!("{}{}{}", &base[..start], insert, &base[end..]);
        check(&text)?;
    }
}
