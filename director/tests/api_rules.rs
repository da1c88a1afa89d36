//! Save and restore end to end: `dirctl -R` / `dirctl -S` (the binary)
//! against a control API served over real gRPC, with rules files in
//! ipvsadm's own syntax, and the listings that follow; `ApplyRules`'
//! all-or-nothing contract over the wire; rates from the estimator in
//! `-Ln --rate`.

#![allow(clippy::disallowed_methods)]

mod api_util;

use std::net::SocketAddr;
use std::path::Path;

use api_util::{DirctlLab as Lab, Feeder, tcp};
use director::TcpFlags;
use lb_proto::common as pb;
use lb_proto::control::{self as ctl, rule_op::Op};

/// Restore `rules` and expect failure (exit 1); returns stderr.
fn restore_fails(lab: &Lab, rules: &str) -> String {
    let out = lab.run_in("-R", Some(rules));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn fixture() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/ipvsadm.rules");
    std::fs::read_to_string(p).unwrap()
}

/// `ipvsadm -Ln` of the fixture's table, from ipvsadm 1.31's format
/// strings (no kernel IPVS on the test machine to ask).
const FIXTURE_LISTING: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.11.0.100:80 wrr
  -> 10.12.0.11:80                Route   3      0          0         
  -> 10.12.0.12:80                Route   1      0          0         
  -> 10.12.0.13:80                Route   0      0          0         
TCP  10.11.0.100:443 wlc persistent 1800 mask 255.255.255.0
  -> 10.12.0.11:443               Route   5      0          0         
  -> 10.12.0.12:443               Route   5      0          0         
TCP  10.11.0.101:8080 mh (mh-fallback,mh-port)
  -> 10.12.0.21:8000              Masq    1      0          0         
  -> 10.12.0.22:8000              Masq    2      0          0         
TCP  10.11.0.102:0 sh (sh-port) persistent 300 mask 255.255.0.0
  -> 10.12.0.31:0                 Tunnel  1      0          0         
  -> 10.12.0.32:0                 Tunnel  1      0          0         
UDP  10.11.0.100:53 rr
  -> 10.12.0.11:53                Route   1      0          0         
  -> 10.12.0.12:53                Route   1      0          0         
UDP  10.11.0.103:1812 sh persistent 300
  -> 10.12.0.41:1812              Masq    2      0          0         
  -> 10.12.0.42:1812              Masq    1      0          0         
";

#[test]
fn rules_saved_by_ipvsadm_restore_list_and_save_back_unchanged() {
    let lab = Lab::new();
    let rules = fixture();
    assert_eq!(
        lab.ok_in("-R", Some(&rules)),
        "",
        "-R is silent, as ipvsadm's"
    );
    assert_eq!(lab.ok("-Ln"), FIXTURE_LISTING);
    assert_eq!(lab.ok("-S -n"), rules, "the round trip is exact");
    assert_eq!(lab.ok("-S"), rules, "-S is always numeric");
    assert_eq!(lab.ok("--save"), rules);
    // Into a second director: the same table.
    let other = Lab::new();
    other.ok_in("-R", Some(&lab.ok("-S")));
    assert_eq!(other.ok("-Ln"), FIXTURE_LISTING);
}

#[test]
fn names_comments_and_hand_edits_restore_as_ipvsadm_reads_them() {
    let lab = Lab::new();
    // What `ipvsadm -S` (without -n) writes for the same kind of table,
    // plus what operators add by hand: comments, a shell-style `ipvsadm`
    // prefix, thresholds, flag-1/flag-2, a timeout line.
    let rules = "\
# web farm, saved with ipvsadm -S
-A -t 10.11.0.100:http -s wrr
-a -t 10.11.0.100:http -r 10.12.0.11:http -g -w 3 -x 500 -y 400
-a -t 10.11.0.100:http -r 10.12.0.12:http -g -w 1

ipvsadm -A -t 10.11.0.101:8080 -s mh -b flag-1,flag-2   # maglev
-a -t 10.11.0.101:8080 -r 10.12.0.21:8000 -m -w 1 -x 100
-A -u 10.11.0.100:domain -s rr
-a -u 10.11.0.100:domain -r 10.12.0.11:domain -g -w 1
--set 3600 0 60
";
    lab.ok_in("-R", Some(rules));
    assert_eq!(
        lab.ok("-S"),
        "\
--set 3600 120 60
-A -t 10.11.0.100:80 -s wrr
-a -t 10.11.0.100:80 -r 10.12.0.11:80 -g -w 3 -x 500 -y 400
-a -t 10.11.0.100:80 -r 10.12.0.12:80 -g -w 1
-A -t 10.11.0.101:8080 -s mh -b mh-fallback,mh-port
-a -t 10.11.0.101:8080 -r 10.12.0.21:8000 -m -w 1 -x 100
-A -u 10.11.0.100:53 -s rr
-a -u 10.11.0.100:53 -r 10.12.0.11:53 -g -w 1
"
    );
    assert_eq!(
        lab.ok("-Ln --thresholds"),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.11.0.100:80 wrr
  -> 10.12.0.11:80                500        400        0          0         
  -> 10.12.0.12:80                0          0          0          0         
TCP  10.11.0.101:8080 mh (mh-fallback,mh-port)
  -> 10.12.0.21:8000              100        0          0          0         
UDP  10.11.0.100:53 rr
  -> 10.12.0.11:53                0          0          0          0         
"
    );
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 3600 120 60\n"
    );
}

#[test]
fn a_bad_rules_file_applies_nothing_and_names_the_line() {
    let lab = Lab::new();
    lab.ok_in("-R", Some(&fixture()));
    let before = lab.ok("-Ln");
    let timeouts = lab.ok("-L --timeout");

    // Refused by the director at the fourth op: line 5 of the file.
    let e = restore_fails(
        &lab,
        "\
--set 10 10 10
-A -t 10.11.0.200:80 -s rr
# a comment line still counts
-a -t 10.11.0.200:80 -r 10.12.0.51:80 -g
-a -t 10.11.0.201:80 -r 10.12.0.52:80 -g
",
    );
    assert_eq!(
        e,
        "dirctl: line 5 (-a -t 10.11.0.201:80 -r 10.12.0.52:80 -g): No such service; \
         nothing was applied\n"
    );
    // A duplicate of a service already in the table.
    let e = restore_fails(&lab, "-A -t 10.11.0.100:80 -s rr\n");
    assert!(
        e.starts_with("dirctl: line 1 (-A -t 10.11.0.100:80 -s rr): Service already exists"),
        "{e}"
    );
    // DR cannot map ports: the director's sentence, at its line.
    let e = restore_fails(
        &lab,
        "-A -t 10.11.0.200:80 -s rr\n-a -t 10.11.0.200:80 -r 10.12.0.51:8080 -g\n",
    );
    assert!(
        e.starts_with("dirctl: line 2 (") && e.contains("NAT"),
        "{e}"
    );
    // Refused by the parser before anything is sent.
    let e = restore_fails(
        &lab,
        "-A -t 10.11.0.200:80 -s rr\n-a -t 10.11.0.200:80 -r 10.12.0.51 -w heavy\n",
    );
    assert!(
        e.starts_with("dirctl: line 2: ") && e.contains("weight"),
        "{e}"
    );
    let e = restore_fails(&lab, "-A -f 7 -s rr\n");
    assert!(
        e.starts_with("dirctl: line 1: ") && e.contains("firewall-mark"),
        "{e}"
    );
    let e = restore_fails(&lab, "-A -t lb.example.com:http -s rr\n");
    assert!(e.contains("line 1") && e.contains("lb.example.com"), "{e}");

    assert_eq!(lab.ok("-Ln"), before, "nothing half applied");
    assert_eq!(lab.ok("-L --timeout"), timeouts, "timeouts untouched too");
}

fn op(o: Op) -> ctl::RuleOp {
    ctl::RuleOp { op: Some(o) }
}

fn add_service(vip: &str) -> ctl::RuleOp {
    let vip: SocketAddr = vip.parse().unwrap();
    op(Op::AddService(ctl::AddServiceRequest {
        spec: Some(pb::ServiceSpec {
            key: Some(pb::ServiceKey {
                protocol: pb::Protocol::Tcp as i32,
                vip: Some(pb::Endpoint {
                    ip: vip.ip().to_string(),
                    port: u32::from(vip.port()),
                }),
                ..Default::default()
            }),
            scheduler: "rr".into(),
            ..Default::default()
        }),
        real_servers: Vec::new(),
    }))
}

#[test]
fn apply_rules_over_grpc_is_one_version_or_nothing() {
    let lab = Lab::new();
    lab.rt.block_on(async {
        let mut c = lab.srv().client().await;
        let v0 = c
            .get_service_table(ctl::GetServiceTableRequest {})
            .await
            .unwrap()
            .into_inner()
            .version;
        let set = op(Op::SetTimeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 77,
                ..Default::default()
            }),
        }));
        let r = c
            .apply_rules(ctl::ApplyRulesRequest {
                ops: vec![add_service("10.0.0.1:80"), add_service("10.0.0.1:81"), set],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.config_version, v0 + 1, "one version for the transaction");
        assert_eq!((r.ops_applied, r.services, r.real_servers), (3, 2, 0));
        let t = c
            .get_service_table(ctl::GetServiceTableRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.version, v0 + 1);
        assert_eq!(t.services.len(), 2);
        assert_eq!(t.timeouts.unwrap().tcp_timeout_s, 77);

        // A failing op: status of that op, "op N: ", nothing applied
        // (not the timeouts either).
        let set = op(Op::SetTimeouts(ctl::SetTimeoutsRequest {
            timeouts: Some(pb::Timeouts {
                tcp_timeout_s: 5,
                ..Default::default()
            }),
        }));
        let e = c
            .apply_rules(ctl::ApplyRulesRequest {
                ops: vec![set, add_service("10.0.0.2:80"), add_service("10.0.0.1:80")],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        assert_eq!(e.message(), "op 2: Service already exists");
        let after = c
            .get_service_table(ctl::GetServiceTableRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after, t, "table, version and timeouts unchanged");

        // Dry run and a stale version: validated, nothing published.
        let dry = c
            .apply_rules(ctl::ApplyRulesRequest {
                ops: vec![add_service("10.0.0.3:80")],
                dry_run: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((dry.config_version, dry.services), (v0 + 1, 3));
        let stale = c
            .apply_rules(ctl::ApplyRulesRequest {
                ops: vec![add_service("10.0.0.3:80")],
                expected_config_version: v0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
        // Replace: exactly what the ops describe.
        let r = c
            .apply_rules(ctl::ApplyRulesRequest {
                ops: vec![add_service("10.0.0.9:80")],
                replace: true,
                expected_config_version: v0 + 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.config_version, r.services), (v0 + 2, 1));
    });
}

#[test]
fn rates_from_the_estimator_list_as_ipvsadm_rate() {
    let lab = Lab::new();
    lab.ok_in(
        "-R",
        Some("-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.21:80 -g -w 1\n"),
    );
    let srv = lab.srv();
    srv.state.dp.set_active(true);
    let mut f = Feeder::new(&srv.state);
    let vip: SocketAddr = "192.0.2.10:80".parse().unwrap();
    // The daemon samples every 2 s; here the test drives the samples.
    srv.state.rates.sample(srv.now(), &srv.state.dp.services());
    for i in 0..200u16 {
        let client: SocketAddr = format!("203.0.113.7:{}", 20_000 + i).parse().unwrap();
        f.feed(srv.now(), tcp(client, vip, TcpFlags::SYN));
    }
    srv.advance(2_000);
    srv.state.rates.sample(srv.now(), &srv.state.dp.services());
    // 200 SYNs of 40 bytes in 2 s: 100 conn/s, 100 packets/s, 4000 B/s;
    // the first estimate is a quarter of it, as IPVS's.
    assert_eq!(
        lab.ok("-Ln --rate"),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.0.2.10:80                      25       25        0     1000        0
  -> 10.0.0.21:80                       25       25        0     1000        0
"
    );
}
