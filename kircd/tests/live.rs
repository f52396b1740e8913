//! Presence, typing, keep-warm, sessions, the events channel, the traffic
//! budget and inbound rate limits, with two real kircd on the local stack.
//!
//! Past 600 lines on purpose: every test here starts the same two befriended
//! daemons and reads the same live layer; one file keeps those helpers
//! next to their only callers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kirc_proto::DaemonView;
use kirc_proto::v1::{self as pb, PresenceState};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::{Actor, Daemon, Watcher, befriend, history_all, send};
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

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

/// `from`'s keys writing valid chat envelopes straight into `to`'s inbox, as
/// `from`'s kircd would, with a raw producer.
struct RawSender {
    keys: Identity,
    to: kircd::crypto::identity::ActorId,
    pair: envelope::PairKey,
    conversation: uuid::Uuid,
    topic: String,
    producer: FutureProducer,
}

impl RawSender {
    fn new(from: &Actor, to: &Actor) -> Self {
        let keys = Identity::load(&from.dir.path().join("identity.key")).unwrap();
        let to_keys = Identity::load(&to.dir.path().join("identity.key")).unwrap();
        RawSender {
            pair: envelope::PairKey::new(&keys, &to_keys.box_key()),
            conversation: envelope::conversation_id(keys.id(), to_keys.id()),
            to: to_keys.id(),
            keys,
            topic: format!("{}data-in", to.topic_prefix),
            producer: ClientConfig::new()
                .set("bootstrap.servers", &to.stack.kafka)
                .create()
                .unwrap(),
        }
    }

    /// Sends one chat message; returns the broker's timestamp of the record
    /// (its append time on kircd's inboxes).
    async fn chat(&self, text: &str) -> i64 {
        let bytes = envelope::seal(
            &self.keys,
            self.to,
            &self.pair,
            wire::Kind::Chat,
            envelope::new_message_id(),
            &wire::ChatPayload {
                text: text.to_owned(),
                action: false,
            }
            .encode_to_vec(),
        );
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(self.conversation.as_bytes().as_slice())
                    .payload(&bytes),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        delivery.timestamp.to_millis().unwrap()
    }
}

#[tokio::test]
async fn a_flooding_sender_is_throttled_and_counted_while_others_get_through() {
    let alice = Actor::new("alice").await;
    let carol = Actor::new("carol").await;
    let mut bob = Actor::new("bob").await;
    bob.set("presence.rate_limit", 40);
    let alice_daemon = Daemon::start(&alice).await;
    let carol_daemon = Daemon::start(&carol).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&bob, &bob_daemon), (&alice, &alice_daemon)).await;
    befriend((&bob, &bob_daemon), (&carol, &carol_daemon)).await;
    assert!(alice_daemon.stop().await.success());

    // alice (her keys, a raw producer) floods bob's inbox with 200 valid
    // messages.
    let raw_alice = RawSender::new(&alice, &bob);
    for index in 0..200 {
        raw_alice.chat(&format!("flood {index}")).await;
    }
    // carol, meanwhile, talks normally.
    let mut carol_sent = Vec::new();
    for index in 0..5 {
        carol_sent.push(
            send(&carol_daemon, &bob.actor_id, &format!("carol {index}"))
                .await
                .id,
        );
    }
    let mut bob_watch = bob_daemon.watch().await;
    // The allowance is per calendar minute: a flood that straddles a minute
    // gets two.
    let view = bob_watch
        .wait_for("the flood counted and carol's messages in", WAIT, |view| {
            let limited = view.status.as_ref().is_some_and(|status| {
                status
                    .rejected
                    .iter()
                    .any(|count| count.reason == "rate_limited" && count.count >= 120)
            });
            let carol_in = view
                .contact(&carol.actor_id)
                .and_then(|contact| view.conversation(&contact.conversation_id))
                .is_some_and(|c| c.unread >= 5);
            limited && carol_in
        })
        .await;
    let alice_conversation = view
        .contact(&alice.actor_id)
        .unwrap()
        .conversation_id
        .clone();
    let from_alice = history_all(&bob_daemon, &alice_conversation).await;
    // alice's own control records (presence, acceptance) count too.
    assert!(
        (20..=80).contains(&from_alice.len()),
        "about the allowance got through: {}",
        from_alice.len()
    );
    let carol_conversation = view
        .contact(&carol.actor_id)
        .unwrap()
        .conversation_id
        .clone();
    let from_carol: Vec<String> = history_all(&bob_daemon, &carol_conversation)
        .await
        .into_iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.id)
        .collect();
    assert_eq!(from_carol, carol_sent, "carol is not affected");
}

/// The allowance counts records by the minute they reached the inbox (the
/// broker's append time), not the minute kircd reads them: a backlog that
/// waited while bob was offline is read at once without being taken for a
/// flood.
#[tokio::test]
async fn a_backlog_sent_over_several_minutes_is_not_throttled_when_read_at_once() {
    const LIMIT: i64 = 30;
    const PER_MINUTE: usize = 25;
    let alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    bob.set("presence.rate_limit", LIMIT);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&bob, &bob_daemon), (&alice, &alice_daemon)).await;
    assert!(alice_daemon.stop().await.success());
    assert!(bob_daemon.stop().await.success());

    // Two batches, each within the allowance, in two different minutes of
    // the broker's clock; together they exceed one minute's allowance.
    let raw_alice = RawSender::new(&alice, &bob);
    let mut minutes = Vec::new();
    for batch in 0..2 {
        let mut appended = Vec::new();
        for index in 0..PER_MINUTE {
            appended.push(raw_alice.chat(&format!("backlog {batch}.{index}")).await / 60_000);
        }
        if appended.first() != appended.last() {
            // The batch straddled a minute: the next one starts in a fresh
            // minute anyway, and this one counts as two smaller ones.
            eprintln!("batch {batch} straddled minutes {appended:?}");
        }
        minutes.extend(appended.iter().copied());
        if batch == 0 {
            // The broker's minute turns by the clock; no event says so.
            let next_minute_ms = (appended.last().unwrap() + 1) * 60_000;
            let now_ms = kirc_proto::unix_ms(std::time::SystemTime::now());
            tokio::time::sleep(Duration::from_millis(
                u64::try_from(next_minute_ms - now_ms).unwrap_or(0) + 200,
            ))
            .await;
        }
    }
    let first_minute = minutes[0];
    assert!(
        minutes[PER_MINUTE..]
            .iter()
            .all(|minute| *minute > first_minute),
        "the second batch arrived in a later minute: {minutes:?}"
    );

    let bob_daemon = Daemon::start(&bob).await;
    let mut bob_watch = bob_daemon.watch().await;
    let view = bob_watch
        .wait_for("the whole backlog in", WAIT, |view| {
            view.contact(&alice.actor_id)
                .and_then(|contact| view.conversation(&contact.conversation_id))
                .is_some_and(|conversation| conversation.unread >= 2 * PER_MINUTE as u64)
        })
        .await;
    let limited = view
        .status
        .as_ref()
        .and_then(|status| {
            status
                .rejected
                .iter()
                .find(|count| count.reason == "rate_limited")
                .map(|count| count.count)
        })
        .unwrap_or(0);
    assert_eq!(limited, 0, "nothing of the backlog was taken for a flood");
    let conversation = view
        .contact(&alice.actor_id)
        .unwrap()
        .conversation_id
        .clone();
    let texts: Vec<String> = history_all(&bob_daemon, &conversation)
        .await
        .into_iter()
        .filter(|message| message.body.starts_with("backlog "))
        .map(|message| message.body)
        .collect();
    let expected: Vec<String> = (0..2)
        .flat_map(|batch| (0..PER_MINUTE).map(move |index| format!("backlog {batch}.{index}")))
        .collect();
    assert_eq!(texts, expected, "all of it, once, in order");
}
