//! Soak: two daemons under a steady two-way stream with presence and typing
//! on, for `KIRC_SOAK_SECS` seconds (default 600). Both daemons' resident
//! memory, open file descriptors and threads are sampled every 10 s; after
//! the warm-up (the first fifth, at least a minute) none may grow beyond the
//! bounds below, and every message arrives once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use kirc_proto::v1 as pb;
use kirc_testkit::{Actor, Daemon, Watcher, befriend, incoming, send, wait_history};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Messages per second each way.
const RATE: u64 = 10;
/// Growth allowed from the first to the last quarter after warm-up.
const RSS_GROWTH_KIB: i64 = 8 * 1024;
const FD_GROWTH: i64 = 4;
const THREAD_GROWTH: i64 = 2;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_secs: u64,
    rss_kib: i64,
    fds: i64,
    threads: i64,
}

fn sample(pid: u32, at_secs: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> i64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    Sample {
        at_secs,
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: i64::try_from(
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count(),
        )
        .unwrap(),
    }
}

fn median(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// (first quarter, last quarter) medians of the samples after warm-up.
fn growth(samples: &[Sample], warm_up: u64, value: fn(&Sample) -> i64) -> (i64, i64) {
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.at_secs >= warm_up).collect();
    assert!(
        steady.len() >= 4,
        "too few samples after warm-up: {}",
        steady.len()
    );
    let quarter = steady.len() / 4;
    let first = median(steady[..quarter.max(1)].iter().map(|s| value(s)).collect());
    let last = median(
        steady[steady.len() - quarter.max(1)..]
            .iter()
            .map(|s| value(s))
            .collect(),
    );
    (first, last)
}

#[tokio::test]
async fn two_daemons_under_steady_traffic_do_not_grow() {
    let seconds: u64 = std::env::var("KIRC_SOAK_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(600);
    let mut alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    for actor in [&mut alice, &mut bob] {
        // Presence every second, so that it is part of the steady load; logs
        // at info, as a user runs it.
        actor
            .set("presence.heartbeat", "1s")
            .set("log.level", "info");
    }
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    let _bob_tui = Watcher::interactive(&bob_daemon.socket).await;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut next_sample = started;
    let mut samples: Vec<(Sample, Sample)> = Vec::new();
    let mut sent = 0u64;
    let mut conversation = String::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let alice_message = send(&alice_daemon, &bob.actor_id, &format!("a{sent}")).await;
        send(&bob_daemon, &alice.actor_id, &format!("b{sent}")).await;
        conversation = alice_message.conversation_id;
        if sent.is_multiple_of(RATE) {
            for (daemon, active) in [
                (&alice_daemon, sent.is_multiple_of(2 * RATE)),
                (&bob_daemon, true),
            ] {
                daemon
                    .client()
                    .await
                    .report_typing(pb::ReportTypingRequest {
                        conversation_id: conversation.clone(),
                        active,
                    })
                    .await
                    .unwrap();
            }
        }
        sent += 1;
        if Instant::now() >= next_sample {
            let at = started.elapsed().as_secs();
            samples.push((sample(alice_daemon.pid(), at), sample(bob_daemon.pid(), at)));
            next_sample += SAMPLE_EVERY;
        }
    }

    // Everything arrives, once, in order.
    for (daemon, prefix) in [(&bob_daemon, "a"), (&alice_daemon, "b")] {
        let wanted: Vec<String> = (0..sent).map(|index| format!("{prefix}{index}")).collect();
        let history = wait_history(
            daemon,
            &conversation,
            "every message",
            Duration::from_secs(120),
            |history| incoming(history).len() >= wanted.len(),
        )
        .await;
        let received = incoming(&history);
        assert_eq!(received, wanted, "every message once, in order");
    }

    let warm_up = (seconds / 5).max(60).min(seconds / 2);
    for (name, side) in [("alice", 0), ("bob", 1)] {
        let ours: Vec<Sample> = samples
            .iter()
            .map(|pair| if side == 0 { pair.0 } else { pair.1 })
            .collect();
        let rss = growth(&ours, warm_up, |s| s.rss_kib);
        let fds = growth(&ours, warm_up, |s| s.fds);
        let threads = growth(&ours, warm_up, |s| s.threads);
        eprintln!(
            "soak {name}: {seconds} s, {sent} messages each way; after {warm_up} s warm-up, first → last quarter median: RSS {} → {} KiB, fds {} → {}, threads {} → {}; peak RSS {} KiB",
            rss.0,
            rss.1,
            fds.0,
            fds.1,
            threads.0,
            threads.1,
            ours.iter().map(|s| s.rss_kib).max().unwrap_or(0)
        );
        assert!(rss.1 - rss.0 <= RSS_GROWTH_KIB, "{name}: RSS grew {rss:?}");
        assert!(fds.1 - fds.0 <= FD_GROWTH, "{name}: fds grew {fds:?}");
        assert!(
            threads.1 - threads.0 <= THREAD_GROWTH,
            "{name}: threads grew {threads:?}"
        );
    }
}
