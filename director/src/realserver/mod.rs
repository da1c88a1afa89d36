//! Real-server set-up for LVS DR and TUN: what operators otherwise do by
//! hand on every real server, behind `dirctl realserver setup|check|undo`
//! (and `decap`, the userspace IPIP decapsulator for kernels without the
//! ipip module).
//!
//! The planning ("what must change", "what would break") is pure over an
//! [`Observed`] snapshot; the system-changing steps sit behind [`System`],
//! whose live implementation runs `ip` and `sysctl` and prints each command.
//! Unlike the rest of this crate, the live parts here do I/O: they are the
//! real server's side, not the director's dataplane.

mod check;
pub mod decap;
mod model;
mod ops;
mod plan;
mod state;
mod system;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use check::{CheckRequest, Finding, RouteTo, Severity, check, healthy};
pub use model::{AddrInfo, LinkInfo, LinkKind, Observed, conf_key, parse_addrs, parse_links};
pub use ops::{Outcome, run_check, setup, undo};
pub use plan::{
    Change, DEFAULT_TUN_DEV, Decap, Mode, Plan, Request, Target, TunnelKind, plan_setup, plan_undo,
};
pub use state::{DEFAULT_STATE_DIR, STATE_FILE, State, SysctlRecord, state_path};
pub use system::{LiveSystem, System, decap_pids};

/// What can go wrong in the real-server helper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `--vip` given.
    #[error("no VIP given (--vip ADDR)")]
    NoVip,
    /// Not a usable interface name.
    #[error("`{0}` is not a usable interface name")]
    BadDevice(String),
    /// The VIP device does not exist and is not ours to create.
    #[error("device {0} does not exist")]
    NoSuchDevice(String),
    /// The VIP device answers ARP.
    #[error(
        "{0} answers ARP: a VIP there would be announced to the segment and steal the \
         director's traffic; use lo (DR) or a tunnel device (TUN)"
    )]
    ArpingDevice(String),
    /// `--dev` names a device of the wrong kind for the tunnel.
    #[error("{dev} exists but is not a {want} device")]
    WrongDeviceKind {
        /// Device.
        dev: String,
        /// Wanted kind.
        want: &'static str,
    },
    /// The VIP is on an interface that ARPs.
    #[error(
        "ARP conflict: VIP {vip} is on {dev}, which answers ARP for it and would steal the \
         director's traffic; remove it (`ip addr del {vip}/<len> dev {dev}`) and run setup again"
    )]
    ArpConflict {
        /// The VIP.
        vip: Ipv4Addr,
        /// Where it is.
        dev: String,
    },
    /// The VIP is on the right device with the wrong prefix.
    #[error("VIP {vip} is on {dev} as /{prefix}: it must be a /32; fix it by hand")]
    VipPrefix {
        /// The VIP.
        vip: Ipv4Addr,
        /// Device.
        dev: String,
        /// Its prefix.
        prefix: u8,
    },
    /// The VIP is on another non-ARP device.
    #[error(
        "VIP {vip} is already on {dev}, not {want}: remove it there first (or pass --dev {dev})"
    )]
    VipElsewhere {
        /// The VIP.
        vip: Ipv4Addr,
        /// Where it is.
        dev: String,
        /// Where setup would put it.
        want: String,
    },
    /// The decapsulator still holds the TUN device.
    #[error(
        "the userspace decapsulator is still attached to {dev} (pids {pids:?}): stop it \
         before undo"
    )]
    DecapRunning {
        /// Device.
        dev: String,
        /// Decap processes found.
        pids: Vec<u32>,
    },
    /// Reading or writing the state file failed.
    #[error("state file {}: {why}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// An external command failed.
    #[error("`{cmd}` failed: {why}")]
    Command {
        /// Command line.
        cmd: String,
        /// Exit status and stderr.
        why: String,
    },
    /// A socket or device operation failed.
    #[error("{what}: {why}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        why: String,
    },
}

#[cfg(test)]
mod tests;
