//! Memory per connection entry, indexes included: insert 10^5 flows and
//! divide the table's heap bytes by the entry count (target ≤ 200 bytes).
//! Also prints the process RSS growth as a cross-check (Linux only). A
//! counting global allocator would need `unsafe`, which this crate forbids,
//! so the table accounts its own allocations instead (`heap_bytes`).

mod conn_util;

use std::net::{Ipv4Addr, SocketAddr};

use conn_util::*;
use director::conn::{ConnTable, Packet, TableConfig, TcpFlags};
use director::{ForwardMethod, Millis, Protocol};

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn fill(method: ForwardMethod, n: usize) -> (f64, Option<f64>) {
    let ds = dests(4, method);
    let svc = service(Protocol::Tcp, ds, None);
    let rss0 = rss_bytes();
    let t = ConnTable::new(TableConfig {
        max_entries: n,
        ..TableConfig::default()
    });
    for i in 0..n {
        let ip = Ipv4Addr::from(0x0a00_0000 + (i as u32 >> 8));
        let client = SocketAddr::new(ip.into(), 1024 + (i as u16 & 0xff));
        let pkt = Packet::tcp(client, sa(VIP), TcpFlags::SYN);
        t.process_in(&svc, &pkt, Millis(0), 0, &mut |_| {}).unwrap();
    }
    assert_eq!(t.conn_count(), n);
    let per_entry = t.heap_bytes() as f64 / n as f64;
    let rss = match (rss0, rss_bytes()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / n as f64),
        _ => None,
    };
    (per_entry, rss)
}

#[test]
fn bytes_per_entry_within_target() {
    for method in [ForwardMethod::DirectRouting, ForwardMethod::Masquerade] {
        let (bytes, rss) = fill(method, 100_000);
        println!(
            "{method}: {bytes:.1} heap bytes/entry (indexes included); RSS growth {} bytes/entry",
            rss.map_or("n/a".to_string(), |r| format!("{r:.1}"))
        );
        assert!(
            bytes <= 200.0,
            "{method}: {bytes:.1} bytes per entry exceeds the 200-byte target"
        );
    }
}
