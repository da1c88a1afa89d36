//! Command check (keepalived `MISC_CHECK`) and the notify and quorum
//! commands: a program run in a process group of its own, killed — the
//! whole group, so a shell's children die too — when its time is up.
//!
//! A check command gets the server it checks in its environment:
//! `CHECK_ADDRESS`, `CHECK_PORT` and `CHECK_SERVICE` (`tcp/VIP:PORT`).
//! Exit 0 is up, anything else down; with `dynamic_weight` (keepalived's
//! `misc_dynamic`) exit 1 is down and 2..=255 is up with weight code − 2.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use super::{CommandCheck, CommandLine, ProbeResult, human};

/// Kills a process group when dropped, unless disarmed: the command's
/// future may be dropped (shutdown, reconfiguration) before it ends.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `cmd` with `extra` arguments appended and `env` added, for at most
/// `timeout`; then the process group is killed and the run fails.
pub async fn run(
    cmd: &CommandLine,
    extra: &[String],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<ExitStatus, String> {
    let (program, args) = cmd.argv.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // The leader is reaped: its id may be reused; never signal it.
            guard.0 = None;
            Ok(status)
        }
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            // Kill the group while the leader is not reaped yet (its id
            // cannot have been reused), then reap it.
            guard.kill();
            let _ = child.wait().await;
            Err(format!("timeout after {}: killed", human(timeout)))
        }
    }
}

/// Run a check command against `target` of `service`.
pub async fn probe(
    target: SocketAddr,
    service: &str,
    check: &CommandCheck,
    timeout: Duration,
) -> ProbeResult {
    let env = [
        ("CHECK_ADDRESS", target.ip().to_string()),
        ("CHECK_PORT", target.port().to_string()),
        ("CHECK_SERVICE", service.to_string()),
    ];
    let status = run(&check.command, &[], &env, timeout).await?;
    verdict(status, check.dynamic_weight)
}

fn verdict(status: ExitStatus, dynamic: bool) -> ProbeResult {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), dynamic) {
        (Some(0), _) => Ok(None),
        (Some(c @ 2..=255), true) => Ok(Some(c - 2)),
        (Some(c), _) => Err(format!("exit status {c}")),
        (None, _) => Err(format!(
            "killed by signal {}",
            status.signal().unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(text: &str, dynamic: bool) -> CommandCheck {
        CommandCheck {
            command: CommandLine::shell(text),
            dynamic_weight: dynamic,
        }
    }

    fn target() -> SocketAddr {
        "10.0.0.1:80".parse().unwrap()
    }

    #[tokio::test]
    async fn exit_codes_and_dynamic_weights() {
        let t = Duration::from_secs(5);
        let up = sh("test \"$CHECK_ADDRESS:$CHECK_PORT\" = 10.0.0.1:80", false);
        assert_eq!(probe(target(), "tcp/x", &up, t).await, Ok(None));
        let down = sh("exit 3", false);
        assert_eq!(
            probe(target(), "tcp/x", &down, t).await,
            Err("exit status 3".into())
        );
        assert_eq!(
            probe(target(), "tcp/x", &sh("exit 7", true), t).await,
            Ok(Some(5))
        );
        assert_eq!(
            probe(target(), "tcp/x", &sh("exit 1", true), t).await,
            Err("exit status 1".into())
        );
        let missing = CommandCheck {
            command: CommandLine {
                argv: vec!["/nonexistent/check".into()],
            },
            dynamic_weight: false,
        };
        let e = probe(target(), "tcp/x", &missing, t).await.unwrap_err();
        assert!(e.starts_with("cannot run /nonexistent/check"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_with_its_children() {
        let dir = std::env::temp_dir().join(format!("hc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child.pid");
        // The shell starts a child (a second member of the group) and waits.
        let text = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let r = probe(
            target(),
            "tcp/x",
            &sh(&text, false),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(r, Err("timeout after 300 ms: killed".into()));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut gone = false;
        for _ in 0..50 {
            // Dead, or a zombie waiting for init to reap it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            gone,
            "the shell's child (pid {pid}) was killed with the group"
        );
    }
}
