//! `[services] ipvsadm_rules`: services loaded from a file in `ipvsadm -S`
//! syntax, through the same parser as `dirctl -R`; errors name the rules
//! file and line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use director::ServiceTable;
use director::config::Config;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("config-rules-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const NODE: &str =
    "[node]\nname = \"a\"\n\n[[interface]]\nname = \"eth0\"\naddress = \"10.11.0.2/24\"\n";

#[test]
fn the_rules_example_loads_the_services_of_its_rules_file() {
    let c = Config::load(examples_dir().join("rules.toml")).unwrap();
    let specs = c.service_specs();
    assert_eq!(specs.len(), 6);
    assert_eq!(specs.iter().map(|s| s.dests.len()).sum::<usize>(), 13);
    let https = specs
        .iter()
        .find(|s| s.key.vip == "10.11.0.100:443".parse().unwrap())
        .unwrap();
    let p = https.persistence.unwrap();
    assert_eq!(
        (p.timeout, p.netmask_prefix),
        (Duration::from_secs(1800), 24)
    );
    assert_eq!(ServiceTable::empty().rebuild(&specs).unwrap().len(), 6);
    assert!(
        c.all_vips().contains(&"10.11.0.103".parse().unwrap()),
        "rules-file VIPs are answered for"
    );
}

#[test]
fn rules_come_after_service_tables_and_set_overrides_timeouts() {
    let dir = scratch("order");
    std::fs::write(
        dir.join("r"),
        "-a -t 10.11.0.100:80 -r 10.11.0.12 -g -w 2\n--set 0 0 30\n",
    )
    .unwrap();
    let text = format!(
        "{NODE}\n[timeouts]\ntcp = 1000\nudp = 99\n\n[services]\nipvsadm_rules = \"r\"\n\n\
         [[service]]\nprotocol = \"tcp\"\naddress = \"10.11.0.100:80\"\n\
         [[service.real_server]]\naddress = \"10.11.0.11\"\nmethod = \"dr\"\n"
    );
    let path = dir.join("d.toml");
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap();
    let dests: Vec<String> = c.service_specs()[0]
        .dests
        .iter()
        .map(|d| format!("{} {}", d.addr, d.weight))
        .collect();
    assert_eq!(dests, ["10.11.0.11:80 1", "10.11.0.12:80 2"]);
    let t = c.timeouts();
    assert_eq!(t.tcp, Some(Duration::from_secs(1000)));
    assert_eq!(t.udp, Some(Duration::from_secs(30)), "--set overrides");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_name_the_rules_file_and_line() {
    let dir = scratch("errors");
    let rules = dir.join("bad.rules");
    let config = dir.join("d.toml");
    std::fs::write(
        &config,
        format!("{NODE}\n[services]\nipvsadm_rules = \"bad.rules\"\n"),
    )
    .unwrap();

    std::fs::write(
        &rules,
        "-A -t 10.11.0.100:80 -s rr\n\n-a -t 10.11.0.100:80 -r 10.11.0.11 -w x\n",
    )
    .unwrap();
    let e = Config::load(&config).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3: ", rules.display())) && e.contains("weight"),
        "{e}"
    );
    assert!(e.contains("d.toml"), "names the configuration too: {e}");

    std::fs::write(
        &rules,
        "-A -t 10.11.0.100:80 -s rr\n-a -t 10.11.0.101:80 -r 10.11.0.11\n",
    )
    .unwrap();
    let e = Config::load(&config).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2: ", rules.display())) && e.contains("No such service"),
        "{e}"
    );

    std::fs::remove_file(&rules).unwrap();
    let e = Config::load(&config).unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("bad.rules"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
