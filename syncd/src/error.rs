//! Errors of the public API, as sentences an operator can act on.

use std::time::Duration;

/// What a handover came to, when it is safe to step down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverReport {
    /// Time spent waiting for the subscriber.
    pub waited: Duration,
    /// Subscriber's lag when the decision was taken, entries.
    pub entries_behind_at_switch: u64,
    /// Subscriber's lag when the decision was taken, ms.
    pub ms_behind_at_switch: u32,
    /// Last sequence produced when the handover began.
    pub final_sequence: u64,
    /// Highest sequence the subscriber had acked at the switch.
    pub acked_sequence: u64,
    /// True when `force` overrode a refusal, a timeout or no subscriber.
    pub forced: bool,
    /// The subscriber handed over to (node name); empty if none.
    pub peer: String,
}

/// Why a handover did not happen; the master stays master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// This node does not serve the sync stream (not master).
    #[error("this node is not the sync master")]
    NotServing,
    /// Nobody to hand over to.
    #[error("no subscriber connected")]
    NoSubscriber,
    /// The subscriber answered HandoverReady(ready = false).
    #[error("subscriber {peer} refused: {reason}")]
    Refused {
        /// Subscriber node name.
        peer: String,
        /// Its refusal_reason.
        reason: String,
    },
    /// The subscriber did not catch up in time.
    #[error("lag did not reach zero in {}: {entries_behind} entries behind", fmt_wait(*.waited))]
    LagTimeout {
        /// The bound that was reached.
        waited: Duration,
        /// Entries behind at the deadline.
        entries_behind: u64,
        /// ms behind at the deadline.
        ms_behind: u32,
    },
    /// The subscriber did not answer the Handover in time.
    #[error("subscriber {peer} did not answer the handover in {}", fmt_wait(*.waited))]
    NoAnswer {
        /// Subscriber node name.
        peer: String,
        /// The bound that was reached.
        waited: Duration,
    },
    /// The stream ended during the handover.
    #[error("subscriber {peer} disconnected during the handover")]
    Disconnected {
        /// Subscriber node name.
        peer: String,
    },
    /// Another handover is running on that stream.
    #[error("a handover is already in progress")]
    InProgress,
}

fn fmt_wait(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        let e = HandoverError::LagTimeout {
            waited: Duration::from_secs(2),
            entries_behind: 134,
            ms_behind: 50,
        };
        assert_eq!(
            e.to_string(),
            "lag did not reach zero in 2 s: 134 entries behind"
        );
        let e = HandoverError::Refused {
            peer: "dir-b".into(),
            reason: "dataplane not up".into(),
        };
        assert_eq!(e.to_string(), "subscriber dir-b refused: dataplane not up");
        assert_eq!(
            HandoverError::NoSubscriber.to_string(),
            "no subscriber connected"
        );
    }
}
