//! Packet capture inside a lab host (tcpdump writing a pcap file), e.g. to
//! see gratuitous ARP or VRRP adverts on the wire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cmd;
use crate::lab::{Host, Lab};
use crate::process::LabChild;

/// Pause before stopping a capture, so in-flight packets are written.
const SETTLE: Duration = Duration::from_millis(100);

/// A running capture; stopped on drop. The pcap file stays in the lab dir
/// until the lab is dropped.
#[derive(Debug)]
pub struct Capture {
    child: LabChild,
    file: PathBuf,
}

impl Capture {
    /// The pcap file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Stops capturing (SIGINT, so tcpdump closes the file cleanly).
    pub fn stop(&mut self) {
        if self.child.is_running() {
            // tcpdump drops whatever it has not yet read from its ring when
            // interrupted; a short pause lets it drain packets just sent.
            std::thread::sleep(SETTLE);
        }
        self.child.stop_gracefully(Duration::from_secs(2));
    }

    /// Stops the capture and decodes it: one line per packet, with link
    /// headers (`tcpdump -r FILE -nn -e`). Reads only the file.
    pub fn decode(&mut self) -> Result<String> {
        self.stop();
        let file = self.file.to_string_lossy();
        cmd::run_ok(
            &["tcpdump", "-r", &file, "-nn", "-e"],
            Duration::from_secs(30),
        )
    }
}

impl Lab {
    /// Starts `tcpdump -i IFACE -w FILE FILTER` in `host` and returns once
    /// it is capturing (bounded wait). `filter` is a pcap filter such as
    /// `"arp"` or `"tcp port 80"`; empty captures everything.
    pub fn capture(&self, host: &Host, iface: &str, filter: &str) -> Result<Capture> {
        let file = self.unique_path(&format!("capture-{}-{iface}", host.name()), ".pcap");
        let file_s = file.to_string_lossy();
        // --immediate-mode: hand each packet over at once; otherwise
        // libpcap's TPACKET_V3 ring holds packets for up to a second and
        // stopping loses them ("10 received by filter, 0 captured").
        // -U: write each packet as it arrives, so a killed tcpdump still
        // leaves a readable file. -Z root: no privilege drop, which would
        // leave tcpdump unable to write into the root-owned lab dir.
        let mut argv = vec![
            "tcpdump",
            "--immediate-mode",
            "-i",
            iface,
            "-nn",
            "-U",
            "-Z",
            "root",
            "-w",
            &file_s,
        ];
        if !filter.is_empty() {
            argv.push(filter);
        }
        let mut child = self.spawn(host, &argv)?;
        let what = format!("tcpdump on {iface} in `{}`", host.name());
        let ready = cmd::wait_until(
            &what,
            Duration::from_secs(5),
            Duration::from_millis(20),
            || {
                if child.try_wait()?.is_some() {
                    bail!("tcpdump exited: {}", child.stderr_text().trim());
                }
                Ok(child.stderr_text().contains("listening on"))
            },
        );
        ready?;
        Ok(Capture { child, file })
    }
}
