//! The daemon's clock: milliseconds on the monotonic clock since start.
//! The one place in the crate that reads the time; everything else is
//! handed `Millis`.

use std::sync::Arc;
use std::time::Instant;

use crate::time::Millis;

/// A monotonic clock started when the daemon started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock reading zero now.
    #[allow(clippy::disallowed_methods)] // the driver owns the clock
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since start.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The clock as a shareable function (for the control API).
    pub fn as_fn(self) -> Arc<dyn Fn() -> Millis + Send + Sync> {
        Arc::new(move || self.now())
    }
}

/// Wall-clock time, unix milliseconds: only for timestamps shown to
/// operators (transition times), never for timers.
#[allow(clippy::disallowed_methods)] // the driver owns the clock
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
