//! Bad records written straight into bob's inbox topics by a raw producer:
//! each class is rejected and counted (and quarantined), never shown, and the
//! good messages behind each one still arrive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{self as pb};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::{Actor, Daemon, befriend};
use kircd::crypto::envelope::{self, MAX_ENVELOPE_BYTES};
use kircd::crypto::identity::Identity;
use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const WAIT: Duration = Duration::from_secs(60);

fn chat(text: &str) -> Vec<u8> {
    wire::ChatPayload {
        text: text.to_owned(),
        action: false,
        ..wire::ChatPayload::default()
    }
    .encode_to_vec()
}

async fn produce(producer: &FutureProducer, topic: &str, key: &[u8], value: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn every_class_of_bad_input_is_rejected_counted_and_skipped() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    // Contacts the usual way.
    befriend((&bob, &bob_daemon), (&alice, &alice_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;
    // alice's daemon stops: from here on "alice" is this test, holding her
    // keys, writing to bob's inbox directly.
    assert!(alice_daemon.stop().await.success());

    let alice_keys = Identity::load(&alice.dir.path().join("identity.key")).unwrap();
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let bob_id = bob_keys.id();
    let eve = Identity::generate();
    let conversation = envelope::conversation_id(alice_keys.id(), bob_id);
    let data_in = format!("{}data-in", bob.topic_prefix);
    let rpc_in = format!("{}rpc-in", bob.topic_prefix);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bob.stack.kafka)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let good = |text: &str| {
        envelope::seal(
            &alice_keys,
            bob_id,
            &envelope::PairKey::new(&alice_keys, &bob_keys.box_key()),
            wire::Kind::Chat,
            envelope::new_message_id(),
            &chat(text),
        )
    };

    let first_good = good("good 0");
    let mut bad: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    bad.push((
        "undecodable",
        &data_in,
        b"\xde\xad\xbe\xef not protobuf at all".to_vec(),
    ));
    bad.push((
        "undecodable",
        &data_in,
        first_good[..first_good.len() / 2].to_vec(),
    ));
    let mut envelope = wire::Envelope::decode(good("v2").as_slice()).unwrap();
    envelope.version = 2;
    bad.push(("unknown_version", &data_in, envelope.encode_to_vec()));
    let mut envelope = wire::Envelope::decode(good("tampered").as_slice()).unwrap();
    envelope.ciphertext[3] ^= 0x40;
    bad.push(("bad_signature", &data_in, envelope.encode_to_vec()));
    let someone_else = Identity::generate();
    bad.push((
        "wrong_recipient",
        &data_in,
        envelope::seal(
            &alice_keys,
            someone_else.id(),
            &envelope::PairKey::new(&alice_keys, &someone_else.box_key()),
            wire::Kind::Chat,
            envelope::new_message_id(),
            &chat("not for bob"),
        ),
    ));
    bad.push((
        "stranger",
        &data_in,
        envelope::seal(
            &eve,
            bob_id,
            &envelope::PairKey::new(&eve, &bob_keys.box_key()),
            wire::Kind::Chat,
            envelope::new_message_id(),
            &chat("hi from eve"),
        ),
    ));
    bad.push(("oversized", &data_in, vec![0x0a; MAX_ENVELOPE_BYTES + 1000]));
    // A stranger's receipt on rpc-in, and a chat envelope on the control
    // topic.
    bad.push((
        "stranger",
        &rpc_in,
        envelope::seal(
            &eve,
            bob_id,
            &envelope::PairKey::new(&eve, &bob_keys.box_key()),
            wire::Kind::Receipt,
            envelope::new_message_id(),
            b"",
        ),
    ));
    bad.push(("malformed", &rpc_in, good("chat on the wrong topic")));
    // The first good envelope again, later, at another offset: byte for
    // byte what alice's own delivery sends again after a crash, so a
    // redelivery, not an attack. With a field appended (still signed and
    // sealed as before) it is not the same record: a replay.
    let redelivery = first_good.clone();
    let mut replay = first_good.clone();
    replay.extend_from_slice(&[0x78, 0x01]);

    produce(&producer, &data_in, conversation.as_bytes(), &first_good).await;
    let mut good_ids = vec![
        wire::Envelope::decode(first_good.as_slice())
            .unwrap()
            .message_id,
    ];
    for (index, (_, topic, bytes)) in bad.iter().enumerate() {
        produce(&producer, topic, conversation.as_bytes(), bytes).await;
        let next = good(&format!("good {}", index + 1));
        good_ids.push(wire::Envelope::decode(next.as_slice()).unwrap().message_id);
        produce(&producer, &data_in, conversation.as_bytes(), &next).await;
    }
    produce(&producer, &data_in, conversation.as_bytes(), &redelivery).await;
    produce(&producer, &data_in, conversation.as_bytes(), &replay).await;
    let last = good("good last");
    good_ids.push(wire::Envelope::decode(last.as_slice()).unwrap().message_id);
    produce(&producer, &data_in, conversation.as_bytes(), &last).await;

    let mut expected: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (reason, _, _) in &bad {
        *expected.entry(reason).or_default() += 1;
    }
    *expected.entry("replay").or_default() += 1;
    let counts = |status: &pb::Status| -> std::collections::BTreeMap<String, u64> {
        status
            .rejected
            .iter()
            .map(|count| (count.reason.clone(), count.count))
            .collect()
    };
    let conversation_text = conversation.to_string();
    let view = bob_watch
        .wait_for(
            "every bad record counted and every good one stored",
            WAIT,
            |view| {
                let counted = view.status.as_ref().map(counts).unwrap_or_default();
                let all_counted = expected
                    .iter()
                    .all(|(reason, count)| counted.get(*reason) == Some(count));
                let stored = view
                    .conversation(&conversation_text)
                    .and_then(|conversation| conversation.last_message.as_ref())
                    .is_some_and(|last| last.body == "good last");
                let redelivered = view
                    .status
                    .as_ref()
                    .and_then(|status| status.inbox)
                    .is_some_and(|inbox| inbox.redelivered == 1);
                all_counted && stored && redelivered
            },
        )
        .await;
    let status = view.status.unwrap();
    assert_eq!(
        counts(&status),
        expected
            .iter()
            .map(|(reason, count)| ((*reason).to_owned(), *count))
            .collect(),
        "exactly the injected rejections"
    );
    // GetStatus says the same.
    assert_eq!(counts(&bob_daemon.status().await), counts(&status));

    // Every good message exactly once, in order; nothing bad shown.
    let history = bob_daemon
        .client()
        .await
        .get_history(pb::GetHistoryRequest {
            conversation_id: conversation_text.clone(),
            anchor: None,
            limit: 500,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let shown: Vec<String> = history.iter().map(|message| message.body.clone()).collect();
    let mut wanted: Vec<String> = (0..=bad.len())
        .map(|index| format!("good {index}"))
        .collect();
    wanted.push(String::from("good last"));
    assert_eq!(shown, wanted);
    let ids: Vec<String> = good_ids
        .iter()
        .map(|id| uuid::Uuid::from_slice(id).unwrap().to_string())
        .collect();
    assert_eq!(
        history
            .iter()
            .map(|message| message.id.clone())
            .collect::<Vec<_>>(),
        ids
    );

    // The rejected records wait in quarantine (all but the replay).
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "{}/{}",
        bob.stack.postgres, bob.database
    ))
    .await
    .unwrap();
    let quarantined: Vec<(String, i32)> =
        sqlx::query_as("SELECT reason, size FROM quarantine ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(quarantined.len(), bad.len(), "{quarantined:?}");
    let oversized = quarantined
        .iter()
        .find(|(reason, _)| reason == "oversized")
        .unwrap();
    assert_eq!(
        oversized.1 as usize,
        MAX_ENVELOPE_BYTES + 1000,
        "the full size is recorded"
    );
}
