//! Copies a receiver acknowledges with receipt ranges, in the orders that
//! are not the plain one.
//!
//! A record the broker wrote but never acknowledged. The broker is frozen
//! (SIGSTOP) while alice sends: her produce times out, the call fails and
//! the message stays PENDING with no place in her data-out; but the broker
//! holds the request, and when it thaws it writes the record, which her
//! delivery worker hands to bob like any other. Bob stores it with the
//! messages before it and acknowledges them all with one receipt range
//! ending at it: every one of them must reach RECEIVED, although the range
//! names an end whose place alice never heard from the broker.
//!
//! Copies handed on again behind later ones: a delivery worker that
//! restarts before it stored its offsets hands on again what it had
//! delivered, after messages the receiver has not acknowledged yet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kirc_proto::v1::MessageState;
use kirc_testkit::{Actor, Daemon, befriend, history_all, kafka, send, stack_ctl, try_send};

const WAIT: Duration = Duration::from_secs(60);

/// Messages alice sends before the one the broker does not acknowledge.
const BEFORE: usize = 5;

/// Thaws the broker whatever happens, so that later tests find it running.
struct Thaw;

impl Drop for Thaw {
    fn drop(&mut self) {
        stack_ctl(&["resume", "kafka"]);
    }
}

/// Waits until every message alice sent in `conversation` is at `state` or
/// past it; the history is read again on each event.
async fn wait_all_sent(daemon: &Daemon, conversation: &str, state: MessageState) {
    let mut watch = daemon.watch().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let history = history_all(daemon, conversation).await;
        let behind: Vec<String> = history
            .iter()
            .filter(|message| message.outgoing && message.state < state as i32)
            .map(|message| format!("{:?} ({:?})", message.body, message.state()))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {state:?}: {}",
            behind.join(", ")
        );
        watch.next(Duration::from_secs(5)).await;
    }
}

/// The texts of `conversation` in `daemon`'s history, in its order.
async fn bodies(daemon: &Daemon, conversation: &str) -> Vec<String> {
    history_all(daemon, conversation)
        .await
        .into_iter()
        .map(|message| message.body)
        .collect()
}

#[tokio::test]
async fn a_range_ending_at_a_record_the_broker_never_acknowledged_covers_all_before_it() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    // Bob is away: what alice sends waits in his inbox, to be read in one
    // batch when he is back.
    assert!(bob_daemon.stop().await.success());

    let mut conversation = String::new();
    for index in 0..BEFORE {
        conversation = send(&alice_daemon, &bob.actor_id, &format!("before {index}"))
            .await
            .conversation_id;
    }
    wait_all_sent(&alice_daemon, &conversation, MessageState::Delivered).await;

    let thaw = Thaw;
    stack_ctl(&["pause", "kafka"]);
    let started = Instant::now();
    let unacknowledged = try_send(&alice_daemon, &bob.actor_id, "unacknowledged").await;
    assert!(
        unacknowledged.is_err(),
        "a produce to a frozen broker was acknowledged: {unacknowledged:?}"
    );
    eprintln!(
        "the call failed after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        unacknowledged.unwrap_err().message()
    );
    drop(thaw);

    // The thawed broker wrote the record; alice's delivery worker hands it
    // to bob's inbox and says so.
    wait_all_sent(&alice_daemon, &conversation, MessageState::Delivered).await;
    let history = history_all(&alice_daemon, &conversation).await;
    assert_eq!(history.len(), BEFORE + 1, "{history:?}");

    let bob_daemon = Daemon::start(&bob).await;
    wait_all_sent(&alice_daemon, &conversation, MessageState::Received).await;
    let received = bodies(&bob_daemon, &conversation).await;
    let mut wanted: Vec<String> = (0..BEFORE).map(|index| format!("before {index}")).collect();
    wanted.push(String::from("unacknowledged"));
    assert_eq!(received, wanted);
}

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
    wait_all_sent(&alice_daemon, &conversation, MessageState::Received).await;
    assert!(bob_daemon.stop().await.success());
    for index in 0..3 {
        send(&alice_daemon, &bob.actor_id, &format!("late {index}")).await;
    }
    wait_all_sent(&alice_daemon, &conversation, MessageState::Delivered).await;

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
    wait_all_sent(&alice_daemon, &conversation, MessageState::Received).await;
    let received = bodies(&bob_daemon, &conversation).await;
    let wanted: Vec<String> = (0..5)
        .map(|index| format!("early {index}"))
        .chain((0..3).map(|index| format!("late {index}")))
        .collect();
    assert_eq!(received, wanted, "each once, in order");
}
