//! The send path hands each record its outbox acknowledged straight to the
//! delivery worker, which hands it on without waiting for its consumer to
//! fetch it. The consumer still fetches every record: the contact must get
//! each message once, and the outbox's offsets must be stored for the
//! records handed over, so that a restart hands nothing on again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use kirc_proto::v1::MessageState;
use kirc_testkit::{Actor, Daemon, befriend, history_bodies, kafka, send, wait_all_sent};
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(60);
const MESSAGES: usize = 20;

#[tokio::test]
async fn messages_handed_over_reach_the_contact_once_and_their_offsets_are_stored() {
    let mut alice = Actor::new("alice").await;
    alice.set("log.level", "warn,kircd::transport::kafka::delivery=debug");
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let mut conversation = String::new();
    for index in 0..MESSAGES {
        conversation = send(&alice_daemon, &bob.actor_id, &format!("handed {index}"))
            .await
            .conversation_id;
    }
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Received).await;
    let wanted: Vec<String> = (0..MESSAGES)
        .map(|index| format!("handed {index}"))
        .collect();
    assert_eq!(
        history_bodies(&bob_daemon, &conversation).await,
        wanted,
        "each once, in order"
    );
    let handed_over = alice_daemon
        .stderr()
        .matches("handing on a record the send path handed over")
        .count();
    assert!(
        handed_over >= 1,
        "the worker took no record from the hand-over: every one waited for the consumer"
    );

    // One copy of each in bob's inbox: the consumer's copy of a record
    // handed over was not handed on a second time.
    let in_bobs_inbox = kafka::read_all(&bob.stack.kafka, &format!("{}data-in", bob.topic_prefix));
    assert_eq!(in_bobs_inbox.len(), MESSAGES, "one copy of each message");

    // The offsets alice's consumer commits as it closes cover every record
    // of her data-out, whichever way it was handed on.
    assert!(alice_daemon.stop().await.success());
    let data_out = format!("{}data-out", alice.topic_prefix);
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for record in kafka::read_all(&alice.stack.kafka, &data_out) {
        ends.insert(record.partition, record.offset + 1);
    }
    let committed = kafka::committed(
        &alice.stack.kafka,
        &format!("kircd.{}.topics", alice.actor_id),
        &data_out,
    );
    for (partition, committed) in committed.into_iter().enumerate() {
        let end = ends.get(&(partition as i32)).copied().unwrap_or(0);
        assert_eq!(
            committed.unwrap_or(0),
            end,
            "data-out partition {partition}: committed up to its end ({handed_over} of {MESSAGES} handed over)"
        );
    }

    // A message handed on at the first attempt skips QUEUED, but keeps its
    // own place in data-out: a receipt range sent again after a restart
    // may end at it once its copy's receipt is gone.
    let mut db =
        sqlx::PgConnection::connect(&format!("{}/{}", alice.stack.postgres, alice.database))
            .await
            .unwrap();
    let without_place: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE outgoing AND (outbox_partition IS NULL OR outbox_offset IS NULL)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(without_place, 0, "every sent message keeps its own place");
    assert!(bob_daemon.stop().await.success());
}
