//! Timing marks along a message's way, for the benchmarks: each names the
//! hop a message just passed and the wall-clock time, so that the marks of
//! two daemons on one machine can be lined up. They are trace events of the
//! target `hops`, off unless the log filter names it (`warn,hops=trace`),
//! and then cost one clock read and one log line each.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// Whether marks are being written.
pub fn enabled() -> bool {
    tracing::enabled!(target: "hops", tracing::Level::TRACE)
}

/// The time now, if marks are being written: for a hop whose message id is
/// known only later.
pub fn now() -> Option<SystemTime> {
    enabled().then(SystemTime::now)
}

/// Message `id` passed `hop` now.
pub fn mark(hop: &'static str, id: Uuid) {
    if enabled() {
        mark_at(hop, id, Some(SystemTime::now()));
    }
}

/// Message `id` passed `hop` at `at` (from [`now`]).
pub fn mark_at(hop: &'static str, id: Uuid, at: Option<SystemTime>) {
    let Some(at) = at else {
        return;
    };
    let micros = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    // One fixed shape, read by the benchmarks: "hop <name> <id> <µs>".
    tracing::trace!(target: "hops", "hop {hop} {id} {micros}");
}

/// A mark as a benchmark reads it back from a daemon's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub hop: String,
    pub id: Uuid,
    /// Microseconds since the epoch.
    pub at_micros: u128,
}

/// The marks in a daemon's log text, in their order.
pub fn parse(log: &str) -> Vec<Mark> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(" hop ")? + 5..];
            let mut words = rest.split_whitespace();
            Some(Mark {
                hop: words.next()?.to_owned(),
                id: words.next()?.parse().ok()?,
                at_micros: words.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_from_a_log_line() {
        let id = Uuid::from_u128(7);
        let log = format!(
            "2026-12-03T00:00:00.000001Z TRACE hop send.stored {id} 1764720000000123\n\
             2026-12-03T00:00:00.000002Z  WARN something else entirely\n"
        );
        assert_eq!(
            parse(&log),
            vec![Mark {
                hop: String::from("send.stored"),
                id,
                at_micros: 1_764_720_000_000_123,
            }]
        );
    }
}
