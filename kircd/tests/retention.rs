//! A contact away longer than `data-out`'s retention: the records of the
//! messages waiting for it expire from Kafka, and kircd sends them again from
//! PostgreSQL once it sees that; every message arrives, once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kirc_proto::v1::MessageState;
use kirc_testkit::{Actor, Daemon, add, invite, kafka, send, wait_history};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

const WAIT: Duration = Duration::from_secs(120);
const COUNT: usize = 20;

/// Waits until every partition of `topic` named in `beyond` (partition,
/// offset) no longer holds that offset.
async fn wait_expired(bootstrap: &str, topic: &str, beyond: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let expired = beyond.iter().all(|(partition, offset)| {
            let (low, _) = consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(5))
                .unwrap();
            low > *offset
        });
        if expired {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the records of {topic} never expired"
        );
        // The broker checks retention every second (dev/stack); nothing
        // announces a deletion, so the watermarks are looked at again.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn messages_outliving_data_out_retention_are_sent_again_from_the_database() {
    let mut alice = Actor::new("alice").await;
    alice.set("messaging.outbox_check_interval", "1s");
    let mut bob = Actor::new("bob").await;
    // bob publishes a wrong port: nobody can reach him for now.
    bob.set("public.bootstrap_servers", "127.0.0.1:9");
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    // alice invites; bob adds her (his request reaches her; her answer
    // waits for him like everything else she sends).
    add(&bob_daemon, invite(&alice_daemon).await).await;
    alice_daemon
        .watch()
        .await
        .wait_for("bob at alice", WAIT, |view| {
            view.contact(&bob.actor_id).is_some()
        })
        .await;

    // alice's data-out keeps records for two seconds, in half-second segments.
    let data_out = format!("{}data-out", alice.topic_prefix);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &alice.stack.kafka)
        .create()
        .unwrap();
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&data_out))
                .set("retention.ms", "2000")
                .set("segment.ms", "500")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");

    let mut sent = Vec::new();
    for index in 0..COUNT {
        sent.push(send(&alice_daemon, &bob.actor_id, &format!("while away {index}")).await);
    }
    let conversation = sent[0].conversation_id.clone();
    // alice's daemon goes down (what it had fetched from data-out is gone
    // with it) while bob is still away, for longer than the retention.
    assert!(alice_daemon.stop().await.success());
    let records = kafka::read_all(&alice.stack.kafka, &data_out);
    let last: Vec<(i32, i64)> = [0, 1]
        .into_iter()
        .filter_map(|partition| {
            records
                .iter()
                .filter(|record| record.partition == partition)
                .map(|record| (partition, record.offset))
                .max()
        })
        .collect();
    // A record after the retention rolls the segment that holds them, so
    // that it can be deleted; kircd's delivery skips what it cannot decode.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let producer = kafka::producer(&alice.stack.kafka);
    for partition_key in [b"roll-0".as_slice(), b"roll-1", b"roll-2", b"roll-3"] {
        kafka::produce(&producer, &data_out, partition_key, b"").await;
    }
    wait_expired(&alice.stack.kafka, &data_out, &last).await;

    // bob comes back with his right address; alice starts again.
    assert!(bob_daemon.stop().await.success());
    let reachable = bob.stack.kafka.clone();
    bob.set("public.bootstrap_servers", reachable.as_str());
    let bob_daemon = Daemon::start(&bob).await;
    let alice_daemon = Daemon::start(&alice).await;

    let ids: Vec<String> = sent.iter().map(|message| message.id.clone()).collect();
    let at_bob = wait_history(
        &bob_daemon,
        &conversation,
        "every message at bob",
        WAIT,
        |history| history.len() >= COUNT,
    )
    .await;
    let got: Vec<String> = at_bob.iter().map(|message| message.id.clone()).collect();
    assert_eq!(got, ids, "each message once, in order");
    wait_history(
        &alice_daemon,
        &conversation,
        "all received",
        WAIT,
        |history| {
            history
                .iter()
                .all(|message| message.state >= MessageState::Received as i32)
        },
    )
    .await;
    assert!(
        alice_daemon
            .stderr()
            .contains("messages expired from data-out before their contact could be reached"),
        "alice says what happened:\n{}",
        alice_daemon.stderr()
    );
}
