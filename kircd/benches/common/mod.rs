//! What the benchmarks share: percentiles, and the raw rdkafka produce →
//! consume baseline that kircd's latency figures are compared against.
// Each benchmark uses a part of this module.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

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

/// Raw produce → consume latency of `count` records of `size` bytes, one at
/// a time.
pub async fn raw_latency(bootstrap: &str, count: usize, size: usize) -> Vec<Duration> {
    let topic = format!("bench.raw.{}", uuid::Uuid::now_v7());
    fresh_topic(bootstrap, &topic).await;
    let producer: FutureProducer = client(bootstrap).create().unwrap();
    let consumer = consumer(bootstrap, &topic);
    let payload = vec![b'x'; size];
    // Warm up until the consumer has its partitions.
    producer
        .send(
            FutureRecord::to(&topic).key("warm").payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    consumer.recv().await.unwrap();
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        let key = index.to_string();
        let start = Instant::now();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        loop {
            let message = consumer.recv().await.unwrap();
            if message.key() == Some(key.as_bytes()) {
                break;
            }
        }
        samples.push(start.elapsed());
    }
    samples
}

/// alice's `SendMessage` → the message's `MessageAdded` on bob's stream,
/// one message at a time (the next once both the call returned and the
/// event came); also how many arrived first over the direct path.
pub async fn send_latency(
    alice: &kirc_testkit::Daemon,
    bob: &kirc_testkit::Daemon,
    to: &str,
    count: usize,
    text: &str,
) -> (Vec<Duration>, usize) {
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
    let mut samples = Vec::with_capacity(count);
    let mut direct = 0;
    for index in 0..count {
        // Each text is unique, so the event is known by it: the clock stops
        // when bob has the message, whether or not alice's call (which
        // returns once her own outbox has it) has returned yet.
        let text = format!("{text} #{index}");
        let start = Instant::now();
        let call = client.send_message(pb::SendMessageRequest {
            to: to.to_owned(),
            text: text.clone(),
            action: false,
            idempotency_key: String::new(),
        });
        let arrival = async {
            loop {
                let event = events.next().await.unwrap().unwrap();
                if let Some(Kind::MessageAdded(message)) = &event.kind
                    && message.body == text
                {
                    return (start.elapsed(), message.direct);
                }
            }
        };
        let (sent, (elapsed, first_direct)) = tokio::join!(call, arrival);
        sent.unwrap();
        direct += usize::from(first_direct);
        samples.push(elapsed);
    }
    (samples, direct)
}

/// A numeric field of `/proc/<pid>/<file>` (`VmRSS:` of `status`, say).
pub fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap()
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields count from after its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
