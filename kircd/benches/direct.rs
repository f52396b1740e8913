//! The direct path's figures (issue #12), each with its baselines in this
//! program against the same broker:
//!
//! - latency: alice's `SendMessage` → the message's `MessageAdded` on bob's
//!   stream with the direct path open, against the same over Kafka alone (a
//!   second pair, carol and dave, with the path off) and raw rdkafka
//!   produce → consume of a record of the same size, and a bare data
//!   channel between two connections in this process (the channel's own
//!   floor: what the WebRTC stack costs before kircd does anything); and
//!   the direct path's own floor: one call on the socket, two one-row
//!   PostgreSQL commits and the bare channel, since the message is stored
//!   by alice before it leaves and by bob before it is shown. Each path
//!   is measured settled (the next message once the previous one is
//!   RECEIVED: daemons idle, as between messages a person types) and back
//!   to back (the previous message's Kafka copy still on its way);
//! - opening: bob restarts; from his READY to both daemons showing the
//!   channel connected (presence over Kafka, then signalling, ICE, DTLS,
//!   SCTP);
//! - idle: alice's CPU, RSS and file descriptors with no channel open, with
//!   one, and with one to each of `KIRC_BENCH_PEERS` (20) more contacts,
//!   each a daemon of its own.
//!
//! Run with `dev/bench`. `KIRC_BENCH_MESSAGES` (1,000), `KIRC_BENCH_ROUNDS`
//! (10), `KIRC_BENCH_IDLE_SECS` (30) and `KIRC_BENCH_PEERS` change the
//! counts; `KIRC_BENCH_PERF` names a folder for a `perf` profile of each
//! idle phase.
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

use common::floor::{Rhythm, raw_latency};
use common::idle::idle;
use common::pg::{CommitRow, pg_commits};
use common::{
    KAFKA_HOPS, PEER_EVENT, Pacing, Sample, connected, count, get_status_round_trips,
    hop_breakdown, latencies, ms, send_latency, spacing, summarize, wait_connected,
};
use kirc_testkit::{Actor, Daemon, befriend};
use kircd::peers::link::LinkEvent;

/// The timing marks a message passes over the direct path, and over Kafka
/// alone, in order.
const DIRECT_HOPS: &[&str] = &[
    "send.called",
    "send.stored",
    "send.direct",
    "direct.arrived",
    "direct.checked",
    "stored",
];

async fn actor(name: &str, direct: bool) -> Actor {
    let mut actor = Actor::new(name).await;
    // The timing marks of each hop (a log line each) on top of warnings.
    actor.as_users_run_it().set("log.level", "warn,hops=trace");
    if direct {
        actor.direct_path();
    }
    actor
}

/// One-way latency of `count` messages of `size` bytes over a data channel
/// between two connections in this process, one message at a time: back to
/// back, or one every `rhythm` ([`Rhythm`]).
async fn raw_channel_latency(count: usize, size: usize, rhythm: Option<Duration>) -> Vec<Duration> {
    let mut pairs = links::Pairs::connect(1).await;
    let payload = vec![b'x'; size];
    let mut samples = Vec::with_capacity(count);
    let mut rhythm = Rhythm::new(rhythm);
    for _ in 0..count {
        rhythm.wait().await;
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

/// `count` messages from the first daemon to `to` on the second, settled
/// first (the figures a person typing sees, and the hops kept), then back to
/// back (each beside the previous one's Kafka copy).
async fn both_pacings(
    (from, to_daemon): (&Daemon, &Daemon),
    to: &str,
    count: usize,
    text: &str,
) -> (Vec<Sample>, common::Summary) {
    let settled = send_latency(from, to_daemon, to, count, text, Pacing::Settled).await;
    let back_to_back = send_latency(from, to_daemon, to, count, text, Pacing::BackToBack).await;
    (settled, summarize(latencies(&back_to_back)))
}

/// Polls `daemon` until it shows a connected channel to each of `contacts`.
async fn wait_all_connected(daemon: &Daemon, contacts: &[Actor]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = daemon.status().await;
        let open = contacts
            .iter()
            .filter(|contact| connected(&status, contact))
            .count();
        if open == contacts.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} direct paths open: {:?}",
            contacts.len(),
            status.direct_paths
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The p50 of each hop, as a table.
fn print_hops(path: &str, samples: &[Sample], (rows, complete): (Vec<(String, Duration)>, usize)) {
    println!();
    println!(
        "{path}, p50 of each hop ({complete} of {} messages with every mark):",
        samples.len()
    );
    println!();
    println!("| hop (time since the previous one) | p50 |");
    println!("|---|---|");
    for (hop, p50) in rows {
        println!("| {hop} | {} |", ms(p50));
    }
}

#[tokio::main]
async fn main() {
    let messages = count("KIRC_BENCH_MESSAGES", 1000);
    let rounds = count("KIRC_BENCH_ROUNDS", 10);
    let idle_secs = count("KIRC_BENCH_IDLE_SECS", 30) as u64;
    let peers = count("KIRC_BENCH_PEERS", 20);
    common::print_header().await;
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
    let raw = summarize(raw_latency(&alice.stack.kafka, messages, 220, None).await);
    let channel = summarize(raw_channel_latency(messages, 220, None).await);
    let (direct_samples, direct_back_to_back) =
        both_pacings((&alice_daemon, &bob_daemon), &bob.actor_id, messages, text).await;
    let first_direct = direct_samples.iter().filter(|sample| sample.direct).count();
    // The direct path's floor, measured in the same run: the call and the
    // event (one socket round trip), two one-row commits (alice's and
    // bob's), one message over a channel.
    let commit = summarize(pg_commits(&alice, messages, CommitRow::Floor, None).await);
    let call = summarize(get_status_round_trips(&alice_daemon, 0, messages, None).await);
    let floor = call.p50 + commit.p50 * 2 + channel.p50;
    // The same floor at the settled path's pace: its parts are slower after
    // an idle gap, as the settled messages' are.
    let every = spacing(&direct_samples);
    let pace = Some(every);
    let commit_paced = summarize(pg_commits(&alice, messages, CommitRow::Floor, pace).await);
    let call_paced = summarize(get_status_round_trips(&alice_daemon, 0, messages, pace).await);
    let channel_paced = summarize(raw_channel_latency(messages, 220, pace).await);
    let raw_paced = summarize(raw_latency(&alice.stack.kafka, messages, 220, pace).await);
    let floor_paced = call_paced.p50 + commit_paced.p50 * 2 + channel_paced.p50;
    let direct = summarize(latencies(&direct_samples));
    let (kafka_samples, kafka_back_to_back) = both_pacings(
        (&carol_daemon, &dave_daemon),
        &dave.actor_id,
        messages,
        text,
    )
    .await;
    let kafka = summarize(latencies(&kafka_samples));
    let direct_hops = hop_breakdown(
        &direct_samples,
        &[alice_daemon.stderr(), bob_daemon.stderr()],
        DIRECT_HOPS,
        PEER_EVENT,
    );
    let kafka_hops = hop_breakdown(
        &kafka_samples,
        &[carol_daemon.stderr(), dave_daemon.stderr()],
        KAFKA_HOPS,
        PEER_EVENT,
    );

    let one_open = idle(alice_daemon.pid(), idle_secs, "one").await;

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
    let none_open = idle(alice_daemon.pid(), idle_secs, "none").await;

    // Many contacts online at once, each its own daemon: alice holds a
    // channel to every one (within rtc.max_peers, 32 by default).
    let mut others = Vec::with_capacity(peers);
    let mut other_daemons = Vec::with_capacity(peers);
    for index in 0..peers {
        let other = actor(&format!("peer{index}"), true).await;
        let daemon = Daemon::start(&other).await;
        befriend((&alice, &alice_daemon), (&other, &daemon)).await;
        others.push(other);
        other_daemons.push(daemon);
    }
    let many = Instant::now();
    wait_all_connected(&alice_daemon, &others).await;
    let many_opened = many.elapsed();
    let many_open = idle(alice_daemon.pid(), idle_secs, "many").await;

    println!();
    println!("| figure | p50 | p99 | ratio to raw Kafka (p50) |");
    println!("|---|---|---|---|");
    let ratio = |ours: Duration| ours.as_secs_f64() / raw.p50.as_secs_f64();
    println!(
        "| SendMessage → peer's MessageAdded, direct path, settled ({first_direct} of {messages} first over it) | {} | {} | {:.2}× |",
        ms(direct.p50),
        ms(direct.p99),
        ratio(direct.p50)
    );
    println!(
        "| the same, back to back | {} | {} | {:.2}× |",
        ms(direct_back_to_back.p50),
        ms(direct_back_to_back.p99),
        ratio(direct_back_to_back.p50)
    );
    println!(
        "| SendMessage → peer's MessageAdded, Kafka path, settled | {} | {} | {:.2}× |",
        ms(kafka.p50),
        ms(kafka.p99),
        ratio(kafka.p50)
    );
    println!(
        "| the same, back to back | {} | {} | {:.2}× |",
        ms(kafka_back_to_back.p50),
        ms(kafka_back_to_back.p99),
        ratio(kafka_back_to_back.p50)
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
    println!(
        "| floor of the direct path: a GetStatus round trip ({}) + two one-row PostgreSQL commits ({} each) + the raw channel | {} | — | {:.2}× |",
        ms(call.p50),
        ms(commit.p50),
        ms(floor),
        ratio(floor)
    );
    println!(
        "| direct path ÷ its floor (p50) | {:.2}× | — | — |",
        direct.p50.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "| at the settled path's pace (a sample every {}): raw rdkafka produce → consume | {} | {} | — |",
        ms(every),
        ms(raw_paced.p50),
        ms(raw_paced.p99)
    );
    println!(
        "| at that pace: the floor (GetStatus {} + two commits {} each + the raw channel {}) | {} | — | {:.2}× |",
        ms(call_paced.p50),
        ms(commit_paced.p50),
        ms(channel_paced.p50),
        ms(floor_paced),
        floor_paced.as_secs_f64() / raw_paced.p50.as_secs_f64()
    );
    println!(
        "| direct path settled ÷ its floor at its pace (p50) | {:.2}× | — | — |",
        direct.p50.as_secs_f64() / floor_paced.as_secs_f64()
    );
    print_hops("direct path", &direct_samples, direct_hops);
    print_hops("Kafka path", &kafka_samples, kafka_hops);
    println!();
    println!("alice idle {idle_secs} s:");
    println!("- no channel open: {none_open}");
    println!("- 1 channel open: {one_open}");
    println!(
        "- {peers} channels open (the last opened {} ms after the last befriending): {many_open}",
        many_opened.as_millis()
    );
    drop((carol_daemon, dave_daemon, other_daemons));
}
