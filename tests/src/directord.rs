//! Running the project's own daemon in a lab: `directord` started in a
//! host's namespace from a configuration text, checked first with
//! `--check-config`, and waited for until its control API listens (or it
//! dies, with the end of its stderr in the error); `dirctl` run against it.
//! The lab tests, the demo and the benchmark all start it this way.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{Host, Lab, LabChild};

/// The control API port directord listens on by default (loopback of its
/// namespace).
pub const CONTROL_PORT: u16 = 7400;

/// How long directord may take to open its rings and control API.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running directord in one lab host.
#[derive(Debug)]
pub struct Directord {
    /// The host (namespace) it runs in.
    pub host: Host,
    /// The process; stopped and reaped with the lab.
    pub proc: LabChild,
    /// Its configuration file (in the lab dir).
    pub config: PathBuf,
    /// What `--check-config` printed: the plan it runs.
    pub plan: String,
    dirctl: String,
}

impl Directord {
    /// Check `config` with `--check-config`, start `directord` with it in
    /// `host`, and wait (bounded by [`START_TIMEOUT`]) for its control API.
    pub fn start(lab: &Lab, host: &Host, bins: &Bins, config: &str) -> Result<Directord> {
        Directord::start_with(lab, host, bins, config, &[])
    }

    /// [`Directord::start`] with `wrapper` in front of the command line
    /// (e.g. `setpriv --reuid ... --ambient-caps ...` to run it as an
    /// unprivileged user with some capabilities; the lab's files are
    /// readable by everyone, so such a user can read its configuration).
    pub fn start_with(
        lab: &Lab,
        host: &Host,
        bins: &Bins,
        config: &str,
        wrapper: &[&str],
    ) -> Result<Directord> {
        let path = lab.unique_path("directord", ".toml");
        fs::write(&path, config).context("writing directord's config")?;
        let p = path.to_string_lossy().into_owned();
        let check = lab.exec(host, &[&bins.directord, "--config", &p, "--check-config"])?;
        ensure!(
            check.status.success(),
            "directord refused the config: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        let mut argv = wrapper.to_vec();
        argv.extend_from_slice(&[&bins.directord, "--config", &p]);
        let mut proc = lab.spawn(host, &argv)?;
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = proc.try_wait() {
                let err = proc.stderr_text();
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("directord exited ({status}):\n   {}", tail.join("\n   "));
            }
            let short = Duration::from_millis(100);
            if lab
                .wait_listening(host, false, Ipv4Addr::LOCALHOST, CONTROL_PORT, short)
                .is_ok()
            {
                break;
            }
            ensure!(
                t0.elapsed() < START_TIMEOUT,
                "directord's control API did not open within {START_TIMEOUT:?}: {}",
                proc.stderr_text().trim()
            );
        }
        Ok(Directord {
            host: host.clone(),
            proc,
            config: path,
            plan: String::from_utf8_lossy(&check.stdout).into_owned(),
            dirctl: bins.dirctl.clone(),
        })
    }

    /// Run `dirctl ARGS` (ipvsadm syntax) in the director's namespace;
    /// returns its stdout, or an error with what it printed.
    pub fn dirctl(&self, lab: &Lab, args: &[&str]) -> Result<String> {
        let mut argv = vec![self.dirctl.as_str()];
        argv.extend_from_slice(args);
        let out = lab.exec(&self.host, &argv)?;
        ensure!(
            out.status.success(),
            "dirctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Replace the configuration file and make directord reload it (HUP).
    pub fn reload(&self, config: &str) -> Result<()> {
        fs::write(&self.config, config).context("rewriting directord's config")?;
        self.proc.signal("HUP");
        Ok(())
    }

    /// What directord printed so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.proc.stdout_text(), self.proc.stderr_text())
    }
}

/// The project's binaries as the calling integration-test crate knows
/// them (Cargo's `CARGO_BIN_EXE_*`, read where the macro is used).
#[macro_export]
macro_rules! bins {
    () => {
        $crate::Bins {
            directord: env!("CARGO_BIN_EXE_directord").into(),
            dirctl: env!("CARGO_BIN_EXE_dirctl").into(),
        }
    };
}

/// Where the project's binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `directord`.
    pub directord: String,
    /// `dirctl`.
    pub dirctl: String,
}

/// A binary given on the command line as `FLAG PATH`, made absolute (the
/// lab runs it from other namespaces and directories).
pub fn binary_arg(path: &Path, flag: &str) -> Result<String> {
    let abs = path
        .canonicalize()
        .with_context(|| format!("{flag} {}: not found; build it first", path.display()))?;
    ensure!(abs.is_file(), "{flag} {}: not a file", abs.display());
    Ok(abs.to_string_lossy().into_owned())
}
