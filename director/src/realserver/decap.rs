//! Userspace IPIP decapsulation for kernels without the ipip module.
//!
//! A raw IPv4 socket for protocol 4 receives every IPIP packet addressed to
//! this host, outer header included. Each is validated, its outer header is
//! stripped, and the inner packet (client → VIP) is written into a TUN
//! device holding the VIP, where the kernel receives it as if it had come
//! in on that device: the web server sees the client's own packet and
//! answers the client directly, as LVS-TUN intends.
//!
//! The open raw socket also keeps the kernel from answering IPIP with ICMP
//! protocol unreachable: Linux sends that only when no handler and no raw
//! socket took the packet.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::Error;
use super::model::parse_addrs;
use super::system::run;

/// IP protocol number of IPv4-in-IPv4.
pub const IPPROTO_IPIP: u8 = 4;
const IPV4_MIN_HEADER: usize = 20;
/// How long a blocking read waits before the loop looks at the stop flag
/// and the stats clock again.
const POLL: Duration = Duration::from_millis(100);
/// Re-reading the device's VIPs after an unknown inner destination happens
/// at most this often, so a flood of strays cannot turn into a flood of
/// `ip` runs.
const VIP_REFRESH_MIN: Duration = Duration::from_secs(1);

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an IPv4 header.
    OuterTooShort,
    /// Outer version is not 4.
    OuterNotIpv4,
    /// Outer IHL below 5 or past the end.
    OuterBadHeader,
    /// Outer protocol is not 4 (cannot happen on a proto-4 raw socket;
    /// checked so the validator stands alone).
    NotIpip,
    /// Outer total length shorter than its header or longer than received.
    OuterBadLength,
    /// Inner packet shorter than an IPv4 header.
    InnerTooShort,
    /// Inner version is not 4 (IPv6-in-IPv4 is protocol 41, not 4).
    InnerNotIpv4,
    /// Inner IHL below 5 or past the end.
    InnerBadHeader,
    /// Inner total length shorter than its own header.
    InnerBadLength,
    /// Inner total length says more bytes than the outer packet carries.
    InnerTruncated,
    /// Inner header checksum wrong.
    InnerBadChecksum,
    /// Inner destination is not a VIP of this host: the decapsulator is no
    /// open relay.
    InnerDstNotVip,
    /// The TUN device refused the write.
    TunWriteFailed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 13] = [
        DropReason::OuterTooShort,
        DropReason::OuterNotIpv4,
        DropReason::OuterBadHeader,
        DropReason::NotIpip,
        DropReason::OuterBadLength,
        DropReason::InnerTooShort,
        DropReason::InnerNotIpv4,
        DropReason::InnerBadHeader,
        DropReason::InnerBadLength,
        DropReason::InnerTruncated,
        DropReason::InnerBadChecksum,
        DropReason::InnerDstNotVip,
        DropReason::TunWriteFailed,
    ];

    /// Counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OuterTooShort => "outer_too_short",
            DropReason::OuterNotIpv4 => "outer_not_ipv4",
            DropReason::OuterBadHeader => "outer_bad_header",
            DropReason::NotIpip => "not_ipip",
            DropReason::OuterBadLength => "outer_bad_length",
            DropReason::InnerTooShort => "inner_too_short",
            DropReason::InnerNotIpv4 => "inner_not_ipv4",
            DropReason::InnerBadHeader => "inner_bad_header",
            DropReason::InnerBadLength => "inner_bad_length",
            DropReason::InnerTruncated => "inner_truncated",
            DropReason::InnerBadChecksum => "inner_bad_checksum",
            DropReason::InnerDstNotVip => "inner_dst_not_vip",
            DropReason::TunWriteFailed => "tun_write_failed",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Packet counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// IPIP packets read from the raw socket.
    pub received: u64,
    /// Inner packets written into the TUN device.
    pub decapsulated: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Total drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Drops for one reason.
    pub fn dropped_for(&self, r: DropReason) -> u64 {
        self.dropped[r.index()]
    }

    fn drop_one(&mut self, r: DropReason) {
        self.dropped[r.index()] += 1;
    }
}

impl fmt::Display for Counters {
    /// `received=N decapsulated=N dropped=N` and then every reason
    /// `name=N`: one line of key=value pairs for logs and scripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} decapsulated={} dropped={}",
            self.received,
            self.decapsulated,
            self.dropped_total()
        )?;
        for r in DropReason::ALL {
            write!(f, " {}={}", r.as_str(), self.dropped_for(r))?;
        }
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Whether an IPv4 header's checksum is right (the ones'-complement sum of
/// the header including the checksum field is all ones).
pub fn header_checksum_ok(hdr: &[u8]) -> bool {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Validates one IPIP packet as the raw socket hands it over (outer header
/// first); returns the inner packet's range and its destination.
pub fn validate(pkt: &[u8]) -> Result<(Range<usize>, Ipv4Addr), DropReason> {
    if pkt.len() < IPV4_MIN_HEADER {
        return Err(DropReason::OuterTooShort);
    }
    if pkt[0] >> 4 != 4 {
        return Err(DropReason::OuterNotIpv4);
    }
    let ohl = usize::from(pkt[0] & 0x0f) * 4;
    if ohl < IPV4_MIN_HEADER || ohl > pkt.len() {
        return Err(DropReason::OuterBadHeader);
    }
    if pkt[9] != IPPROTO_IPIP {
        return Err(DropReason::NotIpip);
    }
    let otot = be16(pkt, 2);
    if otot < ohl || otot > pkt.len() {
        return Err(DropReason::OuterBadLength);
    }
    let inner = &pkt[ohl..otot];
    if inner.len() < IPV4_MIN_HEADER {
        return Err(DropReason::InnerTooShort);
    }
    if inner[0] >> 4 != 4 {
        return Err(DropReason::InnerNotIpv4);
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER || ihl > inner.len() {
        return Err(DropReason::InnerBadHeader);
    }
    let itot = be16(inner, 2);
    if itot < ihl {
        return Err(DropReason::InnerBadLength);
    }
    if itot > inner.len() {
        return Err(DropReason::InnerTruncated);
    }
    if !header_checksum_ok(&inner[..ihl]) {
        return Err(DropReason::InnerBadChecksum);
    }
    let dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    // Bytes past the inner total length (padding) are not part of it.
    Ok((ohl..ohl + itot, dst))
}

/// Options of the decapsulation loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecapOptions {
    /// The TUN device to write into (made by `setup`).
    pub dev: String,
    /// Accepted inner destinations; empty: the device's own addresses.
    pub vips: Vec<Ipv4Addr>,
    /// Print the counters this often.
    pub stats_interval: Option<Duration>,
}

/// A flag set by SIGINT or SIGTERM, from a small signal-watching thread.
/// The handlers are installed before this returns, so a signal that comes
/// at once is not lost (nor kills the process with the counters unprinted).
pub fn stop_flag_on_signals() -> Result<Arc<AtomicBool>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |e: std::io::Error| Error::Io {
        what: "installing signal handlers".into(),
        why: e.to_string(),
    };
    let flag = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let (mut int, mut term) = {
        let _guard = rt.enter();
        (
            signal(SignalKind::interrupt()).map_err(io)?,
            signal(SignalKind::terminate()).map_err(io)?,
        )
    };
    let f = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            f.store(true, Ordering::SeqCst);
        })
        .map_err(io)?;
    Ok(flag)
}

/// The decapsulator is a driver, not part of the dataplane core that the
/// clock rule protects: its stats interval and the VIP-refresh rate limit
/// are wall-clock matters, so it owns a clock, read only here.
#[allow(clippy::disallowed_methods)]
fn monotonic_now() -> Instant {
    Instant::now()
}

fn device_vips(dev: &str) -> Result<Vec<Ipv4Addr>, Error> {
    let text = run(&["ip", "-o", "-4", "addr", "show", "dev", dev])?;
    Ok(parse_addrs(&text).into_iter().map(|a| a.addr).collect())
}

/// Runs the loop until `stop` is set; returns the final counters. Prints a
/// start line, periodic `decap stats:` lines and a `decap final:` line.
pub fn run_decap(
    opts: &DecapOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<Counters, Error> {
    let io = |what: String| {
        move |e: std::io::Error| Error::Io {
            what,
            why: e.to_string(),
        }
    };
    let tun = tun_rs::DeviceBuilder::new()
        .name(&opts.dev)
        .build_sync()
        .map_err(io(format!(
            "attaching to TUN device {} (made by `dirctl realserver setup --mode tun`)",
            opts.dev
        )))?;
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_IPIP))),
    )
    .map_err(io("opening a raw IPIP socket".into()))?;
    sock.set_read_timeout(Some(POLL))
        .map_err(io("setting the read timeout".into()))?;
    // Room for bursts while the loop writes into the TUN device.
    let _ = sock.set_recv_buffer_size(4 << 20);

    let fixed_vips = !opts.vips.is_empty();
    let mut vips = if fixed_vips {
        opts.vips.clone()
    } else {
        device_vips(&opts.dev)?
    };
    let mut last_refresh = monotonic_now();
    let _ = writeln!(
        out,
        "decap: running: IPIP (protocol 4) to this host → {} for {}; stop with SIGINT/SIGTERM",
        opts.dev,
        if vips.is_empty() {
            "no VIP yet".to_owned()
        } else {
            vips.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = out.flush();

    let mut c = Counters::default();
    let mut buf = vec![0u8; 65536];
    let mut last_stats = monotonic_now();
    while !stop.load(Ordering::SeqCst) {
        if let Some(every) = opts.stats_interval
            && last_stats.elapsed() >= every
        {
            let _ = writeln!(out, "decap stats: {c}");
            let _ = out.flush();
            last_stats = monotonic_now();
        }
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io("reading the raw IPIP socket".into())(e)),
        };
        c.received += 1;
        let (range, dst) = match validate(&buf[..n]) {
            Ok(v) => v,
            Err(r) => {
                c.drop_one(r);
                continue;
            }
        };
        if !vips.contains(&dst) {
            // A VIP added since start: look again, rate-limited.
            if !fixed_vips && last_refresh.elapsed() >= VIP_REFRESH_MIN {
                last_refresh = monotonic_now();
                if let Ok(v) = device_vips(&opts.dev) {
                    vips = v;
                }
            }
            if !vips.contains(&dst) {
                c.drop_one(DropReason::InnerDstNotVip);
                continue;
            }
        }
        match tun.send(&buf[range]) {
            Ok(_) => c.decapsulated += 1,
            Err(_) => c.drop_one(DropReason::TunWriteFailed),
        }
    }
    let _ = writeln!(out, "decap final: {c}");
    let _ = out.flush();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal IPv4 header + payload with a correct checksum.
    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let tot = 20 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            0,
            1,
            0x40,
            0,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let mut sum: u32 = p
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let ck = !(sum as u16);
        p[10..12].copy_from_slice(&ck.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    const VIP: [u8; 4] = [10, 0, 0, 100];

    fn inner() -> Vec<u8> {
        ipv4(6, [10, 0, 0, 10], VIP, &[0u8; 20])
    }

    fn outer(inner: &[u8]) -> Vec<u8> {
        ipv4(IPPROTO_IPIP, [10, 0, 0, 2], [10, 0, 0, 21], inner)
    }

    #[test]
    fn a_good_packet_yields_its_inner_packet() {
        let i = inner();
        let o = outer(&i);
        let (range, dst) = validate(&o).unwrap();
        assert_eq!(&o[range], &i[..]);
        assert_eq!(dst, Ipv4Addr::from(VIP));
    }

    #[test]
    fn malformed_packets_are_dropped_with_their_reason() {
        assert_eq!(validate(&[0x45; 10]), Err(DropReason::OuterTooShort));
        let mut o = outer(&inner());
        o[9] = 17;
        assert_eq!(validate(&o), Err(DropReason::NotIpip));

        let mut i = inner();
        i[0] = 0x65;
        assert_eq!(validate(&outer(&i)), Err(DropReason::InnerNotIpv4));

        let i = inner();
        assert_eq!(validate(&outer(&i[..30])), Err(DropReason::InnerTruncated));
        assert_eq!(validate(&outer(&i[..12])), Err(DropReason::InnerTooShort));

        let mut i = inner();
        i[0] = 0x44;
        assert_eq!(validate(&outer(&i)), Err(DropReason::InnerBadHeader));

        let mut i = inner();
        i[8] = 1; // TTL changed without fixing the checksum
        assert_eq!(validate(&outer(&i)), Err(DropReason::InnerBadChecksum));

        // Outer total length beyond what was received.
        let mut o = outer(&inner());
        o.truncate(o.len() - 4);
        assert_eq!(validate(&o), Err(DropReason::OuterBadLength));
    }

    #[test]
    fn trailing_bytes_after_the_inner_packet_are_not_passed_on() {
        let i = inner();
        let mut padded = i.clone();
        padded.extend_from_slice(&[0xee; 6]);
        let o = outer(&padded);
        let (range, _) = validate(&o).unwrap();
        assert_eq!(&o[range], &i[..]);
    }

    #[test]
    fn counters_print_every_reason() {
        let mut c = Counters {
            received: 3,
            decapsulated: 1,
            ..Counters::default()
        };
        c.drop_one(DropReason::InnerTruncated);
        c.drop_one(DropReason::InnerNotIpv4);
        let s = c.to_string();
        assert!(s.starts_with("received=3 decapsulated=1 dropped=2 "), "{s}");
        assert!(
            s.contains("inner_truncated=1") && s.contains("inner_not_ipv4=1"),
            "{s}"
        );
        assert!(s.contains("tun_write_failed=0"), "{s}");
    }
}
