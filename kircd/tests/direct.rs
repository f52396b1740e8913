//! The direct path (WebRTC) between two real kircd on the local stack,
//! on loopback host candidates with mDNS off: it opens once both are
//! online, chat takes it and Kafka too (stored once), and it falls back
//! and comes back when a daemon dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/direct.rs"]
mod support;

use std::time::Duration;

use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use kirc_testkit::{
    Actor, Daemon, Watcher, befriend, incoming, kafka, rejected, send, wait_history,
};
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use kircd::peers::signal::{self, Step};
use prost::Message as _;
use support::*;

#[tokio::test]
async fn two_online_contacts_chat_over_the_direct_path_and_store_each_message_once() {
    let mut alice = direct("alice").await;
    alice.set("kafka.budget_bytes_per_second", 2048);
    let bob = direct("bob").await;
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        mut bob_watch,
        at_bob,
        ..
    } = online_pair(&alice, &bob).await;
    assert_eq!(path_to(&at_bob, &alice).unwrap().route, "host");
    let output = bob.kircd().arg("status").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("direct    alice: connected via host"),
        "{text}"
    );

    let warm_up = warm_up();
    let measured: Vec<String> = (0..20).map(|n| format!("direct {n}")).collect();
    let sent: Vec<String> = warm_up.iter().chain(&measured).cloned().collect();
    for text in &sent {
        send(&alice_daemon, &bob.name, text).await;
    }
    let conversation = conversation_with(&bob_daemon, &alice).await;
    wait_history(&bob_daemon, &conversation, "all at bob", WAIT, |history| {
        incoming(history).len() >= sent.len()
    })
    .await;
    // The second copy of each arrives too, and is recognised as a copy.
    bob_watch
        .wait_until("the second copy of each", WAIT, |status| {
            status
                .inbox
                .as_ref()
                .is_some_and(|inbox| inbox.redelivered >= sent.len() as u64)
        })
        .await;
    let history = kirc_testkit::history_all(&bob_daemon, &conversation).await;
    assert_eq!(incoming(&history), sent, "each message once, in order");
    assert_paced_ones_went_direct(&history);
    let status = bob_daemon.status().await;
    assert_eq!(rejected(&status, "replay"), 0);
    assert_eq!(rejected(&status, "stranger"), 0);
}

#[tokio::test]
async fn relay_only_through_a_real_turn_server_connects_and_carries_chat() {
    // Both sides may use only relayed candidates: every packet goes through
    // the stack's coturn, with the credential read from a file.
    let mut alice = direct("alice").await;
    alice
        .relay_only()
        .set("kafka.budget_bytes_per_second", 2048);
    let mut bob = direct("bob").await;
    bob.relay_only();
    let pair = online_pair(&alice, &bob).await;
    assert_eq!(path_to(&pair.at_alice, &bob).unwrap().route, "relay");
    assert_eq!(path_to(&pair.at_bob, &alice).unwrap().route, "relay");

    let warm_up = warm_up();
    let relayed: Vec<String> = (0..5).map(|n| format!("relayed {n}")).collect();
    let sent: Vec<String> = warm_up.iter().chain(&relayed).cloned().collect();
    for text in &sent {
        send(&pair.alice_daemon, &bob.name, text).await;
    }
    let conversation = conversation_with(&pair.bob_daemon, &alice).await;
    let history = wait_history(
        &pair.bob_daemon,
        &conversation,
        "all at bob",
        WAIT,
        |history| incoming(history).len() >= sent.len(),
    )
    .await;
    assert_eq!(incoming(&history), sent, "each message once, in order");
    assert_paced_ones_went_direct(&history);
}

#[tokio::test]
async fn a_killed_daemon_is_noticed_kafka_carries_the_gap_and_the_path_comes_back() {
    let mut alice = direct("alice").await;
    // Paced, as in the first test: the direct copy leads by far.
    alice.set("kafka.budget_bytes_per_second", 2048);
    let bob = direct("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let mut bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let Attached {
        clients: (_alice_tui, bob_tui),
        mut alice_watch,
        bob_watch,
        ..
    } = attach_and_connect((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    drop((bob_tui, bob_watch));

    bob_daemon.signal(rustix::process::Signal::KILL);
    bob_daemon.wait().await;
    let killed = std::time::Instant::now();
    alice_watch
        .wait_until("alice notices bob is gone", WAIT, |status| {
            !connected(status, &bob)
        })
        .await;
    let noticed = killed.elapsed();
    // ICE says `disconnected` after 5 s without answers to its checks
    // (the route is then shown lost), `failed` after 25 s more.
    assert!(
        noticed < Duration::from_secs(25),
        "noticed after {noticed:?}"
    );

    let gap: Vec<String> = (0..5).map(|n| format!("while bob was down {n}")).collect();
    for text in &gap {
        send(&alice_daemon, &bob.name, text).await;
    }
    let bob_daemon = Daemon::start(&bob).await;
    let _bob_tui = Watcher::interactive(&bob_daemon.socket).await;
    let mut bob_watch = bob_daemon.watch().await;
    one_connection(
        (&alice, &alice_daemon, &mut alice_watch),
        (&bob, &bob_daemon, &mut bob_watch),
    )
    .await;
    // Sent the moment the channel is back, while the paced gap may still be
    // on its way through Kafka: it must not overtake the gap.
    send(&alice_daemon, &bob.name, "right behind the gap").await;
    let alice_conversation = conversation_with(&alice_daemon, &bob).await;
    wait_history(
        &alice_daemon,
        &alice_conversation,
        "bob has received everything so far",
        WAIT,
        |history| {
            history
                .iter()
                .all(|message| message.state >= pb::MessageState::Received as i32)
        },
    )
    .await;
    // Nothing is on its way by Kafka alone any more: the direct path again.
    send(&alice_daemon, &bob.name, "over the direct path again").await;

    let conversation = conversation_with(&bob_daemon, &alice).await;
    let history = wait_history(
        &bob_daemon,
        &conversation,
        "all 7 at bob",
        WAIT,
        |history| incoming(history).len() >= 7,
    )
    .await;
    let mut expected = gap.clone();
    expected.push(String::from("right behind the gap"));
    expected.push(String::from("over the direct path again"));
    assert_eq!(incoming(&history), expected, "each once, in order");
    let direct_flags: Vec<bool> = history
        .iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.direct)
        .collect();
    assert_eq!(&direct_flags[..5], [false; 5], "the gap came by Kafka");
    assert_eq!(direct_flags.last(), Some(&true), "the path is back");
}

#[tokio::test]
async fn forged_replayed_and_stranger_signalling_is_refused_counted_and_opens_nothing() {
    let alice = direct("alice").await;
    let bob = direct("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let Attached {
        clients: _clients,
        alice_watch: _alice_watch,
        mut bob_watch,
        session,
    } = attach_and_connect((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let kafka_at = alice.stack.kafka.clone();
    let signals = kafka::envelopes_of(
        &kafka_at,
        &format!("{}rpc-out", alice.topic_prefix),
        wire::Kind::Signal,
        &bob.actor_id,
    );
    assert!(signals.len() >= 2, "{} signalling records", signals.len());
    // A copy of alice's first offer: older than what bob applied.
    let replayed = signals[0].0.clone();
    // Her last record with a byte of its sealed payload changed.
    let mut forged = signals.last().unwrap().1.clone();
    forged.ciphertext[0] ^= 1;
    // An offer from someone bob does not know.
    let eve = Identity::generate();
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let stranger = envelope::seal(
        &eve,
        bob_keys.id(),
        &envelope::PairKey::new(&eve, &bob_keys.box_key()),
        wire::Kind::Signal,
        envelope::new_message_id(),
        &signal::encode([7; 16], Step::Offer(String::from("v=0"))),
    );

    let before = bob_daemon.status().await;
    let producer = kafka::producer(&kafka_at);
    let bob_rpc_in = format!("{}rpc-in", bob.topic_prefix);
    kafka::produce(&producer, &bob_rpc_in, &replayed.key, &replayed.value).await;
    kafka::produce(&producer, &bob_rpc_in, b"forged", &forged.encode_to_vec()).await;
    kafka::produce(&producer, &bob_rpc_in, b"eve", &stranger).await;
    let counted =
        |status: &pb::Status, reason| rejected(status, reason) - rejected(&before, reason);
    let status = bob_watch
        .wait_until("the three refused at bob", WAIT, |status| {
            counted(status, "stale") >= 1
                && counted(status, "bad_signature") >= 1
                && counted(status, "stranger") >= 1
        })
        .await;
    assert_eq!(
        (
            counted(&status, "stale"),
            counted(&status, "bad_signature"),
            counted(&status, "stranger")
        ),
        (1, 1, 1)
    );
    // The connection is the one it was, on both sides, and there is no other.
    assert_eq!(session_now(&bob_daemon, &alice).await, session);
    assert_eq!(session_now(&alice_daemon, &bob).await, session);
    assert_eq!(bob_daemon.status().await.direct_paths.len(), 1);
}

#[tokio::test]
async fn doctor_asks_the_stun_and_turn_servers_and_says_what_failed() {
    let mut actor = Actor::new("doctor").await;
    // coturn answers STUN on its TURN port too.
    let stun = actor
        .stack
        .turn_url
        .replacen("turn:", "stun:", 1)
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    actor.relay_only().set("rtc.stun_urls", stun.clone());
    let doctor = |actor: &Actor, credential: Option<&str>| {
        let mut command = actor.kircd();
        command.args(["doctor", "--timeout", "2s"]);
        if let Some(credential) = credential {
            command.env("KIRC_RTC_TURN_CREDENTIAL", credential);
        }
        async move {
            let output = command.output().await.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        }
    };
    let (passed, text) = doctor(&actor, None).await;
    assert!(passed, "{text}");
    assert!(
        text.contains(&format!(
            "ok    stun        {stun}: answers; it sees this host as 127.0.0.1:"
        )),
        "{text}"
    );
    assert!(
        text.contains("credential accepted; relayed address 127.0.0.1:"),
        "{text}"
    );

    // A wrong credential fails the TURN check, and with relay only that
    // fails the doctor; the credential itself is never printed.
    let (passed, text) = doctor(&actor, Some("not-the-password")).await;
    assert!(!passed, "{text}");
    assert!(text.contains("FAIL  turn"), "{text}");
    assert!(
        text.contains("fix: check rtc.turn_url, rtc.turn_username and the credential"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // A STUN server that is not there is a warning: Kafka still carries
    // everything.
    actor
        .set("rtc.stun_urls", "stun:127.0.0.1:9")
        .set("rtc.ice_transport_policy", "all");
    let (passed, text) = doctor(&actor, Some("not-the-password")).await;
    assert!(passed, "{text}");
    assert!(
        text.contains("WARN  stun        stun:127.0.0.1:9: no answer within"),
        "{text}"
    );
    assert!(text.contains("WARN  turn"), "{text}");
}

#[tokio::test]
async fn typing_and_presence_take_only_the_open_channel_and_kafka_again_once_it_closes() {
    let alice = direct("alice").await;
    let bob = direct("bob").await;
    let mut pair = online_pair(&alice, &bob).await;
    // From here alice's channel to bob is open (status shows it connected
    // only once it is): nothing sealed later may take Kafka.
    let opened_ms = kirc_proto::unix_ms(std::time::SystemTime::now());
    let rpc_out = format!("{}rpc-out", alice.topic_prefix);
    // alice's typing and presence records for bob in her outbox sealed
    // after `since_ms` (their ids carry the time they were sealed).
    let on_kafka_since = |since_ms: i64| {
        [wire::Kind::Typing, wire::Kind::Presence]
            .into_iter()
            .flat_map(|kind| kafka::envelopes_of(&alice.stack.kafka, &rpc_out, kind, &bob.actor_id))
            .filter(|(_, envelope)| {
                let id = uuid::Uuid::from_slice(&envelope.message_id).unwrap();
                let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
                i64::try_from(seconds).unwrap() * 1000 + i64::from(nanos / 1_000_000) > since_ms
            })
            .count()
    };

    let conversation = conversation_with(&pair.alice_daemon, &bob).await;
    let sent = pair
        .alice_daemon
        .client()
        .await
        .report_typing(pb::ReportTypingRequest {
            conversation_id: conversation,
            active: true,
        })
        .await
        .unwrap()
        .into_inner()
        .sent;
    assert!(sent);
    let typing = |view: &kirc_proto::DaemonView| {
        view.presence_of(&alice.actor_id)
            .is_some_and(|presence| presence.typing)
    };
    pair.bob_watch
        .wait_for("alice typing, over the channel", WAIT, typing)
        .await;
    // alice's heartbeats come every 400 ms and bob counts her offline 1.2 s
    // after the last one: online through a 3 s window means they kept
    // arriving, and none of them (nor the typing) was on Kafka.
    let window = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < window {
        pair.bob_watch.next(Duration::from_millis(200)).await;
        let state = pair
            .bob_watch
            .view
            .presence_of(&alice.actor_id)
            .map(|presence| presence.state);
        assert_eq!(state, Some(pb::PresenceState::Online as i32));
    }
    assert_eq!(
        on_kafka_since(opened_ms),
        0,
        "typing and presence took only the channel"
    );

    // bob goes: the channel closes, and alice's heartbeats to him are back
    // on Kafka by themselves, where he will read them when he returns.
    assert!(pair.bob_daemon.stop().await.success());
    pair.alice_watch
        .wait_until("alice's channel to bob closed", WAIT, |status| {
            !connected(status, &bob)
        })
        .await;
    let closed_ms = kirc_proto::unix_ms(std::time::SystemTime::now());
    let deadline = std::time::Instant::now() + WAIT;
    while on_kafka_since(closed_ms) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat to bob on Kafka after the channel closed"
        );
        pair.alice_watch.next(Duration::from_millis(200)).await;
    }
}
