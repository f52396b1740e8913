//! What the inbox counts and logs about records it does not accept: counters
//! by reason, redeliveries, the quarantine's fill, and a log that stays
//! bounded under a flood (the first few lines per reason, then one summary
//! per interval).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::envelope::Rejection;
use crate::hub::InboxFigures;
use crate::store::QuarantineFill;

/// Counters of the inbox, shared by its worker and `GetStatus`.
#[derive(Debug, Default)]
pub struct Rejections {
    counts: Mutex<BTreeMap<Rejection, u64>>,
    redelivered: AtomicU64,
    log_lines_suppressed: AtomicU64,
    quarantine: Mutex<QuarantineFill>,
}

impl Rejections {
    pub fn add(&self, rejection: Rejection) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(rejection)
            .or_default() += 1;
    }

    pub fn add_redelivered(&self, count: u64) {
        self.redelivered.fetch_add(count, Ordering::Relaxed);
    }

    pub fn add_suppressed(&self, count: u64) {
        self.log_lines_suppressed
            .fetch_add(count, Ordering::Relaxed);
    }

    pub fn quarantine(&self) -> QuarantineFill {
        *self
            .quarantine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_quarantine(&self, fill: QuarantineFill) {
        *self
            .quarantine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fill;
    }

    /// The counters as the status shows them.
    pub fn figures(&self) -> InboxFigures {
        InboxFigures {
            rejected: self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(rejection, count)| (rejection.reason(), *count))
                .collect(),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            quarantine: self.quarantine(),
            log_lines_suppressed: self.log_lines_suppressed.load(Ordering::Relaxed),
        }
    }
}

/// Decides which rejections get a log line of their own: per reason, the
/// first `burst` of an interval; the rest of the interval is folded into one
/// summary line when it ends. A flood of any size costs at most `burst + 1`
/// lines per reason and interval.
#[derive(Debug)]
pub struct RejectionLog {
    burst: u32,
    interval: Duration,
    windows: HashMap<Rejection, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    logged: u32,
    folded: u64,
}

/// A reason's interval that ended with lines folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rejection: Rejection,
    pub folded: u64,
    pub over: Duration,
}

impl RejectionLog {
    pub fn new(burst: u32, interval: Duration) -> Self {
        RejectionLog {
            burst,
            interval,
            windows: HashMap::new(),
        }
    }

    /// Whether this rejection gets its own line. Call [`Self::due`] first, so
    /// that an ended interval is summarised before a new one starts.
    pub fn admit(&mut self, rejection: Rejection, now: Instant) -> bool {
        let window = self.windows.entry(rejection).or_insert(Window {
            started: now,
            logged: 0,
            folded: 0,
        });
        if window.logged < self.burst {
            window.logged += 1;
            true
        } else {
            window.folded += 1;
            false
        }
    }

    /// The summaries of intervals that ended by `now`; those reasons start
    /// afresh.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let interval = self.interval;
        let mut summaries = Vec::new();
        self.windows.retain(|rejection, window| {
            let over = now.saturating_duration_since(window.started);
            if over < interval {
                return true;
            }
            if window.folded > 0 {
                summaries.push(Summary {
                    rejection: *rejection,
                    folded: window.folded,
                    over,
                });
            }
            false
        });
        summaries.sort_by_key(|summary| summary.rejection);
        summaries
    }

    /// When the next summary is due, if lines are folded.
    pub fn next_due(&self) -> Option<Instant> {
        self.windows
            .values()
            .filter(|window| window.folded > 0)
            .map(|window| window.started + self.interval)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_costs_a_burst_and_one_summary_per_interval() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut log = RejectionLog::new(3, Duration::from_secs(60));
        let admitted = (0..5_000)
            .filter(|_| log.admit(Rejection::Undecodable, start))
            .count();
        assert_eq!(admitted, 3);
        // Another reason has a burst of its own.
        assert!(log.admit(Rejection::Stale, start));
        assert_eq!(log.next_due(), Some(start + Duration::from_secs(60)));
        assert_eq!(log.due(start + 59 * second), vec![]);
        assert_eq!(
            log.due(start + 60 * second),
            vec![Summary {
                rejection: Rejection::Undecodable,
                folded: 4_997,
                over: 60 * second,
            }]
        );
        // Stale folded nothing: no summary, and nothing is due any more.
        assert_eq!(log.next_due(), None);
        // The next interval starts with a burst again.
        assert!(log.admit(Rejection::Undecodable, start + 61 * second));
    }

    #[test]
    fn quiet_reasons_are_forgotten_when_their_interval_ends() {
        let start = Instant::now();
        let mut log = RejectionLog::new(2, Duration::from_secs(10));
        assert!(log.admit(Rejection::Replay, start));
        assert_eq!(log.next_due(), None);
        assert_eq!(log.due(start + Duration::from_secs(10)), vec![]);
        assert!(log.windows.is_empty());
    }
}
