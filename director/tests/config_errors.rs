//! Broken configurations are refused whole, and each error names the file,
//! the line (and column) of the offending entry or value, and the problem.

use director::config::{Config, ConfigError, Problem};
use director::{ServiceTable, SpecError};

/// Lines 1–7.
const BASE: &str = r#"[node]
name = "a"

[[interface]]
name = "eth0"
address = "10.11.0.2/24"
gateway = "10.11.0.1"
"#;

/// Lines 8–10: a service header, protocol and address.
const SVC: &str = r#"[[service]]
protocol = "tcp"
address = "10.11.0.100:80"
"#;

/// BASE + SVC + `rest` (rest starts on line 11).
fn svc(rest: &str) -> String {
    format!("{BASE}{SVC}{rest}")
}

struct Case {
    name: &'static str,
    text: String,
    /// The exact `origin:line:column:` prefix expected.
    at: &'static str,
    /// Words the message must contain.
    words: &'static [&'static str],
}

fn case(
    name: &'static str,
    text: impl Into<String>,
    at: &'static str,
    words: &'static [&'static str],
) -> Case {
    Case {
        name,
        text: text.into(),
        at,
        words,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // --- syntax and schema (the TOML parser's spans) ---
        case(
            "unclosed table header",
            format!("{BASE}[[service]\n"),
            "t.toml:8:",
            &["expected"],
        ),
        case(
            "typo in a key",
            BASE.replace("name = \"a\"", "nmae = \"a\""),
            "t.toml:2:1:",
            &["unknown field `nmae`", "name"],
        ),
        case(
            "missing node name",
            BASE.replace("name = \"a\"\n", ""),
            "t.toml:1:1:",
            &["missing field `name`"],
        ),
        case(
            "unknown table",
            format!("{BASE}[vrrp]\nvrid = 51\n"),
            "t.toml:8:",
            &["unknown field `vrrp`"],
        ),
        case(
            "typo in a real-server key",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\nwieght = 2\n",
            ),
            "t.toml:14:1:",
            &["unknown field `wieght`", "weight"],
        ),
        case(
            "wrong type",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\nweight = \"2\"\n",
            ),
            "t.toml:14:10:",
            &["invalid type", "string"],
        ),
        case(
            "persistence of the wrong type",
            svc("persistence = \"yes\"\n"),
            "t.toml:11:15:",
            &["number of seconds", "true"],
        ),
        case("empty file", "", "t.toml:1:", &["missing field `node`"]),
        case(
            "vips not an array",
            format!("{BASE}vips = \"10.11.0.9\"\n"),
            "t.toml:8:8:",
            &["invalid type", "expected an array"],
        ),
        // --- [dataplane] and [timeouts] ---
        case(
            "zero workers",
            format!("{BASE}[dataplane]\nworkers = 0\n"),
            "t.toml:9:11:",
            &["workers = 0", "at least one"],
        ),
        case(
            "too many workers",
            format!("{BASE}[dataplane]\nworkers = 1000\n"),
            "t.toml:9:11:",
            &["workers = 1000", "at most 32"],
        ),
        case(
            // Each data interface runs `workers` threads, and all of them
            // share 32 counter slots: refused here, not when the daemon
            // starts its threads.
            "too many workers for two interfaces",
            format!(
                "{BASE}\n[[interface]]\nname = \"eth1\"\naddress = \"10.12.0.2/24\"\n\n\
                 [dataplane]\nworkers = 17\n"
            ),
            "t.toml:14:11:",
            &[
                "workers = 17",
                "at most 16 per interface with 2 data interface(s)",
            ],
        ),
        case(
            "unknown fanout",
            format!("{BASE}[dataplane]\nfanout = \"rss\"\n"),
            "t.toml:9:10:",
            &["fanout = \"rss\"", "\"hash\"", "\"cpu\""],
        ),
        case(
            "offloads not a boolean",
            format!("{BASE}[dataplane]\noffloads = \"on\"\n"),
            "t.toml:9:12:",
            &["invalid type: string \"on\"", "expected a boolean"],
        ),
        case(
            "ring_mib too large",
            format!("{BASE}[dataplane]\nring_mib = 4096\n"),
            "t.toml:9:12:",
            &["ring_mib = 4096", "1 to 1024 MiB"],
        ),
        case(
            "zero max_connections",
            format!("{BASE}[dataplane]\nmax_connections = 0\n"),
            "t.toml:9:19:",
            &["max_connections = 0", "out of range"],
        ),
        case(
            "tun_ttl zero",
            format!("{BASE}[dataplane]\ntun_ttl = 0\n"),
            "t.toml:9:11:",
            &["tun_ttl = 0", "1..=255", "inherit"],
        ),
        case(
            "tun_ttl word",
            format!("{BASE}[dataplane]\ntun_ttl = \"copy\"\n"),
            "t.toml:9:11:",
            &["copy", "inherit"],
        ),
        case(
            "zero timeout",
            format!("{BASE}[timeouts]\ntcp = 900\ntcpfin = 0\n"),
            "t.toml:10:10:",
            &["timeout tcpfin = 0", "out of range", "default of 120 s"],
        ),
        case(
            "timeout beyond 31 days",
            format!("{BASE}[timeouts]\nudp = 9999999\n"),
            "t.toml:9:7:",
            &["timeout udp = 9999999", "2678400"],
        ),
        // --- [[interface]] ---
        case(
            "no interface",
            "[node]\nname = \"a\"\n",
            "t.toml:1:",
            &["no [[interface]]"],
        ),
        case(
            "duplicate interface",
            format!("{BASE}\n[[interface]]\nname = \"eth0\"\naddress = \"10.12.0.2/24\"\n"),
            "t.toml:9:1:",
            &["interface eth0 is configured twice"],
        ),
        case(
            "address without prefix",
            BASE.replace("10.11.0.2/24", "10.11.0.2"),
            "t.toml:6:11:",
            &["interface eth0", "prefix length is missing"],
        ),
        case(
            "prefix too long",
            BASE.replace("10.11.0.2/24", "10.11.0.2/33"),
            "t.toml:6:11:",
            &["interface eth0", "\"33\" is not 0..=32"],
        ),
        case(
            "not an address",
            BASE.replace("10.11.0.2/24", "10.11.0.256/24"),
            "t.toml:6:11:",
            &["\"10.11.0.256\" is not an IPv4 address"],
        ),
        case(
            "network address as own address",
            BASE.replace("10.11.0.2/24", "10.11.0.0/24"),
            "t.toml:6:11:",
            &["network address"],
        ),
        case(
            "gateway off the subnet",
            BASE.replace("gateway = \"10.11.0.1\"", "gateway = \"10.12.0.1\""),
            "t.toml:7:11:",
            &["gateway 10.12.0.1 is outside", "10.11.0.0/24"],
        ),
        case(
            "interface name too long",
            BASE.replace("\"eth0\"", "\"a-very-long-interface\""),
            "t.toml:5:8:",
            &["not a valid Linux interface name", "15 bytes"],
        ),
        case(
            "vip is the own address",
            format!("{BASE}vips = [\"10.11.0.2\"]\n"),
            "t.toml:8:9:",
            &["10.11.0.2 is the own address of interface eth0"],
        ),
        case(
            "vip listed twice",
            format!(
                "{BASE}vips = [\"10.11.0.9\"]\n\n[[interface]]\nname = \"eth1\"\n\
                 address = \"10.12.0.2/24\"\nvips = [\"10.11.0.9\"]\n"
            ),
            "t.toml:13:9:",
            &["vip 10.11.0.9 is already listed on interface eth0"],
        ),
        case(
            "gateway not an address",
            BASE.replace("gateway = \"10.11.0.1\"", "gateway = \"router\""),
            "t.toml:7:11:",
            &["interface eth0: gateway \"router\" is not an IPv4 address"],
        ),
        case(
            "multicast vip",
            format!("{BASE}vips = [\"10.11.0.9\", \"224.0.0.18\"]\n"),
            "t.toml:8:22:",
            &["interface eth0: vip 224.0.0.18 cannot be used", "multicast"],
        ),
        // --- [[service]] ---
        case(
            "service VIP is an interface address",
            BASE.to_string() + &SVC.replace("10.11.0.100:80", "10.11.0.2:80"),
            "t.toml:10:11:",
            &["TCP 10.11.0.2:80", "own address of interface eth0"],
        ),
        case(
            "unknown protocol",
            BASE.to_string() + &SVC.replace("\"tcp\"", "\"sctp\""),
            "t.toml:9:12:",
            &["unknown protocol \"sctp\"", "tcp or udp"],
        ),
        case(
            "service address without port",
            BASE.to_string() + &SVC.replace("10.11.0.100:80", "10.11.0.100"),
            "t.toml:10:11:",
            &["not VIP:port"],
        ),
        case(
            "IPv6 VIP",
            BASE.to_string() + &SVC.replace("10.11.0.100:80", "[2001:db8::1]:80"),
            "t.toml:10:11:",
            &["IPv6", "IPv4 only"],
        ),
        case(
            "unknown scheduler",
            svc("scheduler = \"wlx\"\n"),
            "t.toml:11:13:",
            &[
                "TCP 10.11.0.100:80",
                "unknown scheduler \"wlx\"",
                "wlc",
                "mh",
                "twos",
            ],
        ),
        case(
            "unknown flag",
            svc("scheduler = \"sh\"\nflags = [\"sh-port\", \"sh-fallbak\"]\n"),
            "t.toml:12:21:",
            &["unknown scheduler flag \"sh-fallbak\""],
        ),
        case(
            "flag for another scheduler",
            svc("scheduler = \"mh\"\nflags = [\"sh-port\"]\n"),
            "t.toml:12:10:",
            &["flag sh-port only changes the sh scheduler", "uses mh"],
        ),
        case(
            "mh_table_size not prime",
            svc("scheduler = \"mh\"\nmh_table_size = 4000\n"),
            "t.toml:12:17:",
            &["mh table size 4000 is not prime"],
        ),
        case(
            "mh_table_size without mh",
            svc("mh_table_size = 4093\n"),
            "t.toml:11:17:",
            &["mh_table_size only applies to the mh scheduler", "wlc"],
        ),
        case(
            "persistence netmask too long",
            svc("persistence = 300\npersistence_netmask = 33\n"),
            "t.toml:12:23:",
            &["persistence_netmask = 33", "0..=32"],
        ),
        case(
            "netmask without persistence",
            svc("persistence_netmask = 24\n"),
            "t.toml:11:23:",
            &["persistence_netmask is set but persistence is not"],
        ),
        case(
            "zero persistence",
            svc("persistence = 0\n"),
            "t.toml:11:15:",
            &["persistence = 0 is out of range"],
        ),
        case(
            "all ports without persistence",
            BASE.to_string() + &SVC.replace("10.11.0.100:80", "10.11.0.100:0"),
            "t.toml:10:11:",
            &["port 0 (all ports) needs persistence"],
        ),
        case(
            "duplicate service",
            format!("{BASE}{SVC}\n{SVC}"),
            "t.toml:12:1:",
            &["TCP 10.11.0.100:80 is defined twice"],
        ),
        case(
            "unspecified VIP",
            BASE.to_string() + &SVC.replace("10.11.0.100:80", "0.0.0.0:80"),
            "t.toml:10:11:",
            &["virtual service 0.0.0.0:80 cannot be used", "unspecified"],
        ),
        // --- [[service.real_server]] ---
        case(
            "DR port mapping",
            svc(
                "\n  [[service.real_server]]\n  address = \"10.12.0.10:80\"\n  method = \"dr\"\n\
                 \n  [[service.real_server]]\n  address = \"10.12.0.11:8080\"\n  method = \"dr\"\n",
            ),
            "t.toml:16:3:",
            &[
                "real server 10.12.0.11:8080 of TCP 10.11.0.100:80",
                "dr forwarding on port 8080",
                "virtual port is 80",
                "needs NAT",
            ],
        ),
        case(
            "TUN port mapping",
            svc("[[service.real_server]]\naddress = \"10.12.0.11:8080\"\nmethod = \"tun\"\n"),
            "t.toml:11:1:",
            &["tun forwarding on port 8080", "needs NAT"],
        ),
        case(
            "weight out of range",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\nweight = 70000\n",
            ),
            "t.toml:14:10:",
            &["10.12.0.11:80", "weight 70000 is out of range 0..=65535"],
        ),
        case(
            "negative weight beyond i32",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\nweight = -9999999999\n",
            ),
            "t.toml:14:10:",
            &["weight -9999999999 is out of range"],
        ),
        case(
            "unknown method",
            svc("[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"direct\"\n"),
            "t.toml:13:10:",
            &[
                "real server 10.12.0.11:80 of TCP 10.11.0.100:80",
                "unknown forwarding method \"direct\"",
                "dr, tun or nat",
            ],
        ),
        case(
            "real server twice",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\n\
                 [[service.real_server]]\naddress = \"10.12.0.11\"\nmethod = \"dr\"\n",
            ),
            "t.toml:14:1:",
            &["real server 10.12.0.11:80 appears twice"],
        ),
        case(
            "lower threshold above upper",
            svc(
                "[[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\n\
                 upper_threshold = 10\nlower_threshold = 20\n",
            ),
            "t.toml:11:1:",
            &["lower threshold 20 is above upper threshold 10"],
        ),
        case(
            "bad real-server address",
            svc("[[service.real_server]]\naddress = \"server-1:80\"\nmethod = \"dr\"\n"),
            "t.toml:12:11:",
            &["\"server-1:80\"", "neither IP:port nor IP"],
        ),
        case(
            "inline real server",
            svc("real_server = [{ address = \"10.12.0.11:81\", method = \"dr\" }]\n"),
            "t.toml:11:16:",
            &["port 81", "needs NAT"],
        ),
    ]
}

#[test]
fn config_each_broken_config_names_the_line_and_the_problem() {
    let mut failures = Vec::new();
    for c in cases() {
        let err = match Config::parse(&c.text, "t.toml") {
            Ok(_) => {
                failures.push(format!("{}: accepted", c.name));
                continue;
            }
            Err(e) => e,
        };
        let msg = err.to_string();
        if !msg.starts_with(c.at) {
            failures.push(format!("{}: expected at {}, got: {msg}", c.name, c.at));
        }
        for w in c.words {
            if !msg.contains(w) {
                failures.push(format!("{}: missing {w:?} in: {msg}", c.name));
            }
        }
        if msg.contains('\n') {
            failures.push(format!("{}: not one line: {msg}", c.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn config_the_location_is_structured_too() {
    let text = svc("[[service.real_server]]\naddress = \"10.12.0.11:8080\"\nmethod = \"dr\"\n");
    let err = Config::parse(&text, "deploy/examples/bad.toml").unwrap_err();
    let at = err.location().unwrap();
    assert_eq!(
        (at.origin.as_str(), at.line, at.column),
        ("deploy/examples/bad.toml", 11, Some(1))
    );
    assert!(
        matches!(
            err.problem(),
            Some(Problem::Service(SpecError::PortMappingNeedsNat { .. }))
        ),
        "{err:?}"
    );
    assert!(matches!(err, ConfigError::Invalid { .. }));
}

#[test]
fn config_one_bad_service_refuses_the_whole_file() {
    let good = "[[service]]\nprotocol = \"tcp\"\naddress = \"10.11.0.100:80\"\n\
                [[service.real_server]]\naddress = \"10.12.0.11:80\"\nmethod = \"dr\"\n";
    let bad =
        "[[service]]\nprotocol = \"udp\"\naddress = \"10.11.0.100:53\"\nscheduler = \"nope\"\n";
    assert!(Config::parse(&format!("{BASE}{good}"), "t.toml").is_ok());
    let err = Config::parse(&format!("{BASE}{good}{bad}"), "t.toml").unwrap_err();
    assert!(err.to_string().starts_with("t.toml:17:13:"), "{err}");
    // Order does not matter either.
    assert!(Config::parse(&format!("{BASE}{bad}{good}"), "t.toml").is_err());
}

#[test]
fn config_what_loads_is_what_the_service_table_accepts() {
    // A valid edge: weight 0 and 65535, thresholds equal, all-ports with
    // persistence, NAT port mapping.
    let text = format!(
        "{BASE}[[service]]\nprotocol = \"udp\"\naddress = \"10.11.0.100:0\"\npersistence = 1\n\
         persistence_netmask = 0\n\
         [[service.real_server]]\naddress = \"10.12.0.11\"\nmethod = \"dr\"\nweight = 0\n\
         [[service.real_server]]\naddress = \"10.12.0.12\"\nmethod = \"dr\"\nweight = 65535\n\
         upper_threshold = 5\nlower_threshold = 5\n"
    );
    let c = Config::parse(&text, "t.toml").unwrap();
    let t = ServiceTable::empty().rebuild(&c.service_specs()).unwrap();
    assert_eq!(t.specs(), c.service_specs());
}
