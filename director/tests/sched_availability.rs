//! Quiesce and overload behaviour of every IPVS scheduler, table-driven
//! over `SchedulerKind::ALL` (plus the sh/mh fallback variants).
//!
//! Kernel rules checked, for each algorithm:
//! - a server with weight 0 is quiesced: never picked for a new connection;
//! - a server with IP_VS_DEST_F_OVERLOAD (upper threshold reached) is
//!   skipped;
//! - when every server is quiesced or overloaded the scheduler returns NULL
//!   ("no destination available");
//! - a server that is re-enabled (weight restored, overload cleared) is
//!   picked again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use director::sched::{self, SchedOptions, SchedRequest, Scheduler, SchedulerKind};
use director::{ConnClass, Dest, ForwardMethod, Millis, Protocol};

/// Requests per phase: enough that every hashing scheduler sees every
/// server.
const N: u32 = 400;

fn variants() -> Vec<(String, SchedulerKind, SchedOptions)> {
    let mut v: Vec<_> = SchedulerKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), *k, SchedOptions::default()))
        .collect();
    let fb = SchedOptions {
        fallback: true,
        port: true,
        ..SchedOptions::default()
    };
    v.push(("sh+fallback+port".into(), SchedulerKind::Sh, fb));
    v.push(("mh+fallback+port".into(), SchedulerKind::Mh, fb));
    v
}

/// Schedulers that give no server when the hashed one is unavailable.
fn may_refuse(kind: SchedulerKind, opts: SchedOptions) -> bool {
    match kind {
        SchedulerKind::Dh => true,
        SchedulerKind::Sh | SchedulerKind::Mh => !opts.fallback,
        _ => false,
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Request `i` of phase `phase`: distinct clients and destination
/// addresses per phase, so lblc/lblcr caches of earlier phases are not hit.
fn request(phase: u8, i: u32) -> SchedRequest {
    let client = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, phase, (i >> 8) as u8, i as u8)),
        1024 + i as u16,
    );
    let dest = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(172, 16 + phase, (i >> 8) as u8, i as u8)),
        80,
    );
    SchedRequest {
        protocol: Protocol::Tcp,
        client,
        dest,
        now: Millis(u64::from(phase) * 1000 + u64::from(i)),
        entropy: splitmix(u64::from(phase) << 32 | u64::from(i)),
    }
}

/// A (weight 3, upper threshold 2) first in the list, so it wins every
/// tie; then B (2) and C (1).
fn servers() -> Vec<Arc<Dest>> {
    let d = |last: u8, w: i32| {
        Dest::new(
            SocketAddr::from(([10, 9, 0, last], 80)),
            ForwardMethod::DirectRouting,
            w,
        )
    };
    vec![
        Arc::new(d(1, 3).with_thresholds(2, 0)),
        Arc::new(d(2, 2)),
        Arc::new(d(3, 1)),
    ]
}

struct Phase {
    picks: Vec<Option<usize>>,
}

impl Phase {
    fn run(s: &dyn Scheduler, ds: &[Arc<Dest>], phase: u8) -> Phase {
        let picks = (0..N)
            .map(|i| {
                s.schedule(ds, &request(phase, i)).map(|d| {
                    ds.iter()
                        .position(|x| Arc::ptr_eq(x, &d))
                        .expect("a server of the list")
                })
            })
            .collect();
        Phase { picks }
    }
    fn chose(&self, k: usize) -> bool {
        self.picks.contains(&Some(k))
    }
    fn all_some(&self) -> bool {
        self.picks.iter().all(Option::is_some)
    }
    fn any_some(&self) -> bool {
        self.picks.iter().any(Option::is_some)
    }
    fn all_none(&self) -> bool {
        self.picks.iter().all(Option::is_none)
    }
}

#[test]
fn every_scheduler_honours_quiesce_and_overload() {
    for (name, kind, opts) in variants() {
        let s = sched::new(kind, opts).unwrap();
        assert_eq!(s.kind(), kind);
        let ds = servers();
        s.update(&ds);
        let a = &ds[0];

        let p = Phase::run(&*s, &ds, 1);
        assert!(
            p.all_some(),
            "{name}: every server available → a server for every connection"
        );
        assert!(p.chose(0), "{name}: server A is picked while available");

        // Quiesce A: weight 0 (ipvsadm -e -w 0), control plane updates.
        a.set_weight(0);
        s.update(&ds);
        let p = Phase::run(&*s, &ds, 2);
        assert!(
            !p.chose(0),
            "{name}: weight 0 = quiesced, never picked for new connections"
        );
        if may_refuse(kind, opts) {
            assert!(
                p.any_some(),
                "{name}: keys hashed to other servers still get one"
            );
        } else {
            assert!(
                p.all_some(),
                "{name}: another server takes every connection"
            );
        }

        // Re-enable A.
        a.set_weight(3);
        s.update(&ds);
        let p = Phase::run(&*s, &ds, 3);
        assert!(
            p.chose(0),
            "{name}: re-enabled (weight restored) server is picked again"
        );

        // Overload A: two connections reach its upper threshold of 2.
        a.bind(ConnClass::Active);
        a.bind(ConnClass::Active);
        assert!(a.is_overloaded());
        let p = Phase::run(&*s, &ds, 4);
        assert!(
            !p.chose(0),
            "{name}: IP_VS_DEST_F_OVERLOAD server is skipped"
        );
        if may_refuse(kind, opts) {
            assert!(
                p.any_some(),
                "{name}: keys hashed to other servers still get one"
            );
        } else {
            assert!(
                p.all_some(),
                "{name}: another server takes every connection"
            );
        }

        // Connections close: below 3/4 of the threshold clears the flag.
        a.unbind(ConnClass::Active);
        a.unbind(ConnClass::Active);
        assert!(!a.is_overloaded());
        let p = Phase::run(&*s, &ds, 5);
        assert!(
            p.chose(0),
            "{name}: server no longer overloaded is picked again"
        );

        // Everything quiesced.
        for d in &ds {
            d.set_weight(0);
        }
        s.update(&ds);
        let p = Phase::run(&*s, &ds, 6);
        assert!(
            p.all_none(),
            "{name}: all quiesced → no destination available"
        );

        // Weights back, everything overloaded.
        for (d, w) in ds.iter().zip([3, 2, 1]) {
            d.set_weight(w);
            if d.thresholds().0 == 0 {
                d.set_thresholds(1, 0);
            }
            d.bind(ConnClass::Inactive);
            d.bind(ConnClass::Inactive);
            assert!(d.is_overloaded());
        }
        s.update(&ds);
        let p = Phase::run(&*s, &ds, 7);
        assert!(
            p.all_none(),
            "{name}: all overloaded → no destination available"
        );

        // Empty service.
        s.update(&[]);
        assert!(
            s.schedule(&[], &request(8, 0)).is_none(),
            "{name}: no servers → none"
        );
    }
}

#[test]
fn new_refuses_a_bad_mh_table_size() {
    let bad = SchedOptions {
        mh_table_size: 4000,
        ..SchedOptions::default()
    };
    let err = sched::new(SchedulerKind::Mh, bad).unwrap_err();
    assert_eq!(err, sched::SchedError::MhTableNotPrime(4000));
    assert!(err.to_string().contains("not prime"), "{err}");
    let small = SchedOptions {
        mh_table_size: 7,
        ..SchedOptions::default()
    };
    assert!(matches!(
        sched::new(SchedulerKind::Mh, small),
        Err(sched::SchedError::MhTableSizeOutOfRange { size: 7, .. })
    ));
    // Other schedulers ignore the table size.
    assert!(sched::new(SchedulerKind::Rr, bad).is_ok());
    for k in SchedulerKind::ALL {
        assert_eq!(sched::new(k, SchedOptions::default()).unwrap().kind(), k);
    }
}
