//! kircd's issue-#2 figures, each against a baseline measured in the same run:
//!
//! - `GetStatus` round trip over the socket vs. a raw Unix-socket echo of 64
//!   bytes (the floor any socket RPC pays);
//! - cold start to READY (`kircd run` until its sd_notify READY=1) vs. the
//!   same binary's `--version` (process start alone);
//! - idle RSS and CPU of a kircd with all backends up, after a minute, with
//!   the wake-ups of each of its threads;
//! - the floor under that idle CPU: the same Kafka clients kircd holds (one
//!   consumer of its four topics, one producer), made by its own
//!   constructors in this process and idle for as long;
//! - the bytes an idle kircd produces per contact per day (presence
//!   heartbeats), against the free tier's budget: a second actor as its
//!   contact, both idle over whole heartbeat periods that start half a
//!   period after a heartbeat (a window of any other length counts one
//!   heartbeat more or less depending on where it falls: a 30 s window
//!   once read twice the per-day figure of a 60 s one).
//!
//! Run with `dev/bench` (it starts the stack). `KIRC_BENCH_IDLE_SECS` shortens
//! the idle minute for a quick look; `KIRC_BENCH_PERF` names a folder for a
//! `perf` profile of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::idle::{KAFKA_THREADS, idle, kafka_clients_alone};
use common::proc::proc_field;
use common::{get_status_round_trips, summarize};
use kirc_proto::v1 as pb;
use kirc_testkit::{Actor, Daemon, all_up, befriend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RTT_WARMUP: usize = 2_000;
const RTT_SAMPLES: usize = 20_000;
const STARTS: usize = 15;
/// The presence heartbeat both actors run with: kircd's default, set
/// explicitly because the contact window is a whole number of them.
const HEARTBEAT: Duration = Duration::from_secs(60);

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

async fn raw_socket_round_trips(dir: &std::path::Path) -> Vec<Duration> {
    let path = dir.join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        while stream.read_exact(&mut buf).await.is_ok() {
            stream.write_all(&buf).await.unwrap();
        }
    });
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    for round in 0..RTT_WARMUP + RTT_SAMPLES {
        let start = Instant::now();
        stream.write_all(&buf).await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        if round >= RTT_WARMUP {
            samples.push(start.elapsed());
        }
    }
    samples
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let idle_secs: u64 = std::env::var("KIRC_BENCH_IDLE_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    let mut actor = Actor::new("bench").await;
    actor
        .as_users_run_it()
        .set("log.level", "warn")
        .set("presence.heartbeat", format!("{}s", HEARTBEAT.as_secs()));
    common::print_header().await;

    // Cold start to READY, and the bare process start as its baseline.
    let mut version_runs = Vec::new();
    for _ in 0..STARTS {
        let start = Instant::now();
        let status = actor
            .kircd()
            .arg("--version")
            .output()
            .await
            .unwrap()
            .status;
        assert!(status.success());
        version_runs.push(start.elapsed());
    }
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let start = Instant::now();
        let daemon = Daemon::start(&actor).await;
        starts.push(start.elapsed());
        assert!(daemon.stop().await.success());
    }

    let daemon = Daemon::start(&actor).await;
    daemon
        .watch()
        .await
        .wait_until("all up", Duration::from_secs(30), all_up)
        .await;

    // Round trips: the raw socket first, then GetStatus, in this process.
    let scratch = tempfile::tempdir().unwrap();
    let raw = summarize(raw_socket_round_trips(scratch.path()).await);
    let rpc = summarize(get_status_round_trips(&daemon, RTT_WARMUP, RTT_SAMPLES, None).await);

    // Idle: all backends up, no client, default probe interval.
    let bytes_before = produced_bytes(&daemon).await;
    let alone = idle(daemon.pid(), idle_secs, "alone").await;
    let alone_bytes = produced_bytes(&daemon).await - bytes_before;
    let hwm_kib = proc_field(daemon.pid(), "status", "VmHWM:");
    let threads = proc_field(daemon.pid(), "status", "Threads:");
    // The floor those figures stand on: kircd's Kafka clients alone.
    let floor_actor = Actor::new("floor").await;
    let clients_alone = kafka_clients_alone(&floor_actor, idle_secs).await;

    // The same minute with one contact: what a contact costs idle.
    let mut contact = Actor::new("contact").await;
    contact
        .as_users_run_it()
        .set("log.level", "warn")
        .set("presence.heartbeat", format!("{}s", HEARTBEAT.as_secs()));
    let contact_daemon = Daemon::start(&contact).await;
    befriend((&actor, &daemon), (&contact, &contact_daemon)).await;
    // Both have told the other their presence (the first heartbeat; away,
    // since no client is attached).
    for (watching, other) in [(&daemon, &contact), (&contact_daemon, &actor)] {
        watching
            .watch()
            .await
            .wait_for("the contact's presence", Duration::from_secs(30), |view| {
                view.presence_of(&other.actor_id)
                    .is_some_and(|presence| presence.state == pb::PresenceState::Away as i32)
            })
            .await;
    }
    tokio::time::sleep(HEARTBEAT / 2).await;
    let contact_window =
        HEARTBEAT * u32::try_from((idle_secs / HEARTBEAT.as_secs()).max(1)).unwrap();
    let before = produced_bytes(&daemon).await;
    tokio::time::sleep(contact_window).await;
    let with_contact_bytes = produced_bytes(&daemon).await - before;
    assert!(contact_daemon.stop().await.success());
    assert!(daemon.stop().await.success());

    let start = summarize(starts);
    let version = summarize(version_runs);
    println!();
    println!("| figure | kircd p50 | kircd p99 | baseline p50 | baseline p99 | ratio (p50) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| GetStatus round trip ({RTT_SAMPLES} calls) vs raw 64-byte Unix-socket echo | {} | {} | {} | {} | {:.1}× |",
        micros(rpc.p50),
        micros(rpc.p99),
        micros(raw.p50),
        micros(raw.p99),
        rpc.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
    println!(
        "| cold start to READY ({STARTS} starts) vs `kircd --version` | {} | {} | {} | {} | {:.1}× |",
        millis(start.p50),
        millis(start.p99),
        millis(version.p50),
        millis(version.p99),
        start.p50.as_secs_f64() / version.p50.as_secs_f64()
    );
    println!();
    println!(
        "idle after {idle_secs} s with all backends up: RSS {:.1} MiB (peak {:.1} MiB), {threads} threads, {} fds, CPU {:.3} % of a core by clock ticks (one tick is {:.3} % here), {:.3} % by the schedstat of its threads",
        alone.rss_mib,
        hwm_kib as f64 / 1024.0,
        alone.fds,
        alone.cpu,
        alone.tick,
        alone.threads_cpu()
    );
    println!();
    println!("| thread | threads | wake-ups per second | CPU (% of a core) |");
    println!("|---|---|---|---|");
    for thread in alone
        .threads
        .iter()
        .filter(|row| row.wakes_per_second > 0.0)
    {
        println!(
            "| {} | {} | {:.2} | {:.4} |",
            thread.name, thread.threads, thread.wakes_per_second, thread.cpu
        );
    }
    println!();
    println!(
        "idle CPU (percent of a core, per thread from schedstat): kircd's Kafka clients (librdkafka's threads and the outbox's delivery thread) {:.3}, the rest of kircd {:.3}; the floor they set, the same clients (one consumer of the four topics, one producer) made alone in the benchmark's process: {:.3}",
        alone.cpu_of(KAFKA_THREADS),
        alone.threads_cpu() - alone.cpu_of(KAFKA_THREADS),
        clients_alone.cpu_of(KAFKA_THREADS),
    );
    println!();
    println!(
        "| the same clients alone: thread | threads | wake-ups per second | CPU (% of a core) |"
    );
    println!("|---|---|---|---|");
    for thread in clients_alone.threads.iter().filter(|row| {
        KAFKA_THREADS
            .iter()
            .any(|prefix| row.name.starts_with(prefix))
    }) {
        println!(
            "| {} | {} | {:.2} | {:.4} |",
            thread.name, thread.threads, thread.wakes_per_second, thread.cpu
        );
    }
    let alone_per_day = alone_bytes as f64 * 86_400.0 / idle_secs as f64;
    let contact_per_day =
        with_contact_bytes as f64 * 86_400.0 / contact_window.as_secs_f64() - alone_per_day;
    // The budget kircd allows itself per cluster (192 kB/s), for a day.
    let budget_per_day = 192_000.0 * 86_400.0;
    println!();
    println!(
        "idle bytes produced: alone {alone_per_day:.0} per day; each contact adds {:.0} per day (presence heartbeats every {} s, produced to the own rpc-out and delivered to the contact's rpc-in; over {} s); 50 contacts: {:.1} MB per day = {:.3} % of a day of the 192 kB/s budget (goal ≤ 1 %)",
        contact_per_day,
        HEARTBEAT.as_secs(),
        contact_window.as_secs(),
        contact_per_day * 50.0 / 1e6,
        contact_per_day * 50.0 / budget_per_day * 100.0
    );
}

/// The bytes `daemon` has produced so far, all clusters together (its
/// traffic figures).
async fn produced_bytes(daemon: &Daemon) -> u64 {
    daemon
        .status()
        .await
        .traffic
        .iter()
        .map(|traffic| traffic.total_bytes)
        .sum()
}
