//! Lag figures, computed by the master on its own clock (sync.proto, LAG):
//! entries behind and ms behind now, and a window of apply-latency samples
//! (push of a batch's first event to the ack that covers it) for p50/p99.

use std::collections::VecDeque;

use crate::Micros;

/// Lag of one subscriber now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Events (and snapshot entries) the subscriber has not applied.
    pub entries_behind: u64,
    /// Age of the oldest unacked batch (or snapshot), ms; 0 when caught up.
    pub ms_behind: u32,
}

/// Recent latency samples, µs, over a time window.
#[derive(Debug, Clone)]
pub struct LagWindow {
    window_us: u64,
    max_samples: usize,
    samples: VecDeque<(Micros, u64)>,
}

impl LagWindow {
    /// A window of `window_us`, at most `max_samples` kept.
    pub fn new(window_us: u64, max_samples: usize) -> Self {
        Self {
            window_us,
            max_samples,
            samples: VecDeque::new(),
        }
    }

    /// Records a latency observed at `now`.
    pub fn record(&mut self, now: Micros, latency_us: u64) {
        if self.samples.len() >= self.max_samples {
            self.samples.pop_front();
        }
        self.samples.push_back((now, latency_us));
        self.expire(now);
    }

    fn expire(&mut self, now: Micros) {
        while let Some(&(t, _)) = self.samples.front() {
            if now.saturating_sub(t) > self.window_us {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The `q` quantile (0.0..=1.0) of the samples, µs; 0 without samples.
    pub fn quantile(&self, q: f64) -> u64 {
        let mut v: Vec<u64> = self.samples.iter().map(|&(_, l)| l).collect();
        if v.is_empty() {
            return 0;
        }
        v.sort_unstable();
        let idx = ((v.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        v[idx]
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_window() {
        let mut w = LagWindow::new(1_000_000, 1000);
        for i in 1..=100 {
            w.record(i, i * 10);
        }
        assert_eq!(w.quantile(0.5), 510);
        assert_eq!(w.quantile(0.99), 990);
        w.record(2_000_000, 7);
        assert_eq!(w.len(), 1, "samples older than the window are dropped");
        assert_eq!(w.quantile(0.99), 7);
    }
}
