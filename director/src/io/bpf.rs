//! Classic BPF socket filters for the director's receive sockets.
//!
//! AF_PACKET copies every frame on the interface into the ring unless a
//! filter says no, and each copy costs; so each worker's socket carries a
//! small program, attached with `SO_ATTACH_FILTER`, that keeps only what the
//! dataplane handles: ARP, IPv4 to the VIPs, IPv4 from the real servers (NAT
//! replies), and VRRP (IP protocol 112). [`FilterBuilder`] assembles it.
//!
//! The program is an OR of the chosen predicates over untagged Ethernet
//! (the kernel strips an offloaded VLAN tag before the filter runs; frames
//! still carrying an 802.1Q header are not matched):
//!
//! ```text
//!   ldh [12]                      ; ethertype
//!   jeq #0x0806, 0, 1 ; ret #-1   ; ARP            (if asked for)
//!   jeq #0x0800, 1, 0 ; ret #0    ; not IPv4: drop (if any IPv4 predicate)
//!   ldb [23]                      ; IP protocol
//!   jeq #112, 0, 1    ; ret #-1   ; one pair per protocol
//!   ld  [30]                      ; IPv4 destination
//!   jeq #vip, 0, 1    ; ret #-1   ; one pair per address
//!   ld  [26]                      ; IPv4 source
//!   jeq #rip, 0, 1    ; ret #-1   ; one pair per address
//!   ret #0
//! ```
//!
//! Every match is followed by its own `ret` so that no jump is longer than
//! one instruction: cBPF jump offsets are 8 bits, and a long list of
//! addresses would otherwise need trampolines. The cost is one instruction
//! per address; the kernel's limit of 4096 instructions allows about 2000
//! addresses, which [`FilterBuilder::build`] checks.

use std::net::Ipv4Addr;

/// One cBPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// Opcodes used here (from `<linux/filter.h>`).
pub mod op {
    /// `ld [k]`: A := 32-bit word at absolute offset k (network order).
    pub const LD_W_ABS: u16 = 0x20;
    /// `ldh [k]`: A := 16-bit half word at k.
    pub const LD_H_ABS: u16 = 0x28;
    /// `ldb [k]`: A := byte at k.
    pub const LD_B_ABS: u16 = 0x30;
    /// `jeq #k, jt, jf`.
    pub const JEQ_K: u16 = 0x15;
    /// `ja k`.
    pub const JA: u16 = 0x05;
    /// `ret #k`: accept k bytes (0 = drop).
    pub const RET_K: u16 = 0x06;
}

/// The kernel's `BPF_MAXINSNS`.
pub const MAX_INSNS: usize = 4096;

/// Return value that accepts the whole frame.
const ACCEPT: u32 = u32::MAX;
const ETH_TYPE: u32 = 12;
const IP_PROTO: u32 = 14 + 9;
const IP_SRC: u32 = 14 + 12;
const IP_DST: u32 = 14 + 16;
const ETHERTYPE_ARP: u32 = 0x0806;
const ETHERTYPE_IPV4: u32 = 0x0800;

/// A filter program too long for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("BPF filter of {len} instructions exceeds the kernel's {MAX_INSNS} (too many addresses)")]
pub struct FilterTooLong {
    /// The length it would have had.
    pub len: usize,
}

/// A classic BPF program, ready for `SO_ATTACH_FILTER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    insns: Vec<SockFilter>,
}

impl Filter {
    /// A program that keeps every frame.
    pub fn accept_all() -> Filter {
        Filter {
            insns: vec![ret(ACCEPT)],
        }
    }

    /// A program that drops every frame.
    pub fn reject_all() -> Filter {
        Filter {
            insns: vec![ret(0)],
        }
    }

    /// Builds a filter from predicates.
    pub fn builder() -> FilterBuilder {
        FilterBuilder::default()
    }

    /// A program from raw instructions (for callers with their own).
    pub fn from_insns(insns: Vec<SockFilter>) -> Result<Filter, FilterTooLong> {
        if insns.len() > MAX_INSNS || insns.is_empty() {
            return Err(FilterTooLong { len: insns.len() });
        }
        Ok(Filter { insns })
    }

    /// The instructions.
    pub fn insns(&self) -> &[SockFilter] {
        &self.insns
    }
}

/// An OR of predicates over a frame; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterBuilder {
    arp: bool,
    protos: Vec<u8>,
    dst: Vec<Ipv4Addr>,
    src: Vec<Ipv4Addr>,
}

impl FilterBuilder {
    /// Keep ARP frames (who-has for the VIPs, replies from neighbours).
    pub fn arp(mut self) -> Self {
        self.arp = true;
        self
    }

    /// Keep IPv4 packets of protocol `proto` (112: VRRP).
    pub fn ip_proto(mut self, proto: u8) -> Self {
        push_unique(&mut self.protos, proto);
        self
    }

    /// Keep IPv4 packets to any of `addrs` (the VIPs).
    pub fn ipv4_to(mut self, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        for a in addrs {
            push_unique(&mut self.dst, a);
        }
        self
    }

    /// Keep IPv4 packets from any of `addrs` (NAT real servers' replies).
    pub fn ipv4_from(mut self, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        for a in addrs {
            push_unique(&mut self.src, a);
        }
        self
    }

    /// Assembles the program. With no predicate it drops everything.
    pub fn build(&self) -> Result<Filter, FilterTooLong> {
        let ipv4 = !self.protos.is_empty() || !self.dst.is_empty() || !self.src.is_empty();
        let len = 1
            + 2 * usize::from(self.arp)
            + if ipv4 {
                2 + [self.protos.len(), self.dst.len(), self.src.len()]
                    .into_iter()
                    .map(|n| if n == 0 { 0 } else { 1 + 2 * n })
                    .sum::<usize>()
            } else {
                0
            }
            + usize::from(self.arp || ipv4);
        if len > MAX_INSNS {
            return Err(FilterTooLong { len });
        }
        let mut p = Vec::with_capacity(len);
        if self.arp || ipv4 {
            p.push(load(op::LD_H_ABS, ETH_TYPE));
        }
        if self.arp {
            p.extend(accept_if(ETHERTYPE_ARP));
        }
        if ipv4 {
            p.push(jeq(ETHERTYPE_IPV4, 1, 0));
            p.push(ret(0));
            let groups: [(u16, u32, Vec<u32>); 3] = [
                (
                    op::LD_B_ABS,
                    IP_PROTO,
                    self.protos.iter().map(|&x| u32::from(x)).collect(),
                ),
                (
                    op::LD_W_ABS,
                    IP_DST,
                    self.dst.iter().map(|&a| u32::from(a)).collect(),
                ),
                (
                    op::LD_W_ABS,
                    IP_SRC,
                    self.src.iter().map(|&a| u32::from(a)).collect(),
                ),
            ];
            for (code, offset, values) in groups {
                if values.is_empty() {
                    continue;
                }
                p.push(load(code, offset));
                for v in values {
                    p.extend(accept_if(v));
                }
            }
        }
        p.push(ret(0));
        debug_assert_eq!(p.len(), len);
        Ok(Filter { insns: p })
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn load(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter {
        code: op::JEQ_K,
        jt,
        jf,
        k,
    }
}

fn ret(k: u32) -> SockFilter {
    SockFilter {
        code: op::RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `jeq #k, 0, 1; ret #ACCEPT`: accept on a match, else fall through.
fn accept_if(k: u32) -> [SockFilter; 2] {
    [jeq(k, 0, 1), ret(ACCEPT)]
}

#[cfg(test)]
pub(crate) mod interp {
    //! A reference interpreter for the subset of cBPF the builder emits
    //! (plus `ja`), with the kernel's semantics: an out-of-bounds load
    //! ends the program with 0 (drop).

    use super::{SockFilter, op};

    /// Runs `prog` on `frame`; returns the number of bytes to keep.
    pub(crate) fn run(prog: &[SockFilter], frame: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        let load = |off: u32, n: usize| -> Option<u32> {
            let off = off as usize;
            let b = frame.get(off..off + n)?;
            Some(b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
        };
        loop {
            let Some(i) = prog.get(pc) else {
                panic!("pc {pc} ran off the end of a {}-insn program", prog.len());
            };
            pc += 1;
            match i.code {
                op::LD_W_ABS | op::LD_H_ABS | op::LD_B_ABS => {
                    let n = match i.code {
                        op::LD_W_ABS => 4,
                        op::LD_H_ABS => 2,
                        _ => 1,
                    };
                    match load(i.k, n) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                op::JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                op::JA => pc += i.k as usize,
                op::RET_K => return i.k,
                other => panic!("opcode {other:#x} not supported by the test interpreter"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interp::run;
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);
    const VIP2: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 101);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 21);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&dst.octets());
        f
    }

    fn arp() -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f
    }

    fn with_ethertype(mut f: Vec<u8>, t: u16) -> Vec<u8> {
        f[12..14].copy_from_slice(&t.to_be_bytes());
        f
    }

    fn accepts(f: &Filter, frame: &[u8]) -> bool {
        run(f.insns(), frame) != 0
    }

    #[test]
    fn director_filter_keeps_arp_vip_traffic_nat_replies_and_vrrp() {
        let f = Filter::builder()
            .arp()
            .ipv4_to([VIP, VIP2])
            .ipv4_from([RIP])
            .ip_proto(112)
            .build()
            .unwrap();
        assert!(accepts(&f, &arp()));
        assert!(accepts(&f, &ipv4(CLIENT, VIP, 6)));
        assert!(accepts(&f, &ipv4(CLIENT, VIP2, 17)));
        assert!(accepts(&f, &ipv4(RIP, CLIENT, 6)), "NAT reply");
        assert!(
            accepts(
                &f,
                &ipv4(
                    Ipv4Addr::new(10, 20, 0, 2),
                    "224.0.0.18".parse().unwrap(),
                    112
                )
            ),
            "VRRP advert"
        );
        assert!(!accepts(&f, &ipv4(CLIENT, RIP, 6)), "not to a VIP");
        assert!(!accepts(&f, &ipv4(CLIENT, CLIENT, 17)));
        // The VIP's bytes in an ARP-typed frame are not an IPv4 match, and
        // an IPv6 or VLAN-tagged frame is nothing we keep.
        assert!(!accepts(&f, &with_ethertype(ipv4(CLIENT, VIP, 6), 0x86dd)));
        assert!(!accepts(&f, &with_ethertype(ipv4(CLIENT, VIP, 6), 0x8100)));
        // A runt ends in an out-of-bounds load: dropped, not matched.
        assert!(!accepts(&f, &ipv4(CLIENT, VIP, 6)[..32]));
        assert!(!accepts(&f, &[0x08]));
        // Accepting keeps the whole frame.
        assert_eq!(run(f.insns(), &arp()), u32::MAX);
    }

    #[test]
    fn each_predicate_alone() {
        let only_arp = Filter::builder().arp().build().unwrap();
        assert!(accepts(&only_arp, &arp()));
        assert!(!accepts(&only_arp, &ipv4(CLIENT, VIP, 6)));

        let only_vip = Filter::builder().ipv4_to([VIP]).build().unwrap();
        assert!(!accepts(&only_vip, &arp()));
        assert!(accepts(&only_vip, &ipv4(CLIENT, VIP, 6)));
        assert!(!accepts(&only_vip, &ipv4(VIP, CLIENT, 6)), "from the VIP");

        let only_from = Filter::builder().ipv4_from([RIP]).build().unwrap();
        assert!(accepts(&only_from, &ipv4(RIP, CLIENT, 6)));
        assert!(!accepts(&only_from, &ipv4(CLIENT, RIP, 6)));

        let only_vrrp = Filter::builder().ip_proto(112).build().unwrap();
        assert!(accepts(&only_vrrp, &ipv4(RIP, CLIENT, 112)));
        assert!(!accepts(&only_vrrp, &ipv4(RIP, CLIENT, 17)));

        let nothing = Filter::builder().build().unwrap();
        assert_eq!(nothing, Filter::reject_all());
        assert!(!accepts(&nothing, &arp()));
        assert!(accepts(&Filter::accept_all(), &[]));
    }

    #[test]
    fn duplicates_collapse_and_the_exact_program_is_as_documented() {
        let f = Filter::builder().arp().ipv4_to([VIP, VIP]).build().unwrap();
        let vip = u32::from(VIP);
        let want = [
            (op::LD_H_ABS, 0, 0, 12),
            (op::JEQ_K, 0, 1, 0x0806),
            (op::RET_K, 0, 0, u32::MAX),
            (op::JEQ_K, 1, 0, 0x0800),
            (op::RET_K, 0, 0, 0),
            (op::LD_W_ABS, 0, 0, 30),
            (op::JEQ_K, 0, 1, vip),
            (op::RET_K, 0, 0, u32::MAX),
            (op::RET_K, 0, 0, 0),
        ]
        .map(|(code, jt, jf, k)| SockFilter { code, jt, jf, k });
        assert_eq!(f.insns(), &want);
    }

    #[test]
    fn many_addresses_fit_until_the_kernel_limit() {
        let addrs = |n: u32| (0..n).map(|i| Ipv4Addr::from(0x0a00_0000 + i));
        let f = Filter::builder().ipv4_to(addrs(2000)).build().unwrap();
        assert!(f.insns().len() <= MAX_INSNS);
        // Every address matches, including the last (jumps stay short).
        for a in [0u32, 1, 1000, 1999] {
            let a = Ipv4Addr::from(0x0a00_0000 + a);
            assert!(accepts(&f, &ipv4(CLIENT, a, 6)), "{a}");
        }
        assert!(!accepts(
            &f,
            &ipv4(CLIENT, Ipv4Addr::from(0x0a00_0000 + 2000), 6)
        ));
        let err = Filter::builder().ipv4_to(addrs(2100)).build().unwrap_err();
        assert!(err.len > MAX_INSNS);
        assert!(Filter::from_insns(vec![]).is_err());
    }
}
