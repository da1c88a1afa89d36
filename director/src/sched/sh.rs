//! Source hashing (`sh`, `ip_vs_sh.c`).
//!
//! A 256-bucket table is filled in [`Scheduler::update`] by walking the
//! servers in list order and giving each `weight` consecutive buckets (at
//! least one, so a quiesced server keeps a bucket), round and round until
//! all 256 are dealt. A new connection goes to the bucket
//! `hash_32(client_port + client_addr, 8)`, where the port counts only with
//! the `sh-port` flag ([`SchedOptions::port`]).
//!
//! When the bucket's server is quiesced or overloaded, plain sh gives the
//! connection no server. With `sh-fallback` ([`SchedOptions::fallback`]) it
//! instead walks the table deterministically — bucket
//! `(offset + hash) & 255` for each `offset` from the original bucket on —
//! and takes the first available server, so a client keeps landing on the
//! same substitute.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::hash::{fold_addr, hash_32};
use super::{SchedOptions, SchedRequest, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// log2 of the table size (`CONFIG_IP_VS_SH_TAB_BITS`).
const TAB_BITS: u32 = 8;
/// Number of buckets.
const TAB_SIZE: usize = 1 << TAB_BITS;

/// The source-hashing scheduler.
pub struct Sh {
    fallback: bool,
    port: bool,
    /// The buckets; `None` until the first update. Read without a lock.
    table: ArcSwapOption<Vec<Option<Arc<Dest>>>>,
}

impl fmt::Debug for Sh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sh")
            .field("fallback", &self.fallback)
            .field("port", &self.port)
            .field("built", &self.table.load().is_some())
            .finish()
    }
}

/// `is_unavailable()` of sh and mh: quiesced or overloaded.
pub(crate) fn unavailable(d: &Dest) -> bool {
    d.weight() <= 0 || d.is_overloaded()
}

impl Sh {
    /// A source-hashing scheduler honouring `opts.fallback` and `opts.port`.
    pub fn new(opts: SchedOptions) -> Sh {
        Sh {
            fallback: opts.fallback,
            port: opts.port,
            table: ArcSwapOption::empty(),
        }
    }

    /// `ip_vs_sh_reassign`: weight-replicated round-robin fill.
    fn build(dests: &[Arc<Dest>]) -> Vec<Option<Arc<Dest>>> {
        let mut table = Vec::with_capacity(TAB_SIZE);
        let (mut p, mut count) = (0usize, 0i32);
        for _ in 0..TAB_SIZE {
            if dests.is_empty() {
                table.push(None);
                continue;
            }
            let d = &dests[p];
            table.push(Some(Arc::clone(d)));
            count += 1;
            if count >= d.weight() {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
        table
    }

    /// `ip_vs_sh_hashkey`.
    fn bucket(key: u32, offset: u32) -> usize {
        (offset.wrapping_add(hash_32(key, TAB_BITS)) as usize) & (TAB_SIZE - 1)
    }

    fn table(&self, dests: &[Arc<Dest>]) -> Arc<Vec<Option<Arc<Dest>>>> {
        if let Some(t) = self.table.load_full() {
            return t;
        }
        let t = Arc::new(Sh::build(dests));
        self.table.store(Some(Arc::clone(&t)));
        t
    }
}

impl Scheduler for Sh {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sh
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        self.table.store(Some(Arc::new(Sh::build(dests))));
    }

    fn schedule(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        self.pick(&self.table(dests), req)
    }

    fn peek(&self, dests: &[Arc<Dest>], req: &SchedRequest) -> Option<Arc<Dest>> {
        // The lookup is pure; only a table not built yet would be kept by
        // `schedule`: build a throwaway one instead.
        let table = self
            .table
            .load_full()
            .unwrap_or_else(|| Arc::new(Sh::build(dests)));
        self.pick(&table, req)
    }
}

impl Sh {
    /// `ip_vs_sh_schedule` over `table`.
    fn pick(&self, table: &[Option<Arc<Dest>>], req: &SchedRequest) -> Option<Arc<Dest>> {
        let port = if self.port {
            u32::from(req.client.port())
        } else {
            0
        };
        let key = port.wrapping_add(fold_addr(req.client.ip()));
        let ihash = Sh::bucket(key, 0);
        let first = table[ihash].as_ref()?;
        if !unavailable(first) {
            return Some(Arc::clone(first));
        }
        if !self.fallback {
            return None;
        }
        for offset in 0..TAB_SIZE {
            let roffset = ((offset + ihash) % TAB_SIZE) as u32;
            let d = table[Sh::bucket(key, roffset)].as_ref()?;
            if !unavailable(d) {
                return Some(Arc::clone(d));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::sched::testutil::{dests, index_of, req_at};
    use crate::time::Millis;

    fn from(s: &Sh, ds: &[Arc<Dest>], client: SocketAddr) -> Option<usize> {
        let rq = req_at(client, "198.51.100.1:80".parse().unwrap(), Millis::ZERO);
        s.schedule(ds, &rq).map(|d| index_of(ds, &d))
    }

    fn client(n: u32, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xC000_0200 + n)), port)
    }

    #[test]
    fn weights_replicate_buckets() {
        let ds = dests(&[3, 1, 0]);
        let t = Sh::build(&ds);
        let idx: Vec<_> = t[..10]
            .iter()
            .map(|d| index_of(&ds, d.as_ref().unwrap()))
            .collect();
        assert_eq!(
            idx,
            [0, 0, 0, 1, 2, 0, 0, 0, 1, 2],
            "ip_vs_sh_reassign: weight consecutive buckets per server, weight 0 still one bucket"
        );
    }

    #[test]
    fn bucket_is_hash_32_of_source_address() {
        let ds = dests(&[1; 256]);
        let s = Sh::new(SchedOptions::default());
        s.update(&ds);
        for n in 0..64 {
            let c = client(n * 977, 5555);
            let IpAddr::V4(v4) = c.ip() else {
                unreachable!()
            };
            let want = (u32::from(v4).wrapping_mul(0x61C8_8647) >> 24) as usize;
            assert_eq!(
                from(&s, &ds, c),
                Some(want),
                "sh: bucket = hash_32(saddr, 8), port not hashed without sh-port"
            );
        }
    }

    #[test]
    fn port_flag_hashes_the_client_port() {
        let ds = dests(&[1; 8]);
        let plain = Sh::new(SchedOptions::default());
        let port = Sh::new(SchedOptions {
            port: true,
            ..SchedOptions::default()
        });
        plain.update(&ds);
        port.update(&ds);
        let a: Vec<_> = (0..64)
            .map(|p| from(&plain, &ds, client(7, 1000 + p)))
            .collect();
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "sh without sh-port ignores the client port"
        );
        let b: Vec<_> = (0..64)
            .map(|p| from(&port, &ds, client(7, 1000 + p)))
            .collect();
        assert!(
            b.windows(2).any(|w| w[0] != w[1]),
            "sh-port: different source ports spread"
        );
        let want = (7u32 + 0xC000_0200 + 1000).wrapping_mul(0x61C8_8647) >> 24;
        assert_eq!(
            b[0],
            Some(want as usize % 8),
            "sh-port: bucket = hash_32(sport + saddr, 8)"
        );
    }

    #[test]
    fn fallback_walks_to_an_available_server() {
        let ds = dests(&[1, 1, 1, 1]);
        let plain = Sh::new(SchedOptions::default());
        let fb = Sh::new(SchedOptions {
            fallback: true,
            ..SchedOptions::default()
        });
        plain.update(&ds);
        fb.update(&ds);
        let c = (0..)
            .map(|n| client(n, 1))
            .find(|c| from(&plain, &ds, *c) == Some(2))
            .unwrap();
        ds[2].set_weight(0);
        assert_eq!(
            from(&plain, &ds, c),
            None,
            "sh: unavailable bucket → no destination without sh-fallback"
        );
        let sub = from(&fb, &ds, c);
        assert!(
            matches!(sub, Some(i) if i != 2),
            "sh-fallback: another server is taken"
        );
        assert_eq!(from(&fb, &ds, c), sub, "sh-fallback is deterministic");
        for d in &ds {
            d.set_weight(0);
        }
        assert_eq!(
            from(&fb, &ds, c),
            None,
            "sh-fallback: all unavailable → none"
        );
    }
}
