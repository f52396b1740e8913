//! Two (or three) real kircd processes on the local stack exchanging invites
//! and messages over their real sockets and real Kafka topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{self as pb, ContactState, MessageState};
use kirc_testkit::{Actor, Daemon, Watcher, add, history_all, invite, send};

const WAIT: Duration = Duration::from_secs(60);

struct Pair {
    alice: Actor,
    bob: Actor,
    alice_daemon: Daemon,
    bob_daemon: Daemon,
}

/// alice invites, bob adds the token: both end up contacts.
async fn contacts() -> Pair {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let mut alice_watch = alice_daemon.watch().await;
    let mut bob_watch = bob_daemon.watch().await;

    let token = invite(&alice_daemon).await;
    assert!(token.starts_with("kirc1:"));
    let added = add(&bob_daemon, token).await;
    assert_eq!(added.actor_id, alice.actor_id);
    assert_eq!(added.state, ContactState::Accepted as i32);

    alice_watch
        .wait_for("bob accepted at alice", WAIT, |view| {
            view.contact(&bob.actor_id).is_some_and(|contact| {
                contact.state == ContactState::Accepted as i32 && contact.peer_accepted
            })
        })
        .await;
    bob_watch
        .wait_for("alice confirmed at bob", WAIT, |view| {
            view.contact(&alice.actor_id)
                .is_some_and(|contact| contact.peer_accepted)
        })
        .await;
    Pair {
        alice,
        bob,
        alice_daemon,
        bob_daemon,
    }
}

#[tokio::test]
async fn an_invite_makes_two_contacts_and_messages_flow_both_ways() {
    let pair = contacts().await;
    let mut bob_watch = pair.bob_daemon.watch().await;
    let mut alice_watch = pair.alice_daemon.watch().await;

    let sent = send(&pair.alice_daemon, &pair.bob.actor_id, "hello bob").await;
    assert_eq!(sent.state, MessageState::Queued as i32);
    assert!(sent.outgoing);

    let view = bob_watch
        .wait_for("the message at bob", WAIT, |view| {
            view.conversation(&sent.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| last.id == sent.id)
        })
        .await;
    let conversation = view.conversation(&sent.conversation_id).unwrap();
    let last = conversation.last_message.as_ref().unwrap();
    assert_eq!(last.body, "hello bob");
    assert!(!last.outgoing);
    assert_eq!(last.sender, pair.alice.actor_id);
    assert_eq!(conversation.unread, 1);

    alice_watch
        .wait_for("received at alice", WAIT, |view| {
            view.conversation(&sent.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| {
                    last.id == sent.id && last.state == MessageState::Received as i32
                })
        })
        .await;

    // bob reads it: alice sees READ.
    let marked = pair
        .bob_daemon
        .client()
        .await
        .mark_read(pb::MarkReadRequest {
            conversation_id: sent.conversation_id.clone(),
            up_to: sent.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(marked.moved);
    assert_eq!(marked.unread, 0);
    alice_watch
        .wait_for("read at alice", WAIT, |view| {
            view.conversation(&sent.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| last.state == MessageState::Read as i32)
        })
        .await;

    // And back.
    let reply = send(&pair.bob_daemon, "alice", "hi alice").await;
    alice_watch
        .wait_for("the reply at alice", WAIT, |view| {
            view.conversation(&reply.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| last.id == reply.id && last.body == "hi alice")
        })
        .await;
    assert_eq!(reply.conversation_id, sent.conversation_id);
}

#[tokio::test]
async fn a_thousand_messages_each_way_arrive_once_in_order_and_are_received() {
    const COUNT: usize = 1000;
    let pair = contacts().await;
    let (alice_to_bob, bob_to_alice) = tokio::join!(
        async {
            let mut sent = Vec::new();
            for index in 0..COUNT {
                sent.push(
                    send(
                        &pair.alice_daemon,
                        &pair.bob.actor_id,
                        &format!("a→b {index}"),
                    )
                    .await,
                );
            }
            sent
        },
        async {
            let mut sent = Vec::new();
            for index in 0..COUNT {
                sent.push(
                    send(
                        &pair.bob_daemon,
                        &pair.alice.actor_id,
                        &format!("b→a {index}"),
                    )
                    .await,
                );
            }
            sent
        }
    );
    let conversation = alice_to_bob[0].conversation_id.clone();

    for (daemon, label) in [(&pair.alice_daemon, "alice"), (&pair.bob_daemon, "bob")] {
        let mut watch = daemon.watch().await;
        let (mine, theirs) = if label == "alice" {
            (&alice_to_bob, &bob_to_alice)
        } else {
            (&bob_to_alice, &alice_to_bob)
        };
        // Everything of the peer arrived, and everything of ours reached
        // `received`: read the history once the last ones did.
        let last_theirs = theirs.last().unwrap().id.clone();
        watch
            .wait_for(
                &format!("{label}: the last incoming message"),
                WAIT,
                |view| {
                    view.conversation(&conversation)
                        .is_some_and(|c| c.unread as usize >= COUNT)
                },
            )
            .await;
        let history = history_all(daemon, &conversation).await;
        let incoming: Vec<&pb::ChatMessage> =
            history.iter().filter(|message| !message.outgoing).collect();
        let outgoing: Vec<&pb::ChatMessage> =
            history.iter().filter(|message| message.outgoing).collect();
        assert_eq!(
            incoming.len(),
            COUNT,
            "{label}: each incoming message exactly once"
        );
        assert_eq!(
            outgoing.len(),
            COUNT,
            "{label}: each sent message exactly once"
        );
        let incoming_ids: Vec<&str> = incoming.iter().map(|message| message.id.as_str()).collect();
        let sent_ids: Vec<&str> = theirs.iter().map(|message| message.id.as_str()).collect();
        assert_eq!(incoming_ids, sent_ids, "{label}: in the order sent");
        assert_eq!(incoming.last().unwrap().id, last_theirs);
        let seqs: Vec<u64> = history.iter().map(|message| message.seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "{label}: history in stable order"
        );

        // Every one of ours reaches RECEIVED.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let history = history_all(daemon, &conversation).await;
            let not_received = history
                .iter()
                .filter(|message| message.outgoing && message.state < MessageState::Received as i32)
                .count();
            if not_received == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: {not_received} sent messages never reached received"
            );
            watch.next(Duration::from_secs(5)).await;
        }
        assert_eq!(mine.len(), COUNT);
    }
}

#[tokio::test]
async fn a_token_without_its_secret_needs_acceptance_and_a_blocked_sender_gets_nowhere() {
    let pair = contacts().await;
    // carol adds alice with alice's first token again: the secret is used,
    // so carol becomes a message request at alice.
    let carol = Actor::new("carol").await;
    let carol_daemon = Daemon::start(&carol).await;
    let mut alice_watch = pair.alice_daemon.watch().await;
    let token = invite(&pair.alice_daemon).await;
    // bob uses it first (he is already a contact: refused as reuse).
    let reuse = pair
        .bob_daemon
        .client()
        .await
        .add_contact(pb::AddContactRequest {
            token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reuse.code(), tonic::Code::AlreadyExists, "{reuse:?}");
    assert!(
        reuse.message().contains("already used"),
        "{}",
        reuse.message()
    );

    // dave takes the token and uses it; carol then presents the same token.
    let dave = Actor::new("dave").await;
    let dave_daemon = Daemon::start(&dave).await;
    dave_daemon
        .client()
        .await
        .add_contact(pb::AddContactRequest {
            token: token.clone(),
        })
        .await
        .unwrap();
    alice_watch
        .wait_for("dave accepted by his valid secret", WAIT, |view| {
            view.contact(&dave.actor_id)
                .is_some_and(|contact| contact.state == ContactState::Accepted as i32)
        })
        .await;
    carol_daemon
        .client()
        .await
        .add_contact(pb::AddContactRequest { token })
        .await
        .unwrap();
    alice_watch
        .wait_for("carol as a message request", WAIT, |view| {
            view.contact(&carol.actor_id)
                .is_some_and(|contact| contact.state == ContactState::Request as i32)
        })
        .await;

    // A request cannot be written to until accepted.
    let refused = pair
        .alice_daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: carol.actor_id.clone(),
            text: "hi?".into(),
            action: false,
            idempotency_key: String::new(),
            reply_to: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // alice blocks carol: carol's messages are dropped and counted.
    pair.alice_daemon
        .client()
        .await
        .block_contact(pb::ContactRequest {
            contact: carol.actor_id.clone(),
        })
        .await
        .unwrap();
    let spam = send(&carol_daemon, &pair.alice.actor_id, "let me in").await;
    alice_watch
        .wait_for("carol's message rejected as blocked", WAIT, |view| {
            view.status.as_ref().is_some_and(|status| {
                status
                    .rejected
                    .iter()
                    .any(|count| count.reason == "blocked" && count.count >= 1)
            })
        })
        .await;
    let view = alice_watch.view.clone();
    let conversation = view
        .contact(&carol.actor_id)
        .unwrap()
        .conversation_id
        .clone();
    assert!(
        history_all(&pair.alice_daemon, &conversation)
            .await
            .iter()
            .all(|message| message.id != spam.id),
        "a blocked sender's message is never stored"
    );
}

#[tokio::test]
async fn expired_tampered_and_malformed_tokens_are_refused_with_a_clear_error() {
    let alice = Actor::new("tokens").await;
    let daemon = Daemon::start(&alice).await;
    let mut client = daemon.client().await;
    let token = client
        .create_invite(pb::CreateInviteRequest { ttl_seconds: 60 })
        .await
        .unwrap()
        .into_inner()
        .token;
    let own = client
        .add_contact(pb::AddContactRequest {
            token: token.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        own.message().contains("your own invite"),
        "{}",
        own.message()
    );

    let bob = Actor::new("tokensbob").await;
    let bob_daemon = Daemon::start(&bob).await;
    let mut bob_client = bob_daemon.client().await;
    for (bad, expected) in [
        ("kirc1:AAAA", "not a K-IRC invite"),
        ("hello", "not a K-IRC invite"),
        (&token[..token.len() - 10], "not a K-IRC invite"),
    ] {
        let err = bob_client
            .add_contact(pb::AddContactRequest {
                token: bad.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(expected), "{bad}: {}", err.message());
    }
    // A character changed in the middle: the signature no longer matches.
    let mut tampered: Vec<char> = token.chars().collect();
    let middle = tampered.len() / 3;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let err = bob_client
        .add_contact(pb::AddContactRequest { token: tampered })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("altered") || err.message().contains("not a K-IRC invite"),
        "{}",
        err.message()
    );
    let _ = Watcher::subscribe(&daemon.socket, 0, 0).await;
}

#[tokio::test]
async fn a_muted_conversation_is_muted_for_every_client_and_after_a_restart() {
    let mut pair = contacts().await;
    let conversation = send(&pair.alice_daemon, &pair.bob.actor_id, "hi")
        .await
        .conversation_id;
    let mut other_client = pair.alice_daemon.watch().await;
    pair.alice_daemon
        .client()
        .await
        .set_muted(pb::SetMutedRequest {
            conversation_id: conversation.clone(),
            muted: true,
        })
        .await
        .unwrap();
    let muted = |view: &kirc_proto::DaemonView| {
        view.conversation(&conversation)
            .is_some_and(|listed| listed.muted)
    };
    other_client
        .wait_for("the mute at another client", WAIT, muted)
        .await;
    let unknown = pair
        .alice_daemon
        .client()
        .await
        .set_muted(pb::SetMutedRequest {
            conversation_id: uuid::Uuid::now_v7().to_string(),
            muted: true,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");

    assert!(pair.alice_daemon.stop().await.success());
    pair.alice_daemon = Daemon::start(&pair.alice).await;
    let mut after = pair.alice_daemon.watch().await;
    after
        .wait_for("still muted after a restart", WAIT, muted)
        .await;
}
