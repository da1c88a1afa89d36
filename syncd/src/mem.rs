//! An in-memory connection table that is both a [`ConnSource`] and a
//! [`ConnSink`], plus generators of entries and events. It is what the tests
//! and the bench use, and a reference for what the director's real table
//! must do: validate before storing, build snapshots beside the live table,
//! apply a batch all or nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use lb_proto::common::{
    ConnEntry, ConnFlag, ConnState, Endpoint, ForwardMethod, Protocol, ServiceTable,
};
use lb_proto::sync::{
    ConnExpire, ConnNew, ConnUpdate, SyncEvent, TemplateExpire, TemplateNew, UpdateKind, sync_event,
};

use crate::codec::{EntryKey, validate_event};
use crate::traits::{ConnSink, ConnSource};

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<EntryKey, ConnEntry>,
    building: Option<(u64, HashMap<EntryKey, ConnEntry>)>,
    table: ServiceTable,
}

/// A connection table in a `Mutex<HashMap>`.
#[derive(Debug, Default)]
pub struct MemTable {
    inner: Mutex<Inner>,
}

/// Applies one event to a map (upsert or delete by key).
pub fn apply_event(map: &mut HashMap<EntryKey, ConnEntry>, ev: SyncEvent) {
    match ev.event {
        Some(sync_event::Event::ConnNew(ConnNew { entry: Some(e) }))
        | Some(sync_event::Event::ConnUpdate(ConnUpdate { entry: Some(e), .. }))
        | Some(sync_event::Event::TemplateNew(TemplateNew { entry: Some(e) })) => {
            map.insert(EntryKey::of_entry(&e), e);
        }
        Some(sync_event::Event::ConnExpire(ConnExpire { key: Some(k) })) => {
            map.remove(&EntryKey::of_conn_key(&k));
        }
        Some(sync_event::Event::TemplateExpire(TemplateExpire { key: Some(k) })) => {
            map.remove(&EntryKey::of_template_key(&k));
        }
        _ => {}
    }
}

impl MemTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table with room for `n` entries before it grows (a single
    /// map rehashes everything at once when it grows, under its lock).
    pub fn with_capacity(n: usize) -> Self {
        let t = Self::new();
        t.inner.lock().expect("poisoned").live.reserve(n);
        t
    }

    /// A table holding `entries`.
    pub fn with_entries(entries: impl IntoIterator<Item = ConnEntry>) -> Self {
        let t = Self::new();
        {
            let mut g = t.inner.lock().expect("poisoned");
            for e in entries {
                g.live.insert(EntryKey::of_entry(&e), e);
            }
        }
        t
    }

    /// Applies an event as the dataplane would (master side).
    pub fn apply_local(&self, ev: SyncEvent) {
        apply_event(&mut self.inner.lock().expect("poisoned").live, ev);
    }

    /// Sets the rule set (master side).
    pub fn set_service_table(&self, table: ServiceTable) {
        self.inner.lock().expect("poisoned").table = table;
    }

    /// A copy of the live table.
    pub fn snapshot_map(&self) -> HashMap<EntryKey, ConnEntry> {
        self.inner.lock().expect("poisoned").live.clone()
    }

    /// The rule set held.
    pub fn table(&self) -> ServiceTable {
        self.inner.lock().expect("poisoned").table.clone()
    }

    /// Calls `f` on the live map under the lock.
    pub fn with_live<R>(&self, f: impl FnOnce(&HashMap<EntryKey, ConnEntry>) -> R) -> R {
        f(&self.inner.lock().expect("poisoned").live)
    }
}

impl ConnSource for MemTable {
    fn for_each_entry(&self, f: &mut dyn FnMut(ConnEntry)) {
        // Copy out in slices so the dataplane is not held up for the whole
        // walk (a real table walks shard by shard).
        let entries: Vec<ConnEntry> = self
            .inner
            .lock()
            .expect("poisoned")
            .live
            .values()
            .cloned()
            .collect();
        for e in entries {
            f(e);
        }
    }

    fn len(&self) -> u64 {
        self.inner.lock().expect("poisoned").live.len() as u64
    }

    fn service_table(&self) -> ServiceTable {
        self.table()
    }
}

impl ConnSink for MemTable {
    fn begin_snapshot(&self, snapshot_id: u64) {
        self.inner.lock().expect("poisoned").building = Some((snapshot_id, HashMap::new()));
    }

    fn expect_snapshot_entries(&self, snapshot_id: u64, expected: u64) {
        let mut g = self.inner.lock().expect("poisoned");
        if let Some((id, map)) = &mut g.building
            && *id == snapshot_id
        {
            map.reserve(expected.min(1 << 24) as usize);
        }
    }

    fn apply_snapshot_entries(
        &self,
        snapshot_id: u64,
        entries: Vec<ConnEntry>,
    ) -> Result<(), String> {
        for e in &entries {
            crate::codec::validate_entry(e).map_err(|m| format!("snapshot entry refused: {m}"))?;
        }
        let mut g = self.inner.lock().expect("poisoned");
        match &mut g.building {
            Some((id, map)) if *id == snapshot_id => {
                for mut e in entries {
                    e.flags |= ConnFlag::Synced as u32;
                    map.insert(EntryKey::of_entry(&e), e);
                }
                Ok(())
            }
            _ => Err(format!("snapshot {snapshot_id} was not begun")),
        }
    }

    fn end_snapshot(&self, snapshot_id: u64) -> Result<(), String> {
        let mut g = self.inner.lock().expect("poisoned");
        match g.building.take() {
            Some((id, map)) if id == snapshot_id => {
                g.live = map;
                Ok(())
            }
            other => {
                g.building = other;
                Err(format!("snapshot {snapshot_id} was not begun"))
            }
        }
    }

    fn abort_snapshot(&self, snapshot_id: u64) {
        let mut g = self.inner.lock().expect("poisoned");
        if matches!(&g.building, Some((id, _)) if *id == snapshot_id) {
            g.building = None;
        }
    }

    fn apply_events(&self, events: Vec<SyncEvent>) -> Result<(), String> {
        // All or nothing: a malformed event refuses the whole batch.
        for ev in &events {
            validate_event(ev).map_err(|m| format!("event refused: {m}"))?;
        }
        let mut g = self.inner.lock().expect("poisoned");
        for mut ev in events {
            if let Some(
                sync_event::Event::ConnNew(ConnNew { entry: Some(e) })
                | sync_event::Event::ConnUpdate(ConnUpdate { entry: Some(e), .. })
                | sync_event::Event::TemplateNew(TemplateNew { entry: Some(e) }),
            ) = &mut ev.event
            {
                e.flags |= ConnFlag::Synced as u32;
            }
            apply_event(&mut g.live, ev);
        }
        Ok(())
    }

    fn apply_service_table(&self, table: ServiceTable) -> Result<(), String> {
        self.inner.lock().expect("poisoned").table = table;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.inner.lock().expect("poisoned").live.len() as u64
    }
}

fn ep(ip: impl Into<String>, port: u32) -> Option<Endpoint> {
    Some(Endpoint {
        ip: ip.into(),
        port,
    })
}

/// Flow number `i`: a distinct client address:port per `i` (up to 2^32).
pub fn flow_entry(i: u64) -> ConnEntry {
    let client = Ipv4Addr::from(0x6440_0000u32.wrapping_add((i >> 16) as u32));
    ConnEntry {
        protocol: Protocol::Tcp as i32,
        client: ep(client.to_string(), (i & 0xffff) as u32),
        vip: ep("10.0.0.100", 80),
        real_server: ep(format!("10.0.1.{}", 2 + i % 8), 80),
        method: ForwardMethod::Dr as i32,
        state: ConnState::Established as i32,
        remaining_timeout_ms: 900_000,
        flags: ConnFlag::NoOutput as u32,
        ..Default::default()
    }
}

/// Template number `i`.
pub fn template_entry(i: u64) -> ConnEntry {
    let client = Ipv4Addr::from(0x0a80_0000u32.wrapping_add(i as u32));
    ConnEntry {
        protocol: Protocol::Tcp as i32,
        client: ep(client.to_string(), 0),
        vip: ep("10.0.0.100", 80),
        real_server: ep("10.0.1.2", 80),
        method: ForwardMethod::Dr as i32,
        state: ConnState::None as i32,
        remaining_timeout_ms: 360_000,
        flags: ConnFlag::Template as u32 | ConnFlag::NoCport as u32,
        persistence_prefix_len: Some(32),
        ..Default::default()
    }
}

fn ev(e: sync_event::Event) -> SyncEvent {
    SyncEvent { event: Some(e) }
}

/// ConnNew of flow `i`.
pub fn flow_new(i: u64) -> SyncEvent {
    ev(sync_event::Event::ConnNew(ConnNew {
        entry: Some(flow_entry(i)),
    }))
}

/// ConnUpdate of flow `i` to `state` with `remaining_ms` left.
pub fn flow_update(i: u64, state: ConnState, remaining_ms: u32) -> SyncEvent {
    let mut e = flow_entry(i);
    e.state = state as i32;
    e.remaining_timeout_ms = remaining_ms;
    if state != ConnState::Established {
        e.flags |= ConnFlag::Inactive as u32;
    }
    ev(sync_event::Event::ConnUpdate(ConnUpdate {
        entry: Some(e),
        kind: UpdateKind::StateChange as i32,
    }))
}

/// ConnExpire of flow `i`.
pub fn flow_expire(i: u64) -> SyncEvent {
    ev(sync_event::Event::ConnExpire(ConnExpire {
        key: Some(EntryKey::conn_key(&flow_entry(i))),
    }))
}

/// TemplateNew of template `i`.
pub fn template_new(i: u64) -> SyncEvent {
    ev(sync_event::Event::TemplateNew(TemplateNew {
        entry: Some(template_entry(i)),
    }))
}

/// TemplateExpire of template `i`.
pub fn template_expire(i: u64) -> SyncEvent {
    ev(sync_event::Event::TemplateExpire(TemplateExpire {
        key: Some(EntryKey::template_key(&template_entry(i))),
    }))
}

/// Compares two tables ignoring the SYNCED flag and remaining timeouts
/// (which the receiver restarts); returns a description of the first
/// difference.
pub fn diff(a: &HashMap<EntryKey, ConnEntry>, b: &HashMap<EntryKey, ConnEntry>) -> Option<String> {
    let norm = |e: &ConnEntry| {
        let mut e = e.clone();
        e.flags &= !(ConnFlag::Synced as u32);
        e
    };
    if a.len() != b.len() {
        return Some(format!("sizes differ: {} vs {}", a.len(), b.len()));
    }
    for (k, ea) in a {
        match b.get(k) {
            None => return Some(format!("{k:?} missing on the right")),
            Some(eb) if norm(ea) != norm(eb) => {
                return Some(format!("{k:?} differs: {ea:?} vs {eb:?}"));
            }
            Some(_) => {}
        }
    }
    None
}
