//! Channels' figures (issue #15), each with a baseline run in this program
//! against the same broker:
//!
//! - latency: a member's `SendMessage` to the channel → the message's
//!   `MessageAdded` on the stream of the *last* member to get it, one
//!   message at a time (the next once every member has the previous), for
//!   channels of 5 and 20 members (the owner included); against one-to-one
//!   `SendMessage` → the contact's event between the same two daemons
//!   (settled, as `--bench messaging` measures it);
//! - relay rate: the owner says a burst of messages to channels of 10 and
//!   50 members under the default traffic budget → messages per second
//!   until every member has the last; against budget ÷ (2 × recipients ×
//!   bytes per relayed copy), the bytes read from the owner's `data-out`
//!   (2: on the local stack the owner's and the members' clusters are one,
//!   so each copy is paid twice on its budget, into the owner's outbox and
//!   into the member's inbox).
//!
//! Run with `cargo bench -p kircd --bench channels` on a stack that is up
//! (`eval "$(dev/stack env)"`). `KIRC_BENCH_CHANNEL_MESSAGES` (default 50)
//! and `KIRC_BENCH_CHANNEL_BURST` (default 100) change the counts;
//! `KIRC_BENCH_CHANNEL_SIZES` (default `5,20`) and
//! `KIRC_BENCH_RELAY_SIZES` (default `10,50`) the channels' sizes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::{Pacing, count, latencies, ms, send_latency, summarize};
use futures::StreamExt;
use kirc_proto::v1::{self as pb, event::Kind};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::kafka::read_all;
use kirc_testkit::{Actor, Daemon, create_channel, invite_to, join_by, wait_channel};
use prost::Message as _;

fn sizes(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .filter(|size| *size >= 2)
        .collect()
}

/// `members` daemons (the first the owner) in one new channel.
async fn channel_of(members: usize, tag: &str) -> (Vec<Actor>, Vec<Daemon>, String) {
    let mut actors = Vec::with_capacity(members);
    for index in 0..members {
        let mut actor = Actor::new(&format!("{tag}{index}")).await;
        actor.set("messaging.channel_max_members", 100);
        actors.push(actor);
    }
    let mut daemons = Vec::with_capacity(members);
    for actor in &actors {
        daemons.push(Daemon::start(actor).await);
    }
    let name = format!("#{tag}");
    let channel = create_channel(&daemons[0], &name).await;
    let token = invite_to(&daemons[0], &name).await;
    for (index, daemon) in daemons.iter().enumerate().skip(1) {
        join_by(daemon, &token).await;
        wait_channel(daemon, &channel, index + 1, pb::ChannelMembership::Joined).await;
    }
    for daemon in &daemons {
        wait_channel(daemon, &channel, members, pb::ChannelMembership::Joined).await;
    }
    (actors, daemons, channel)
}

/// Event streams of `daemons`, opened now.
async fn streams<'a>(
    daemons: impl IntoIterator<Item = &'a Daemon>,
) -> Vec<tonic::Streaming<pb::Event>> {
    let mut streams = Vec::new();
    for daemon in daemons {
        streams.push(
            daemon
                .client()
                .await
                .subscribe(pb::SubscribeRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    streams
}

/// Reads `stream` until `wanted` messages whose text starts with `prefix`
/// were added; returns when the last came.
async fn until_added(
    stream: &mut tonic::Streaming<pb::Event>,
    prefix: &str,
    wanted: usize,
) -> Instant {
    let mut added = 0;
    while added < wanted {
        let event = tokio::time::timeout(Duration::from_secs(300), stream.next())
            .await
            .expect("a member stalled")
            .unwrap()
            .unwrap();
        if let Some(Kind::MessageAdded(message)) = event.kind
            && message.body.starts_with(prefix)
        {
            added += 1;
        }
    }
    Instant::now()
}

/// A member's message → the last other member's event, one at a time.
async fn channel_latency(daemons: &[Daemon], channel: &str, count: usize) -> Vec<Duration> {
    let sender = &daemons[1];
    let mut client = sender.client().await;
    let mut others = streams(
        daemons
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != 1)
            .map(|(_, daemon)| daemon),
    )
    .await;
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        let text = format!("latency {index} ");
        let start = Instant::now();
        let call = client.send_message(pb::SendMessageRequest {
            to: channel.to_owned(),
            text: text.clone(),
            ..pb::SendMessageRequest::default()
        });
        let arrivals = futures::future::join_all(
            others
                .iter_mut()
                .map(|stream| until_added(stream, &text, 1)),
        );
        let (sent, arrived) = tokio::join!(call, arrivals);
        sent.unwrap();
        let last = arrived.into_iter().max().unwrap();
        samples.push(last - start);
    }
    samples
}

/// The owner says `burst` messages at once; the rate until every member
/// has the last, and the bytes of one relayed copy.
async fn relay_rate(
    actors: &[Actor],
    daemons: &[Daemon],
    channel: &str,
    burst: usize,
) -> (f64, f64) {
    let mut members = streams(&daemons[1..]).await;
    let mut client = daemons[0].client().await;
    let start = Instant::now();
    let started_unix_ms = kirc_proto::unix_ms(std::time::SystemTime::now());
    let sending = async {
        for index in 0..burst {
            client
                .send_message(pb::SendMessageRequest {
                    to: channel.to_owned(),
                    text: format!("burst {index}"),
                    ..pb::SendMessageRequest::default()
                })
                .await
                .unwrap();
        }
    };
    let arrivals = futures::future::join_all(
        members
            .iter_mut()
            .map(|stream| until_added(stream, "burst ", burst)),
    );
    let ((), arrived) = tokio::join!(sending, arrivals);
    let elapsed = arrived.into_iter().max().unwrap() - start;
    let owner = &actors[0];
    // The burst's copies: the relays the owner's kircd wrote since it
    // began (by their create time, this machine's clock).
    let relays: Vec<usize> = read_all(
        &owner.stack.kafka,
        &format!("{}data-out", owner.topic_prefix),
    )
    .iter()
    .filter(|record| record.timestamp_ms >= started_unix_ms)
    .filter(|record| {
        wire::Envelope::decode(record.value.as_slice())
            .is_ok_and(|envelope| envelope.kind == wire::Kind::ChannelRelay as i32)
    })
    .map(|record| record.key.len() + record.value.len())
    .collect();
    let expected = burst * (daemons.len() - 1);
    if relays.len() != expected {
        eprintln!(
            "{} relays written during the burst, {expected} expected",
            relays.len()
        );
    }
    let bytes = relays.iter().sum::<usize>() as f64 / relays.len().max(1) as f64;
    (burst as f64 / elapsed.as_secs_f64(), bytes)
}

#[tokio::main]
async fn main() {
    let messages = count("KIRC_BENCH_CHANNEL_MESSAGES", 50);
    let burst = count("KIRC_BENCH_CHANNEL_BURST", 100);
    common::print_header().await;

    println!(
        "\n| channel | send → last member's event p50 | p99 | one-to-one p50 (same run) | ratio |"
    );
    println!("|---|---|---|---|---|");
    for members in sizes("KIRC_BENCH_CHANNEL_SIZES", "5,20") {
        let (_actors, daemons, channel) = channel_of(members, &format!("lat{members}x")).await;
        let channel_samples = summarize(channel_latency(&daemons, &channel, messages).await);
        // The owner and the first member are contacts: their one-to-one
        // path is the baseline.
        let member = daemons[1].status().await.actor_id;
        let direct = summarize(latencies(
            &send_latency(
                &daemons[0],
                &daemons[1],
                &member,
                messages,
                "one-to-one",
                Pacing::Settled,
            )
            .await,
        ));
        println!(
            "| {members} members | {} | {} | {} | {:.2}× |",
            ms(channel_samples.p50),
            ms(channel_samples.p99),
            ms(direct.p50),
            channel_samples.p50.as_secs_f64() / direct.p50.as_secs_f64()
        );
        for daemon in daemons {
            daemon.stop().await;
        }
    }

    // The budget is per cluster, and on the local stack every actor's
    // cluster is the same broker: the owner pays each copy twice on the one
    // budget, into its own data-out and then into the member's data-in
    // (with members on clusters of their own, as on Aiven, the second is
    // paid on the member's cluster's budget instead).
    println!(
        "\n| channel | owner's relay rate | bytes per relayed copy | budget | budget ÷ (2 × recipients × bytes) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for members in sizes("KIRC_BENCH_RELAY_SIZES", "10,50") {
        let (actors, daemons, channel) = channel_of(members, &format!("rel{members}x")).await;
        let budget = daemons[0]
            .status()
            .await
            .traffic
            .first()
            .map_or(0, |traffic| traffic.budget_bytes_per_second) as f64;
        let (rate, bytes) = relay_rate(&actors, &daemons, &channel, burst).await;
        let bound = budget / (2.0 * (members - 1) as f64 * bytes);
        println!(
            "| {members} members | {rate:.1} msg/s | {bytes:.0} B | {budget:.0} B/s | {bound:.1} msg/s | {:.2}× |",
            rate / bound
        );
        for daemon in daemons {
            daemon.stop().await;
        }
    }
}
