//! Keeps the director's own kernel out of the way of the dataplane.
//!
//! The dataplane reads frames on AF_PACKET, which does not take them away
//! from the kernel: the IP stack sees every frame too. The VIPs are never
//! configured on the director's interfaces (the dataplane answers ARP for
//! them), so the kernel treats VIP traffic and NAT replies as traffic to
//! forward. With forwarding off on the data interfaces it drops them
//! quietly — no second copy forwarded, no ICMP, no RST racing ours.
//! Receive offloads are turned off too, unless `[dataplane] offloads`:
//! GRO hands AF_PACKET merged frames far larger than the MTU, which only a
//! dataplane reading virtio-net headers can forward (see `io::VnetHdr`).

use std::process::Command;

/// One change made to the kernel's settings, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What was changed.
    pub what: String,
    /// Value before.
    pub before: String,
    /// Value after.
    pub after: String,
}

fn sysctl_path(iface: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{iface}/{key}")
}

/// Turn IPv4 forwarding off on `iface`; returns the change if one was made.
pub fn forwarding_off(iface: &str) -> std::io::Result<Option<Change>> {
    let path = sysctl_path(iface, "forwarding");
    let before = std::fs::read_to_string(&path)?.trim().to_string();
    if before == "0" {
        return Ok(None);
    }
    std::fs::write(&path, "0")?;
    Ok(Some(Change {
        what: format!("net.ipv4.conf.{iface}.forwarding"),
        before,
        after: "0".into(),
    }))
}

/// Turn off the receive and transmit offloads that would hand AF_PACKET
/// merged frames or partial checksums (gro, lro, tso, gso, tx checksum),
/// with ethtool. Returns what ethtool reported changed; a missing ethtool
/// or an unsupported feature is reported, not fatal.
pub fn offloads_off(iface: &str) -> Result<Vec<Change>, String> {
    let features = ["gro", "lro", "tso", "gso", "tx"];
    let before = features_on(iface)?;
    let mut args = vec!["-K".to_string(), iface.to_string()];
    for f in features {
        args.push(f.into());
        args.push("off".into());
    }
    // ethtool exits non-zero when one feature cannot be changed (lro on
    // veth): what matters is the state afterwards.
    let _ = Command::new("ethtool").args(&args).output();
    let after = features_on(iface)?;
    Ok(before
        .into_iter()
        .filter(|f| !after.contains(f))
        .map(|f| Change {
            what: format!("{iface} offload {f}"),
            before: "on".into(),
            after: "off".into(),
        })
        .collect())
}

/// The offload features ethtool reports on, by their long names.
fn features_on(iface: &str) -> Result<Vec<String>, String> {
    let out = Command::new("ethtool")
        .args(["-k", iface])
        .output()
        .map_err(|e| format!("ethtool -k {iface}: {e} (install ethtool)"))?;
    if !out.status.success() {
        return Err(format!(
            "ethtool -k {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let wanted = [
        "generic-receive-offload",
        "large-receive-offload",
        "tcp-segmentation-offload",
        "generic-segmentation-offload",
        "tx-checksumming",
    ];
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, v)| wanted.contains(&k.trim()) && v.trim().starts_with("on"))
        .map(|(k, _)| k.trim().to_string())
        .collect())
}
