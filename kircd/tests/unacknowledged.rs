//! A record the broker wrote but never acknowledged. The broker is frozen
//! (SIGSTOP) while alice sends: her produce times out, the call fails and
//! the message stays PENDING with no place in her data-out; but the broker
//! holds the request, and when it thaws it writes the record, which her
//! delivery worker hands to bob like any other. Bob stores it with the
//! messages before it and acknowledges them all with one receipt range
//! ending at it: every one of them must reach RECEIVED, although the range
//! names an end whose place alice never heard from the broker.
//! (Alone in its test binary: tests of one binary run at once, and a
//! frozen broker would stall the others.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kirc_proto::v1::MessageState;
use kirc_testkit::{
    Actor, Daemon, befriend, history_all, history_bodies, send, stack_ctl, try_send, wait_all_sent,
};

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
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Delivered).await;

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
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Delivered).await;
    let history = history_all(&alice_daemon, &conversation).await;
    assert_eq!(history.len(), BEFORE + 1, "{history:?}");

    let bob_daemon = Daemon::start(&bob).await;
    wait_all_sent(&alice_daemon, &conversation, WAIT, MessageState::Received).await;
    let received = history_bodies(&bob_daemon, &conversation).await;
    let mut wanted: Vec<String> = (0..BEFORE).map(|index| format!("before {index}")).collect();
    wanted.push(String::from("unacknowledged"));
    assert_eq!(received, wanted);
}
