//! The access model Aiven users get, enforced by Kafka's StandardAuthorizer
//! on the local SASL_SSL listener (`kirc_testkit::aiven`): what the public,
//! write-only credential in every profile can and cannot do, what kircd's
//! own user can and cannot do, the public user's producer quota, and two
//! actors chatting over it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kirc_proto::v1::MessageState;
use kirc_testkit::aiven::{Access, PUBLIC_PRODUCER_BYTE_RATE, aiven_actor};
use kirc_testkit::{Actor, Daemon, Stack, befriend, incoming, kafka, send, wait_history};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(10);

fn sasl(stack: &Stack, user: &str, password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &stack.kafka_sasl)
        .set("security.protocol", "sasl_ssl")
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", stack.ca_file.display().to_string());
    config
}

fn public(stack: &Stack, access: &Access) -> ClientConfig {
    sasl(stack, &access.public_user, &access.public_password)
}

fn kircd_user(stack: &Stack, access: &Access) -> ClientConfig {
    sasl(stack, &access.kircd_user, &access.kircd_password)
}

async fn produce(config: &ClientConfig, topic: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = config
        .clone()
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    producer
        .send(FutureRecord::to(topic).key("k").payload("v"), TIMEOUT)
        .await
        .map(drop)
        .map_err(|(err, _)| err)
}

fn code(err: &KafkaError) -> Option<RDKafkaErrorCode> {
    err.rdkafka_error_code()
}

/// Reading both partitions of `topic` from the start, committing nothing:
/// `Ok(true)` if a record came, `Ok(false)` if none came within the timeout
/// (the topic holds records: see `fill`), `Err` for a refusal. A librdkafka
/// consumer needs a group id even so and finds its coordinator first: for a
/// user without any group ACL the refusal may come from the group before the
/// topic is asked.
fn fetch(config: &ClientConfig, group: &str, topic: &str) -> Result<bool, KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in [0, 1] {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(err)) => return Err(err),
            Some(Ok(_)) => return Ok(true),
            None => {}
        }
    }
    Ok(false)
}

/// Asserts that `config`'s user reads nothing of `topic`: refused, or
/// nothing delivered though records are there.
fn cannot_read(config: &ClientConfig, group: &str, topic: &str) {
    match fetch(config, group, topic) {
        Ok(true) => panic!("{topic}: read"),
        Ok(false) => {}
        Err(err) => assert!(
            matches!(
                code(&err),
                Some(
                    RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::GroupAuthorizationFailed
                )
            ),
            "{topic}: {err}"
        ),
    }
}

/// Puts records in both partitions of each topic, with the admin listener.
async fn fill(stack: &Stack, topics: &[String]) {
    let producer = kafka::producer(&stack.kafka);
    for topic in topics {
        for key in 0..8u8 {
            kafka::produce(&producer, topic, &[key], b"present").await;
        }
    }
}

/// Joining `group` to read `topic`.
fn join(config: &ClientConfig, group: &str, topic: &str) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(err)) => return Err(err),
            Some(Ok(_)) => return Ok(()),
            None if !consumer.assignment().unwrap().elements().is_empty() => return Ok(()),
            None => {}
        }
    }
    Ok(())
}

/// Every topic `config`'s user can see.
fn visible_topics(config: &ClientConfig) -> HashSet<String> {
    let consumer: BaseConsumer = config.clone().create().unwrap();
    consumer
        .fetch_metadata(None, TIMEOUT)
        .unwrap()
        .topics()
        .iter()
        .map(|topic| topic.name().to_owned())
        .collect()
}

async fn create_and_delete(
    config: &ClientConfig,
    existing: &str,
) -> (RDKafkaErrorCode, RDKafkaErrorCode) {
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let created = admin
        .create_topics(
            &[NewTopic::new(
                "t.intruder.created",
                1,
                TopicReplication::Fixed(1),
            )],
            &options,
        )
        .await
        .unwrap();
    let deleted = admin.delete_topics(&[existing], &options).await.unwrap();
    let refused = |result: &Result<String, (String, RDKafkaErrorCode)>| match result {
        Ok(name) => panic!("{name}: allowed"),
        Err((_, code)) => *code,
    };
    (refused(&created[0]), refused(&deleted[0]))
}

fn topics_of(actor: &Actor, roles: &[&str]) -> HashSet<String> {
    roles
        .iter()
        .map(|role| format!("{}{role}", actor.topic_prefix))
        .collect()
}

const ALL: [&str; 4] = ["data-in", "data-out", "rpc-in", "rpc-out"];

#[tokio::test]
async fn the_public_credential_writes_to_the_inboxes_and_does_nothing_else() {
    let mut alice = Actor::new("alice").await;
    let alice_access = aiven_actor(&mut alice);
    let mut bob = Actor::new("bob").await;
    let bob_access = aiven_actor(&mut bob);
    let stack = alice.stack.clone();
    let anyone = public(&stack, &alice_access);
    let topic = |role: &str| format!("{}{role}", alice.topic_prefix);

    // It may write to both inboxes.
    for role in ["data-in", "rpc-in"] {
        produce(&anyone, &topic(role)).await.unwrap();
    }
    // It may not write to the outboxes.
    for role in ["data-out", "rpc-out"] {
        let err = produce(&anyone, &topic(role)).await.unwrap_err();
        assert_eq!(
            code(&err),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{role}: {err}"
        );
    }
    // It may not read any topic.
    let all: Vec<String> = ALL.iter().map(|role| topic(role)).collect();
    fill(&stack, &all).await;
    for name in &all {
        cannot_read(&anyone, "kirc-test-reader", name);
    }
    // It may not join kircd's groups (nor any other).
    for group in [
        format!("kircd.{}.inbox", alice.actor_id),
        String::from("mine"),
    ] {
        let err = join(&anyone, &group, &topic("data-in")).expect_err(&group);
        assert_eq!(
            code(&err),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed),
            "{group}: {err}"
        );
    }
    // …nor describe them.
    let consumer: BaseConsumer = anyone.create().unwrap();
    let described =
        consumer.fetch_group_list(Some(&format!("kircd.{}.inbox", alice.actor_id)), TIMEOUT);
    assert!(
        described
            .as_ref()
            .map_or(true, |list| list.groups().iter().all(|group| {
                group.state().is_empty() && group.members().is_empty()
            }))
            || matches!(&described, Err(err) if code(err) == Some(RDKafkaErrorCode::GroupAuthorizationFailed)),
        "{:?}",
        described.as_ref().map(|list| list.groups().len())
    );
    // It may neither create nor delete topics.
    let (created, deleted) = create_and_delete(&anyone, &topic("data-in")).await;
    for (what, code) in [("create", created), ("delete", deleted)] {
        assert!(
            matches!(
                code,
                RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
            ),
            "{what}: {code:?}"
        );
    }
    // It sees the two inboxes and nothing of anyone else's.
    assert_eq!(
        visible_topics(&anyone),
        topics_of(&alice, &["data-in", "rpc-in"])
    );
    assert_eq!(
        visible_topics(&kircd_user(&stack, &alice_access)),
        topics_of(&alice, &ALL),
        "kircd's user sees its four topics only"
    );

    // kircd's own user has what kircd needs and no more: not bob's topics,
    // not bob's groups, no topic of its own making.
    let kircd = kircd_user(&stack, &alice_access);
    let bob_topic = format!("{}data-in", bob.topic_prefix);
    let err = produce(&kircd, &bob_topic).await.unwrap_err();
    assert_eq!(
        code(&err),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{err}"
    );
    // With a group it may use, so that the topic's ACLs decide.
    let own_group = format!("kircd.{}.probe", alice.actor_id);
    fill(&stack, std::slice::from_ref(&bob_topic)).await;
    cannot_read(&kircd, &own_group, &bob_topic);
    // …while its own topics it reads (the same probe, to show it can fail).
    assert!(fetch(&kircd, &own_group, &topic("data-in")).unwrap());
    let err = join(
        &kircd,
        &format!("kircd.{}.inbox", bob.actor_id),
        &topic("data-in"),
    )
    .unwrap_err();
    assert_eq!(
        code(&err),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{err}"
    );
    let (created, _) = create_and_delete(&kircd, &format!("{}rpc-out", bob.topic_prefix)).await;
    assert!(
        matches!(
            created,
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        ),
        "{created:?}"
    );
    // Bob's public credential cannot reach alice's inboxes either.
    let err = produce(&public(&stack, &bob_access), &topic("data-in"))
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{err}"
    );
}

#[tokio::test]
async fn a_flood_with_the_public_credential_is_held_to_its_quota() {
    const SECONDS: u64 = 20;
    /// Kafka lets the first burst through and throttles the requests after
    /// it; the rate is measured after this.
    const BURST_MS: i64 = 3000;
    let mut alice = Actor::new("alice").await;
    let access = aiven_actor(&mut alice);
    let stack = alice.stack.clone();
    let data_in = format!("{}data-in", alice.topic_prefix);
    // A small client queue: once the broker throttles, sends wait here
    // instead of piling up minutes of records.
    let producer: FutureProducer = public(&stack, &access)
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("queue.buffering.max.kbytes", "64")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    // As fast as the client goes, for SECONDS: far above the quota.
    let value = vec![0x5a; 1000];
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut pending = Vec::new();
    while Instant::now() < deadline {
        match producer.send_result(FutureRecord::to(&data_in).key("f").payload(&value)) {
            Ok(delivery) => pending.push(delivery),
            // The client's own queue is full: the broker is throttling.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
    // The broker's append times say how fast it took them.
    let records = kafka::read_all(&stack.kafka, &data_in);
    let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
    for record in &records {
        *per_second.entry(record.timestamp_ms / 1000).or_default() +=
            (record.key.len() + record.value.len()) as u64;
    }
    let first = records
        .iter()
        .map(|record| record.timestamp_ms)
        .min()
        .unwrap();
    let last = records
        .iter()
        .map(|record| record.timestamp_ms)
        .max()
        .unwrap();
    let bytes: u64 = per_second.values().sum();
    let span = (last - first).max(1) as f64 / 1000.0;
    let rate = bytes as f64 / span;
    eprintln!(
        "public flood: {} records; after the first {BURST_MS} ms, {bytes} bytes over {span:.1} s = {rate:.0} B/s (quota {PUBLIC_PRODUCER_BYTE_RATE} B/s); per second: {per_second:?}",
        records.len()
    );
    assert!(
        span >= (SECONDS - 5) as f64,
        "the flood lasted {span:.1} s after its burst"
    );
    assert!(
        rate <= PUBLIC_PRODUCER_BYTE_RATE as f64 * 1.3,
        "{rate:.0} B/s against a quota of {PUBLIC_PRODUCER_BYTE_RATE}"
    );
}

#[tokio::test]
async fn two_aiven_actors_chat_over_the_authorised_listener() {
    const COUNT: usize = 100;
    let mut alice = Actor::new("alice").await;
    aiven_actor(&mut alice);
    let mut bob = Actor::new("bob").await;
    aiven_actor(&mut bob);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut conversation = String::new();
    for index in 0..COUNT {
        conversation = send(&alice_daemon, &bob.actor_id, &format!("a{index}"))
            .await
            .conversation_id;
        send(&bob_daemon, &alice.actor_id, &format!("b{index}")).await;
    }
    for (daemon, theirs) in [(&bob_daemon, "a"), (&alice_daemon, "b")] {
        let history = wait_history(
            daemon,
            &conversation,
            "every message, received",
            WAIT,
            |history| {
                incoming(history).len() == COUNT
                    && history
                        .iter()
                        .filter(|message| message.outgoing)
                        .all(|message| message.state >= MessageState::Received as i32)
            },
        )
        .await;
        let wanted: Vec<String> = (0..COUNT).map(|index| format!("{theirs}{index}")).collect();
        assert_eq!(incoming(&history), wanted);
    }
    // Nothing was refused along the way.
    for daemon in [&alice_daemon, &bob_daemon] {
        assert!(
            !daemon.stderr().contains("Authorization"),
            "{}",
            daemon.stderr()
        );
    }
}
