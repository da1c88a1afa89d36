//! The `dirctl` binary end to end: ipvsadm command lines against a control
//! API served in the test, checked through its exact output, its exit
//! status and the running table.

mod api_util;

use std::net::SocketAddr;
use std::process::Command;

use api_util::{DirctlLab as Lab, Feeder, tcp};
use director::TcpFlags;

#[test]
fn ipvsadm_commands_configure_the_director_and_list_it_exactly() {
    let lab = Lab::new();
    assert_eq!(
        lab.ok("-A -t 192.0.2.10:80 -s rr -p 600 -M 255.255.255.0"),
        ""
    );
    lab.ok("-a -t 192.0.2.10:80 -r 10.0.0.21:80 -g -w 3");
    lab.ok("-a -t 192.0.2.10:80 -r 10.0.0.22 -w 1");
    lab.ok("-A -u 192.0.2.53:53 -s sh -b sh-fallback,sh-port");
    lab.ok("-a -u 192.0.2.53:53 -r 10.0.1.1:5353 -m -x 100 -y 50");

    assert_eq!(
        lab.ok("-Ln"),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 rr persistent 600 mask 255.255.255.0
  -> 10.0.0.21:80                 Route   3      0          0         
  -> 10.0.0.22:80                 Route   1      0          0         
UDP  192.0.2.53:53 sh (sh-fallback,sh-port)
  -> 10.0.1.1:5353                Masq    1      0          0         
"
    );

    // Edits: -E replaces the options, -e the server's, -d removes one.
    lab.ok("-E -t 192.0.2.10:80 -s wlc -p 600 -M 24");
    lab.ok("-e -t 192.0.2.10:80 -r 10.0.0.21:80 -w 0");
    lab.ok("-d -t 192.0.2.10:80 -r 10.0.0.22:80");
    assert_eq!(
        lab.ok("-L -n -t 192.0.2.10:80"),
        "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.21:80                 Route   0      0          0         
"
    );

    // Refusals: the director's sentence, exit 1; the table is unchanged.
    let before = lab.ok("-Ln");
    assert_eq!(
        lab.fails("-A -t 192.0.2.10:80", 1),
        "dirctl: Service already exists\n"
    );
    assert_eq!(
        lab.fails("-a -t 192.0.2.10:80 -r 10.0.0.21", 1),
        "dirctl: Destination already exists\n"
    );
    assert_eq!(
        lab.fails("-D -t 192.0.2.11:80", 1),
        "dirctl: No such service\n"
    );
    assert_eq!(
        lab.fails("-d -t 192.0.2.10:80 -r 10.0.0.99", 1),
        "dirctl: No such destination\n"
    );
    assert!(
        lab.fails("-a -t 192.0.2.10:80 -r 10.0.0.23:8080 -g", 1)
            .contains("port mapping needs NAT")
    );
    // Bad command lines never reach the server: exit 2.
    assert!(
        lab.fails("-a -t 192.0.2.10:80 -r 10.0.0.23 -w 70000", 2)
            .contains("weight")
    );
    assert!(
        lab.fails("-A -t 192.0.2.10:80 -s fastest", 2)
            .contains("unknown scheduler")
    );
    assert_eq!(lab.ok("-Ln"), before);

    // Timeouts.
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    lab.ok("--set 3600 0 10");
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 3600 120 10\n"
    );

    // Traffic: connections, stats, zero.
    lab.ok("-e -t 192.0.2.10:80 -r 10.0.0.21:80 -w 1");
    let srv = lab.srv();
    srv.state.dp.set_active(true);
    let mut f = Feeder::new(&srv.state);
    let vip: SocketAddr = "192.0.2.10:80".parse().unwrap();
    f.feed(
        srv.now(),
        tcp("203.0.113.7:40001".parse().unwrap(), vip, TcpFlags::SYN),
    );
    f.feed(
        srv.now(),
        tcp("203.0.113.7:40001".parse().unwrap(), vip, TcpFlags::ACK),
    );
    srv.advance(61_000);
    assert_eq!(
        lab.ok("-Lnc"),
        "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 08:59  NONE        203.0.113.0:0      192.0.2.10:80      10.0.0.21:80
TCP 58:59  ESTABLISHED 203.0.113.7:40001  192.0.2.10:80      10.0.0.21:80
"
    );
    assert_eq!(
        lab.ok("-Ln --stats"),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                       1        2        0       80        0
  -> 10.0.0.21:80                        1        2        0       80        0
UDP  192.0.2.53:53                       0        0        0        0        0
  -> 10.0.1.1:5353                       0        0        0        0        0
"
    );
    assert!(
        lab.ok("-Ln --stats --exact")
            .contains("       80        0\n")
    );
    lab.ok("-Z -t 192.0.2.10:80");
    assert!(lab.ok("-Ln --stats").contains(
        "TCP  192.0.2.10:80                       0        0        0        0        0\n"
    ));
    assert!(
        lab.ok("-Ln")
            .contains("  -> 10.0.0.21:80                 Route   1      1          0         \n")
    );
    lab.ok("-Z");

    // -C empties the table.
    lab.ok("-C");
    assert_eq!(
        lab.ok("-Ln"),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
"
    );
    // No arguments at all lists, as ipvsadm does.
    assert!(lab.ok("").starts_with("IP Virtual Server version"));
}

#[test]
fn the_server_comes_from_the_environment_and_unreachable_ones_are_named() {
    let lab = Lab::new();
    let out = Command::new(env!("CARGO_BIN_EXE_dirctl"))
        .args(["-A", "-t", "192.0.2.10:80"])
        .env("DIRCTL_SERVER", lab.srv().addr.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lab.srv().state.specs().len(), 1);

    // A port nothing listens on: take one and close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dirctl"))
        .args(["--server", &dead.to_string(), "-Ln"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "dirctl: cannot reach director at {dead}: connection refused \
             (set --server or DIRCTL_SERVER)\n"
        )
    );
}

#[test]
fn help_and_the_realserver_subcommand_still_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_dirctl"))
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dirctl -A|E -t|u service-address"));
    assert!(text.contains("realserver"));
    let out = Command::new(env!("CARGO_BIN_EXE_dirctl"))
        .args(["realserver", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("setup"));
}
