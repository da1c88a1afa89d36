//! The driver on real raw sockets: two network namespaces joined by a veth
//! pair, one VRRP speaker in each. Needs root (namespaces, CAP_NET_RAW);
//! skips with a message otherwise.
//!
//! Each speaker is this test binary run again inside a namespace
//! (`ip netns exec NS <this binary> --exact netns_helper --ignored`): the
//! ignored `netns_helper` test runs the driver with the arguments in
//! `VRRP_NETNS_ARGS` and prints one `EVENT ...` line per transition, so no
//! `setns` (and no `unsafe`) is needed. Closing its stdin shuts it down
//! cleanly (priority 0); killing it is a crash.
//!
//! The lab has a unique prefix (`vrt<pid><tag>`), every wait is bounded,
//! and a Drop guard kills what runs in the namespaces and deletes them on
//! every exit path. Traffic never leaves the two namespaces.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vrrp::{DriverEvent, DriverInstance, InstanceConfig};

const HELPER_ENV: &str = "VRRP_NETNS_ARGS";

// ---------------------------------------------------------------- helper

/// Not a test: the VRRP speaker the tests below start inside a namespace.
#[test]
#[ignore = "helper run inside a namespace by the tests in this file"]
fn netns_helper() {
    let Ok(args) = std::env::var(HELPER_ENV) else {
        return;
    };
    let instance = helper_config(&args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(helper_run(instance));
}

fn helper_config(args: &str) -> DriverInstance {
    let mut cfg = InstanceConfig {
        name: String::new(),
        vrid: 51,
        priority: 100,
        advert_interval_cs: 20,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_ip: Ipv4Addr::UNSPECIFIED,
        vips: vec![],
        unicast_peers: vec![],
    };
    let (mut interface, mut notify) = (String::new(), None);
    let mut it = args.split_whitespace();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k {
            "--interface" => interface = v.to_string(),
            "--name" => cfg.name = v.to_string(),
            "--priority" => cfg.priority = v.parse().unwrap(),
            "--primary" => cfg.primary_ip = v.parse().unwrap(),
            "--vip" => cfg.vips.push(v.parse().unwrap()),
            "--advert-cs" => cfg.advert_interval_cs = v.parse().unwrap(),
            "--notify" => notify = Some(vec![v.to_string()]),
            _ => panic!("helper: unknown flag {k}"),
        }
    }
    DriverInstance {
        config: cfg,
        interface,
        notify,
    }
}

async fn helper_run(instance: DriverInstance) {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let handle = vrrp::spawn(vec![instance], tx)
        .await
        .expect("driver starts");
    // Stdin closing (or the 60 s safety bound) means: shut down cleanly.
    let (eof_tx, mut eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        let _ = eof_tx.send(());
    });
    println!("\nREADY");
    let bound = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(bound);
    loop {
        tokio::select! {
            Some(ev) = events.recv() => print_event(ev),
            _ = &mut eof => break,
            _ = &mut bound => break,
        }
    }
    handle.shutdown().await;
    while let Ok(ev) = events.try_recv() {
        print_event(ev);
    }
    for (name, n) in handle.counters() {
        println!("COUNTER {name} {n}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("STOPPED");
}

fn print_event(ev: DriverEvent) {
    let DriverEvent::Transition {
        instance,
        from,
        to,
        reason,
        ..
    } = ev;
    println!("EVENT {instance} {from} {to} {reason}");
}

// ---------------------------------------------------------------- lab

/// Real processes run on real time: this test (not the library) reads the
/// wall clock, in this one place.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Instant {
    Instant::now()
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:"));
    uid.and_then(|l| l.split_whitespace().nth(2)) == Some("0")
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!("{cmd} {}: {}", args.join(" "), err.trim()))
}

/// Two namespaces `<prefix>a`, `<prefix>b`, a veth pair between them with
/// 10.213.0.1/24 and 10.213.0.2/24. Dropping it kills every process in
/// them and deletes them.
struct Lab {
    prefix: String,
    dir: PathBuf,
}

impl Lab {
    /// `None` (after saying why) when this machine can't host the lab.
    fn new(tag: &str) -> Option<Lab> {
        if !is_root() {
            eprintln!("skipping: needs root for network namespaces and raw sockets");
            return None;
        }
        let prefix = format!("vrt{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let lab = Lab { prefix, dir };
        if let Err(e) = fs::create_dir_all(&lab.dir)
            .map_err(|e| e.to_string())
            .and_then(|_| lab.build())
        {
            eprintln!("skipping: cannot build the namespace lab: {e}");
            return None;
        }
        Some(lab)
    }

    fn ns(&self, side: char) -> String {
        format!("{}{side}", self.prefix)
    }

    fn ifname(&self, side: char) -> String {
        format!("{}{side}0", self.prefix)
    }

    fn addr(side: char) -> &'static str {
        if side == 'a' {
            "10.213.0.1"
        } else {
            "10.213.0.2"
        }
    }

    fn build(&self) -> Result<(), String> {
        let (ia, ib) = (self.ifname('a'), self.ifname('b'));
        for side in ['a', 'b'] {
            run("ip", &["netns", "add", &self.ns(side)])?;
        }
        run(
            "ip",
            &["link", "add", &ia, "type", "veth", "peer", "name", &ib],
        )?;
        for side in ['a', 'b'] {
            let (ns, ifname) = (self.ns(side), self.ifname(side));
            run("ip", &["link", "set", &ifname, "netns", &ns])?;
            let cidr = format!("{}/24", Self::addr(side));
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", &ifname])?;
            run("ip", &["-n", &ns, "link", "set", &ifname, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Our driver (this binary's `netns_helper`) in namespace `side`.
    fn speaker(&self, side: char, name: &str, priority: u8) -> Proc {
        let args = format!(
            "--interface {} --name {name} --priority {priority} --primary {} --vip 10.213.0.100 \
             --advert-cs 20 --notify {}",
            self.ifname(side),
            Self::addr(side),
            self.notify_script().display()
        );
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(side)]).arg(exe);
        cmd.args([
            "--exact",
            "netns_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        cmd.env(HELPER_ENV, args);
        Proc::spawn(cmd)
    }

    /// A notify program that appends its arguments to `notify.log`.
    fn notify_script(&self) -> PathBuf {
        let path = self.dir.join("notify.sh");
        if !path.exists() {
            let log = self.dir.join("notify.log");
            let body = format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display());
            fs::write(&path, body).unwrap();
            run("chmod", &["+x", path.to_str().unwrap()]).unwrap();
        }
        path
    }

    fn notify_log(&self) -> String {
        fs::read_to_string(self.dir.join("notify.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for side in ['a', 'b'] {
            let ns = self.ns(side);
            let pids = Command::new("ip").args(["netns", "pids", &ns]).output();
            let pids = pids
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-KILL", pid]);
            }
            let _ = run("ip", &["netns", "del", &ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A process in the lab, its output lines collected by a thread.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ip netns exec");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        forward_lines(stdout, tx.clone());
        forward_lines(child.stderr.take().unwrap(), tx);
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait up to `within` for a line containing `pattern`; returns when
    /// it was seen.
    fn wait_for(&mut self, pattern: &str, within: Duration) -> Instant {
        let deadline = wall_clock() + within;
        if self.seen.iter().any(|l| l.contains(pattern)) {
            return wall_clock();
        }
        while let Some(left) = deadline.checked_duration_since(wall_clock()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(pattern);
                    self.seen.push(line);
                    if hit {
                        return wall_clock();
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {pattern:?} within {within:?}; output so far: {:#?}",
            self.seen
        );
    }

    /// Everything printed so far (without waiting).
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// A clean stop: stdin closes, the driver sends priority 0.
    fn stop(&mut self) {
        drop(self.stdin.take());
    }

    /// A crash: SIGKILL, nothing more is sent.
    fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn counter(&mut self, name: &str) -> u64 {
        let prefix = format!("COUNTER {name} ");
        let line = self
            .drain()
            .iter()
            .find(|l| l.starts_with(&prefix))
            .cloned();
        let line = line.unwrap_or_else(|| panic!("no counter {name}: {:#?}", self.seen));
        line[prefix.len()..].trim().parse().unwrap()
    }

    /// Every receive-reject counter is zero.
    fn assert_no_rejects(&mut self) {
        for r in vrrp::Reject::ALL {
            assert_eq!(
                self.counter(r.name()),
                0,
                "no advert rejected for {}",
                r.name()
            );
        }
    }
}

/// Send each line read from `from` to `to`, on a thread of its own.
fn forward_lines(from: impl std::io::Read + Send + 'static, to: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(line).is_err() {
                break;
            }
        }
    });
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- tests

// Advertisement_Interval 0.2 s. Priority 100: Skew_Time 121.875 ms,
// Master_Down_Interval 721.875 ms.
const MDI_100: Duration = Duration::from_micros(721_875);

#[test]
fn two_drivers_elect_fail_over_and_run_notify() {
    let Some(lab) = Lab::new("d") else { return };
    let mut b = lab.speaker('b', "vi_b", 100);
    let mut a = lab.speaker('a', "vi_a", 200);
    a.wait_for(
        "EVENT vi_a BACKUP MASTER master down interval expired",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !b.drain().iter().any(|l| l.contains("BACKUP MASTER")),
        "RFC 5798 6.4.2: the lower priority stays Backup: {:#?}",
        b.seen
    );

    // Crash the master: the backup waits Master_Down_Interval after the
    // last advert (sent at most one interval before the crash).
    a.crash();
    let crashed = wall_clock();
    let at = b.wait_for(
        "EVENT vi_b BACKUP MASTER master down interval expired",
        Duration::from_secs(5),
    );
    let took = at - crashed;
    assert!(
        took >= MDI_100 - Duration::from_millis(250)
            && took <= MDI_100 + Duration::from_millis(500),
        "RFC 5798 6.4.2: takeover {took:?} after the crash, Master_Down_Interval is {MDI_100:?}"
    );

    // The higher priority comes back and preempts.
    let mut a = lab.speaker('a', "vi_a", 200);
    a.wait_for(
        "EVENT vi_a BACKUP MASTER preempting lower priority master 10.213.0.2",
        Duration::from_secs(5),
    );
    b.wait_for(
        "EVENT vi_b MASTER BACKUP higher priority advert from 10.213.0.1",
        Duration::from_secs(2),
    );

    // A clean stop advertises priority 0: takeover after Skew_Time, well
    // inside Master_Down_Interval.
    a.stop();
    let stopped = wall_clock();
    let at = b.wait_for(
        "EVENT vi_b BACKUP MASTER priority 0 advert from 10.213.0.1",
        Duration::from_secs(3),
    );
    assert!(
        at - stopped < MDI_100,
        "RFC 5798 6.4.2: priority 0 hands over in Skew_Time, took {:?}",
        at - stopped
    );
    a.wait_for("STOPPED", Duration::from_secs(3));
    b.stop();
    b.wait_for("STOPPED", Duration::from_secs(3));
    b.assert_no_rejects();
    assert!(b.counter("adverts_received") > 0);

    let deadline = wall_clock() + Duration::from_secs(3);
    let wanted = [
        "INSTANCE vi_a MASTER 200",
        "INSTANCE vi_a STOP 200",
        "INSTANCE vi_b BACKUP 100",
        "INSTANCE vi_b MASTER 100",
        "INSTANCE vi_b STOP 100",
    ];
    while !wanted.iter().all(|w| lab.notify_log().contains(w)) && wall_clock() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.notify_log();
    for w in wanted {
        assert!(
            log.contains(w),
            "notify called with keepalived's arguments {w:?}; log:\n{log}"
        );
    }
}

fn keepalived_path() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':')
        .map(|d| PathBuf::from(d).join("keepalived"))
        .find(|p| p.is_file())
}

/// keepalived (priority 100) in namespace a, our driver (200) in b.
#[test]
fn keepalived_interop() {
    let Some(keepalived) = keepalived_path() else {
        eprintln!("skipping: keepalived is not installed");
        return;
    };
    let Some(lab) = Lab::new("k") else { return };
    let conf = lab.dir.join("keepalived.conf");
    let mut f = fs::File::create(&conf).unwrap();
    write!(
        f,
        "global_defs {{\n  router_id vrt_interop\n  vrrp_version 3\n}}\n\
         vrrp_instance VI_KA {{\n  state BACKUP\n  interface {}\n  virtual_router_id 51\n  \
         priority 100\n  advert_int 0.2\n  virtual_ipaddress {{\n    10.213.0.100/24\n  }}\n}}\n",
        lab.ifname('a')
    )
    .unwrap();
    let file = |n: &str| lab.dir.join(n).to_str().unwrap().to_string();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns('a')]).arg(&keepalived);
    cmd.args(["-n", "-l", "-D", "-P", "-G", "-f", &file("keepalived.conf")]);
    cmd.args(["-p", &file("keepalived.pid"), "-r", &file("vrrp.pid")]);
    let mut ka = Proc::spawn(cmd);
    ka.wait_for("(VI_KA) Entering MASTER STATE", Duration::from_secs(5));

    let mut ours = lab.speaker('b', "vi_b", 200);
    ours.wait_for(
        "EVENT vi_b BACKUP MASTER preempting lower priority master 10.213.0.1 (priority 100)",
        Duration::from_secs(5),
    );
    ka.wait_for("with higher priority 200, ours 100", Duration::from_secs(2));
    ka.wait_for("(VI_KA) Entering BACKUP STATE", Duration::from_secs(2));

    ours.stop();
    ka.wait_for(
        "Backup received priority 0 advertisement",
        Duration::from_secs(3),
    );
    let masters = |p: &mut Proc| {
        p.drain()
            .iter()
            .filter(|l| l.contains("Entering MASTER STATE"))
            .count()
    };
    let deadline = wall_clock() + Duration::from_secs(2);
    while masters(&mut ka) < 2 && wall_clock() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        masters(&mut ka),
        2,
        "keepalived takes over again after our priority 0: {:#?}",
        ka.seen
    );
    ours.wait_for("STOPPED", Duration::from_secs(3));
    ours.assert_no_rejects();
    assert!(
        ours.counter("adverts_received") > 0,
        "we accepted keepalived's adverts"
    );

    let complaints: Vec<_> = ka
        .drain()
        .iter()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("invalid")
                || l.contains("checksum")
                || l.contains("ttl")
                || l.contains("mismatch")
        })
        .cloned()
        .collect();
    assert!(
        complaints.is_empty(),
        "keepalived complained about our adverts: {complaints:#?}"
    );
}
