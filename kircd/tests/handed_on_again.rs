//! Copies handed on again behind later ones: a delivery worker that
//! restarts before it stored its offsets hands on again copies it had
//! delivered, after messages the receiver has not acknowledged yet. The
//! receiver acknowledges them again in the same batch, and every message
//! must still reach RECEIVED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::MessageState;
use kirc_testkit::{Actor, Daemon, befriend, history_bodies, kafka, send, wait_all_sent};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn copies_handed_on_again_behind_later_ones_are_all_acknowledged() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let mut conversation = String::new();
    for index in 0..5 {
        conversation = send(&alice_daemon, &bob.actor_id, &format!("early {index}"))
            .await
            .conversation_id;
    }
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Received).await;
    assert!(bob_daemon.stop().await.success());
    for index in 0..3 {
        send(&alice_daemon, &bob.actor_id, &format!("late {index}")).await;
    }
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Delivered).await;

    // Bob's data-in holds alice's chat in the order she sent it: early 0-4,
    // late 0-2. Two early copies again behind them, byte for byte, as her
    // delivery worker hands them on after a restart.
    let data_in = format!("{}data-in", bob.topic_prefix);
    let copies = kafka::read_all(&bob.stack.kafka, &data_in);
    assert_eq!(copies.len(), 8, "alice's eight chat records");
    let producer = kafka::producer(&bob.stack.kafka);
    for copy in &copies[3..5] {
        kafka::produce(&producer, &data_in, &copy.key, &copy.value).await;
    }

    // Bob reads late 0-2 and the two early copies together: the copies are
    // acknowledged again, and late 0-2 must be too, although the batch's
    // ids went back.
    let bob_daemon = Daemon::start(&bob).await;
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Received).await;
    let received = history_bodies(&bob_daemon, &conversation).await;
    let wanted: Vec<String> = (0..5)
        .map(|index| format!("early {index}"))
        .chain((0..3).map(|index| format!("late {index}")))
        .collect();
    assert_eq!(received, wanted, "each once, in order");
}
