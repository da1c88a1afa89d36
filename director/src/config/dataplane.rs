//! `[dataplane]`: worker threads, connection-table size, tunnel TTL,
//! checksum verification and the receive ring's layout.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

use super::error::{ConfigError, Problem, Source};
use crate::conn::TableConfig;
use crate::dest::STAT_SLOTS;
use crate::forward::OuterTtl;
use crate::io::RingVersion;

/// Largest `max_connections` accepted: 2^31 entries (128 GiB of table);
/// anything above is a typo, not a plan.
pub const MAX_CONNECTIONS_LIMIT: u64 = 1 << 31;

/// `[dataplane]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataplane {
    workers: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    tun_ttl: Option<Spanned<TtlValue>>,
    verify_checksums: Option<bool>,
    rx_ring: Option<Spanned<String>>,
    fanout: Option<Spanned<String>>,
    offloads: Option<bool>,
    ring_mib: Option<Spanned<i64>>,
}

/// `tun_ttl` as written: a number, or `"inherit"`.
#[derive(Debug, Clone, Copy)]
enum TtlValue {
    Fixed(i64),
    Inherit,
}

impl<'de> Deserialize<'de> for TtlValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TtlValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TTL 1..=255, or \"inherit\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TtlValue, E> {
                Ok(TtlValue::Fixed(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TtlValue, E> {
                Ok(TtlValue::Fixed(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TtlValue, E> {
                if v == "inherit" {
                    Ok(TtlValue::Inherit)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Dataplane settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataplaneSettings {
    /// Worker threads per data interface (default: the CPUs shared out
    /// among the data interfaces, at least one each; at most
    /// [`STAT_SLOTS`] in all).
    pub workers: usize,
    /// Most connections plus persistence templates held at once
    /// (default 2^20).
    pub max_connections: usize,
    /// Outer TTL of IPIP packets (default 64).
    pub tun_ttl: OuterTtl,
    /// Verify L4 checksums of incoming packets (default true).
    pub verify_checksums: bool,
    /// The workers' receive ring: `"v2"` hands each frame over as it
    /// arrives (default), `"v3"` batches frames in blocks handed over when
    /// full or 1 ms old.
    pub rx_ring: RingVersion,
    /// How an interface's frames are spread over its workers: `"hash"`
    /// (by flow, the default) or `"cpu"` (by the CPU the frame arrived on,
    /// each worker pinned to its CPU).
    pub fanout: WorkerFanout,
    /// Keep the data interfaces' offloads (GRO, TSO/GSO, checksum) on and
    /// forward merged frames whole (default false: the daemon turns them
    /// off and sees MTU-sized frames). DR and NAT hand a merged TCP frame
    /// to the kernel whole, to be cut on the way out; TUN cuts it itself;
    /// merged UDP frames are dropped (`gso_unsupported`).
    pub offloads: bool,
    /// MiB of each worker's receive ring: what it absorbs while the worker
    /// is busy or descheduled, before the kernel drops (counted as
    /// `rx_ring_overflow`). Default 16. With `offloads`, merged frames too
    /// big for a slot wait in the socket's queue instead, up to four times
    /// this.
    pub ring_mib: u32,
}

/// Default `ring_mib`.
pub const RING_MIB_DEFAULT: u32 = 16;

/// `[dataplane] fanout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerFanout {
    /// By flow hash: a flow's frames in one direction reach one worker,
    /// in order.
    #[default]
    Hash,
    /// By the receiving CPU, worker *k* of each interface pinned to the
    /// *k*-th CPU the daemon may use: a frame is forwarded on the CPU that
    /// received it, so work that one of our sends causes (a NAT client's
    /// ACKs, the real server's next segments) wakes a worker on the same
    /// CPU instead of another CPU's.
    /// This is the per-CPU layout of multi-queue NICs with RSS, where a
    /// flow always arrives on one CPU; on veth a flow's CPU is its
    /// sender's, which can move, so a flow may briefly be on two workers.
    Cpu,
}

impl DataplaneSettings {
    /// Connection-table sizing for these settings (other fields default).
    pub fn table_config(&self) -> TableConfig {
        TableConfig {
            max_entries: self.max_connections,
            ..TableConfig::default()
        }
    }
}

impl Default for DataplaneSettings {
    fn default() -> Self {
        DataplaneSettings {
            workers: default_workers(1),
            max_connections: TableConfig::default().max_entries,
            tun_ttl: OuterTtl::default(),
            verify_checksums: true,
            rx_ring: RingVersion::default(),
            fanout: WorkerFanout::default(),
            offloads: false,
            ring_mib: RING_MIB_DEFAULT,
        }
    }
}

/// One worker thread per CPU in all, shared out among the `interfaces`
/// data interfaces (at least one each). Workers sleep in poll(2) when
/// their ring is empty, so an idle one costs nothing; under load a second
/// worker on an interface forwards while the first is inside `sendmmsg`,
/// which on veth runs the receiver's path too. Measured on the 2-CPU lab
/// bench (docs/BENCHMARKS.md): DR on one interface, 35k new connections/s
/// with two workers against 27k with one; NAT on two interfaces did best
/// with one worker each (two each: keep-alive 105k against 120k). The old
/// default, one per CPU but one on every interface, gave a 2-CPU DR
/// director a single worker and oversubscribed large NAT ones.
fn default_workers(interfaces: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / interfaces.max(1)).max(1)
}

impl RawDataplane {
    /// `interfaces`: how many data interfaces the file has. Each runs
    /// `workers` threads, and all of them share the dataplane's
    /// [`STAT_SLOTS`] counter slots: the default is cut to fit, and an
    /// explicit value that does not fit is refused here rather than when
    /// the daemon starts its threads.
    pub(crate) fn validate(
        self,
        src: &Source<'_>,
        interfaces: usize,
    ) -> Result<DataplaneSettings, ConfigError> {
        let mut s = DataplaneSettings::default();
        let max = STAT_SLOTS / interfaces.max(1);
        s.workers = default_workers(interfaces).clamp(1, max.max(1));
        if let Some(w) = self.workers {
            let n = *w.get_ref();
            s.workers = match usize::try_from(n) {
                Ok(0) => return Err(src.invalid(w.span(), Problem::ZeroWorkers)),
                Ok(n) if n <= max => n,
                _ if n < 0 => return Err(src.invalid(w.span(), Problem::ZeroWorkers)),
                _ => {
                    return Err(src.invalid(
                        w.span(),
                        Problem::TooManyWorkers {
                            workers: n,
                            interfaces,
                            max,
                        },
                    ));
                }
            };
        }
        if let Some(m) = self.max_connections {
            let n = *m.get_ref();
            s.max_connections = match u64::try_from(n) {
                Ok(v) if (1..=MAX_CONNECTIONS_LIMIT).contains(&v) => {
                    usize::try_from(v).unwrap_or(usize::MAX)
                }
                _ => {
                    return Err(src.invalid(
                        m.span(),
                        Problem::MaxConnectionsOutOfRange {
                            value: n,
                            max: MAX_CONNECTIONS_LIMIT,
                        },
                    ));
                }
            };
        }
        if let Some(t) = self.tun_ttl {
            s.tun_ttl = match *t.get_ref() {
                TtlValue::Inherit => OuterTtl::Inherit,
                TtlValue::Fixed(v) => match u8::try_from(v) {
                    Ok(ttl) if ttl >= 1 => OuterTtl::Fixed(ttl),
                    _ => return Err(src.invalid(t.span(), Problem::TunTtlOutOfRange { value: v })),
                },
            };
        }
        if let Some(v) = self.verify_checksums {
            s.verify_checksums = v;
        }
        if let Some(v) = self.offloads {
            s.offloads = v;
        }
        if let Some(m) = self.ring_mib {
            let v = *m.get_ref();
            s.ring_mib = match u32::try_from(v) {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => return Err(src.invalid(m.span(), Problem::RingMibOutOfRange { value: v })),
            };
        }
        if let Some(r) = self.rx_ring {
            s.rx_ring = one_of(
                src,
                &r,
                &[("v2", RingVersion::V2), ("v3", RingVersion::V3)],
                |value| Problem::UnknownRxRing { value },
            )?;
        }
        if let Some(f) = self.fanout {
            s.fanout = one_of(
                src,
                &f,
                &[("hash", WorkerFanout::Hash), ("cpu", WorkerFanout::Cpu)],
                |value| Problem::UnknownFanout { value },
            )?;
        }
        Ok(s)
    }
}

/// The value `options` names for the string `given`, or `unknown`'s
/// problem at its place in the file.
fn one_of<T: Copy>(
    src: &Source<'_>,
    given: &Spanned<String>,
    options: &[(&str, T)],
    unknown: impl FnOnce(String) -> Problem,
) -> Result<T, ConfigError> {
    let name = given.get_ref().as_str();
    options
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| src.invalid(given.span(), unknown(name.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_worker_count_fits_the_counter_slots_on_every_interface() {
        let src = Source {
            origin: "t.toml",
            text: "",
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for ifaces in [1, 2, 3, 16, 32] {
            let s = RawDataplane::default().validate(&src, ifaces).unwrap();
            assert!(s.workers >= 1);
            assert!(s.workers <= cpus.max(1));
            assert_eq!(s.workers, (cpus / ifaces).clamp(1, STAT_SLOTS / ifaces));
            assert!(s.workers * ifaces <= STAT_SLOTS, "{ifaces} interfaces");
        }
    }

    #[test]
    fn ring_mib_defaults_with_or_without_offloads_and_can_be_set() {
        let src = Source {
            origin: "t.toml",
            text: "",
        };
        let parse = |text: &str| -> DataplaneSettings {
            let raw: RawDataplane = toml::from_str(text).unwrap();
            raw.validate(&src, 1).unwrap()
        };
        let off = parse("");
        assert_eq!((off.offloads, off.ring_mib), (false, RING_MIB_DEFAULT));
        let on = parse("offloads = true");
        assert_eq!((on.offloads, on.ring_mib), (true, RING_MIB_DEFAULT));
        let both = parse("offloads = true\nring_mib = 8");
        assert_eq!((both.offloads, both.ring_mib), (true, 8));
        assert_eq!(parse("ring_mib = 1024").ring_mib, 1024);
    }
}
