//! Presence, typing, keep-warm, sessions, the events channel and the traffic
//! budget, with two real kircd on the local stack (the inbound rate limit is
//! in `rate.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kirc_proto::DaemonView;
use kirc_proto::v1::{self as pb, PresenceState};
use kirc_testkit::{Actor, Daemon, Watcher, befriend, history_all, send};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};

const WAIT: Duration = Duration::from_secs(30);

/// An actor with presence on a short clock: heartbeats every 400 ms (so
/// contacts count it offline 1.2 s after it vanishes), idle after 2 s.
async fn quick(name: &str) -> Actor {
    let mut actor = Actor::new(name).await;
    actor
        .set("presence.heartbeat", "400ms")
        .set("presence.idle", "2s");
    actor
}

fn presence_of(view: &DaemonView, actor: &Actor) -> (i32, String, bool) {
    view.presence_of(&actor.actor_id)
        .map(|presence| (presence.state, presence.text.clone(), presence.typing))
        .unwrap_or((PresenceState::Unknown as i32, String::new(), false))
}

fn is(state: PresenceState) -> impl Fn((i32, String, bool)) -> bool {
    move |(current, _, _)| current == state as i32
}

#[tokio::test]
async fn bob_sees_alice_online_away_idle_away_explicit_offline_and_back() {
    let alice = quick("alice").await;
    let bob = quick("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;

    // No kirc-tui attached to alice: away.
    bob_watch
        .wait_for("alice away: no client attached", WAIT, |view| {
            is(PresenceState::Away)(presence_of(view, &alice))
        })
        .await;
    // A TUI attaches: online.
    let alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    bob_watch
        .wait_for("alice online", WAIT, |view| {
            is(PresenceState::Online)(presence_of(view, &alice))
        })
        .await;
    // Nobody types for the idle time: away, and her own status says why.
    let mut alice_watch = alice_daemon.watch().await;
    bob_watch
        .wait_for("alice away: idle", WAIT, |view| {
            is(PresenceState::Away)(presence_of(view, &alice))
        })
        .await;
    alice_watch
        .wait_until("alice's own presence: idle", WAIT, |status| {
            status
                .presence
                .as_ref()
                .is_some_and(|presence| presence.reason == "idle")
        })
        .await;
    // A key pressed: online again.
    let mut alice_client = alice_daemon.client().await;
    alice_client
        .report_activity(pb::ReportActivityRequest {})
        .await
        .unwrap();
    bob_watch
        .wait_for("alice online after activity", WAIT, |view| {
            is(PresenceState::Online)(presence_of(view, &alice))
        })
        .await;
    // /away with a text, then /back.
    let set = alice_client
        .set_presence(pb::SetPresenceRequest {
            state: PresenceState::Away as i32,
            text: "at lunch".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.presence.unwrap().reason, "explicit");
    bob_watch
        .wait_for("alice away: at lunch", WAIT, |view| {
            presence_of(view, &alice)
                == (PresenceState::Away as i32, String::from("at lunch"), false)
        })
        .await;
    alice_client
        .set_presence(pb::SetPresenceRequest {
            state: PresenceState::Online as i32,
            text: String::new(),
        })
        .await
        .unwrap();
    bob_watch
        .wait_for("alice back", WAIT, |view| {
            is(PresenceState::Online)(presence_of(view, &alice))
        })
        .await;

    // alice's kircd dies without a word: the TTL makes her offline.
    drop(alice_tui);
    let mut alice_daemon = alice_daemon;
    alice_daemon.signal(rustix::process::Signal::KILL);
    alice_daemon.wait().await;
    let died = Instant::now();
    bob_watch
        .wait_for("alice offline by TTL", WAIT, |view| {
            is(PresenceState::Offline)(presence_of(view, &alice))
        })
        .await;
    assert!(
        died.elapsed() < Duration::from_secs(10),
        "offline after {:?}",
        died.elapsed()
    );

    // She comes back.
    let alice_daemon = Daemon::start(&alice).await;
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    bob_watch
        .wait_for("alice online again", WAIT, |view| {
            is(PresenceState::Online)(presence_of(view, &alice))
        })
        .await;
}

#[tokio::test]
async fn typing_shows_stops_on_send_and_expires_by_itself_when_the_stop_is_lost() {
    // The default presence heartbeat, so that alice's presence outlives her
    // typing indicator: what expires here is the indicator itself.
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;
    let conversation = bob_watch
        .wait_for("the conversation", WAIT, |view| {
            !view.conversations.is_empty()
        })
        .await
        .conversations[0]
        .id
        .clone();
    let mut alice_client = alice_daemon.client().await;
    // Whether alice's daemon sent the report on (false: folded into the last).
    let mut report_typing = async |active: bool| {
        alice_client
            .report_typing(pb::ReportTypingRequest {
                conversation_id: conversation.clone(),
                active,
            })
            .await
            .unwrap()
            .into_inner()
            .sent
    };

    let started = Instant::now();
    assert!(report_typing(true).await);
    bob_watch
        .wait_for("alice typing", WAIT, |view| presence_of(view, &alice).2)
        .await;
    let shown_after = started.elapsed();
    assert!(
        shown_after < Duration::from_secs(2),
        "typing shown after {shown_after:?}"
    );
    // Within 3 s a second "typing" is folded into the first.
    assert!(!report_typing(true).await);

    // She sends: the TUI reports the stop; the indicator goes.
    send(&alice_daemon, &bob.actor_id, "done typing").await;
    assert!(report_typing(false).await);
    bob_watch
        .wait_for("alice stopped typing", WAIT, |view| {
            !presence_of(view, &alice).2
        })
        .await;

    // She types again and her daemon dies before any stop: the indicator
    // expires by itself (Valkey TTL, about 6 s).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(report_typing(true).await);
    bob_watch
        .wait_for("alice typing again", WAIT, |view| {
            presence_of(view, &alice).2
        })
        .await;
    let mut alice_daemon = alice_daemon;
    alice_daemon.signal(rustix::process::Signal::KILL);
    alice_daemon.wait().await;
    let lost = Instant::now();
    bob_watch
        .wait_for("the indicator expired", WAIT, |view| {
            !presence_of(view, &alice).2
        })
        .await;
    let expired_after = lost.elapsed();
    assert!(
        expired_after >= Duration::from_secs(3) && expired_after < Duration::from_secs(12),
        "expired after {expired_after:?}"
    );
}

#[tokio::test]
async fn keep_warm_heartbeats_are_produced_and_consumed_and_a_day_is_refused() {
    let mut actor = Actor::new("warm").await;
    actor.set("kafka.keep_warm_interval", "1s");
    let daemon = Daemon::start(&actor).await;
    let mut watch = daemon.watch().await;
    let first = watch
        .wait_until("a heartbeat consumed", WAIT, |status| {
            status.heartbeat_consumed_unix_ms > 0
        })
        .await;
    assert!(first.heartbeat_produced_unix_ms > 0);
    // (The inbox may see a heartbeat before its producer sees the ack.)
    watch
        .wait_until("a later heartbeat produced and consumed", WAIT, |status| {
            status.heartbeat_consumed_unix_ms > first.heartbeat_consumed_unix_ms
                && status.heartbeat_produced_unix_ms > first.heartbeat_produced_unix_ms
        })
        .await;
    let output = actor.kircd().arg("status").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("keep-warm"), "{text}");
    let output = actor.kircd().arg("doctor").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("last keep-warm heartbeat"), "{text}");
    assert!(daemon.stop().await.success());

    actor.set("kafka.keep_warm_interval", "24h");
    let output = actor.kircd().arg("run").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("invalid `kafka.keep_warm_interval`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sessions_are_kept_in_valkey_and_events_are_published() {
    let actor = Actor::new("session").await;
    let daemon = Daemon::start(&actor).await;
    let mut client = daemon.client().await;
    let empty = client
        .get_session(pb::GetSessionRequest {
            name: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.drafts.is_empty() && empty.open_conversation.is_empty());
    let mut drafts = std::collections::HashMap::new();
    drafts.insert("conv-1".to_owned(), "half a thought".to_owned());
    client
        .save_session(pb::Session {
            name: "default".into(),
            open_conversation: "conv-1".into(),
            drafts: drafts.clone(),
        })
        .await
        .unwrap();
    let kept = client
        .get_session(pb::GetSessionRequest {
            name: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.open_conversation, "conv-1");
    assert_eq!(kept.drafts, drafts);

    // The events channel carries every event as JSON with the unread total.
    let valkey = redis::Client::open(format!("{}/0", actor.stack.valkey)).unwrap();
    let mut pubsub = valkey.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}events", actor.topic_prefix))
        .await
        .unwrap();
    let mut messages = pubsub.into_on_message();
    client
        .set_presence(pb::SetPresenceRequest {
            state: PresenceState::Away as i32,
            text: "testing".into(),
        })
        .await
        .unwrap();
    let line: String = tokio::time::timeout(WAIT, messages.next())
        .await
        .unwrap()
        .unwrap()
        .get_payload()
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(event["seq"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(event["unread"], 0, "{line}");
}

/// Bytes per whole second of record timestamps on `topic` (value + key),
/// reading until `count` records were seen.
async fn bytes_per_second(bootstrap: &str, topic: &str, count: usize) -> BTreeMap<i64, u64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("measure-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seconds: BTreeMap<i64, u64> = BTreeMap::new();
    for _ in 0..count {
        let record = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap()
            .unwrap();
        let at = record.timestamp().to_millis().unwrap();
        let size = record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len);
        *seconds.entry(at / 1000).or_default() += size as u64;
    }
    seconds
}

#[tokio::test]
async fn a_burst_is_paced_under_the_budget_and_nothing_is_dropped() {
    const BUDGET: u64 = 12_000;
    const COUNT: usize = 150;
    let mut alice = Actor::new("alice").await;
    alice.set(
        "kafka.budget_bytes_per_second",
        i64::try_from(BUDGET).unwrap(),
    );
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    // About 35 KB of chat into data-out, and again into bob's data-in — all
    // on the one local cluster, so all under alice's one budget.
    let text = "x".repeat(80);
    let burst_start = Instant::now();
    let mut sent = Vec::new();
    for _ in 0..COUNT {
        sent.push(send(&alice_daemon, &bob.actor_id, &text).await.id);
    }
    let conversation = history_all(&alice_daemon, &{
        let mut watch = alice_daemon.watch().await;
        watch
            .wait_for("the conversation", WAIT, |view| {
                !view.conversations.is_empty()
            })
            .await
            .conversations[0]
            .id
            .clone()
    })
    .await[0]
        .conversation_id
        .clone();
    let mut bob_watch = bob_daemon.watch().await;
    bob_watch
        .wait_for("all at bob", Duration::from_secs(60), |view| {
            view.conversation(&conversation)
                .is_some_and(|c| c.unread as usize >= COUNT)
        })
        .await;
    let took = burst_start.elapsed();
    let bob_history = history_all(&bob_daemon, &conversation).await;
    let arrived: Vec<String> = bob_history
        .iter()
        .map(|message| message.id.clone())
        .collect();
    assert_eq!(arrived, sent, "nothing dropped, nothing reordered");

    // Measured independently, from the records' timestamps on the broker.
    let data_out = bytes_per_second(
        &alice.stack.kafka,
        &format!("{}data-out", alice.topic_prefix),
        COUNT,
    )
    .await;
    let data_in = bytes_per_second(
        &alice.stack.kafka,
        &format!("{}data-in", bob.topic_prefix),
        COUNT,
    )
    .await;
    let mut combined = data_out.clone();
    for (second, bytes) in data_in {
        *combined.entry(second).or_default() += bytes;
    }
    let total: u64 = combined.values().sum();
    assert!(
        total > 2 * BUDGET,
        "the burst is larger than the budget: {total} bytes"
    );
    // The budget is a rate; a quarter second of it may come on top in any
    // one second, and a record is indivisible.
    let allowance = BUDGET + BUDGET / 4 + 400;
    for (second, bytes) in &combined {
        assert!(
            *bytes <= allowance,
            "second {second}: {bytes} bytes > {allowance}: {combined:?}"
        );
    }
    assert!(
        took >= Duration::from_secs_f64((total as f64 / BUDGET as f64) - 1.5),
        "{took:?} for {total} bytes"
    );
    let status = alice_daemon.status().await;
    let traffic = &status.traffic[0];
    assert_eq!(traffic.budget_bytes_per_second, BUDGET);
    assert!(traffic.paced > 0, "{traffic:?}");
}
