//! The one place the driver reads time.
//!
//! The protocol core takes `now` as an argument; the tokio drivers get it
//! from [`now_us`]. It is wall-clock time (the wire carries unix µs) made
//! monotonic: a wall-clock reading taken once, plus the elapsed time of
//! tokio's monotonic clock, so a clock step on the host never makes a timer
//! fire early or a lag negative, and tests with paused tokio time see time
//! move exactly as tokio moves it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Micros;

struct Base {
    unix_us: Micros,
    mono: tokio::time::Instant,
}

static BASE: OnceLock<Base> = OnceLock::new();

#[allow(clippy::disallowed_methods)]
fn base() -> &'static Base {
    BASE.get_or_init(|| Base {
        unix_us: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
        mono: tokio::time::Instant::now(),
    })
}

/// Now, unix µs, monotonic within the process.
pub fn now_us() -> Micros {
    let b = base();
    b.unix_us
        + tokio::time::Instant::now()
            .saturating_duration_since(b.mono)
            .as_micros() as u64
}

/// The tokio instant corresponding to `at` (for `sleep_until`).
pub fn instant_at(at: Micros) -> tokio::time::Instant {
    let b = base();
    b.mono + Duration::from_micros(at.saturating_sub(b.unix_us))
}

/// A unix time in µs as a `SystemTime` (for status structs).
pub fn system_time(at: Micros) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(at)
}
