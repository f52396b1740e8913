//! The messaging core's figures (issue #3), each with a baseline run in this
//! program against the same broker:
//!
//! - latency: alice's `SendMessage` call → the message's `MessageAdded` event
//!   on bob's `Subscribe` stream, one message at a time, against raw rdkafka
//!   produce → consume of a record of the same size (same client settings);
//! - ingest: bob's daemon started on a `data-in` pre-filled with valid
//!   envelopes → messages stored and emitted per second from his READY
//!   (nothing is stored before it: the count is of events on a stream
//!   opened after it; the time from the start is printed beside), against
//!   a raw consumer reading as many records; once with the traffic budget lifted
//!   (the pipeline) and once under the default budget, with the bytes of
//!   the receipts bob produced, which that budget paces;
//! - junk: bob's daemon started on inboxes pre-filled with random records
//!   (1–4,096 bytes, as a flood by whoever holds the public credential) →
//!   records rejected, counted and quarantined (within its bounds) per
//!   second, against a raw consumer reading the same records;
//! - wire bytes per message against the plaintext size.
//!
//! Run with `dev/bench`. `KIRC_BENCH_MESSAGES`, `KIRC_BENCH_INGEST` and
//! `KIRC_BENCH_JUNK` change the counts (default 1,000, 100,000 and 50,000);
//! `KIRC_BENCH_PAUSE_MS` the pause before each settled message and each of
//! the floor's parts timed between them (default 5);
//! `KIRC_BENCH_PERF=<folder>` records a whole-machine profile of each ingest
//! there (`perf report -i <folder>/ingest-<budget>.data --sort comm`);
//! `KIRC_BENCH_BOB_LOG` and `KIRC_BENCH_JUNK_LOG` (a log filter such as
//! `warn,kircd::transport::inbox=debug`) print the ingest's and the junk
//! run's daemon log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::contract::ChatPair;
use common::floor::{FloorBetween, raw_latency};
use common::idle::Profile;
use common::pg::{CommitRow, pg_commits};
use common::proc::{CpuUse, cpu_snapshot};
use common::{
    HOPS_LOG, Pacing, bulk_producer, consumer, cores, count, fill_inbox, kafka_path, ms, summarize,
    wait_added,
};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::{Actor, Daemon, befriend, random_records};
use kircd::crypto::identity::Identity;
use rdkafka::producer::FutureRecord;

#[tokio::main]
async fn main() {
    common::floor::serve_echo_if_asked();
    common::contract::serve_grpc_if_asked().await;
    let messages = count("KIRC_BENCH_MESSAGES", 1000);
    let ingest = count("KIRC_BENCH_INGEST", 100_000);
    let junk = count("KIRC_BENCH_JUNK", 50_000);
    common::print_header().await;
    let mut alice = Actor::new("alice").await;
    // The latency figure's timing marks (a log line per hop) on top of
    // warnings; the ingest runs without them.
    alice.as_users_run_it().set("log.level", HOPS_LOG);
    let mut bob = Actor::new("bob").await;
    bob.as_users_run_it().set("log.level", HOPS_LOG);
    // The ingest figure measures the inbox pipeline on 100,000 envelopes
    // written within seconds, which the default per-contact rate (3,000 a
    // minute of arrival) would mostly, and rightly, turn away as a flood.
    bob.set("presence.rate_limit", 1_000_000);
    // The latency figure runs with the traffic budget lifted; the ingest
    // runs once lifted and once under the default budget.
    bob.set("kafka.budget_bytes_per_second", LIFTED_BUDGET);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    // Wire bytes: a sealed chat envelope plus its 16-byte key.
    let pair = Arc::new(ChatPair::load(&alice, &bob));
    let text = "a typical chat line of about sixty bytes, give or take a few";
    let mut wire_rows = Vec::new();
    for size in [1usize, 60, 500, 4000] {
        let text = "x".repeat(size);
        let bytes = pair.seal(&text).len() + 16;
        wire_rows.push((size, bytes));
    }

    // Latency, baseline first, once the daemons run as they do after their
    // first minutes.
    common::until_rates_are_counted_here().await;
    let record_size = pair.seal(text).len();
    let raw = summarize(raw_latency(&alice.stack.kafka, messages, record_size, None).await);
    let back_to_back = kafka_path(
        &alice_daemon,
        &bob_daemon,
        &bob.actor_id,
        messages,
        text,
        Pacing::BackToBack,
        None,
    )
    .await;
    // The same path for a message that finds both daemons idle (the
    // previous one settled), as a message typed by a person does; the
    // back-to-back figure above also pays the previous message's receipt
    // and commits running beside it on the same two cores. The floor's
    // parts are timed between these messages, each part and each message
    // after the same pause (`KIRC_BENCH_PAUSE_MS`).
    let pause = Duration::from_millis(count("KIRC_BENCH_PAUSE_MS", 5) as u64);
    let mut between =
        FloorBetween::new(&alice, &alice_daemon, Arc::clone(&pair), text, pause).await;
    let settled = kafka_path(
        &alice_daemon,
        &bob_daemon,
        &bob.actor_id,
        messages,
        text,
        Pacing::Settled,
        Some(&mut between),
    )
    .await;
    // The path's floor back to back: two produce → consume hops and two
    // one-row commits.
    let commit = summarize(pg_commits(&alice, messages, CommitRow::Floor, None).await);
    let message_row = summarize(pg_commits(&alice, messages, CommitRow::Message, None).await);
    let path_floor = raw.p50 * 2 + commit.p50 * 2;
    let raw_between = summarize(between.hops.clone());
    let commit_between = summarize(between.commits.clone());
    let call_between = summarize(between.calls.clone());
    let echo_between = summarize(between.echoes.clone());
    let bare_between = summarize(between.bare_calls.clone());
    let envelope_between = summarize(between.envelopes.clone());
    let side_by_side = summarize(between.side_by_side.clone());
    between.finish().await;
    let floor_between = raw_between.p50 * 2 + commit_between.p50 * 2;

    // Ingest: bob stops; his data-in fills with valid envelopes; he starts,
    // first with the budget lifted (the pipeline), then under the default
    // budget, which his receipts count against.
    assert!(bob_daemon.stop().await.success());
    let fill = Fill {
        alice: &alice,
        alice_pid: alice_daemon.pid(),
        alice_keys: &pair.sender,
        bob_keys: &pair.recipient,
        count: ingest,
    };
    let lifted = ingest_run(&fill, &mut bob, LIFTED_BUDGET).await;
    let budgeted = ingest_run(&fill, &mut bob, DEFAULT_BUDGET).await;
    let crypto = pair.crypto_floor(ingest);

    assert!(alice_daemon.stop().await.success());

    // Junk: a fresh actor (no backlog), started once for its topics, then
    // stopped while both its inboxes fill with random records.
    let mut carol = Actor::new("carol").await;
    carol.as_users_run_it().set("log.level", "warn");
    assert!(Daemon::start(&carol).await.stop().await.success());
    // KIRC_BENCH_JUNK_LOG=kircd::transport::inbox=debug shows where each
    // batch of junk spends its time.
    if let Ok(level) = std::env::var("KIRC_BENCH_JUNK_LOG") {
        carol.set("log.level", level);
    }
    let junk_data_in = format!("{}data-in", carol.topic_prefix);
    let junk_rpc_in = format!("{}rpc-in", carol.topic_prefix);
    let junk_records = random_records(junk, 0x2545_f491_4f6c_dd1d);
    let producer = bulk_producer(&carol.stack.kafka);
    let mut deliveries = Vec::with_capacity(junk);
    for (index, bytes) in junk_records.iter().enumerate() {
        let topic = if index % 5 == 0 {
            &junk_rpc_in
        } else {
            &junk_data_in
        };
        deliveries.push(
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(b"junk".as_slice())
                        .payload(bytes),
                )
                .map_err(|(err, _)| err)
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    let raw_junk = {
        let data = consumer(&carol.stack.kafka, &junk_data_in);
        let rpc = consumer(&carol.stack.kafka, &junk_rpc_in);
        let start = Instant::now();
        for _ in 0..junk {
            tokio::select! {
                record = data.recv() => record,
                record = rpc.recv() => record,
            }
            .unwrap();
        }
        start.elapsed()
    };
    let junk_start = Instant::now();
    let carol_daemon = Daemon::start(&carol).await;
    let mut watch = carol_daemon.watch().await;
    watch
        .wait_until("all junk rejected", Duration::from_secs(300), |status| {
            status.rejected.iter().map(|count| count.count).sum::<u64>() >= junk as u64
        })
        .await;
    let junk_elapsed = junk_start.elapsed();
    let junk_status = carol_daemon.status().await;
    if std::env::var_os("KIRC_BENCH_JUNK_LOG").is_some() {
        eprintln!("{}", carol_daemon.stderr());
    }
    assert!(carol_daemon.stop().await.success());

    println!();
    println!("| figure | kircd p50 | kircd p99 | baseline p50 | baseline p99 | ratio (p50) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| SendMessage → peer's MessageAdded event ({messages} messages) vs raw rdkafka produce → consume ({record_size}-byte records) | {} | {} | {} | {} | {:.1}× |",
        ms(back_to_back.latency.p50),
        ms(back_to_back.latency.p99),
        ms(raw.p50),
        ms(raw.p99),
        back_to_back.latency.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
    println!();
    println!(
        "Where the time went, p50 of each hop (messages with every mark: back to back {}, settled {}):",
        back_to_back.with_every_mark, settled.with_every_mark
    );
    println!();
    println!("| hop | back to back p50 | settled p50 |");
    println!("|---|---|---|");
    for (hop, p50) in &back_to_back.hops {
        let settled_p50 = settled
            .hops
            .iter()
            .find(|(name, _)| name == hop)
            .map_or_else(|| String::from("—"), |(_, p50)| ms(*p50));
        println!("| {hop} | {} | {settled_p50} |", ms(*p50));
    }
    println!(
        "| sum of the hops' p50s | {} | {} |",
        ms(back_to_back.hops.iter().map(|(_, p50)| *p50).sum()),
        ms(settled.hops.iter().map(|(_, p50)| *p50).sum())
    );
    println!();
    println!(
        "floor: two raw produce → consume hops ({} p50 each) + two one-row PostgreSQL commits ({} p50 each) = {}",
        ms(raw.p50),
        ms(commit.p50),
        ms(path_floor),
    );
    println!(
        "one durable commit of the row kircd writes for a message (the same INSERT, a copy of its messages table with every index): {} p50 ({} p99), against the one-row floor's {}",
        ms(message_row.p50),
        ms(message_row.p99),
        ms(commit.p50),
    );
    println!(
        "the floor between the settled messages (a raw hop and a one-row commit after each, every part and every message {} after the one before ended): two raw hops ({} p50 each) + two one-row commits ({} p50 each) = {}",
        ms(pause),
        ms(raw_between.p50),
        ms(commit_between.p50),
        ms(floor_between),
    );
    for (pacing, figures) in [
        ("back to back", &back_to_back.latency),
        ("settled", &settled.latency),
    ] {
        println!(
            "SendMessage → event, {pacing}: p50 {} (p99 {}) = {:.2}× the floor (goal ≤ 1.3×)",
            ms(figures.p50),
            ms(figures.p99),
            figures.p50.as_secs_f64() / path_floor.as_secs_f64()
        );
    }
    println!(
        "SendMessage → event, settled, against the floor timed between its messages: {:.2}× (goal ≤ 1.3×)",
        settled.latency.p50.as_secs_f64() / floor_between.as_secs_f64()
    );
    // The call in and the event out are outside the floor of raw clients;
    // the socket's cheapest round trip, timed between the same messages, is
    // what they cost at least.
    let with_socket = floor_between + call_between.p50;
    println!(
        "the same floor with one round trip on alice's socket (GetStatus, {} p50, timed between the same messages) for the call in and the event out: {} = {:.2}×",
        ms(call_between.p50),
        ms(with_socket),
        settled.latency.p50.as_secs_f64() / with_socket.as_secs_f64()
    );
    // How much of that round trip is the socket and the two processes
    // waking, and how much HTTP/2, gRPC and the runtimes on both sides.
    println!(
        "a raw round trip to another process on a Unix socket, timed between the same messages: {} p50 ({} p99); the GetStatus round trip is {:.1}× of it",
        ms(echo_between.p50),
        ms(echo_between.p99),
        call_between.p50.as_secs_f64() / echo_between.p50.as_secs_f64()
    );
    // What of that round trip is kircd: the same call, client and answer
    // to a server that does nothing else, in another process.
    println!(
        "a GetStatus round trip to a bare tonic server in another process (the same client and Status, nothing behind it), timed between the same messages: {} p50 ({} p99); alice's is {:.2}× of it",
        ms(bare_between.p50),
        ms(bare_between.p99),
        call_between.p50.as_secs_f64() / bare_between.p50.as_secs_f64()
    );
    // The floor of a path that must take a gRPC call, give a gRPC event and
    // sign and encrypt what it carries: the raw clients' floor, the bare
    // server's round trip, and one envelope sealed and opened.
    let contract_floor = floor_between + bare_between.p50 + envelope_between.p50;
    println!(
        "the contract's floor: the floor between + the bare gRPC round trip + one envelope sealed, parsed, verified and opened ({} p50, {} p99, timed between the same messages) = {}; SendMessage → event, settled: {:.2}× of it (goal ≤ 1.3×)",
        ms(envelope_between.p50),
        ms(envelope_between.p99),
        ms(contract_floor),
        settled.latency.p50.as_secs_f64() / contract_floor.as_secs_f64()
    );
    // Alice's write and her produce run side by side; whether the machine
    // can overlap them at all is what the raw clients show, between the same
    // messages. The floor of the path as kircd builds it is then that pair,
    // the second hop and commit, and the call in and the event out.
    let as_built = side_by_side.p50 + raw_between.p50 + commit_between.p50 + call_between.p50;
    println!(
        "a raw hop and a one-row commit started together, timed between the same messages: {} p50 until both ended, against {} for the longer of the two and {} for both one after the other; the floor with that pair, a raw hop, a one-row commit and the socket's round trip: {} = {:.2}×",
        ms(side_by_side.p50),
        ms(raw_between.p50.max(commit_between.p50)),
        ms(raw_between.p50 + commit_between.p50),
        ms(as_built),
        settled.latency.p50.as_secs_f64() / as_built.as_secs_f64()
    );
    println!();
    for (label, run) in [
        ("budget lifted", &lifted),
        ("default budget (192 kB/s)", &budgeted),
    ] {
        let ours_rate = run.rate(ingest);
        let raw_rate = ingest as f64 / run.raw.as_secs_f64();
        println!(
            "ingest of {ingest} pre-filled envelopes, {label} (from READY, {:.2} s after the start): {ours_rate:.0} messages/s stored and emitted ({:.1} s; from the start {:.0}/s); raw consumer: {raw_rate:.0} records/s ({:.2} s); ratio {:.1}×; receipts: {} records, {} bytes ({:.3} bytes per message)",
            run.ready.as_secs_f64(),
            (run.elapsed - run.ready).as_secs_f64(),
            ingest as f64 / run.elapsed.as_secs_f64(),
            run.raw.as_secs_f64(),
            raw_rate / ours_rate,
            run.receipts,
            run.receipt_bytes,
            run.receipt_bytes as f64 / ingest as f64,
        );
    }
    // On this one broker bob's receipts count twice against the budget:
    // produced to his rpc-out, then delivered to alice's rpc-in.
    let per_message = 2.0 * budgeted.receipt_bytes as f64 / ingest as f64;
    let budget_bound = DEFAULT_BUDGET as f64 / per_message.max(f64::MIN_POSITIVE);
    let lifted_rate = lifted.rate(ingest);
    let budgeted_rate = budgeted.rate(ingest);
    let bound = budget_bound.min(lifted_rate);
    println!(
        "ingest against the crypto floor (parse, Ed25519 verify, box open, decode of the same number of envelopes on all {} cores, nothing else): {lifted_rate:.0}/s = {:.2}× of {crypto:.0}/s (goal ≥ 0.7× and ≥ 40,000/s)",
        cores(),
        lifted_rate / crypto
    );
    print_cpu_per_message(&lifted.cpu, ingest, crypto);
    println!(
        "ingest under the default budget: {budgeted_rate:.0}/s = {:.2}× min(budget ÷ receipt bytes per message = {budget_bound:.0}/s, the pipeline = {lifted_rate:.0}/s) (goal ≥ 0.9×)",
        budgeted_rate / bound
    );
    let ours_rate = junk as f64 / junk_elapsed.as_secs_f64();
    let raw_rate = junk as f64 / raw_junk.as_secs_f64();
    let inbox = junk_status.inbox.unwrap_or_default();
    println!(
        "junk: {junk} random records in data-in and rpc-in (from kircd start): {ours_rate:.0} records/s rejected ({:.1} s); raw consumer: {raw_rate:.0} records/s ({:.2} s); ratio {:.1}×; quarantine after: {} rows, {} bytes, {} dropped; log lines folded: {}",
        junk_elapsed.as_secs_f64(),
        raw_junk.as_secs_f64(),
        raw_rate / ours_rate,
        inbox.quarantine_rows,
        inbox.quarantine_bytes,
        inbox.quarantine_dropped,
        inbox.log_lines_suppressed,
    );
    println!();
    println!("| plaintext bytes | wire bytes (value + key) | overhead |");
    println!("|---|---|---|");
    for (size, bytes) in wire_rows {
        println!("| {size} | {bytes} | {} |", bytes - size);
    }
}

/// The traffic budget as lifted for the pipeline figures, and kircd's
/// default.
const LIFTED_BUDGET: i64 = 1 << 30;
const DEFAULT_BUDGET: i64 = 192_000;

/// What an ingest run fills bob's data-in with: `count` of alice's
/// envelopes.
struct Fill<'a> {
    alice: &'a Actor,
    /// Alice's running kircd, which takes bob's receipts meanwhile.
    alice_pid: u32,
    alice_keys: &'a Identity,
    bob_keys: &'a Identity,
    count: usize,
}

struct IngestRun {
    /// From bob's start to the last message's event.
    elapsed: Duration,
    /// From bob's start to his READY: part of `elapsed`, a figure of its
    /// own (the start), not of the ingest.
    ready: Duration,
    /// A raw consumer reading the same records.
    raw: Duration,
    /// Receipt records bob sent alice during the run, and their bytes.
    receipts: usize,
    receipt_bytes: usize,
    /// The CPU every process used from READY to the last event.
    cpu: CpuUse,
}

/// Receipt records (either form) for alice in bob's rpc-out, and their
/// bytes: what bob produced, whether or not delivered yet.
fn receipts_in(alice: &Actor, bob: &Actor) -> (usize, usize) {
    let rpc_out = format!("{}rpc-out", bob.topic_prefix);
    let mut records = 0;
    let mut bytes = 0;
    for kind in [wire::Kind::Receipt, wire::Kind::ReceiptRange] {
        for (record, _) in
            kirc_testkit::kafka::envelopes_of(&bob.stack.kafka, &rpc_out, kind, &alice.actor_id)
        {
            records += 1;
            bytes += record.value.len() + record.key.len();
        }
    }
    (records, bytes)
}

/// Fills bob's data-in (bob stopped), reads it with a raw consumer, then
/// starts bob with `budget` and times it until every envelope's event.
async fn ingest_run(fill: &Fill<'_>, bob: &mut Actor, budget: i64) -> IngestRun {
    let data_in = format!("{}data-in", bob.topic_prefix);
    let fill_start = Instant::now();
    fill_inbox(
        &bob.stack.kafka,
        &data_in,
        fill.alice_keys,
        fill.bob_keys,
        fill.count,
        "ingest",
    )
    .await;
    eprintln!(
        "filled {} envelopes in {:.1} s",
        fill.count,
        fill_start.elapsed().as_secs_f64()
    );

    // Baseline: a raw consumer reading as many records of the topic.
    let raw_consumer = consumer(&bob.stack.kafka, &data_in);
    let raw_start = Instant::now();
    for _ in 0..fill.count {
        raw_consumer.recv().await.unwrap();
    }
    let raw = raw_start.elapsed();
    drop(raw_consumer);

    let receipts_before = receipts_in(fill.alice, bob);
    bob.set("kafka.budget_bytes_per_second", budget);
    // Quiet by default; KIRC_BENCH_BOB_LOG=kircd::transport::inbox=debug
    // shows where each inbox batch spends its time.
    bob.set(
        "log.level",
        std::env::var("KIRC_BENCH_BOB_LOG").unwrap_or_else(|_| String::from("warn")),
    );
    let ingest_start = Instant::now();
    let profile = Profile::start(&format!("ingest-{budget}"));
    let bob_daemon = Daemon::start(bob).await;
    let ready = ingest_start.elapsed();
    let cpu_at_ready = cpu_snapshot();
    wait_added(&bob_daemon, fill.count, "ingest").await;
    let elapsed = ingest_start.elapsed();
    let cpu = cpu_snapshot().since(
        &cpu_at_ready,
        &[
            (bob_daemon.pid(), "bob's kircd"),
            (fill.alice_pid, "alice's kircd"),
            (std::process::id(), "the benchmark (its event reader)"),
        ],
    );
    profile.stop().await;
    if std::env::var_os("KIRC_BENCH_BOB_LOG").is_some() {
        eprintln!("{}", bob_daemon.stderr());
    }
    // Every receipt of the run is in his rpc-out once he has stopped.
    assert!(bob_daemon.stop().await.success());
    let receipts_after = receipts_in(fill.alice, bob);
    IngestRun {
        elapsed,
        ready,
        raw,
        receipts: receipts_after.0 - receipts_before.0,
        receipt_bytes: receipts_after.1 - receipts_before.1,
        cpu,
    }
}

impl IngestRun {
    /// Messages per second from READY: how fast a running kircd reads a
    /// backlog (its start is measured on its own).
    fn rate(&self, count: usize) -> f64 {
        count as f64 / (self.elapsed - self.ready).as_secs_f64()
    }
}

/// Where the CPU of an ingest went, per message, and the rate the machine
/// could reach at that CPU per message with no core ever idle: the ceiling
/// that no pipelining can pass. The crypto floor's CPU per message beside it
/// says how much of kircd's own share its checks take.
fn print_cpu_per_message(cpu: &CpuUse, count: usize, crypto_rate: f64) {
    let tick_us = 1e6 / rustix::param::clock_ticks_per_second() as f64;
    let per_message = |ticks: u64| ticks as f64 * tick_us / count as f64;
    let parts: Vec<String> = cpu
        .by_label
        .iter()
        .filter(|(_, ticks)| per_message(*ticks) >= 0.05)
        .map(|(label, ticks)| format!("{label} {:.1}", per_message(*ticks)))
        .collect();
    let busy = per_message(cpu.machine_busy);
    println!(
        "CPU per message over the ingest (budget lifted, READY → last event), µs: {}; the machine's busy time {busy:.1} µs ({:.0} % of its {} cores busy); at that CPU per message the machine's ceiling is {:.0}/s; the crypto floor takes {:.1} µs of CPU per message",
        parts.join(", "),
        100.0 * cpu.machine_busy as f64 / cpu.machine_total.max(1) as f64,
        cores(),
        cores() as f64 * 1e6 / busy,
        cores() as f64 * 1e6 / crypto_rate,
    );
}
