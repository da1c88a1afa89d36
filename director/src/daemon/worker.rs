//! A worker thread: one AF_PACKET ring on one data interface (in a fanout
//! group with the other workers of that interface, hashed by flow so a
//! connection stays on one worker), the dataplane, and a transmit queue on
//! every data interface (NAT sends out of the other one).
//!
//! The ring's kernel filter passes only what the dataplane handles — IPv4
//! to a VIP, and IPv4 from a NAT real server — so the kernel copies nothing
//! else to us. When the configuration changes the filter is replaced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use smallvec::SmallVec;

use crate::dataplane::{Action, Dataplane, IfaceId, Worker};
use crate::forward::{L4Csum, Verdict};
use crate::io::{AfPacket, Fanout, FanoutMode, Filter, RingVersion, RxConfig, TxConfig, TxQueue};

use super::clock::Clock;
use super::routes::Routes;
use super::sync_side::SyncHook;
use crate::config::WorkerFanout;

/// The kernel filter for the workers, replaced when the services change.
#[derive(Debug)]
pub struct SharedFilter {
    filter: ArcSwap<Filter>,
    version: AtomicU64,
}

impl SharedFilter {
    /// Starts with `filter`.
    pub fn new(filter: Filter) -> SharedFilter {
        SharedFilter {
            filter: ArcSwap::from_pointee(filter),
            version: AtomicU64::new(0),
        }
    }

    /// Replace the filter; workers pick it up at their next batch.
    pub fn set(&self, filter: Filter) {
        self.filter.store(Arc::new(filter));
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// What one worker thread needs.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker number (seeds its random bits).
    pub n: usize,
    /// The interface it reads.
    pub ingress: IfaceId,
    /// Interface names by `IfaceId`, for the transmit queues.
    pub iface_names: Vec<String>,
    /// Fanout group id of the ingress interface.
    pub fanout_group: u16,
    /// Whether to verify L4 checksums of complete packets.
    pub verify_checksums: bool,
    /// Where connection events go for the sync stream.
    pub sync: Arc<SyncHook>,
    /// The receive ring's layout.
    pub rx_ring: RingVersion,
    /// How the interface's frames are spread over its workers.
    pub fanout: WorkerFanout,
    /// Offloads on: frames come and go with virtio-net headers, merged
    /// ones forwarded whole.
    pub offloads: bool,
    /// MiB of the receive ring.
    pub ring_mib: u32,
    /// This worker's index on its interface: with `WorkerFanout::Cpu`, it
    /// is pinned to this CPU among those the daemon may use (modulo their
    /// number).
    pub cpu: usize,
}

/// Run one worker until `stop` is set. Errors opening the sockets are
/// returned; errors while running are logged and survived.
pub fn run(
    spec: WorkerSpec,
    dp: Arc<Dataplane>,
    routes: Routes,
    filter: Arc<SharedFilter>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> anyhow::Result<()> {
    if spec.fanout == WorkerFanout::Cpu {
        pin(&spec);
    }
    let opened = open(&spec, &filter);
    let _ = ready.send(opened.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
    let (mut rx, mut txs) = opened?;
    run_loop(spec, dp, routes, filter, clock, stop, &mut rx, &mut txs)
}

/// Pin the calling worker thread to its CPU: the `spec.cpu`-th of those
/// the daemon may use. A failure leaves it unpinned, which costs only
/// speed.
fn pin(spec: &WorkerSpec) {
    match crate::io::pin_current_thread(spec.cpu) {
        Ok(cpu) => tracing::debug!("worker {} pinned to CPU {cpu}", spec.n),
        Err(e) => tracing::warn!("worker {}: cannot pin to a CPU: {e}", spec.n),
    }
}

/// Open the worker's receive ring and transmit queues.
fn open(spec: &WorkerSpec, filter: &SharedFilter) -> anyhow::Result<(AfPacket, Vec<TxQueue>)> {
    use anyhow::Context as _;
    let ingress_name = &spec.iface_names[usize::from(spec.ingress.0)];
    let cfg = RxConfig {
        version: spec.rx_ring,
        fanout: Some(Fanout {
            group: spec.fanout_group,
            mode: match spec.fanout {
                WorkerFanout::Hash => FanoutMode::Hash,
                WorkerFanout::Cpu => FanoutMode::Cpu,
            },
        }),
        filter: Some((**filter.filter.load()).clone()),
        ..RxConfig::default()
    };
    let cfg = RxConfig {
        block_count: ((u64::from(spec.ring_mib) << 20) / u64::from(cfg.block_size)).max(1) as u32,
        ..cfg
    };
    let cfg = if spec.offloads {
        cfg.for_offloads()
    } else {
        cfg
    };
    let tx_cfg = TxConfig {
        vnet_hdr: spec.offloads,
        ..TxConfig::default()
    };
    let rx = AfPacket::open(ingress_name, &cfg)
        .with_context(|| format!("worker {}: receive ring on {ingress_name}", spec.n))?;
    let txs = spec
        .iface_names
        .iter()
        .map(|name| {
            TxQueue::open(name, &tx_cfg)
                .with_context(|| format!("worker {}: transmit queue on {name}", spec.n))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((rx, txs))
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    spec: WorkerSpec,
    dp: Arc<Dataplane>,
    routes: Routes,
    filter: Arc<SharedFilter>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    rx: &mut AfPacket,
    txs: &mut [TxQueue],
) -> anyhow::Result<()> {
    let ingress_name = &spec.iface_names[usize::from(spec.ingress.0)];
    let mut seen_version = filter.version.load(Ordering::Acquire);
    let events_dp = Arc::clone(&dp);
    let mut worker = Worker::new(dp, 0x5eed ^ spec.n as u64)
        .map_err(|e| anyhow::anyhow!("worker {}: {e}", spec.n))?;
    let mut last_error = None::<String>;
    let mut ring_drops_at = clock.now();
    let mut ring_drops_seen = 0u64;
    // Buffers for the merged frames of one run of slots, one per slot it
    // may hold (a V2 run is at most `max_batch` slots), so none is ever
    // missing and the socket's queue is always read in step with the
    // slots. Each grows to 64 KiB the first time it is used.
    let mut oversize_bufs: Vec<Vec<u8>> = vec![Vec::new(); RxConfig::default().max_batch as usize];

    while !stop.load(Ordering::Relaxed) {
        let v = filter.version.load(Ordering::Acquire);
        if v != seen_version {
            seen_version = v;
            if let Err(e) = rx.set_filter(&filter.filter.load()) {
                tracing::error!("worker {}: new filter on {ingress_name}: {e}", spec.n);
            }
        }
        // The kernel counts what it dropped at our full ring; read (and
        // reset) its counter about once a second, busy or idle.
        let now = clock.now();
        if now.saturating_since(ring_drops_at) >= RING_STATS_EVERY {
            ring_drops_at = now;
            let total = rx.stats().kernel_drops;
            worker.count_io_losses(total - ring_drops_seen, 0);
            ring_drops_seen = total;
        }
        let mut block = match rx.recv(Duration::from_millis(100)) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    tracing::warn!("worker {}: receive on {ingress_name}: {msg}", spec.n);
                    last_error = Some(msg);
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let now = clock.now();
        let (sent_before, failed_before) = (sent(txs), failed(txs));
        let mut received = 0u64;
        let mut truncated = 0u64;
        let oversize = block.oversize_reader();
        let mut spare = oversize_bufs.iter_mut();
        // One batch per interface, on the stack: this runs for every run of
        // frames, often only a few, so it must not allocate.
        let mut batches: SmallVec<[_; 4]> = txs.iter_mut().map(|q| q.batch()).collect();
        for frame in block.frames() {
            received += 1;
            let mut meta = frame.meta;
            let data: &mut [u8] = if meta.copied {
                // A merged frame too big for its slot (offloads on): the
                // whole of it is next in the socket's queue.
                match spare.next().and_then(|buf| oversize.read(buf)) {
                    Some((vnet, whole)) => {
                        meta.vnet = vnet;
                        whole
                    }
                    None => {
                        truncated += 1;
                        continue;
                    }
                }
            } else if meta.truncated() {
                // Larger than the ring's slot, and not queued whole (offloads
                // off, or the queue full): lost at the ring.
                truncated += 1;
                continue;
            } else {
                frame.data
            };
            let csum = match meta.l4_csum() {
                L4Csum::Verify if !spec.verify_checksums => L4Csum::Skip,
                c => c,
            };
            let action = worker.process(now, spec.ingress, &mut *data, csum, &routes, &mut |ev| {
                spec.sync.on_event(ev, &events_dp, now)
            });
            if let Action::Handled { verdict, egress } = action {
                if matches!(verdict, Verdict::Drop(_)) {
                    continue;
                }
                if let Some(batch) = batches.get_mut(usize::from(egress.0)) {
                    match (csum, meta.vnet) {
                        (L4Csum::Offload { .. }, Some(rx)) => {
                            batch.push_verdict_offloaded(data, &verdict, rx)
                        }
                        _ => batch.push_verdict(data, &verdict),
                    };
                }
            }
        }
        // Batches flush on drop, before the block goes back to the kernel.
        drop(batches);
        worker.count_io(received, sent(txs) - sent_before);
        let failed_now = failed(txs) - failed_before;
        if failed_now + truncated > 0 {
            worker.count_io_losses(truncated, failed_now);
        }
    }
    // What the kernel dropped since the last reading.
    worker.count_io_losses(rx.stats().kernel_drops - ring_drops_seen, 0);
    Ok(())
}

/// Frames the kernel has accepted from these queues since they opened.
fn sent(txs: &[TxQueue]) -> u64 {
    txs.iter().map(|q| q.stats().frames).sum()
}

/// Frames these queues failed to send since they opened.
fn failed(txs: &[TxQueue]) -> u64 {
    txs.iter().map(|q| q.stats().dropped()).sum()
}

/// How often a worker reads its ring's drop counter.
const RING_STATS_EVERY: Duration = Duration::from_secs(1);
