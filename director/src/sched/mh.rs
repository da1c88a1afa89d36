//! Maglev hashing (`mh`, `ip_vs_mh.c`).
//!
//! Each server gets a permutation of the lookup-table slots from two hashes
//! of its address and port (`offset` and `skip`); [`Scheduler::update`]
//! fills the prime-sized table (default 4093, [`SchedOptions::mh_table_size`])
//! by letting the servers take turns claiming their next preferred free
//! slot. A new connection goes to slot `hash(client_addr [+ port]) % size`.
//! Because each server's preferences do not depend on the others, removing
//! one of N servers moves only the connections it held (≈ 1/N) plus a few
//! others.
//!
//! As in the kernel:
//! - Hashes are `hsiphash` (SipHash-1-3 on 64-bit) with the two fixed keys
//!   written into `ip_vs_mh.c`, so the table equals an x86-64 kernel's and
//!   both directors of a pair agree without sharing a secret.
//! - Weights: each server claims `turns = (last_weight / gcd) >> rshift`
//!   slots per round (at least one if its weight is non-zero), `rshift`
//!   keeping the largest `weight / gcd` within `fls(size) / 2` bits.
//! - `last_weight` is the server's latest non-zero weight: quiescing a
//!   server (weight 0) keeps its slots, it is just skipped (no server, or
//!   the fallback walk), so the table does not reshuffle.
//! - `mh-port` hashes the client port too; `mh-fallback` walks slots
//!   `hash(offset + port + addr)` from the original slot on until an
//!   available server turns up.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::hash::{HsipKey, fls, fold_addr, gcd, hsiphash_u32};
use super::sh::unavailable;
use super::{SchedError, SchedOptions, SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// Smallest table size accepted (the kernel's smallest, 251).
pub const MH_TABLE_MIN: u32 = 251;
/// Largest table size accepted (the kernel's largest, 131071).
pub const MH_TABLE_MAX: u32 = 131_071;

/// First permutation key (`hash1` of `generate_hash_secret`): fixed in the
/// kernel, not random, so lookups are reproducible.
const HASH1: HsipKey = [2_654_435_761, 2_654_435_761];
/// Second permutation key (`hash2`).
const HASH2: HsipKey = [2_654_446_892, 2_654_446_892];

/// The Maglev-hashing scheduler.
pub struct Mh {
    fallback: bool,
    port: bool,
    size: u32,
    /// `IP_VS_MH_TAB_BITS`: half the bit length of the table size.
    tab_bits: u32,
    /// Each known server with its last non-zero weight.
    last_weights: Mutex<Vec<(Arc<Dest>, i32)>>,
    /// The lookup table; `None` until the first update. Read without a lock.
    table: ArcSwapOption<Vec<Option<Arc<Dest>>>>,
}

impl fmt::Debug for Mh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mh")
            .field("fallback", &self.fallback)
            .field("port", &self.port)
            .field("size", &self.size)
            .field("built", &self.table.load().is_some())
            .finish()
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|i| i * i <= n)
            .all(|i| !n.is_multiple_of(i))
}

/// `ip_vs_mh_hashkey`: hsiphash of `offset + port + addr` as one u32.
fn hashkey(addr: u32, port: u16, offset: u32, key: &HsipKey) -> u32 {
    hsiphash_u32(offset.wrapping_add(u32::from(port)).wrapping_add(addr), key)
}

impl Mh {
    /// A Maglev scheduler; refuses a table size that is not a prime in
    /// [`MH_TABLE_MIN`]`..=`[`MH_TABLE_MAX`].
    pub fn new(opts: SchedOptions) -> Result<Mh, SchedError> {
        let size = opts.mh_table_size;
        if !(MH_TABLE_MIN..=MH_TABLE_MAX).contains(&size) {
            return Err(SchedError::MhTableSizeOutOfRange {
                size,
                min: MH_TABLE_MIN,
                max: MH_TABLE_MAX,
            });
        }
        if !is_prime(size) {
            return Err(SchedError::MhTableNotPrime(size));
        }
        Ok(Mh {
            fallback: opts.fallback,
            port: opts.port,
            size,
            tab_bits: fls(size) / 2,
            last_weights: Mutex::new(Vec::new()),
            table: ArcSwapOption::empty(),
        })
    }

    /// `ip_vs_mh_reassign`: permutations, then population.
    fn build(&self, dests: &[Arc<Dest>], lw: &[i32]) -> Vec<Option<Arc<Dest>>> {
        let m = self.size as usize;
        let mut lookup: Vec<Option<Arc<Dest>>> = vec![None; m];
        let g = lw
            .iter()
            .filter(|&&w| w > 0)
            .fold(0u32, |g, &w| gcd(w as u32, g));
        if g == 0 {
            return lookup;
        }
        let max = lw.iter().copied().max().unwrap_or(0).max(0) as u32;
        let rshift = fls(max / g).saturating_sub(self.tab_bits);
        let (mut perm, mut skip, mut turns) = (
            vec![0usize; dests.len()],
            vec![0usize; dests.len()],
            vec![0u32; dests.len()],
        );
        for (i, d) in dests.iter().enumerate() {
            let a = fold_addr(d.addr().ip());
            let p = d.addr().port();
            perm[i] = (hashkey(a, p, 0, &HASH1) % self.size) as usize;
            skip[i] = (hashkey(a, p, 0, &HASH2) % (self.size - 1) + 1) as usize;
            let w = lw[i].max(0) as u32;
            turns[i] = match (w / g) >> rshift {
                0 => u32::from(w != 0),
                t => t,
            };
        }
        let mut used = vec![false; m];
        let mut n = 0;
        let mut count = 0;
        'fill: loop {
            let mut i = 0;
            while i < dests.len() {
                if turns[i] < 1 {
                    i += 1;
                    continue;
                }
                while used[perm[i]] {
                    perm[i] += skip[i];
                    if perm[i] >= m {
                        perm[i] -= m;
                    }
                }
                used[perm[i]] = true;
                lookup[perm[i]] = Some(Arc::clone(&dests[i]));
                n += 1;
                if n == m {
                    break 'fill;
                }
                count += 1;
                if count >= turns[i] {
                    count = 0;
                    i += 1;
                }
            }
        }
        lookup
    }

    /// Record the servers' last non-zero weights and rebuild the table.
    fn rebuild(&self, dests: &[Arc<Dest>]) -> Arc<Vec<Option<Arc<Dest>>>> {
        let mut known = self.last_weights.lock().unwrap_or_else(|e| e.into_inner());
        let next = next_weights(&known, dests);
        let lw: Vec<i32> = next.iter().map(|(_, w)| *w).collect();
        let table = Arc::new(self.build(dests, &lw));
        *known = next;
        self.table.store(Some(Arc::clone(&table)));
        table
    }

    /// The table in force, or the one `schedule` would build now (kept
    /// nowhere).
    fn table_for_peek(&self, dests: &[Arc<Dest>]) -> Arc<Vec<Option<Arc<Dest>>>> {
        if let Some(t) = self.table.load_full() {
            return t;
        }
        let known = self.last_weights.lock().unwrap_or_else(|e| e.into_inner());
        let lw: Vec<i32> = next_weights(&known, dests)
            .iter()
            .map(|(_, w)| *w)
            .collect();
        Arc::new(self.build(dests, &lw))
    }

    /// `ip_vs_mh_schedule` over `table`.
    fn pick(&self, table: &[Option<Arc<Dest>>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let addr = fold_addr(req.client.ip());
        let port = if self.port { req.client.port() } else { 0 };
        let ihash = hashkey(addr, port, 0, &HASH1) % self.size;
        let first = table[ihash as usize].as_ref()?;
        if !unavailable(first) {
            return Some(Arc::clone(first));
        }
        if !self.fallback {
            return None;
        }
        for offset in 0..self.size {
            let roffset = ((u64::from(offset) + u64::from(ihash)) % u64::from(self.size)) as u32;
            let slot = hashkey(addr, port, roffset, &HASH1) % self.size;
            let d = table[slot as usize].as_ref()?;
            if !unavailable(d) {
                return Some(Arc::clone(d));
            }
        }
        None
    }

    /// The table size.
    pub fn table_size(&self) -> u32 {
        self.size
    }
}

impl Scheduler for Mh {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Mh
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        self.rebuild(dests);
    }

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let table = match self.table.load_full() {
            Some(t) => t,
            None => self.rebuild(dests),
        };
        self.pick(&table, req)
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        self.pick(&self.table_for_peek(dests), req)
    }
}

/// Each server with its last non-zero weight, given the `known` ones.
fn next_weights(known: &[(Arc<Dest>, i32)], dests: &[Arc<Dest>]) -> Vec<(Arc<Dest>, i32)> {
    dests
        .iter()
        .map(|d| {
            let w = d.weight();
            let prev = known
                .iter()
                .find(|(k, _)| Arc::ptr_eq(k, d))
                .map(|(_, lw)| *lw);
            // __ip_vs_update_dest: last_weight keeps the latest non-zero
            // weight; a new server starts with its weight, even 0.
            let lw = match prev {
                Some(lw) if w == 0 => lw,
                _ => w,
            };
            (Arc::clone(d), lw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{dests, index_of, req};

    fn mh(size: u32) -> Mh {
        Mh::new(SchedOptions {
            mh_table_size: size,
            ..SchedOptions::default()
        })
        .unwrap()
    }

    fn shares(s: &Mh, ds: &[Arc<Dest>]) -> Vec<usize> {
        let t = s.table.load_full().unwrap();
        let mut c = vec![0; ds.len()];
        for d in t.iter() {
            c[index_of(ds, d.as_ref().unwrap())] += 1;
        }
        c
    }

    #[test]
    fn table_size_must_be_a_prime_in_range() {
        let opts = |n| SchedOptions {
            mh_table_size: n,
            ..SchedOptions::default()
        };
        assert_eq!(
            Mh::new(opts(4096)).unwrap_err(),
            SchedError::MhTableNotPrime(4096)
        );
        assert!(matches!(
            Mh::new(opts(13)),
            Err(SchedError::MhTableSizeOutOfRange { size: 13, .. })
        ));
        assert!(matches!(
            Mh::new(opts(200_003)),
            Err(SchedError::MhTableSizeOutOfRange { .. })
        ));
        assert!(Mh::new(opts(4093)).is_ok());
        assert!(Mh::new(opts(251)).is_ok());
        assert_eq!(
            mh(4093).tab_bits,
            6,
            "IP_VS_MH_TAB_BITS = CONFIG_IP_VS_MH_TAB_INDEX / 2 = 12 / 2"
        );
    }

    #[test]
    fn every_slot_filled_equal_weights_equal_shares() {
        let ds = dests(&[1; 7]);
        let s = mh(4093);
        s.update(&ds);
        let c = shares(&s, &ds);
        assert_eq!(c.iter().sum::<usize>(), 4093, "Maglev populates every slot");
        assert!(
            c.iter().all(|&n| n == 584 || n == 585),
            "equal weights take turns: {c:?}"
        );
    }

    #[test]
    fn weights_give_turns() {
        let ds = dests(&[3, 1]);
        let s = mh(4093);
        s.update(&ds);
        let c = shares(&s, &ds);
        // Rounds of 3 + 1 slots: 1023 full rounds (4092) + 1 → 3070 : 1023.
        assert_eq!(
            c,
            [3070, 1023],
            "ip_vs_mh_populate: turns = weight / gcd slots per round"
        );
    }

    #[test]
    fn large_weights_shift_down() {
        // gcd 1, max 1000 → fls(1000) = 10 > 6 bits → rshift 4:
        // turns 1000 >> 4 = 62 and 1 >> 4 = 0 → at least 1; rounds of 63
        // slots: 64 full rounds (4032) and 61 more for the first server.
        let ds = dests(&[1000, 1]);
        let s = mh(4093);
        s.update(&ds);
        let c = shares(&s, &ds);
        assert_eq!(c[0] + c[1], 4093);
        assert_eq!(
            c[1], 64,
            "ip_vs_mh_shift_weight: (lw / gcd) >> rshift, at least 1: {c:?}"
        );
    }

    #[test]
    fn quiesced_server_keeps_its_slots() {
        let ds = dests(&[1, 1, 1]);
        let s = mh(251);
        s.update(&ds);
        let before = s.table.load_full().unwrap();
        ds[1].set_weight(0);
        s.update(&ds);
        let after = s.table.load_full().unwrap();
        let same = before
            .iter()
            .zip(after.iter())
            .all(|(a, b)| Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap()));
        assert!(
            same,
            "mh uses last_weight: quiescing does not repopulate the table"
        );
        let c = (0..2000).find(|&n| {
            let slot = hashkey(0xC000_0200 + n, 0, 0, &HASH1) % 251;
            Arc::ptr_eq(after[slot as usize].as_ref().unwrap(), &ds[1])
        });
        let n = c.expect("some client hashes to server 1");
        assert!(
            s.schedule(&ds, &req(n)).is_none(),
            "mh: quiesced slot → no destination without mh-fallback"
        );
    }

    #[test]
    fn all_zero_weights_empty_table() {
        let ds = dests(&[0, 0]);
        let s = mh(251);
        s.update(&ds);
        assert!(
            s.schedule(&ds, &req(1)).is_none(),
            "mh: gcd < 1 → table reset, no destination"
        );
    }
}
