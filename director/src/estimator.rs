//! The rate estimator behind `ipvsadm --rate`: IPVS's, figure for figure.
//!
//! IPVS samples every service's and real server's counters every 2 s and
//! keeps an exponentially weighted moving average of each rate,
//! `avg += (rate - avg) / 4`, in fixed point: connections and packets per
//! second scaled by 2^10, bytes per second by 2^5. A reader rounds the
//! average back to whole units. So a constant 100 conn/s shows 25, 44, 58,
//! 69, ... and converges on 100; a stopped flow decays the same way, and so
//! do the rates after a zeroing of the counters (`ipvsadm -Z`).
//!
//! This module holds no clock and does no I/O: [`Estimator::tick`] takes the
//! time of the sample and the counters, and scales the rate by the actual
//! interval since the previous sample (exactly IPVS's arithmetic when the
//! samples are 2 s apart, as the daemon takes them). [`RateBook`] keeps one
//! estimator per service and real server of a [`ServiceTable`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use crate::dest::StatsSnapshot;
use crate::service::ServiceKey;
use crate::service_table::ServiceTable;
use crate::time::Millis;

/// How often IPVS samples: every 2 s.
pub const INTERVAL_MS: u64 = 2_000;

/// Fixed-point shift of connection and packet rates (2^10).
const PPS_SHIFT: u32 = 10;
/// Fixed-point shift of byte rates (2^5).
const BPS_SHIFT: u32 = 5;

/// Rates in whole units per second, as `ipvsadm --rate` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSnapshot {
    /// Connections per second (CPS).
    pub cps: u64,
    /// Packets per second in (InPPS).
    pub in_pps: u64,
    /// Packets per second out (OutPPS).
    pub out_pps: u64,
    /// Bytes per second in (InBPS).
    pub in_bps: u64,
    /// Bytes per second out (OutBPS).
    pub out_bps: u64,
}

/// One moving average in fixed point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Avg {
    /// The average, scaled by 2^shift.
    scaled: i64,
}

impl Avg {
    /// Fold in `delta` events over `elapsed_ms`.
    fn update(&mut self, delta: u64, elapsed_ms: u64, shift: u32) {
        // rate = delta / elapsed, scaled: delta * 2^shift * 1000 / ms. With
        // 2000 ms this is IPVS's `delta << (shift - 1)`.
        let rate = (u128::from(delta) << shift) * 1000 / u128::from(elapsed_ms.max(1));
        let rate = i128::try_from(rate)
            .unwrap_or(i128::MAX)
            .min(i128::from(i64::MAX));
        let avg = i128::from(self.scaled);
        // Arithmetic shift, as IPVS's signed `>> 2`.
        let next = avg + ((rate - avg) >> 2);
        self.scaled = i64::try_from(next.clamp(0, i128::from(i64::MAX))).unwrap_or(i64::MAX);
    }

    /// Whole units, rounded as IPVS reads them.
    fn read(self, shift: u32) -> u64 {
        let half = (1i64 << (shift - 1)) - 1;
        u64::try_from(self.scaled.saturating_add(half) >> shift).unwrap_or(0)
    }
}

/// The estimator of one set of counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimator {
    /// The previous sample and when it was taken; `None` before the first.
    last: Option<(Millis, StatsSnapshot)>,
    cps: Avg,
    in_pps: Avg,
    out_pps: Avg,
    in_bps: Avg,
    out_bps: Avg,
}

impl Estimator {
    /// A new estimator: rates 0 until two samples are taken.
    pub fn new() -> Estimator {
        Estimator::default()
    }

    /// Take the sample `stats` at `now`. The first sample only sets the
    /// baseline. A counter lower than before (zeroed) counts as no
    /// traffic, so the rates decay. A sample at the same instant as the
    /// previous one is ignored.
    pub fn tick(&mut self, now: Millis, stats: StatsSnapshot) {
        let Some((at, prev)) = self.last else {
            self.last = Some((now, stats));
            return;
        };
        let elapsed = now.saturating_since(at);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return;
        }
        let d = |cur: u64, old: u64| cur.saturating_sub(old);
        self.cps.update(d(stats.conns, prev.conns), ms, PPS_SHIFT);
        self.in_pps
            .update(d(stats.in_pkts, prev.in_pkts), ms, PPS_SHIFT);
        self.out_pps
            .update(d(stats.out_pkts, prev.out_pkts), ms, PPS_SHIFT);
        self.in_bps
            .update(d(stats.in_bytes, prev.in_bytes), ms, BPS_SHIFT);
        self.out_bps
            .update(d(stats.out_bytes, prev.out_bytes), ms, BPS_SHIFT);
        self.last = Some((now, stats));
    }

    /// The rates now, in whole units per second.
    pub fn rates(&self) -> RateSnapshot {
        RateSnapshot {
            cps: self.cps.read(PPS_SHIFT),
            in_pps: self.in_pps.read(PPS_SHIFT),
            out_pps: self.out_pps.read(PPS_SHIFT),
            in_bps: self.in_bps.read(BPS_SHIFT),
            out_bps: self.out_bps.read(BPS_SHIFT),
        }
    }
}

/// What an estimator belongs to: a service, or one of its real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateKey {
    /// The service.
    pub service: ServiceKey,
    /// The real server; `None` for the service's own counters.
    pub dest: Option<SocketAddr>,
}

/// One estimator per service and real server, fed from a service table.
#[derive(Debug, Default)]
pub struct RateBook {
    estimators: Mutex<HashMap<RateKey, Estimator>>,
}

impl RateBook {
    /// Sample every service and real server of `table` at `now` (the
    /// daemon calls this every [`INTERVAL_MS`]). Estimators of services
    /// and servers no longer in the table are dropped; new ones start.
    pub fn sample(&self, now: Millis, table: &ServiceTable) {
        let samples = table.services().into_iter().flat_map(|s| {
            let key = s.key;
            std::iter::once((
                RateKey {
                    service: key,
                    dest: None,
                },
                s.stats.snapshot(),
            ))
            .chain(s.dests.iter().map(move |d| {
                (
                    RateKey {
                        service: key,
                        dest: Some(d.addr()),
                    },
                    d.stats.snapshot(),
                )
            }))
        });
        self.sample_all(now, samples);
    }

    /// Sample the given counters at `now`; keys not given are dropped.
    pub fn sample_all(
        &self,
        now: Millis,
        samples: impl IntoIterator<Item = (RateKey, StatsSnapshot)>,
    ) {
        let mut map = self.lock();
        let mut next = HashMap::with_capacity(map.len());
        for (key, stats) in samples {
            let mut est = map.remove(&key).unwrap_or_default();
            est.tick(now, stats);
            next.insert(key, est);
        }
        *map = next;
    }

    /// The rates of `key`; zero when it has no estimator yet.
    pub fn rates(&self, key: RateKey) -> RateSnapshot {
        self.lock()
            .get(&key)
            .map(Estimator::rates)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RateKey, Estimator>> {
        self.estimators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Millis {
        Millis(ms)
    }

    fn conns(n: u64) -> StatsSnapshot {
        StatsSnapshot {
            conns: n,
            in_pkts: n * 10,
            out_pkts: 0,
            in_bytes: n * 10 * 1_000,
            out_bytes: 0,
        }
    }

    /// 100 connections per second, sampled every 2 s, as IPVS computes it
    /// by hand: avg(0) = 0; rate = 200 << 9 = 102400;
    /// avg += (102400 - avg) >> 2 gives 25600, 44800, 59200, 70000, ...;
    /// read as (avg + 511) >> 10: 25, 44, 58, 68, ...
    #[test]
    fn constant_rate_converges_like_ipvs() {
        let mut e = Estimator::new();
        e.tick(at(0), conns(0));
        assert_eq!(
            e.rates(),
            RateSnapshot::default(),
            "first sample: baseline only"
        );
        let mut seen = Vec::new();
        for i in 1..=6u64 {
            e.tick(at(i * INTERVAL_MS), conns(i * 200));
            seen.push(e.rates().cps);
        }
        assert_eq!(seen, vec![25, 44, 58, 68, 76, 82]);
        // 1000 packets/s and 1 MB/s: the same curve on their own scales.
        let r = e.rates();
        assert_eq!(r.in_pps, 822, "10 packets per connection");
        assert_eq!(r.in_bps, 822_021);
        assert_eq!((r.out_pps, r.out_bps), (0, 0));
        for i in 7..=60u64 {
            e.tick(at(i * INTERVAL_MS), conns(i * 200));
        }
        assert_eq!(e.rates().cps, 100, "converged");
        assert_eq!(e.rates().in_bps, 1_000_000);
    }

    #[test]
    fn bytes_use_the_2_to_the_5_scale() {
        // 3 bytes in 2 s: rate = 3 << 4 = 48; avg = 12; read (12+15)>>5 = 0.
        // 64 bytes in 2 s: rate = 1024, avg 256, read (256+15)>>5 = 8.
        let mut e = Estimator::new();
        let b = |n| StatsSnapshot {
            in_bytes: n,
            ..Default::default()
        };
        e.tick(at(0), b(0));
        e.tick(at(2_000), b(3));
        assert_eq!(e.rates().in_bps, 0);
        let mut e = Estimator::new();
        e.tick(at(0), b(0));
        e.tick(at(2_000), b(64));
        assert_eq!(e.rates().in_bps, 8);
    }

    #[test]
    fn traffic_stopping_or_zeroed_counters_decay_to_zero() {
        let mut e = Estimator::new();
        e.tick(at(0), conns(0));
        for i in 1..=40u64 {
            e.tick(at(i * INTERVAL_MS), conns(i * 200));
        }
        assert_eq!(e.rates().cps, 100);
        // ipvsadm -Z: counters go back to 0; that is no traffic, not a
        // negative rate.
        e.tick(at(41 * INTERVAL_MS), conns(0));
        assert_eq!(e.rates().cps, 75, "avg 102400 -> 76800 -> read 75");
        let mut t = 42;
        while e.rates() != RateSnapshot::default() {
            e.tick(at(t * INTERVAL_MS), conns(0));
            t += 1;
            assert!(t < 200, "decays within a bounded number of samples");
        }
        assert_eq!(e.rates(), RateSnapshot::default());
    }

    #[test]
    fn the_interval_scales_the_rate() {
        // 100 conns in 1 s is 100 conn/s: the same first figure as 200 in 2 s.
        let mut e = Estimator::new();
        e.tick(at(0), conns(0));
        e.tick(at(1_000), conns(100));
        assert_eq!(e.rates().cps, 25);
        // A repeated instant is ignored.
        e.tick(at(1_000), conns(5_000));
        assert_eq!(e.rates().cps, 25);
    }

    #[test]
    fn the_book_follows_the_table() {
        let book = RateBook::default();
        let svc = ServiceKey {
            protocol: crate::types::Protocol::Tcp,
            vip: "10.0.0.1:80".parse().unwrap(),
        };
        let k = RateKey {
            service: svc,
            dest: None,
        };
        let rs = RateKey {
            service: svc,
            dest: Some("10.0.1.1:80".parse().unwrap()),
        };
        book.sample_all(at(0), [(k, conns(0)), (rs, conns(0))]);
        book.sample_all(at(2_000), [(k, conns(200)), (rs, conns(200))]);
        assert_eq!(book.rates(k).cps, 25);
        assert_eq!(book.rates(rs).cps, 25);
        // The real server left the table: its estimator goes with it.
        book.sample_all(at(4_000), [(k, conns(400))]);
        assert_eq!(book.rates(rs), RateSnapshot::default());
        assert_eq!(book.rates(k).cps, 44);
    }
}
