//! Gratuitous ARP on becoming active, on a virtual clock: keepalived's
//! garp_master_repeat / garp_master_delay / garp_master_refresh.

mod arp_util;

use std::net::Ipv4Addr;
use std::time::Duration;

use arp_util::*;
use director::Millis;
use director::arp::{
    ArpConfig, ArpFrame, ArpOp, ArpResponder, GarpBurst, GarpBurstKind, GarpForm, GarpSchedule,
};

const T0: Millis = Millis(10_000);

fn ms(t: Millis, d: u64) -> Millis {
    Millis(t.0 + d)
}

/// Steps the schedule from `start` to `end` by its own timeouts (bounded),
/// returning (time, bursts) for every poll that produced something.
fn run(s: &mut GarpSchedule, end: Millis) -> Vec<(Millis, Vec<GarpBurst>)> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let Some(t) = s.poll_timeout() else { break };
        if t > end {
            break;
        }
        let b = s.poll(t);
        assert!(!b.is_empty(), "a timeout with nothing due at {t:?}");
        out.push((t, b));
    }
    out
}

fn count_per_vip(frames: &[ArpFrame], vip: Ipv4Addr) -> usize {
    frames
        .iter()
        .filter(|f| {
            let r = f.repr();
            r.sender_ip == vip && r.target_ip == vip && r.sender_mac == US_MAC
        })
        .count()
}

#[test]
fn garp_keepalived_defaults_two_bursts_of_five() {
    let mut s = GarpSchedule::new(T0, 5, Duration::from_secs(5), None);
    assert_eq!(s.poll_timeout(), Some(T0), "first burst immediately");
    assert!(s.poll(ms(T0, 0)).iter().all(|b| b.repeat == 5));
    assert_eq!(s.poll_timeout(), Some(ms(T0, 5_000)));
    assert!(s.poll(ms(T0, 4_999)).is_empty(), "not a millisecond early");
    assert_eq!(
        s.poll(ms(T0, 5_000)),
        vec![GarpBurst {
            kind: GarpBurstKind::Second,
            repeat: 5
        }]
    );
    assert_eq!(s.poll_timeout(), None, "nothing after the second burst");
    assert!(s.poll(ms(T0, 3_600_000)).is_empty());
}

#[test]
fn garp_refresh_every_period_with_its_own_repeat() {
    let mut s = GarpSchedule::new(T0, 5, Duration::from_secs(5), Some(Duration::from_secs(60)))
        .with_refresh_repeat(2);
    let log = run(&mut s, ms(T0, 200_000));
    let kinds: Vec<_> = log
        .iter()
        .map(|(t, b)| (t.0 - T0.0, b[0].kind, b[0].repeat))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, GarpBurstKind::First, 5),
            (5_000, GarpBurstKind::Second, 5),
            (60_000, GarpBurstKind::Refresh, 2),
            (120_000, GarpBurstKind::Refresh, 2),
            (180_000, GarpBurstKind::Refresh, 2),
        ]
    );
    s.stop();
    assert_eq!(s.poll_timeout(), None);
    assert!(s.poll(ms(T0, 240_000)).is_empty(), "none after stop");
}

#[test]
fn garp_late_driver_gets_one_refresh_and_keeps_the_phase() {
    let mut s = GarpSchedule::new(T0, 1, Duration::ZERO, Some(Duration::from_secs(10)));
    s.poll(T0);
    // The driver oversleeps three periods.
    let b = s.poll(ms(T0, 35_000));
    assert_eq!(b.len(), 1, "missed refreshes are not made up");
    assert_eq!(s.poll_timeout(), Some(ms(T0, 40_000)));
}

#[test]
fn garp_responder_five_per_vip_at_t0_and_five_more_at_t0_plus_5s() {
    let vips = [VIP, VIP2, GW_VIP];
    let mut r = responder();
    assert!(r.poll_transmit(T0).is_empty(), "standby announces nothing");
    assert_eq!(r.poll_timeout(), None);

    r.set_active(T0, true);
    assert_eq!(r.poll_timeout(), Some(T0));
    let first = r.poll_transmit(T0);
    assert_eq!(first.len(), 15);
    for vip in vips {
        assert_eq!(count_per_vip(&first, vip), 5, "{vip}");
    }
    assert!(first.iter().all(|f| {
        let r = f.repr();
        r.op == ArpOp::Request && r.eth_dst == director::forward::MacAddr::BROADCAST
    }));
    assert_eq!(r.poll_timeout(), Some(ms(T0, 5_000)));
    assert!(r.poll_transmit(ms(T0, 4_999)).is_empty());
    let second = r.poll_transmit(ms(T0, 5_000));
    for vip in vips {
        assert_eq!(count_per_vip(&second, vip), 5, "{vip}");
    }
    assert_eq!(second.len(), 15);
    assert_eq!(r.poll_timeout(), None, "no refresh configured");
}

#[test]
fn garp_responder_refresh_and_silence_after_standby() {
    let mut cfg = ArpConfig::new(US_MAC, US_IP, vec![VIP]);
    cfg.garp.refresh = Some(Duration::from_secs(30));
    cfg.garp.form = GarpForm::Reply;
    let mut r = ArpResponder::new(cfg);
    r.set_active(T0, true);
    assert_eq!(r.poll_transmit(T0).len(), 5);
    assert_eq!(r.poll_transmit(ms(T0, 5_000)).len(), 5);
    let refresh = r.poll_transmit(ms(T0, 30_000));
    assert_eq!(refresh.len(), 1, "refresh repeat defaults to 1");
    assert_eq!(refresh[0].repr().op, ArpOp::Reply, "configured form");
    assert_eq!(r.poll_timeout(), Some(ms(T0, 60_000)));

    r.set_active(ms(T0, 45_000), false);
    assert_eq!(r.poll_timeout(), None);
    assert!(r.poll_transmit(ms(T0, 60_000)).is_empty());
    assert!(r.poll_transmit(ms(T0, 600_000)).is_empty());
}

#[test]
fn garp_standby_before_the_second_burst_cancels_it() {
    let mut r = responder();
    r.set_active(T0, true);
    assert_eq!(r.poll_transmit(T0).len(), 15);
    r.set_active(ms(T0, 1_000), false);
    assert!(r.poll_transmit(ms(T0, 5_000)).is_empty());
    // Active again: a fresh schedule from the new transition.
    r.set_active(ms(T0, 7_000), true);
    assert_eq!(r.poll_timeout(), Some(ms(T0, 7_000)));
    assert_eq!(r.poll_transmit(ms(T0, 7_000)).len(), 15);
    assert_eq!(r.poll_timeout(), Some(ms(T0, 12_000)));
}

#[test]
fn garp_new_vip_while_active_is_announced() {
    let mut r = ArpResponder::new(ArpConfig::new(US_MAC, US_IP, vec![VIP]));
    r.set_active(T0, true);
    r.poll_transmit(T0);
    r.poll_transmit(ms(T0, 5_000));
    assert_eq!(r.poll_timeout(), None);
    // Removing an address announces nothing.
    r.set_vips(ms(T0, 6_000), vec![]);
    assert_eq!(r.poll_timeout(), None);
    r.set_vips(ms(T0, 7_000), vec![VIP, VIP2]);
    let f = r.poll_transmit(ms(T0, 7_000));
    assert_eq!(count_per_vip(&f, VIP2), 5);
    assert_eq!(count_per_vip(&f, VIP), 5);
}
