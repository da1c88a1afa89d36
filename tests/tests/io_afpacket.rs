//! The AF_PACKET I/O layer (`director::io`) against a real kernel, in lab
//! namespaces: the RX ring (TPACKET_V2 and V3) delivers exactly what the
//! BPF filter keeps, byte for byte; a small V2 ring wraps many times,
//! truncates what does not fit a slot and bounds its batches; sendmmsg transmits whole, prefix + body (TUN) and copied
//! frames intact; a fanout group keeps a flow on one socket and spreads
//! many flows; a DR forwarding loop (classify + MAC rewrite + send) gets
//! kernel UDP from a client to a DR real server; an idle receiver sleeps.
//! Last, a bounded forwarding benchmark against the kernel's own IP
//! forwarding (scale it with `IO_BENCH_PACKETS`).
//!
//! Sockets are opened inside the lab's namespaces by short-lived threads
//! (`director::io::run_in_netns`); the test process itself stays in the
//! root namespace, and every frame stays inside the lab.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use director::forward::{self, MacAddr, MacPair, TunParams, Verdict};
use director::io::{
    AfPacket, Fanout, FanoutMode, Filter, FrameMeta, IoError, RingVersion, RxConfig, TxConfig,
    TxQueue, if_info, netns_path, run_in_netns,
};
use lab_tests::{Host, Iface, Lab, UdpAsk};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 31, 0, 100);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 31, 0, 99);

// ---------------------------------------------------------------- helpers

/// Runs `f` inside `host`'s network namespace (on a helper thread).
fn in_ns<T: Send>(host: &Host, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(run_in_netns(&netns_path(host.ns()), f)?)
}

fn rx_on(host: &Host, iface: &str, cfg: RxConfig) -> Result<AfPacket> {
    let iface = iface.to_owned();
    Ok(in_ns(host, move || AfPacket::open(&iface, &cfg))??)
}

fn tx_on(host: &Host, iface: &str, cfg: TxConfig) -> Result<TxQueue> {
    let iface = iface.to_owned();
    Ok(in_ns(host, move || TxQueue::open(&iface, &cfg))??)
}

fn mac_of(iface: &Iface) -> MacAddr {
    iface.mac().parse().expect("lab MAC")
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for pair in c.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with correct checksums.
fn udp_frame(
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let (src_mac, dst_mac) = macs;
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let c = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// An ARP who-has `target` from `src`, padded to 60 bytes with `marker`.
fn arp_request(src_mac: MacAddr, src: Ipv4Addr, target: Ipv4Addr, marker: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, marker);
    f
}

/// Inserts an 802.1Q tag after the MAC addresses.
fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

type Got = Vec<(Vec<u8>, FrameMeta)>;

/// Receives until `done(&got)` or `limit`, then `linger` more to catch
/// anything that should not have come.
fn collect(
    rx: &mut AfPacket,
    limit: Duration,
    linger: Duration,
    done: impl Fn(&Got) -> bool,
) -> Result<Got> {
    let start = Instant::now();
    let mut got = Got::new();
    let mut until = start + limit;
    let mut lingering = false;
    while Instant::now() < until {
        if let Some(mut block) = rx.recv(Duration::from_millis(10))? {
            for f in block.frames() {
                got.push((f.data.to_vec(), f.meta));
            }
        }
        if !lingering && done(&got) {
            lingering = true;
            until = Instant::now() + linger;
        }
    }
    Ok(got)
}

fn send_all(tx: &mut TxQueue, frames: &[Vec<u8>]) {
    let mut batch = tx.batch();
    for f in frames {
        batch.push(f);
    }
}

/// One segment with a client (.10) and a director (.2).
struct Pair {
    lab: Lab,
    client: Host,
    director: Host,
    client_if: Iface,
    director_if: Iface,
}

fn pair(name: &str) -> Result<Option<Pair>> {
    let Some(lab) = Lab::new_or_skip(name)? else {
        return Ok(None);
    };
    let seg = lab.segment("net", "10.31.0.0/24")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    let client_if = lab.link(&client, &seg, "10.31.0.10/24")?;
    let director_if = lab.link(&director, &seg, "10.31.0.2/24")?;
    Ok(Some(Pair {
        lab,
        client,
        director,
        client_if,
        director_if,
    }))
}

// ------------------------------------------------------------------ tests

#[test]
fn rx_ring_v2_delivers_what_the_filter_keeps_intact() -> Result<()> {
    rx_ring_delivers_what_the_filter_keeps_intact(RingVersion::V2, "iorx2")
}

#[test]
fn rx_ring_v3_delivers_what_the_filter_keeps_intact() -> Result<()> {
    rx_ring_delivers_what_the_filter_keeps_intact(RingVersion::V3, "iorx3")
}

fn rx_ring_delivers_what_the_filter_keeps_intact(version: RingVersion, lab: &str) -> Result<()> {
    let Some(p) = pair(lab)? else {
        return Ok(());
    };
    let (cmac, dmac) = (mac_of(&p.client_if), mac_of(&p.director_if));
    let info = in_ns(&p.director, || if_info("eth0"))??;
    assert_eq!(info.mac, dmac);
    assert_eq!(info.mtu, 1500);

    // Errors name the operation and the interface.
    let missing =
        in_ns(&p.director, || AfPacket::open("eth9", &RxConfig::default()))?.expect_err("no eth9");
    assert!(
        missing.to_string().contains("on eth9") && matches!(missing, IoError::Sys { .. }),
        "{missing}"
    );

    let filter = Filter::builder().arp().ipv4_to([VIP]).build()?;
    let cfg = RxConfig {
        version,
        filter: Some(filter),
        block_size: 1 << 16,
        block_count: 8,
        ..RxConfig::default()
    };
    let mut rx = rx_on(&p.director, "eth0", cfg)?;
    assert_eq!(rx.version(), version);
    let mut tx = tx_on(&p.client, "eth0", TxConfig::default())?;

    let client = |port| SocketAddrV4::new(p.client_if.addr(), port);
    let mut sent = Vec::new();
    let mut want = Vec::new();
    for i in 0..10u16 {
        let to_vip = udp_frame(
            (cmac, dmac),
            client(4000 + i),
            SocketAddrV4::new(VIP, 9000),
            format!("to-vip-{i}").as_bytes(),
        );
        let to_other = udp_frame(
            (cmac, dmac),
            client(4000 + i),
            SocketAddrV4::new(OTHER, 9000),
            format!("to-other-{i}").as_bytes(),
        );
        let from_vip = udp_frame(
            (cmac, dmac),
            SocketAddrV4::new(VIP, 9000),
            SocketAddrV4::new(OTHER, 4000 + i),
            b"from-vip",
        );
        sent.extend([to_vip.clone(), to_other, from_vip]);
        want.push(to_vip);
        if i % 3 == 0 {
            let arp = arp_request(cmac, p.client_if.addr(), VIP, i as u8);
            sent.push(arp.clone());
            want.push(arp);
        }
    }
    // A frame tagged VLAN 42 to the VIP: the kernel strips the tag before
    // packet sockets see it and reports it in the ring's metadata.
    let inner = udp_frame(
        (cmac, dmac),
        client(5000),
        SocketAddrV4::new(VIP, 9000),
        b"tagged",
    );
    sent.push(vlan_tagged(&inner, 42));
    send_all(&mut tx, &sent);
    assert_eq!(tx.stats().frames, sent.len() as u64, "{:?}", tx.stats());

    let expected = want.len() + 1;
    let got = collect(
        &mut rx,
        Duration::from_secs(3),
        Duration::from_millis(100),
        |g| g.len() >= expected,
    )?;
    // Only our client sends in this lab, so everything received is ours.
    let bytes: Vec<&[u8]> = got.iter().map(|(b, _)| b.as_slice()).collect();
    let mut want_all: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
    want_all.push(&inner);
    assert_eq!(
        bytes.len(),
        want_all.len(),
        "received {} frames, wanted {}",
        bytes.len(),
        want_all.len()
    );
    for (i, (g, w)) in bytes.iter().zip(&want_all).enumerate() {
        assert_eq!(g, w, "frame {i} differs");
    }
    for (i, (_, m)) in got.iter().enumerate() {
        assert!(!m.truncated() && !m.losing, "frame {i}: {m:?}");
        // Raw frames carry complete checksums: nothing partial.
        assert!(!m.csum_not_ready, "frame {i}: {m:?}");
        let want_vlan = (i + 1 == got.len()).then_some(42);
        assert_eq!(m.vlan.map(|v| v.id()), want_vlan, "frame {i}: {m:?}");
    }
    let stats = rx.stats();
    assert_eq!(stats.frames, expected as u64, "{stats:?}");
    assert_eq!(stats.kernel_drops, 0, "{stats:?}");
    assert_eq!(stats.malformed_blocks, 0, "{stats:?}");
    // The filter ran in the kernel: what it refused never reached the ring.
    assert_eq!(stats.kernel_packets, expected as u64, "{stats:?}");
    eprintln!(
        "rx {version}: {} of {} frames kept; {stats:?}",
        got.len(),
        sent.len()
    );
    Ok(())
}

/// A V2 ring of 16 slots of 256 bytes: 60 frames in rounds of 5 wrap it
/// nearly four times, every frame arrives once and in order, a frame
/// longer than its slot arrives truncated (and says so), and no batch is
/// larger than `max_batch`.
#[test]
fn rx_ring_v2_wraps_truncates_and_bounds_batches() -> Result<()> {
    let Some(p) = pair("iowrap")? else {
        return Ok(());
    };
    let (cmac, dmac) = (mac_of(&p.client_if), mac_of(&p.director_if));
    let cfg = RxConfig {
        version: RingVersion::V2,
        filter: Some(Filter::builder().ipv4_to([VIP]).build()?),
        block_size: 4096,
        block_count: 1,
        frame_size: 256,
        max_batch: 3,
        ..RxConfig::default()
    };
    let mut rx = rx_on(&p.director, "eth0", cfg)?;
    let mut tx = tx_on(&p.client, "eth0", TxConfig::default())?;
    let caddr = p.client_if.addr();
    // Room in a 256-byte slot: 256 − TPACKET_ALIGN(52 + 16) + 14.
    let room = 256 - 80 + 14;
    let mut sent = Vec::new();
    let mut got: Got = Vec::new();
    let mut largest_batch = 0;
    for round in 0..12u16 {
        let frames: Vec<Vec<u8>> = (0..5u16)
            .map(|k| {
                let i = round * 5 + k;
                // Every seventh frame is too long for its slot.
                let payload = if i % 7 == 3 { 900 } else { 10 + usize::from(i) };
                let mut body = vec![0u8; payload];
                body[..2].copy_from_slice(&i.to_be_bytes());
                udp_frame(
                    (cmac, dmac),
                    SocketAddrV4::new(caddr, 7000),
                    SocketAddrV4::new(VIP, 9000),
                    &body,
                )
            })
            .collect();
        send_all(&mut tx, &frames);
        sent.extend(frames);
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < sent.len() && Instant::now() < deadline {
            if let Some(mut batch) = rx.recv(Duration::from_millis(20))? {
                largest_batch = largest_batch.max(batch.len());
                for f in batch.frames() {
                    got.push((f.data.to_vec(), f.meta));
                }
            }
        }
    }
    assert_eq!(got.len(), sent.len(), "every frame, once");
    let mut truncated = 0;
    for (i, ((g, m), s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(m.wire_len as usize, s.len(), "frame {i}: {m:?}");
        if s.len() > room {
            truncated += 1;
            assert!(m.truncated(), "frame {i}: {m:?}");
            assert_eq!(g.as_slice(), &s[..room], "frame {i}: the start of it");
        } else {
            assert!(!m.truncated(), "frame {i}: {m:?}");
            assert_eq!(g, s, "frame {i} differs (out of order?)");
        }
    }
    assert!(truncated >= 8, "{truncated} truncated");
    assert!(largest_batch <= 3, "batch of {largest_batch} > max_batch");
    let stats = rx.stats();
    assert_eq!(stats.frames, sent.len() as u64, "{stats:?}");
    assert_eq!(
        (stats.kernel_drops, stats.malformed_blocks),
        (0, 0),
        "{stats:?}"
    );
    eprintln!(
        "v2 wrap: {} frames through 16 slots, {truncated} truncated; {stats:?}",
        got.len()
    );
    Ok(())
}

#[test]
fn rx_ring_v2_rejects_slots_that_straddle_blocks() -> Result<()> {
    let cfg = RxConfig {
        version: RingVersion::V2,
        block_size: 4096,
        frame_size: 1536,
        ..RxConfig::default()
    };
    let e = AfPacket::open("lo", &cfg).expect_err("1536 does not divide 4096");
    assert!(matches!(e, IoError::RingConfig(_)), "{e}");
    Ok(())
}

#[test]
fn tx_sends_whole_prefixed_and_copied_frames_intact() -> Result<()> {
    let Some(p) = pair("iotx")? else {
        return Ok(());
    };
    let (cmac, dmac) = (mac_of(&p.client_if), mac_of(&p.director_if));
    let (caddr, daddr) = (p.client_if.addr(), p.director_if.addr());
    let filter = Filter::builder().arp().ipv4_to([caddr]).build()?;
    let mut rx = rx_on(
        &p.client,
        "eth0",
        RxConfig {
            filter: Some(filter),
            ..RxConfig::default()
        },
    )?;
    let mut cap = p.lab.capture(&p.client, "eth0", "ip or arp")?;
    let mut tx = tx_on(&p.director, "eth0", TxConfig::default())?;

    // 1. A whole frame, sent from where it lies.
    let whole = udp_frame(
        (dmac, cmac),
        SocketAddrV4::new(daddr, 6100),
        SocketAddrV4::new(caddr, 6101),
        b"whole frame",
    );
    // 2. TUN: the dataplane's own encapsulation of a client -> VIP packet
    //    towards "real server" = the client, sent as prefix + ring slice.
    let mut inner = udp_frame(
        (cmac, dmac),
        SocketAddrV4::new(Ipv4Addr::new(10, 31, 0, 50), 1234),
        SocketAddrV4::new(VIP, 9000),
        b"tunnelled payload",
    );
    let pkt = forward::classify(&inner, forward::L4Csum::Verify).expect("classify");
    let params = TunParams::new(
        daddr,
        MacPair {
            src: dmac,
            dst: cmac,
        },
    );
    let verdict = forward::tun::encapsulate(&mut inner, &pkt, caddr.into(), &params, 77);
    let Verdict::Encapsulate(tun) = verdict else {
        panic!("{verdict:?}");
    };
    let mut tunnelled = vec![0u8; tun.len()];
    tun.write_to(&inner, &mut tunnelled).expect("room");
    // 3. A small frame built on the stack, copied into the queue.
    let small = arp_request(dmac, daddr, caddr, 0x5a);
    // 4. Explicit prefix + body: a new Ethernet header on an old payload.
    let mut prefix = [0u8; 14];
    prefix[..6].copy_from_slice(&cmac.0);
    prefix[6..12].copy_from_slice(&dmac.0);
    prefix[12..].copy_from_slice(&[0x08, 0x00]);
    let mut reheaded = prefix.to_vec();
    reheaded.extend_from_slice(&whole[14..]);
    // 5. Too big for the MTU: dropped and counted, not sent.
    let jumbo = udp_frame(
        (dmac, cmac),
        SocketAddrV4::new(daddr, 6100),
        SocketAddrV4::new(caddr, 6102),
        &[0u8; 1600],
    );
    {
        let mut batch = tx.batch();
        batch.push(&whole);
        assert!(batch.push_verdict(&inner, &verdict));
        batch.push_copy(&small);
        batch.push_prefixed(&prefix, &whole[14..]);
        batch.push(&jumbo);
        assert_eq!(batch.len(), 5);
        batch.flush();
        assert!(batch.is_empty());
    }
    let st = tx.stats();
    assert_eq!((st.frames, st.dropped_too_big), (4, 1), "{st:?}");
    assert_eq!(st.last_errno, 90, "EMSGSIZE: {st:?}");
    assert_eq!(
        st.bytes,
        (whole.len() + tunnelled.len() + small.len() + reheaded.len()) as u64
    );

    let want = [&whole, &tunnelled, &small, &reheaded];
    let got = collect(
        &mut rx,
        Duration::from_secs(3),
        Duration::from_millis(50),
        |g| g.len() >= want.len(),
    )?;
    // The client's kernel answers the UDP with ICMP, first asking ARP for
    // the director; the director's kernel's ARP reply is not ours.
    let is_arp_reply = |b: &[u8]| b[12..14] == [0x08, 0x06] && b[20..22] == [0, 2];
    let bytes: Vec<&[u8]> = got
        .iter()
        .map(|(b, _)| b.as_slice())
        .filter(|b| !is_arp_reply(b))
        .collect();
    ensure!(
        bytes.len() == want.len(),
        "got {} frames: {bytes:02x?}",
        bytes.len()
    );
    for (i, (g, w)) in bytes.iter().zip(want).enumerate() {
        assert_eq!(*g, w.as_slice(), "frame {i} differs");
    }

    // tcpdump, an independent decoder, agrees on the IPIP frame.
    std::thread::sleep(Duration::from_millis(100));
    let text = cap.decode()?;
    assert!(
        text.contains("10.31.0.2 > 10.31.0.10: 10.31.0.50.1234 > 10.31.0.100.9000: UDP"),
        "{text}"
    );
    assert!(
        text.contains("10.31.0.2.6100 > 10.31.0.10.6101: UDP"),
        "{text}"
    );
    Ok(())
}

#[test]
fn fanout_keeps_each_flow_on_one_socket_and_spreads_flows() -> Result<()> {
    let Some(p) = pair("iofan")? else {
        return Ok(());
    };
    let (cmac, dmac) = (mac_of(&p.client_if), mac_of(&p.director_if));
    let cfg = RxConfig {
        filter: Some(Filter::builder().ipv4_to([VIP]).build()?),
        fanout: Some(Fanout {
            group: 0x4242,
            mode: FanoutMode::Hash,
        }),
        block_size: 1 << 16,
        block_count: 8,
        ..RxConfig::default()
    };
    let mut socks = [
        rx_on(&p.director, "eth0", cfg.clone())?,
        rx_on(&p.director, "eth0", cfg)?,
    ];
    let mut tx = tx_on(&p.client, "eth0", TxConfig::default())?;
    let caddr = p.client_if.addr();
    // One long flow (port 1000) and 64 short ones (ports 2000..2064).
    let mut frames = Vec::new();
    for i in 0..40u32 {
        frames.push(udp_frame(
            (cmac, dmac),
            SocketAddrV4::new(caddr, 1000),
            SocketAddrV4::new(VIP, 80),
            &i.to_be_bytes(),
        ));
    }
    for round in 0..3u32 {
        for port in 2000..2064u16 {
            frames.push(udp_frame(
                (cmac, dmac),
                SocketAddrV4::new(caddr, port),
                SocketAddrV4::new(VIP, 80),
                &round.to_be_bytes(),
            ));
        }
    }
    send_all(&mut tx, &frames);

    // Source port -> the sockets that saw it.
    let mut seen: HashMap<u16, HashSet<usize>> = HashMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while total < frames.len() && Instant::now() < deadline {
        for (k, s) in socks.iter_mut().enumerate() {
            if let Some(mut block) = s.recv(Duration::from_millis(5))? {
                for f in block.frames() {
                    let sport = u16::from_be_bytes([f.data[34], f.data[35]]);
                    seen.entry(sport).or_default().insert(k);
                    total += 1;
                }
            }
        }
    }
    assert_eq!(total, frames.len(), "every frame arrives exactly once");
    assert_eq!(seen.len(), 65);
    for (port, socks) in &seen {
        assert_eq!(socks.len(), 1, "flow from port {port} split over {socks:?}");
    }
    let per_socket = |k| seen.values().filter(|s| s.contains(&k)).count();
    let (a, b) = (per_socket(0), per_socket(1));
    eprintln!("fanout: {a} flows on socket 0, {b} on socket 1");
    assert!(a > 0 && b > 0, "all 65 flows on one socket");
    Ok(())
}

/// Client, director and DR real server on one segment; the director's
/// dataplane is a worker thread running the crate's classify + DR rewrite
/// on the RX ring and sending with the TX queue (one-armed DR, as LVS-DR
/// is usually deployed).
#[test]
fn dr_forwarding_loop_reaches_a_real_server() -> Result<()> {
    let Some(lab) = Lab::new_or_skip("iodrloop")? else {
        return Ok(());
    };
    let seg = lab.segment("net", "10.31.0.0/24")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    let rs = lab.host("rs")?;
    let client_if = lab.link(&client, &seg, "10.31.0.10/24")?;
    let director_if = lab.link(&director, &seg, "10.31.0.2/24")?;
    let rs_if = lab.link(&rs, &seg, "10.31.0.21/24")?;
    lab.dr_real_server(&rs, VIP)?;
    let _server = lab.udp_echo(&rs, SocketAddrV4::new(VIP, 9000), "rs")?;
    // Nobody answers ARP for the VIP in this test (the daemon's ARP
    // responder is not part of the I/O layer): point the client at the
    // director's MAC.
    lab.ip(
        &client,
        &[
            "neigh",
            "replace",
            &VIP.to_string(),
            "lladdr",
            director_if.mac(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )?;
    let macs = MacPair {
        src: mac_of(&director_if),
        dst: mac_of(&rs_if),
    };
    let cfg = RxConfig {
        filter: Some(Filter::builder().ipv4_to([VIP]).build()?),
        block_size: 1 << 16,
        block_count: 8,
        ..RxConfig::default()
    };
    let mut rx = rx_on(&director, "eth0", cfg)?;
    let mut tx = tx_on(&director, "eth0", TxConfig::default())?;

    let stop = AtomicBool::new(false);
    let forwarded = AtomicU64::new(0);
    let partial = AtomicU64::new(0);
    let complete = AtomicU64::new(0);
    let run = |ask_count: u32| -> Result<()> {
        let got = lab.udp_ask(
            &client,
            SocketAddrV4::new(VIP, 9000),
            &UdpAsk {
                count: ask_count,
                timeout: Duration::from_secs(1),
                ..UdpAsk::default()
            },
        )?;
        for (i, x) in got.iter().enumerate() {
            let r = x
                .reply
                .as_ref()
                .with_context(|| format!("request {i} lost"))?;
            ensure!(r.text == format!("rs req-{i}"), "reply {:?}", r.text);
            ensure!(
                r.from == SocketAddrV4::new(VIP, 9000).into(),
                "from {}",
                r.from
            );
        }
        Ok(())
    };
    let result = std::thread::scope(|s| {
        let worker = s.spawn(|| -> Result<()> {
            while !stop.load(Ordering::Relaxed) {
                let Some(mut block) = rx.recv(Duration::from_millis(20))? else {
                    continue;
                };
                let mut batch = tx.batch();
                for f in block.frames() {
                    if f.meta.csum_not_ready {
                        partial.fetch_add(1, Ordering::Relaxed);
                    } else {
                        complete.fetch_add(1, Ordering::Relaxed);
                    }
                    let Ok(pkt) = forward::classify(f.data, f.meta.l4_csum()) else {
                        continue;
                    };
                    let verdict = forward::dr::rewrite(f.data, &pkt, macs);
                    if batch.push_verdict(f.data, &verdict) {
                        forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        });
        // Offloads on (veth default): the client's UDP checksums arrive
        // partial and the rewrite completes them; then offloads off.
        let on = run(10);
        let off = lab.disable_offloads(&client_if).and_then(|()| run(10));
        stop.store(true, Ordering::Relaxed);
        let w = worker.join().expect("worker panicked");
        on.and(off).and(w)
    });
    result?;
    let (fwd, part, full) = (
        forwarded.load(Ordering::Relaxed),
        partial.load(Ordering::Relaxed),
        complete.load(Ordering::Relaxed),
    );
    eprintln!(
        "dr loop: {fwd} forwarded; {part} arrived CHECKSUM_PARTIAL, {full} complete; tx {:?}",
        tx.stats()
    );
    assert_eq!(fwd, 20);
    assert_eq!(
        part, 10,
        "with tx offload on, veth hands over partial checksums"
    );
    assert_eq!(full, 10, "with offloads off, checksums arrive complete");
    assert_eq!(tx.stats().dropped(), 0);
    Ok(())
}

/// CPU time of the calling thread, from /proc (ns on CPU).
fn thread_cpu() -> Result<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = s
        .split_whitespace()
        .next()
        .context("schedstat")?
        .parse()
        .context("schedstat")?;
    Ok(Duration::from_nanos(ns))
}

#[test]
fn idle_recv_sleeps_in_poll_v2() -> Result<()> {
    idle_recv_sleeps_in_poll(RingVersion::V2, "ioidle2")
}

#[test]
fn idle_recv_sleeps_in_poll_v3() -> Result<()> {
    idle_recv_sleeps_in_poll(RingVersion::V3, "ioidle3")
}

fn idle_recv_sleeps_in_poll(version: RingVersion, lab: &str) -> Result<()> {
    let Some(p) = pair(lab)? else {
        return Ok(());
    };
    let cfg = RxConfig {
        version,
        filter: Some(Filter::builder().ipv4_to([VIP]).build()?),
        ..RxConfig::default()
    };
    let mut rx = rx_on(&p.director, "eth0", cfg)?;
    let cpu0 = thread_cpu()?;
    let t0 = Instant::now();
    let mut calls = 0;
    while t0.elapsed() < Duration::from_millis(300) {
        calls += 1;
        let got = rx.recv(Duration::from_millis(100))?;
        assert!(got.is_none_or(|b| b.is_empty()), "traffic on an idle link");
    }
    let cpu = thread_cpu()? - cpu0;
    let wall = t0.elapsed();
    eprintln!("idle {version}: {calls} recv calls, {wall:?} wall, {cpu:?} CPU");
    assert!(
        cpu < Duration::from_millis(50),
        "idle recv used {cpu:?} CPU"
    );
    assert!(calls <= 10, "recv returned early {calls} times");
    Ok(())
}

// -------------------------------------------------------------- benchmark

fn rx_packets(lab: &Lab, host: &Host, iface: &str) -> Result<u64> {
    let path = format!("/sys/class/net/{iface}/statistics/rx_packets");
    Ok(lab.exec_ok(host, &["cat", &path])?.trim().parse()?)
}

/// With `IO_BENCH_PIN=1`, pins the calling thread to `cpu` (taskset on
/// our own thread id), if the machine has that CPU: the generator (with
/// the softirq work its sends trigger: bridge, director receive, and the
/// kernel's forwarding or the ring copy) and the worker then run on
/// separate cores. Best effort.
fn pin_to(cpu: usize) -> bool {
    if std::env::var_os("IO_BENCH_PIN").is_none_or(|v| v != "1") {
        return false;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpu >= cpus {
        return false;
    }
    let Ok(me) = std::fs::read_link("/proc/thread-self") else {
        return false;
    };
    let Some(tid) = me.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return false;
    };
    lab_tests::cmd::run_ok(
        &["taskset", "-p", "-c", &cpu.to_string(), &tid],
        lab_tests::cmd::DEFAULT_TIMEOUT,
    )
    .is_ok()
}

/// Sends `n` 60-byte UDP frames as fast as possible; returns the time it
/// took.
fn flood(tx: &mut TxQueue, template: &[Vec<u8>], n: usize) -> Duration {
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(template.len());
        let mut batch = tx.batch();
        for f in &template[..k] {
            batch.push(f);
        }
        drop(batch);
        left -= k;
    }
    t0.elapsed()
}

/// Waits until the sink's counter stops moving; returns (packets since
/// `before`, time from `t0` to the last increase).
fn drain(lab: &Lab, sink: &Host, before: u64, t0: Instant) -> Result<(u64, Duration)> {
    let mut last = before;
    let mut last_change = t0.elapsed();
    let mut still = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = rx_packets(lab, sink, "eth0")?;
        if now == last {
            still += 1;
            if still == 5 {
                return Ok((now - before, last_change));
            }
            continue;
        }
        still = 0;
        last = now;
        last_change = t0.elapsed();
    }
}

/// Forwarded packets/s through one worker (RX ring + MAC rewrite +
/// sendmmsg, client segment -> server segment), then through the kernel's
/// IP forwarding between the same veths. 60-byte UDP, 64 flows.
/// `IO_BENCH_PACKETS` (default 50000) sets the count per run,
/// `IO_BENCH_RING` (`v2`, the default, or `v3`) the worker's ring, and
/// `IO_BENCH_BYPASS=1` sets `PACKET_QDISC_BYPASS` on the worker's send
/// socket.
#[test]
fn bench_forwarding_worker_vs_kernel() -> Result<()> {
    let n: usize = std::env::var("IO_BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
        .min(5_000_000);
    let ring: RingVersion = match std::env::var("IO_BENCH_RING") {
        Ok(v) => v.parse().map_err(anyhow::Error::msg)?,
        Err(_) => RingVersion::default(),
    };
    let bypass = std::env::var_os("IO_BENCH_BYPASS").is_some_and(|v| v == "1");
    let Some(lab) = Lab::new_or_skip("iobench")? else {
        return Ok(());
    };
    // Other work on the machine skews every figure: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "bench: {n} packets per run, ring {ring}, qdisc bypass {bypass}; loadavg {}",
        load.trim()
    );
    let a = lab.segment("a", "10.31.0.0/24")?;
    let b = lab.segment("b", "10.32.0.0/24")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    let server = lab.host("server")?;
    let client_if = lab.link(&client, &a, "10.31.0.10/24")?;
    let dir_a = lab.link(&director, &a, "10.31.0.2/24")?;
    let dir_b = lab.link(&director, &b, "10.32.0.2/24")?;
    let server_if = lab.link(&server, &b, "10.32.0.21/24")?;
    for i in [&client_if, &dir_a, &dir_b, &server_if] {
        lab.disable_offloads(i)?;
    }
    lab.route(&client, "10.32.0.0/24 via 10.31.0.2")?;
    lab.ip(
        &director,
        &[
            "neigh",
            "replace",
            "10.32.0.21",
            "lladdr",
            server_if.mac(),
            "dev",
            "eth1",
            "nud",
            "permanent",
        ],
    )?;
    let (cmac, amac) = (mac_of(&client_if), mac_of(&dir_a));
    let frames = |dst: Ipv4Addr| -> Vec<Vec<u8>> {
        (0..64u16)
            .map(|i| {
                udp_frame(
                    (cmac, amac),
                    SocketAddrV4::new(client_if.addr(), 10000 + i),
                    SocketAddrV4::new(dst, 9),
                    &[0u8; 18],
                )
            })
            .collect()
    };
    let gen_cfg = TxConfig {
        batch: 64,
        qdisc_bypass: true,
        ..TxConfig::default()
    };
    let mut gen_tx = tx_on(&client, "eth0", gen_cfg)?;

    // 1. Userspace: ip_forward off; the worker moves VIP traffic a -> b.
    let vip = Ipv4Addr::new(10, 32, 0, 100);
    let macs = MacPair {
        src: mac_of(&dir_b),
        dst: mac_of(&server_if),
    };
    let mut rx = rx_on(
        &director,
        "eth0",
        RxConfig {
            version: ring,
            filter: Some(Filter::builder().ipv4_to([vip]).build()?),
            ..RxConfig::default()
        },
    )?;
    let tx_cfg = TxConfig {
        qdisc_bypass: bypass,
        ..TxConfig::default()
    };
    let mut tx = tx_on(&director, "eth1", tx_cfg)?;
    let template = frames(vip);
    let stop = AtomicBool::new(false);
    let before = rx_packets(&lab, &server, "eth0")?;
    let t0 = Instant::now();
    let (gen_time, (delivered, elapsed), worker) = std::thread::scope(|s| -> Result<_> {
        let worker = s.spawn(|| -> Result<u64> {
            pin_to(1);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Some(mut block) = rx.recv(Duration::from_millis(20))? else {
                    continue;
                };
                let mut batch = tx.batch();
                for f in block.frames() {
                    f.data[..6].copy_from_slice(&macs.dst.0);
                    f.data[6..12].copy_from_slice(&macs.src.0);
                    batch.push(f.data);
                    n += 1;
                }
            }
            Ok(n)
        });
        let gen_time = s
            .spawn(|| {
                pin_to(0);
                flood(&mut gen_tx, &template, n)
            })
            .join()
            .expect("generator");
        let d = drain(&lab, &server, before, t0);
        stop.store(true, Ordering::Relaxed);
        let w = worker.join().expect("worker");
        Ok((gen_time, d?, w?))
    })?;
    let rx_stats = rx.stats();
    let user_pps = delivered as f64 / elapsed.as_secs_f64();
    eprintln!(
        "bench userspace: sent {n} in {gen_time:?} ({:.0} pps offered); worker forwarded {worker}; \
         server got {delivered} in {elapsed:?} = {user_pps:.0} pps; rx {rx_stats:?}; tx {:?}",
        n as f64 / gen_time.as_secs_f64(),
        tx.stats()
    );
    drop((rx, tx));

    // 2. The kernel: ip_forward on, frames to the server's own address.
    lab.enable_forwarding(&director)?;
    let template = frames(server_if.addr());
    let before = rx_packets(&lab, &server, "eth0")?;
    let t0 = Instant::now();
    let gen_time = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(0);
            flood(&mut gen_tx, &template, n)
        })
        .join()
        .expect("generator")
    });
    let (k_delivered, k_elapsed) = drain(&lab, &server, before, t0)?;
    let kernel_pps = k_delivered as f64 / k_elapsed.as_secs_f64();
    eprintln!(
        "bench kernel: sent {n} in {gen_time:?}; server got {k_delivered} in {k_elapsed:?} = \
         {kernel_pps:.0} pps"
    );
    eprintln!(
        "bench: userspace worker {user_pps:.0} pps vs kernel forwarding {kernel_pps:.0} pps \
         ({:.2}x), {n} packets each",
        user_pps / kernel_pps
    );
    // Bounded and lossless enough to mean something; no speed claim here.
    ensure!(delivered > 0 && k_delivered > 0, "nothing forwarded");
    Ok(())
}

/// The cost of the send path alone: one thread sends 60-byte frames in
/// batches of 64 to a peer that drops them at its netdev ingress hook
/// (so the receive side costs little and the same either way), with and
/// without `PACKET_QDISC_BYPASS`, alternating three times. Reports wall
/// and thread CPU time per frame (the CPU time includes the softirq work
/// the sends trigger in the sender's context). `IO_BENCH_PACKETS` sets
/// the frames per run (default 50000).
#[test]
fn bench_tx_send_cost_with_and_without_qdisc_bypass() -> Result<()> {
    let n: usize = std::env::var("IO_BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
        .min(5_000_000);
    let Some(p) = pair("iotxcost")? else {
        return Ok(());
    };
    for i in [&p.client_if, &p.director_if] {
        p.lab.disable_offloads(i)?;
    }
    let rules = p.lab.unique_path("drop", ".nft");
    std::fs::write(
        &rules,
        "table netdev sink {\n  chain in {\n    type filter hook ingress device \"eth0\" \
         priority 0; policy drop;\n  }\n}\n",
    )?;
    p.lab
        .exec_ok(&p.client, &["nft", "-f", &rules.to_string_lossy()])?;
    let (cmac, dmac) = (mac_of(&p.client_if), mac_of(&p.director_if));
    let template: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            udp_frame(
                (dmac, cmac),
                SocketAddrV4::new(p.director_if.addr(), 10000 + i),
                SocketAddrV4::new(p.client_if.addr(), 9),
                &[0u8; 18],
            )
        })
        .collect();
    let mut results: Vec<(bool, f64, f64)> = Vec::new();
    for round in 0..6 {
        let bypass = round % 2 == 1;
        let cfg = TxConfig {
            qdisc_bypass: bypass,
            ..TxConfig::default()
        };
        let mut tx = tx_on(&p.director, "eth0", cfg)?;
        let (wall, cpu) = std::thread::scope(|s| {
            s.spawn(|| -> Result<(Duration, Duration)> {
                let c0 = thread_cpu()?;
                let wall = flood(&mut tx, &template, n);
                Ok((wall, thread_cpu()? - c0))
            })
            .join()
            .expect("sender")
        })?;
        let st = tx.stats();
        ensure!(st.frames == n as u64, "sent {st:?}");
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        eprintln!(
            "tx cost: bypass {bypass:<5} {n} frames: {:.0} ns/frame wall, {:.0} ns/frame CPU",
            per(wall),
            per(cpu)
        );
        results.push((bypass, per(wall), per(cpu)));
    }
    let mean = |b: bool, f: fn(&(bool, f64, f64)) -> f64| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == b).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    eprintln!(
        "tx cost: mean CPU per frame {:.0} ns without bypass, {:.0} ns with; wall {:.0} / {:.0} ns",
        mean(false, |r| r.2),
        mean(true, |r| r.2),
        mean(false, |r| r.1),
        mean(true, |r| r.1)
    );
    Ok(())
}
