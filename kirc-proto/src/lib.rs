//! The K-IRC protocol crate: generated types for the kircd daemon API
//! (`kirc.v1`, gRPC over a Unix socket) and the one client connector that every
//! local tool uses to reach the daemon.

pub mod v1 {
    //! The daemon API, package `kirc.v1`.
    #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
    tonic::include_proto!("kirc.v1");
}

pub mod wire {
    //! The actor-to-actor wire format, package `kirc.wire.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
        tonic::include_proto!("kirc.wire.v1");
    }
}

mod client;
mod view;

pub use client::{ConnectError, DaemonClient, connect, default_runtime_dir, default_socket_path};

/// The socket API version this crate speaks; bumped with each new package
/// (`kirc.v2`, …). kircd reports it in `Status.api_version`.
pub const API_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch, the time unit of the API.
pub fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub use view::DaemonView;

/// The inbox's rejection counters as people read them: "stale 2, replay 1".
/// `kircd status` and kirc-tui show the same line.
pub fn rejection_summary(counts: &[v1::RejectionCount]) -> String {
    counts
        .iter()
        .map(|count| format!("{} {}", count.reason, count.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A contact's direct path as people read it: "connected via host, rtt
/// 0.4 ms", "failed (reason)". `kircd status` and kirc-tui show the same.
pub fn direct_path_summary(path: &v1::DirectPath) -> String {
    let mut text = path
        .state()
        .as_str_name()
        .trim_start_matches("DIRECT_PATH_STATE_")
        .to_lowercase();
    if !path.route.is_empty() {
        text.push_str(&format!(" via {}", path.route));
    }
    if path.round_trip_us > 0 {
        // Whole microseconds shown as milliseconds with one decimal.
        let tenths = path.round_trip_us / 100;
        text.push_str(&format!(", rtt {}.{} ms", tenths / 10, tenths % 10));
    }
    if !path.reason.is_empty() {
        text.push_str(&format!(" ({})", path.reason));
    }
    text
}

/// A byte count as people read it, in binary units with three significant
/// digits: "512 B", "2.00 KiB", "48.8 MiB", "1.50 GiB". kircd's history
/// lines and kirc-tui's progress use the same.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_read_as_reason_and_count() {
        let counts = [
            v1::RejectionCount {
                reason: "stale".into(),
                count: 2,
            },
            v1::RejectionCount {
                reason: "replay".into(),
                count: 1,
            },
        ];
        assert_eq!(rejection_summary(&counts), "stale 2, replay 1");
        assert_eq!(rejection_summary(&[]), "");
    }

    #[test]
    fn byte_counts_read_with_three_significant_digits() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (50 * 1000 * 1000, "47.7 MiB"),
            (100 * 1024 * 1024, "100 MiB"),
            (3 * 1024 * 1024 * 1024 / 2, "1.50 GiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }
}
