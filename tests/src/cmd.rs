//! Running external commands with a deadline, and bounded polling.
//!
//! Every command the harness runs goes through [`run`], so no test can hang
//! on a stuck `ip`, `curl` or `ss`: past its deadline the process is killed
//! and the call fails with the command line in the message.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Deadline for housekeeping commands (`ip`, `ss`, `sysctl`, ...), which
/// take milliseconds; it only matters when something is badly wrong.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `argv` to completion (stdin closed, stdout and stderr captured), or
/// kills it after `timeout` and fails.
pub fn run(argv: &[&str], timeout: Duration) -> Result<Output> {
    let (prog, args) = argv.split_first().context("empty command line")?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning `{}`", argv.join(" ")))?;
    let pid = child.id();
    // `wait_with_output` drains both pipes (a child that fills a pipe would
    // otherwise block forever); a helper thread lets us put a deadline on it.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("waiting for `{}`", argv.join(" "))),
        Err(_) => {
            kill_pid(pid, "KILL");
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!(
                "`{}` did not finish within {timeout:?}; killed it",
                argv.join(" ")
            )
        }
    }
}

/// Like [`run`], but a non-zero exit status is an error that quotes stderr;
/// returns stdout as text.
pub fn run_ok(argv: &[&str], timeout: Duration) -> Result<String> {
    let out = run(argv, timeout)?;
    check(argv, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails with the command line, exit status and stderr unless `out` succeeded.
pub fn check(argv: &[&str], out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Sends signal `sig` (a name such as `KILL` or `INT`) to `pid`, ignoring
/// failure: the process may already be gone, which is what we want anyway.
/// The `kill` binary keeps the crate free of `unsafe` libc calls.
pub fn kill_pid(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `check` every `every` until it returns `Ok(true)`, for at most
/// `timeout`; fails naming `what` on timeout and passes errors through.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    // Bounded in count as well as time, in case `check` itself is slow.
    let max_polls = (timeout.as_millis() / every.as_millis().max(1)) as u64 + 2;
    for _ in 0..max_polls {
        if check()? {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            break;
        }
        thread::sleep(every);
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_captures_output() {
        let out = run_ok(&["echo", "hi"], DEFAULT_TIMEOUT).unwrap();
        assert_eq!(out, "hi\n");
    }

    #[test]
    fn run_kills_on_timeout() {
        let start = Instant::now();
        let err = run(&["sleep", "10"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn run_ok_reports_failure() {
        let err = run_ok(&["sh", "-c", "echo boom >&2; exit 3"], DEFAULT_TIMEOUT).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn wait_until_is_bounded() {
        let mut n = 0;
        let err = wait_until(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || {
                n += 1;
                Ok(false)
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("never"));
        assert!(n <= 7, "polled {n} times");
    }
}
