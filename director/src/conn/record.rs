//! Connection records: the plain-data form of an entry that the sync
//! service sends to the standby director, and the import that rebuilds the
//! entry there.
//!
//! A record carries everything the other node needs to keep forwarding the
//! flow: protocol, client, VIP, real server, method, state, the remaining
//! timeout, the INACTIVE / NOOUTPUT / TEMPLATE flags, and the key of the
//! persistence template that controls the connection. Templates travel as
//! records of their own (client = masked network with port 0), and
//! [`ConnTable::snapshot`] yields them before connections so that an
//! importer can link each connection to its template.
//!
//! Import follows the kernel's sync receiver: the dest is resolved on the
//! receiving side (and the connection takes that dest's forwarding method),
//! and the activity flag of the record is kept rather than recomputed
//! (`ip_vs_bind_dest` with `IP_VS_CONN_F_SYNC`). Import reports no events:
//! the node that sent the record already knows the change.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::key::{ConnKey, FlowKey, TemplateKey};
use super::state::{ConnState, TcpState};
use super::table::{
    ConnTable, Entry, F_INACTIVE, F_NOOUTPUT, K_NAT, K_SYNCED, K_TEMPLATE, K_TPL_ALLPORTS, Link,
    NO_LINK, STATE_MASK, class_of,
};
use super::timeouts::TEMPLATE_RECHECK;
use crate::dest::{ConnClass, Dest};
use crate::service::Service;
use crate::time::Millis;
use crate::types::{ForwardMethod, Protocol};

/// Flags carried by a record (the kernel's `IP_VS_CONN_F_*` subset that
/// matters on the receiving side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RecordFlags {
    /// A persistence template, not a connection.
    pub template: bool,
    /// Counted in the real server's inactive connections.
    pub inactive: bool,
    /// No reply seen yet: TCP transitions use the INPUT_ONLY table.
    pub no_output: bool,
    /// Learned from the peer's sync stream rather than scheduled here.
    /// Set by [`ConnTable::import`] whatever the record says.
    pub synced: bool,
}

/// Everything needed to keep forwarding one flow on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRecord {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client address and port (templates: masked network, port 0).
    pub client: SocketAddr,
    /// Virtual address and port (templates: port 0 for all-port templates).
    pub vip: SocketAddr,
    /// Real server address and port.
    pub real_server: SocketAddr,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// State (templates: TCP NONE or UDP).
    pub state: ConnState,
    /// Milliseconds left before expiry.
    pub timeout_ms: u64,
    /// Flags.
    pub flags: RecordFlags,
    /// The template controlling this connection, if any.
    pub template: Option<TemplateKey>,
}

impl ConnRecord {
    /// The connection key (for a template record: its key in conn form).
    pub fn key(&self) -> ConnKey {
        ConnKey {
            protocol: self.protocol,
            client: self.client,
            vip: self.vip,
        }
    }

    /// For a template record, its template key.
    pub fn as_template_key(&self) -> Option<TemplateKey> {
        self.flags.template.then_some(TemplateKey {
            protocol: self.protocol,
            client_net: self.client.ip(),
            vip: self.vip.ip(),
            vport: self.vip.port(),
        })
    }
}

impl Entry {
    /// The entry as a record at `now` (the sync service's `export`).
    pub(crate) fn to_record(&self, now: Millis) -> ConnRecord {
        let st = self.state.load(Relaxed);
        let mut timeout_ms = self.remaining_ms(now);
        if self.is_template() && timeout_ms == 0 && self.aux.load(Relaxed) > 0 {
            // Due, but held by its connections: it will be re-armed.
            timeout_ms = TEMPLATE_RECHECK.as_millis() as u64;
        }
        ConnRecord {
            protocol: self.key.protocol(),
            client: self.key.client(),
            vip: self.key.vip(),
            real_server: self.real_server(),
            method: self.dest.method(),
            state: ConnState::from_code(st & STATE_MASK),
            timeout_ms,
            flags: RecordFlags {
                template: self.is_template(),
                inactive: st & F_INACTIVE != 0,
                no_output: st & F_NOOUTPUT != 0,
                synced: self.kind & K_SYNCED != 0,
            },
            template: self.template_key(),
        }
    }
}

/// Why a record could not be imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The record's real server is not a real server of the service here.
    #[error("real server {0} is not configured for this virtual service")]
    UnknownRealServer(SocketAddr),
    /// The record had no time left.
    #[error("record has already expired")]
    Expired,
    /// The table is at its `max_entries` bound.
    #[error("connection table is full")]
    TableFull,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new entry was created.
    Created,
    /// An existing entry took the record's state and timeout.
    Updated,
}

/// The longest prefix on which `a` and `b` agree: masking `a` to it gives
/// `b` when `b` is `a` masked to any prefix.
fn common_prefix(a: IpAddr, b: IpAddr) -> u8 {
    let x = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a) ^ u32::from(b))) << 96,
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) ^ u128::from(b),
        _ => return 0,
    };
    x.leading_zeros().min(128) as u8
}

impl ConnTable {
    /// Export the live connection with `key` (alias of [`ConnTable::get`]).
    pub fn export(&self, key: &ConnKey, now: Millis) -> Option<ConnRecord> {
        self.get(key, now)
    }

    /// Import a record received from the peer, resolving its real server
    /// among the service's dests.
    pub fn import_for_service(
        &self,
        rec: &ConnRecord,
        now: Millis,
        svc: &Service,
    ) -> Result<ImportOutcome, ImportError> {
        self.import(rec, now, |r| {
            svc.dest(r.real_server)
                .or_else(|| svc.dest(SocketAddr::new(r.real_server.ip(), 0)))
                .cloned()
        })
    }

    /// Import a record received from the peer: create the entry, or update
    /// an existing one with the record's state and timeout. `resolve` finds
    /// the local [`Dest`] for the record's real server.
    pub fn import(
        &self,
        rec: &ConnRecord,
        now: Millis,
        resolve: impl FnOnce(&ConnRecord) -> Option<Arc<Dest>>,
    ) -> Result<ImportOutcome, ImportError> {
        if rec.timeout_ms == 0 {
            return Err(ImportError::Expired);
        }
        let dest = resolve(rec).ok_or(ImportError::UnknownRealServer(rec.real_server))?;
        let expires = now.0.saturating_add(rec.timeout_ms);
        match rec.as_template_key() {
            Some(tk) => self.import_template(&tk, rec, dest, expires),
            None => self.import_conn(rec, dest, expires),
        }
    }

    fn import_template(
        &self,
        tk: &TemplateKey,
        rec: &ConnRecord,
        dest: Arc<Dest>,
        expires: u64,
    ) -> Result<ImportOutcome, ImportError> {
        let fk = FlowKey::from_template(tk);
        let (shard, fh) = self.locate(&fk);
        let mut g = self.write(shard);
        if let Some(slot) = g.find_fwd(fh, &fk, true) {
            if let Some(e) = g.entry(slot).filter(|e| Arc::ptr_eq(&e.dest, &dest)) {
                e.expires.store(expires, Relaxed);
                return Ok(ImportOutcome::Updated);
            }
            // Pinned elsewhere on the peer now: the old template keeps its
            // connections until they end, new ones follow the record.
            g.retire(self.hasher(), slot);
        }
        self.reserve().map_err(|_| ImportError::TableFull)?;
        dest.bind(ConnClass::Template);
        g.insert(
            self.hasher(),
            Entry {
                dest,
                expires: AtomicU64::new(expires),
                key: fk,
                aux: AtomicU32::new(0),
                link_shard: 0,
                link_prefix: 0,
                state: AtomicU8::new(rec.state.code()),
                kind: K_TEMPLATE | K_SYNCED,
            },
        );
        self.template_added();
        Ok(ImportOutcome::Created)
    }

    /// Find a valid template and count one more controlled connection on
    /// it (`ip_vs_control_add`).
    pub(crate) fn attach_template(&self, tk: &TemplateKey) -> Option<Link> {
        let fk = FlowKey::from_template(tk);
        let (shard, fh) = self.locate(&fk);
        let g = self.read(shard);
        let slot = g.find_fwd(fh, &fk, true)?;
        g.entry(slot)?.aux.fetch_add(1, Relaxed);
        Some(Link {
            shard: shard as u16,
            slot,
        })
    }

    fn import_conn(
        &self,
        rec: &ConnRecord,
        dest: Arc<Dest>,
        expires: u64,
    ) -> Result<ImportOutcome, ImportError> {
        let link = rec
            .template
            .as_ref()
            .and_then(|tk| self.attach_template(tk));
        let state = rec.state.code()
            | if rec.flags.inactive { F_INACTIVE } else { 0 }
            | if rec.flags.no_output { F_NOOUTPUT } else { 0 };
        let fk = FlowKey::from_conn(&rec.key());
        let (shard, fh) = self.locate(&fk);
        let mut release: Vec<Link> = Vec::new();
        let result = 'locked: {
            let mut g = self.write(shard);
            if let Some(slot) = g.find_fwd(fh, &fk, false) {
                let same = g.entry(slot).is_some_and(|e| Arc::ptr_eq(&e.dest, &dest));
                if same {
                    if let Some(e) = g.entry_mut(slot) {
                        let old = e.state.swap(state, Relaxed);
                        e.dest
                            .reclass(class_of(e.kind, old), class_of(e.kind, state));
                        e.expires.store(expires, Relaxed);
                        if let Some(l) = link {
                            if e.link().is_none() {
                                e.aux.store(l.slot, Relaxed);
                                e.link_shard = l.shard;
                                e.link_prefix = rec
                                    .template
                                    .map_or(0, |tk| common_prefix(rec.client.ip(), tk.client_net));
                                if rec.template.is_some_and(|tk| tk.vport == 0) {
                                    e.kind |= K_TPL_ALLPORTS;
                                }
                            } else {
                                release.push(l);
                            }
                        }
                    }
                    break 'locked Ok(ImportOutcome::Updated);
                }
                if let Some(old) = g.remove(self.hasher(), slot) {
                    release.extend(self.forget(&old));
                }
            }
            if self.reserve().is_err() {
                release.extend(link);
                break 'locked Err(ImportError::TableFull);
            }
            let mut kind = K_SYNCED;
            if dest.method() == ForwardMethod::Masquerade {
                kind |= K_NAT;
            }
            let (link_slot, link_shard, link_prefix) = match (link, rec.template) {
                (Some(l), Some(tk)) => {
                    if tk.vport == 0 {
                        kind |= K_TPL_ALLPORTS;
                    }
                    (
                        l.slot,
                        l.shard,
                        common_prefix(rec.client.ip(), tk.client_net),
                    )
                }
                _ => (NO_LINK, 0, 0),
            };
            dest.bind(class_of(kind, state));
            g.insert(
                self.hasher(),
                Entry {
                    dest,
                    expires: AtomicU64::new(expires),
                    key: fk,
                    aux: AtomicU32::new(link_slot),
                    link_shard,
                    link_prefix,
                    state: AtomicU8::new(state),
                    kind,
                },
            );
            Ok(ImportOutcome::Created)
        };
        for l in release {
            self.release_link(l);
        }
        result
    }
}

/// The state a template record carries for `protocol` (the kernel leaves
/// templates in state 0).
pub(crate) fn template_state(protocol: Protocol) -> ConnState {
    match protocol {
        Protocol::Tcp => ConnState::Tcp(TcpState::None),
        Protocol::Udp => ConnState::Udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_rebuilds_the_masked_network() {
        let c: IpAddr = "10.0.0.77".parse().unwrap();
        for p in [8u8, 16, 24, 32] {
            let net = super::super::key::mask(c, p);
            assert_eq!(super::super::key::mask(c, common_prefix(c, net)), net);
        }
    }
}
