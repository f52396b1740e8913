//! Receipts between real kircd processes: a batch of messages is
//! acknowledged by a few receipt ranges whatever its size, and a kircd that
//! speaks as one from before ranges (`messaging.receipt_ranges = false`:
//! it neither announces nor sends them) gets and sends listed receipts,
//! while every message reaches received and then read both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kirc_proto::v1::{self as pb, MessageState};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::kafka::envelopes_of;
use kirc_testkit::{Actor, Daemon, befriend, history_all, send};

const WAIT: Duration = Duration::from_secs(60);

/// Messages alice writes to each while it is offline.
const QUEUED: usize = 200;

/// Waits until every message of `daemon`'s in `conversation` sent by it
/// (`outgoing`) or received by it has reached `state`; the history is read
/// again on each event.
async fn wait_all(daemon: &Daemon, conversation: &str, outgoing: bool, state: MessageState) {
    let mut watch = daemon.watch().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let history = history_all(daemon, conversation).await;
        let behind = history
            .iter()
            .filter(|message| message.outgoing == outgoing && message.state < state as i32)
            .count();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{behind} messages never reached {state:?}"
        );
        watch.next(Duration::from_secs(5)).await;
    }
}

async fn mark_all_read(daemon: &Daemon, conversation: &str) {
    let history = history_all(daemon, conversation).await;
    let last = history
        .iter()
        .rev()
        .find(|message| !message.outgoing)
        .unwrap();
    daemon
        .client()
        .await
        .mark_read(pb::MarkReadRequest {
            conversation_id: conversation.to_owned(),
            up_to: last.id.clone(),
        })
        .await
        .unwrap();
}

/// Receipts of `kind` in `recipient`'s rpc-in sent by `sender`.
fn receipts(from: &Actor, to: &Actor, kind: wire::Kind) -> usize {
    envelopes_of(
        &to.stack.kafka,
        &format!("{}rpc-in", to.topic_prefix),
        kind,
        &to.actor_id,
    )
    .iter()
    .filter(|(_, envelope)| {
        let sender: String = envelope
            .sender
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        sender == from.actor_id
    })
    .count()
}

#[tokio::test]
async fn a_batch_is_acknowledged_by_a_few_ranges_and_an_older_peer_gets_lists() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut carol = Actor::new("carol").await;
    carol.set("messaging.receipt_ranges", false);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    befriend((&alice, &alice_daemon), (&carol, &carol_daemon)).await;
    bob_daemon.stop().await;
    carol_daemon.stop().await;

    // While both are away, alice's messages reach their inboxes and wait.
    let mut conversations = Vec::new();
    for peer in [&bob, &carol] {
        let mut last = None;
        for index in 0..QUEUED {
            last = Some(send(&alice_daemon, &peer.actor_id, &format!("queued {index}")).await);
        }
        let conversation = last.unwrap().conversation_id;
        wait_all(&alice_daemon, &conversation, true, MessageState::Delivered).await;
        conversations.push(conversation);
    }
    let (with_bob, with_carol) = (&conversations[0], &conversations[1]);

    // They come back and read the whole backlog in a few batches.
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    wait_all(&alice_daemon, with_bob, true, MessageState::Received).await;
    wait_all(&alice_daemon, with_carol, true, MessageState::Received).await;
    let ranges = receipts(&bob, &alice, wire::Kind::ReceiptRange);
    println!("{QUEUED} messages acknowledged by {ranges} ranges");
    assert!(
        (1..=10).contains(&ranges),
        "{QUEUED} messages read in batches took {ranges} ranges"
    );
    assert_eq!(receipts(&bob, &alice, wire::Kind::Receipt), 0);
    // carol announced no ranges and sends lists.
    assert_eq!(receipts(&carol, &alice, wire::Kind::ReceiptRange), 0);
    assert!(receipts(&carol, &alice, wire::Kind::Receipt) >= 1);

    // Read receipts take the same forms.
    mark_all_read(&bob_daemon, with_bob).await;
    mark_all_read(&carol_daemon, with_carol).await;
    wait_all(&alice_daemon, with_bob, true, MessageState::Read).await;
    wait_all(&alice_daemon, with_carol, true, MessageState::Read).await;

    // And the other way: alice acknowledges bob with ranges, carol with
    // lists, since carol did not announce them.
    for (daemon, peer) in [(&bob_daemon, &bob), (&carol_daemon, &carol)] {
        let mut last = None;
        for index in 0..20 {
            last = Some(send(daemon, &alice.actor_id, &format!("back {index}")).await);
        }
        let conversation = last.unwrap().conversation_id;
        wait_all(daemon, &conversation, true, MessageState::Received).await;
        mark_all_read(&alice_daemon, &conversation).await;
        wait_all(daemon, &conversation, true, MessageState::Read).await;
        let (ranges, lists) = (
            receipts(&alice, peer, wire::Kind::ReceiptRange),
            receipts(&alice, peer, wire::Kind::Receipt),
        );
        if peer.name == "bob" {
            assert!(
                ranges >= 2 && lists == 0,
                "to bob: {ranges} ranges, {lists} lists"
            );
        } else {
            assert!(
                ranges == 0 && lists >= 2,
                "to carol: {ranges} ranges, {lists} lists"
            );
        }
    }
}
