//! The driver: one tokio task per checked real server, each sleeping to
//! its [`CheckState::poll_timeout`], taking a permit of the semaphore that
//! bounds checks in flight, running its probe under the check's timeout
//! and handing the outcome back to the state machine. Verdict changes go
//! to the [`Monitor`] task, which applies them through
//! [`ControlState::set_verdict`] (configured weight untouched, effective
//! weight changed), logs them, and runs the notify and quorum commands.
//!
//! ```text
//!   checker task ×N ──Event──► Monitor::run ──► ControlState::set_verdict ──► Dataplane::apply
//!        │  ▲                      │   ▲
//!        │  └─ Semaphore           │   └─ ControlState::subscribe (edit, reload): reconcile
//!        └─ HealthRegistry (CheckState per server, read by GetHealth)
//!                                  └─► notify / quorum commands (detached, killed at 10 s)
//! ```
//!
//! Nothing here runs on the dataplane's threads; the dataplane only ever
//! sees a new service table.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::apply::Verdict;
use super::state::{Change, CheckState, Health, Outcome};
use super::{
    COMMAND_TIMEOUT, CheckSpec, CommandLine, Probe, human, probe_cmd, probe_http, probe_tcp,
    probe_udp, service_word,
};
use crate::api::ControlState;
use crate::service::ServiceKey;

/// Extra time a command check gets past its timeout, for killing it.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Counters over every check, for a metrics exporter to read.
#[derive(Debug, Default)]
pub struct HealthCounters {
    /// Checks run.
    pub checks: AtomicU64,
    /// Checks failed.
    pub failures: AtomicU64,
    /// Checks that ran out of time.
    pub timeouts: AtomicU64,
    /// Checks running now.
    pub in_flight: AtomicU64,
    /// Servers that went up.
    pub went_up: AtomicU64,
    /// Servers that went down.
    pub went_down: AtomicU64,
    /// Quorum gained or lost.
    pub quorum_changes: AtomicU64,
    /// Notify and quorum commands run.
    pub commands: AtomicU64,
    /// Notify and quorum commands that failed or were killed.
    pub commands_failed: AtomicU64,
}

/// A copy of [`HealthCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Checks that ran out of time.
    pub timeouts: u64,
    /// Checks running now.
    pub in_flight: u64,
    /// Servers that went up.
    pub went_up: u64,
    /// Servers that went down.
    pub went_down: u64,
    /// Quorum gained or lost.
    pub quorum_changes: u64,
    /// Notify and quorum commands run.
    pub commands: u64,
    /// Notify and quorum commands that failed or were killed.
    pub commands_failed: u64,
}

impl HealthCounters {
    /// The counters now.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            checks: self.checks.load(Relaxed),
            failures: self.failures.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            went_up: self.went_up.load(Relaxed),
            went_down: self.went_down.load(Relaxed),
            quorum_changes: self.quorum_changes.load(Relaxed),
            commands: self.commands.load(Relaxed),
            commands_failed: self.commands_failed.load(Relaxed),
        }
    }
}

/// One checked server as the API reads it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The check in force.
    pub spec: Arc<CheckSpec>,
    /// Its state machine (locked briefly by the checker and by readers).
    pub state: Arc<Mutex<CheckState>>,
}

/// Every checked server's state, and the counters.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<(ServiceKey, SocketAddr), Checked>>,
    /// Counters over every check.
    pub counters: HealthCounters,
}

impl HealthRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ServiceKey, SocketAddr), Checked>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The check of `dest` of `key`, if it is checked.
    pub fn get(&self, key: ServiceKey, dest: SocketAddr) -> Option<Checked> {
        self.lock().get(&(key, dest)).cloned()
    }

    fn insert(&self, key: ServiceKey, dest: SocketAddr, c: Checked) {
        self.lock().insert((key, dest), c);
    }

    fn remove(&self, key: ServiceKey, dest: SocketAddr) {
        self.lock().remove(&(key, dest));
    }
}

/// A verdict change from a checker task.
#[derive(Debug)]
struct Event {
    key: ServiceKey,
    dest: SocketAddr,
    generation: u64,
    change: Change,
    verdict: Verdict,
}

#[derive(Debug)]
struct Running {
    spec: Arc<CheckSpec>,
    generation: u64,
    task: JoinHandle<()>,
}

/// The health monitor of one director.
#[derive(Debug)]
pub struct Monitor {
    state: Arc<ControlState>,
    sem: Arc<Semaphore>,
    running: HashMap<(ServiceKey, SocketAddr), Running>,
    generation: u64,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Monitor {
    /// A monitor over `state`, with at most `max_in_flight` checks running
    /// at once.
    pub fn new(state: Arc<ControlState>, max_in_flight: usize) -> Monitor {
        let (tx, rx) = mpsc::unbounded_channel();
        Monitor {
            state,
            sem: Arc::new(Semaphore::new(max_in_flight.max(1))),
            running: HashMap::new(),
            generation: 0,
            tx,
            rx,
        }
    }

    /// Check until `shutdown` completes; follows every edit and reload.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut changes = self.state.subscribe();
        self.reconcile();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = changes.changed() => {
                    if r.is_err() {
                        break;
                    }
                    self.reconcile();
                    self.quorum_commands();
                }
                Some(ev) = self.rx.recv() => self.handle(ev),
            }
        }
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }

    /// Start checkers for servers that need one, stop those whose server
    /// or check is gone, restart those whose check changed.
    fn reconcile(&mut self) {
        let (specs, plan) = self.state.health_config();
        let mut wanted: HashMap<(ServiceKey, SocketAddr), Arc<CheckSpec>> = HashMap::new();
        for s in &specs {
            for d in &s.dests {
                if let Some(c) = plan.check_for(&s.key, d.addr) {
                    wanted.insert((s.key, d.addr), Arc::clone(c));
                }
            }
        }
        let registry = Arc::clone(&self.state.health);
        let mut stopped = Vec::new();
        self.running.retain(|k, r| {
            let keep = wanted.get(k).is_some_and(|c| **c == *r.spec);
            if !keep {
                r.task.abort();
                registry.remove(k.0, k.1);
                stopped.push(*k);
            }
            keep
        });
        let mut started = 0usize;
        for (k, spec) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            self.generation += 1;
            let now = self.state.now();
            // Spread the first checks over a tenth of a second per server
            // started together, so a reload does not burst.
            let first = Duration::from_millis(10 * (started as u64 % 100));
            started += 1;
            let st = Arc::new(Mutex::new(CheckState::new(now, spec.timing, first)));
            registry.insert(
                k.0,
                k.1,
                Checked {
                    spec: Arc::clone(&spec),
                    state: Arc::clone(&st),
                },
            );
            let task = tokio::spawn(checker(
                Arc::clone(&self.state),
                k,
                Arc::clone(&spec),
                st,
                self.generation,
                Arc::clone(&self.sem),
                self.tx.clone(),
            ));
            self.running.insert(
                k,
                Running {
                    spec,
                    generation: self.generation,
                    task,
                },
            );
        }
        if let Err(e) = self.state.clear_verdicts(&stopped) {
            eprintln!("directord: health: applying the verdicts failed: {e}");
        }
    }

    fn handle(&mut self, ev: Event) {
        let current = self
            .running
            .get(&(ev.key, ev.dest))
            .is_some_and(|r| r.generation == ev.generation);
        if !current {
            return; // from a checker stopped since
        }
        if let Err(e) = self.state.set_verdict(ev.key, ev.dest, ev.verdict) {
            eprintln!("directord: health: applying the verdict failed: {e}");
        }
        let counters = &self.state.health.counters;
        if let Some(t) = &ev.change.transition {
            let word = match t.to {
                Health::Up => {
                    counters.went_up.fetch_add(1, Relaxed);
                    "up"
                }
                Health::Down => {
                    counters.went_down.fetch_add(1, Relaxed);
                    "down"
                }
                Health::Unknown => "unknown",
            };
            println!(
                "directord: health: real server {} of {} {} → {}: {}",
                ev.dest, ev.key.vip, t.from, t.to, t.reason
            );
            let spec = self.running.get(&(ev.key, ev.dest)).map(|r| &r.spec);
            let cmd = spec.and_then(|s| match t.to {
                Health::Up => s.notify_up.clone(),
                Health::Down => s.notify_down.clone(),
                Health::Unknown => None,
            });
            if let Some(cmd) = cmd {
                let args = vec![ev.dest.to_string(), service_word(&ev.key), word.to_string()];
                spawn_command(&self.state, cmd, args, "notify");
            }
        } else if ev.change.weight_changed {
            println!(
                "directord: health: real server {} of {}: dynamic weight {}",
                ev.dest,
                ev.key.vip,
                ev.verdict
                    .weight
                    .map_or_else(|| "cleared".to_string(), |w| w.to_string())
            );
        }
        self.quorum_commands();
    }

    /// Log and run the commands of every quorum change since last time.
    fn quorum_commands(&self) {
        let plan = self.state.health_plan();
        for (key, up) in self.state.take_quorum_changes() {
            self.state
                .health
                .counters
                .quorum_changes
                .fetch_add(1, Relaxed);
            let h = plan.service(&key);
            let sorry = h.and_then(|h| h.sorry_server).map_or(String::new(), |s| {
                if up {
                    format!("; sorry server {} leaves", s.addr)
                } else {
                    format!("; sorry server {} takes over", s.addr)
                }
            });
            println!(
                "directord: health: service {} {} quorum {}{sorry}",
                key.protocol,
                key.vip,
                if up { "regained" } else { "lost" }
            );
            let cmd = h.and_then(|h| {
                if up {
                    h.quorum_up.clone()
                } else {
                    h.quorum_down.clone()
                }
            });
            if let Some(cmd) = cmd {
                let state = if up { "up" } else { "down" };
                spawn_command(
                    &self.state,
                    cmd,
                    vec![service_word(&key), state.into()],
                    "quorum",
                );
            }
        }
    }
}

/// Run a notify or quorum command in the background, killed at
/// [`COMMAND_TIMEOUT`]; a failure is logged and counted.
fn spawn_command(state: &Arc<ControlState>, cmd: CommandLine, args: Vec<String>, what: &str) {
    let state = Arc::clone(state);
    let what = what.to_string();
    state.health.counters.commands.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        let failed = match probe_cmd::run(&cmd, &args, &[], COMMAND_TIMEOUT).await {
            Ok(s) if s.success() => None,
            Ok(s) => Some(s.to_string()),
            Err(e) => Some(e),
        };
        if let Some(why) = failed {
            state.health.counters.commands_failed.fetch_add(1, Relaxed);
            eprintln!(
                "directord: health: {what} command `{cmd} {}`: {why}",
                args.join(" ")
            );
        }
    });
}

fn lock(st: &Mutex<CheckState>) -> std::sync::MutexGuard<'_, CheckState> {
    st.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One server's checks, forever (aborted by the monitor).
async fn checker(
    state: Arc<ControlState>,
    (key, dest): (ServiceKey, SocketAddr),
    spec: Arc<CheckSpec>,
    st: Arc<Mutex<CheckState>>,
    generation: u64,
    sem: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let target = spec.target(dest);
    let service = service_word(&key);
    let counters = &state.health.counters;
    loop {
        let due = lock(&st).poll_timeout().unwrap_or_else(|| state.now());
        let wait = due.saturating_since(state.now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Ok(permit) = sem.acquire().await else {
            return; // closed: shutting down
        };
        let Some(timeout) = lock(&st).start(state.now()) else {
            continue;
        };
        counters.in_flight.fetch_add(1, Relaxed);
        let timed_out = || format!("timeout after {}", human(timeout));
        let result = match &spec.probe {
            Probe::Tcp => tokio::time::timeout(timeout, probe_tcp::probe(target))
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            Probe::Http(h) => tokio::time::timeout(timeout, probe_http::probe(target, h))
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            Probe::Udp(u) => tokio::time::timeout(timeout, probe_udp::probe(target, u))
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            // The command kills itself at its timeout; the outer bound is
            // a safety net.
            Probe::Command(c) => tokio::time::timeout(
                timeout + KILL_GRACE,
                probe_cmd::probe(target, &service, c, timeout),
            )
            .await
            .unwrap_or_else(|_| Err(timed_out())),
        };
        drop(permit);
        counters.in_flight.fetch_sub(1, Relaxed);
        counters.checks.fetch_add(1, Relaxed);
        let outcome = match result {
            Ok(weight) => Outcome::Pass { weight },
            Err(reason) => {
                counters.failures.fetch_add(1, Relaxed);
                if reason.starts_with("timeout after") {
                    counters.timeouts.fetch_add(1, Relaxed);
                }
                Outcome::Fail(reason)
            }
        };
        let (change, verdict) = {
            let mut s = lock(&st);
            let change = s.finish(state.now(), outcome);
            let verdict = Verdict {
                health: s.health(),
                on_failure: spec.on_failure,
                weight: s.weight(),
            };
            (change, verdict)
        };
        if !change.is_empty()
            && tx
                .send(Event {
                    key,
                    dest,
                    generation,
                    change,
                    verdict,
                })
                .is_err()
        {
            return;
        }
    }
}
