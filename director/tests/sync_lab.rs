//! Established flows survive a failover and a failback: 200 long-lived
//! keep-alive connections through the VIP (a request and a reply every
//! 50 ms each, real kernel TCP from the client to nginx on the real
//! servers), kill -9 the master, later bring it back (it preempts once it
//! has the table). With sync every flow carries on, on the real server it
//! had; without sync, flows break — which is what proves sync does it.
//!
//! Bounded: 200 connections × 20 requests/s for ~14 s; every wait has a
//! deadline; the lab is removed on every exit path.

// Real processes are timed here (figures printed, never asserted tight).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab_tests::pair::VIP;
use lab_tests::{Bins, Directord, LabChild, PairLab, VrrpOptions};

fn bins() -> Bins {
    Bins {
        directord: env!("CARGO_BIN_EXE_directord").into(),
        dirctl: env!("CARGO_BIN_EXE_dirctl").into(),
    }
}

const ELECTION: Duration = Duration::from_secs(5);

/// The flow generator, built beside directord by the workspace build.
fn lab_flows() -> Result<String> {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_directord")).with_file_name("lab-flows");
    ensure!(
        p.exists(),
        "{} is missing: build the workspace (tests/run.sh runs cargo test --workspace)",
        p.display()
    );
    Ok(p.to_string_lossy().into_owned())
}

/// Summary figures of a lab-flows run.
#[derive(Debug)]
struct Summary {
    conns: usize,
    broken: usize,
    moved: usize,
    gap_p50_ms: u64,
    gap_p99_ms: u64,
    text: String,
}

fn summary(out: &str) -> Result<Summary> {
    let line = out
        .lines()
        .find(|l| l.starts_with("summary "))
        .with_context(|| format!("no summary from lab-flows:\n{out}"))?;
    let field = |name: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("{name} missing in {line}"))?
            .parse()
            .with_context(|| format!("{name} in {line}"))
    };
    Ok(Summary {
        conns: field("conns")? as usize,
        broken: field("broken")? as usize,
        moved: field("moved")? as usize,
        gap_p50_ms: field("gap_p50_ms")?,
        gap_p99_ms: field("gap_p99_ms")?,
        text: out.to_string(),
    })
}

/// Wait (bounded) for lab-flows to finish and read its summary.
fn finish(mut flows: LabChild, within: Duration) -> Result<Summary> {
    let status = flows.wait_timeout(within)?;
    ensure!(
        status.is_some(),
        "lab-flows did not finish within {within:?}"
    );
    summary(&flows.stdout_text())
}

fn start_pair(p: &PairLab, sync: bool) -> Result<(Directord, Directord)> {
    let opts = VrrpOptions::default();
    let a = p.start(0, &p.config(0, 150, &opts, &p.sync_table(0, sync)))?;
    p.wait_state(&a, "MASTER", ELECTION)?;
    let b = p.start(1, &p.config(1, 100, &opts, &p.sync_table(1, sync)))?;
    p.wait_state(&b, "BACKUP", ELECTION)?;
    if sync {
        lab_tests::cmd::wait_until(
            "director-b to subscribe to director-a",
            ELECTION,
            Duration::from_millis(100),
            || Ok(p.status_line(&b, "sync:")?.contains("subscriber connected")),
        )?;
    }
    Ok((a, b))
}

fn flows(p: &PairLab, secs: u32) -> Result<LabChild> {
    let bin = lab_flows()?;
    p.lab.spawn(
        &p.client,
        &[
            &bin,
            "--target",
            &format!("{VIP}:80"),
            "--conns",
            "200",
            "--interval-ms",
            "50",
            "--duration-s",
            &secs.to_string(),
        ],
    )
}

#[test]
fn two_hundred_flows_survive_failover_and_failback_with_sync() -> Result<()> {
    let Some(p) = PairLab::dr("syncfo", bins(), 0)? else {
        return Ok(());
    };
    let (mut a, b) = start_pair(&p, true)?;
    let client = flows(&p, 14)?;
    std::thread::sleep(Duration::from_secs(3));
    let conns_b = p.status_line(&b, "connections:")?;
    ensure!(
        conns_b.starts_with("connections: 2"),
        "the backup holds the master's 200 flows before the failover: {conns_b}"
    );
    a.proc.kill();
    p.wait_state(&b, "MASTER", ELECTION)?;
    std::thread::sleep(Duration::from_secs(3));
    // Failback: the old master returns with the higher priority; it holds
    // off until it has the table, then preempts.
    let a2 = p.start(
        0,
        &p.config(0, 150, &VrrpOptions::default(), &p.sync_table(0, true)),
    )?;
    p.wait_state(&a2, "MASTER", Duration::from_secs(8))
        .context("the returning master preempts once synced")?;
    let s = finish(client, Duration::from_secs(30))?;
    println!(
        "with sync: {}/{} flows carried on, {} moved; longest gap per flow p50 {} ms, p99 {} ms",
        s.conns - s.broken,
        s.conns,
        s.moved,
        s.gap_p50_ms,
        s.gap_p99_ms
    );
    ensure!(s.conns == 200, "{}", s.text);
    ensure!(
        s.broken == 0,
        "every flow carries on across failover and failback:\n{}",
        s.text
    );
    ensure!(s.moved == 0, "no flow changes real server:\n{}", s.text);
    Ok(())
}

#[test]
fn without_sync_a_failover_breaks_established_flows() -> Result<()> {
    let Some(p) = PairLab::dr("syncoff", bins(), 0)? else {
        return Ok(());
    };
    let (mut a, b) = start_pair(&p, false)?;
    let client = flows(&p, 6)?;
    std::thread::sleep(Duration::from_secs(2));
    a.proc.kill();
    p.wait_state(&b, "MASTER", ELECTION)?;
    let s = finish(client, Duration::from_secs(30))?;
    println!(
        "without sync: {}/{} flows broke after the failover",
        s.broken, s.conns
    );
    ensure!(
        s.broken > s.conns / 2,
        "without sync the new master has no entry for established flows, so they break:\n{}",
        s.text
    );
    Ok(())
}
