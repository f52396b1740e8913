//! Where kircd's consumer starts reading its own topics: from the offsets it
//! committed, and on the first start after an upgrade from a kircd that read
//! them with one consumer group per reader, from those groups' offsets, so
//! that an upgrade reads nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::kafka::{At, committed, delete_group, move_offsets};
use kirc_testkit::{Actor, Daemon, befriend, history_all};

#[path = "support/raw.rs"]
mod raw;

use raw::RawSender;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn an_upgrade_starts_where_the_former_groups_left_off() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&bob, &bob_daemon), (&alice, &alice_daemon)).await;
    assert!(alice_daemon.stop().await.success());
    assert!(bob_daemon.stop().await.success());

    // What a former kircd had read already: in bob's data-in, with the
    // former inbox group's offsets after it, and the new group not yet made.
    let raw_alice = RawSender::new(&alice, &bob);
    for index in 0..5 {
        raw_alice
            .chat(&format!("read before the upgrade {index}"))
            .await;
    }
    let kafka = &bob.stack.kafka;
    delete_group(kafka, &format!("kircd.{}.topics", bob.actor_id)).await;
    for (group, role) in [
        ("inbox", "data-in"),
        ("inbox", "rpc-in"),
        ("delivery-data", "data-out"),
        ("delivery-rpc", "rpc-out"),
    ] {
        move_offsets(
            kafka,
            &format!("kircd.{}.{group}", bob.actor_id),
            &format!("{}{role}", bob.topic_prefix),
            At::End,
        );
    }
    raw_alice.chat("after the upgrade").await;

    let bob_daemon = Daemon::start(&bob).await;
    let mut bob_watch = bob_daemon.watch().await;
    let view = bob_watch
        .wait_for("the message after the upgrade", WAIT, |view| {
            view.contact(&alice.actor_id)
                .and_then(|contact| view.conversation(&contact.conversation_id))
                .is_some_and(|conversation| conversation.unread >= 1)
        })
        .await;
    let conversation = &view.contact(&alice.actor_id).unwrap().conversation_id;
    let bodies: Vec<String> = history_all(&bob_daemon, conversation)
        .await
        .into_iter()
        .map(|message| message.body)
        .collect();
    // Records are read in order: had the earlier five been read, they would
    // be in before this one.
    assert_eq!(bodies, ["after the upgrade"], "nothing read twice");
    let status = bob_daemon.status().await;
    assert_eq!(
        status.inbox.unwrap().redelivered,
        0,
        "{:?}",
        status.rejected
    );
    // The former groups were asked once: every partition's start is now the
    // own group's, including those that never had a record, so that the
    // next start asks them no more.
    for role in ["data-in", "data-out", "rpc-in", "rpc-out"] {
        let offsets = committed(
            kafka,
            &format!("kircd.{}.topics", bob.actor_id),
            &format!("{}{role}", bob.topic_prefix),
        );
        assert!(!offsets.is_empty());
        assert!(offsets.iter().all(Option::is_some), "{role}: {offsets:?}");
    }
}
