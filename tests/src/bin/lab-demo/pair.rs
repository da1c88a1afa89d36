//! The pair: two directors with VRRP and connection sync, 200 keep-alive
//! flows through the VIP, a manual failover, then kill -9 of the master —
//! and every flow carries on, on the real server it had.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab_tests::flows::Flows;
use lab_tests::pair::{VIP, VRID};
use lab_tests::{Bins, Directord, PairLab, VrrpOptions};

use super::{header, indented, step};

const ELECTION: Duration = Duration::from_secs(5);
const FLOWS: u32 = 200;

fn status(p: &PairLab, d: &Directord, who: &str) -> Result<()> {
    step(&format!("dirctl status on {who}"));
    indented(&d.dirctl(&p.lab, &["status"])?);
    Ok(())
}

/// Build the pair lab, walk through it, remove it.
pub fn run(bins: &Bins) -> Result<()> {
    let t0 = Instant::now();
    header("PAIR: two directors, VRRP + connection sync, failover under load");
    println!(
        "client 10.41.0.10 and two nginx real servers (DR) on 10.41.0.0/24; director-a .2\n\
         (priority 150) and director-b .3 (priority 100) elect a master with VRRPv3 (VRID\n\
         {VRID}, 0.1 s adverts) for VIP {VIP}, and stream the connection table to each\n\
         other over gRPC on their own link (10.42.0.0/24)."
    );
    let Some(p) = PairLab::dr("demopair", bins.clone(), 0)? else {
        println!("labs are skipped here ({}=1)", lab_tests::SKIP_ENV);
        return Ok(());
    };
    let opts = VrrpOptions::default();
    let cfg = |i: usize, prio: u8| p.config(i, prio, &opts, &p.sync_table(i, true));
    let mut a = p.start(0, &cfg(0, 150))?;
    p.wait_state(&a, "MASTER", ELECTION)?;
    let mut b = p.start(1, &cfg(1, 100))?;
    p.wait_state(&b, "BACKUP", ELECTION)?;
    lab_tests::cmd::wait_until(
        "director-b to follow director-a's table",
        ELECTION,
        Duration::from_millis(100),
        || {
            Ok(b.dirctl(&p.lab, &["status"])?
                .contains("peer vrrp VI_1: MASTER"))
        },
    )?;
    status(&p, &a, "director-a")?;
    status(&p, &b, "director-b")?;

    step(&format!(
        "{FLOWS} keep-alive flows from the client, a request every 50 ms each, for 14 s"
    ));
    let flows = Flows::start(&p, FLOWS, 50, 14)?;
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "   director-b holds a copy: {}",
        p.status_line(&b, "connections:")?
    );

    step("dirctl failover on director-a (waits for director-b's lag to be 0, then priority 0)");
    indented(&a.dirctl(&p.lab, &["failover"])?);
    p.wait_state(&b, "MASTER", ELECTION)?;
    println!(
        "   director-a: {}",
        p.status_line(&a, "vrrp VI_1:")?
            .trim_start_matches("vrrp VI_1: ")
    );
    std::thread::sleep(Duration::from_secs(3));

    step("kill -9 director-b, the master now: director-a takes over when its adverts stop");
    let killed = Instant::now();
    b.proc.kill();
    p.wait_state(&a, "MASTER", ELECTION)?;
    println!(
        "   director-a is MASTER {} ms after the kill (seen by polling dirctl status)",
        killed.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(2));

    step("director-b comes back: it resynchronises from a snapshot and stays BACKUP");
    b = p.start(1, &cfg(1, 100))?;
    p.wait_state(&b, "BACKUP", ELECTION)?;
    lab_tests::cmd::wait_until(
        "director-b to catch up",
        ELECTION,
        Duration::from_millis(100),
        || Ok(p.status_line(&b, "sync:")?.contains("subscriber connected")),
    )?;
    println!("   {}", p.status_line(&b, "sync:")?);

    let s = flows
        .finish(Duration::from_secs(40))
        .context("the flows across the failovers")?;
    step("what the client saw");
    println!(
        "   {}/{} flows carried on through a manual failover and a kill -9, {} moved to\n   \
         another real server; longest gap between replies per flow: p50 {} ms, p99 {} ms",
        s.conns - s.broken,
        s.conns,
        s.moved,
        s.gap_p50_ms,
        s.gap_p99_ms
    );
    ensure!(
        s.broken == 0 && s.moved == 0,
        "flows broke or moved:\n{}",
        s.text
    );
    a.proc.kill();
    b.proc.kill();
    println!("\n   pair shown in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
