//! Gratuitous ARP on becoming active, on keepalived's schedule: a burst of
//! `garp_master_repeat` announcements per VIP at once, a second burst
//! `garp_master_delay` later (switches and hosts that missed the first,
//! or whose port was still coming up, catch this one), and, if configured,
//! a refresh burst of `garp_master_refresh_repeat` every
//! `garp_master_refresh` for as long as the node stays active.
//!
//! [`GarpSchedule`] only says when and how many; [`garp_burst`] builds the
//! frames. Dropping the schedule (or [`GarpSchedule::stop`]) on becoming
//! standby is what guarantees that nothing more is announced. keepalived's
//! `garp_interval` (a gap between single GARPs in a burst) is not modelled:
//! a burst is sent back to back, which is keepalived's default.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::wire::{ArpFrame, ArpRepr, GarpForm};
use crate::forward::MacAddr;
use crate::time::Millis;

/// keepalived's knobs, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpConfig {
    /// GARPs per VIP in each of the two bursts (`garp_master_repeat`, 5).
    pub repeat: u32,
    /// Delay of the second burst (`garp_master_delay`, 5 s). Zero: no
    /// second burst, as in keepalived.
    pub delay_second_burst: Duration,
    /// Period of the refresh bursts (`garp_master_refresh`); `None`, the
    /// default, sends none.
    pub refresh: Option<Duration>,
    /// GARPs per VIP in a refresh burst (`garp_master_refresh_repeat`, 1).
    pub refresh_repeat: u32,
    /// Request form (keepalived's) or reply form.
    pub form: GarpForm,
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            repeat: 5,
            delay_second_burst: Duration::from_secs(5),
            refresh: None,
            refresh_repeat: 1,
            form: GarpForm::Request,
        }
    }
}

/// Which burst is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GarpBurstKind {
    /// On becoming active.
    First,
    /// `delay_second_burst` after that.
    Second,
    /// A periodic refresh.
    Refresh,
}

/// A burst to send now: `repeat` GARPs for every VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GarpBurst {
    /// Which one.
    pub kind: GarpBurstKind,
    /// Announcements per VIP.
    pub repeat: u32,
}

/// When to announce, from the moment this node became active. Sans-IO:
/// the driver sleeps until [`GarpSchedule::poll_timeout`] and calls
/// [`GarpSchedule::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpSchedule {
    repeat: u32,
    refresh: Option<Duration>,
    refresh_repeat: u32,
    first_at: Option<Millis>,
    second_at: Option<Millis>,
    refresh_at: Option<Millis>,
}

impl GarpSchedule {
    /// A schedule for a node that became active at `now`: `repeat` GARPs
    /// per VIP at once and again after `delay_second_burst` (none if zero),
    /// then one per VIP every `refresh` if set (see
    /// [`GarpSchedule::with_refresh_repeat`]). `repeat` 0 disables the two
    /// bursts; a zero `refresh` is treated as none.
    pub fn new(
        now: Millis,
        repeat: u32,
        delay_second_burst: Duration,
        refresh: Option<Duration>,
    ) -> GarpSchedule {
        let refresh = refresh.filter(|r| !r.is_zero());
        GarpSchedule {
            repeat,
            refresh,
            refresh_repeat: 1,
            first_at: (repeat > 0).then_some(now),
            second_at: (repeat > 0 && !delay_second_burst.is_zero())
                .then(|| now + delay_second_burst),
            refresh_at: refresh.map(|r| now + r),
        }
    }

    /// The schedule `cfg` describes, started at `now`.
    pub fn from_config(now: Millis, cfg: &GarpConfig) -> GarpSchedule {
        GarpSchedule::new(now, cfg.repeat, cfg.delay_second_burst, cfg.refresh)
            .with_refresh_repeat(cfg.refresh_repeat)
    }

    /// GARPs per VIP in each refresh burst (keepalived's
    /// `garp_master_refresh_repeat`, default 1).
    pub fn with_refresh_repeat(mut self, n: u32) -> GarpSchedule {
        self.refresh_repeat = n;
        if n == 0 {
            self.refresh_at = None;
        }
        self
    }

    /// When the next burst is due; `None` once nothing more will be sent.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [self.first_at, self.second_at, self.refresh_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The bursts due at `now`, in schedule order. A driver that wakes late
    /// gets each kind at most once; a missed refresh is not made up, and
    /// the refresh keeps its phase.
    pub fn poll(&mut self, now: Millis) -> Vec<GarpBurst> {
        let mut out = Vec::new();
        if self.first_at.is_some_and(|t| now >= t) {
            self.first_at = None;
            out.push(GarpBurst {
                kind: GarpBurstKind::First,
                repeat: self.repeat,
            });
        }
        if self.second_at.is_some_and(|t| now >= t) {
            self.second_at = None;
            out.push(GarpBurst {
                kind: GarpBurstKind::Second,
                repeat: self.repeat,
            });
        }
        if let (Some(at), Some(period)) = (self.refresh_at, self.refresh)
            && now >= at
        {
            let mut next = at + period;
            while next <= now {
                next = next + period;
            }
            self.refresh_at = Some(next);
            out.push(GarpBurst {
                kind: GarpBurstKind::Refresh,
                repeat: self.refresh_repeat,
            });
        }
        out
    }

    /// Nothing more: the node is no longer active.
    pub fn stop(&mut self) {
        self.first_at = None;
        self.second_at = None;
        self.refresh_at = None;
    }

    /// Whether anything is still scheduled.
    pub fn is_stopped(&self) -> bool {
        self.poll_timeout().is_none()
    }
}

/// `repeat` gratuitous ARPs for each of `vips`, announcing them at `mac`.
/// Ordered round by round (every VIP once, then every VIP again), so that
/// each VIP's first announcement leaves as early as possible.
pub fn garp_burst(mac: MacAddr, vips: &[Ipv4Addr], repeat: u32, form: GarpForm) -> Vec<ArpFrame> {
    let frames: Vec<ArpFrame> = vips
        .iter()
        .map(|&ip| ArpRepr::gratuitous(mac, ip, form).emit())
        .collect();
    let mut out = Vec::with_capacity(frames.len() * repeat as usize);
    for _ in 0..repeat {
        out.extend_from_slice(&frames);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_zero_repeat_and_zero_delay_disable_bursts() {
        let t0 = Millis(1000);
        let mut s = GarpSchedule::new(t0, 0, Duration::from_secs(5), None);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll(t0).is_empty());

        let mut s = GarpSchedule::new(t0, 3, Duration::ZERO, Some(Duration::ZERO));
        assert_eq!(s.poll_timeout(), Some(t0));
        assert_eq!(s.poll(t0).len(), 1);
        assert_eq!(s.poll_timeout(), None, "no second burst, no refresh");
    }

    #[test]
    fn garp_burst_orders_round_by_round() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let vips = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
        let f = garp_burst(mac, &vips, 2, GarpForm::Request);
        let ips: Vec<_> = f.iter().map(|f| f.repr().sender_ip).collect();
        assert_eq!(ips, [vips[0], vips[1], vips[0], vips[1]]);
    }
}
