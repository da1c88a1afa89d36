//! Sync over loopback, measured: lag at 1k, 10k and 50k new connections/s
//! (events pushed from a thread at that rate for ~3 s), and a 10^6-entry
//! snapshot (transfer + apply into the in-memory sink, bytes per entry).
//!
//! `cargo run --release -p syncd --example sync_bench -- [options]`
//!
//! Options (default: every rate, then the 10^6 snapshot):
//! - `--rates 1000,10000` rates to run (`--rates none` for none);
//! - `--secs 3` seconds per rate;
//! - `--snapshot 1000000` snapshot size (`0` skips it); a bare number, as
//!   in `sync_bench 1000000`, means the snapshot alone;
//! - `--series DIR` writes `DIR/lag-<rate>.csv`: one line per event, push
//!   time and push→apply latency (µs), to see when the tail happens.
//!
//! Two lag figures per rate:
//! - push→ack (the contract's lag): the master's window of (ack time −
//!   time the batch's first event entered the log), master clock;
//! - push→apply: each event's push time (pusher thread) to the moment the
//!   subscriber's sink applied it, same process clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lb_proto::common::ConnEntry;
use lb_proto::sync::{ConnNew, SyncEvent, sync_event};
use syncd::mem::{self, MemTable};
use syncd::{ConnSink, MasterConfig, NodeInfo, Subscriber, SubscriberConfig, SyncServer};
use tokio::net::TcpListener;

static START: OnceLock<Instant> = OnceLock::new();

/// The bench's clock: µs since start.
#[allow(clippy::disallowed_methods)]
fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        node_name: format!("dir-{id}"),
        cluster_id: "bench".into(),
        vrids: vec![51],
    }
}

/// Index of a `mem::flow_entry`.
fn flow_index(e: &ConnEntry) -> Option<u64> {
    let c = e.client.as_ref()?;
    let ip: std::net::Ipv4Addr = c.ip.parse().ok()?;
    Some(((u32::from(ip).wrapping_sub(0x6440_0000) as u64) << 16) | u64::from(c.port))
}

/// A MemTable sink that records when each pushed flow is applied.
struct TimedSink {
    table: MemTable,
    pushed: Arc<Vec<AtomicU64>>,
    /// (push time, push→apply latency), µs.
    latencies: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl ConnSink for TimedSink {
    fn begin_snapshot(&self, id: u64) {
        self.table.begin_snapshot(id)
    }
    fn expect_snapshot_entries(&self, id: u64, expected: u64) {
        // Room for the flows to come: one HashMap under one lock would
        // otherwise rehash everything while the stream waits (the director's
        // table is sharded and does not), a bench artifact of 10–20 ms.
        let room = expected.max(self.pushed.len() as u64);
        self.table.expect_snapshot_entries(id, room)
    }
    fn apply_snapshot_entries(&self, id: u64, entries: Vec<ConnEntry>) -> Result<(), String> {
        self.table.apply_snapshot_entries(id, entries)
    }
    fn end_snapshot(&self, id: u64) -> Result<(), String> {
        self.table.end_snapshot(id)
    }
    fn abort_snapshot(&self, id: u64) {
        self.table.abort_snapshot(id)
    }
    fn apply_events(&self, events: Vec<SyncEvent>) -> Result<(), String> {
        let idx: Vec<u64> = events
            .iter()
            .filter_map(|e| match &e.event {
                Some(sync_event::Event::ConnNew(ConnNew { entry: Some(e) })) => flow_index(e),
                _ => None,
            })
            .collect();
        self.table.apply_events(events)?;
        let now = now_us();
        let mut l = self.latencies.lock().unwrap();
        for i in idx {
            if let Some(t) = self.pushed.get(i as usize) {
                let t = t.load(Ordering::Relaxed);
                l.push((t, now.saturating_sub(t)));
            }
        }
        Ok(())
    }
    fn apply_service_table(&self, t: lb_proto::common::ServiceTable) -> Result<(), String> {
        self.table.apply_service_table(t)
    }
    fn len(&self) -> u64 {
        self.table.len()
    }
}

fn q(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

async fn start(table: Arc<MemTable>) -> (SyncServer, syncd::Publisher, std::net::SocketAddr) {
    let (server, publisher) = SyncServer::new(node("a"), table, MasterConfig::default());
    server.set_serving(true);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(l, None, std::future::pending()).await });
    (server, publisher, addr)
}

async fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = now_us() + secs * 1_000_000;
    while !f() {
        assert!(now_us() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn lag_at(rate: u64, secs: u64, series: Option<&str>) {
    let n = rate * secs;
    // Sized for the run, as the sink is: a one-map rehash of 10^5 entries
    // stalls the pusher, which then pushes a burst (a bench artifact).
    let table = Arc::new(MemTable::with_capacity(n as usize));
    let (server, publisher, addr) = start(table.clone()).await;
    let pushed: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let sink = Arc::new(TimedSink {
        table: MemTable::new(),
        pushed: pushed.clone(),
        latencies: Default::default(),
    });
    let sub = Subscriber::spawn(
        node("b"),
        SubscriberConfig::new(addr.to_string()),
        sink.clone(),
    );
    wait("connected", 10, || {
        server.status().subscribers.len() == 1 && sub.status().snapshots_applied == 1
    })
    .await;

    let t = table.clone();
    let pusher = std::thread::spawn(move || {
        let start = now_us();
        let mut i = 0u64;
        while i < n {
            // Pace: everything due by now, then a short sleep.
            let due = ((now_us() - start) * rate / 1_000_000).min(n);
            while i < due {
                let ev = mem::flow_new(i);
                t.apply_local(ev.clone());
                pushed[i as usize].store(now_us(), Ordering::Relaxed);
                publisher.push(ev);
                i += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        publisher
    });
    let _publisher = tokio::task::spawn_blocking(move || pusher.join().unwrap())
        .await
        .unwrap();
    wait("all applied", 30, || sink.len() == n).await;
    wait("all acked", 10, || {
        let s = server.status();
        s.subscribers[0].acked_sequence == s.last_sequence
    })
    .await;
    let st = server.status().subscribers[0].clone();
    let samples = std::mem::take(&mut *sink.latencies.lock().unwrap());
    if let Some(dir) = series {
        let mut csv = String::from("push_us,latency_us\n");
        for (t, l) in &samples {
            csv.push_str(&format!("{t},{l}\n"));
        }
        std::fs::write(format!("{dir}/lag-{rate}.csv"), csv).unwrap();
    }
    let mut l: Vec<u64> = samples.into_iter().map(|(_, l)| l).collect();
    println!(
        "{rate:>6}/s x {secs} s: {n} events in {} batches | push->ack p50 {:.2} ms p99 {:.2} ms (master) | push->apply p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        st.batches_sent,
        st.ack_latency_p50_us as f64 / 1000.0,
        st.ack_latency_p99_us as f64 / 1000.0,
        q(&mut l, 0.5),
        q(&mut l, 0.99),
        q(&mut l, 1.0),
    );
    sub.shutdown().await;
    server.set_serving(false);
}

/// CPU time of the whole process (both ends), µs; /proc counts in 1/100 s.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() * 10_000
}

async fn snapshot(n: u64) {
    let t0 = now_us();
    let table = Arc::new(MemTable::with_entries((0..n).map(mem::flow_entry)));
    println!(
        "snapshot: built a {n}-entry table in {:.2} s",
        (now_us() - t0) as f64 / 1e6
    );
    let (server, _publisher, addr) = start(table.clone()).await;
    let sink = Arc::new(MemTable::new());
    let t0 = now_us();
    let cpu0 = cpu_us();
    let sub = Subscriber::spawn(
        node("b"),
        SubscriberConfig::new(addr.to_string()),
        sink.clone(),
    );
    wait("snapshot applied", 60, || {
        sub.status().snapshots_applied == 1
    })
    .await;
    let took = Duration::from_micros(now_us() - t0);
    let cpu = Duration::from_micros(cpu_us() - cpu0);
    wait("snapshot acked", 10, || {
        server
            .status()
            .subscribers
            .first()
            .is_some_and(|s| s.last_snapshot_duration.is_some())
    })
    .await;
    let st = server.status().subscribers[0].clone();
    let ss = sub.status();
    let snap = ss.last_snapshot.unwrap();
    assert_eq!(sink.len(), n);
    println!(
        "snapshot: {n} entries transferred+applied in {:.2} s (connect to applied; {:.2} s CPU, both ends); master SnapshotBegin->ack {:.2} s; {:.1} bytes/entry on the wire ({} bytes in {} ms subscriber-side)",
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        st.last_snapshot_duration.unwrap().as_secs_f64(),
        st.last_snapshot_bytes as f64 / n as f64,
        snap.bytes,
        snap.duration.as_millis(),
    );
    sub.shutdown().await;
    server.set_serving(false);
}

/// Command-line options (see the module comment).
struct Opts {
    rates: Vec<u64>,
    secs: u64,
    snapshot: u64,
    series: Option<String>,
}

const USAGE: &str =
    "usage: sync_bench [--rates R1,R2,...|none] [--secs S] [--snapshot N] [--series DIR]
       sync_bench N   (snapshot of N entries only)";

/// Exit with `why` and the usage (a bench tool: no panic on a typo).
fn usage(why: &str) -> ! {
    eprintln!("sync_bench: {why}\n{USAGE}");
    std::process::exit(2)
}

fn number<T: std::str::FromStr>(what: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{what}: `{v}` is not a number")))
}

fn opts() -> Opts {
    let mut o = Opts {
        rates: vec![1_000, 10_000, 50_000],
        secs: 3,
        snapshot: 1_000_000,
        series: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--rates" => {
                let v = val();
                o.rates = if v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(|r| number("--rates", r)).collect()
                };
            }
            "--secs" => o.secs = number("--secs", &val()),
            "--snapshot" => o.snapshot = number("--snapshot", &val()),
            "--series" => o.series = Some(val()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            n if n.starts_with('-') => usage(&format!("unknown option {n}")),
            n => {
                // The historical form: a bare snapshot size, snapshot only.
                o.snapshot = number("snapshot size", n);
                o.rates.clear();
            }
        }
    }
    o
}

fn main() {
    now_us();
    let o = opts();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for &rate in &o.rates {
            lag_at(rate, o.secs, o.series.as_deref()).await;
        }
        if o.snapshot > 0 {
            snapshot(o.snapshot).await;
        }
    });
}
