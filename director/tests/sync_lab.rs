//! Connection sync between the two directors of a pair, end to end.
//!
//! - In each LVS mode (DR, TUN, NAT), established flows survive a failover
//!   and a failback: 200 long-lived keep-alive connections through the VIP
//!   (a request and a reply every 50 ms each, real kernel TCP from the
//!   client to nginx on the real servers) and a 50 MiB download slowed to
//!   span both; kill -9 the master, later bring it back (it preempts once
//!   it has the table). Every flow carries on, on the real server it had,
//!   and the download arrives intact. The sync stream's end tells the
//!   backup at once that a killed master is gone.
//! - A frozen master (SIGSTOP: no adverts, but its sockets stay open) is
//!   replaced by VRRP's own Master_Down timer: the figure without the
//!   sync stream's hint.
//! - Without sync, flows break, which is what proves sync does it.
//! - Cutting the sync link while VRRP goes on makes no second master; new
//!   flows made during the cut reach the backup once the link is back.
//!
//! `LAB_ADVERT_INT=0.05` runs the pairs at another advert interval
//! (seconds; 0.1 by default) for the failover figures.
//!
//! Bounded: each run is 200 connections × 20 requests/s for at most 14 s
//! and one rate-limited download; every wait has a deadline; the lab is
//! removed on every exit path. The lab runs one at a time (a lock), so
//! that the figures printed are not those of three pairs sharing two
//! CPUs; outcomes are asserted, timings only printed.

// Real processes are timed here (figures printed, never asserted tight).
#![allow(clippy::disallowed_methods)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab_tests::cmd::wait_until;
use lab_tests::flows::Flows;
use lab_tests::pair::{Mode, takeover_on_the_wire};
use lab_tests::{CurlOptions, Directord, Download, PairLab, VrrpOptions};

const ELECTION: Duration = Duration::from_secs(5);

/// One pair at a time (see the module comment).
static ONE_LAB: Mutex<()> = Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// VRRP settings of every pair here: the defaults, with `advert_int` from
/// `LAB_ADVERT_INT` if set.
fn vrrp_opts() -> VrrpOptions {
    let mut opts = VrrpOptions::default();
    if let Some(v) = std::env::var("LAB_ADVERT_INT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.advert_int = v;
    }
    opts
}

fn start_pair(p: &PairLab, sync: bool) -> Result<(Directord, Directord)> {
    let opts = vrrp_opts();
    let a = p.start(0, &p.config(0, 150, &opts, &p.sync_table(0, sync)))?;
    p.wait_state(&a, "MASTER", ELECTION)?;
    let b = p.start(1, &p.config(1, 100, &opts, &p.sync_table(1, sync)))?;
    p.wait_state(&b, "BACKUP", ELECTION)?;
    if sync {
        wait_until(
            "director-b to subscribe to director-a",
            ELECTION,
            Duration::from_millis(100),
            || Ok(p.status_line(&b, "sync:")?.contains("subscriber connected")),
        )?;
    }
    Ok((a, b))
}

fn flows(p: &PairLab, conns: u32, secs: u32) -> Result<Flows> {
    Flows::start(p, conns, 50, secs)
}

/// The first number after `prefix` in `dirctl status` on `d`.
fn status_number(p: &PairLab, d: &Directord, prefix: &str, after: &str) -> Result<u64> {
    let line = p.status_line(d, prefix)?;
    let rest = line
        .split_once(after)
        .with_context(|| format!("no {after:?} in {line:?}"))?
        .1;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .with_context(|| format!("a number after {after:?} in {line:?}"))
}

/// Connections in `d`'s table: (`dirctl status` total, `dirctl -Lnc` rows).
fn connections(p: &PairLab, d: &Directord) -> Result<(u64, usize)> {
    let total = status_number(p, d, "connections:", "connections:")?;
    let listing = d.dirctl(&p.lab, &["-Lnc"])?;
    let rows = listing
        .lines()
        .filter(|l| l.trim_start().starts_with("TCP"))
        .count();
    Ok((total, rows))
}

/// Size of each real server's /big.bin.
const BIG_MIB: u32 = 50;

/// A 50 MiB download through the VIP at 4 MiB/s (~13 s), in a thread.
fn slow_download(p: &PairLab) -> Result<Download> {
    let opts = CurlOptions {
        max_time: Duration::from_secs(90),
        extra_args: vec!["--limit-rate".into(), "4M".into()],
        ..CurlOptions::default()
    };
    p.lab
        .download_with(&p.client, &p.url("/big.bin"), &opts)
        .context("the download through the VIP")
}

/// kill -9 the master under 200 flows and a slow download, bring it back:
/// every flow and the download carry on.
fn failover_and_failback(mode: Mode, name: &str) -> Result<()> {
    let _one = one_lab();
    let Some(p) = PairLab::new(name, mode, lab_tests::bins!(), BIG_MIB)? else {
        return Ok(());
    };
    let (mut a, b) = start_pair(&p, true)?;
    let mut cap = p
        .lab
        .capture(&p.client, p.client_iface.name(), "arp or ip proto 112")?;
    let client = flows(&p, 200, 14)?;
    let (s, download, wire, seen) = std::thread::scope(|scope| -> Result<_> {
        let download = scope.spawn(|| slow_download(&p));
        std::thread::sleep(Duration::from_secs(3));
        let conns_b = p.status_line(&b, "connections:")?;
        ensure!(
            conns_b.starts_with("connections: 20"),
            "the backup holds the master's 200 flows and the download before the failover: {conns_b}"
        );
        let killed = Instant::now();
        a.proc.kill();
        p.wait_state(&b, "MASTER", ELECTION)?;
        let seen = killed.elapsed();
        std::thread::sleep(Duration::from_secs(3));
        // Failback: the old master returns with the higher priority; it
        // holds off until it has the table, then preempts.
        let a2 = p.start(0, &p.config(0, 150, &vrrp_opts(), &p.sync_table(0, true)))?;
        p.wait_state(&a2, "MASTER", Duration::from_secs(8))
            .context("the returning master preempts once synced")?;
        let s = client.finish(Duration::from_secs(30))?;
        let download = download
            .join()
            .map_err(|_| anyhow::anyhow!("download thread panicked"))??;
        let decoded = cap.decode()?;
        let wire = takeover_on_the_wire(
            &decoded,
            &p.nodes[0].iface.addr().to_string(),
            p.nodes[1].iface.mac(),
        );
        Ok((s, download, wire, seen))
    })?;
    let out_b = b.output();
    let why = out_b
        .lines()
        .find(|l| l.contains("BACKUP -> MASTER"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "{}: with sync, {}/{} flows carried on, {} moved; {}; takeover after kill -9 {} on the \
         wire (dead master's last advert → first gratuitous ARP), {seen:?} seen by dirctl; \
         download {} bytes in {:.1} s; {why}",
        mode.name(),
        s.conns - s.broken,
        s.conns,
        s.moved,
        s.gaps(),
        wire.map_or("?".into(), |w| format!("{:.0} ms", w * 1000.0)),
        download.len,
        download.timing.total.as_secs_f64(),
    );
    s.all_carried_on(200)?;
    ensure!(
        why.contains("sync stream to the master lost"),
        "the killed master's closed sync stream made director-b suspect it at once: {why:?}"
    );
    let want = p.servers[0].big_sha256().context("big.bin served")?;
    ensure!(
        download.status == 200 && download.sha256 == want,
        "the download across failover and failback arrives intact: HTTP {}, {} bytes, \
         sha256 {} (served: {want})",
        download.status,
        download.len,
        download.sha256
    );
    ensure!(
        download.timing.total > Duration::from_secs(8),
        "the download spanned the failover and the failback (rate-limited): {:?}",
        download.timing
    );
    Ok(())
}

#[test]
fn dr_flows_and_a_download_survive_failover_and_failback() -> Result<()> {
    failover_and_failback(Mode::Dr, "syncdr")
}

#[test]
fn tun_flows_and_a_download_survive_failover_and_failback() -> Result<()> {
    failover_and_failback(Mode::Tun, "synctun")
}

#[test]
fn nat_flows_and_a_download_survive_failover_and_failback() -> Result<()> {
    failover_and_failback(Mode::Nat, "syncnat")
}

/// A hung master (SIGSTOP) keeps its sync socket open: only VRRP's
/// Master_Down timer notices. The flows carry on too; the gaps are the
/// figure without the sync stream's hint.
#[test]
fn a_frozen_master_is_replaced_by_the_master_down_timer() -> Result<()> {
    let _one = one_lab();
    let Some(p) = PairLab::dr("syncfrz", lab_tests::bins!(), 0)? else {
        return Ok(());
    };
    let (mut a, b) = start_pair(&p, true)?;
    let mut cap = p
        .lab
        .capture(&p.client, p.client_iface.name(), "arp or ip proto 112")?;
    let client = flows(&p, 200, 8)?;
    std::thread::sleep(Duration::from_secs(3));
    a.proc.signal("STOP");
    let frozen = Instant::now();
    p.wait_state(&b, "MASTER", ELECTION)?;
    let seen = frozen.elapsed();
    let s = client.finish(Duration::from_secs(30))?;
    a.proc.kill();
    let wire = takeover_on_the_wire(
        &cap.decode()?,
        &p.nodes[0].iface.addr().to_string(),
        p.nodes[1].iface.mac(),
    );
    let status = b.dirctl(&p.lab, &["status"])?;
    println!(
        "dr: master frozen (SIGSTOP), {}/{} flows carried on, {} moved; {}; takeover {} on the \
         wire, {seen:?} seen by dirctl",
        s.conns - s.broken,
        s.conns,
        s.moved,
        s.gaps(),
        wire.map_or("?".into(), |w| format!("{:.0} ms", w * 1000.0)),
    );
    ensure!(
        status.contains("BACKUP -> MASTER: master down interval expired"),
        "RFC 5798 6.4.2: with the master's sockets open, Master_Down_Interval decides:\n{status}"
    );
    s.all_carried_on(200)
}

#[test]
fn without_sync_a_failover_breaks_established_flows() -> Result<()> {
    let _one = one_lab();
    let Some(p) = PairLab::dr("syncoff", lab_tests::bins!(), 0)? else {
        return Ok(());
    };
    let (mut a, b) = start_pair(&p, false)?;
    let client = flows(&p, 200, 6)?;
    std::thread::sleep(Duration::from_secs(2));
    a.proc.kill();
    p.wait_state(&b, "MASTER", ELECTION)?;
    let s = client.finish(Duration::from_secs(30))?;
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

/// Cut the HA link (sync) while VRRP on the lan goes on: no second
/// master; flows made during the cut reach the backup once the link is
/// back (it reconnects and catches up), and then both tables agree.
#[test]
fn a_cut_sync_link_makes_no_second_master_and_the_backup_catches_up() -> Result<()> {
    let _one = one_lab();
    let Some(p) = PairLab::dr("synccut", lab_tests::bins!(), 0)? else {
        return Ok(());
    };
    let (a, b) = start_pair(&p, true)?;
    let before = flows(&p, 100, 14)?;
    wait_until(
        "the backup to hold the first 100 flows",
        ELECTION,
        Duration::from_millis(100),
        || Ok(connections(&p, &b)?.0 >= 100),
    )?;
    let snapshots_before = status_number(&p, &b, "sync:", "snapshots")?;

    p.cut_sync(1)?;
    let cut = Instant::now();
    let during = flows(&p, 100, 10)?;
    wait_until(
        "the backup to notice the cut",
        ELECTION,
        Duration::from_millis(100),
        || {
            Ok(p.status_line(&b, "sync:")?
                .contains("subscriber disconnected"))
        },
    )?;
    let noticed = cut.elapsed();
    wait_until(
        "the master to hold all 200 flows",
        ELECTION,
        Duration::from_millis(100),
        || Ok(connections(&p, &a)?.0 >= 200),
    )?;
    // Several advert intervals and sync heartbeat timeouts with the link
    // down: the roles hold.
    for _ in 0..10 {
        ensure!(
            p.vrrp_state(&a)? == "MASTER" && p.vrrp_state(&b)? == "BACKUP",
            "VRRP on the lan still sees the master: no second master during the cut"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let behind = connections(&p, &b)?.0;
    ensure!(
        behind < 200,
        "during the cut the new flows do not reach the backup ({behind} entries)"
    );

    p.restore_sync(1)?;
    let restored = Instant::now();
    wait_until(
        "the backup to reconnect and catch up (lag 0, same table as the master)",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            // Lag as the master measures it (acks), and the tables.
            let sub = p.status_line(&b, "sync:")?;
            let master = p.status_line(&a, "sync:")?;
            Ok(sub.contains("subscriber connected")
                && master.contains("master connected")
                && master.contains("lag 0 entries")
                && connections(&p, &b)? == connections(&p, &a)?)
        },
    )?;
    let caught_up = restored.elapsed();
    let (total_a, rows_a) = connections(&p, &a)?;
    let (total_b, rows_b) = connections(&p, &b)?;
    let sync_b = p.status_line(&b, "sync:")?;
    let sync_a = p.status_line(&a, "sync:")?;
    let snapshots = status_number(&p, &b, "sync:", "snapshots")?;
    println!(
        "sync link cut: noticed by the backup in {noticed:?}; restored → caught up in \
         {caught_up:?} ({} snapshot(s) before the cut, {snapshots} after); master {total_a} \
         entries ({rows_a} listed), backup {total_b} ({rows_b} listed)\n  a: {sync_a}\n  b: {sync_b}",
        snapshots_before
    );
    ensure!(
        total_a >= 200 && total_a == total_b && rows_a == rows_b,
        "after the restore the backup holds what the master holds: {total_a}/{rows_a} vs \
         {total_b}/{rows_b}"
    );
    ensure!(
        sync_a.contains("master connected") && sync_a.contains("lag 0 entries"),
        "the master sees its subscriber back with no lag: {sync_a}"
    );
    ensure!(
        !b.output().contains("-> MASTER"),
        "director-b never became master:\n{}",
        b.output()
    );
    ensure!(
        !a.output().contains("MASTER -> "),
        "director-a never left MASTER:\n{}",
        a.output()
    );
    let s1 = before.finish(Duration::from_secs(30))?;
    let s2 = during.finish(Duration::from_secs(30))?;
    s1.all_carried_on(100)?;
    s2.all_carried_on(100)?;
    Ok(())
}
