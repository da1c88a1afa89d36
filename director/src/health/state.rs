//! The sans-IO part of health checking: the fall/rise state machine of
//! one real server's check ([`CheckState`]) and a service's quorum with
//! hysteresis ([`Quorum`]). Time is passed in as [`Millis`]; nothing here
//! reads a clock or touches a socket, so every timing rule is tested on a
//! virtual clock.
//!
//! The rules follow keepalived's checkers:
//! - a check runs every `interval`; after a failure that has not yet made
//!   the server down, the next one runs after `retry_delay` instead
//!   (keepalived `delay_before_retry`);
//! - `fall` consecutive failures make a server that is not down DOWN;
//!   `rise` consecutive successes make a server that is not up UP;
//! - before either, the server is UNKNOWN and treated as up (keepalived
//!   starts its real servers alive);
//! - a server's checks never overlap: the next is scheduled when the
//!   previous one has finished.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::time::Millis;

/// How many state changes a server remembers.
pub const RECENT_TRANSITIONS: usize = 16;

/// The verdict on one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Not concluded yet; treated as up.
    Unknown,
    /// The check passes.
    Up,
    /// The check fails; the server takes no new connections.
    Down,
}

impl Health {
    /// Whether the server takes new connections.
    pub fn is_up(self) -> bool {
        self != Health::Down
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "UNKNOWN",
            Health::Up => "UP",
            Health::Down => "DOWN",
        })
    }
}

/// When checks run and how many make a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two checks (after the previous one finished).
    pub interval: Duration,
    /// Longest a check may take; then it fails ("timeout after ...").
    pub timeout: Duration,
    /// Between a failure and the next check while counting towards `fall`.
    pub retry_delay: Duration,
    /// Consecutive failures that make a server down (>= 1).
    pub fall: u32,
    /// Consecutive successes that make a server up (>= 1).
    pub rise: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            interval: super::DEFAULT_INTERVAL,
            timeout: super::DEFAULT_TIMEOUT,
            retry_delay: super::DEFAULT_INTERVAL,
            fall: super::DEFAULT_FALL,
            rise: super::DEFAULT_RISE,
        }
    }
}

/// The end of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; `weight` is set by a dynamic command check.
    Pass {
        /// The weight the check asks for, if it chose one.
        weight: Option<i32>,
    },
    /// Failed, with the reason ("connect: connection refused", "HTTP 500").
    Fail(String),
}

/// A change of verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When.
    pub at: Millis,
    /// Before.
    pub from: Health,
    /// After.
    pub to: Health,
    /// Why ("3 consecutive failures: HTTP 500").
    pub reason: String,
}

/// What [`CheckState::finish`] changed, for the driver to act on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The verdict changed.
    pub transition: Option<Transition>,
    /// The weight a dynamic check asks for changed.
    pub weight_changed: bool,
}

impl Change {
    /// Nothing for the driver to do.
    pub fn is_empty(&self) -> bool {
        self.transition.is_none() && !self.weight_changed
    }
}

/// One real server's check: its verdict, counters and next due time.
#[derive(Debug, Clone)]
pub struct CheckState {
    timing: Timing,
    health: Health,
    since: Millis,
    successes: u32,
    failures: u32,
    next_due: Millis,
    running: Option<Millis>,
    last_check: Option<Millis>,
    last_duration: Duration,
    last_failure: Option<(Millis, String)>,
    weight: Option<i32>,
    checks_total: u64,
    failures_total: u64,
    recent: VecDeque<Transition>,
}

impl CheckState {
    /// A server not checked yet (UNKNOWN); the first check is due at
    /// `now + first_delay`.
    pub fn new(now: Millis, timing: Timing, first_delay: Duration) -> CheckState {
        CheckState {
            timing,
            health: Health::Unknown,
            since: now,
            successes: 0,
            failures: 0,
            next_due: now + first_delay,
            running: None,
            last_check: None,
            last_duration: Duration::ZERO,
            last_failure: None,
            weight: None,
            checks_total: 0,
            failures_total: 0,
            recent: VecDeque::new(),
        }
    }

    /// When the next check is due; `None` while one is running.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.running {
            Some(_) => None,
            None => Some(self.next_due),
        }
    }

    /// Start the check due at `now`: returns how long it may take, or
    /// `None` if none is due (too early, or one is running).
    pub fn start(&mut self, now: Millis) -> Option<Duration> {
        if self.running.is_some() || now < self.next_due {
            return None;
        }
        self.running = Some(now);
        Some(self.timing.timeout)
    }

    /// The check started by [`CheckState::start`] ended at `now` with
    /// `outcome`. Schedules the next one and returns what changed.
    pub fn finish(&mut self, now: Millis, outcome: Outcome) -> Change {
        let started = self.running.take().unwrap_or(now);
        self.last_check = Some(now);
        self.last_duration = now.saturating_since(started);
        self.checks_total += 1;
        let mut change = Change::default();
        match outcome {
            Outcome::Pass { weight } => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if weight != self.weight {
                    self.weight = weight;
                    change.weight_changed = true;
                }
                if self.health != Health::Up && self.successes >= self.timing.rise {
                    let n = self.successes;
                    let reason = format!("{n} consecutive success{}", plural_es(n));
                    change.transition = Some(self.transition(now, Health::Up, reason));
                }
                self.next_due = now + self.timing.interval;
            }
            Outcome::Fail(reason) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.failures_total += 1;
                if self.health != Health::Down && self.failures >= self.timing.fall {
                    let n = self.failures;
                    let why = format!("{n} consecutive failure{}: {reason}", plural_s(n));
                    change.transition = Some(self.transition(now, Health::Down, why));
                }
                // Still counting towards `fall`: retry sooner.
                self.next_due = if self.health == Health::Down {
                    now + self.timing.interval
                } else {
                    now + self.timing.retry_delay
                };
                self.last_failure = Some((now, reason));
            }
        }
        change
    }

    fn transition(&mut self, now: Millis, to: Health, reason: String) -> Transition {
        let t = Transition {
            at: now,
            from: self.health,
            to,
            reason,
        };
        self.health = to;
        self.since = now;
        if self.recent.len() == RECENT_TRANSITIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(t.clone());
        t
    }

    /// The verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Since when the verdict holds (start, or the last transition).
    pub fn since(&self) -> Millis {
        self.since
    }

    /// The weight a dynamic command check asked for, if any.
    pub fn weight(&self) -> Option<i32> {
        self.weight
    }

    /// Fall, rise and the delays.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Consecutive successes up to now.
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures up to now.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the last check finished.
    pub fn last_check(&self) -> Option<Millis> {
        self.last_check
    }

    /// How long the last check took.
    pub fn last_duration(&self) -> Duration {
        self.last_duration
    }

    /// When and why the last check failed.
    pub fn last_failure(&self) -> Option<(Millis, &str)> {
        self.last_failure.as_ref().map(|(t, r)| (*t, r.as_str()))
    }

    /// Checks run since start.
    pub fn checks_total(&self) -> u64 {
        self.checks_total
    }

    /// Checks failed since start.
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// The most recent transitions, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Transition> {
        self.recent.iter()
    }
}

fn plural_s(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn plural_es(n: u32) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// A service's quorum with hysteresis (keepalived `quorum`,
/// `hysteresis`): up while the weight of the real servers that are up is
/// at least `quorum`; once down, up again only at `quorum + hysteresis`;
/// once up, down only below `quorum − hysteresis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    quorum: u64,
    hysteresis: u64,
    up: bool,
}

impl Quorum {
    /// The state for a service whose real servers up weigh `weight_up`
    /// now (no hysteresis applies to the first verdict).
    pub fn new(quorum: u32, hysteresis: u32, weight_up: u64) -> Quorum {
        Quorum {
            quorum: u64::from(quorum),
            hysteresis: u64::from(hysteresis),
            up: weight_up >= u64::from(quorum),
        }
    }

    /// Whether the service has its quorum.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The weight up is now `weight_up`: returns the new state if it
    /// changed.
    pub fn update(&mut self, weight_up: u64) -> Option<bool> {
        let next = if self.up {
            weight_up >= self.quorum.saturating_sub(self.hysteresis)
        } else {
            weight_up >= self.quorum + self.hysteresis
        };
        (next != self.up).then(|| {
            self.up = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(fall: u32, rise: u32) -> Timing {
        Timing {
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(200),
            retry_delay: Duration::from_millis(100),
            fall,
            rise,
        }
    }

    fn fail() -> Outcome {
        Outcome::Fail("connect: connection refused".into())
    }

    fn pass() -> Outcome {
        Outcome::Pass { weight: None }
    }

    /// Run one check at its due time with `outcome`, taking `took` ms;
    /// returns the finish time and the change.
    fn step(s: &mut CheckState, took: u64, outcome: Outcome) -> (Millis, Change) {
        let due = s.poll_timeout().expect("a check is due");
        assert!(s.start(due).is_some());
        assert_eq!(s.poll_timeout(), None, "no second check while one runs");
        let end = Millis(due.0 + took);
        (end, s.finish(end, outcome))
    }

    #[test]
    fn unknown_until_rise_successes_and_checks_never_overlap() {
        let mut s = CheckState::new(Millis(1000), timing(3, 2), Duration::ZERO);
        assert_eq!(s.health(), Health::Unknown);
        assert!(s.health().is_up(), "unknown is treated as up");
        assert_eq!(s.start(Millis(999)), None, "not due yet");
        let (t, c) = step(&mut s, 10, pass());
        assert!(c.is_empty(), "one success of rise 2 decides nothing");
        assert_eq!(
            s.poll_timeout(),
            Some(t + Duration::from_millis(300)),
            "next check one interval after the end of this one"
        );
        let (t, c) = step(&mut s, 10, pass());
        let tr = c.transition.expect("second success: up");
        assert_eq!((tr.from, tr.to, tr.at), (Health::Unknown, Health::Up, t));
        assert_eq!(tr.reason, "2 consecutive successes");
        assert_eq!(s.since(), t);
        let (_, c) = step(&mut s, 10, pass());
        assert!(c.is_empty(), "already up");
    }

    #[test]
    fn fall_failures_make_it_down_retrying_sooner_then_rise_brings_it_back() {
        let mut s = CheckState::new(Millis(0), timing(3, 2), Duration::ZERO);
        step(&mut s, 5, pass());
        step(&mut s, 5, pass());
        assert_eq!(s.health(), Health::Up);
        let (t1, c) = step(&mut s, 5, fail());
        assert!(c.is_empty());
        assert_eq!(
            s.poll_timeout(),
            Some(t1 + Duration::from_millis(100)),
            "delay_before_retry while counting towards fall"
        );
        step(&mut s, 5, fail());
        let (t3, c) = step(&mut s, 5, fail());
        let tr = c.transition.expect("third failure: down");
        assert_eq!((tr.from, tr.to), (Health::Up, Health::Down));
        assert_eq!(
            tr.reason,
            "3 consecutive failures: connect: connection refused"
        );
        assert_eq!(
            s.poll_timeout(),
            Some(t3 + Duration::from_millis(300)),
            "once down, checks go back to the interval"
        );
        assert_eq!(s.last_failure(), Some((t3, "connect: connection refused")));
        let (_, c) = step(&mut s, 5, fail());
        assert!(c.is_empty(), "already down");
        // A success between failures resets the count.
        step(&mut s, 5, pass());
        let (_, c) = step(&mut s, 5, pass());
        assert_eq!(c.transition.unwrap().to, Health::Up);
        step(&mut s, 5, fail());
        step(&mut s, 5, fail());
        step(&mut s, 5, pass());
        step(&mut s, 5, fail());
        assert_eq!(s.health(), Health::Up, "failures must be consecutive");
        assert_eq!(s.checks_total(), 12);
        assert_eq!(s.failures_total(), 7);
        let seen: Vec<_> = s.recent().map(|t| t.to).collect();
        assert_eq!(seen, vec![Health::Up, Health::Down, Health::Up]);
    }

    #[test]
    fn a_dead_server_at_start_goes_down_within_fall_checks() {
        let mut s = CheckState::new(Millis(0), timing(2, 1), Duration::from_millis(50));
        assert_eq!(s.poll_timeout(), Some(Millis(50)), "first check delayed");
        step(&mut s, 200, Outcome::Fail("timeout after 200 ms".into()));
        let (t, c) = step(&mut s, 200, Outcome::Fail("timeout after 200 ms".into()));
        let tr = c.transition.unwrap();
        assert_eq!((tr.from, tr.to), (Health::Unknown, Health::Down));
        // 50 + 200 + 100 (retry) + 200
        assert_eq!(t, Millis(550), "down after fall x (timeout + retry delay)");
        assert_eq!(s.last_duration(), Duration::from_millis(200));
    }

    #[test]
    fn dynamic_weight_changes_are_reported() {
        let mut s = CheckState::new(Millis(0), timing(1, 1), Duration::ZERO);
        let (_, c) = step(&mut s, 1, Outcome::Pass { weight: Some(5) });
        assert!(c.weight_changed && c.transition.is_some());
        assert_eq!(s.weight(), Some(5));
        let (_, c) = step(&mut s, 1, Outcome::Pass { weight: Some(5) });
        assert!(c.is_empty());
        let (_, c) = step(&mut s, 1, Outcome::Pass { weight: None });
        assert!(c.weight_changed, "back to the configured weight");
    }

    #[test]
    fn transitions_are_bounded() {
        let mut s = CheckState::new(Millis(0), timing(1, 1), Duration::ZERO);
        for _ in 0..20 {
            step(&mut s, 1, pass());
            step(&mut s, 1, fail());
        }
        assert_eq!(s.recent().count(), RECENT_TRANSITIONS);
        assert_eq!(s.recent().last().unwrap().to, Health::Down);
    }

    #[test]
    fn quorum_has_hysteresis() {
        // quorum 3, hysteresis 1: down below 2, up again from 4.
        let mut q = Quorum::new(3, 1, 4);
        assert!(q.is_up());
        assert_eq!(q.update(2), None, "2 >= 3 - 1: still up");
        assert_eq!(q.update(1), Some(false), "below quorum − hysteresis");
        assert_eq!(q.update(3), None, "3 < 3 + 1: still down");
        assert_eq!(q.update(4), Some(true));
        // The default: quorum 1, no hysteresis = "some weight is up".
        let mut q = Quorum::new(1, 0, 2);
        assert_eq!(q.update(0), Some(false));
        assert_eq!(q.update(1), Some(true));
        assert!(!Quorum::new(1, 0, 0).is_up(), "no weight at start: down");
    }
}
