//! The state file: what `setup` changed and the values it found, so `undo`
//! can put them back. A small line format (one record per line, readable
//! with `cat`), merged across runs so a second `setup` never overwrites the
//! original values with the ones the first run set.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::Error;
use super::plan::{Change, TunnelKind};

/// Default directory of the state file.
pub const DEFAULT_STATE_DIR: &str = "/run/dirctl";
/// File name inside the state directory.
pub const STATE_FILE: &str = "realserver.state";
const HEADER: &str = "# dirctl realserver state v1: what setup changed; read by undo";

/// The state file inside `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// One sysctl setup changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlRecord {
    /// Full key.
    pub key: String,
    /// Value before the first setup that changed it.
    pub before: u32,
    /// Value setup set.
    pub set_to: u32,
}

/// Everything setup changed, over all runs since the last undo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Devices setup created.
    pub links: Vec<(String, TunnelKind)>,
    /// VIPs setup added, with their device.
    pub addrs: Vec<(Ipv4Addr, String)>,
    /// Sysctls setup changed.
    pub sysctls: Vec<SysctlRecord>,
}

impl State {
    /// True when there is nothing to undo.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.addrs.is_empty() && self.sysctls.is_empty()
    }

    /// Records one change made by setup. A sysctl already recorded keeps
    /// its original `before`.
    pub fn record(&mut self, change: &Change) {
        match change {
            Change::CreateLink { name, kind } => {
                if !self.links.iter().any(|(n, _)| n == name) {
                    self.links.push((name.clone(), *kind));
                }
            }
            Change::AddAddr { vip, dev } => {
                if !self.addrs.iter().any(|(v, d)| v == vip && d == dev) {
                    self.addrs.push((*vip, dev.clone()));
                }
            }
            Change::SetSysctl { key, from, to } => {
                match self.sysctls.iter_mut().find(|s| s.key == *key) {
                    Some(s) => s.set_to = *to,
                    None => self.sysctls.push(SysctlRecord {
                        key: key.clone(),
                        before: *from,
                        set_to: *to,
                    }),
                }
            }
            // Bringing our own device up goes away with the device; `lo`
            // down is not a state anyone wants back.
            Change::LinkUp { .. } | Change::DelAddr { .. } | Change::DelLink { .. } => {}
        }
    }

    /// The file form.
    pub fn render(&self) -> String {
        let mut s = format!("{HEADER}\n");
        for (name, kind) in &self.links {
            let _ = writeln!(s, "link {name} {}", kind.as_str());
        }
        for (vip, dev) in &self.addrs {
            let _ = writeln!(s, "addr {vip} {dev}");
        }
        for r in &self.sysctls {
            let _ = writeln!(s, "sysctl {} {} {}", r.key, r.before, r.set_to);
        }
        s
    }

    /// Parses [`State::render`]'s output.
    pub fn parse(text: &str) -> Result<State, String> {
        let mut st = State::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: `{line}`", i + 1);
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["link", name, kind] => {
                    let kind = TunnelKind::parse(kind).ok_or_else(bad)?;
                    st.links.push(((*name).to_owned(), kind));
                }
                ["addr", vip, dev] => {
                    st.addrs
                        .push((vip.parse().map_err(|_| bad())?, (*dev).to_owned()));
                }
                ["sysctl", key, before, set_to] => st.sysctls.push(SysctlRecord {
                    key: (*key).to_owned(),
                    before: before.parse().map_err(|_| bad())?,
                    set_to: set_to.parse().map_err(|_| bad())?,
                }),
                _ => return Err(bad()),
            }
        }
        Ok(st)
    }

    /// Loads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => State::parse(&text).map_err(|why| Error::StateFile {
                path: path.to_owned(),
                why,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::StateFile {
                path: path.to_owned(),
                why: e.to_string(),
            }),
        }
    }

    /// Writes the state file (creating its directory), or removes it when
    /// empty. Written to a temporary name and renamed, so a crash never
    /// leaves half a file.
    pub fn store(&self, path: &Path) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::StateFile {
            path: path.to_owned(),
            why: e.to_string(),
        };
        if self.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_first_before() {
        let mut st = State::default();
        st.record(&Change::CreateLink {
            name: "lvs-tun0".into(),
            kind: TunnelKind::UserspaceTun,
        });
        st.record(&Change::AddAddr {
            vip: Ipv4Addr::new(10, 0, 0, 100),
            dev: "lvs-tun0".into(),
        });
        st.record(&Change::SetSysctl {
            key: "net.ipv4.conf.all.rp_filter".into(),
            from: 1,
            to: 0,
        });
        // A later run that changed it again must not lose the original 1.
        st.record(&Change::SetSysctl {
            key: "net.ipv4.conf.all.rp_filter".into(),
            from: 2,
            to: 0,
        });
        assert_eq!(st.sysctls.len(), 1);
        assert_eq!(st.sysctls[0].before, 1);
        assert_eq!(State::parse(&st.render()).unwrap(), st);
        assert!(State::parse("bogus line").is_err());
    }
}
