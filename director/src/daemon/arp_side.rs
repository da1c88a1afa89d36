//! One ARP thread per data interface: answers "who-has VIP" while this
//! node is active, learns neighbours, resolves the real servers and routers
//! the workers send to, and sends gratuitous ARP when the node becomes
//! active. The protocol logic is [`crate::arp::ArpResponder`]; this is the
//! thin loop that owns its socket and clock.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::arp::{ArpOutcome, ArpResponder};
use crate::dataplane::Dataplane;
use crate::io::{AfPacket, Filter, RingVersion, RxConfig, TxConfig, TxQueue, Wake};

use super::clock::Clock;

/// What an interface answers for and resolves, replaced on every
/// configuration change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerSet {
    /// Addresses answered for while active (VIPs, NAT gateway VIP).
    pub vips: Vec<Ipv4Addr>,
    /// Addresses kept resolved: real servers and routers on this link.
    pub wanted: Vec<Ipv4Addr>,
}

/// What one interface's ARP thread owns.
#[derive(Debug)]
pub struct ArpThread {
    /// Interface name.
    pub name: String,
    /// The protocol logic and neighbour cache.
    pub responder: ArpResponder,
    /// The dataplane (for the active/standby switch).
    pub dp: Arc<Dataplane>,
    /// Addresses the workers need resolved.
    pub wants: Receiver<Ipv4Addr>,
    /// What to answer for and keep resolved.
    pub answers: Arc<ArcSwap<AnswerSet>>,
    /// The daemon's clock.
    pub clock: Clock,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Signalled when the node's role changes, so that a new master's
    /// gratuitous ARP leaves at once rather than at the next timer.
    pub wake: Arc<Wake>,
}

/// Run an ARP thread until `stop`; report on `ready` once its socket is open.
pub fn run(
    mut t: ArpThread,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> anyhow::Result<()> {
    let opened = open(&t.name);
    let _ = ready.send(opened.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
    let (mut rx, mut tx) = opened?;
    let mut current: Option<Arc<AnswerSet>> = None;
    let mut active = false;
    run_loop(
        &t.name,
        &mut t.responder,
        &t.dp,
        &t.wants,
        &t.answers,
        t.clock,
        &t.stop,
        &t.wake,
        &mut rx,
        &mut tx,
        &mut current,
        &mut active,
    );
    Ok(())
}

/// Open the ARP socket (ARP frames only) and its transmit queue.
fn open(name: &str) -> anyhow::Result<(AfPacket, TxQueue)> {
    let filter = Filter::builder()
        .arp()
        .build()
        .map_err(|e| anyhow::anyhow!("ARP filter: {e}"))?;
    let cfg = RxConfig {
        filter: Some(filter),
        // V2: each ARP request is handed over as it arrives (a V3 block
        // would wait for its retire timer).
        version: RingVersion::V2,
        block_size: 1 << 16,
        block_count: 4,
        ..RxConfig::default()
    };
    let rx = AfPacket::open(name, &cfg).with_context(|| format!("ARP socket on {name}"))?;
    let tx = TxQueue::open(name, &TxConfig::default())
        .with_context(|| format!("ARP transmit on {name}"))?;
    Ok((rx, tx))
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    name: &str,
    responder: &mut ArpResponder,
    dp: &Dataplane,
    wants: &Receiver<Ipv4Addr>,
    answers: &ArcSwap<AnswerSet>,
    clock: Clock,
    stop: &AtomicBool,
    wake: &Wake,
    rx: &mut AfPacket,
    tx: &mut TxQueue,
    current: &mut Option<Arc<AnswerSet>>,
    active: &mut bool,
) {
    while !stop.load(Ordering::Relaxed) {
        wake.clear();
        let now = clock.now();
        let set = answers.load_full();
        if current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &set)) {
            responder.set_vips(now, set.vips.clone());
            for &ip in &set.wanted {
                responder.want(now, ip);
            }
            *current = Some(set);
        }
        let is_active = dp.is_active();
        if is_active != *active {
            *active = is_active;
            responder.set_active(now, is_active);
            tracing::info!(
                "{name}: {} ARP for {:?}",
                if is_active {
                    "answering"
                } else {
                    "no longer answering"
                },
                current.as_ref().map(|c| c.vips.clone()).unwrap_or_default()
            );
        }
        while let Ok(ip) = wants.try_recv() {
            responder.neighbours_mut().resolve(ip, now);
        }
        for frame in responder.poll_transmit(now) {
            tx.send_now(frame.as_bytes());
        }
        // Wake for the next timer, on a role change (`wake`), and at
        // least every 20 ms to pick up the workers' requests.
        let wait = responder
            .poll_timeout()
            .map(|t| Duration::from_millis(t.0.saturating_sub(now.0)))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        let mut block = match rx.recv_or_wake(wait, Some(wake)) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("{name}: ARP receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let now = clock.now();
        for frame in block.frames() {
            match responder.handle(now, frame.data) {
                ArpOutcome::Reply(reply) => tx.send_now(reply.as_bytes()),
                ArpOutcome::Conflict(c) => {
                    tracing::warn!("{name}: address conflict: {c:?}");
                }
                ArpOutcome::Silent(_) | ArpOutcome::Malformed(_) => {}
            }
        }
    }
}
