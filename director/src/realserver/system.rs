//! The system-changing side, behind [`System`]: reading the host's state and
//! making one [`Change`]. The live implementation runs `ip` and `sysctl`
//! and prints every command before running it; tests use an in-memory one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use super::Error;
use super::check::RouteTo;
use super::model::{CONF_NAMES, Observed, conf_key, parse_addrs, parse_links};
use super::plan::{Change, TunnelKind};

/// Reads and changes the host.
pub trait System {
    /// The current state.
    fn observe(&mut self) -> Result<Observed, Error>;
    /// How the host reaches `addr` (`ip route get`), `None` if unreachable.
    fn route_to(&mut self, addr: Ipv4Addr) -> Result<Option<RouteTo>, Error>;
    /// Makes one change.
    fn apply(&mut self, change: &Change) -> Result<(), Error>;
}

/// The real host: `ip`, `sysctl`, /proc. Commands that change something
/// are printed to `out` (`+ ip addr add ...`) before they run; read-only
/// queries (`$ ip -o link show`) too when verbose.
#[derive(Debug)]
pub struct LiveSystem<W: Write> {
    out: W,
    verbose: bool,
}

impl<W: Write> LiveSystem<W> {
    /// A live system printing its commands to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            verbose: false,
        }
    }

    /// Also print the read-only commands.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    fn query(&mut self, argv: &[&str]) -> Result<String, Error> {
        if self.verbose {
            let _ = writeln!(self.out, "  $ {}", argv.join(" "));
        }
        run(argv)
    }

    fn run_printed(&mut self, argv: &[&str]) -> Result<(), Error> {
        let _ = writeln!(self.out, "  + {}", argv.join(" "));
        let _ = self.out.flush();
        run(argv).map(drop)
    }
}

/// Runs a command, returning stdout; a non-zero exit is an error quoting
/// stderr.
pub fn run(argv: &[&str]) -> Result<String, Error> {
    let (prog, args) = argv.split_first().expect("non-empty argv");
    let cmdline = argv.join(" ");
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            cmd: cmdline.clone(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: cmdline,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `sysctl -w` argument for `key=value`. Device names may contain dots
/// (VLANs: `eth0.100`), which the dotted form cannot express; the slash form
/// can.
fn sysctl_arg(key: &str, value: u32) -> String {
    let parts: Vec<&str> = key.splitn(4, '.').collect();
    match parts.as_slice() {
        ["net", "ipv4", "conf", rest] if rest.matches('.').count() > 1 => {
            let (dev, name) = rest.rsplit_once('.').unwrap_or((rest, ""));
            format!("net/ipv4/conf/{dev}/{name}={value}")
        }
        _ => format!("{key}={value}"),
    }
}

fn read_sysctls(obs: &mut Observed) {
    let base = Path::new("/proc/sys/net/ipv4/conf");
    let Ok(dir) = std::fs::read_dir(base) else {
        return;
    };
    for entry in dir.flatten() {
        let dev = entry.file_name().to_string_lossy().into_owned();
        for name in CONF_NAMES {
            if let Some(v) = std::fs::read_to_string(entry.path().join(name))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                obs.sysctls.insert(conf_key(&dev, name), v);
            }
        }
    }
}

/// Whether the kernel can make ipip devices: already has one, has the
/// module loaded or built in (/sys/module/ipip), or can load it
/// (modules.dep / modules.builtin list it).
fn ipip_available(obs: &Observed) -> bool {
    if obs
        .links
        .iter()
        .any(|l| l.kind == super::model::LinkKind::Ipip)
        || Path::new("/sys/module/ipip").exists()
    {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release.trim());
    ["modules.dep", "modules.builtin"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f))
            .is_ok_and(|t| t.lines().any(|l| l.contains("/ipip.ko")))
    })
}

/// Pids of `dirctl realserver decap` processes in our network namespace.
pub fn decap_pids() -> Vec<u32> {
    let Ok(own_ns) = std::fs::read_link("/proc/self/ns/net") else {
        return Vec::new();
    };
    let self_pid = std::process::id();
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == self_pid {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_decap = args.iter().any(|a| a.ends_with(b"dirctl"))
            && args
                .windows(2)
                .any(|w| w == [&b"realserver"[..], &b"decap"[..]]);
        // All namespaces share the pid space: only count ours.
        if is_decap && std::fs::read_link(entry.path().join("ns/net")).is_ok_and(|n| n == own_ns) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

impl<W: Write> System for LiveSystem<W> {
    fn observe(&mut self) -> Result<Observed, Error> {
        if self.verbose {
            let _ = writeln!(
                self.out,
                "  $ read /proc/sys/net/ipv4/conf/*/{{{}}}",
                CONF_NAMES.join(",")
            );
        }
        let mut obs = Observed {
            links: parse_links(&self.query(&["ip", "-o", "-d", "link", "show"])?),
            addrs: parse_addrs(&self.query(&["ip", "-o", "-4", "addr", "show"])?),
            default_route: !self
                .query(&["ip", "-4", "route", "show", "default"])?
                .trim()
                .is_empty(),
            decap_pids: decap_pids(),
            ..Observed::default()
        };
        read_sysctls(&mut obs);
        obs.ipip_available = ipip_available(&obs);
        Ok(obs)
    }

    fn route_to(&mut self, addr: Ipv4Addr) -> Result<Option<RouteTo>, Error> {
        let Ok(text) = self.query(&["ip", "-4", "route", "get", &addr.to_string()]) else {
            return Ok(None);
        };
        // "10.1.0.1 dev eth0 src 10.1.0.21 uid 0" / "... via 10.1.0.1 dev eth0 ..."
        let t: Vec<&str> = text.split_whitespace().collect();
        let after = |k: &str| t.iter().position(|x| *x == k).and_then(|i| t.get(i + 1));
        Ok(after("dev").map(|dev| RouteTo {
            dev: (*dev).to_owned(),
            via: after("via").and_then(|v| v.parse().ok()),
        }))
    }

    fn apply(&mut self, change: &Change) -> Result<(), Error> {
        let _ = writeln!(self.out, "change: {change}");
        match change {
            Change::CreateLink { name, kind } => match kind {
                TunnelKind::KernelIpip => {
                    let r = self.run_printed(&["ip", "link", "add", "name", name, "type", "ipip"]);
                    // Loading the ipip module (on demand, by this very
                    // command) creates the fallback `tunl0` in every
                    // namespace, after which the add itself fails with
                    // "File exists": the device is there all the same.
                    match r {
                        Err(_) if self.observe()?.link(name).is_some() => Ok(()),
                        r => r,
                    }
                }
                TunnelKind::UserspaceTun => {
                    self.run_printed(&["ip", "tuntap", "add", "dev", name, "mode", "tun"])
                }
            },
            Change::LinkUp { name } => self.run_printed(&["ip", "link", "set", "dev", name, "up"]),
            Change::AddAddr { vip, dev } => {
                let cidr = format!("{vip}/32");
                // The label marks the address as the helper's in `ip addr`;
                // labels are limited to the 15 characters of a name.
                let label = format!("{dev}:vip");
                if label.len() <= 15 {
                    self.run_printed(&["ip", "addr", "add", &cidr, "dev", dev, "label", &label])
                } else {
                    self.run_printed(&["ip", "addr", "add", &cidr, "dev", dev])
                }
            }
            Change::DelAddr { vip, dev } => {
                self.run_printed(&["ip", "addr", "del", &format!("{vip}/32"), "dev", dev])
            }
            Change::SetSysctl { key, to, .. } => {
                self.run_printed(&["sysctl", "-q", "-w", &sysctl_arg(key, *to)])
            }
            Change::DelLink { name, kind } => match kind {
                TunnelKind::KernelIpip => self.run_printed(&["ip", "link", "del", "dev", name]),
                TunnelKind::UserspaceTun => {
                    self.run_printed(&["ip", "tuntap", "del", "dev", name, "mode", "tun"])
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_argument_handles_dotted_device_names() {
        assert_eq!(
            sysctl_arg("net.ipv4.conf.all.arp_ignore", 1),
            "net.ipv4.conf.all.arp_ignore=1"
        );
        assert_eq!(
            sysctl_arg("net.ipv4.conf.eth0.100.rp_filter", 0),
            "net/ipv4/conf/eth0.100/rp_filter=0"
        );
    }
}
