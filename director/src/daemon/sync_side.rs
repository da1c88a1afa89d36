//! The director's side of connection sync: its connection table as the
//! `syncd` source (master) and sink (backup), and the hook through which
//! the workers' connection events reach the sync stream.
//!
//! Master: every new flow, state change and expiry becomes a sync event
//! ([`SyncHook::on_event`], called by the workers and the expiry walk);
//! a periodic walk re-sends the timers of flows that saw traffic
//! ([`SyncHook::refresh`]), so the backup's copies live as long as the
//! flows. Backup: entries are imported into the same table the dataplane
//! forwards from, so they are usable the moment this node becomes master,
//! and expire by their synced timeouts meanwhile.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use lb_proto::common as pb;
use lb_proto::sync::{self as sp, sync_event::Event};
use syncd::{ConnSink, ConnSource, Publisher};

use crate::api::ControlState;
use crate::api::convert::{self, to_conn_entry};
use crate::conn::{ConnEvent, ConnKey, ConnRecord, ImportError};
use crate::dataplane::Dataplane;
use crate::service_table::{ServiceSpec, ServiceTable};
use crate::time::Millis;

use super::clock::Clock;

/// Where the workers' connection events go once sync runs.
#[derive(Debug, Default)]
pub struct SyncHook {
    publisher: OnceLock<Publisher>,
}

/// A record on the wire, with its service's persistence prefix for
/// templates.
fn entry_of(rec: &ConnRecord, table: &ServiceTable) -> pb::ConnEntry {
    let prefix = if rec.flags.template {
        service_of(table, rec).and_then(|s| s.persistence.map(|p| p.netmask_prefix))
    } else {
        None
    };
    to_conn_entry(rec, prefix, false)
}

/// The service a record belongs to: by protocol and VIP:port, or, for
/// all-port templates (port 0), the first service on that VIP that has
/// the real server.
fn service_of<'t>(table: &'t ServiceTable, rec: &ConnRecord) -> Option<&'t crate::Service> {
    if let Some(s) = table.get(rec.protocol, rec.vip) {
        return Some(s);
    }
    table
        .services()
        .into_iter()
        .find(|s| {
            s.key.protocol == rec.protocol
                && s.key.vip.ip() == rec.vip.ip()
                && s.dest(rec.real_server).is_some()
        })
        .map(|s| &**s)
}

fn conn_key_pb(key: &ConnKey) -> pb::ConnKey {
    pb::ConnKey {
        protocol: convert::to_protocol(key.protocol) as i32,
        client: Some(convert::to_endpoint(key.client)),
        vip: Some(convert::to_endpoint(key.vip)),
    }
}

fn event(e: Event) -> sp::SyncEvent {
    sp::SyncEvent { event: Some(e) }
}

impl SyncHook {
    /// Route events to `publisher` from now on (once).
    pub fn attach(&self, publisher: Publisher) {
        let _ = self.publisher.set(publisher);
    }

    /// The rule set changed (an edit, a reload): the master sends it to
    /// the backup (a no-op while not serving).
    pub fn table_changed(&self) {
        if let Some(p) = self.publisher.get() {
            p.service_table_changed();
        }
    }

    fn live(&self) -> Option<&Publisher> {
        self.publisher.get().filter(|p| p.is_enabled())
    }

    /// One connection-table event, from a worker or the expiry walk.
    /// Cheap when this node is not serving sync.
    pub fn on_event(&self, ev: ConnEvent, dp: &Dataplane, now: Millis) {
        let Some(p) = self.live() else {
            return;
        };
        let table = dp.services();
        let out = match ev {
            ConnEvent::Created(rec) if rec.flags.template => Event::TemplateNew(sp::TemplateNew {
                entry: Some(entry_of(&rec, &table)),
            }),
            ConnEvent::Created(rec) => Event::ConnNew(sp::ConnNew {
                entry: Some(entry_of(&rec, &table)),
            }),
            ConnEvent::StateChanged { key, .. } => {
                let Some(rec) = dp.conns().get(&key, now) else {
                    return;
                };
                Event::ConnUpdate(sp::ConnUpdate {
                    entry: Some(entry_of(&rec, &table)),
                    kind: sp::UpdateKind::StateChange as i32,
                })
            }
            ConnEvent::Expired(rec) => match rec.as_template_key() {
                Some(tk) => Event::TemplateExpire(sp::TemplateExpire {
                    key: Some(pb::TemplateKey {
                        protocol: convert::to_protocol(tk.protocol) as i32,
                        client_ip: tk.client_net.to_string(),
                        vip: Some(convert::to_endpoint(SocketAddr::new(tk.vip, tk.vport))),
                        fwmark: 0,
                    }),
                }),
                None => Event::ConnExpire(sp::ConnExpire {
                    key: Some(conn_key_pb(&rec.key())),
                }),
            },
        };
        p.push(event(out));
    }

    /// Re-send the timers of every entry that saw traffic in the last
    /// `period` (its remaining time is within `period` of its state's
    /// full timeout), so the backup's copy does not expire under a live
    /// flow. Returns how many were sent.
    pub fn refresh(&self, dp: &Dataplane, now: Millis, period: Duration) -> usize {
        let Some(p) = self.live() else {
            return 0;
        };
        let table = dp.services();
        let timeouts = dp.conns().timeouts();
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let mut batch = Vec::new();
        dp.conns().snapshot(now, |rec| {
            let full = u64::try_from(timeouts.get(rec.state).as_millis()).unwrap_or(u64::MAX);
            if !rec.flags.template && rec.timeout_ms.saturating_add(period_ms) >= full {
                batch.push(event(Event::ConnUpdate(sp::ConnUpdate {
                    entry: Some(entry_of(&rec, &table)),
                    kind: sp::UpdateKind::TimeoutRefresh as i32,
                })));
            }
        });
        let n = batch.len();
        p.push_many(batch);
        n
    }
}

/// The rule set on the wire, as the master replicates it (configuration
/// order, so that both nodes list the services alike).
pub fn service_table_pb(state: &ControlState) -> pb::ServiceTable {
    crate::api::rules::table_of(state, false)
}

/// The rule set from the wire; refused whole on the first bad entry.
pub fn specs_of(table: &pb::ServiceTable) -> Result<Vec<ServiceSpec>, String> {
    table
        .services
        .iter()
        .map(|c| {
            let mut spec =
                convert::service_spec(c.spec.as_ref()).map_err(|s| s.message().to_owned())?;
            spec.dests = c
                .real_servers
                .iter()
                .map(|rs| {
                    convert::dest_spec(spec.key, Some(rs)).map_err(|s| s.message().to_owned())
                })
                .collect::<Result<_, _>>()?;
            Ok(spec)
        })
        .collect()
}

/// The master's view of the table for `syncd`.
#[derive(Debug)]
pub struct TableSource {
    /// The node's control state (specs, dataplane).
    pub state: Arc<ControlState>,
    /// The daemon's clock.
    pub clock: Clock,
}

impl ConnSource for TableSource {
    fn for_each_entry(&self, f: &mut dyn FnMut(pb::ConnEntry)) {
        let table = self.state.dp.services();
        self.state
            .dp
            .conns()
            .snapshot(self.clock.now(), |rec| f(entry_of(&rec, &table)));
    }

    fn len(&self) -> u64 {
        self.state.dp.conns().len() as u64
    }

    fn service_table(&self) -> pb::ServiceTable {
        service_table_pb(&self.state)
    }
}

/// The backup's table for `syncd`: the dataplane's own connection table.
#[derive(Debug)]
pub struct TableSink {
    /// The node's control state.
    pub state: Arc<ControlState>,
    /// The daemon's clock.
    pub clock: Clock,
    /// Keys of the snapshot being applied.
    building: Mutex<Option<(u64, HashSet<ConnKey>)>>,
    /// Entries refused (unknown real server, expired, table full).
    refused: AtomicU64,
}

impl TableSink {
    /// A sink importing into `state`'s dataplane.
    pub fn new(state: Arc<ControlState>, clock: Clock) -> TableSink {
        TableSink {
            state,
            clock,
            building: Mutex::new(None),
            refused: AtomicU64::new(0),
        }
    }

    /// Entries that could not be imported so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn import(&self, e: &pb::ConnEntry, now: Millis) -> Result<Option<ConnKey>, String> {
        let rec = convert::conn_record(e)?;
        let table = self.state.dp.services();
        let Some(svc) = service_of(&table, &rec) else {
            // The rule set arrives before any entry; a flow of a service
            // this node lacks cannot be forwarded here anyway.
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match self.state.dp.conns().import_for_service(&rec, now, svc) {
            Ok(_) => Ok((!rec.flags.template).then(|| rec.key())),
            Err(
                ImportError::UnknownRealServer(_) | ImportError::Expired | ImportError::TableFull,
            ) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    fn building(&self) -> std::sync::MutexGuard<'_, Option<(u64, HashSet<ConnKey>)>> {
        self.building.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnSink for TableSink {
    fn begin_snapshot(&self, snapshot_id: u64) {
        *self.building() = Some((snapshot_id, HashSet::new()));
    }

    fn apply_snapshot_entries(
        &self,
        snapshot_id: u64,
        entries: Vec<pb::ConnEntry>,
    ) -> Result<(), String> {
        let now = self.clock.now();
        let mut keys = Vec::with_capacity(entries.len());
        for e in &entries {
            if let Some(k) = self.import(e, now)? {
                keys.push(k);
            }
        }
        let mut b = self.building();
        match b.as_mut() {
            Some((id, set)) if *id == snapshot_id => {
                set.extend(keys);
                Ok(())
            }
            _ => Err(format!(
                "entries of snapshot {snapshot_id}, which is not being applied"
            )),
        }
    }

    fn end_snapshot(&self, snapshot_id: u64) -> Result<(), String> {
        let Some((id, keys)) = self.building().take() else {
            return Err(format!(
                "end of snapshot {snapshot_id}, which was never begun"
            ));
        };
        if id != snapshot_id {
            return Err(format!("end of snapshot {snapshot_id} while applying {id}"));
        }
        // Drop the flows the master no longer has (templates expire by
        // their own timers once no flow holds them).
        let now = self.clock.now();
        let conns = self.state.dp.conns();
        let mut stale = Vec::new();
        conns.snapshot(now, |rec| {
            if !rec.flags.template && !keys.contains(&rec.key()) {
                stale.push(rec.key());
            }
        });
        for k in stale {
            conns.remove(&k, now, &mut |_| {});
        }
        Ok(())
    }

    fn abort_snapshot(&self, _snapshot_id: u64) {
        *self.building() = None;
    }

    fn apply_events(&self, events: Vec<sp::SyncEvent>) -> Result<(), String> {
        let now = self.clock.now();
        for ev in events {
            match ev.event {
                Some(Event::ConnNew(sp::ConnNew { entry: Some(e) }))
                | Some(Event::ConnUpdate(sp::ConnUpdate { entry: Some(e), .. }))
                | Some(Event::TemplateNew(sp::TemplateNew { entry: Some(e) })) => {
                    if let Some(k) = self.import(&e, now)?
                        && let Some((_, set)) = self.building().as_mut()
                    {
                        set.insert(k);
                    }
                }
                Some(Event::ConnExpire(sp::ConnExpire { key: Some(k) })) => {
                    let key = convert::conn_key(&k)?;
                    self.state.dp.conns().remove(&key, now, &mut |_| {});
                }
                // A template leaves when its timer runs out here too: the
                // master expires it only once no flow holds it.
                Some(Event::TemplateExpire(_)) => {}
                other => return Err(format!("malformed sync event: {other:?}")),
            }
        }
        Ok(())
    }

    fn apply_service_table(&self, table: pb::ServiceTable) -> Result<(), String> {
        let specs = specs_of(&table)?;
        if specs != self.state.specs() {
            self.state
                .replace_specs(specs)
                .map_err(|e| format!("the master's rule set is refused here: {e}"))?;
            tracing::info!(
                "sync: adopted the master's rule set (its version {})",
                table.version
            );
        }
        if let Some(t) = table.timeouts {
            let s = |v: u32| Duration::from_secs(u64::from(v));
            let (tcp, fin, udp) = self.state.dp.conns().timeouts().ipvsadm();
            let want = (
                s(t.tcp_timeout_s),
                s(t.tcp_fin_timeout_s),
                s(t.udp_timeout_s),
            );
            if want != (tcp, fin, udp) && t.tcp_timeout_s > 0 {
                self.state
                    .dp
                    .conns()
                    .timeouts()
                    .set_ipvsadm(want.0, want.1, want.2);
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.state.dp.conns().len() as u64
    }
}
