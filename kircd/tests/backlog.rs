//! A backlog of several batches: while one batch is stored the next is
//! checked, and still every message is stored exactly once, in the order of
//! the inbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use kirc_testkit::{Actor, Daemon, befriend, history_all, kafka};
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use prost::Message as _;

const WAIT: Duration = Duration::from_secs(300);
/// More than two of the inbox's batches (4,000 records each).
const BACKLOG: usize = 10_000;

#[tokio::test]
async fn a_backlog_of_several_batches_is_stored_once_and_in_order() {
    let alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    // The backlog is written within a minute; the default per-contact rate
    // would rightly refuse most of it as a flood.
    bob.set("presence.rate_limit", 1_000_000)
        .set("log.level", "warn,kircd::transport::inbox=debug");
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    assert!(bob_daemon.stop().await.success());

    // Alice's sealed chat, written straight into bob's data-in while he is
    // away, as her delivery worker would.
    let alice_keys = Identity::load(&alice.dir.path().join("identity.key")).unwrap();
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let conversation = envelope::conversation_id(alice_keys.id(), bob_keys.id());
    let pair = envelope::PairKey::new(&alice_keys, &bob_keys.box_key());
    let producer = kafka::producer(&bob.stack.kafka);
    let data_in = format!("{}data-in", bob.topic_prefix);
    let records: Vec<Vec<u8>> = (0..BACKLOG)
        .map(|index| {
            envelope::seal(
                &alice_keys,
                bob_keys.id(),
                &pair,
                wire::Kind::Chat,
                envelope::new_message_id(),
                &wire::ChatPayload {
                    text: format!("backlog {index}"),
                    action: false,
                    ..wire::ChatPayload::default()
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let key = conversation.as_bytes().to_vec();
    futures::future::join_all(
        records
            .iter()
            .map(|bytes| kafka::produce(&producer, &data_in, &key, bytes)),
    )
    .await;

    let bob_daemon = Daemon::start(&bob).await;
    let mut watch = bob_daemon.watch().await;
    let last = format!("backlog {}", BACKLOG - 1);
    watch
        .wait_for("the backlog's last message stored", WAIT, |view| {
            view.conversation(&conversation.to_string())
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|message| message.body == last)
        })
        .await;

    let texts: Vec<String> = history_all(&bob_daemon, &conversation.to_string())
        .await
        .into_iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.body)
        .collect();
    let unique: HashSet<&String> = texts.iter().collect();
    assert_eq!(unique.len(), texts.len(), "a message is stored twice");
    let expected: Vec<String> = (0..BACKLOG)
        .map(|index| format!("backlog {index}"))
        .collect();
    assert_eq!(
        texts, expected,
        "the backlog is stored in the order it was written"
    );
    // The path under test was taken: a batch was checked while the one
    // before it was stored.
    assert!(
        bob_daemon
            .stderr()
            .contains("checking the next batch while this one is stored"),
        "no batch was checked ahead"
    );
}
