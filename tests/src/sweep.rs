//! Names that say who owns them, and cleanup by name.
//!
//! Every namespace and temp directory of a lab is named
//! `lbt-<pid>-<counter>-<lab>-...`, where `<pid>` is the test process that
//! made it. That lets a later run remove what a crashed run (SIGKILL, OOM,
//! a killed CI job) left behind — only when that pid is dead, so parallel
//! test processes never touch each other's labs — and lets the signal guard
//! remove everything of its own process on SIGINT/SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::cmd::{self, DEFAULT_TIMEOUT};

/// Start of every name the harness creates.
pub const PREFIX_TAG: &str = "lbt-";

/// Where `ip netns add` puts its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// The owning pid encoded in a harness name, if `name` is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX_TAG)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?;
    let counter = parts.next()?;
    parts.next()?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(pid) || !all_digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (in our pid namespace).
pub fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of all namespaces currently in `/run/netns`.
pub fn namespaces() -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// Namespaces whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Pids of processes whose command line contains `needle` (zombies have an
/// empty command line and are not reported).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Kills every process inside namespace `ns`, then deletes it. Processes
/// must go first: `ip netns del` only drops the name, and a namespace with
/// processes in it (and its veths and bridges) would live on.
pub fn delete_namespace(ns: &str) {
    if let Ok(pids) = cmd::run_ok(&["ip", "netns", "pids", ns], DEFAULT_TIMEOUT) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                cmd::kill_pid(pid, "KILL");
            }
        }
    }
    let _ = cmd::run(&["ip", "netns", "del", ns], DEFAULT_TIMEOUT);
}

/// Harness directories in the temp dir.
fn temp_dirs() -> Vec<(String, PathBuf)> {
    let Ok(dir) = fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        Some((e.file_name().into_string().ok()?, e.path()))
    })
    .filter(|(name, _)| owner_pid(name).is_some())
    .collect()
}

/// Removes namespaces, processes and temp directories of earlier runs whose
/// owning process is dead. Best effort: a concurrent sweep may win a race.
pub fn sweep_stale() {
    let dead = |name: &str| owner_pid(name).is_some_and(|pid| !pid_alive(pid));
    for ns in namespaces().iter().filter(|n| dead(n)) {
        delete_namespace(ns);
    }
    for (name, path) in temp_dirs().into_iter().filter(|(n, _)| dead(n)) {
        // A process that outlived its namespace still names its directory
        // (nginx -c <dir>/nginx.conf).
        for pid in processes_mentioning(&path.to_string_lossy()) {
            cmd::kill_pid(pid, "KILL");
        }
        let _ = fs::remove_dir_all(&path);
        tracing::debug!("swept stale lab directory {name}");
    }
}

/// Removes every namespace and temp directory of this process.
pub fn cleanup_own() {
    let mine = format!("{PREFIX_TAG}{}-", std::process::id());
    for ns in namespaces_with_prefix(&mine) {
        delete_namespace(&ns);
    }
    for (name, path) in temp_dirs() {
        if name.starts_with(&mine) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Installs (once per process) a SIGINT/SIGTERM handler that removes this
/// process's labs and exits. Drop handlers do not run when a signal kills
/// the process, so without this a Ctrl-C during `cargo test` would leave
/// namespaces behind until the next run's sweep.
pub fn install_signal_guard() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("lab-signal-guard".into())
            .spawn(|| {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("lab: no signal guard (runtime: {e}); relying on the sweep");
                        return;
                    }
                };
                let code = rt.block_on(async {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        eprintln!("lab: no signal guard (cannot register); relying on the sweep");
                        return None;
                    };
                    tokio::select! {
                        _ = int.recv() => Some(130),
                        _ = term.recv() => Some(143),
                    }
                });
                if let Some(code) = code {
                    eprintln!("lab: signal received; removing this process's lab namespaces");
                    cleanup_own();
                    std::process::exit(code);
                }
            });
        if let Err(e) = spawned {
            eprintln!("lab: no signal guard (thread: {e}); relying on the sweep");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_harness_names() {
        assert_eq!(owner_pid("lbt-1234-0-smoke-client"), Some(1234));
        assert_eq!(owner_pid("lbt-1234-17-x"), Some(1234));
        assert_eq!(owner_pid("lbt-1234-0"), None);
        assert_eq!(owner_pid("lbt-12a4-0-x"), None);
        assert_eq!(owner_pid("lbt--0-x"), None);
        assert_eq!(owner_pid("lb-1234-0-x"), None);
        assert_eq!(owner_pid("client"), None);
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
    }
}
