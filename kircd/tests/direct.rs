//! The direct path (WebRTC) between two real kircd on the local stack,
//! on loopback host candidates with mDNS off: it opens once both are
//! online, chat takes it and Kafka too (stored once), and it falls back
//! and comes back when a daemon dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{self as pb, DirectPathState};
use kirc_testkit::{Actor, Daemon, Watcher, befriend, incoming, rejected, send, wait_history};

const WAIT: Duration = Duration::from_secs(30);

/// An actor with the direct path on and presence on a short clock
/// (contacts count it offline 1.2 s after it vanishes).
async fn direct(name: &str) -> Actor {
    let mut actor = Actor::new(name).await;
    actor
        .direct_path()
        .set("presence.heartbeat", "400ms")
        .set("presence.idle", "10min");
    actor
}

fn path_to<'a>(status: &'a pb::Status, contact: &Actor) -> Option<&'a pb::DirectPath> {
    status
        .direct_paths
        .iter()
        .find(|path| path.actor_id == contact.actor_id)
}

fn connected(status: &pb::Status, contact: &Actor) -> bool {
    path_to(status, contact).is_some_and(|path| path.state == DirectPathState::Connected as i32)
}

async fn wait_connected(watch: &mut Watcher, contact: &Actor, what: &str) -> pb::Status {
    watch
        .wait_until(what, WAIT, |status| connected(status, contact))
        .await
}

#[tokio::test]
async fn two_online_contacts_chat_over_the_direct_path_and_store_each_message_once() {
    let mut alice = direct("alice").await;
    // Alice's Kafka is paced to a trickle (each message waits for the
    // budget), so that the direct copy leads its Kafka copy by far more
    // than any scheduling delay: "arrived first over the direct path" is
    // then a property of the path, not of a race.
    alice.set("kafka.budget_bytes_per_second", 2048);
    let bob = direct("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    // Attached clients make both online.
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    let _bob_tui = Watcher::interactive(&bob_daemon.socket).await;
    let mut alice_watch = alice_daemon.watch().await;
    let mut bob_watch = bob_daemon.watch().await;
    wait_connected(&mut alice_watch, &bob, "alice's direct path to bob").await;
    let status = wait_connected(&mut bob_watch, &alice, "bob's direct path to alice").await;
    assert_eq!(path_to(&status, &alice).unwrap().route, "host");

    let sent: Vec<String> = (0..20).map(|n| format!("direct {n}")).collect();
    for text in &sent {
        send(&alice_daemon, &bob.name, text).await;
    }
    let conversation = {
        let contacts = bob_daemon
            .client()
            .await
            .list_contacts(pb::ListContactsRequest {})
            .await
            .unwrap()
            .into_inner()
            .contacts;
        contacts
            .into_iter()
            .find(|contact| contact.actor_id == alice.actor_id)
            .unwrap()
            .conversation_id
    };
    wait_history(
        &bob_daemon,
        &conversation,
        "all 20 at bob",
        WAIT,
        |history| incoming(history).len() >= sent.len(),
    )
    .await;
    // The Kafka copies arrive too, and are recognised as copies.
    bob_watch
        .wait_until("the Kafka copies of all 20", WAIT, |status| {
            status
                .inbox
                .as_ref()
                .is_some_and(|inbox| inbox.redelivered >= 20)
        })
        .await;
    let history = kirc_testkit::history_all(&bob_daemon, &conversation).await;
    assert_eq!(incoming(&history), sent, "each message once, in order");
    assert!(
        history
            .iter()
            .filter(|message| !message.outgoing)
            .all(|message| message.direct),
        "every message arrived first over the direct path: {:?}",
        history
            .iter()
            .map(|message| message.direct)
            .collect::<Vec<_>>()
    );
    let status = bob_daemon.status().await;
    assert_eq!(rejected(&status, "replay"), 0);
    assert_eq!(rejected(&status, "stranger"), 0);
}
