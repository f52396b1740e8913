//! What the benchmarks share: percentiles, kircd's message paths timed and
//! split into hops, and the socket's round trips; the floors they are
//! compared against are in `floor.rs` (Kafka, pacing) and `pg.rs`.
// Each benchmark uses a part of this module.
#![allow(dead_code)]

pub mod contract;
pub mod floor;
pub mod idle;
pub mod pg;
pub mod proc;
pub mod relay;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use floor::{FloorBetween, Rhythm};

/// The cores this machine offers the benchmark.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A count from the environment, or `default`.
pub fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |quantile: f64| samples[((samples.len() as f64 - 1.0) * quantile).round() as usize];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
    }
}

pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// The client settings kircd uses, so that the baseline differs only in
/// what kircd adds.
pub fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0");
    config
}

pub async fn fresh_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(name, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
}

pub fn consumer(bootstrap: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("socket.nagle.disable", "true")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// One message of [`send_latency`].
pub struct Sample {
    pub id: String,
    /// When the call started, by the wall clock (the daemons' timing marks
    /// use it too).
    pub started: std::time::SystemTime,
    /// From the call to the message's `MessageAdded` on the peer's stream.
    pub elapsed: Duration,
    /// Whether the peer stored the direct path's copy.
    pub direct: bool,
}

/// When [`send_latency`] sends the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// As soon as bob has the previous one: its Kafka copy, receipt and
    /// commits still run beside the next message, on the same two cores.
    BackToBack,
    /// Once alice holds the previous one as RECEIVED: its Kafka copy reached
    /// bob and his receipt came back, so the next message finds both
    /// daemons idle, as a message typed by a person does.
    Settled,
}

/// `SendMessage` from alice to `to`, one message at a time, each until it
/// is on bob's event stream.
pub async fn send_latency(
    alice: &kirc_testkit::Daemon,
    bob: &kirc_testkit::Daemon,
    to: &str,
    count: usize,
    text: &str,
    pacing: Pacing,
) -> Vec<Sample> {
    send_latency_between(alice, bob, to, count, text, pacing, None).await
}

/// [`send_latency`], with the floor's parts timed between settled messages
/// when `floor` is given.
pub async fn send_latency_between(
    alice: &kirc_testkit::Daemon,
    bob: &kirc_testkit::Daemon,
    to: &str,
    count: usize,
    text: &str,
    pacing: Pacing,
    mut floor: Option<&mut FloorBetween>,
) -> Vec<Sample> {
    use futures::StreamExt;
    use kirc_proto::v1::{self as pb, event::Kind};
    let mut client = alice.client().await;
    let mut events = bob
        .client()
        .await
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Only read when settling: a stream nobody reads would fill.
    let mut alice_events = match pacing {
        Pacing::Settled => Some(
            alice
                .client()
                .await
                .subscribe(pb::SubscribeRequest::default())
                .await
                .unwrap()
                .into_inner(),
        ),
        Pacing::BackToBack => None,
    };
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        // Each text is unique, so the event is known by it: the clock stops
        // when bob has the message, whether or not alice's call (which
        // returns once her own outbox has it) has returned yet.
        let text = format!("{text} #{index}");
        let started = std::time::SystemTime::now();
        let start = Instant::now();
        let call = client.send_message(pb::SendMessageRequest {
            to: to.to_owned(),
            text: text.clone(),
            action: false,
            idempotency_key: String::new(),
            reply_to: String::new(),
        });
        let arrival = async {
            loop {
                let event = events.next().await.unwrap().unwrap();
                if let Some(Kind::MessageAdded(message)) = event.kind
                    && message.body == text
                {
                    return (start.elapsed(), message);
                }
            }
        };
        let (sent, (elapsed, message)) = tokio::join!(call, arrival);
        sent.unwrap();
        if let Some(alice_events) = &mut alice_events {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let event = tokio::time::timeout_at(deadline.into(), alice_events.next())
                    .await
                    .expect("alice never saw her message RECEIVED")
                    .unwrap()
                    .unwrap();
                if let Some(Kind::MessageStateChanged(change)) = event.kind
                    && change.message_id == message.id
                    && change.state >= pb::MessageState::Received as i32
                {
                    break;
                }
            }
            if let Some(floor) = floor.as_deref_mut() {
                floor.after_message().await;
            }
        }
        samples.push(Sample {
            id: message.id,
            started,
            elapsed,
            direct: message.direct,
        });
    }
    samples
}

/// The latencies of `samples`.
pub fn latencies(samples: &[Sample]) -> Vec<Duration> {
    samples.iter().map(|sample| sample.elapsed).collect()
}

/// Waits until the inboxes of daemons started by now count their senders'
/// rates themselves: from the second minute after the one they started in
/// (before, each batch asks Valkey, in case an earlier process read some of
/// the minute's records). Latency figures are taken after it: they describe
/// a daemon that runs, not one that has just started.
pub async fn until_rates_are_counted_here() {
    let minute = 60_000;
    let now_ms = kirc_proto::unix_ms(std::time::SystemTime::now());
    let counted_from_ms = (now_ms / minute + 2) * minute;
    let wait = u64::try_from(counted_from_ms - now_ms).unwrap_or(0);
    eprintln!(
        "waiting {:.0} s for the second minute after the start",
        wait as f64 / 1000.0
    );
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The log level that keeps warnings and the timing marks (a line per hop).
pub const HOPS_LOG: &str = "warn,hops=trace";

/// The last step of a latency sample: the message on the peer's stream.
pub const PEER_EVENT: &str = "event on the peer's stream";

/// The timing marks a message passes on the Kafka path, in order: alice's
/// call and write, her own data-out's acknowledgement (produced beside the
/// write; the call answers once both are done, and the mark is then), her
/// delivery worker taking
/// the record (handed over by the send path, or fetched), the produce to
/// bob's data-in acknowledged, bob's fetch, his checks, his write.
pub const KAFKA_HOPS: &[&str] = &[
    "send.called",
    "send.stored",
    "send.acked",
    "delivery.taken",
    "delivery.produced",
    "kafka.arrived",
    "kafka.checked",
    "stored",
];

/// SendMessage → the peer's event over Kafka, timed and broken into hops.
pub struct KafkaPath {
    pub latency: Summary,
    /// The p50 of each of [`KAFKA_HOPS`] and of the event after them.
    pub hops: Vec<(String, Duration)>,
    /// How many messages had every timing mark.
    pub with_every_mark: usize,
    /// The median time from one message's call to the next one's.
    pub spacing: Duration,
}

/// `count` messages from `from`'s daemon to `to` (whose daemon is `to_daemon`),
/// paced by `pacing`, as a [`KafkaPath`], with `floor`'s parts timed
/// between the messages if given; both daemons must log the hops
/// ([`HOPS_LOG`]).
pub async fn kafka_path(
    from: &kirc_testkit::Daemon,
    to_daemon: &kirc_testkit::Daemon,
    to: &str,
    count: usize,
    text: &str,
    pacing: Pacing,
    floor: Option<&mut FloorBetween>,
) -> KafkaPath {
    let samples = send_latency_between(from, to_daemon, to, count, text, pacing, floor).await;
    let (hops, with_every_mark) = hop_breakdown(
        &samples,
        &[from.stderr(), to_daemon.stderr()],
        KAFKA_HOPS,
        PEER_EVENT,
    );
    KafkaPath {
        latency: summarize(latencies(&samples)),
        hops,
        with_every_mark,
        spacing: spacing(&samples),
    }
}

/// The median time from one sample's start to the next one's.
pub fn spacing(samples: &[Sample]) -> Duration {
    let gaps: Vec<Duration> = samples
        .windows(2)
        .filter_map(|pair| pair[1].started.duration_since(pair[0].started).ok())
        .collect();
    if gaps.is_empty() {
        return Duration::ZERO;
    }
    summarize(gaps).p50
}

/// Where the time of `samples` went: for each hop of `hops` (timing marks
/// of the sending and the receiving daemon, in the order a message passes
/// them), the p50 of the time since the previous one, from the call's
/// start to the sample's end (named `end`: the peer's event, say). Only
/// messages with every mark count. Returns (hop, p50) rows and how many
/// messages had every mark.
pub fn hop_breakdown(
    samples: &[Sample],
    logs: &[String],
    hops: &[&str],
    end: &str,
) -> (Vec<(String, Duration)>, usize) {
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;
    let mut marks: HashMap<(String, uuid::Uuid), u128> = HashMap::new();
    for log in logs {
        for mark in kircd::backends::hops::parse(log) {
            marks.entry((mark.hop, mark.id)).or_insert(mark.at_micros);
        }
    }
    let mut steps: Vec<Vec<Duration>> = vec![Vec::new(); hops.len() + 1];
    let mut complete = 0;
    for sample in samples {
        let Ok(id) = sample.id.parse::<uuid::Uuid>() else {
            continue;
        };
        let start = sample
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let Some(times) = hops
            .iter()
            .map(|hop| marks.get(&((*hop).to_owned(), id)).copied())
            .collect::<Option<Vec<u128>>>()
        else {
            continue;
        };
        complete += 1;
        let end = start + sample.elapsed.as_micros();
        let mut previous = start;
        for (step, at) in times.iter().chain(std::iter::once(&end)).enumerate() {
            // Two processes' clocks are one clock here, read a few µs apart:
            // a step that comes out negative is 0.
            let micros = at.saturating_sub(previous);
            steps[step].push(Duration::from_micros(micros as u64));
            previous = previous.max(*at);
        }
    }
    let names = hops
        .iter()
        .map(|hop| (*hop).to_owned())
        .chain(std::iter::once(end.to_owned()));
    let rows = names
        .zip(steps)
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(name, samples)| (name, summarize(samples).p50))
        .collect();
    (rows, complete)
}

/// Round trips of the cheapest call on the socket (GetStatus): `samples`
/// of them, after `warmup` that are not kept; back to back, or one every
/// `rhythm` ([`Rhythm`]).
pub async fn get_status_round_trips(
    daemon: &kirc_testkit::Daemon,
    warmup: usize,
    samples: usize,
    rhythm: Option<Duration>,
) -> Vec<Duration> {
    let mut client = daemon.client().await;
    let mut kept = Vec::with_capacity(samples);
    let mut rhythm = Rhythm::new(rhythm);
    for round in 0..warmup + samples {
        rhythm.wait().await;
        let start = Instant::now();
        client
            .get_status(kirc_proto::v1::GetStatusRequest {})
            .await
            .unwrap();
        if round >= warmup {
            kept.push(start.elapsed());
        }
    }
    kept
}

/// Whether `status` shows the direct path to `contact` connected.
pub fn connected(status: &kirc_proto::v1::Status, contact: &kirc_testkit::Actor) -> bool {
    status.direct_paths.iter().any(|path| {
        path.actor_id == contact.actor_id
            && path.state == kirc_proto::v1::DirectPathState::Connected as i32
    })
}

/// Polls both daemons until each shows the channel to the other connected.
pub async fn wait_connected(
    a: (&kirc_testkit::Actor, &kirc_testkit::Daemon),
    b: (&kirc_testkit::Actor, &kirc_testkit::Daemon),
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (at_a, at_b) = (a.1.status().await, b.1.status().await);
        if connected(&at_a, b.0) && connected(&at_b, a.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the direct path did not open: {:?} / {:?}",
            at_a.direct_paths,
            at_b.direct_paths
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The line each benchmark starts with: which kircd, and whether the
/// stack's PostgreSQL flushes each commit to disk, which every figure
/// with a write in it depends on (`dev/stack status` says it too).
pub async fn print_header() {
    use sqlx::Connection as _;
    let stack = kirc_testkit::Stack::from_env();
    let mut connection = sqlx::PgConnection::connect(&format!("{}/postgres", stack.postgres))
        .await
        .unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let synchronous: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let mode = if fsync == "on" && synchronous == "on" {
        "durable"
    } else {
        "NOT durable"
    };
    println!(
        "kircd {} at {}; PostgreSQL commits: {mode} (fsync={fsync}, synchronous_commit={synchronous})",
        env!("CARGO_PKG_VERSION"),
        kirc_testkit::bin("kircd").display()
    );
}

/// Fills `topic` (a data-in) with `count` chat envelopes from `from` to
/// `to`, texts `"{tag} {index}"`, as fast as the broker takes them.
pub async fn fill_inbox(
    bootstrap: &str,
    topic: &str,
    from: &kircd::crypto::identity::Identity,
    to: &kircd::crypto::identity::Identity,
    count: usize,
    tag: &str,
) {
    use kirc_proto::wire::v1 as wire;
    use kircd::crypto::envelope;
    use prost::Message as _;
    let producer = bulk_producer(bootstrap);
    let conversation = envelope::conversation_id(from.id(), to.id());
    let pair = envelope::PairKey::new(from, &to.box_key());
    let mut deliveries = Vec::with_capacity(count);
    for index in 0..count {
        let bytes = envelope::seal(
            from,
            to.id(),
            &pair,
            wire::Kind::Chat,
            envelope::new_message_id(),
            &wire::ChatPayload {
                text: format!("{tag} {index}"),
                action: false,
                ..wire::ChatPayload::default()
            }
            .encode_to_vec(),
        );
        deliveries.push(
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(conversation.as_bytes().as_slice())
                        .payload(&bytes),
                )
                .map_err(|(err, _)| err)
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
}

/// Waits on `daemon`'s event stream until `count` messages whose text
/// starts with `"{tag} "` were added.
pub async fn wait_added(daemon: &kirc_testkit::Daemon, count: usize, tag: &str) {
    use futures::StreamExt;
    use kirc_proto::v1::{self as pb, event::Kind};
    let prefix = format!("{tag} ");
    let mut events = daemon
        .client()
        .await
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut added = 0usize;
    while added < count {
        let event = tokio::time::timeout(Duration::from_secs(120), events.next())
            .await
            .expect("ingest stalled")
            .unwrap()
            .unwrap();
        if let Some(Kind::MessageAdded(message)) = &event.kind
            && message.body.starts_with(&prefix)
        {
            added += 1;
        }
    }
}

/// A producer for filling topics fast.
pub fn bulk_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}
