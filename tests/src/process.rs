//! A long-running process inside a lab namespace, killed and reaped on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd;

/// A process started with [`Lab::spawn`](crate::Lab::spawn). Its stdout and
/// stderr go to files in the lab's directory (a pipe nobody reads would
/// eventually block it). Dropping it sends SIGKILL and waits, so a test
/// never leaves a server behind, also when it panics.
#[derive(Debug)]
pub struct LabChild {
    child: Child,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl LabChild {
    pub(crate) fn new(child: Child, label: String, stdout: PathBuf, stderr: PathBuf) -> Self {
        Self {
            child,
            label,
            stdout,
            stderr,
        }
    }

    /// The process id (the command itself: `ip netns exec` execs it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What was started, for messages: `host: argv...`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Exit status if the process has ended, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("polling {}", self.label))
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal by name (`INT`, `TERM`, `HUP`, `STOP`, `CONT`, ...).
    pub fn signal(&self, sig: &str) {
        cmd::kill_pid(self.id(), sig);
    }

    /// Asks politely (SIGINT, so e.g. tcpdump flushes), then SIGKILL after
    /// `grace`; always reaps the process.
    pub fn stop_gracefully(&mut self, grace: Duration) {
        if self.is_running() {
            self.signal("INT");
            if matches!(self.wait_timeout(grace), Ok(None)) {
                self.kill();
            }
        }
        self.kill();
    }

    /// SIGKILL and reap; harmless if it has already exited.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Path of the file that receives stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Path of the file that receives stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Everything the process has written to stdout so far.
    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        self.kill();
    }
}
