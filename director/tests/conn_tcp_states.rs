//! TCP state sequences through the connection table, pinned against the
//! kernel's transition tables (`tcp_states` in ip_vs_proto_tcp.c): INPUT_ONLY
//! for DR, INPUT/OUTPUT for NAT. After each packet the connection's timer
//! must equal the timeout of the state it is in.

mod conn_util;

use std::time::Duration;

use conn_util::*;
use director::conn::{
    ConnEvent, ConnState, ConnTable, InOutcome, Miss, Packet, ReplyKey, TcpFlags, TcpState,
};
use director::dest::StatSlot;
use director::service::Service;
use director::{ForwardMethod, Millis, Protocol};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;
const PSH: TcpFlags = TcpFlags::PSH;

struct Flow<'a> {
    table: &'a ConnTable,
    svc: &'a Service,
    client: &'static str,
    now: Millis,
    events: Vec<ConnEvent>,
}

impl<'a> Flow<'a> {
    fn new(table: &'a ConnTable, svc: &'a Service, client: &'static str) -> Flow<'a> {
        Flow {
            table,
            svc,
            client,
            now: Millis(1_000),
            events: Vec::new(),
        }
    }

    fn pkt(&self, flags: TcpFlags) -> Packet {
        Packet::tcp(sa(self.client), sa(VIP), flags)
    }

    /// A client packet, one second after the previous one.
    fn input(&mut self, flags: TcpFlags) -> Result<InOutcome, Miss> {
        self.now = Millis(self.now.0 + 1_000);
        let pkt = self.pkt(flags);
        let events = &mut self.events;
        self.table
            .process_in(self.svc, &pkt, self.now, 0, &mut |e| events.push(e))
    }

    /// A reply from the flow's real server.
    fn output(&mut self, flags: TcpFlags) -> Result<ConnState, Miss> {
        self.now = Millis(self.now.0 + 1_000);
        let rs = self
            .table
            .get(&self.pkt(ACK).key(), self.now)
            .expect("reply to a live connection")
            .real_server;
        let key = ReplyKey {
            protocol: Protocol::Tcp,
            real_server: rs,
            client: sa(self.client),
        };
        let events = &mut self.events;
        self.table
            .process_reply(&key, flags, 60, StatSlot::FIRST, self.now, &mut |e| {
                events.push(e)
            })
            .map(|o| o.state)
    }

    /// The connection is in `state` and its timer is that state's timeout.
    fn expect(&self, state: TcpState, rule: &str) {
        let rec = self
            .table
            .get(&self.pkt(ACK).key(), self.now)
            .unwrap_or_else(|| panic!("connection gone, expected {state:?} ({rule})"));
        assert_eq!(rec.state, ConnState::Tcp(state), "{rule}");
        let want = self.table.timeouts().get(ConnState::Tcp(state));
        assert_eq!(
            Duration::from_millis(rec.timeout_ms),
            want,
            "timer after {rule} must be the {} timeout",
            state.name()
        );
    }
}

#[test]
fn dr_handshake_data_and_close_use_input_only() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.7:40000");

    let out = f.input(SYN).unwrap();
    assert!(out.created);
    assert_eq!(out.method, ForwardMethod::DirectRouting);
    f.expect(TcpState::SynRecv, "INPUT_ONLY syn: NONE -> SYN_RECV");
    let d = ds.iter().find(|d| d.addr() == out.real_server).unwrap();
    assert_eq!(
        (d.active_conns(), d.inactive_conns()),
        (1, 0),
        "tcp_state_active: SYN_RECV counts as active"
    );

    f.input(ACK).unwrap();
    f.expect(
        TcpState::Established,
        "INPUT_ONLY ack: SYN_RECV -> ESTABLISHED",
    );
    f.input(ACK | PSH).unwrap();
    f.expect(
        TcpState::Established,
        "INPUT_ONLY ack: ESTABLISHED -> ESTABLISHED",
    );
    assert_eq!((d.active_conns(), d.inactive_conns()), (1, 0));

    f.input(FIN | ACK).unwrap();
    f.expect(
        TcpState::FinWait,
        "INPUT_ONLY fin: ESTABLISHED -> FIN_WAIT (fin outranks ack)",
    );
    assert_eq!(
        (d.active_conns(), d.inactive_conns()),
        (0, 1),
        "FIN_WAIT is not an active state"
    );
    f.input(ACK).unwrap();
    f.expect(TcpState::FinWait, "INPUT_ONLY ack: FIN_WAIT -> FIN_WAIT");
    f.input(FIN | ACK).unwrap();
    f.expect(TcpState::FinWait, "INPUT_ONLY fin: FIN_WAIT -> FIN_WAIT");

    let changes: Vec<_> = f
        .events
        .iter()
        .filter_map(|e| match e {
            ConnEvent::StateChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                ConnState::Tcp(TcpState::SynRecv),
                ConnState::Tcp(TcpState::Established)
            ),
            (
                ConnState::Tcp(TcpState::Established),
                ConnState::Tcp(TcpState::FinWait)
            ),
        ],
        "every state change is reported, and only changes"
    );
    assert!(
        matches!(f.events[0], ConnEvent::Created(r) if r.state == ConnState::Tcp(TcpState::SynRecv))
    );
    assert_counters_match(&t, &ds);
}

#[test]
fn nat_client_close_uses_input_and_output() {
    let ds = dests(1, ForwardMethod::Masquerade);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.8:40001");

    f.input(SYN).unwrap();
    f.expect(TcpState::SynRecv, "INPUT syn: NONE -> SYN_RECV");
    assert_eq!(
        f.output(SYN | ACK).unwrap(),
        ConnState::Tcp(TcpState::SynRecv)
    );
    f.expect(TcpState::SynRecv, "OUTPUT syn: SYN_RECV -> SYN_RECV");
    f.input(ACK).unwrap();
    f.expect(TcpState::Established, "INPUT ack: SYN_RECV -> ESTABLISHED");
    f.output(ACK | PSH).unwrap();
    f.expect(
        TcpState::Established,
        "OUTPUT ack: ESTABLISHED -> ESTABLISHED",
    );
    f.input(FIN | ACK).unwrap();
    f.expect(TcpState::CloseWait, "INPUT fin: ESTABLISHED -> CLOSE_WAIT");
    f.output(ACK).unwrap();
    f.expect(TcpState::CloseWait, "OUTPUT ack: CLOSE_WAIT -> CLOSE_WAIT");
    f.output(FIN | ACK).unwrap();
    f.expect(TcpState::TimeWait, "OUTPUT fin: CLOSE_WAIT -> TIME_WAIT");
    f.input(ACK).unwrap();
    f.expect(TcpState::TimeWait, "INPUT ack: TIME_WAIT -> TIME_WAIT");
    assert_eq!((ds[0].active_conns(), ds[0].inactive_conns()), (0, 1));
    assert_counters_match(&t, &ds);
}

#[test]
fn nat_server_close() {
    let ds = dests(1, ForwardMethod::Masquerade);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.9:40002");
    f.input(SYN).unwrap();
    f.output(SYN | ACK).unwrap();
    f.input(ACK).unwrap();
    f.output(FIN | ACK).unwrap();
    f.expect(TcpState::FinWait, "OUTPUT fin: ESTABLISHED -> FIN_WAIT");
    f.input(ACK).unwrap();
    f.expect(TcpState::FinWait, "INPUT ack: FIN_WAIT -> FIN_WAIT");
    f.input(FIN | ACK).unwrap();
    f.expect(TcpState::TimeWait, "INPUT fin: FIN_WAIT -> TIME_WAIT");
    f.output(ACK).unwrap();
    f.expect(TcpState::TimeWait, "OUTPUT ack: TIME_WAIT -> TIME_WAIT");
}

#[test]
fn dr_without_output_stays_on_input_only_and_a_reply_switches_tables() {
    // A DR connection is NOOUTPUT: client FIN in ESTABLISHED gives FIN_WAIT
    // (INPUT_ONLY), where a NAT connection would give CLOSE_WAIT (INPUT).
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.10:40003");
    f.input(SYN).unwrap();
    f.input(ACK).unwrap();
    let rec = t.get(&f.pkt(ACK).key(), f.now).unwrap();
    assert!(
        rec.flags.no_output,
        "DR connections carry IP_VS_CONN_F_NOOUTPUT"
    );
    // DR replies never reach the director, so there is no reply entry.
    let key = ReplyKey {
        protocol: Protocol::Tcp,
        real_server: rec.real_server,
        client: sa(f.client),
    };
    assert_eq!(
        t.process_reply(&key, ACK, 60, StatSlot::FIRST, f.now, &mut |_| {}),
        Err(Miss::NoConnection),
        "only NAT connections are in the reply index"
    );
}

#[test]
fn rst_closes_an_established_connection() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.11:40004");
    f.input(SYN).unwrap();
    f.input(ACK).unwrap();
    f.input(RST | ACK).unwrap();
    f.expect(
        TcpState::Close,
        "INPUT_ONLY rst: ESTABLISHED -> CLOSE (rst outranks ack)",
    );
    assert_eq!((ds[0].active_conns(), ds[0].inactive_conns()), (0, 1));
    assert_eq!(
        t.timeouts().get(ConnState::Tcp(TcpState::Close)),
        Duration::from_secs(10)
    );
}

#[test]
fn rst_in_syn_recv_keeps_syn_recv() {
    let ds = dests(1, ForwardMethod::Masquerade);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.12:40005");
    f.input(SYN).unwrap();
    f.input(RST).unwrap();
    f.expect(TcpState::SynRecv, "INPUT rst: SYN_RECV -> SYN_RECV");
    f.output(RST).unwrap();
    f.expect(TcpState::Close, "OUTPUT rst: SYN_RECV -> CLOSE");
}

#[test]
fn only_a_syn_without_rst_creates_a_tcp_connection() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let now = Millis(5);
    let pkt = |flags| Packet::tcp(sa("198.51.100.13:40006"), sa(VIP), flags);
    for flags in [ACK, ACK | PSH, FIN | ACK, RST, SYN | RST, TcpFlags::NONE] {
        assert_eq!(
            t.process_in(&svc, &pkt(flags), now, 0, &mut |_| {}),
            Err(Miss::NoConnection),
            "tcp_conn_schedule: {flags:?} must not create a connection (sloppy_tcp=0)"
        );
    }
    assert!(t.is_empty());
    let out = t
        .process_in(&svc, &pkt(SYN | ACK), now, 0, &mut |_| {})
        .unwrap();
    assert!(
        out.created,
        "no !th->ack check: SYN+ACK may schedule (active FTP)"
    );
}

#[test]
fn udp_flow_is_inactive_and_refreshed_by_each_packet() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Udp, ds.clone(), None);
    let t = table();
    let pkt = Packet::udp(sa("198.51.100.14:5353"), sa(VIP));
    let out = t.process_in(&svc, &pkt, Millis(0), 0, &mut |_| {}).unwrap();
    assert!(out.created);
    assert_eq!(out.state, ConnState::Udp);
    assert_eq!(
        (ds[0].active_conns(), ds[0].inactive_conns()),
        (0, 1),
        "UDP flows stay IP_VS_CONN_F_INACTIVE: udp_state_transition never reclasses"
    );
    t.process_in(&svc, &pkt, Millis(200_000), 0, &mut |_| {})
        .unwrap();
    let rec = t.get(&pkt.key(), Millis(200_000)).unwrap();
    assert_eq!(rec.timeout_ms, 300_000, "every UDP packet re-arms 300 s");
    assert!(t.get(&pkt.key(), Millis(499_999)).is_some());
    assert!(t.get(&pkt.key(), Millis(500_000)).is_none());
}

#[test]
fn ipvsadm_set_applies_from_the_next_packet() {
    let ds = dests(1, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.15:40007");
    f.input(SYN).unwrap();
    f.input(ACK).unwrap();
    t.timeouts().set_ipvsadm(
        Duration::from_secs(7),
        Duration::from_secs(3),
        Duration::ZERO,
    );
    f.input(ACK).unwrap();
    f.expect(TcpState::Established, "ESTABLISHED after --set tcp 7");
    let rec = t.get(&f.pkt(ACK).key(), f.now).unwrap();
    assert_eq!(rec.timeout_ms, 7_000);
    f.input(FIN).unwrap();
    let rec = t.get(&f.pkt(ACK).key(), f.now).unwrap();
    assert_eq!(
        rec.timeout_ms, 3_000,
        "--set tcpfin is the FIN_WAIT timeout"
    );
}

#[test]
fn syn_on_time_wait_reschedules() {
    let ds = dests(2, ForwardMethod::Masquerade);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.16:40008");
    let first = f.input(SYN).unwrap().real_server;
    f.output(SYN | ACK).unwrap();
    f.input(ACK).unwrap();
    f.input(FIN | ACK).unwrap();
    f.output(FIN | ACK).unwrap();
    f.expect(TcpState::TimeWait, "OUTPUT fin: CLOSE_WAIT -> TIME_WAIT");
    f.events.clear();
    let again = f.input(SYN).unwrap();
    assert!(
        again.created,
        "conn_reuse_mode=1: a SYN on an uncontrolled TIME_WAIT entry starts a new connection"
    );
    assert_ne!(again.real_server, first, "and it is scheduled afresh");
    assert!(
        matches!(f.events[0], ConnEvent::Expired(r) if r.state == ConnState::Tcp(TcpState::TimeWait))
    );
    assert!(matches!(f.events[1], ConnEvent::Created(_)));
    assert_eq!(t.conn_count(), 1);
    assert_counters_match(&t, &ds);
}

#[test]
fn syn_on_established_is_not_a_new_connection() {
    let ds = dests(2, ForwardMethod::DirectRouting);
    let svc = service(Protocol::Tcp, ds.clone(), None);
    let t = table();
    let mut f = Flow::new(&t, &svc, "198.51.100.17:40009");
    let first = f.input(SYN).unwrap().real_server;
    f.input(ACK).unwrap();
    let again = f.input(SYN).unwrap();
    assert!(!again.created);
    assert_eq!(again.real_server, first);
    f.expect(
        TcpState::Established,
        "INPUT_ONLY syn: ESTABLISHED -> ESTABLISHED",
    );
}
