//! An nftables `netdev` ingress drop that keeps the director's own IP
//! stack away from the traffic the dataplane forwards.
//!
//! AF_PACKET does not take frames away from the kernel: after the ring has
//! its copy, the IP stack processes the frame too. With forwarding off on
//! the data interfaces ([`super::kernel`]) the kernel drops VIP traffic
//! and NAT replies quietly, but only after a route lookup per packet; and
//! if forwarding were ever on it would forward a second copy or answer
//! with RSTs and ICMP. The netdev ingress hook runs after the packet taps
//! (AF_PACKET has already seen the frame) and before the IP stack, so a
//! drop there costs almost nothing and removes the double processing.
//!
//! ```text
//! table netdev directord_<node> {          one per daemon instance
//!   set vips      { service VIPs }
//!   set nat_rips  { NAT real servers }     (when there are any)
//!   set local     { the director's own addresses on its data interfaces }
//!   chain in_<iface> { type filter hook ingress device "<iface>" ...
//!     ip daddr @vips counter drop                    traffic to the VIPs
//!     ip saddr @nat_rips meta pkttype host
//!        ip daddr != @local counter drop             NAT replies
//!   }
//! }
//! ```
//!
//! Only IPv4 is matched: ARP (which the dataplane's responder answers, and
//! the kernel needs for the director's own addresses), VRRP to 224.0.0.18
//! and anything a real server sends to the director's own address (health
//! checks, the control plane) still reach the kernel.
//!
//! The table is replaced atomically in one `nft -f` transaction (`table`,
//! `delete table`, `table {..}`): at start this also replaces a stale table
//! left by a killed instance of the same name; after a reload the sets
//! follow the services. It is deleted on stop. Without `nft`, or when the
//! kernel refuses the table, the daemon runs on without it and says so.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// What the ingress drop matches, for one daemon instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRules {
    /// The data interfaces.
    pub ifaces: Vec<String>,
    /// Destinations dropped: the service VIPs.
    pub vips: BTreeSet<Ipv4Addr>,
    /// Sources dropped when to an address not in `local`: NAT real servers.
    pub nat_rips: BTreeSet<Ipv4Addr>,
    /// The director's own addresses, never dropped as a destination.
    pub local: BTreeSet<Ipv4Addr>,
}

impl DropRules {
    /// The rules for these interfaces, VIPs and NAT real servers. A VIP
    /// that is also one of the director's own addresses is left out (the
    /// director's own traffic must reach it).
    pub fn new(
        ifaces: Vec<String>,
        vips: impl IntoIterator<Item = Ipv4Addr>,
        nat_rips: impl IntoIterator<Item = Ipv4Addr>,
        local: impl IntoIterator<Item = Ipv4Addr>,
    ) -> DropRules {
        let local: BTreeSet<Ipv4Addr> = local.into_iter().collect();
        DropRules {
            ifaces,
            vips: vips.into_iter().filter(|v| !local.contains(v)).collect(),
            nat_rips: nat_rips.into_iter().collect(),
            local,
        }
    }
}

/// The table name for a node: `directord_` and the node name with every
/// character nft would not take in a bare identifier replaced by `_`.
pub fn table_name(node: &str) -> String {
    let mut name = String::from("directord_");
    name.extend(node.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    // nft limits table names to NFT_NAME_MAXLEN - 1 = 255 bytes.
    name.truncate(255);
    name
}

fn set_elements(set: &BTreeSet<Ipv4Addr>) -> String {
    set.iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn chain_name(iface: &str) -> String {
    let mut name = String::from("in_");
    name.extend(iface.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// The `nft -f` script that replaces table `table` with `rules`.
pub fn script(table: &str, rules: &DropRules) -> String {
    let mut s = String::new();
    // Create it if missing so that the delete cannot fail, then replace it:
    // one transaction, so there is never a moment without the drop.
    let _ = writeln!(s, "table netdev {table}");
    let _ = writeln!(s, "delete table netdev {table}");
    let _ = writeln!(s, "table netdev {table} {{");
    let sets = [
        ("vips", &rules.vips),
        ("nat_rips", &rules.nat_rips),
        ("local", &rules.local),
    ];
    for (name, set) in sets {
        if set.is_empty() {
            let _ = writeln!(s, "    set {name} {{ type ipv4_addr; }}");
        } else {
            let _ = writeln!(
                s,
                "    set {name} {{ type ipv4_addr; elements = {{ {} }} }}",
                set_elements(set)
            );
        }
    }
    for iface in &rules.ifaces {
        let _ = writeln!(s, "    chain {} {{", chain_name(iface));
        // Interface names never hold a double quote (the kernel refuses
        // them); they may hold characters a bare word cannot.
        let _ = writeln!(
            s,
            "        type filter hook ingress device \"{iface}\" priority 0; policy accept;"
        );
        if !rules.vips.is_empty() {
            let _ = writeln!(s, "        ip daddr @vips counter drop");
        }
        if !rules.nat_rips.is_empty() {
            let _ = writeln!(
                s,
                "        ip saddr @nat_rips meta pkttype host ip daddr != @local counter drop"
            );
        }
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "}}");
    s
}

/// Runs `nft -f -` with `input`; the error says why it failed.
fn nft(input: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "nft not found (install the nftables package)".to_string()
            } else {
                format!("nft: {e}")
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("nft: writing the ruleset: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The installed ingress drop of one daemon instance; deleted on drop.
#[derive(Debug)]
pub struct IngressDrop {
    table: String,
    installed: Option<DropRules>,
}

impl IngressDrop {
    /// Nothing installed yet, for node `node`.
    pub fn new(node: &str) -> IngressDrop {
        IngressDrop {
            table: table_name(node),
            installed: None,
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether the table is in place.
    pub fn is_installed(&self) -> bool {
        self.installed.is_some()
    }

    /// Installs or replaces the table with `rules`; does nothing when they
    /// are what is installed. On failure nothing of ours is left in place
    /// (nft transactions are atomic) and the error says why.
    pub fn apply(&mut self, rules: &DropRules) -> Result<(), String> {
        if self.installed.as_ref() == Some(rules) {
            return Ok(());
        }
        match nft(&script(&self.table, rules)) {
            Ok(()) => {
                self.installed = Some(rules.clone());
                Ok(())
            }
            Err(e) => {
                // A failed replace leaves the old table; never keep one
                // that no longer matches the services.
                if self.installed.take().is_some() {
                    let _ = self.remove_table();
                }
                Err(e)
            }
        }
    }

    fn remove_table(&self) -> Result<(), String> {
        // `table` first: deleting a table that is gone would fail.
        nft(&format!(
            "table netdev {t}\ndelete table netdev {t}\n",
            t = self.table
        ))
    }

    /// Deletes the table, if installed.
    pub fn remove(&mut self) -> Result<(), String> {
        if self.installed.take().is_some() {
            self.remove_table()
        } else {
            Ok(())
        }
    }
}

impl Drop for IngressDrop {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("kernel: removing nftables table {}: {e}", self.table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn table_names_are_bare_nft_identifiers() {
        assert_eq!(table_name("director-a"), "directord_director_a");
        assert_eq!(table_name("x.y z"), "directord_x_y_z");
        assert!(table_name(&"n".repeat(400)).len() <= 255);
    }

    #[test]
    fn the_script_replaces_the_table_and_drops_only_ipv4_to_vips_and_nat_replies() {
        let rules = DropRules::new(
            vec!["eth0".into(), "eth1".into()],
            [ip("10.23.0.100"), ip("10.23.0.2")],
            [ip("10.33.0.11"), ip("10.33.0.12")],
            [ip("10.23.0.2"), ip("10.33.0.2")],
        );
        assert!(
            !rules.vips.contains(&ip("10.23.0.2")),
            "an own address is never dropped as a VIP"
        );
        let s = script("directord_n", &rules);
        let want = "\
table netdev directord_n
delete table netdev directord_n
table netdev directord_n {
    set vips { type ipv4_addr; elements = { 10.23.0.100 } }
    set nat_rips { type ipv4_addr; elements = { 10.33.0.11, 10.33.0.12 } }
    set local { type ipv4_addr; elements = { 10.23.0.2, 10.33.0.2 } }
    chain in_eth0 {
        type filter hook ingress device \"eth0\" priority 0; policy accept;
        ip daddr @vips counter drop
        ip saddr @nat_rips meta pkttype host ip daddr != @local counter drop
    }
    chain in_eth1 {
        type filter hook ingress device \"eth1\" priority 0; policy accept;
        ip daddr @vips counter drop
        ip saddr @nat_rips meta pkttype host ip daddr != @local counter drop
    }
}
";
        assert_eq!(s, want);
    }

    #[test]
    fn without_nat_there_is_no_reply_rule() {
        let rules = DropRules::new(
            vec!["eth0".into()],
            [ip("10.21.0.100")],
            [],
            [ip("10.21.0.2")],
        );
        let s = script("t", &rules);
        assert!(s.contains("set nat_rips { type ipv4_addr; }"), "{s}");
        assert!(!s.contains("@nat_rips"), "{s}");
        assert!(s.contains("ip daddr @vips counter drop"), "{s}");
    }
}
