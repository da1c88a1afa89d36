//! The neighbour cache on a virtual clock: resolution and its retries,
//! failure and back-off, reachable → stale → probe, the published view the
//! workers read, seeding from the kernel, and the entry bound.

mod arp_util;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arp_util::*;
use director::Millis;
use director::arp::{LearnOutcome, NeighbourCache, NeighbourConfig, NeighbourState, Solicit};
use director::forward::MacAddr;

const T0: Millis = Millis(100_000);

fn at(ms: u64) -> Millis {
    Millis(T0.0 + ms)
}

/// Drives the cache like the control thread does: sleep to each
/// `poll_timeout`, send what `poll_requests` says, until `end`. Returns
/// (milliseconds since T0, request) for each request sent.
fn drive(c: &mut NeighbourCache, end: Millis) -> Vec<(u64, Solicit)> {
    let mut sent = Vec::new();
    let mut last = None;
    for _ in 0..10_000 {
        let Some(t) = c.poll_timeout() else { break };
        if t > end {
            break;
        }
        // Progress: the same deadline twice in a row would be a busy loop.
        assert_ne!(Some(t), last, "poll_timeout did not move past {t:?}");
        last = Some(t);
        for s in c.poll_requests(t) {
            sent.push((t.0 - T0.0, s));
        }
    }
    sent
}

fn bcast(ip: Ipv4Addr) -> Solicit {
    Solicit { ip, unicast: None }
}

fn ucast(ip: Ipv4Addr, mac: MacAddr) -> Solicit {
    Solicit {
        ip,
        unicast: Some(mac),
    }
}

#[test]
fn arp_cache_want_requests_at_once_retries_each_second_then_fails() {
    let mut c = NeighbourCache::default();
    assert!(c.want(RS_IP, T0));
    assert_eq!(c.poll_timeout(), Some(T0), "requested at once");
    let sent = drive(&mut c, at(3_000));
    assert_eq!(
        sent,
        [
            (0, bcast(RS_IP)),
            (1_000, bcast(RS_IP)),
            (2_000, bcast(RS_IP))
        ],
        "three broadcast requests, retrans_time apart"
    );
    assert_eq!(
        c.state(RS_IP),
        Some(NeighbourState::Failed {
            retry_at: at(3_000 + 5_000)
        }),
        "failed one retrans_time after the third request"
    );
    assert_eq!(c.lookup(RS_IP, at(3_000)), None);
    assert_eq!(c.view().lookup(RS_IP), None);

    // Back-off: 5 s, then 10 s, 20 s, ... capped at 60 s.
    let sent = drive(&mut c, at(200_000));
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times[..9],
        [
            8_000, 9_000, 10_000, // retry after 5 s
            21_000, 22_000, 23_000, // after 10 s
            44_000, 45_000, 46_000, // after 20 s
        ]
    );
    // 40 s, then the 60 s cap.
    assert_eq!(
        times[9..15],
        [87_000, 88_000, 89_000, 150_000, 151_000, 152_000]
    );
    assert!(sent.iter().all(|(_, s)| *s == bcast(RS_IP)));
}

#[test]
fn arp_cache_reply_resolves_and_resets_the_back_off() {
    let mut c = NeighbourCache::default();
    c.want(RS_IP, T0);
    drive(&mut c, at(10_000)); // failed once, retrying
    assert_eq!(c.learn(RS_IP, RS_MAC, at(10_500)), LearnOutcome::Resolved);
    assert_eq!(
        c.state(RS_IP),
        Some(NeighbourState::Reachable {
            mac: RS_MAC,
            until: at(40_500)
        })
    );
    assert_eq!(c.view().lookup(RS_IP), Some(RS_MAC));
    // It dies later: three unicast probes, and the back-off after that
    // failure is the first one (5 s) again, not the 10 s it had reached.
    let sent = drive(&mut c, at(49_500));
    assert_eq!(
        sent,
        [
            (40_500, ucast(RS_IP, RS_MAC)),
            (41_500, ucast(RS_IP, RS_MAC)),
            (42_500, ucast(RS_IP, RS_MAC)),
            (48_500, bcast(RS_IP)),
            (49_500, bcast(RS_IP)),
        ]
    );
}

#[test]
fn arp_cache_learn_reachable_then_stale_still_usable_then_reprobed() {
    let mut c = NeighbourCache::default();
    let view = c.view();
    assert_eq!(c.learn(ROUTER_IP, ROUTER_MAC, T0), LearnOutcome::New);
    assert_eq!(c.poll_timeout(), Some(at(30_000)));
    assert!(
        drive(&mut c, at(30_000)).is_empty(),
        "unused: nothing to verify"
    );
    assert_eq!(
        c.state(ROUTER_IP),
        Some(NeighbourState::Stale {
            mac: ROUTER_MAC,
            since: at(30_000)
        }),
        "stale after reachable_time"
    );
    assert_eq!(
        view.peek(ROUTER_IP),
        Some(ROUTER_MAC),
        "stale is still usable"
    );

    // The owner uses it: re-verified at once, by unicast.
    assert_eq!(c.lookup(ROUTER_IP, at(31_000)), Some(ROUTER_MAC));
    assert_eq!(c.poll_timeout(), Some(at(31_000)));
    let sent = drive(&mut c, at(32_500));
    assert_eq!(
        sent,
        [
            (31_000, ucast(ROUTER_IP, ROUTER_MAC)),
            (32_000, ucast(ROUTER_IP, ROUTER_MAC))
        ]
    );
    assert_eq!(
        view.lookup(ROUTER_IP),
        Some(ROUTER_MAC),
        "still usable while probed"
    );
    assert_eq!(
        c.learn(ROUTER_IP, ROUTER_MAC, at(32_600)),
        LearnOutcome::Confirmed
    );
    assert!(matches!(
        c.state(ROUTER_IP),
        Some(NeighbourState::Reachable { until, .. }) if until == at(62_600)
    ));
}

#[test]
fn arp_cache_worker_use_of_a_stale_entry_triggers_a_probe() {
    let mut c = NeighbourCache::default();
    let view = c.view();
    c.learn(ROUTER_IP, ROUTER_MAC, T0);
    drive(&mut c, at(30_000));
    assert!(matches!(
        c.state(ROUTER_IP),
        Some(NeighbourState::Stale { .. })
    ));
    // A worker forwards through it; the owner notices within
    // delay_first_probe (5 s) without being told.
    assert_eq!(view.lookup(ROUTER_IP), Some(ROUTER_MAC));
    let sent = drive(&mut c, at(36_000));
    assert_eq!(
        sent,
        [
            (35_000, ucast(ROUTER_IP, ROUTER_MAC)),
            (36_000, ucast(ROUTER_IP, ROUTER_MAC))
        ]
    );
}

#[test]
fn arp_cache_entry_in_use_is_reprobed_when_its_reachable_time_ends() {
    let mut c = NeighbourCache::default();
    let view = c.view();
    c.learn(ROUTER_IP, ROUTER_MAC, T0);
    assert_eq!(view.lookup(ROUTER_IP), Some(ROUTER_MAC)); // forwarding
    let sent = drive(&mut c, at(30_000));
    assert_eq!(sent, [(30_000, ucast(ROUTER_IP, ROUTER_MAC))]);
    assert!(matches!(
        c.state(ROUTER_IP),
        Some(NeighbourState::Probe { .. })
    ));
}

#[test]
fn arp_cache_wanted_entry_probes_then_fails_and_leaves_the_view() {
    let mut c = NeighbourCache::default();
    let view = c.view();
    c.want(RS_IP, T0);
    drive(&mut c, T0);
    c.learn(RS_IP, RS_MAC, at(100));
    let v = view.version();
    // Wanted: kept fresh even if no packet uses it. The real server then
    // dies: three unicast probes, then failed.
    let sent = drive(&mut c, at(33_100));
    assert_eq!(
        sent,
        [
            (30_100, ucast(RS_IP, RS_MAC)),
            (31_100, ucast(RS_IP, RS_MAC)),
            (32_100, ucast(RS_IP, RS_MAC))
        ]
    );
    assert!(matches!(
        c.state(RS_IP),
        Some(NeighbourState::Failed { .. })
    ));
    assert_eq!(view.lookup(RS_IP), None, "a failed neighbour is not used");
    assert!(view.version() > v, "the view was republished");
    // Then it is asked for again by broadcast after the back-off.
    let sent = drive(&mut c, at(38_100));
    assert_eq!(sent, [(38_100, bcast(RS_IP))]);
}

#[test]
fn arp_cache_unused_stale_entries_are_collected_wanted_ones_never() {
    let mut c = NeighbourCache::default();
    c.learn(ROUTER_IP, ROUTER_MAC, T0);
    c.seed(PEER_IP, PEER_MAC, T0);
    drive(&mut c, at(90_000 - 1));
    assert!(c.contains(ROUTER_IP), "stale since 30 s, kept for 60 s");
    drive(&mut c, at(90_000));
    assert!(!c.contains(ROUTER_IP));
    assert!(!c.contains(PEER_IP), "seeded (stale at 0) gone after 60 s");
    assert_eq!(c.view().peek(ROUTER_IP), None);
    assert_eq!(c.poll_timeout(), None, "nothing left to do");

    // A wanted neighbour that answers stays forever.
    c.want(RS_IP, at(100_000));
    for i in 0..10u64 {
        let now = at(100_000 + i * 30_000);
        drive(&mut c, now);
        c.learn(RS_IP, RS_MAC, now);
    }
    assert!(c.contains(RS_IP));
    // Not wanted any more: it ages out.
    c.unwant(RS_IP);
    drive(&mut c, at(1_000_000));
    assert!(!c.contains(RS_IP));
}

#[test]
fn arp_cache_published_view_follows_every_change() {
    let mut c = NeighbourCache::default();
    let view = c.view();
    let other_view = view.clone();
    assert_eq!((view.version(), view.len()), (0, 0));
    c.want(RS_IP, T0);
    assert_eq!(
        view.version(),
        0,
        "an incomplete entry has nothing to publish"
    );
    c.learn(RS_IP, RS_MAC, T0);
    assert_eq!((view.version(), view.peek(RS_IP)), (1, Some(RS_MAC)));
    c.learn(RS_IP, RS_MAC, at(1));
    assert_eq!(view.version(), 1, "a confirmation changes no mapping");
    let moved = MacAddr([2, 0, 0, 0, 0, 0x77]);
    assert_eq!(
        c.learn(RS_IP, moved, at(2)),
        LearnOutcome::Changed { old: RS_MAC }
    );
    assert_eq!((view.version(), view.peek(RS_IP)), (2, Some(moved)));
    c.seed(ROUTER_IP, ROUTER_MAC, at(3));
    assert_eq!(view.version(), 3);
    assert_eq!(
        other_view.snapshot(),
        [(ROUTER_IP, ROUTER_MAC), (RS_IP, moved)]
    );
    c.remove(ROUTER_IP);
    assert_eq!((view.version(), view.len()), (4, 1));
    assert_eq!(c.version(), view.version());
}

#[test]
fn arp_cache_seed_is_usable_stale_and_never_overrides() {
    let mut c = NeighbourCache::default();
    assert_eq!(c.seed(ROUTER_IP, ROUTER_MAC, T0), LearnOutcome::New);
    assert_eq!(
        c.state(ROUTER_IP),
        Some(NeighbourState::Stale {
            mac: ROUTER_MAC,
            since: T0
        })
    );
    assert_eq!(c.view().lookup(ROUTER_IP), Some(ROUTER_MAC));
    // Our own fresher knowledge wins over the kernel's.
    c.learn(RS_IP, RS_MAC, T0);
    assert_eq!(
        c.seed(RS_IP, MacAddr([2, 0, 0, 0, 0, 9]), T0),
        LearnOutcome::Confirmed
    );
    assert_eq!(c.view().peek(RS_IP), Some(RS_MAC));
    // A wanted address still resolving takes the seed and verifies it by
    // unicast at once.
    c.want(PEER_IP, T0);
    assert_eq!(c.seed(PEER_IP, PEER_MAC, T0), LearnOutcome::Resolved);
    assert_eq!(c.view().peek(PEER_IP), Some(PEER_MAC));
    // The router's seeded entry was used above: it is verified too.
    assert_eq!(
        c.poll_requests(T0),
        [ucast(ROUTER_IP, ROUTER_MAC), ucast(PEER_IP, PEER_MAC)]
    );
}

#[test]
fn arp_cache_want_of_a_stale_entry_reverifies_it() {
    let mut c = NeighbourCache::default();
    c.seed(RS_IP, RS_MAC, T0);
    assert!(c.poll_requests(T0).is_empty());
    assert!(c.want(RS_IP, at(10)));
    assert!(c.want(RS_IP, at(20)), "idempotent");
    assert_eq!(c.poll_requests(at(20)), [ucast(RS_IP, RS_MAC)]);
    assert!(
        c.poll_requests(at(30)).is_empty(),
        "asked once per retrans_time"
    );
}

#[test]
fn arp_cache_resolve_on_miss_is_not_pinned() {
    let mut c = NeighbourCache::default();
    assert!(c.resolve(RS_IP, T0));
    assert!(c.resolve(RS_IP, at(10)), "repeated misses ask nothing more");
    assert_eq!(drive(&mut c, at(3_000)).len(), 3);
    assert!(matches!(
        c.state(RS_IP),
        Some(NeighbourState::Failed { .. })
    ));
    // Nobody asked again during the back-off: forgotten.
    drive(&mut c, at(8_000));
    assert!(!c.contains(RS_IP));
    // Misses during the back-off keep it being retried.
    c.resolve(RS_IP, at(10_000));
    drive(&mut c, at(13_000));
    c.resolve(RS_IP, at(14_000));
    let sent = drive(&mut c, at(18_000));
    assert_eq!(sent.first().map(|s| s.0), Some(18_000));
}

#[test]
fn arp_cache_is_bounded_and_wanted_entries_win() {
    let cfg = NeighbourConfig {
        max_entries: 2,
        ..NeighbourConfig::default()
    };
    let mut c = NeighbourCache::new(cfg);
    let a = Ipv4Addr::new(192, 0, 2, 101);
    let b = Ipv4Addr::new(192, 0, 2, 102);
    let x = Ipv4Addr::new(192, 0, 2, 103);
    assert_eq!(c.learn(a, ROUTER_MAC, T0), LearnOutcome::New);
    assert_eq!(c.learn(b, PEER_MAC, T0), LearnOutcome::New);
    assert_eq!(
        c.learn(x, RS_MAC, T0),
        LearnOutcome::CacheFull,
        "fresh entries are not displaced by learning"
    );
    // A wanted address displaces a learned one.
    assert!(c.want(RS_IP, T0));
    assert_eq!(c.len(), 2);
    assert!(c.want(GW_VIP, T0));
    assert!(!c.want(x, T0), "full of wanted entries");
    assert!(c.is_wanted(RS_IP) && c.is_wanted(GW_VIP));
    // Stale learned entries may be displaced by learning.
    let mut c = NeighbourCache::new(cfg);
    c.learn(a, ROUTER_MAC, T0);
    c.learn(b, PEER_MAC, at(1_000));
    drive(&mut c, at(31_000));
    assert_eq!(c.learn(x, RS_MAC, at(31_000)), LearnOutcome::New);
    assert!(!c.contains(a), "the oldest stale entry went");
    assert!(c.contains(b));
}

#[test]
fn arp_cache_view_reads_concurrently_with_updates() {
    let mut c = NeighbourCache::new(NeighbourConfig {
        reachable_time: Duration::from_millis(10),
        ..NeighbourConfig::default()
    });
    let macs = [ROUTER_MAC, PEER_MAC, RS_MAC];
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let v = c.view();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut hits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(m) = v.lookup(RS_IP) {
                        assert!(macs.contains(&m));
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    for i in 0..3_000u64 {
        let now = at(i);
        c.learn(RS_IP, macs[(i % 3) as usize], now);
        c.poll_requests(now);
        if i % 100 == 0 {
            c.remove(RS_IP);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader panicked");
    }
    assert!(c.version() > 2_000);
}
