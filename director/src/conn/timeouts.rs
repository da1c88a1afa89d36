//! Per-state timeouts, settable at run time like `ipvsadm --set`.
//!
//! Defaults are the kernel's (`tcp_timeouts` in `ip_vs_proto_tcp.c`,
//! `udp_timeouts` in `ip_vs_proto_udp.c`). Every packet re-arms its
//! connection's timer to the timeout of the state it leaves the connection
//! in, so a changed timeout applies from each connection's next packet on —
//! as in IPVS, where `cp->timeout` is read from the table at each transition.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::state::{ConnState, TcpState, UDP_CODE};

/// How long a template that still controls connections waits before it
/// looks again (the kernel's `expire_later` re-arm in `ip_vs_conn_expire`).
pub const TEMPLATE_RECHECK: Duration = Duration::from_secs(60);

/// Kernel default timeouts, in seconds, by TCP state code.
const TCP_DEFAULT_SECS: [u64; 11] = [
    2,       // NONE
    15 * 60, // ESTABLISHED
    2 * 60,  // SYN_SENT
    60,      // SYN_RECV
    2 * 60,  // FIN_WAIT
    2 * 60,  // TIME_WAIT
    10,      // CLOSE
    60,      // CLOSE_WAIT
    30,      // LAST_ACK
    2 * 60,  // LISTEN
    120,     // SYNACK
];

/// Kernel default UDP timeout (`IP_VS_UDP_S_NORMAL`): 5 minutes.
const UDP_DEFAULT_SECS: u64 = 5 * 60;

/// The timeout of every connection state, shared by all workers.
#[derive(Debug)]
pub struct Timeouts {
    /// Milliseconds, indexed by state code (TCP states, then UDP).
    ms: [AtomicU64; 12],
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::new()
    }
}

impl Timeouts {
    /// The kernel defaults: NONE 2 s, ESTABLISHED 900 s, SYN_SENT 120 s,
    /// SYN_RECV 60 s, FIN_WAIT 120 s, TIME_WAIT 120 s, CLOSE 10 s,
    /// CLOSE_WAIT 60 s, LAST_ACK 30 s, LISTEN 120 s, SYNACK 120 s; UDP 300 s.
    pub fn new() -> Timeouts {
        let ms = std::array::from_fn(|i| {
            let secs = TCP_DEFAULT_SECS.get(i).copied().unwrap_or(UDP_DEFAULT_SECS);
            AtomicU64::new(secs * 1000)
        });
        Timeouts { ms }
    }

    /// The timeout of `state`.
    pub fn get(&self, state: ConnState) -> Duration {
        Duration::from_millis(self.ms_of(state.code()))
    }

    #[inline]
    pub(crate) fn ms_of(&self, code: u8) -> u64 {
        self.ms[usize::from(code.min(UDP_CODE))].load(Relaxed)
    }

    /// Set the timeout of one state (the kernel's per-state sysctl).
    pub fn set(&self, state: ConnState, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.ms[usize::from(state.code())].store(ms, Relaxed);
    }

    /// `ipvsadm --set tcp tcpfin udp`: `tcp` is the ESTABLISHED timeout,
    /// `tcpfin` the FIN_WAIT timeout, `udp` the UDP timeout; a zero leaves
    /// that value unchanged.
    pub fn set_ipvsadm(&self, tcp: Duration, tcpfin: Duration, udp: Duration) {
        for (state, d) in [
            (ConnState::Tcp(TcpState::Established), tcp),
            (ConnState::Tcp(TcpState::FinWait), tcpfin),
            (ConnState::Udp, udp),
        ] {
            if !d.is_zero() {
                self.set(state, d);
            }
        }
    }

    /// `ipvsadm -L --timeout`: the (tcp, tcpfin, udp) triple.
    pub fn ipvsadm(&self) -> (Duration, Duration, Duration) {
        (
            self.get(ConnState::Tcp(TcpState::Established)),
            self.get(ConnState::Tcp(TcpState::FinWait)),
            self.get(ConnState::Udp),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kernels() {
        let t = Timeouts::new();
        let secs = |s| t.get(ConnState::Tcp(s)).as_secs();
        assert_eq!(secs(TcpState::None), 2);
        assert_eq!(secs(TcpState::Established), 900);
        assert_eq!(secs(TcpState::SynSent), 120);
        assert_eq!(secs(TcpState::SynRecv), 60);
        assert_eq!(secs(TcpState::FinWait), 120);
        assert_eq!(secs(TcpState::TimeWait), 120);
        assert_eq!(secs(TcpState::Close), 10);
        assert_eq!(secs(TcpState::CloseWait), 60);
        assert_eq!(secs(TcpState::LastAck), 30);
        assert_eq!(secs(TcpState::Listen), 120);
        assert_eq!(secs(TcpState::SynAck), 120);
        assert_eq!(t.get(ConnState::Udp).as_secs(), 300);
    }

    #[test]
    fn ipvsadm_set_zero_leaves_unchanged() {
        let t = Timeouts::new();
        t.set_ipvsadm(
            Duration::from_secs(3600),
            Duration::ZERO,
            Duration::from_secs(10),
        );
        assert_eq!(
            t.ipvsadm(),
            (
                Duration::from_secs(3600),
                Duration::from_secs(120),
                Duration::from_secs(10)
            )
        );
    }
}
