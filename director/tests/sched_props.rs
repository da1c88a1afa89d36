//! Property tests of the schedulers' invariants: hashing stability across
//! calls and across independently built schedulers (what keeps the two
//! directors of a pair in agreement), Maglev's minimal disruption, wrr's
//! ratios over a cycle, twos' weighted draw, and the lc/wlc choice.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use director::sched::{self, SchedOptions, SchedRequest, Scheduler, SchedulerKind};
use director::{Dest, ForwardMethod, Millis, Protocol};
use proptest::prelude::*;

fn servers(weights: &[i32]) -> Vec<Arc<Dest>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080));
            Arc::new(Dest::new(addr, ForwardMethod::Masquerade, w))
        })
        .collect()
}

fn request(client: u32, port: u16, dest: u32, entropy: u64) -> SchedRequest {
    SchedRequest {
        protocol: Protocol::Tcp,
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(client)), port),
        dest: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(dest)), 80),
        now: Millis::ZERO,
        entropy,
    }
}

fn pick_addr(s: &dyn Scheduler, ds: &[Arc<Dest>], r: &SchedRequest) -> Option<SocketAddr> {
    s.schedule(ds, r).map(|d| d.addr())
}

/// A small deterministic PRNG (splitmix64) for the statistical tests.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

fn hashing_kinds() -> Vec<(SchedulerKind, SchedOptions)> {
    let mut v = Vec::new();
    for kind in [SchedulerKind::Sh, SchedulerKind::Dh, SchedulerKind::Mh] {
        for (fallback, port) in [(false, false), (true, false), (false, true), (true, true)] {
            v.push((
                kind,
                SchedOptions {
                    fallback,
                    port,
                    ..SchedOptions::default()
                },
            ));
        }
    }
    v.push((
        SchedulerKind::Mh,
        SchedOptions {
            mh_table_size: 251,
            ..SchedOptions::default()
        },
    ));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// sh/dh/mh: same input → same server, across calls and across two
    /// schedulers built independently (two directors of a pair).
    #[test]
    fn hashing_is_stable_and_unseeded(
        weights in prop::collection::vec(0i32..6, 1..24),
        quiesce in prop::collection::vec(any::<bool>(), 24),
        keys in prop::collection::vec((any::<u32>(), any::<u16>(), any::<u32>()), 1..64),
    ) {
        for (kind, opts) in hashing_kinds() {
            let a = sched::new(kind, opts).unwrap();
            let b = sched::new(kind, opts).unwrap();
            let da = servers(&weights);
            let db = servers(&weights);
            a.update(&da);
            b.update(&db);
            // Quiesce some servers after the tables are built.
            for (i, q) in quiesce.iter().take(weights.len()).enumerate() {
                if *q {
                    da[i].set_weight(0);
                    db[i].set_weight(0);
                }
            }
            for &(c, p, d) in &keys {
                let r = request(c, p, d, 0);
                let first = pick_addr(&*a, &da, &r);
                prop_assert_eq!(first, pick_addr(&*a, &da, &r), "{} {:?}: same key, same server", kind, opts);
                prop_assert_eq!(first, pick_addr(&*b, &db, &r), "{} {:?}: independently built scheduler agrees", kind, opts);
                if let Some(addr) = first {
                    let d = da.iter().find(|d| d.addr() == addr).unwrap();
                    prop_assert!(d.weight() > 0, "{} never returns a quiesced server", kind);
                }
            }
        }
    }

    /// Every scheduler: `peek` answers what the next `schedule` picks, and
    /// changes nothing — over a run of new connections that load the
    /// servers, with weights edited along the way.
    #[test]
    fn peek_is_the_next_pick_and_changes_nothing(
        weights in prop::collection::vec(0i32..5, 1..8),
        flows in prop::collection::vec((any::<u32>(), any::<u16>(), 0u32..4, any::<u64>(), 0usize..8, 0i32..5), 1..40),
    ) {
        for kind in SchedulerKind::ALL {
            let s = sched::new(kind, SchedOptions { fallback: true, ..SchedOptions::default() }).unwrap();
            let ds = servers(&weights);
            s.update(&ds);
            for (step, &(c, p, d, e, edit, w)) in flows.iter().enumerate() {
                if step % 5 == 4 {
                    ds[edit % ds.len()].set_weight(w);
                    s.update(&ds);
                }
                let r = request(c, p, d, e);
                let peeked = s.peek(&ds, &r).map(|d| d.addr());
                prop_assert_eq!(peeked, s.peek(&ds, &r).map(|d| d.addr()), "{}: peek twice", kind);
                let got = s.schedule(&ds, &r);
                prop_assert_eq!(got.as_ref().map(|d| d.addr()), peeked, "{}: step {}", kind, step);
                if let Some(d) = got {
                    d.bind(director::ConnClass::Active);
                }
            }
        }
    }

    /// wrr: over whole cycles each server is picked weight/gcd times per cycle.
    #[test]
    fn wrr_ratio_over_a_cycle_equals_weight_ratio(
        weights in prop::collection::vec(1i32..20, 1..8),
        cycles in 1usize..4,
    ) {
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        let cycle: i32 = weights.iter().map(|w| w / g).sum();
        let s = sched::new(SchedulerKind::Wrr, SchedOptions::default()).unwrap();
        let ds = servers(&weights);
        s.update(&ds);
        let mut counts = vec![0i32; ds.len()];
        for _ in 0..cycle as usize * cycles {
            let d = s.schedule(&ds, &request(1, 1, 1, 0)).unwrap();
            counts[ds.iter().position(|x| Arc::ptr_eq(x, &d)).unwrap()] += 1;
        }
        let want: Vec<i32> = weights.iter().map(|w| w / g * cycles as i32).collect();
        prop_assert_eq!(counts, want, "wrr: picks per cycle are weight / gcd");
    }

    /// lc: the pick has the least overhead among servers with weight > 0, and
    /// is the first such in list order.
    #[test]
    fn lc_picks_first_least_overhead(
        spec in prop::collection::vec((0i32..4, 0u32..4, 0u32..600), 1..12),
    ) {
        let ds = servers(&spec.iter().map(|s| s.0).collect::<Vec<_>>());
        for (d, &(_, a, i)) in ds.iter().zip(&spec) {
            d.set_counters(a, i);
        }
        let s = sched::new(SchedulerKind::Lc, SchedOptions::default()).unwrap();
        let got = s.schedule(&ds, &request(1, 1, 1, 0));
        let want = ds.iter().filter(|d| d.weight() > 0).min_by_key(|d| d.overhead());
        prop_assert_eq!(got.map(|d| d.addr()), want.map(|d| d.addr()), "lc: first server with the least active*256+inactive");
    }

    /// wlc: the pick minimises overhead/weight, first in list order on ties.
    #[test]
    fn wlc_picks_first_least_overhead_per_weight(
        spec in prop::collection::vec((0i32..5, 0u32..4, 0u32..600), 1..12),
    ) {
        let ds = servers(&spec.iter().map(|s| s.0).collect::<Vec<_>>());
        for (d, &(_, a, i)) in ds.iter().zip(&spec) {
            d.set_counters(a, i);
        }
        let s = sched::new(SchedulerKind::Wlc, SchedOptions::default()).unwrap();
        let got = s.schedule(&ds, &request(1, 1, 1, 0));
        let mut want: Option<&Arc<Dest>> = None;
        for d in ds.iter().filter(|d| d.weight() > 0) {
            // d strictly better than want: d.oh / d.w < w.oh / w.w
            let ratio_below = |w: &Arc<Dest>| {
                let (dw, ww) = (u128::from(d.weight() as u32), u128::from(w.weight() as u32));
                u128::from(d.overhead()) * ww < u128::from(w.overhead()) * dw
            };
            if want.is_none_or(ratio_below) {
                want = Some(d);
            }
        }
        prop_assert_eq!(got.map(|d| d.addr()), want.map(|d| d.addr()), "wlc: least overhead/weight, ties to the first");
    }
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Fraction of `keys` whose server changes when server `gone` leaves a
/// Maglev service of `n` equal servers: (share of keys that were on the
/// removed server, share of the other keys that moved anyway).
fn mh_disruption(n: usize, gone: usize, keys: u32, table: u32) -> (f64, f64) {
    let opts = SchedOptions {
        mh_table_size: table,
        ..SchedOptions::default()
    };
    let before = sched::new(SchedulerKind::Mh, opts).unwrap();
    let after = sched::new(SchedulerKind::Mh, opts).unwrap();
    let ds = servers(&vec![1; n]);
    let rest: Vec<_> = ds
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, d)| d.clone())
        .collect();
    before.update(&ds);
    after.update(&rest);
    let gone_addr = ds[gone].addr();
    let (mut on_gone, mut moved_other) = (0u32, 0u32);
    let mut rng = SplitMix(n as u64 * 1000 + gone as u64);
    for _ in 0..keys {
        let r = request(rng.next() as u32, 1, 1, 0);
        let b = pick_addr(&*before, &ds, &r).unwrap();
        let a = pick_addr(&*after, &rest, &r).unwrap();
        if b == gone_addr {
            on_gone += 1;
        } else if a != b {
            moved_other += 1;
        }
    }
    (
        f64::from(on_gone) / f64::from(keys),
        f64::from(moved_other) / f64::from(keys - on_gone),
    )
}

#[test]
fn mh_removing_one_of_ten_moves_about_a_tenth() {
    for gone in [0, 4, 9] {
        let (on_gone, moved_other) = mh_disruption(10, gone, 20_000, 4093);
        println!("mh N=10 remove {gone}: on removed {on_gone:.4}, others moved {moved_other:.4}");
        assert!(
            (0.085..0.115).contains(&on_gone),
            "Maglev: keys on the removed server ≈ 1/N ({on_gone:.4})"
        );
        assert!(
            moved_other < 0.03,
            "Maglev minimal disruption: keys on surviving servers stay ({moved_other:.4})"
        );
    }
}

#[test]
fn mh_removing_one_of_twenty() {
    let (on_gone, moved_other) = mh_disruption(20, 7, 20_000, 4093);
    println!("mh N=20 remove 7: on removed {on_gone:.4}, others moved {moved_other:.4}");
    assert!(
        (0.04..0.06).contains(&on_gone),
        "Maglev: keys on the removed server ≈ 1/N ({on_gone:.4})"
    );
    assert!(
        moved_other < 0.03,
        "Maglev minimal disruption ({moved_other:.4})"
    );
}

/// twos with equal (zero) load: the pick is the first draw, a weighted
/// draw in 0..=total where the first server also owns the extra value.
#[test]
fn twos_distribution_follows_weights() {
    for (seed, weights) in [
        (1u64, vec![1, 2, 3, 4]),
        (2, vec![5, 5]),
        (3, vec![1, 10, 1, 30, 8]),
    ] {
        let s = sched::new(SchedulerKind::Twos, SchedOptions::default()).unwrap();
        let ds = servers(&weights);
        let mut rng = SplitMix(seed);
        let picks = 100_000;
        let mut counts = vec![0u32; ds.len()];
        for _ in 0..picks {
            let d = s.schedule(&ds, &request(1, 1, 1, rng.next())).unwrap();
            counts[ds.iter().position(|x| Arc::ptr_eq(x, &d)).unwrap()] += 1;
        }
        let span = f64::from(weights.iter().sum::<i32>() + 1);
        for (i, (&c, &w)) in counts.iter().zip(&weights).enumerate() {
            let expected = (f64::from(w) + if i == 0 { 1.0 } else { 0.0 }) / span;
            let got = f64::from(c) / f64::from(picks);
            assert!(
                (got - expected).abs() < 0.01,
                "twos draw ∝ weight (inclusive bound favours the first): server {i} weight {w} got {got:.4} want {expected:.4}"
            );
        }
    }
}

/// twos with load: the less loaded of the two draws wins, so a server with
/// many connections gets fewer new ones than its weight alone would give.
#[test]
fn twos_prefers_the_less_loaded_draw() {
    let s = sched::new(SchedulerKind::Twos, SchedOptions::default()).unwrap();
    let ds = servers(&[1, 1, 1, 1]);
    ds[0].set_counters(10, 0);
    let mut rng = SplitMix(7);
    let mut on_busy = 0;
    for _ in 0..20_000 {
        let d = s.schedule(&ds, &request(1, 1, 1, rng.next())).unwrap();
        on_busy += u32::from(Arc::ptr_eq(&d, &ds[0]));
    }
    // Busy server wins only when both draws land on it: (2/5)^2 = 0.16.
    let frac = f64::from(on_busy) / 20_000.0;
    assert!(
        (0.14..0.18).contains(&frac),
        "twos: busy server only when drawn twice ({frac:.4})"
    );
}

/// Schedulers are shared by worker threads: concurrent picks stay valid.
#[test]
fn concurrent_schedule_is_safe() {
    for kind in SchedulerKind::ALL {
        let s = sched::new(kind, SchedOptions::default()).unwrap();
        let ds = servers(&[3, 2, 1, 4]);
        s.update(&ds);
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                let (s, ds) = (&s, &ds);
                scope.spawn(move || {
                    let mut rng = SplitMix(u64::from(t));
                    for i in 0..2_000u32 {
                        let r = request(rng.next() as u32, i as u16, rng.next() as u32, rng.next());
                        let d = s.schedule(ds, &r).expect("a server");
                        assert!(
                            ds.iter().any(|x| Arc::ptr_eq(x, &d)),
                            "{kind}: pick from the list"
                        );
                    }
                });
            }
        });
    }
}
