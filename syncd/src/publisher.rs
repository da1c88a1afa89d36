//! The handle the dataplane pushes sync events into.
//!
//! Hot worker threads must never wait on the network: a push takes a short
//! uncontended lock and appends to a vector; the server's sealer task swaps
//! the vector out and numbers the events. Memory is bounded: past
//! `capacity` queued events (the sealer is starved), pushes are dropped and
//! counted, and the log is told events were lost, which sends every
//! subscriber a fresh snapshot rather than a table with holes. While this
//! node is not serving, pushes are dropped at once (one atomic load).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lb_proto::sync::SyncEvent;
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct PublisherShared {
    pub(crate) queue: Mutex<Vec<SyncEvent>>,
    pub(crate) capacity: usize,
    pub(crate) notify: Notify,
    pub(crate) enabled: AtomicBool,
    pub(crate) lost: AtomicBool,
    pub(crate) dropped: AtomicU64,
    pub(crate) table_changed: AtomicBool,
}

impl PublisherShared {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            notify: Notify::new(),
            enabled: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            table_changed: AtomicBool::new(false),
        }
    }

    /// Takes the queued events (the sealer's side).
    pub(crate) fn drain(&self, spare: &mut Vec<SyncEvent>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, spare);
    }
}

/// Cheap, cloneable handle for the dataplane (see the module comment).
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(crate) shared: Arc<PublisherShared>,
}

impl Publisher {
    /// Queues one event. Never blocks on I/O.
    pub fn push(&self, ev: SyncEvent) {
        self.push_many(std::iter::once(ev));
    }

    /// Queues several events in order, under one lock.
    pub fn push_many(&self, evs: impl IntoIterator<Item = SyncEvent>) {
        let s = &self.shared;
        if !s.enabled.load(Ordering::Relaxed) {
            return;
        }
        let was_empty;
        let mut dropped = 0u64;
        {
            let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            was_empty = q.is_empty();
            for ev in evs {
                if q.len() < s.capacity {
                    q.push(ev);
                } else {
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            s.dropped.fetch_add(dropped, Ordering::Relaxed);
            s.lost.store(true, Ordering::Relaxed);
        }
        if was_empty {
            s.notify.notify_one();
        }
    }

    /// The rule set changed: the next ServiceTable goes out between the
    /// events pushed before and after this call.
    pub fn service_table_changed(&self) {
        // Marks the point: events queued so far are sealed before the table.
        self.shared.table_changed.store(true, Ordering::Release);
        self.shared.notify.notify_one();
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// True while this node serves (events are kept).
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }
}
