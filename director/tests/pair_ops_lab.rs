//! Operating the pair, in the lab: two real directord (DR, VRRP on the
//! lan, sync on the HA link), a client with 200 keep-alive flows, nginx
//! real servers.
//!
//! - `dirctl failover` with no peer is refused and changes nothing.
//! - `dirctl status` on both nodes agrees on who is master, and each shows
//!   the other's VRRP state; so do their metrics endpoints (state, sync
//!   role, lag).
//! - A real server added on the master appears on the backup; the backup
//!   refuses a change of its own, naming the master, and keeps its table.
//! - `dirctl failover` on the master moves mastership with every flow
//!   carrying on, on the real server it had, and reports the lag at the
//!   switch; `dirctl failover` on the (new) backup brings it back.
//!
//! Bounded: 200 connections × 20 requests/s for ~16 s; every wait has a
//! deadline; the lab is removed on every exit path.

// Real processes are timed here (figures printed, never asserted tight).
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab_tests::flows::Flows;
use lab_tests::pair::VIP;
use lab_tests::{Directord, PairLab, VrrpOptions};

const ELECTION: Duration = Duration::from_secs(5);

/// `dirctl ARGS` on `d`, whatever its exit status: (success, stdout +
/// stderr).
fn dirctl_any(p: &PairLab, d: &Directord, args: &[&str]) -> Result<(bool, String)> {
    let mut argv = vec![p.bins.dirctl.as_str()];
    argv.extend_from_slice(args);
    let out = p.lab.exec(&d.host, &argv)?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The real servers of the VIP's service in `dirctl -Ln` on `d`.
fn real_servers(p: &PairLab, d: &Directord) -> Result<Vec<String>> {
    let out = d.dirctl(&p.lab, &["-Ln"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-> "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|a| a.starts_with("10.41.0."))
        .map(str::to_string)
        .collect())
}

/// The value of the one series of `name` on `d`'s metrics endpoint whose
/// labels contain `label` (e.g. `role="master"`); `None` if absent.
fn metric(p: &PairLab, d: &Directord, name: &str, label: &str) -> Result<Option<f64>> {
    let out = p.lab.exec(
        &d.host,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9400/metrics",
        ],
    )?;
    ensure!(out.status.success(), "scraping {}", d.host.name());
    let body = String::from_utf8_lossy(&out.stdout);
    Ok(body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(label))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok()))
}

/// A node's config: the pair's, with sync and a metrics endpoint.
fn config(p: &PairLab, i: usize, priority: u8, opts: &VrrpOptions) -> String {
    p.config(
        i,
        priority,
        opts,
        &format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:9400\"\n",
            p.sync_table(i, true)
        ),
    )
}

fn wait_for(what: &str, within: Duration, f: impl FnMut() -> Result<bool>) -> Result<()> {
    lab_tests::cmd::wait_until(what, within, Duration::from_millis(100), f)
}

#[test]
fn manual_failover_status_and_replicated_rules() -> Result<()> {
    let Some(p) = PairLab::dr("opsfo", lab_tests::bins!(), 0)? else {
        return Ok(());
    };
    let opts = VrrpOptions::default();
    let a = p.start(0, &config(&p, 0, 150, &opts))?;
    p.wait_state(&a, "MASTER", ELECTION)?;

    // Alone: nobody to hand the flows to.
    let (ok, out) = dirctl_any(&p, &a, &["failover"])?;
    ensure!(!ok, "a failover with no peer must fail:\n{out}");
    ensure!(
        out.contains("failover refused: no healthy peer") && out.contains("not connected"),
        "the refusal says why:\n{out}"
    );
    ensure!(
        p.vrrp_state(&a)? == "MASTER",
        "a refused failover changes nothing"
    );
    let (ok, out) = dirctl_any(&p, &a, &["failover", "--max-wait", "86400000"])?;
    ensure!(
        !ok && out.contains("max_wait_ms 86400000 is out of range"),
        "an absurd wait is refused:\n{out}"
    );
    let (ok, out) = dirctl_any(&p, &a, &["failover", "--instance", "VI_9"])?;
    ensure!(
        !ok && out.contains("no VRRP instance named \"VI_9\"") && out.contains("VI_1"),
        "an unknown instance is named, with the ones there are:\n{out}"
    );

    let b = p.start(1, &config(&p, 1, 100, &opts))?;
    p.wait_state(&b, "BACKUP", ELECTION)?;
    wait_for("director-b to subscribe", ELECTION, || {
        Ok(p.status_line(&b, "sync:")?.contains("subscriber connected"))
    })?;

    // Both agree who is master, and each shows the other.
    wait_for(
        "both nodes to see each other's VRRP state",
        ELECTION,
        || {
            Ok(a.dirctl(&p.lab, &["status"])?
                .contains("peer vrrp VI_1: BACKUP")
                && b.dirctl(&p.lab, &["status"])?
                    .contains("peer vrrp VI_1: MASTER"))
        },
    )?;
    // The metrics say the same: who is master, sync roles, lag.
    let m = |d: &Directord, name: &str, label: &str| -> Result<f64> {
        metric(&p, d, name, label)?
            .with_context(|| format!("no {name} {label} on {}", d.host.name()))
    };
    ensure!(m(&a, "lvs_vrrp_master", "vrrp_instance=\"VI_1\"")? == 1.0);
    ensure!(m(&b, "lvs_vrrp_master", "vrrp_instance=\"VI_1\"")? == 0.0);
    ensure!(m(&a, "lvs_sync_role", "role=\"master\"")? == 1.0);
    ensure!(m(&b, "lvs_sync_role", "role=\"subscriber\"")? == 1.0);
    for d in [&a, &b] {
        ensure!(m(d, "lvs_sync_connected", "")? == 1.0);
        ensure!(m(d, "lvs_sync_behind_entries", "")? == 0.0);
    }
    let master_seen_by_b = p.status_line(&b, "  master ")?;
    ensure!(
        master_seen_by_b.starts_with("  master 10.41.0.2 "),
        "the backup names director-a as master: {master_seen_by_b}"
    );

    // Rules: changed on the master, replicated to the backup.
    let svc = format!("{VIP}:80");
    a.dirctl(
        &p.lab,
        &["-a", "-t", &svc, "-r", "10.41.0.13:80", "-g", "-w", "0"],
    )?;
    wait_for("the new real server to reach the backup", ELECTION, || {
        Ok(real_servers(&p, &b)?.contains(&"10.41.0.13:80".to_string()))
    })?;
    let before = b.dirctl(&p.lab, &["-Ln"])?;
    let (ok, out) = dirctl_any(&p, &b, &["-d", "-t", &svc, "-r", "10.41.0.13:80"])?;
    ensure!(!ok, "the backup refuses a local change:\n{out}");
    ensure!(
        out.contains("sync backup") && out.contains("director-a"),
        "the refusal names the master:\n{out}"
    );
    ensure!(
        b.dirctl(&p.lab, &["-Ln"])? == before,
        "a refused change leaves the backup's table as it was"
    );
    // Nor does a reload of its own file change the backup's rules.
    let own = config(&p, 1, 100, &opts).replace("scheduler = \"rr\"", "scheduler = \"wlc\"");
    b.reload(&own)?;
    wait_for("the backup to reload", ELECTION, || {
        Ok(b.output().contains("reload on the sync backup"))
    })?;
    ensure!(
        b.dirctl(&p.lab, &["-Ln"])? == before,
        "the backup keeps the master's rules across a reload"
    );
    a.dirctl(&p.lab, &["-d", "-t", &svc, "-r", "10.41.0.13:80"])?;
    wait_for("the removal to reach the backup", ELECTION, || {
        Ok(real_servers(&p, &b)?.len() == 2)
    })?;

    // Failover under load: 200 flows, none may break or move.
    let flows = Flows::start(&p, 200, 50, 16)?;
    std::thread::sleep(Duration::from_secs(3));
    wait_for(
        "each node to see the other's 200 connections",
        ELECTION,
        || {
            Ok(a.dirctl(&p.lab, &["status"])?
                .contains("peer director-b: up ")
                && a.dirctl(&p.lab, &["status"])?.contains(", 200 connections")
                && b.dirctl(&p.lab, &["status"])?.contains(", 200 connections"))
        },
    )?;
    // The master scheduled its 200 flows; the backup learned its 200 from
    // the sync stream, and says so.
    let synced = |d: &Directord| -> Result<String> {
        let line = p.status_line(d, "connections:")?;
        Ok(line
            .rsplit_once("synced ")
            .map(|(_, n)| n.trim_end_matches(')').to_owned())
            .unwrap_or_default())
    };
    ensure!(synced(&a)? == "0", "{}", p.status_line(&a, "connections:")?);
    ensure!(
        synced(&b)? == "200",
        "{}",
        p.status_line(&b, "connections:")?
    );
    let out = a.dirctl(&p.lab, &["failover"])?;
    println!("dirctl failover on director-a:\n{out}");
    ensure!(out.starts_with("failover completed in "), "{out}");
    ensure!(
        out.contains("new master director-b (10.41.0.3)"),
        "the report names the new master:\n{out}"
    );
    ensure!(
        out.contains("lag at the switch: 0 entries"),
        "the handover waited for the peer to catch up:\n{out}"
    );
    p.wait_state(&b, "MASTER", ELECTION)?;
    p.wait_state(&a, "BACKUP", ELECTION)?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        p.vrrp_state(&a)? == "BACKUP",
        "director-a has the higher priority but stays backup after a manual failover"
    );

    // And back, asked from the backup side this time.
    wait_for("director-a to subscribe to director-b", ELECTION, || {
        Ok(p.status_line(&a, "sync:")?.contains("subscriber connected"))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let out = a.dirctl(&p.lab, &["failover"])?;
    println!("dirctl failover on director-a (backup):\n{out}");
    ensure!(out.starts_with("failover completed in "), "{out}");
    p.wait_state(&a, "MASTER", ELECTION)?;

    let s = flows
        .finish(Duration::from_secs(40))
        .context("lab-flows across two manual failovers")?;
    println!(
        "manual failover and back: {}/{} flows carried on, {} moved; longest gap per flow \
         p50 {} ms, p99 {} ms, max {} ms",
        s.conns - s.broken,
        s.conns,
        s.moved,
        s.gap_p50_ms,
        s.gap_p99_ms,
        s.gap_max_ms
    );
    ensure!(s.conns == 200, "{}", s.text);
    ensure!(s.broken == 0, "every flow carries on:\n{}", s.text);
    ensure!(s.moved == 0, "no flow changes real server:\n{}", s.text);

    // --force skips the wait and says so.
    let out = a.dirctl(&p.lab, &["failover", "--force"])?;
    ensure!(out.starts_with("failover forced in "), "{out}");
    p.wait_state(&b, "MASTER", ELECTION)?;
    Ok(())
}
