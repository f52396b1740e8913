//! Replays of old control records, as whoever holds an actor's public
//! credential (or a copy of a contact's old records) could write them: every
//! kind that carries state is refused when it is not newer than what is
//! applied, counted, and logged once; state never moves back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{self as pb, PresenceState};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::kafka;
use kirc_testkit::{Actor, Daemon, befriend, rejected, send};
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use prost::Message;
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(60);

async fn stored_display_name(actor: &Actor, contact: &str) -> String {
    let mut db =
        sqlx::PgConnection::connect(&format!("{}/{}", actor.stack.postgres, actor.database))
            .await
            .unwrap();
    let bytes: Vec<u8> = (0..contact.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&contact[at..at + 2], 16).unwrap())
        .collect();
    sqlx::query_scalar("SELECT display_name FROM contacts WHERE actor_id = $1")
        .bind(bytes)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

fn rejection_lines(daemon: &Daemon, reason: &str) -> usize {
    daemon
        .stderr()
        .lines()
        .filter(|line| {
            line.contains("rejected an inbound record")
                && line.contains(&format!("reason=\"{reason}\""))
        })
        .count()
}

#[tokio::test]
async fn old_control_records_of_every_kind_are_refused_when_replayed() {
    let mut alice = Actor::new("alice").await;
    // Several heartbeats, so that an old one can be replayed.
    alice.set("kafka.keep_warm_interval", "1s");
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    // alice invites: her acceptance, with her first profile, goes to bob.
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;
    let alice_rpc_out = format!("{}rpc-out", alice.topic_prefix);
    let alice_rpc_in = format!("{}rpc-in", alice.topic_prefix);
    let bob_rpc_in = format!("{}rpc-in", bob.topic_prefix);
    let kafka_at = alice.stack.kafka.clone();

    // Profile: alice restarts with another name and Kafka address; bob
    // follows.
    let old_accepted = kafka::envelopes_of(
        &kafka_at,
        &alice_rpc_out,
        wire::Kind::ContactAccepted,
        &bob.actor_id,
    );
    assert!(
        !old_accepted.is_empty(),
        "alice's acceptance is in her rpc-out"
    );
    assert!(alice_daemon.stop().await.success());
    alice.set("actor.name", "alice-renamed");
    let moved = alice.stack.kafka.replace("127.0.0.1", "localhost");
    alice.set("public.bootstrap_servers", moved.as_str());
    alice_daemon = Daemon::start(&alice).await;
    let renamed = |view: &kirc_proto::DaemonView| {
        view.contact(&alice.actor_id).is_some_and(|contact| {
            contact.display_name == "alice-renamed" && contact.delivery_path.starts_with(&moved)
        })
    };
    bob_watch
        .wait_for("alice's new profile at bob", WAIT, renamed)
        .await;

    let mut alice_watch = alice_daemon.watch().await;

    // Receipts: bob's message is received, then read, by alice.
    let message = send(&bob_daemon, &alice.actor_id, "read me").await;
    alice_watch
        .wait_for("bob's message at alice", WAIT, |view| {
            view.conversation(&message.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| last.id == message.id)
        })
        .await;
    alice_daemon
        .client()
        .await
        .mark_read(pb::MarkReadRequest {
            conversation_id: message.conversation_id.clone(),
            up_to: message.id.clone(),
        })
        .await
        .unwrap();
    let read = |view: &kirc_proto::DaemonView| {
        view.conversation(&message.conversation_id)
            .and_then(|conversation| conversation.last_message.as_ref())
            .is_some_and(|last| last.state == pb::MessageState::Read as i32)
    };
    bob_watch.wait_for("the read receipt", WAIT, read).await;

    // Presence: alice is online (a client is attached), then away.
    let _alice_tui = kirc_testkit::Watcher::interactive(&alice_daemon.socket).await;
    bob_watch
        .wait_for("alice online", WAIT, |view| {
            view.presence_of(&alice.actor_id)
                .is_some_and(|presence| presence.state == PresenceState::Online as i32)
        })
        .await;
    alice_daemon
        .client()
        .await
        .set_presence(pb::SetPresenceRequest {
            state: PresenceState::Away as i32,
            text: "lunch".into(),
        })
        .await
        .unwrap();
    let away = |view: &kirc_proto::DaemonView| {
        view.presence_of(&alice.actor_id).is_some_and(|presence| {
            presence.state == PresenceState::Away as i32 && presence.text == "lunch"
        })
    };
    bob_watch.wait_for("alice away", WAIT, away).await;

    // Typing: alice starts, then stops.
    for active in [true, false] {
        alice_daemon
            .client()
            .await
            .report_typing(pb::ReportTypingRequest {
                conversation_id: message.conversation_id.clone(),
                active,
            })
            .await
            .unwrap();
        bob_watch
            .wait_for("alice's typing", WAIT, |view| {
                view.presence_of(&alice.actor_id)
                    .is_some_and(|presence| presence.typing == active)
            })
            .await;
    }

    // Heartbeats: one at each start at least, and one a second.
    let heartbeats = kafka::envelopes_of(
        &kafka_at,
        &alice_rpc_in,
        wire::Kind::Heartbeat,
        &alice.actor_id,
    );
    assert!(heartbeats.len() >= 2, "{} heartbeats", heartbeats.len());

    // The replays: the oldest record of each kind, again, at the end of the
    // inbox.
    let oldest = |kind| {
        kafka::envelopes_of(&kafka_at, &alice_rpc_out, kind, &bob.actor_id)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {kind:?} in alice's rpc-out"))
            .0
    };
    let alice_keys = Identity::load(&alice.dir.path().join("identity.key")).unwrap();
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let pair = envelope::PairKey::new(&alice_keys, &bob_keys.box_key());
    let online = kafka::envelopes_of(
        &kafka_at,
        &alice_rpc_out,
        wire::Kind::Presence,
        &bob.actor_id,
    )
    .into_iter()
    .find(|(_, sealed)| {
        let (_, header) = envelope::parse(&sealed.encode_to_vec(), bob_keys.id()).unwrap();
        let payload = envelope::open(sealed, &header, &pair).unwrap();
        wire::Presence::decode(payload.as_slice()).unwrap().state
            == wire::PresenceState::Online as i32
    })
    .expect("alice told bob she was online")
    .0;
    let replays = [
        old_accepted[0].0.clone(),
        online,
        oldest(wire::Kind::Typing),
        oldest(wire::Kind::ReceiptRange),
    ];
    let producer = kafka::producer(&kafka_at);
    let before = bob_daemon.status().await;
    for record in &replays {
        kafka::produce(&producer, &bob_rpc_in, &record.key, &record.value).await;
    }
    let status = bob_watch
        .wait_until("four stale records at bob", WAIT, |status| {
            rejected(status, "stale") >= rejected(&before, "stale") + 4
        })
        .await;
    assert_eq!(rejected(&status, "stale"), rejected(&before, "stale") + 4);
    let heartbeat = &heartbeats[0].0;
    let alice_before = alice_daemon.status().await;
    kafka::produce(&producer, &alice_rpc_in, &heartbeat.key, &heartbeat.value).await;
    alice_watch
        .wait_until("the old heartbeat refused at alice", WAIT, |status| {
            rejected(status, "stale") == rejected(&alice_before, "stale") + 1
        })
        .await;

    // Nothing moved back: name and address (in the view and the database),
    // presence, typing, the message state.
    let view = bob_watch.view.clone();
    assert!(renamed(&view), "{:#?}", view.contact(&alice.actor_id));
    assert_eq!(
        stored_display_name(&bob, &alice.actor_id).await,
        "alice-renamed"
    );
    assert!(away(&view), "{:#?}", view.presence_of(&alice.actor_id));
    assert!(!view.presence_of(&alice.actor_id).unwrap().typing);
    assert!(read(&view));
    // Logged once each.
    assert_eq!(
        rejection_lines(&bob_daemon, "stale"),
        4,
        "{}",
        bob_daemon.stderr()
    );
    assert_eq!(rejection_lines(&alice_daemon, "stale"), 1);

    // The record applied last, again: the same bytes are a redelivery (not
    // an attack); the same id with other bytes a replay.
    let latest = kafka::envelopes_of(
        &kafka_at,
        &alice_rpc_out,
        wire::Kind::ContactAccepted,
        &bob.actor_id,
    )
    .pop()
    .unwrap()
    .0;
    let before = bob_daemon.status().await;
    kafka::produce(&producer, &bob_rpc_in, &latest.key, &latest.value).await;
    // An unknown field appended: still a valid, signed envelope.
    let mut altered = latest.value.clone();
    altered.extend_from_slice(&[0x78, 0x01]);
    kafka::produce(&producer, &bob_rpc_in, &latest.key, &altered).await;
    let status = bob_watch
        .wait_until("the altered copy refused as a replay", WAIT, |status| {
            rejected(status, "replay") > rejected(&before, "replay")
        })
        .await;
    assert_eq!(rejected(&status, "replay"), rejected(&before, "replay") + 1);
    assert_eq!(rejected(&status, "stale"), rejected(&before, "stale"));
    let inbox = status.inbox.unwrap_or_default();
    let inbox_before = before.inbox.unwrap_or_default();
    assert_eq!(inbox.redelivered, inbox_before.redelivered + 1);
    assert!(renamed(&bob_watch.view));
}
