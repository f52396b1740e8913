//! SendMessage with an idempotency key: the same key names the same message,
//! across a daemon restart and a `kill -9` in the middle of the call, so a
//! client may retry whatever happened to its call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use kirc_proto::v1::{self as pb, MessageState};
use kirc_testkit::{Actor, Daemon, befriend, history_all, send_with_key, wait_history};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until `daemon` holds at least `count` messages of `conversation`.
async fn wait_count(daemon: &Daemon, conversation: &str, count: usize) -> Vec<pb::ChatMessage> {
    wait_history(
        daemon,
        conversation,
        &format!("{count} messages"),
        WAIT,
        |history| history.len() >= count,
    )
    .await
}

#[tokio::test]
async fn the_same_key_is_the_same_message_across_a_restart() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let first = send_with_key(&alice_daemon, &bob.actor_id, "once", "key-1")
        .await
        .unwrap();
    let again = send_with_key(&alice_daemon, &bob.actor_id, "once", "key-1")
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.seq, first.seq);
    // The same key for another text is refused, not sent.
    let other = send_with_key(&alice_daemon, &bob.actor_id, "twice", "key-1")
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::InvalidArgument, "{other:?}");
    for bad in ["has space", &"k".repeat(129), "tab\t"] {
        let refused = send_with_key(&alice_daemon, &bob.actor_id, "x", bad)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad:?}");
    }

    assert!(alice_daemon.stop().await.success());
    alice_daemon = Daemon::start(&alice).await;
    let after_restart = send_with_key(&alice_daemon, &bob.actor_id, "once", "key-1")
        .await
        .unwrap();
    assert_eq!(after_restart.id, first.id);
    assert!(after_restart.state >= MessageState::Queued as i32);

    // A new key is a new message.
    let second = send_with_key(&alice_daemon, &bob.actor_id, "second", "key-2")
        .await
        .unwrap();
    let at_bob = wait_count(&bob_daemon, &first.conversation_id, 2).await;
    let bodies: Vec<&str> = at_bob.iter().map(|message| message.body.as_str()).collect();
    assert_eq!(bodies, ["once", "second"]);
    assert_eq!(at_bob[1].id, second.id);
    let at_alice = history_all(&alice_daemon, &first.conversation_id).await;
    assert_eq!(at_alice.len(), 2);
}

#[tokio::test]
async fn a_send_cut_short_by_kill_9_and_retried_with_its_key_arrives_once() {
    const TOTAL: usize = 120;
    const KILLS: [usize; 6] = [10, 30, 50, 70, 90, 110];
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let mut conversation = String::new();
    let mut cut_short = 0;
    for index in 0..TOTAL {
        let text = format!("m{index}");
        let key = format!("send-{index}");
        if KILLS.contains(&index) {
            // The call is in flight when kircd dies: somewhere between
            // parsing the request and answering it (a message's path from
            // storing to the outbox's acknowledgement takes a few ms).
            let socket = alice_daemon.socket.clone();
            let to = bob.actor_id.clone();
            let (call_text, call_key) = (text.clone(), key.clone());
            let call = tokio::spawn(async move {
                kirc_proto::connect(&socket)
                    .await
                    .map_err(|err| tonic::Status::unavailable(err.to_string()))?
                    .send_message(pb::SendMessageRequest {
                        to,
                        text: call_text,
                        action: false,
                        idempotency_key: call_key,
                        reply_to: String::new(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
            });
            tokio::time::sleep(Duration::from_micros(500 * (index as u64 % 7))).await;
            alice_daemon.signal(rustix::process::Signal::KILL);
            alice_daemon.wait().await;
            if call.await.unwrap().is_err() {
                cut_short += 1;
            }
            alice_daemon = Daemon::start(&alice).await;
        }
        // The client's retry loop: the same key until an answer comes.
        let message = loop {
            match send_with_key(&alice_daemon, &bob.actor_id, &text, &key).await {
                Ok(message) => break message,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("{text}: {status:?}"),
            }
        };
        assert_eq!(message.body, text);
        conversation = message.conversation_id;
    }
    assert!(cut_short > 0, "no call was cut short by a kill");

    let wanted: Vec<String> = (0..TOTAL).map(|index| format!("m{index}")).collect();
    let at_bob = wait_count(&bob_daemon, &conversation, TOTAL).await;
    let bodies: Vec<String> = at_bob.iter().map(|message| message.body.clone()).collect();
    assert_eq!(bodies, wanted, "bob has each message once, in order");
    let at_alice = history_all(&alice_daemon, &conversation).await;
    let bodies: Vec<String> = at_alice
        .iter()
        .map(|message| message.body.clone())
        .collect();
    assert_eq!(bodies, wanted, "alice has each message once, in order");
    let ids: HashSet<&str> = at_bob.iter().map(|message| message.id.as_str()).collect();
    assert_eq!(ids.len(), TOTAL);
}
