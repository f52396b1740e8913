//! The direct path's figures (issue #12), each with its baselines in this
//! program against the same broker:
//!
//! - latency: alice's `SendMessage` → the message's `MessageAdded` on bob's
//!   stream with the direct path open, against the same over Kafka alone (a
//!   second pair, carol and dave, with the path off) and raw rdkafka
//!   produce → consume of a record of the same size, and a bare data
//!   channel between two connections in this process (the channel's own
//!   floor: what the WebRTC stack costs before kircd does anything);
//! - opening: bob restarts; from his READY to both daemons showing the
//!   channel connected (presence over Kafka, then signalling, ICE, DTLS,
//!   SCTP);
//! - idle: alice's CPU and RSS with the channel open and without it.
//!
//! Run with `dev/bench`. `KIRC_BENCH_MESSAGES` (1,000), `KIRC_BENCH_ROUNDS`
//! (10) and `KIRC_BENCH_IDLE_SECS` (30) change the counts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;
#[path = "../tests/support/links.rs"]
mod links;

use std::time::{Duration, Instant};

use common::{count, cpu_ticks, ms, proc_field, raw_latency, send_latency, summarize};
use kirc_proto::v1::{self as pb, DirectPathState};
use kirc_testkit::{Actor, Daemon, befriend, bin};
use kircd::peers::link::LinkEvent;

async fn actor(name: &str, direct: bool) -> Actor {
    let mut actor = Actor::new(name).await;
    actor.set("log.level", "warn");
    if direct {
        actor.direct_path();
    }
    actor
}

fn connected(status: &pb::Status, contact: &Actor) -> bool {
    status.direct_paths.iter().any(|path| {
        path.actor_id == contact.actor_id && path.state == DirectPathState::Connected as i32
    })
}

/// Polls both daemons until each shows the channel to the other connected.
async fn wait_connected(a: (&Actor, &Daemon), b: (&Actor, &Daemon)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (at_a, at_b) = (a.1.status().await, b.1.status().await);
        if connected(&at_a, b.0) && connected(&at_b, a.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the direct path did not open: {:?} / {:?}",
            at_a.direct_paths,
            at_b.direct_paths
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One-way latency of `count` messages of `size` bytes over a data channel
/// between two connections in this process, one message at a time.
async fn raw_channel_latency(count: usize, size: usize) -> Vec<Duration> {
    let mut pairs = links::Pairs::connect(1).await;
    let payload = vec![b'x'; size];
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        pairs.links[0].0.send(&payload).await.unwrap();
        loop {
            if let (1, LinkEvent::Message(_)) = pairs.events.recv().await.unwrap() {
                break;
            }
        }
        samples.push(sent.elapsed());
    }
    pairs.close().await;
    samples
}

/// CPU (% of a core) and RSS (MiB) of `pid` over `secs` of idling.
async fn idle(pid: u32, secs: u64) -> (f64, f64) {
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let ticks = cpu_ticks(pid) - before;
    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    let cpu = ticks as f64 / ticks_per_second / secs as f64 * 100.0;
    let rss = proc_field(pid, "status", "VmRSS:") as f64 / 1024.0;
    (cpu, rss)
}

#[tokio::main]
async fn main() {
    let messages = count("KIRC_BENCH_MESSAGES", 1000);
    let rounds = count("KIRC_BENCH_ROUNDS", 10);
    let idle_secs = count("KIRC_BENCH_IDLE_SECS", 30) as u64;
    println!(
        "kircd {} at {}",
        env!("CARGO_PKG_VERSION"),
        bin("kircd").display()
    );
    let alice = actor("alice", true).await;
    let bob = actor("bob", true).await;
    let carol = actor("carol", false).await;
    let dave = actor("dave", false).await;
    let alice_daemon = Daemon::start(&alice).await;
    let mut bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    let dave_daemon = Daemon::start(&dave).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    befriend((&carol, &carol_daemon), (&dave, &dave_daemon)).await;
    wait_connected((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let text = "a typical chat line of about sixty bytes, give or take a few";
    // The sealed envelope of such a line is about 220 bytes.
    let raw = summarize(raw_latency(&alice.stack.kafka, messages, 220).await);
    let channel = summarize(raw_channel_latency(messages, 220).await);
    let (samples, first_direct) =
        send_latency(&alice_daemon, &bob_daemon, &bob.actor_id, messages, text).await;
    let direct = summarize(samples);
    let (samples, _) =
        send_latency(&carol_daemon, &dave_daemon, &dave.actor_id, messages, text).await;
    let kafka = summarize(samples);

    let (cpu_open, rss_open) = idle(alice_daemon.pid(), idle_secs).await;

    let mut openings = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        assert!(bob_daemon.stop().await.success());
        // Alice sees bob go (his "offline"), so the next opening is a new one.
        let deadline = Instant::now() + Duration::from_secs(30);
        while connected(&alice_daemon.status().await, &bob) {
            assert!(Instant::now() < deadline, "alice still shows bob connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bob_daemon = Daemon::start(&bob).await;
        let ready = Instant::now();
        wait_connected((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
        openings.push(ready.elapsed());
    }
    let opening = summarize(openings);

    assert!(bob_daemon.stop().await.success());
    while connected(&alice_daemon.status().await, &bob) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu_closed, rss_closed) = idle(alice_daemon.pid(), idle_secs).await;

    println!();
    println!("| figure | p50 | p99 | ratio to raw Kafka (p50) |");
    println!("|---|---|---|---|");
    let ratio = |ours: Duration| ours.as_secs_f64() / raw.p50.as_secs_f64();
    println!(
        "| SendMessage → peer's MessageAdded, direct path ({first_direct} of {messages} first over it) | {} | {} | {:.2}× |",
        ms(direct.p50),
        ms(direct.p99),
        ratio(direct.p50)
    );
    println!(
        "| SendMessage → peer's MessageAdded, Kafka path | {} | {} | {:.2}× |",
        ms(kafka.p50),
        ms(kafka.p99),
        ratio(kafka.p50)
    );
    println!(
        "| raw rdkafka produce → consume, 220 B | {} | {} | 1× |",
        ms(raw.p50),
        ms(raw.p99)
    );
    println!(
        "| raw WebRTC data channel, two connections in one process, 220 B | {} | {} | {:.2}× |",
        ms(channel.p50),
        ms(channel.p99),
        ratio(channel.p50)
    );
    println!(
        "| peer's READY → channel open on both sides ({rounds} restarts) | {} | {} | — |",
        ms(opening.p50),
        ms(opening.p99)
    );
    println!();
    println!(
        "alice idle {idle_secs} s: 1 channel open: CPU {cpu_open:.3} % of a core, RSS {rss_open:.1} MiB; none: CPU {cpu_closed:.3} %, RSS {rss_closed:.1} MiB"
    );
    drop((carol_daemon, dave_daemon));
}
