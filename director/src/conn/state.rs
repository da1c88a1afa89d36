//! IPVS connection states and the TCP transition tables.
//!
//! The tables are those of the kernel's `net/netfilter/ipvs/ip_vs_proto_tcp.c`
//! (`tcp_states`, the default; the `secure_tcp` "dos" tables are not
//! implemented). A TCP packet is reduced to one event by its flags in the
//! kernel's priority order — RST, then SYN, then FIN, then ACK — and the
//! next state is looked up in one of three tables:
//!
//! * INPUT — client → real server packets of a NAT connection;
//! * OUTPUT — real server → client replies of a NAT connection;
//! * INPUT_ONLY — client packets of a connection whose replies the director
//!   never sees (DR and TUN: `IP_VS_CONN_F_NOOUTPUT`). A NOOUTPUT
//!   connection that does see a reply drops the flag and uses INPUT/OUTPUT
//!   from then on.
//!
//! A TCP packet with none of the four flags moves the connection to CLOSE,
//! as the kernel's `set_tcp_state` does when `tcp_state_idx` finds no event.
//!
//! Active or inactive: since Linux 4.8 (`tcp_state_active`) a connection
//! counts as *active* in ESTABLISHED, SYN_SENT, SYN_RECV and SYNACK, and as
//! *inactive* in every other state. UDP has no states and always counts as
//! inactive (see [`ConnState::Udp`]).

use std::fmt;

pub use crate::types::TcpFlags;

/// IPVS TCP connection states (`IP_VS_TCP_S_*`), in the kernel's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// Just created, no packet seen yet.
    None = 0,
    /// Handshake complete.
    Established = 1,
    /// The real server sent a SYN first (active open from inside).
    SynSent = 2,
    /// The client's SYN was seen.
    SynRecv = 3,
    /// One side sent FIN.
    FinWait = 4,
    /// Both sides sent FIN.
    TimeWait = 5,
    /// Reset or closed.
    Close = 6,
    /// The client sent FIN first (NAT).
    CloseWait = 7,
    /// Waiting for the last ACK.
    LastAck = 8,
    /// Listening (FTP data helper).
    Listen = 9,
    /// SYN+ACK seen (secure_tcp tables).
    SynAck = 10,
}

impl TcpState {
    /// Every state, in the kernel's order (the index is the state's code).
    pub const ALL: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The name ipvsadm `-Lc` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Counted in the real server's active connections (`tcp_state_active`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    pub(crate) fn from_code(code: u8) -> TcpState {
        TcpState::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(TcpState::Close)
    }
}

/// The state of a connection of either protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// A TCP connection in one of the IPVS TCP states.
    Tcp(TcpState),
    /// A UDP flow. UDP has a single state (the kernel's `IP_VS_UDP_S_NORMAL`)
    /// and no transitions, so a UDP flow keeps the inactive mark it is bound
    /// with for its whole life: ipvsadm lists UDP flows under InActConn.
    Udp,
}

/// State code of [`ConnState::Udp`] in the packed state byte.
pub(crate) const UDP_CODE: u8 = 11;

impl ConnState {
    /// Counted in the real server's active connections.
    pub fn is_active(self) -> bool {
        match self {
            ConnState::Tcp(s) => s.is_active(),
            ConnState::Udp => false,
        }
    }

    /// The name ipvsadm `-Lc` prints.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(s) => s.name(),
            ConnState::Udp => "UDP",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ConnState::Tcp(s) => s as u8,
            ConnState::Udp => UDP_CODE,
        }
    }

    pub(crate) fn from_code(code: u8) -> ConnState {
        if code == UDP_CODE {
            ConnState::Udp
        } else {
            ConnState::Tcp(TcpState::from_code(code))
        }
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The event a TCP packet is for the state machine (`tcp_state_idx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// SYN (and no RST).
    Syn = 0,
    /// FIN (and no RST or SYN).
    Fin = 1,
    /// ACK only.
    Ack = 2,
    /// RST, whatever else is set.
    Rst = 3,
}

impl TcpEvent {
    /// The kernel's priority: RST beats SYN beats FIN beats ACK; no flag at
    /// all is no event.
    pub fn from_flags(flags: TcpFlags) -> Option<TcpEvent> {
        if flags.contains(TcpFlags::RST) {
            Some(TcpEvent::Rst)
        } else if flags.contains(TcpFlags::SYN) {
            Some(TcpEvent::Syn)
        } else if flags.contains(TcpFlags::FIN) {
            Some(TcpEvent::Fin)
        } else if flags.contains(TcpFlags::ACK) {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

/// Which way a packet travels, and so which transition table applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → real server, replies seen by the director (NAT).
    Input,
    /// Real server → client (NAT replies).
    Output,
    /// Client → real server, replies bypass the director (DR, TUN).
    InputOnly,
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Row = [TcpState; 11];

// Columns: current state NO ES SS SR FW TW CL CW LA LI SA; rows: syn fin ack rst.
const INPUT: [Row; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: [Row; 4] = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: [Row; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// The next TCP state after a packet with `flags` travelling `dir`, from
/// `from` (the kernel's `set_tcp_state` without the bookkeeping).
pub fn next_tcp_state(dir: Direction, flags: TcpFlags, from: TcpState) -> TcpState {
    let Some(event) = TcpEvent::from_flags(flags) else {
        return TcpState::Close;
    };
    let table = match dir {
        Direction::Input => &INPUT,
        Direction::Output => &OUTPUT,
        Direction::InputOnly => &INPUT_ONLY,
    };
    table[event as usize][from as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_priority_is_rst_syn_fin_ack() {
        let all = TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK | TcpFlags::RST;
        assert_eq!(TcpEvent::from_flags(all), Some(TcpEvent::Rst));
        assert_eq!(
            TcpEvent::from_flags(TcpFlags::SYN | TcpFlags::ACK),
            Some(TcpEvent::Syn)
        );
        assert_eq!(
            TcpEvent::from_flags(TcpFlags::FIN | TcpFlags::ACK),
            Some(TcpEvent::Fin)
        );
        assert_eq!(TcpEvent::from_flags(TcpFlags::PSH), None);
    }

    #[test]
    fn no_flag_closes() {
        assert_eq!(
            next_tcp_state(Direction::Input, TcpFlags::NONE, TcpState::Established),
            TcpState::Close,
            "set_tcp_state: new_state defaults to CLOSE when tcp_state_idx < 0"
        );
    }

    #[test]
    fn active_states_are_tcp_state_active_table() {
        let active: Vec<_> = TcpState::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(
            active,
            [
                &TcpState::Established,
                &TcpState::SynSent,
                &TcpState::SynRecv,
                &TcpState::SynAck
            ]
        );
        assert!(!ConnState::Udp.is_active());
    }

    #[test]
    fn codes_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(
                ConnState::from_code(ConnState::Tcp(s).code()),
                ConnState::Tcp(s)
            );
        }
        assert_eq!(ConnState::from_code(ConnState::Udp.code()), ConnState::Udp);
    }
}
