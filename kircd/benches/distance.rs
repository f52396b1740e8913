//! kircd where its users run it: every backend a round trip away. Each
//! connection kircd (and the baselines) open to Kafka, PostgreSQL and Valkey
//! goes through a relay that holds every byte `KIRC_BENCH_DISTANCE_MS / 2`
//! in each direction (default 30 ms round trip; see `common/relay.rs` for
//! why a relay and not netem). Kafka's `DISTANT` listener advertises the
//! relay's port, so the connections a client opens after the bootstrap
//! cross the distance too. PostgreSQL commits durably (the stack's default;
//! the header line says which mode ran).
//!
//! Figures, each against the round trip measured through the same relay:
//!
//! - start to READY;
//! - `SendMessage` call time (goal ≤ 2 round trips) and `SendMessage` →
//!   peer's event, one message at a time, against raw rdkafka produce →
//!   consume through the relay;
//! - ingest of a pre-filled inbox from READY, as the messaging benchmark
//!   measures it (goal ≥ 10,000 messages/s: batching must hide the
//!   distance);
//! - the most connections each daemon held to PostgreSQL (the free tier
//!   allows 20 in all).
//!
//! Run with `dev/bench` or `cargo bench -p kircd --bench distance` on the
//! local stack; `KIRC_BENCH_MESSAGES` and `KIRC_BENCH_INGEST` change the
//! counts (default 200 and 20,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::floor::raw_latency;
use common::relay::{self, Relay};
use common::{
    HOPS_LOG, Pacing, Sample, count, fill_inbox, hop_breakdown, kafka_path, latencies, ms,
    summarize, wait_added,
};
use kirc_proto::v1 as pb;
use kirc_testkit::{Actor, Daemon, befriend};
use kircd::crypto::identity::Identity;
use sqlx::Connection as _;

/// The relays' own ports: the stack's plus 10,000 (PostgreSQL 25432,
/// Valkey 26379); Kafka's is the one its `DISTANT` listener advertises.
const RELAY_PORT_OFFSET: u16 = 10_000;

struct Distance {
    kafka: Relay,
    postgres: Relay,
    valkey: Relay,
    round_trip: Duration,
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|err| panic!("{text} is not host:port: {err}"))
}

/// The host:port of a URL such as `postgres://user:pw@127.0.0.1:15432`.
fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    addr(host.split('/').next().unwrap())
}

fn relayed(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + RELAY_PORT_OFFSET)
}

async fn distance(stack: &kirc_testkit::Stack, round_trip: Duration) -> Distance {
    let one_way = round_trip / 2;
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run under dev/stack env"))
    };
    let postgres = url_addr(&stack.postgres);
    let valkey = url_addr(&stack.valkey);
    Distance {
        kafka: relay::start(
            addr(&var("KIRC_STACK_KAFKA_DISTANT_RELAY")),
            addr(&var("KIRC_STACK_KAFKA_DISTANT")),
            one_way,
        )
        .await,
        postgres: relay::start(relayed(postgres), postgres, one_way).await,
        valkey: relay::start(relayed(valkey), valkey, one_way).await,
        round_trip,
    }
}

/// The timing marks of a `SendMessage` call, in order.
const CALL_HOPS: &[&str] = &["send.called", "send.stored", "send.acked"];

/// An actor whose kircd reaches every backend through the relays.
async fn far_actor(name: &str, distance: &Distance) -> Actor {
    let mut actor = Actor::new(name).await;
    let postgres = format!(
        "postgres://kirc:kirc@{}/{}",
        distance.postgres.addr, actor.database
    );
    actor
        .as_users_run_it()
        // Timing marks for the latency figures' steps.
        .set("log.level", HOPS_LOG)
        .set("kafka.bootstrap_servers", distance.kafka.addr.to_string())
        .set("postgres.url", postgres)
        .set("valkey.url", format!("redis://{}/0", distance.valkey.addr));
    actor
}

/// Round trips of `SELECT 1` to PostgreSQL through the relay.
async fn postgres_round_trips(distance: &Distance, database: &str, count: usize) -> Vec<Duration> {
    let url = format!("postgres://kirc:kirc@{}/{database}", distance.postgres.addr);
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .unwrap();
        samples.push(start.elapsed());
    }
    samples
}

/// Samples, every 50 ms until dropped, how many connections the server has
/// open to each of `databases` (directly, not through the relay), keeping
/// the most seen for each.
struct PoolWatch {
    most: Vec<Arc<AtomicI64>>,
    _stop: tokio_util::sync::DropGuard,
}

async fn watch_pools(stack: &kirc_testkit::Stack, databases: &[&str]) -> PoolWatch {
    let mut connection = sqlx::PgConnection::connect(&format!("{}/postgres", stack.postgres))
        .await
        .unwrap();
    let names: Vec<String> = databases.iter().map(|name| (*name).to_owned()).collect();
    let most: Vec<Arc<AtomicI64>> = names.iter().map(|_| Arc::default()).collect();
    let stop = tokio_util::sync::CancellationToken::new();
    let (cancelled, seen) = (stop.clone(), most.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                () = cancelled.cancelled() => return,
                _ = every.tick() => {}
            }
            for (name, most) in names.iter().zip(&seen) {
                let open: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                        .bind(name)
                        .fetch_one(&mut connection)
                        .await
                        .unwrap();
                most.fetch_max(open, Ordering::Relaxed);
            }
        }
    });
    PoolWatch {
        most,
        _stop: stop.drop_guard(),
    }
}

#[tokio::main]
async fn main() {
    let messages = count("KIRC_BENCH_MESSAGES", 200);
    let ingest = count("KIRC_BENCH_INGEST", 20_000);
    let round_trip = Duration::from_millis(count("KIRC_BENCH_DISTANCE_MS", 30) as u64);
    common::print_header().await;
    let stack = kirc_testkit::Stack::from_env();
    let distance = distance(&stack, round_trip).await;

    let alice = far_actor("alice", &distance).await;
    let mut bob = far_actor("bob", &distance).await;
    let measured_round_trip = summarize(postgres_round_trips(&distance, &alice.database, 50).await);
    let pools = watch_pools(&stack, &[&alice.database, &bob.database]).await;

    let mut starts = Vec::new();
    let started = Instant::now();
    let alice_daemon = Daemon::start(&alice).await;
    starts.push(started.elapsed());
    let started = Instant::now();
    let bob_daemon = Daemon::start(&bob).await;
    starts.push(started.elapsed());
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let text = "a typical chat line of about sixty bytes, give or take a few";
    common::until_rates_are_counted_here().await;
    let raw = summarize(raw_latency(&distance.kafka.addr.to_string(), messages, 220, None).await);
    // The call alone: each returns once the message is in alice's own
    // data-out, as the TUI sees it.
    let mut client = alice_daemon.client().await;
    let mut calls = Vec::with_capacity(messages);
    for index in 0..messages {
        let (started, start) = (SystemTime::now(), Instant::now());
        let sent = client
            .send_message(pb::SendMessageRequest {
                to: bob.actor_id.clone(),
                text: format!("{text} call #{index}"),
                action: false,
                idempotency_key: String::new(),
                reply_to: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        calls.push(Sample {
            id: sent.id,
            started,
            elapsed: start.elapsed(),
            direct: false,
        });
    }
    let (call_hops, _) = hop_breakdown(
        &calls,
        &[alice_daemon.stderr()],
        CALL_HOPS,
        "the answer on the socket",
    );
    let calls = summarize(latencies(&calls));
    let path = kafka_path(
        &alice_daemon,
        &bob_daemon,
        &bob.actor_id,
        messages,
        text,
        Pacing::Settled,
        None,
    )
    .await;
    let (path_hops, to_event) = (path.hops, path.latency);

    // Ingest: bob stops; his data-in fills (directly: the fill is not
    // measured); he starts behind the relays and reads it all.
    assert!(bob_daemon.stop().await.success());
    let alice_keys = Identity::load(&alice.dir.path().join("identity.key")).unwrap();
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    fill_inbox(
        &stack.kafka,
        &format!("{}data-in", bob.topic_prefix),
        &alice_keys,
        &bob_keys,
        ingest,
        "ingest",
    )
    .await;
    bob.set("presence.rate_limit", 1_000_000);
    // The ingest runs without the timing marks (a line per message).
    bob.set("log.level", "warn");
    let ingest_start = Instant::now();
    let bob_daemon = Daemon::start(&bob).await;
    let ingest_ready = ingest_start.elapsed();
    wait_added(&bob_daemon, ingest, "ingest").await;
    let ingest_elapsed = ingest_start.elapsed();
    assert!(bob_daemon.stop().await.success());
    assert!(alice_daemon.stop().await.success());
    let most: Vec<i64> = pools
        .most
        .iter()
        .map(|most| most.load(Ordering::Relaxed))
        .collect();

    let rtt = measured_round_trip.p50;
    let in_rtts = |duration: Duration| duration.as_secs_f64() / rtt.as_secs_f64();
    println!();
    println!(
        "Backends {} ms away (a `SELECT 1` through the relay: p50 {}, p99 {}).",
        distance.round_trip.as_millis(),
        ms(measured_round_trip.p50),
        ms(measured_round_trip.p99)
    );
    println!();
    println!("| figure | p50 | p99 | p50 in round trips | goal |");
    println!("|---|---|---|---|---|");
    let starts = summarize(starts);
    println!(
        "| start to READY (2 starts) | {} | {} | {:.1} | — |",
        ms(starts.p50),
        ms(starts.p99),
        in_rtts(starts.p50)
    );
    println!(
        "| `SendMessage` call ({messages} calls) | {} | {} | {:.1} | ≤ 2 |",
        ms(calls.p50),
        ms(calls.p99),
        in_rtts(calls.p50)
    );
    println!(
        "| `SendMessage` → peer's event, settled ({messages} messages) | {} | {} | {:.1} | — |",
        ms(to_event.p50),
        ms(to_event.p99),
        in_rtts(to_event.p50)
    );
    println!(
        "| raw rdkafka produce → consume through the relay | {} | {} | {:.1} | — |",
        ms(raw.p50),
        ms(raw.p99),
        in_rtts(raw.p50)
    );
    for (title, hops) in [
        ("The call's steps", &call_hops),
        ("The path's hops (settled)", &path_hops),
    ] {
        println!();
        println!("{title}, p50 of each in ms and in round trips:");
        println!();
        println!("| step | p50 | round trips |");
        println!("|---|---|---|");
        for (hop, p50) in hops {
            println!("| {hop} | {} | {:.2} |", ms(*p50), in_rtts(*p50));
        }
    }
    println!();
    println!(
        "ingest of {ingest} pre-filled envelopes (from READY, {:.2} s after the start): {:.0} messages/s ({:.1} s; from the start {:.0}/s; goal ≥ 10,000/s)",
        ingest_ready.as_secs_f64(),
        ingest as f64 / (ingest_elapsed - ingest_ready).as_secs_f64(),
        (ingest_elapsed - ingest_ready).as_secs_f64(),
        ingest as f64 / ingest_elapsed.as_secs_f64()
    );
    println!(
        "most PostgreSQL connections held: alice {}, bob {} (each pool at its default size, 8; the free tier allows 20)",
        most[0], most[1]
    );
}
