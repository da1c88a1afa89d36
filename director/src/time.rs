//! Time as the dataplane core sees it: a monotonic millisecond count handed
//! in by the driver. The core never reads a clock, so every timeout and
//! expiry is tested exactly on a virtual clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the driver's monotonic clock, in milliseconds since an epoch
/// the driver chose (typically its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The epoch.
    pub const ZERO: Millis = Millis(0);

    /// Milliseconds since the epoch.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;
    fn add(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for Millis {
    type Output = Millis;
    fn sub(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5) + Duration::from_millis(7), Millis(12));
        assert_eq!(Millis(5) - Duration::from_secs(1), Millis(0));
        assert_eq!(Millis(10).saturating_since(Millis(20)), Duration::ZERO);
        assert_eq!(
            Millis(20).saturating_since(Millis(5)),
            Duration::from_millis(15)
        );
    }
}
