//! The inbound rate limit per sender, with real kircd on the local stack: a
//! flood is cut to the allowance while others get through, a backlog is
//! counted by the minute it arrived, and a record read again after a crash
//! is not counted twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::DaemonView;
use kirc_proto::v1 as pb;
use kirc_testkit::{Actor, Daemon, befriend, history_all, send};

#[path = "support/raw.rs"]
mod raw;

use raw::RawSender;

const WAIT: Duration = Duration::from_secs(30);

/// The bodies of the messages in `daemon`'s conversation with `contact`
/// that start with `prefix`, in history order.
async fn bodies_from(
    daemon: &Daemon,
    view: &DaemonView,
    contact: &Actor,
    prefix: &str,
) -> Vec<String> {
    let conversation = &view.contact(&contact.actor_id).unwrap().conversation_id;
    history_all(daemon, conversation)
        .await
        .into_iter()
        .filter(|message| message.body.starts_with(prefix))
        .map(|message| message.body)
        .collect()
}

/// Whether `daemon`'s conversation with `contact` has at least `count`
/// unread messages in `view`.
fn unread_from(view: &DaemonView, contact: &Actor, count: usize) -> bool {
    view.contact(&contact.actor_id)
        .and_then(|contact| view.conversation(&contact.conversation_id))
        .is_some_and(|conversation| conversation.unread >= count as u64)
}

/// alice and bob, contacts, bob allowing `limit` records a minute; only
/// bob's kircd still runs (alice's records come from a [`RawSender`]).
async fn befriended_with_limit(limit: i64) -> (Actor, Actor, Daemon) {
    let alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    bob.set("presence.rate_limit", limit);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&bob, &bob_daemon), (&alice, &alice_daemon)).await;
    assert!(alice_daemon.stop().await.success());
    (alice, bob, bob_daemon)
}

fn rejected(status: &pb::Status, reason: &str) -> u64 {
    status
        .rejected
        .iter()
        .find(|count| count.reason == reason)
        .map_or(0, |count| count.count)
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
    let (alice, bob, bob_daemon) = befriended_with_limit(LIMIT).await;
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
            unread_from(view, &alice, 2 * PER_MINUTE)
        })
        .await;
    let status = view.status.as_ref().unwrap();
    assert_eq!(
        rejected(status, "rate_limited"),
        0,
        "nothing of the backlog was taken for a flood"
    );
    let texts = bodies_from(&bob_daemon, &view, &alice, "backlog ").await;
    let expected: Vec<String> = (0..2)
        .flat_map(|batch| (0..PER_MINUTE).map(move |index| format!("backlog {batch}.{index}")))
        .collect();
    assert_eq!(texts, expected, "all of it, once, in order");
}

/// What a crash leaves uncommitted is read again by the next process, and
/// Valkey counted it already. Counted a second time, a fast but honest burst
/// would exceed the allowance on that reading and lose its last messages
/// (seen in the SIGKILL durability test when consumers committed every 5 s).
/// Here every record of bob's data-in is read again within the same minutes:
/// none is taken for a flood, and each is stored once.
#[tokio::test]
async fn records_read_again_after_a_crash_are_not_counted_twice() {
    const LIMIT: i64 = 60;
    const CHATS: usize = 40;
    let (alice, bob, bob_daemon) = befriended_with_limit(LIMIT).await;

    // Within the allowance, even with alice's control records beside them.
    let raw_alice = RawSender::new(&alice, &bob);
    for index in 0..CHATS {
        raw_alice.chat(&format!("burst {index}")).await;
    }
    let mut bob_watch = bob_daemon.watch().await;
    bob_watch
        .wait_for("the burst in", WAIT, |view| {
            unread_from(view, &alice, CHATS)
        })
        .await;
    assert_eq!(rejected(&bob_daemon.status().await, "rate_limited"), 0);
    drop(bob_watch);
    assert!(bob_daemon.stop().await.success());

    // As if bob had crashed before committing any of it. The counts in
    // Valkey live two minutes: this all happens well within them.
    let data_in = format!("{}data-in", bob.topic_prefix);
    kirc_testkit::kafka::move_offsets(
        &bob.stack.kafka,
        &format!("kircd.{}.topics", bob.actor_id),
        &data_in,
        kirc_testkit::kafka::At::Start,
    );
    let bob_daemon = Daemon::start(&bob).await;
    let mut bob_watch = bob_daemon.watch().await;
    let view = bob_watch
        .wait_for("the burst read again", WAIT, |view| {
            view.status.as_ref().is_some_and(|status| {
                let redelivered = status.inbox.as_ref().map_or(0, |inbox| inbox.redelivered);
                redelivered + rejected(status, "rate_limited") >= CHATS as u64
            })
        })
        .await;
    let status = view.status.as_ref().unwrap();
    assert_eq!(
        rejected(status, "rate_limited"),
        0,
        "a record read again is not counted again: {status:?}"
    );
    let texts = bodies_from(&bob_daemon, &view, &alice, "burst ").await;
    let expected: Vec<String> = (0..CHATS).map(|index| format!("burst {index}")).collect();
    assert_eq!(texts, expected, "each once, in order");
}
