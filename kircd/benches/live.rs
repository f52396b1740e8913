//! Issue #5's figures, each with a baseline from the same run:
//!
//! - typing indicator latency: alice's `ReportTyping` → bob's
//!   `PeerPresenceChanged(typing)` event, over both actors' Kafka topics,
//!   against raw rdkafka produce → consume on the same broker;
//! - presence change propagation: alice's `SetPresence` → bob's event, same
//!   baseline;
//! - the budget pacer's accuracy: bytes per second achieved by a sender
//!   pushing as fast as it can, against the budget.
//!
//! Run with `dev/bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::floor::raw_latency;
use common::{ms, summarize};
use futures::StreamExt;
use kirc_proto::v1::{self as pb, PresenceState, event::Kind};
use kirc_testkit::{Actor, Daemon, Watcher, befriend};
use kircd::backends::traffic::{Budgets, Priority};

const SAMPLES: usize = 200;
/// About the size of a typing or presence envelope.
const RAW_RECORD_BYTES: usize = 180;

/// Waits on `events` for alice's presence at bob to satisfy `condition`.
async fn until(
    events: &mut tonic::Streaming<pb::Event>,
    alice: &str,
    condition: impl Fn(&pb::PeerPresence) -> bool,
) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("no event within 30 s")
            .unwrap()
            .unwrap();
        if let Some(Kind::PeerPresenceChanged(presence)) = &event.kind
            && presence.actor_id == alice
            && condition(presence)
        {
            return;
        }
    }
}

#[tokio::main]
async fn main() {
    common::print_header().await;
    let mut alice = Actor::new("alice").await;
    alice.as_users_run_it();
    let mut bob = Actor::new("bob").await;
    bob.as_users_run_it();
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    let mut bob_events = bob_daemon
        .client()
        .await
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let conversation = bob_daemon
        .watch()
        .await
        .wait_for("the conversation", Duration::from_secs(30), |view| {
            !view.conversations.is_empty()
        })
        .await
        .conversations[0]
        .id
        .clone();
    let mut alice_client = alice_daemon.client().await;

    // Typing: start, seen; stop, seen; again.
    let mut typing = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let sent = alice_client
            .report_typing(pb::ReportTypingRequest {
                conversation_id: conversation.clone(),
                active: true,
            })
            .await
            .unwrap()
            .into_inner()
            .sent;
        assert!(sent);
        until(&mut bob_events, &alice.actor_id, |presence| presence.typing).await;
        typing.push(start.elapsed());
        alice_client
            .report_typing(pb::ReportTypingRequest {
                conversation_id: conversation.clone(),
                active: false,
            })
            .await
            .unwrap();
        until(&mut bob_events, &alice.actor_id, |presence| {
            !presence.typing
        })
        .await;
    }

    // Presence: away, seen; back, seen.
    let mut presence = Vec::with_capacity(SAMPLES);
    for index in 0..SAMPLES {
        let (state, text) = if index % 2 == 0 {
            (PresenceState::Away, format!("away {index}"))
        } else {
            (PresenceState::Online, String::new())
        };
        let start = Instant::now();
        alice_client
            .set_presence(pb::SetPresenceRequest {
                state: state as i32,
                text: text.clone(),
            })
            .await
            .unwrap();
        until(&mut bob_events, &alice.actor_id, |seen| {
            seen.state == state as i32 && seen.text == text
        })
        .await;
        presence.push(start.elapsed());
    }
    let raw = summarize(raw_latency(&alice.stack.kafka, SAMPLES, RAW_RECORD_BYTES, None).await);
    assert!(bob_daemon.stop().await.success());
    assert!(alice_daemon.stop().await.success());

    // The pacer, in process: a sender pushing 200-byte records as fast as it
    // can for 5 s against budgets of 10 KB/s to 1 MB/s.
    let mut pacer_rows = Vec::new();
    for budget in [10_000u64, 100_000, 1_000_000] {
        let budgets = Budgets::new(budget);
        let start = Instant::now();
        let mut bytes = 0u64;
        while start.elapsed() < Duration::from_secs(5) {
            budgets.acquire("bench", 200, Priority::Chat).await;
            bytes += 200;
        }
        let rate = bytes as f64 / start.elapsed().as_secs_f64();
        pacer_rows.push((budget, rate));
    }

    let typing = summarize(typing);
    let presence = summarize(presence);
    println!();
    println!(
        "| figure | kircd p50 | kircd p99 | baseline p50 | baseline p99 | ratio (p50) | goal |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| typing indicator, alice's ReportTyping → bob's event ({SAMPLES}) vs raw produce → consume | {} | {} | {} | {} | {:.1}× | p50 ≤ 20 ms |",
        ms(typing.p50),
        ms(typing.p99),
        ms(raw.p50),
        ms(raw.p99),
        typing.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
    println!(
        "| presence change, alice's SetPresence → bob's event ({SAMPLES}) vs raw produce → consume | {} | {} | {} | {} | {:.1}× | — |",
        ms(presence.p50),
        ms(presence.p99),
        ms(raw.p50),
        ms(raw.p99),
        presence.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
    println!();
    println!("| budget (B/s) | achieved (B/s) over 5 s | achieved / budget |");
    println!("|---|---|---|");
    for (budget, rate) in pacer_rows {
        println!("| {budget} | {rate:.0} | {:.3} |", rate / budget as f64);
    }
}
