//! The WebRTC connections themselves, in one process, on loopback: what one
//! costs while open and whether anything stays behind once it is closed.
//! The crate has had leaks (Arc cycles, sockets left open) in earlier
//! lines, so a connection opened and closed 200 times must leave the
//! process's memory and file descriptors where they were. One test in its
//! own binary: nothing else runs in the process while it measures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/links.rs"]
mod links;

use std::time::{Duration, Instant};

use links::Pairs;

const CYCLES: usize = 200;
const OPEN_AT_ONCE: usize = 20;
/// Cycles before the baseline is taken: the runtime, the allocator's arenas
/// and the crate's lazily built state settle in the first ones.
const WARM_UP: usize = 20;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The connections' sockets and tasks end after `close` returns; waits
/// (by looking, not sleeping a guess) until the fds are back to `baseline`
/// or `within` passes, and returns the count.
async fn fds_settle(baseline: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let fds = open_fds();
        if fds <= baseline || Instant::now() >= deadline {
            return fds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_and_closed_many_times_leave_nothing_behind() {
    let before_any = (rss_kib(), open_fds());
    let started = Instant::now();
    let mut baseline = None;
    for cycle in 0..CYCLES {
        if cycle == WARM_UP {
            let fds = fds_settle(before_any.1, Duration::from_secs(5)).await;
            baseline = Some((rss_kib(), fds));
        }
        Pairs::connect(1).await.close().await;
    }
    let (rss_base, fds_base) = baseline.unwrap();
    let fds_after = fds_settle(fds_base, Duration::from_secs(5)).await;
    let rss_after = rss_kib();
    let per_cycle = started.elapsed() / u32::try_from(CYCLES).unwrap();
    println!(
        "{CYCLES} cycles ({per_cycle:?} each): RSS {} KiB at start, {rss_base} KiB after {WARM_UP}, {rss_after} KiB after {CYCLES}; fds {} / {fds_base} / {fds_after}",
        before_any.0, before_any.1
    );
    assert_eq!(
        fds_after, fds_base,
        "every socket of a closed connection is closed"
    );
    // One connection's state is a few hundred KiB (its agent, DTLS and SCTP
    // buffers); a leak of even a tenth of that per cycle would add more
    // than 4 MiB over the 180 measured cycles.
    assert!(
        rss_after <= rss_base + 4 * 1024,
        "RSS grew from {rss_base} KiB to {rss_after} KiB over {} cycles",
        CYCLES - WARM_UP
    );

    // Twenty at once (both ends of each in this process: forty links).
    let pairs = Pairs::connect(OPEN_AT_ONCE).await;
    let (rss_open, fds_open) = (rss_kib(), open_fds());
    println!(
        "{OPEN_AT_ONCE} pairs open: RSS +{} KiB, fds +{}",
        rss_open.saturating_sub(rss_after),
        fds_open - fds_after
    );
    // Per link: its UDP socket(s) on the one bind address, and no more.
    let per_link = (fds_open - fds_after) as f64 / (2 * OPEN_AT_ONCE) as f64;
    assert!(per_link <= 2.0, "{per_link} fds per open link");
    assert!(
        rss_open <= rss_after + 2 * u64::try_from(OPEN_AT_ONCE).unwrap() * 1024,
        "RSS {rss_after} KiB → {rss_open} KiB for {OPEN_AT_ONCE} pairs: over 1 MiB per link"
    );
    pairs.close().await;
    assert_eq!(fds_settle(fds_base, Duration::from_secs(5)).await, fds_base);
}
