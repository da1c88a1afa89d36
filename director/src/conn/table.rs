//! The sharded connection table: storage, indexes, state updates, expiry.
//!
//! Layout. The table is a fixed array of shards, each a `RwLock` over a slab
//! of entries plus two `hashbrown::HashTable<u32>` indexes of slab slots:
//! the forward index (protocol, client, VIP — and persistence templates,
//! whose client port is 0) and the reply index (protocol, real server,
//! client), which holds NAT connections only. The shard is chosen by the
//! client side of the key, which both indexes share, so one shard lock
//! covers a connection's entry and both of its index slots. An entry is
//! 72 bytes and each index slot 4 bytes plus a control byte; there is no
//! per-entry allocation.
//!
//! Concurrency. The packet path takes the shard's read lock: state, expiry
//! and counters are atomics inside the entry, and a state change is one
//! compare-and-swap on a byte that holds the state and the INACTIVE and
//! NOOUTPUT flags, so exactly one thread accounts each change in the real
//! server's counters. Inserting and removing take the write lock of one
//! shard. No code path holds two shard locks at once: a connection reaches
//! its template (for the kernel's `n_control` count) through a slab
//! position, after its own shard's lock is released.
//!
//! Bounds. `max_entries` counts connections and templates together (the
//! kernel counts templates in `conn_count` too); an insert beyond it is
//! refused and counted in [`ConnTable::drops_full`].
//!
//! Time. An entry is dead once `now >= expires`: lookups treat it as absent
//! from that instant, whether or not [`ConnTable::expire`] has reclaimed it
//! yet. Reclaiming is amortised: each `expire` call walks a bounded number
//! of slab slots, round-robin over the shards, so its cost is bounded
//! whatever the table size. Until reclaimed, a dead entry still counts in
//! its real server's counters, as a kernel connection does until its timer
//! runs.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::key::{ConnKey, FlowHasher, FlowKey, Packed, ReplyKey, TemplateKey, pack};
use super::record::ConnRecord;
use super::state::{ConnState, Direction, TcpFlags, TcpState, UDP_CODE, next_tcp_state};
use super::timeouts::{TEMPLATE_RECHECK, Timeouts};
use super::{ConnEvent, Miss};
use crate::dest::{ConnClass, Dest, StatSlot};
use crate::time::Millis;

// The packed state byte: state code in the low nibble, then flags.
pub(crate) const STATE_MASK: u8 = 0x0f;
/// `IP_VS_CONN_F_INACTIVE`: counted in the dest's inactive connections.
pub(crate) const F_INACTIVE: u8 = 0x10;
/// `IP_VS_CONN_F_NOOUTPUT`: no reply seen (DR/TUN), use INPUT_ONLY.
pub(crate) const F_NOOUTPUT: u8 = 0x20;

// The kind byte, written only under the shard's write lock.
/// A persistence template (`IP_VS_CONN_F_TEMPLATE`).
pub(crate) const K_TEMPLATE: u8 = 0x01;
/// A template invalidated by `ip_vs_check_template`: out of the index,
/// left to expire.
pub(crate) const K_RETIRED: u8 = 0x02;
/// A NAT connection: it has a reply-index slot.
pub(crate) const K_NAT: u8 = 0x04;
/// This connection's template covers every port (virtual port 0).
pub(crate) const K_TPL_ALLPORTS: u8 = 0x08;
/// Learned from the peer's sync stream, not scheduled here
/// (`IP_VS_CONN_F_BACKUP`).
pub(crate) const K_SYNCED: u8 = 0x10;

/// No template link.
pub(crate) const NO_LINK: u32 = u32::MAX;

/// Slab slots walked per shard-lock hold in [`ConnTable::expire`], so that
/// the expirer never blocks a shard's packet path for long.
const EXPIRE_CHUNK: usize = 256;

/// Sizing of a [`ConnTable`].
#[derive(Debug, Clone, Copy)]
pub struct TableConfig {
    /// Most connections plus templates held at once; inserts beyond it are
    /// dropped and counted.
    pub max_entries: usize,
    /// Number of shards, rounded up to a power of two (at most 65536).
    pub shards: usize,
    /// Secret for the flow hash; give it random bits from the driver so
    /// that clients cannot choose colliding keys.
    pub hash_seed: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_entries: 1 << 20,
            shards: 64,
            hash_seed: 0x5eed_1b5d_c0de_0001,
        }
    }
}

/// One connection or template, exactly one 64-byte cache line: the key is
/// packed, the real server is the `Arc<Dest>`, and the template link is a
/// slab position sharing its word with the template's own `n_control`.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Entry {
    /// The real server; the connection holds it even after the server is
    /// removed from its service, and keeps forwarding to it until expiry.
    pub dest: Arc<Dest>,
    /// Absolute expiry time in driver milliseconds.
    pub expires: AtomicU64,
    pub key: FlowKey,
    /// Connections: slab slot of the controlling template, or [`NO_LINK`]
    /// (written only under the shard's write lock). Templates: the number
    /// of connections they control (the kernel's `n_control`).
    pub aux: AtomicU32,
    /// Shard of the controlling template.
    pub link_shard: u16,
    /// Netmask prefix of the controlling template's key.
    pub link_prefix: u8,
    /// State code and `F_*` flags.
    pub state: AtomicU8,
    /// `K_*` bits.
    pub kind: u8,
}

/// Where a controlling template lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub shard: u16,
    pub slot: u32,
}

impl Entry {
    #[inline]
    pub fn is_template(&self) -> bool {
        self.kind & K_TEMPLATE != 0
    }

    /// Which dest counter this entry is accounted in.
    #[inline]
    pub fn class(&self) -> ConnClass {
        class_of(self.kind, self.state.load(Relaxed))
    }

    #[inline]
    pub fn conn_state(&self) -> ConnState {
        ConnState::from_code(self.state.load(Relaxed) & STATE_MASK)
    }

    /// Real server address and port; a dest without a port takes the
    /// virtual port (the kernel's `dest->port ? dest->port : vport`).
    #[inline]
    pub fn real_server(&self) -> SocketAddr {
        let a = self.dest.addr();
        if a.port() == 0 {
            SocketAddr::new(a.ip(), self.key.vport)
        } else {
            a
        }
    }

    pub fn link(&self) -> Option<Link> {
        if self.is_template() {
            return None;
        }
        let slot = self.aux.load(Relaxed);
        (slot != NO_LINK).then_some(Link {
            shard: self.link_shard,
            slot,
        })
    }

    /// The key of the controlling template, rebuilt from this connection's
    /// own key so that reading it needs no second lock.
    pub fn template_key(&self) -> Option<TemplateKey> {
        self.link()?;
        let vip = self.key.vip();
        let port = if self.kind & K_TPL_ALLPORTS != 0 {
            0
        } else {
            vip.port()
        };
        Some(TemplateKey {
            protocol: self.key.protocol(),
            client_net: super::key::mask(self.key.client().ip(), self.link_prefix),
            vip: vip.ip(),
            vport: port,
        })
    }

    /// Milliseconds until expiry (0 once expired).
    pub fn remaining_ms(&self, now: Millis) -> u64 {
        self.expires.load(Relaxed).saturating_sub(now.0)
    }

    /// Not yet expired. A template that still controls connections never
    /// is: the kernel re-arms its timer instead of freeing it.
    #[inline]
    pub fn is_live(&self, now: Millis) -> bool {
        now.0 < self.expires.load(Relaxed) || (self.is_template() && self.aux.load(Relaxed) > 0)
    }
}

#[inline]
pub(crate) fn class_of(kind: u8, state: u8) -> ConnClass {
    if kind & K_TEMPLATE != 0 {
        ConnClass::Template
    } else if state & F_INACTIVE != 0 {
        ConnClass::Inactive
    } else {
        ConnClass::Active
    }
}

#[derive(Debug)]
enum Slot {
    Full(Entry),
    Free(u32),
}

#[inline]
fn full(slots: &[Slot], i: u32) -> &Entry {
    match &slots[i as usize] {
        Slot::Full(e) => e,
        Slot::Free(_) => unreachable!("an index points at a free slab slot"),
    }
}

#[inline]
fn fwd_hash(h: &FlowHasher, k: &FlowKey) -> u64 {
    let ch = h.client(k.proto, &k.client, k.cport);
    h.peer(ch, &k.vip, k.vport)
}

#[inline]
fn rev_hash(h: &FlowHasher, k: &FlowKey, rs: SocketAddr) -> u64 {
    let ch = h.client(k.proto, &k.client, k.cport);
    h.peer(ch, &pack(rs.ip()), rs.port())
}

/// One shard's slab and indexes.
#[derive(Debug)]
pub(crate) struct Inner {
    slots: Vec<Slot>,
    free: u32,
    len: usize,
    fwd: HashTable<u32>,
    rev: HashTable<u32>,
}

impl Inner {
    fn new() -> Inner {
        Inner {
            slots: Vec::new(),
            free: NO_LINK,
            len: 0,
            fwd: HashTable::new(),
            rev: HashTable::new(),
        }
    }

    #[inline]
    pub fn entry(&self, slot: u32) -> Option<&Entry> {
        match self.slots.get(slot as usize)? {
            Slot::Full(e) => Some(e),
            Slot::Free(_) => None,
        }
    }

    #[inline]
    pub fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        match self.slots.get_mut(slot as usize)? {
            Slot::Full(e) => Some(e),
            Slot::Free(_) => None,
        }
    }

    /// The indexed connection (or live, non-retired template) with `key`.
    #[inline]
    pub fn find_fwd(&self, hash: u64, key: &FlowKey, template: bool) -> Option<u32> {
        let slots = &self.slots;
        self.fwd
            .find(hash, |&i| {
                let e = full(slots, i);
                e.key == *key && e.is_template() == template
            })
            .copied()
    }

    #[inline]
    fn find_rev(&self, hash: u64, k: &FlowKey, rs: SocketAddr) -> Option<u32> {
        let slots = &self.slots;
        self.rev
            .find(hash, |&i| {
                let e = full(slots, i);
                e.key.proto == k.proto
                    && e.key.client == k.client
                    && e.key.cport == k.cport
                    && e.real_server() == rs
            })
            .copied()
    }

    /// Store `e` and index it; returns its slot.
    pub fn insert(&mut self, h: &FlowHasher, e: Entry) -> u32 {
        let fh = fwd_hash(h, &e.key);
        let rh = (e.kind & K_NAT != 0).then(|| rev_hash(h, &e.key, e.real_server()));
        let slot = if self.free != NO_LINK {
            let slot = self.free;
            self.free = match self.slots[slot as usize] {
                Slot::Free(next) => next,
                Slot::Full(_) => unreachable!("the free list points at a full slot"),
            };
            self.slots[slot as usize] = Slot::Full(e);
            slot
        } else {
            // u32::MAX is the NO_LINK sentinel; max_entries keeps us far below.
            let slot = u32::try_from(self.slots.len()).unwrap_or(NO_LINK - 1);
            self.slots.push(Slot::Full(e));
            slot
        };
        self.len += 1;
        let Inner {
            slots, fwd, rev, ..
        } = self;
        fwd.insert_unique(fh, slot, |&i| fwd_hash(h, &full(slots, i).key));
        if let Some(rh) = rh {
            rev.insert_unique(rh, slot, |&i| {
                let e = full(slots, i);
                rev_hash(h, &e.key, e.real_server())
            });
        }
        slot
    }

    /// Take a template out of the forward index but leave it in the slab
    /// (`ip_vs_check_template` rehashes it under a key nobody looks up).
    pub fn retire(&mut self, h: &FlowHasher, slot: u32) {
        let Some(e) = self.entry(slot) else { return };
        if e.kind & K_RETIRED != 0 {
            return;
        }
        let fh = fwd_hash(h, &e.key);
        if let Ok(found) = self.fwd.find_entry(fh, |&i| i == slot) {
            found.remove();
        }
        if let Some(e) = self.entry_mut(slot) {
            e.kind |= K_RETIRED;
        }
    }

    /// Remove the entry in `slot` from the slab and both indexes.
    pub fn remove(&mut self, h: &FlowHasher, slot: u32) -> Option<Entry> {
        let e = self.entry(slot)?;
        let fh = (e.kind & K_RETIRED == 0).then(|| fwd_hash(h, &e.key));
        let rh = (e.kind & K_NAT != 0).then(|| rev_hash(h, &e.key, e.real_server()));
        if let Some(fh) = fh
            && let Ok(found) = self.fwd.find_entry(fh, |&i| i == slot)
        {
            found.remove();
        }
        if let Some(rh) = rh
            && let Ok(found) = self.rev.find_entry(rh, |&i| i == slot)
        {
            found.remove();
        }
        let old = std::mem::replace(&mut self.slots[slot as usize], Slot::Free(self.free));
        self.free = slot;
        self.len -= 1;
        match old {
            Slot::Full(e) => Some(e),
            Slot::Free(_) => None,
        }
    }

    fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn entries(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Full(e) => Some((i as u32, e)),
            Slot::Free(_) => None,
        })
    }
}

/// A shard on its own cache line, so that workers taking neighbouring
/// shards' locks do not contend on one line.
#[derive(Debug)]
#[repr(align(64))]
struct Shard(RwLock<Inner>);

#[derive(Debug, Default)]
struct Cursor {
    shard: usize,
    slot: usize,
}

/// What one [`ConnTable::expire`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Slab slots examined (the bounded work).
    pub walked: usize,
    /// Connections and templates removed.
    pub expired: usize,
    /// Templates due but still controlling connections, re-armed for
    /// [`TEMPLATE_RECHECK`].
    pub rearmed: usize,
}

/// A real server's counters recounted from the table's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestCounts {
    /// Connections in an active state.
    pub active: u32,
    /// Connections in any other state, and UDP flows.
    pub inactive: u32,
    /// Persistence templates.
    pub persist: u32,
}

/// What a NAT reply found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOutcome {
    /// The virtual address and port to write as the reply's source.
    pub vip: SocketAddr,
    /// The connection's state after this packet.
    pub state: ConnState,
}

/// The connection table shared by all workers. See the module docs.
pub struct ConnTable {
    shards: Box<[Shard]>,
    shard_mask: usize,
    hasher: FlowHasher,
    max_entries: usize,
    len: AtomicUsize,
    templates: AtomicUsize,
    drops_full: AtomicU64,
    timeouts: Timeouts,
    cursor: Mutex<Cursor>,
}

impl fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .field("templates", &self.template_count())
            .field("max_entries", &self.max_entries)
            .field("drops_full", &self.drops_full())
            .finish()
    }
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable::new(TableConfig::default())
    }
}

impl ConnTable {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> ConnTable {
        let n = cfg.shards.clamp(1, 1 << 16).next_power_of_two();
        ConnTable {
            shards: (0..n).map(|_| Shard(RwLock::new(Inner::new()))).collect(),
            shard_mask: n - 1,
            hasher: FlowHasher::new(cfg.hash_seed),
            max_entries: cfg.max_entries,
            len: AtomicUsize::new(0),
            templates: AtomicUsize::new(0),
            drops_full: AtomicU64::new(0),
            timeouts: Timeouts::new(),
            cursor: Mutex::new(Cursor::default()),
        }
    }

    /// The per-state timeouts (settable at run time).
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Connections plus templates held, including expired entries not yet
    /// reclaimed.
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Persistence templates held.
    pub fn template_count(&self) -> usize {
        self.templates.load(Relaxed)
    }

    /// Connections held (not templates).
    pub fn conn_count(&self) -> usize {
        self.len().saturating_sub(self.template_count())
    }

    /// The configured bound on connections plus templates.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// New connections (or templates) refused because the table was full.
    pub fn drops_full(&self) -> u64 {
        self.drops_full.load(Relaxed)
    }

    // ----- plumbing shared with schedule.rs and record.rs -----

    #[inline]
    pub(crate) fn hasher(&self) -> &FlowHasher {
        &self.hasher
    }

    /// Shard index and forward-index hash of a key.
    #[inline]
    pub(crate) fn locate(&self, k: &FlowKey) -> (usize, u64) {
        let ch = self.hasher.client(k.proto, &k.client, k.cport);
        (
            (ch >> 32) as usize & self.shard_mask,
            self.hasher.peer(ch, &k.vip, k.vport),
        )
    }

    #[inline]
    pub(crate) fn read(&self, shard: usize) -> RwLockReadGuard<'_, Inner> {
        self.shards[shard]
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(crate) fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Inner> {
        self.shards[shard]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim room for one entry, or count a drop.
    pub(crate) fn reserve(&self) -> Result<(), Miss> {
        let prev = self.len.fetch_add(1, Relaxed);
        if prev >= self.max_entries {
            self.len.fetch_sub(1, Relaxed);
            self.drops_full.fetch_add(1, Relaxed);
            return Err(Miss::TableFull);
        }
        Ok(())
    }

    /// Give back room claimed by [`Self::reserve`] (or held by a removed entry).
    pub(crate) fn release(&self) {
        self.len.fetch_sub(1, Relaxed);
    }

    pub(crate) fn template_added(&self) {
        self.templates.fetch_add(1, Relaxed);
    }

    /// Account the removal of `e` (already out of its shard): dest counters,
    /// table size. Returns the template link to release once no shard lock
    /// is held.
    pub(crate) fn forget(&self, e: &Entry) -> Option<Link> {
        e.dest.unbind(e.class());
        self.release();
        if e.is_template() {
            self.templates.fetch_sub(1, Relaxed);
        }
        e.link()
    }

    /// One controlled connection of the template at `link` went away
    /// (`ip_vs_control_del`). Call with no shard lock held.
    pub(crate) fn release_link(&self, link: Link) {
        let g = self.read(usize::from(link.shard));
        if let Some(t) = g.entry(link.slot).filter(|t| t.is_template()) {
            let _ = t
                .aux
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// Apply one packet to a connection: TCP state transition in the table
    /// for `dir` (INPUT_ONLY while the entry is NOOUTPUT), dest counters on
    /// an active/inactive change, and re-arm the timer to the new state's
    /// timeout. Returns the change, if the state changed.
    pub(crate) fn touch(
        &self,
        e: &Entry,
        dir: Direction,
        flags: TcpFlags,
        now: Millis,
    ) -> Option<(ConnState, ConnState)> {
        let mut cur = e.state.load(Relaxed);
        loop {
            let code = cur & STATE_MASK;
            if code == UDP_CODE {
                e.expires
                    .store(now.0.saturating_add(self.timeouts.ms_of(code)), Relaxed);
                return None;
            }
            let mut no_output = cur & F_NOOUTPUT != 0;
            let table = match dir {
                Direction::Output => {
                    // A reply proves the director sees both ways.
                    no_output = false;
                    Direction::Output
                }
                _ if no_output => Direction::InputOnly,
                d => d,
            };
            let old = TcpState::from_code(code);
            let new = next_tcp_state(table, flags, old);
            // The kernel moves a connection between the counters only when
            // its state changes.
            let inactive = if new != old {
                !new.is_active()
            } else {
                cur & F_INACTIVE != 0
            };
            let next = new as u8
                | if inactive { F_INACTIVE } else { 0 }
                | if no_output { F_NOOUTPUT } else { 0 };
            if next != cur {
                if let Err(seen) = e.state.compare_exchange(cur, next, Relaxed, Relaxed) {
                    cur = seen;
                    continue;
                }
                let (was, is) = (class_of(e.kind, cur), class_of(e.kind, next));
                e.dest.reclass(was, is);
            }
            e.expires.store(
                now.0.saturating_add(self.timeouts.ms_of(new as u8)),
                Relaxed,
            );
            return (new != old).then_some((ConnState::Tcp(old), ConnState::Tcp(new)));
        }
    }

    // ----- public operations -----

    /// The live connection with `key`, as a record (ipvsadm `-Lc`, the
    /// "which real server has this flow?" query, and sync export).
    pub fn get(&self, key: &ConnKey, now: Millis) -> Option<ConnRecord> {
        let fk = FlowKey::from_conn(key);
        let (shard, fh) = self.locate(&fk);
        let g = self.read(shard);
        let e = g.entry(g.find_fwd(fh, &fk, false)?)?;
        e.is_live(now).then(|| e.to_record(now))
    }

    /// The live, valid persistence template with `key`, as a record.
    pub fn get_template(&self, key: &TemplateKey, now: Millis) -> Option<ConnRecord> {
        let fk = FlowKey::from_template(key);
        let (shard, fh) = self.locate(&fk);
        let g = self.read(shard);
        let e = g.entry(g.find_fwd(fh, &fk, true)?)?;
        e.is_live(now).then(|| e.to_record(now))
    }

    /// A NAT reply from the real server (`len` bytes of IP packet): find
    /// its connection through the reply index, apply the OUTPUT transition
    /// (which also clears NOOUTPUT), re-arm its timer and count the bytes
    /// out on the real server. State changes go to `on_event`.
    pub fn process_reply(
        &self,
        key: &ReplyKey,
        flags: TcpFlags,
        len: usize,
        slot: StatSlot,
        now: Millis,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Result<ReplyOutcome, Miss> {
        let fk = FlowKey {
            client: pack(key.client.ip()),
            vip: [0; 16],
            cport: key.client.port(),
            vport: 0,
            proto: key.protocol.number(),
        };
        let ch = self.hasher.client(fk.proto, &fk.client, fk.cport);
        let shard = (ch >> 32) as usize & self.shard_mask;
        let rs_packed: Packed = pack(key.real_server.ip());
        let rh = self.hasher.peer(ch, &rs_packed, key.real_server.port());
        let (out, change, vip) = {
            let g = self.read(shard);
            let e = g
                .find_rev(rh, &fk, key.real_server)
                .and_then(|i| g.entry(i))
                .filter(|e| e.is_live(now))
                .ok_or(Miss::NoConnection)?;
            let change = self.touch(e, Direction::Output, flags, now);
            e.dest.stats.count_out(slot, len);
            let vip = e.key.vip();
            (
                ReplyOutcome {
                    vip,
                    state: e.conn_state(),
                },
                change,
                vip,
            )
        };
        if let Some((from, to)) = change {
            on_event(ConnEvent::StateChanged {
                key: ConnKey {
                    protocol: key.protocol,
                    client: key.client,
                    vip,
                },
                from,
                to,
                timeout: self.timeouts.get(to),
            });
        }
        Ok(out)
    }

    /// Reclaim expired entries, doing at most `budget` slots of work
    /// (round-robin over the shards from where the previous call stopped).
    /// Each removed connection unbinds its dest counters and releases its
    /// template; a due template that still controls connections is
    /// re-armed for 60 s instead (the kernel's `n_control` rule). Each
    /// removal is reported to `on_event` as [`ConnEvent::Expired`].
    pub fn expire(
        &self,
        now: Millis,
        budget: usize,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> ExpireReport {
        let mut report = ExpireReport::default();
        let mut cursor = self.cursor.lock().unwrap_or_else(PoisonError::into_inner);
        let mut left = budget;
        // Stop after one lap even with budget left: a huge budget must not
        // walk the same entries twice in one call.
        let mut advances = 0;
        let mut done: Vec<(ConnRecord, Option<Link>)> = Vec::new();
        while left > 0 && advances <= self.shards.len() {
            let shard = cursor.shard % self.shards.len();
            let mut g = self.write(shard);
            let count = g.slot_count();
            let start = cursor.slot.min(count);
            let end = count.min(start + left.min(EXPIRE_CHUNK));
            for slot in start..end {
                let slot = slot as u32;
                let Some(e) = g.entry(slot) else { continue };
                if now.0 < e.expires.load(Relaxed) {
                    continue;
                }
                if e.is_template() && e.aux.load(Relaxed) > 0 {
                    e.expires.store((now + TEMPLATE_RECHECK).0, Relaxed);
                    report.rearmed += 1;
                    continue;
                }
                if let Some(e) = g.remove(&self.hasher, slot) {
                    let record = e.to_record(now);
                    let link = self.forget(&e);
                    done.push((record, link));
                }
            }
            drop(g);
            report.walked += end - start;
            left -= end - start;
            if end >= count {
                cursor.shard = (shard + 1) % self.shards.len();
                cursor.slot = 0;
                advances += 1;
            } else {
                cursor.slot = end;
            }
            for (record, link) in done.drain(..) {
                if let Some(link) = link {
                    self.release_link(link);
                }
                report.expired += 1;
                on_event(ConnEvent::Expired(record));
            }
        }
        report
    }

    /// Live entries learned from the peer's sync stream: a walk of the
    /// whole table under each shard's read lock in turn, for status pages,
    /// never the packet path.
    pub fn synced_count(&self, now: Millis) -> usize {
        (0..self.shards.len())
            .map(|shard| {
                let g = self.read(shard);
                g.entries()
                    .filter(|(_, e)| e.kind & K_SYNCED != 0 && e.is_live(now))
                    .count()
            })
            .sum()
    }

    /// Every live entry as a record, templates first (so that an importer
    /// can link connections to them), for a sync snapshot or a listing.
    pub fn snapshot(&self, now: Millis, mut f: impl FnMut(ConnRecord)) {
        for want_template in [true, false] {
            for shard in 0..self.shards.len() {
                let g = self.read(shard);
                for (_, e) in g.entries() {
                    if e.is_template() == want_template && e.is_live(now) {
                        f(e.to_record(now));
                    }
                }
            }
        }
    }

    /// Recount every entry (live or awaiting reclaim) by real server: the
    /// figures each [`Dest`]'s counters must equal.
    pub fn recount(&self) -> HashMap<SocketAddr, DestCounts> {
        let mut out: HashMap<SocketAddr, DestCounts> = HashMap::new();
        for shard in 0..self.shards.len() {
            let g = self.read(shard);
            for (_, e) in g.entries() {
                let c = out.entry(e.dest.addr()).or_default();
                match e.class() {
                    ConnClass::Active => c.active += 1,
                    ConnClass::Inactive => c.inactive += 1,
                    ConnClass::Template => c.persist += 1,
                }
            }
        }
        out
    }

    /// Heap bytes held by the table's own structures: slabs (including
    /// spare capacity), both indexes (buckets and control bytes) and the
    /// shard array. The `Dest`s entries point at are shared and not counted.
    pub fn heap_bytes(&self) -> usize {
        fn table_bytes(cap: usize) -> usize {
            if cap == 0 {
                return 0;
            }
            // Inverse of hashbrown's bucket_mask_to_capacity.
            let buckets = if cap < 8 { cap + 1 } else { cap / 7 * 8 };
            buckets * std::mem::size_of::<u32>() + buckets + 16
        }
        let mut total = std::mem::size_of_val(&*self.shards);
        for shard in 0..self.shards.len() {
            let g = self.read(shard);
            total += g.slots.capacity() * std::mem::size_of::<Slot>();
            total += table_bytes(g.fwd.capacity()) + table_bytes(g.rev.capacity());
        }
        total
    }

    /// Remove the connection with `key` at once (an operator's flush of one
    /// flow), reporting it like an expiry.
    pub fn remove(
        &self,
        key: &ConnKey,
        now: Millis,
        on_event: &mut impl FnMut(ConnEvent),
    ) -> Option<ConnRecord> {
        let fk = FlowKey::from_conn(key);
        let (shard, fh) = self.locate(&fk);
        let (record, link) = {
            let mut g = self.write(shard);
            let slot = g.find_fwd(fh, &fk, false)?;
            let e = g.remove(&self.hasher, slot)?;
            (e.to_record(now), self.forget(&e))
        };
        if let Some(link) = link {
            self.release_link(link);
        }
        on_event(ConnEvent::Expired(record));
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "entry is {} bytes",
            std::mem::size_of::<Entry>()
        );
        assert_eq!(
            std::mem::size_of::<Slot>(),
            std::mem::size_of::<Entry>(),
            "the free-list variant fits in the entry's niche"
        );
    }
}
