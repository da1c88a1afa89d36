//! The tokio driver: the only I/O in this crate.
//!
//! One task per interface owns one raw IPv4 socket for protocol 112 and
//! drives every [`Instance`] on that interface with one timer, re-armed
//! to the earliest `next_timeout()` after each step (the shape of
//! quinn's endpoint driver). The socket is bound to the interface, joins
//! 224.0.0.18 there, and sends whole datagrams (`IP_HDRINCL`, as
//! keepalived does), so the source is each instance's primary address and
//! the TTL is 255 regardless of routing or socket defaults.
//!
//! Received datagrams go through [`packet::decode`]; every drop is counted
//! by reason, and our own adverts (source = a primary address of ours)
//! are dropped and counted apart. Transitions go out on the events
//! channel at once (the director claims the VIPs and sends gratuitous
//! ARP), and each runs the instance's notify program with keepalived's
//! arguments, in the background, killed after 10 s.
//!
//! Time: the machine's `now` is the tokio clock since the driver started,
//! so driver tests can run with a paused clock.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::machine::{Action, Instance, InstanceConfig, State, Status};
use crate::packet::{self, Counters, IPPROTO_VRRP, MULTICAST_GROUP, TOS_NETWORK_CONTROL, TTL};

/// How long a notify program may run before it is killed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// One instance to drive, on one interface.
#[derive(Debug, Clone)]
pub struct DriverInstance {
    /// The virtual router.
    pub config: InstanceConfig,
    /// Interface name, e.g. "eth0".
    pub interface: String,
    /// Program and leading arguments, run on every transition with
    /// `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>` appended.
    pub notify: Option<Vec<String>>,
}

/// What the driver tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// An instance changed state.
    Transition {
        /// Instance name.
        instance: String,
        /// Its VRID.
        vrid: u8,
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// The rule that fired, in words.
        reason: String,
        /// Configured priority.
        priority: u8,
    },
}

/// Counters shared by every interface task.
#[derive(Debug, Default)]
struct Stats {
    rejects: Counters,
    adverts_sent: AtomicU64,
    adverts_received: AtomicU64,
    own_adverts: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
enum Command {
    StepDown(Option<String>, oneshot::Sender<()>),
    Release(Option<String>, oneshot::Sender<()>),
    PeerAlive(oneshot::Sender<()>),
    PeerSuspect(oneshot::Sender<()>),
    InterfaceUp(bool, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The handle's view of one interface task.
#[derive(Debug)]
struct Task {
    interface: String,
    names: Vec<String>,
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<Vec<Status>>>,
}

/// Control and observe a running driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tasks: Arc<Vec<Task>>,
    stats: Arc<Stats>,
}

/// Open the sockets and start one task per interface. Errors name the
/// interface and what failed (socket, bind, multicast join, config).
pub async fn spawn(
    instances: Vec<DriverInstance>,
    events: mpsc::UnboundedSender<DriverEvent>,
) -> io::Result<Handle> {
    check_unique(&instances)?;
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    for (interface, group) in by_interface(instances) {
        tasks.push(start_interface(interface, group, &events, &stats)?);
    }
    Ok(Handle {
        tasks: Arc::new(tasks),
        stats,
    })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_unique(instances: &[DriverInstance]) -> io::Result<()> {
    let mut names = HashSet::new();
    let mut vrids = HashSet::new();
    for d in instances {
        if !names.insert(d.config.name.as_str()) {
            return Err(invalid(format!(
                "vrrp: instance name {:?} used twice",
                d.config.name
            )));
        }
        if !vrids.insert((d.interface.as_str(), d.config.vrid)) {
            let (i, v) = (&d.interface, d.config.vrid);
            return Err(invalid(format!(
                "vrrp on {i}: vrid {v} used by two instances"
            )));
        }
    }
    Ok(())
}

/// Instances grouped by interface, in first-seen order.
fn by_interface(instances: Vec<DriverInstance>) -> Vec<(String, Vec<DriverInstance>)> {
    let mut groups: Vec<(String, Vec<DriverInstance>)> = Vec::new();
    for d in instances {
        match groups.iter_mut().find(|(i, _)| *i == d.interface) {
            Some((_, g)) => g.push(d),
            None => groups.push((d.interface.clone(), vec![d])),
        }
    }
    groups
}

fn start_interface(
    interface: String,
    group: Vec<DriverInstance>,
    events: &mpsc::UnboundedSender<DriverEvent>,
    stats: &Arc<Stats>,
) -> io::Result<Task> {
    let mut slots = Vec::new();
    for d in group {
        let inst = Instance::new(d.config).map_err(|e| invalid(format!("on {interface}: {e}")))?;
        slots.push(Slot {
            inst,
            notify: d.notify,
        });
    }
    let primary = slots[0].inst.config().primary_ip;
    let multicast = slots
        .iter()
        .any(|s| s.inst.config().unicast_peers.is_empty());
    let socket = open_socket(&interface, primary, multicast)?;
    let status = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::unbounded_channel();
    let core = Core {
        interface: interface.clone(),
        origin: Instant::now(),
        names: slots.iter().map(|s| s.inst.config().name.clone()).collect(),
        slots,
        events: events.clone(),
        status: status.clone(),
        stats: stats.clone(),
        ident: 0,
    };
    let names = core.names.clone();
    tokio::spawn(run(core, socket, rx));
    Ok(Task {
        interface,
        names,
        commands: tx,
        status,
    })
}

fn open_socket(interface: &str, primary: Ipv4Addr, multicast: bool) -> io::Result<AsyncFd<Socket>> {
    let ctx = |what: &'static str| {
        move |e: io::Error| io::Error::new(e.kind(), format!("vrrp on {interface}: {what}: {e}"))
    };
    let proto = Some(Protocol::from(i32::from(IPPROTO_VRRP)));
    let s = Socket::new(Domain::IPV4, Type::RAW, proto)
        .map_err(ctx("raw IPv4 socket for protocol 112 (needs CAP_NET_RAW)"))?;
    s.bind_device(Some(interface.as_bytes()))
        .map_err(ctx("bind to device"))?;
    s.set_header_included_v4(true).map_err(ctx("IP_HDRINCL"))?;
    s.set_ttl_v4(u32::from(TTL)).map_err(ctx("IP_TTL"))?;
    s.set_tos_v4(u32::from(TOS_NETWORK_CONTROL))
        .map_err(ctx("IP_TOS"))?;
    s.set_multicast_ttl_v4(u32::from(TTL))
        .map_err(ctx("IP_MULTICAST_TTL"))?;
    s.set_multicast_loop_v4(false)
        .map_err(ctx("IP_MULTICAST_LOOP"))?;
    s.set_multicast_if_v4(&primary)
        .map_err(ctx("IP_MULTICAST_IF (primary_ip)"))?;
    if multicast {
        let index = InterfaceIndexOrAddress::Index(ifindex(interface)?);
        s.join_multicast_v4_n(&MULTICAST_GROUP, &index)
            .map_err(ctx("join 224.0.0.18"))?;
    }
    s.set_nonblocking(true).map_err(ctx("non-blocking"))?;
    register(s).map_err(ctx("register with tokio"))
}

/// Register the socket with tokio's reactor. `AsyncFd::new` is deprecated
/// (tokio #8587) because a `T` whose `as_raw_fd()` may change or close
/// behind tokio's back would be unsound; a `socket2::Socket` owns its
/// descriptor for its whole life and always returns the same one, so the
/// safe constructor is sound here and keeps this crate free of `unsafe`.
#[allow(deprecated)]
fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    AsyncFd::new(s)
}

/// The interface index, from sysfs (no ioctl, so no unsafe).
fn ifindex(interface: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{interface}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("vrrp on {interface}: no such interface ({path}: {e})"),
        )
    })?;
    text.trim()
        .parse()
        .map_err(|e| invalid(format!("vrrp on {interface}: {path}: {e}")))
}

struct Slot {
    inst: Instance,
    notify: Option<Vec<String>>,
}

/// Everything an interface task owns except the socket (kept apart so a
/// readiness guard on the socket can coexist with `&mut Core`).
struct Core {
    interface: String,
    origin: Instant,
    names: Vec<String>,
    slots: Vec<Slot>,
    events: mpsc::UnboundedSender<DriverEvent>,
    status: Arc<Mutex<Vec<Status>>>,
    stats: Arc<Stats>,
    ident: u16,
}

async fn run(
    mut core: Core,
    socket: AsyncFd<Socket>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    core.for_each(&socket, None, Instance::start);
    let mut buf = vec![0u8; 65_536];
    loop {
        core.publish();
        let deadline = core.next_deadline();
        tokio::select! {
            _ = sleep_until(deadline) => core.on_timers(&socket),
            ready = socket.readable() => match ready {
                Ok(mut guard) => {
                    while let Ok(res) = guard.try_io(|fd| read_once(fd, &mut buf)) {
                        match res {
                            Ok(n) => core.on_datagram(&socket, &buf[..n]),
                            Err(e) => {
                                bump(&core.stats.recv_errors);
                                debug!(interface = %core.interface, "vrrp receive: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(interface = %core.interface, "vrrp socket failed: {e}; stopping");
                    return;
                }
            },
            cmd = commands.recv() => {
                if !core.on_command(&socket, cmd) {
                    core.publish();
                    return;
                }
            }
        }
    }
}

/// One datagram, through `Read for &Socket` (no `unsafe` needed).
fn read_once(fd: &AsyncFd<Socket>, buf: &mut [u8]) -> io::Result<usize> {
    let mut socket: &Socket = fd.get_ref();
    socket.read(buf)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Core {
    /// The machine's clock: tokio time since the task started.
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let next = self
            .slots
            .iter()
            .filter_map(|s| s.inst.next_timeout())
            .min()?;
        Some(self.origin + next)
    }

    fn publish(&self) {
        let snapshot = self.slots.iter().map(|s| s.inst.status()).collect();
        if let Ok(mut st) = self.status.lock() {
            *st = snapshot;
        }
    }

    /// Run `f` on every instance (or the one named), then act on the result.
    fn for_each(
        &mut self,
        socket: &AsyncFd<Socket>,
        name: Option<&str>,
        f: impl Fn(&mut Instance, Duration) -> Vec<Action>,
    ) {
        let now = self.now();
        for i in 0..self.slots.len() {
            if name.is_some_and(|n| n != self.names[i]) {
                continue;
            }
            let actions = f(&mut self.slots[i].inst, now);
            self.apply(socket, i, actions);
        }
    }

    fn on_timers(&mut self, socket: &AsyncFd<Socket>) {
        let now = self.now();
        for i in 0..self.slots.len() {
            if self.slots[i].inst.next_timeout().is_some_and(|t| t <= now) {
                let actions = self.slots[i].inst.handle_timeout(now);
                self.apply(socket, i, actions);
            }
        }
    }

    fn on_datagram(&mut self, socket: &AsyncFd<Socket>, bytes: &[u8]) {
        let known = |v: u8| self.slots.iter().any(|s| s.inst.config().vrid == v);
        let rx = match packet::decode(bytes, known) {
            Ok(rx) => rx,
            Err(reason) => {
                self.stats.rejects.record(reason);
                debug!(interface = %self.interface, reason = reason.name(), "vrrp advert dropped");
                return;
            }
        };
        if self
            .slots
            .iter()
            .any(|s| s.inst.config().primary_ip == rx.src)
        {
            bump(&self.stats.own_adverts);
            return;
        }
        bump(&self.stats.adverts_received);
        let now = self.now();
        for i in 0..self.slots.len() {
            if self.slots[i].inst.config().vrid == rx.advert.vrid {
                let actions = self.slots[i].inst.handle_advert(now, rx.src, &rx.advert);
                self.apply(socket, i, actions);
            }
        }
    }

    /// Carry out one command; false when the task must stop.
    fn on_command(&mut self, socket: &AsyncFd<Socket>, cmd: Option<Command>) -> bool {
        let done = match cmd {
            None => {
                self.for_each(socket, None, Instance::shutdown);
                return false;
            }
            Some(Command::Shutdown(done)) => {
                self.for_each(socket, None, Instance::shutdown);
                let _ = done.send(());
                return false;
            }
            Some(Command::StepDown(name, done)) => {
                self.for_each(socket, name.as_deref(), Instance::step_down);
                done
            }
            Some(Command::Release(name, done)) => {
                self.for_each(socket, name.as_deref(), Instance::release);
                done
            }
            Some(Command::PeerAlive(done)) => {
                self.for_each(socket, None, Instance::peer_alive);
                done
            }
            Some(Command::PeerSuspect(done)) => {
                self.for_each(socket, None, Instance::peer_suspect);
                done
            }
            Some(Command::InterfaceUp(up, done)) => {
                let f = if up {
                    Instance::interface_up
                } else {
                    Instance::interface_down
                };
                self.for_each(socket, None, f);
                done
            }
        };
        self.publish();
        let _ = done.send(());
        true
    }

    fn apply(&mut self, socket: &AsyncFd<Socket>, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send(socket, i, priority),
                Action::Transition { from, to, reason } => {
                    let cfg = self.slots[i].inst.config();
                    let (name, vrid, priority) = (cfg.name.clone(), cfg.vrid, cfg.priority);
                    info!(interface = %self.interface, instance = %name, vrid,
                        "vrrp {from} -> {to}: {reason}");
                    if let Some(program) = &self.slots[i].notify {
                        run_notify(program, &name, to, priority);
                    }
                    let reason = reason.to_string();
                    let event = DriverEvent::Transition {
                        instance: name,
                        vrid,
                        from,
                        to,
                        reason,
                        priority,
                    };
                    let _ = self.events.send(event);
                }
            }
        }
    }

    fn send(&mut self, socket: &AsyncFd<Socket>, i: usize, priority: u8) {
        let cfg = self.slots[i].inst.config();
        let advert = cfg.advert(priority);
        for dst in cfg.destinations() {
            self.ident = self.ident.wrapping_add(1).max(1);
            let bytes = advert.to_ipv4(cfg.primary_ip, dst, self.ident);
            let to = SockAddr::from(SocketAddrV4::new(dst, 0));
            match socket.get_ref().send_to(&bytes, &to) {
                Ok(_) => bump(&self.stats.adverts_sent),
                Err(e) => {
                    bump(&self.stats.send_errors);
                    debug!(interface = %self.interface, %dst, "vrrp send: {e}");
                }
            }
        }
    }
}

/// keepalived's state word for notify scripts.
fn notify_state(state: State) -> &'static str {
    match state {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Initialize => "STOP",
    }
}

/// Start `program INSTANCE <name> <state> <priority>` in the background;
/// kill it if it outlives [`NOTIFY_TIMEOUT`].
fn run_notify(program: &[String], name: &str, to: State, priority: u8) {
    let Some((cmd, leading)) = program.split_first() else {
        return;
    };
    let mut command = tokio::process::Command::new(cmd);
    command
        .args(leading)
        .args(["INSTANCE", name, notify_state(to), &priority.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(instance = %name, "vrrp notify {cmd:?} failed to start: {e}");
            return;
        }
    };
    let (cmd, name) = (cmd.clone(), name.to_string());
    tokio::spawn(async move {
        match tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if !status.success() => {
                warn!(instance = %name, "vrrp notify {cmd:?} exited with {status}");
            }
            Ok(Err(e)) => warn!(instance = %name, "vrrp notify {cmd:?}: {e}"),
            Ok(Ok(_)) => {}
            Err(_) => {
                warn!(instance = %name, "vrrp notify {cmd:?} still running after 10 s: killed");
                let _ = child.kill().await;
            }
        }
    });
}

impl Handle {
    /// Every instance's status, interfaces in configuration order.
    pub fn status(&self) -> Vec<Status> {
        let lock = |t: &Task| t.status.lock().map(|s| s.clone()).unwrap_or_default();
        self.tasks.iter().flat_map(lock).collect()
    }

    /// Receive drops by reason ([`packet::Reject::name`]), then
    /// `adverts_sent`, `adverts_received`, `own_adverts` (our own,
    /// dropped), `send_errors`, `recv_errors`.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let mut out = s.rejects.snapshot();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.extend([
            ("adverts_sent", load(&s.adverts_sent)),
            ("adverts_received", load(&s.adverts_received)),
            ("own_adverts", load(&s.own_adverts)),
            ("send_errors", load(&s.send_errors)),
            ("recv_errors", load(&s.recv_errors)),
        ]);
        out
    }

    /// Manual failover of one instance (or all): a master advertises
    /// priority 0 and holds off preemption until [`Handle::release`].
    pub async fn step_down(&self, instance: Option<&str>) -> Result<(), String> {
        self.to_instances(instance, Command::StepDown).await
    }

    /// End a step-down.
    pub async fn release(&self, instance: Option<&str>) -> Result<(), String> {
        self.to_instances(instance, Command::Release).await
    }

    /// The sync stream heard the master: every instance in Backup restarts
    /// its Master_Down timer.
    pub async fn peer_alive(&self) {
        for t in self.tasks.iter() {
            let _ = ask(t, Command::PeerAlive).await;
        }
    }

    /// The sync stream to the master ended abruptly: every instance in
    /// Backup brings its Master_Down timer forward to one advert interval
    /// + Skew_Time ([`Instance::peer_suspect`]).
    pub async fn peer_suspect(&self) {
        for t in self.tasks.iter() {
            let _ = ask(t, Command::PeerSuspect).await;
        }
    }

    /// Tell the instances on `interface` that its link went down or up.
    pub async fn set_interface_up(&self, interface: &str, up: bool) {
        for t in self.tasks.iter().filter(|t| t.interface == interface) {
            let _ = ask(t, |d| Command::InterfaceUp(up, d)).await;
        }
    }

    /// Every master advertises priority 0, then the tasks stop. Returns
    /// once those adverts are handed to the kernel.
    pub async fn shutdown(&self) {
        for t in self.tasks.iter() {
            let _ = ask(t, Command::Shutdown).await;
        }
    }

    async fn to_instances(
        &self,
        instance: Option<&str>,
        make: impl Fn(Option<String>, oneshot::Sender<()>) -> Command,
    ) -> Result<(), String> {
        let owns = |t: &&Task| instance.is_none_or(|n| t.names.iter().any(|x| x == n));
        let targets: Vec<&Task> = self.tasks.iter().filter(owns).collect();
        if let (Some(n), true) = (instance, targets.is_empty()) {
            return Err(format!("no VRRP instance named {n:?}"));
        }
        for t in targets {
            ask(t, |d| make(instance.map(str::to_string), d)).await?;
        }
        Ok(())
    }
}

/// Send a command to a task and wait until it has been carried out.
async fn ask(t: &Task, make: impl FnOnce(oneshot::Sender<()>) -> Command) -> Result<(), String> {
    let stopped = || format!("VRRP driver for interface {} has stopped", t.interface);
    let (tx, rx) = oneshot::channel();
    t.commands.send(make(tx)).map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())
}
