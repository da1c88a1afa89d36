//! Health checks end to end: `directord` checking real nginx servers in a
//! DR lab of network namespaces and steering real kernel TCP by what the
//! checks find.
//!
//! - a stopped server goes down within a few intervals (weight 0, no
//!   client error, every new request to the others), the sorry server
//!   answers while all are down, and servers come back with their weight —
//!   the one an operator set while the server was down;
//! - a server answering 500 on the check path is down for an HTTP check
//!   and up for a TCP check of the same server, and a download in
//!   progress on it finishes intact (drained, not reassigned);
//! - a check command that hangs is killed, with its children, at its
//!   timeout, and counts as a failure.
//!
//! Short intervals (300 ms) keep it quick; time bounds are generous (the
//! machine is shared). Bounded: a few dozen requests per test, every wait
//! has a deadline, and the lab is removed on every exit path.

// Lab tests wait on the real clock; the no-clock rule is for the core.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use lab_tests::{Directord, Host, HttpServer, Lab, NginxOptions, sha256_file};

/// How long any state change may take here (checks every 300 ms, fall 2).
const SETTLE: Duration = Duration::from_secs(10);

/// A DR lab: client, director, real servers `rs1..=rsN` (and a sorry
/// server `sorry` at .19), nginx on each, all on 10.24.0.0/24 with the
/// given VIPs on the real servers' lo.
struct HealthLab {
    lab: Lab,
    client: Host,
    director: Directord,
    servers: Vec<HttpServer>,
    hosts: Vec<Host>,
    big_mib: u32,
}

fn lab(
    name: &str,
    vips: &[Ipv4Addr],
    n: u8,
    sorry: bool,
    big_mib: u32,
    config: &str,
) -> Result<Option<HealthLab>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let lan = lab.segment("lan", "10.24.0.0/24")?;
    let client = lab.host("client")?;
    let mut ifaces = vec![lab.link(&client, &lan, "10.24.0.10/24")?];
    let dir = lab.host("director")?;
    ifaces.push(lab.link(&dir, &lan, "10.24.0.2/24")?);
    let mut servers = Vec::new();
    let mut hosts = Vec::new();
    let mut names: Vec<(String, String)> = (1..=n)
        .map(|i| (format!("rs{i}"), format!("10.24.0.1{i}/24")))
        .collect();
    if sorry {
        names.push(("sorry".into(), "10.24.0.19/24".into()));
    }
    for (name, addr) in names {
        let h = lab.host(&name)?;
        ifaces.push(lab.link(&h, &lan, &addr)?);
        for vip in vips {
            lab.dr_real_server(&h, *vip)?;
        }
        servers.push(nginx(&lab, &h, &name, big_mib)?);
        hosts.push(h);
    }
    for i in &ifaces {
        lab.disable_offloads(i)?;
    }
    let director = Directord::start(&lab, &dir, &lab_tests::bins!(), config)?;
    Ok(Some(HealthLab {
        lab,
        client,
        director,
        servers,
        hosts,
        big_mib,
    }))
}

fn nginx(lab: &Lab, host: &Host, name: &str, big_mib: u32) -> Result<HttpServer> {
    lab.nginx_with(
        host,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
        name,
        &NginxOptions { big_mib },
    )
}

impl HealthLab {
    /// `n` requests to `url`; the names of the servers that answered.
    /// Every request must succeed with 200.
    fn requests(&self, url: &str, n: usize) -> Result<Vec<String>> {
        self.lab.names_of_requests(&self.client, url, n)
    }

    fn health(&self) -> Result<String> {
        self.director.dirctl(&self.lab, &["health"])
    }

    /// Wait (bounded by [`SETTLE`]) until `dirctl health` has a line with
    /// every word of `words`; returns how long it took and the listing.
    fn wait_health(&self, words: &[&str]) -> Result<(Duration, String)> {
        let t0 = Instant::now();
        loop {
            let text = self.health()?;
            if text.lines().any(|l| {
                words
                    .iter()
                    .all(|w| l.split_whitespace().any(|x| x == *w) || l.contains(w))
            }) {
                return Ok((t0.elapsed(), text));
            }
            if t0.elapsed() > SETTLE {
                bail!(
                    "no line with {words:?} in dirctl health within {SETTLE:?}:\n{text}\n{}",
                    self.director.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The weight column of real server `rs` in `dirctl -Ln`; `None` if
    /// not listed.
    fn listed_weight(&self, rs: &str) -> Result<Option<u32>> {
        let list = self.director.dirctl(&self.lab, &["-Ln"])?;
        Ok(list
            .lines()
            .filter(|l| l.trim_start().starts_with("->"))
            .find(|l| l.split_whitespace().nth(1) == Some(rs))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|w| w.parse().ok()))
    }
}

fn count(names: &[String], who: &str) -> usize {
    names.iter().filter(|n| *n == who).count()
}

const URL: &str = "http://10.24.0.100/";

#[test]
fn stopped_servers_go_down_the_sorry_server_answers_and_they_come_back() -> Result<()> {
    let Some(mut m) = lab(
        "hcstop",
        &[Ipv4Addr::new(10, 24, 0, 100)],
        2,
        true,
        0,
        r#"
[node]
name = "hc-stop"
[[interface]]
name = "eth0"
address = "10.24.0.2/24"
[[service]]
protocol = "tcp"
address = "10.24.0.100:80"
scheduler = "wrr"
  [service.health_check]
  type = "http"
  path = "/health"
  interval = 0.3
  timeout = 0.5
  fall = 2
  rise = 2
  [service.sorry_server]
  address = "10.24.0.19:80"
  method = "dr"
  [[service.real_server]]
  address = "10.24.0.11:80"
  method = "dr"
  [[service.real_server]]
  address = "10.24.0.12:80"
  method = "dr"
"#,
    )?
    else {
        return Ok(());
    };
    m.wait_health(&["10.24.0.11:80", "UP", "1/1"])?;
    m.wait_health(&["10.24.0.12:80", "UP", "1/1"])?;
    let names = m.requests(URL, 10)?;
    assert_eq!(
        (count(&names, "rs1"), count(&names, "rs2")),
        (5, 5),
        "{names:?}"
    );

    // rs1's nginx stops: down within fall × interval (plus slack), weight 0.
    m.servers[0].stop();
    let (took, text) = m.wait_health(&["10.24.0.11:80", "DOWN", "0/1"])?;
    assert!(took < Duration::from_secs(5), "down after {took:?}");
    assert!(
        text.contains("connection refused"),
        "the reason is shown:\n{text}"
    );
    assert_eq!(
        m.listed_weight("10.24.0.11:80")?,
        Some(0),
        "ipvsadm shows weight 0"
    );
    let names = m.requests(URL, 20)?;
    assert_eq!(
        count(&names, "rs2"),
        20,
        "every new request to rs2: {names:?}"
    );

    // The operator sets rs1's weight while it is down: that is what returns.
    m.director.dirctl(
        &m.lab,
        &[
            "-e",
            "-t",
            "10.24.0.100:80",
            "-r",
            "10.24.0.11:80",
            "-g",
            "-w",
            "3",
        ],
    )?;
    m.wait_health(&["10.24.0.11:80", "DOWN", "0/3"])?;

    // rs2 stops too: the sorry server takes over.
    m.servers[1].stop();
    let (_, text) = m.wait_health(&["quorum", "DOWN", "IN", "USE"])?;
    assert!(text.contains("10.24.0.19:80 IN USE"), "{text}");
    let names = m.requests(URL, 6)?;
    assert_eq!(
        count(&names, "sorry"),
        6,
        "the sorry server answers: {names:?}"
    );

    // rs1 comes back: after rise × interval it takes the traffic with the
    // operator's weight, and the sorry server leaves.
    m.servers[0] = nginx(&m.lab, &m.hosts[0], "rs1", m.big_mib)?;
    let (took, _) = m.wait_health(&["10.24.0.11:80", "UP", "3/3"])?;
    assert!(took < Duration::from_secs(5), "up after {took:?}");
    m.wait_health(&["quorum", "up", "standing"])?;
    let names = m.requests(URL, 6)?;
    assert_eq!(
        count(&names, "rs1"),
        6,
        "traffic leaves the sorry server: {names:?}"
    );
    assert_eq!(m.listed_weight("10.24.0.19:80")?, None, "sorry server gone");

    // rs2 too: wrr splits 3:1 by the weights.
    m.servers[1] = nginx(&m.lab, &m.hosts[1], "rs2", m.big_mib)?;
    m.wait_health(&["10.24.0.12:80", "UP", "1/1"])?;
    let names = m.requests(URL, 20)?;
    assert_eq!(
        (count(&names, "rs1"), count(&names, "rs2")),
        (15, 5),
        "{names:?}"
    );
    assert_eq!(m.listed_weight("10.24.0.11:80")?, Some(3));

    m.director.proc.stop_gracefully(Duration::from_secs(5));
    let out = m.director.output();
    assert!(
        out.contains("real server 10.24.0.11:80 of 10.24.0.100:80 UP → DOWN: 2 consecutive failures: connect: connection refused"),
        "transitions are logged:\n{out}"
    );
    assert!(
        out.contains("quorum lost; sorry server 10.24.0.19:80 takes over"),
        "{out}"
    );
    Ok(())
}

#[test]
fn http_500_is_down_for_http_up_for_tcp_and_a_download_in_progress_drains() -> Result<()> {
    let web = Ipv4Addr::new(10, 24, 0, 100);
    let plain = Ipv4Addr::new(10, 24, 0, 101);
    let Some(m) = lab(
        "hc500",
        &[web, plain],
        2,
        false,
        4,
        r#"
[node]
name = "hc-500"
[[interface]]
name = "eth0"
address = "10.24.0.2/24"
[[service]]
protocol = "tcp"
address = "10.24.0.100:80"
scheduler = "rr"
  [service.health_check]
  type = "http"
  path = "/health"
  interval = 0.3
  timeout = 0.5
  fall = 2
  [[service.real_server]]
  address = "10.24.0.11:80"
  method = "dr"
  [[service.real_server]]
  address = "10.24.0.12:80"
  method = "dr"
[[service]]
protocol = "tcp"
address = "10.24.0.101:80"
scheduler = "rr"
  [service.health_check]
  type = "tcp"
  interval = 0.3
  timeout = 0.5
  fall = 2
  [[service.real_server]]
  address = "10.24.0.11:80"
  method = "dr"
  [[service.real_server]]
  address = "10.24.0.12:80"
  method = "dr"
"#,
    )?
    else {
        return Ok(());
    };
    m.wait_health(&["10.24.0.100:80", "10.24.0.11:80", "UP"])?;
    m.wait_health(&["10.24.0.100:80", "10.24.0.12:80", "UP"])?;

    // A slow download (4 MiB at 1 MiB/s) through the HTTP-checked VIP.
    let body = m.lab.unique_path("download", ".body");
    let body_s = body.to_string_lossy().into_owned();
    let mut curl = m.lab.spawn(
        &m.client,
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--limit-rate",
            "1M",
            "--max-time",
            "30",
            "-o",
            &body_s,
            "http://10.24.0.100/big.bin",
        ],
    )?;
    // Which real server has it: the one with an active connection.
    let t0 = Instant::now();
    let busy = loop {
        let list = m
            .director
            .dirctl(&m.lab, &["-Ln", "-t", "10.24.0.100:80"])?;
        let found = list
            .lines()
            .filter(|l| l.trim_start().starts_with("->"))
            .find(|l| {
                l.split_whitespace()
                    .nth(4)
                    .is_some_and(|a| a != "0" && a != "ActiveConn")
            })
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
        if let Some(f) = found {
            break f;
        }
        ensure!(t0.elapsed() < SETTLE, "the download never started:\n{list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (i, other) = if busy == "10.24.0.11:80" {
        (0, 1)
    } else {
        (1, 0)
    };
    let other_name = m.servers[other].name().to_string();

    // Its /health fails: down for the HTTP check, still up for the TCP check.
    m.servers[i].fail_health(true)?;
    let (_, text) = m.wait_health(&["10.24.0.100:80", &busy, "DOWN", "HTTP", "500"])?;
    let tcp_line = text
        .lines()
        .find(|l| l.contains("10.24.0.101:80") && l.contains(&busy))
        .unwrap_or_default();
    assert!(
        tcp_line.contains(" UP ") && tcp_line.contains("tcp connect"),
        "the TCP check of the same server still passes:\n{text}"
    );
    assert_eq!(m.listed_weight(&busy)?, Some(0), "held at weight 0");
    let names = m.requests(URL, 10)?;
    assert_eq!(
        count(&names, &other_name),
        10,
        "new requests avoid it: {names:?}"
    );
    let names = m.requests("http://10.24.0.101/", 10)?;
    assert_eq!(
        count(&names, &other_name),
        5,
        "the TCP-checked service still uses both: {names:?}"
    );

    // The download started before keeps going to the same server, intact.
    let status = curl.wait_timeout(Duration::from_secs(40))?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "the download in progress failed ({status:?}): {}",
        curl.stderr_text()
    );
    assert_eq!(
        Some(sha256_file(&body)?.as_str()),
        m.servers[i].big_sha256(),
        "downloaded whole from the drained server"
    );
    assert_eq!(
        std::fs::metadata(&body)?.len(),
        u64::from(m.big_mib) * 1024 * 1024
    );

    // Healthy again: back in the HTTP-checked service.
    m.servers[i].fail_health(false)?;
    m.wait_health(&["10.24.0.100:80", &busy, "UP", "1/1"])?;
    let names = m.requests(URL, 10)?;
    assert_eq!(count(&names, &other_name), 5, "split again: {names:?}");
    Ok(())
}

#[test]
fn a_hanging_check_command_is_killed_at_its_timeout_and_counts_as_a_failure() -> Result<()> {
    let pid_dir = std::env::temp_dir().join(format!("hc-hang-{}", std::process::id()));
    std::fs::create_dir_all(&pid_dir)?;
    let pidfile = pid_dir.join("sleep.pid");
    let config = format!(
        r#"
[node]
name = "hc-hang"
[[interface]]
name = "eth0"
address = "10.24.0.2/24"
[[service]]
protocol = "tcp"
address = "10.24.0.100:80"
  [service.health_check]
  type = "command"
  command = "sleep 60 & echo $! > {}; wait"
  interval = 0.3
  timeout = 0.5
  fall = 1
  [[service.real_server]]
  address = "10.24.0.11:80"
  method = "dr"
"#,
        pidfile.display()
    );
    let result = (|| -> Result<()> {
        let Some(m) = lab(
            "hchang",
            &[Ipv4Addr::new(10, 24, 0, 100)],
            1,
            false,
            0,
            &config,
        )?
        else {
            return Ok(());
        };
        let (_, text) = m.wait_health(&["10.24.0.11:80", "DOWN", "0/1"])?;
        assert!(
            text.contains("timeout after 500 ms: killed"),
            "the reason says it was killed at its timeout:\n{text}"
        );
        // The shell's child was in the killed process group. Checks never
        // overlap: once a newer check has recorded its own child, the one
        // recorded first was killed with its check.
        let first = std::fs::read_to_string(&pidfile)?.trim().to_string();
        let t0 = Instant::now();
        while std::fs::read_to_string(&pidfile)?.trim() == first {
            ensure!(
                t0.elapsed() < SETTLE,
                "no check after the one of sleep {first}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let t0 = Instant::now();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{first}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it.
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(3),
                "sleep {first} of an earlier check still runs: {stat}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = m.health()?;
        let line = text
            .lines()
            .find(|l| l.contains("10.24.0.11:80"))
            .unwrap_or_default();
        assert!(line.contains("command"), "{text}");
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&pid_dir);
    result
}
