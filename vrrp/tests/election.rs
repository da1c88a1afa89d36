//! Election scenarios on a virtual clock: two (or three) `Instance`s and a
//! tiny simulator that delivers each `SendAdvert` to the other routers,
//! with configurable delay and loss, and steps time straight to the next
//! event. Every timing assertion is exact, to the microsecond, and names
//! the RFC rule it checks.
//!
//! Numbers used throughout (Advertisement_Interval 0.1 s = 10 cs):
//! - priority 200: Skew_Time = 56 × 10 / 256 cs = 21.875 ms,
//!   Master_Down_Interval = 321.875 ms
//! - priority 150: Skew_Time = 41.406 ms, Master_Down_Interval = 341.406 ms
//! - priority 100: Skew_Time = 60.937 ms, Master_Down_Interval = 360.937 ms

use std::net::Ipv4Addr;
use std::time::Duration;

use vrrp::{Action, Advert, Instance, InstanceConfig, Reason, State};

const fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
const fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

const SKEW_200: Duration = us(21_875);
const SKEW_150: Duration = us(41_406);
const SKEW_100: Duration = us(60_937);
const MDI_200: Duration = ms(300).saturating_add(SKEW_200);
const MDI_150: Duration = ms(300).saturating_add(SKEW_150);
const MDI_100: Duration = ms(300).saturating_add(SKEW_100);

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn router(octet: u8, priority: u8) -> InstanceConfig {
    InstanceConfig {
        name: format!("r{octet}"),
        vrid: 51,
        priority,
        advert_interval_cs: 10,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_ip: Ipv4Addr::new(10, 0, 0, octet),
        vips: vec![Ipv4Addr::new(10, 0, 0, 100)],
        unicast_peers: vec![],
    }
}

type Loss = Box<dyn FnMut(Duration, usize, usize) -> bool>;

struct Pending {
    at: Duration,
    from: usize,
    to: usize,
    advert: Advert,
}

struct Node {
    inst: Instance,
    alive: bool,
}

/// The virtual network and clock.
struct Sim {
    now: Duration,
    nodes: Vec<Node>,
    queue: Vec<Pending>,
    delay: Duration,
    /// `(now, from, to)` → drop this advert?
    loss: Loss,
    /// Every advert sent: (when, by whom, priority).
    sent: Vec<(Duration, usize, u8)>,
    transitions: Vec<(Duration, usize, State, State, Reason)>,
    steps: usize,
}

impl Sim {
    fn new(cfgs: Vec<InstanceConfig>) -> Self {
        let nodes = cfgs
            .into_iter()
            .map(|c| Node {
                inst: Instance::new(c).unwrap(),
                alive: true,
            })
            .collect();
        Sim {
            now: Duration::ZERO,
            nodes,
            queue: Vec::new(),
            delay: Duration::ZERO,
            loss: Box::new(|_, _, _| false),
            sent: Vec::new(),
            transitions: Vec::new(),
            steps: 0,
        }
    }

    /// Two routers started together at t = 0.
    fn pair(a: InstanceConfig, b: InstanceConfig) -> Self {
        let mut sim = Sim::new(vec![a, b]);
        sim.start(A);
        sim.start(B);
        sim
    }

    fn start(&mut self, i: usize) {
        self.call(i, Instance::start);
    }

    /// Run an input on router `i` at the current time.
    fn call(&mut self, i: usize, f: impl FnOnce(&mut Instance, Duration) -> Vec<Action>) {
        let actions = f(&mut self.nodes[i].inst, self.now);
        self.apply(i, actions);
    }

    /// The router stops dead: no timers, no receive, no stop advert.
    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.broadcast(i, priority),
                Action::Transition { from, to, reason } => {
                    self.transitions.push((self.now, i, from, to, reason))
                }
            }
        }
    }

    fn broadcast(&mut self, from: usize, priority: u8) {
        self.sent.push((self.now, from, priority));
        let advert = self.nodes[from].inst.config().advert(priority);
        for to in 0..self.nodes.len() {
            if to != from && !(self.loss)(self.now, from, to) {
                let at = self.now + self.delay;
                self.queue.push(Pending {
                    at,
                    from,
                    to,
                    advert: advert.clone(),
                });
            }
        }
    }

    fn next_event(&self) -> Option<Duration> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.inst.next_timeout());
        let deliveries = self.queue.iter().map(|p| p.at);
        timers.chain(deliveries).min()
    }

    /// Step to each next event up to `until`, then set the clock to it.
    fn run_until(&mut self, until: Duration) {
        while let Some(at) = self.next_event().filter(|at| *at <= until) {
            self.steps += 1;
            assert!(self.steps < 1_000_000, "simulation does not settle");
            self.now = at;
            self.deliver_due();
            self.fire_due();
        }
        self.now = until;
    }

    fn deliver_due(&mut self) {
        while let Some(k) = self.queue.iter().position(|p| p.at <= self.now) {
            let p = self.queue.remove(k);
            if !self.nodes[p.to].alive {
                continue;
            }
            let src = self.nodes[p.from].inst.config().primary_ip;
            let actions = self.nodes[p.to]
                .inst
                .handle_advert(self.now, src, &p.advert);
            self.apply(p.to, actions);
        }
    }

    fn fire_due(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.alive && node.inst.next_timeout().is_some_and(|t| t <= self.now) {
                let actions = self.nodes[i].inst.handle_timeout(self.now);
                self.apply(i, actions);
            }
        }
    }

    fn state(&self, i: usize) -> State {
        self.nodes[i].inst.state()
    }

    fn inst(&self, i: usize) -> &Instance {
        &self.nodes[i].inst
    }

    /// Router `i`'s transitions, in order.
    fn transitions_of(&self, i: usize) -> Vec<(Duration, State, State, Reason)> {
        let of_i = self.transitions.iter().filter(|t| t.1 == i);
        of_i.map(|t| (t.0, t.2, t.3, t.4)).collect()
    }

    /// When router `i` became Master, each time.
    fn master_at(&self, i: usize) -> Vec<Duration> {
        let t = self.transitions_of(i).into_iter();
        t.filter(|t| t.2 == State::Master).map(|t| t.0).collect()
    }

    /// The last advert router `i` sent at or before `t`.
    fn last_sent_by(&self, i: usize, t: Duration) -> Duration {
        let mine = self.sent.iter().filter(|s| s.1 == i && s.0 <= t);
        mine.map(|s| s.0).max().expect("router sent nothing")
    }
}

fn ip(octet: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, octet)
}

/// A (priority 200) master and B (100) backup, settled at 1 s.
fn settled_pair() -> Sim {
    let mut sim = Sim::pair(router(1, 200), router(2, 100));
    sim.run_until(ms(1000));
    assert_eq!(sim.state(A), State::Master);
    assert_eq!(sim.state(B), State::Backup);
    sim
}

#[test]
fn startup_election_higher_priority_wins_after_its_master_down_interval() {
    let mut sim = Sim::pair(router(1, 200), router(2, 100));
    sim.run_until(ms(10_000));
    assert_eq!(
        sim.transitions_of(A),
        vec![
            (ms(0), State::Initialize, State::Backup, Reason::Startup),
            (MDI_200, State::Backup, State::Master, Reason::MasterDown),
        ],
        "RFC 5798 6.4.1: non-owner starts Backup with Master_Down_Timer = Master_Down_Interval; \
         RFC 5798 6.4.2: Master_Down_Interval = 3*0.1s + (256-200)*0.1s/256 = 321.875 ms"
    );
    assert_eq!(
        sim.transitions_of(B),
        vec![(ms(0), State::Initialize, State::Backup, Reason::Startup)],
        "RFC 5798 6.4.2: a Backup that hears a higher-priority master resets its timer and stays"
    );
    let a_sends: Vec<_> = sim.sent.iter().filter(|s| s.1 == A).map(|s| s.0).collect();
    assert!(
        a_sends.windows(2).all(|w| w[1] - w[0] == ms(100)),
        "RFC 5798 6.4.3: Master resets Adver_Timer to Advertisement_Interval after each advert"
    );
    let status = sim.inst(B).status();
    assert_eq!(
        status.master_addr,
        Some(ip(1)),
        "Backup status names the master"
    );
    assert_eq!(
        sim.inst(A).status().master_addr,
        Some(ip(1)),
        "Master status names itself"
    );
}

#[test]
fn address_owner_starts_as_master_and_preempts_even_without_preempt_mode() {
    let mut sim = Sim::new(vec![
        InstanceConfig {
            preempt: false,
            ..router(1, 255)
        },
        router(2, 100),
    ]);
    sim.start(B);
    sim.run_until(ms(2000));
    assert_eq!(sim.state(B), State::Master);
    sim.start(A);
    assert_eq!(
        sim.transitions_of(A),
        vec![(
            ms(2000),
            State::Initialize,
            State::Master,
            Reason::StartupOwner
        )],
        "RFC 5798 6.4.1: priority 255 sends an ADVERTISEMENT and transitions to Master at once"
    );
    assert_eq!(
        sim.sent.last(),
        Some(&(ms(2000), A, 255)),
        "RFC 5798 6.4.1: owner advertises at startup"
    );
    sim.run_until(ms(3000));
    let b = sim.transitions_of(B);
    assert_eq!(
        b.last(),
        Some(&(
            ms(2000),
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                from: ip(1),
                priority: 255
            }
        )),
        "RFC 5798 6.4.3: Master hearing a higher priority goes Backup"
    );
}

#[test]
fn master_death_is_detected_at_exactly_master_down_interval() {
    let mut sim = settled_pair();
    sim.kill(A);
    sim.run_until(ms(5000));
    let last = sim.last_sent_by(A, ms(1000));
    assert_eq!(
        sim.master_at(B),
        vec![last + MDI_100],
        "RFC 5798 6.4.2: Master_Down_Interval = 3*0.1s + (256-100)*0.1s/256 after the last advert"
    );
    let (_, _, _, reason) = sim.transitions_of(B).pop().unwrap();
    assert_eq!(reason, Reason::MasterDown);
    assert_eq!(reason.to_string(), "master down interval expired");
}

#[test]
fn priority_zero_hands_over_in_skew_time() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    sim.call(A, Instance::shutdown);
    assert_eq!(
        sim.sent.last(),
        Some(&(ms(1050), A, 0)),
        "RFC 5798 6.4.3: Shutdown sends priority 0"
    );
    assert_eq!(
        sim.state(A),
        State::Initialize,
        "RFC 5798 6.4.3: Shutdown -> Initialize"
    );
    sim.run_until(ms(3000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1050) + SKEW_100],
        "RFC 5798 6.4.2: priority 0 sets Master_Down_Timer to Skew_Time = 156*0.1s/256"
    );
    let reason = sim.transitions_of(B).pop().unwrap().3;
    assert_eq!(reason, Reason::PriorityZero { from: ip(1) });
    assert_eq!(
        reason.to_string(),
        "priority 0 advert from 10.0.0.1: skew time"
    );
}

#[test]
fn master_answers_priority_zero_with_an_advert_and_restarts_its_timer() {
    let mut sim = Sim::new(vec![router(1, 200), router(2, 100), router(3, 150)]);
    for i in [A, B, C] {
        sim.start(i);
    }
    sim.run_until(ms(1050));
    // C (a backup) sends a stray priority 0, e.g. a stale router stopping.
    sim.call(C, |_, _| vec![Action::SendAdvert { priority: 0 }]);
    sim.run_until(ms(1050));
    assert_eq!(
        sim.sent
            .iter()
            .filter(|s| s.1 == A && s.0 == ms(1050))
            .count(),
        1,
        "RFC 5798 6.4.3: Master receiving priority 0 sends an ADVERTISEMENT at once"
    );
    assert_eq!(
        sim.inst(A).next_timeout(),
        Some(ms(1150)),
        "RFC 5798 6.4.3: ... and resets the Adver_Timer to Advertisement_Interval"
    );
}

#[test]
fn higher_priority_backup_preempts_a_lower_priority_master() {
    let mut sim = Sim::new(vec![router(1, 200), router(2, 100)]);
    sim.start(B);
    sim.run_until(ms(2000));
    assert_eq!(
        sim.master_at(B),
        vec![MDI_100],
        "RFC 5798 6.4.2: lone backup takes over"
    );
    sim.start(A);
    sim.run_until(ms(4000));
    assert_eq!(
        sim.master_at(A),
        vec![ms(2000) + MDI_200],
        "RFC 5798 6.4.2: with Preempt_Mode, a Backup discards lower-priority adverts and its \
         Master_Down_Timer fires"
    );
    assert_eq!(
        sim.transitions_of(A).pop().unwrap().3,
        Reason::Preempt {
            master: ip(2),
            priority: 100
        }
    );
    assert_eq!(
        sim.transitions_of(B).pop().unwrap(),
        (
            ms(2000) + MDI_200,
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                from: ip(1),
                priority: 200
            }
        ),
        "RFC 5798 6.4.3: Master hearing a higher priority transitions to Backup"
    );
}

#[test]
fn nopreempt_backup_leaves_a_lower_priority_master_alone() {
    let mut sim = Sim::new(vec![
        InstanceConfig {
            preempt: false,
            ..router(1, 200)
        },
        router(2, 100),
    ]);
    sim.start(B);
    sim.run_until(ms(2000));
    sim.start(A);
    sim.run_until(ms(12_000));
    assert!(
        sim.master_at(A).is_empty(),
        "RFC 5798 6.4.2: Preempt_Mode False: every advert resets Master_Down_Timer"
    );
    assert_eq!(sim.inst(A).status().master_addr, Some(ip(2)));
}

#[test]
fn preempt_delay_holds_preemption_for_that_long_after_startup() {
    let a = InstanceConfig {
        preempt_delay: ms(2000),
        ..router(1, 200)
    };
    let mut sim = Sim::new(vec![a, router(2, 100)]);
    sim.start(B);
    sim.run_until(ms(2000));
    sim.start(A);
    sim.run_until(ms(4000));
    assert!(
        sim.master_at(A).is_empty(),
        "keepalived preempt_delay: no preemption within the delay"
    );
    sim.run_until(ms(6000));
    let last_accepted = sim.last_sent_by(B, ms(3999));
    assert_eq!(
        sim.master_at(A),
        vec![last_accepted + MDI_200],
        "keepalived preempt_delay then RFC 5798 6.4.2: the first lower-priority advert after the \
         delay is discarded; Master_Down_Interval runs from the last accepted one"
    );
}

#[test]
fn equal_priority_is_won_by_the_higher_primary_address() {
    let mut sim = Sim::pair(router(1, 100), router(2, 100));
    sim.run_until(ms(3000));
    assert_eq!(sim.master_at(A), vec![MDI_100], "both time out together");
    assert_eq!(sim.master_at(B), vec![MDI_100], "both time out together");
    assert_eq!(
        sim.transitions_of(A).pop().unwrap(),
        (
            MDI_100,
            State::Master,
            State::Backup,
            Reason::EqualPriorityHigherAddress { from: ip(2) }
        ),
        "RFC 5798 6.4.3: equal priority and a greater primary address: transition to Backup"
    );
    assert_eq!(
        sim.state(B),
        State::Master,
        "RFC 5798 6.4.3: the higher address stays Master"
    );
    assert!(
        sim.sent
            .iter()
            .filter(|s| s.1 == B && s.0 == MDI_100)
            .count()
            == 2,
        "RFC 9568 6.4.3: Master discarding a lower advert sends an advert at once"
    );
}

#[test]
fn interface_fault_and_recovery() {
    let mut sim = settled_pair();
    sim.call(A, Instance::interface_down);
    assert_eq!(
        sim.sent.last(),
        Some(&(ms(1000), A, 0)),
        "a Master going to Fault sends priority 0"
    );
    assert_eq!(sim.state(A), State::Fault);
    assert_eq!(sim.inst(A).next_timeout(), None, "Fault runs no timer");
    sim.run_until(ms(2000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1000) + SKEW_100],
        "RFC 5798 6.4.2: priority 0: Skew_Time"
    );
    assert_eq!(sim.state(A), State::Fault, "Fault ignores adverts");
    sim.call(A, Instance::interface_up);
    assert_eq!(sim.state(A), State::Backup);
    sim.run_until(ms(4000));
    let a = sim.transitions_of(A);
    assert_eq!(
        a[a.len() - 2..],
        [
            (ms(2000), State::Fault, State::Backup, Reason::InterfaceUp),
            (
                ms(2000) + MDI_200,
                State::Backup,
                State::Master,
                Reason::Preempt {
                    master: ip(2),
                    priority: 100
                }
            ),
        ],
        "RFC 5798 6.4.2: back from Fault like a startup, then preempts after Master_Down_Interval"
    );
    assert_eq!(sim.state(B), State::Backup);
}

#[test]
fn interface_down_whose_priority_zero_is_lost_costs_a_full_master_down_interval() {
    let mut sim = settled_pair();
    sim.loss = Box::new(|now, from, _| from == A && now >= ms(1000));
    sim.call(A, Instance::interface_down);
    sim.run_until(ms(3000));
    assert_eq!(
        sim.master_at(B),
        vec![sim.last_sent_by(A, ms(999)) + MDI_100],
        "RFC 5798 6.4.2: without the priority 0 advert, Master_Down_Interval"
    );
}

#[test]
fn flapping_link_short_gaps_are_tolerated_long_ones_fail_over_and_back() {
    let mut sim = settled_pair();
    // Lose A's adverts for 150 ms of every second (two adverts: a 300 ms
    // gap, less than Master_Down_Interval), and for one whole second from
    // 6 s to 7 s.
    sim.loss = Box::new(|now, from, _| {
        let in_second = now.as_millis() % 1000;
        let long = now >= ms(6000) && now < ms(7000);
        from == A && (in_second < 150 || long)
    });
    sim.run_until(ms(6000));
    assert!(
        sim.master_at(B).is_empty(),
        "RFC 5798 6.4.2: gaps shorter than Master_Down_Interval never trigger takeover"
    );
    sim.run_until(ms(10_000));
    let last_heard = sim.last_sent_by(A, ms(5999));
    assert_eq!(
        sim.master_at(B),
        vec![last_heard + MDI_100],
        "RFC 5798 6.4.2: one takeover, Master_Down_Interval after the last advert heard"
    );
    let back = sim.transitions_of(B).pop().unwrap();
    assert_eq!(
        (back.1, back.2),
        (State::Master, State::Backup),
        "RFC 5798 6.4.3: the first higher-priority advert after the outage demotes B"
    );
    // A's adverts are still lost until 7.150 s (that second's short gap);
    // its next one, periodic or sent in reply to B's (RFC 9568 6.4.3),
    // demotes B.
    let first_through = sim
        .sent
        .iter()
        .find(|s| s.1 == A && s.0 >= ms(7150))
        .unwrap()
        .0;
    assert_eq!(
        back.0, first_through,
        "B gives way to the first advert it hears"
    );
    assert!(
        back.0 - ms(7150) <= ms(100),
        "within one Advertisement_Interval: {back:?}"
    );
    assert_eq!(
        sim.master_at(A),
        vec![MDI_200],
        "A never stopped being Master"
    );
}

#[test]
fn lossy_delayed_network_still_converges() {
    let mut sim = Sim::pair(router(1, 200), router(2, 100));
    sim.delay = ms(5);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    sim.loss = Box::new(move |_, _, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed.is_multiple_of(10)
    });
    sim.run_until(ms(20_000));
    assert_eq!(
        sim.state(A),
        State::Master,
        "RFC 5798 6.4.3: the highest priority ends up Master"
    );
    assert_eq!(sim.state(B), State::Backup);
}

#[test]
fn three_routers_the_next_highest_priority_takes_over() {
    let mut sim = Sim::new(vec![router(1, 200), router(2, 150), router(3, 100)]);
    for i in [A, B, C] {
        sim.start(i);
    }
    sim.run_until(ms(1000));
    sim.kill(A);
    sim.run_until(ms(3000));
    let last = sim.last_sent_by(A, ms(1000));
    assert_eq!(
        sim.master_at(B),
        vec![last + MDI_150],
        "RFC 5798 6.1: Skew_Time lets the higher-priority Backup time out first"
    );
    assert!(
        sim.master_at(C).is_empty(),
        "RFC 5798 6.4.2: C hears B's advert before its own timer"
    );
}

#[test]
fn backup_learns_the_masters_advert_interval() {
    let a = InstanceConfig {
        advert_interval_cs: 20,
        ..router(1, 200)
    };
    let mut sim = Sim::pair(a, router(2, 100));
    sim.run_until(ms(3000));
    assert_eq!(
        sim.inst(B).status().master_adver_interval_cs,
        20,
        "RFC 5798 6.4.2: Backup sets Master_Adver_Interval from the ADVERTISEMENT"
    );
    sim.kill(A);
    sim.run_until(ms(6000));
    // 3 * 0.2 s + (256-100) * 0.2 s / 256 = 721.875 ms
    assert_eq!(
        sim.master_at(B).last().copied(),
        Some(sim.last_sent_by(A, ms(3000)) + us(721_875)),
        "RFC 5798 6.1: Master_Down_Interval uses the learned Master_Adver_Interval"
    );
}

#[test]
fn step_down_hands_over_and_holds_until_release() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    sim.call(A, Instance::step_down);
    assert_eq!(
        sim.sent.last(),
        Some(&(ms(1050), A, 0)),
        "step down advertises priority 0"
    );
    assert_eq!(
        sim.transitions_of(A).pop().unwrap(),
        (ms(1050), State::Master, State::Backup, Reason::StepDown)
    );
    assert_eq!(sim.inst(A).status().effective_priority, 0);
    sim.run_until(ms(10_000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1050) + SKEW_100],
        "RFC 5798 6.4.2: peer takes over in Skew_Time"
    );
    assert_eq!(
        sim.master_at(A),
        vec![MDI_200],
        "a stepped-down router acts as nopreempt"
    );
    sim.call(A, Instance::release);
    assert_eq!(sim.inst(A).status().effective_priority, 200);
    sim.run_until(ms(12_000));
    let last_accepted = sim.last_sent_by(B, ms(10_000));
    assert_eq!(
        sim.master_at(A).last().copied(),
        Some(last_accepted + MDI_200),
        "after release, RFC 5798 6.4.2 preemption: discard lower adverts, Master_Down_Timer fires"
    );
}

#[test]
fn stepped_down_router_still_takes_over_when_the_peer_dies() {
    let mut sim = settled_pair();
    sim.call(A, Instance::step_down);
    sim.run_until(ms(3000));
    sim.kill(B);
    sim.run_until(ms(5000));
    assert_eq!(
        sim.transitions_of(A).pop().unwrap(),
        (
            sim.last_sent_by(B, ms(3000)) + MDI_200,
            State::Backup,
            State::Master,
            Reason::MasterDown
        ),
        "RFC 5798 6.4.2: the Master_Down_Timer still runs while stepped down"
    );
    assert!(sim.inst(A).is_held(), "the hold lasts until release");
}

#[test]
fn peer_alive_suppresses_a_takeover_when_only_the_vrrp_path_is_lost() {
    let mut sim = settled_pair();
    sim.loss = Box::new(|now, from, _| from == A && now >= ms(1000));
    let mut t = ms(1050);
    while t < ms(4000) {
        sim.run_until(t);
        sim.call(B, Instance::peer_alive);
        t += ms(100);
    }
    sim.run_until(ms(4000));
    assert!(
        sim.master_at(B).is_empty(),
        "the sync heartbeat restarts Master_Down_Timer"
    );
    sim.run_until(ms(6000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(3950) + MDI_100],
        "RFC 5798 6.4.2: Master_Down_Interval after the last heartbeat of either path"
    );
}

#[test]
fn peer_alive_does_not_delay_a_priority_zero_handover() {
    let mut sim = settled_pair();
    sim.call(A, Instance::step_down);
    for k in 1..=5 {
        sim.run_until(ms(1000 + 10 * k));
        sim.call(B, Instance::peer_alive);
    }
    sim.run_until(ms(2000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1000) + SKEW_100],
        "RFC 5798 6.4.2: after priority 0 the Master_Down_Timer is Skew_Time, heartbeats or not"
    );
}

#[test]
fn peer_alive_does_not_block_preemption() {
    let mut sim = Sim::new(vec![router(1, 200), router(2, 100)]);
    sim.start(B);
    sim.run_until(ms(2000));
    sim.start(A);
    // From after A has heard B's first advert (2060.937 ms): before that
    // the master's priority is unknown and a heartbeat is taken at its word.
    for k in 2..=10 {
        sim.run_until(ms(2000 + 50 * k));
        sim.call(A, Instance::peer_alive);
    }
    sim.run_until(ms(4000));
    assert_eq!(
        sim.master_at(A),
        vec![ms(2000) + MDI_200],
        "RFC 5798 6.4.2: a Backup preempting a lower-priority master lets the timer fire"
    );
}

#[test]
fn shutdown_of_a_backup_goes_to_initialize_silently() {
    let mut sim = settled_pair();
    let sent = sim.sent.len();
    sim.call(B, Instance::shutdown);
    assert_eq!(
        sim.sent.len(),
        sent,
        "RFC 5798 6.4.2: Backup Shutdown sends nothing"
    );
    assert_eq!(
        sim.transitions_of(B).pop().unwrap(),
        (ms(1000), State::Backup, State::Initialize, Reason::Shutdown),
        "RFC 5798 6.4.2: Shutdown -> Initialize"
    );
    assert_eq!(
        sim.inst(B).next_timeout(),
        None,
        "RFC 5798 6.4.2: cancel Master_Down_Timer"
    );
}

// peer_suspect: the sync stream to the master ended abruptly. A settled
// pair: A (200) master since 321.875 ms, advertising every 100 ms from
// then (…, 1021.875, 1121.875, …); B (100) backup. Skew_Time(100) =
// 60.937 ms, so a suspicion at t arms t + 160.937 ms.

#[test]
fn peer_suspect_then_an_advert_keeps_the_live_master() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    sim.call(B, Instance::peer_suspect);
    assert_eq!(
        sim.inst(B).next_timeout(),
        Some(ms(1150) + SKEW_100),
        "suspicion brings Master_Down_Timer forward to Master_Adver_Interval + Skew_Time"
    );
    let next_advert = sim.last_sent_by(A, ms(1050)) + ms(100);
    sim.run_until(next_advert);
    assert_eq!(
        sim.inst(B).next_timeout(),
        Some(next_advert + MDI_100),
        "RFC 5798 6.4.2: the master's next advert resets Master_Down_Timer to \
         Master_Down_Interval: the suspicion is over"
    );
    sim.run_until(ms(5000));
    assert!(
        sim.master_at(B).is_empty(),
        "a live master keeps its role after a mere sync-stream loss"
    );
    assert_eq!(sim.state(A), State::Master);
}

#[test]
fn peer_suspect_then_silence_takes_over_after_one_interval_and_skew() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    // A dies just after its 1000 ms advert; B's sync stream sees the close
    // 1 ms later.
    sim.kill(A);
    sim.run_until(ms(1051));
    sim.call(B, Instance::peer_suspect);
    sim.run_until(ms(3000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1051) + ms(100) + SKEW_100],
        "takeover one Master_Adver_Interval + Skew_Time after the suspicion, \
         not Master_Down_Interval (1000 ms + 360.937 ms) after the last advert"
    );
    let (_, _, _, reason) = sim.transitions_of(B).pop().unwrap();
    assert_eq!(reason, Reason::MasterSuspectedDown);
    assert!(
        reason
            .to_string()
            .starts_with("sync stream to the master lost")
    );
}

#[test]
fn peer_suspect_never_delays_the_timer() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    sim.kill(A);
    // Suspicion late in the Master_Down_Interval: 1021.875 + 360.937 ms
    // is sooner than 1300 + 160.937 ms, so it stays.
    sim.run_until(ms(1300));
    sim.call(B, Instance::peer_suspect);
    sim.run_until(ms(3000));
    assert_eq!(
        sim.master_at(B),
        vec![sim.last_sent_by(A, ms(1050)) + MDI_100],
        "RFC 5798 6.4.2: Master_Down_Interval after the last advert still bounds the takeover"
    );
    assert_eq!(sim.transitions_of(B).pop().unwrap().3, Reason::MasterDown);
}

#[test]
fn peer_suspect_does_not_delay_a_priority_zero_handover() {
    let mut sim = settled_pair();
    sim.call(A, Instance::step_down);
    sim.run_until(ms(1010));
    sim.call(B, Instance::peer_suspect);
    sim.run_until(ms(2000));
    assert_eq!(
        sim.master_at(B),
        vec![ms(1000) + SKEW_100],
        "RFC 5798 6.4.2: after priority 0 the Master_Down_Timer is Skew_Time"
    );
    assert_eq!(
        sim.transitions_of(B).pop().unwrap().3,
        Reason::PriorityZero { from: ip(1) }
    );
}

#[test]
fn peer_suspect_on_a_master_has_no_effect() {
    let mut sim = settled_pair();
    sim.run_until(ms(1050));
    let before = sim.inst(A).next_timeout();
    sim.call(A, Instance::peer_suspect);
    assert_eq!(sim.inst(A).next_timeout(), before, "Adver_Timer untouched");
    sim.run_until(ms(3000));
    assert_eq!(sim.state(A), State::Master);
    assert_eq!(sim.state(B), State::Backup);
    let a_sends: Vec<_> = sim.sent.iter().filter(|s| s.1 == A).map(|s| s.0).collect();
    assert!(
        a_sends.windows(2).all(|w| w[1] - w[0] == ms(100))
            && a_sends.last().is_some_and(|t| *t > ms(2900)),
        "RFC 5798 6.4.3: the master goes on advertising every Advertisement_Interval"
    );
    assert_eq!(
        sim.transitions_of(A).len(),
        2,
        "no transition from suspicion"
    );
}

#[test]
fn peer_suspect_while_preempting_has_no_effect() {
    let mut sim = Sim::new(vec![router(1, 200), router(2, 100)]);
    sim.start(B);
    sim.run_until(ms(2000));
    sim.start(A);
    // A hears B's lower-priority advert at 2060.937 ms and discards it.
    sim.run_until(ms(2150));
    sim.call(A, Instance::peer_suspect);
    sim.run_until(ms(4000));
    assert_eq!(
        sim.master_at(A),
        vec![ms(2000) + MDI_200],
        "RFC 5798 6.4.2: preemption follows Master_Down_Interval, suspicion or not"
    );
}
