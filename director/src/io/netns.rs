//! Running set-up code inside another network namespace.
//!
//! A socket belongs to the network namespace its creating thread was in,
//! and keeps it for life. So a process can serve an interface of another
//! namespace by opening its sockets on a short-lived thread that first
//! joins that namespace (`setns(2)`, which affects only the calling
//! thread), and then use them from any thread. The daemon does this when
//! told to run on a namespaced interface; the lab tests do it to put a
//! director, a client and a real server in one test process.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::error::IoError;
use super::sys;

/// Where `ip netns add NAME` puts the namespace: `/run/netns/NAME`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Runs `f` on a new thread inside the network namespace at `ns` (a
/// `/run/netns/NAME` or `/proc/PID/ns/net` file) and returns its result.
/// The calling thread's namespace is untouched. Sockets `f` opens stay in
/// that namespace wherever they are used afterwards.
pub fn run_in_netns<T, F>(ns: &Path, f: F) -> Result<T, IoError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let label = || ns.display().to_string();
    let file = File::open(ns).map_err(|e| IoError::sys("open(netns)", label(), e))?;
    std::thread::scope(|s| {
        let h = s.spawn(move || -> Result<T, IoError> {
            sys::setns_net(file.as_fd())
                .map_err(|e| IoError::sys("setns(CLONE_NEWNET)", label(), e))?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
