//! Valkey stopped and restarted while alice and bob chat: no message is
//! lost, presence shows as unknown while it is away and recovers after.
//!
//! This stops the shared stack's Valkey, so it is a test binary of its own
//! (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::PresenceState;
use kirc_testkit::{Actor, Daemon, Watcher, befriend, history_all, send, stack_ctl};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn chat_survives_a_valkey_outage_and_presence_recovers() {
    let mut alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    for actor in [&mut alice, &mut bob] {
        actor.set("presence.heartbeat", "500ms");
    }
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    let mut bob_watch = bob_daemon.watch().await;
    let presence = |view: &kirc_proto::DaemonView| {
        view.presence_of(&alice.actor_id)
            .map_or(PresenceState::Unknown as i32, |presence| presence.state)
    };
    bob_watch
        .wait_for("alice online", WAIT, |view| {
            presence(view) == PresenceState::Online as i32
        })
        .await;

    let mut sent = Vec::new();
    for index in 0..20 {
        sent.push(
            send(&alice_daemon, &bob.actor_id, &format!("before {index}"))
                .await
                .id,
        );
    }
    stack_ctl(&["down", "valkey"]);
    bob_watch
        .wait_for("alice unknown while Valkey is away", WAIT, |view| {
            presence(view) == PresenceState::Unknown as i32
        })
        .await;
    // Chat goes on without Valkey.
    for index in 0..20 {
        sent.push(
            send(&alice_daemon, &bob.actor_id, &format!("during {index}"))
                .await
                .id,
        );
    }
    let conversation = bob_watch
        .wait_for("the messages during the outage", WAIT, |view| {
            view.conversations.iter().any(|c| c.unread >= 40)
        })
        .await
        .conversations
        .iter()
        .find(|c| c.unread >= 40)
        .unwrap()
        .id
        .clone();

    stack_ctl(&["up", "valkey"]);
    bob_watch
        .wait_for("alice online again", WAIT, |view| {
            presence(view) == PresenceState::Online as i32
        })
        .await;
    for index in 0..20 {
        sent.push(
            send(&alice_daemon, &bob.actor_id, &format!("after {index}"))
                .await
                .id,
        );
    }
    bob_watch
        .wait_for("all 60", WAIT, |view| {
            view.conversation(&conversation)
                .is_some_and(|c| c.unread >= 60)
        })
        .await;
    let received: Vec<String> = history_all(&bob_daemon, &conversation)
        .await
        .into_iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.id)
        .collect();
    assert_eq!(received, sent, "every message once, in order");
}
