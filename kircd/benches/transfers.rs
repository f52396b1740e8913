//! File transfer figures (issue #13), each with its baseline in this
//! program on the same machine:
//!
//! - throughput: a file of `KIRC_BENCH_FILE_MB` (100) MB from alice to bob
//!   over the direct path on loopback, from the `SendFile` call to bob's
//!   transfer COMPLETE (read, hashed, sent in 16 KiB frames, verified per
//!   piece and whole, synced, renamed), against a raw TCP copy of the same
//!   file over loopback in this process (read, sent, written, synced);
//! - memory: the RSS of both daemons sampled every 50 ms during each
//!   transfer, against each daemon's RSS just before it;
//! - chat beside a file: alice's `SendMessage` → bob's `MessageAdded` while
//!   a transfer runs on the same connection, against the same with no
//!   transfer, settled (one message at a time).
//!
//! Run with `dev/bench`; `KIRC_BENCH_ROUNDS` (5) transfers are timed, and
//! `KIRC_BENCH_MESSAGES` (200) chat messages each way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::proc::proc_field;
use common::{Pacing, count, latencies, ms, send_latency, summarize, wait_connected};
use futures::StreamExt;
use kirc_proto::v1::{self as pb, TransferState, event::Kind};
use kirc_testkit::{Actor, Daemon, befriend};

async fn actor(name: &str) -> Actor {
    let mut actor = Actor::new(name).await;
    let downloads = actor.dir.path().join("downloads");
    actor
        .as_users_run_it()
        .direct_path()
        // Every benchmark transfer is accepted without a question.
        .set("files.auto_accept_bytes", 1_i64 << 40)
        .set("files.download_dir", downloads.to_str().unwrap());
    actor
}

/// Copies `path` over a loopback TCP connection into `into`, synced: the
/// time from the first read to the synced copy.
fn tcp_copy(path: &Path, into: &Path) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let into = into.to_owned();
    let receiver = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut file = std::fs::File::create(&into).unwrap();
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let read = socket.read(&mut buffer).unwrap();
            if read == 0 {
                break;
            }
            file.write_all(&buffer[..read]).unwrap();
        }
        file.sync_all().unwrap();
    });
    let start = Instant::now();
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut socket).unwrap();
    drop(socket);
    receiver.join().unwrap();
    start.elapsed()
}

fn rss_mib(pid: u32) -> f64 {
    proc_field(pid, "status", "VmRSS:") as f64 / 1024.0
}

/// One transfer of `path` from alice to bob: its time, and the largest RSS
/// of each daemon above its RSS before it (MiB).
async fn transfer(
    alice_daemon: &Daemon,
    (bob, bob_daemon): (&Actor, &Daemon),
    path: &Path,
) -> (Duration, f64, f64) {
    let mut events = bob_daemon
        .client()
        .await
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (alice_before, bob_before) = (rss_mib(alice_daemon.pid()), rss_mib(bob_daemon.pid()));
    let (mut alice_peak, mut bob_peak) = (alice_before, bob_before);
    let start = Instant::now();
    let offered = alice_daemon
        .client()
        .await
        .send_file(pb::SendFileRequest {
            to: bob.actor_id.clone(),
            path: path.to_str().unwrap().to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sample = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            event = events.next() => {
                if let Some(Kind::TransferChanged(changed)) = event.unwrap().unwrap().kind
                    && changed.transfer_id == offered.transfer_id
                {
                    match changed.state() {
                        TransferState::Complete => break,
                        TransferState::Offered | TransferState::Moving => {}
                        other => panic!("the transfer ended {other:?}: {}", changed.reason),
                    }
                }
            }
            _ = sample.tick() => {
                alice_peak = alice_peak.max(rss_mib(alice_daemon.pid()));
                bob_peak = bob_peak.max(rss_mib(bob_daemon.pid()));
            }
        }
    }
    (
        start.elapsed(),
        alice_peak - alice_before,
        bob_peak - bob_before,
    )
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let rounds = count("KIRC_BENCH_ROUNDS", 5);
    let messages = count("KIRC_BENCH_MESSAGES", 200);
    let megabytes = count("KIRC_BENCH_FILE_MB", 100);
    common::print_header().await;
    let alice = actor("alice").await;
    let bob = actor("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    wait_connected((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let size = megabytes * 1_000_000;
    let mut bytes = vec![0; size];
    blake3::Hasher::new()
        .update(b"benchmark file")
        .finalize_xof()
        .fill(&mut bytes);
    let path = alice.dir.path().join("bench.bin");
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);

    let mut tcp = Vec::new();
    let mut kircd = Vec::new();
    let (mut alice_growth, mut bob_growth) = (0.0_f64, 0.0_f64);
    let copy = alice.dir.path().join("tcp-copy.bin");
    for _ in 0..rounds {
        tcp.push(tcp_copy(&path, &copy));
        std::fs::remove_file(&copy).unwrap();
        let (elapsed, alice_rss, bob_rss) =
            transfer(&alice_daemon, (&bob, &bob_daemon), &path).await;
        kircd.push(elapsed);
        alice_growth = alice_growth.max(alice_rss);
        bob_growth = bob_growth.max(bob_rss);
    }
    let idle = (rss_mib(alice_daemon.pid()), rss_mib(bob_daemon.pid()));

    // Chat with no transfer, then beside one (started again whenever it
    // ends, so every message has a file beside it).
    let text = "a typical chat line of about sixty bytes, give or take a few";
    let quiet = summarize(latencies(
        &send_latency(
            &alice_daemon,
            &bob_daemon,
            &bob.actor_id,
            messages,
            text,
            Pacing::Settled,
        )
        .await,
    ));
    let (busy_samples, beside) = {
        let chat = send_latency(
            &alice_daemon,
            &bob_daemon,
            &bob.actor_id,
            messages,
            text,
            Pacing::Settled,
        );
        tokio::pin!(chat);
        let mut moved = 0;
        loop {
            tokio::select! {
                samples = &mut chat => break (samples, moved),
                _ = transfer(&alice_daemon, (&bob, &bob_daemon), &path) => moved += 1,
            }
        }
    };
    let busy = summarize(latencies(&busy_samples));

    let tcp_rate = summarize(tcp.clone());
    let kircd_rate = summarize(kircd.clone());
    println!("\n### File transfer ({megabytes} MB, {rounds} rounds, loopback)\n");
    println!("| | p50 | p99 (of {rounds}) |");
    println!("|---|---|---|");
    println!(
        "| kircd, SendFile → COMPLETE | {} ({:.1} MB/s) | {} ({:.1} MB/s) |",
        ms(kircd_rate.p50),
        mb_per_s(size, kircd_rate.p50),
        ms(kircd_rate.p99),
        mb_per_s(size, kircd_rate.p99)
    );
    println!(
        "| raw TCP copy, synced | {} ({:.1} MB/s) | {} ({:.1} MB/s) |",
        ms(tcp_rate.p50),
        mb_per_s(size, tcp_rate.p50),
        ms(tcp_rate.p99),
        mb_per_s(size, tcp_rate.p99)
    );
    println!(
        "| kircd ÷ TCP (time) | {:.2}× | {:.2}× |",
        kircd_rate.p50.as_secs_f64() / tcp_rate.p50.as_secs_f64(),
        kircd_rate.p99.as_secs_f64() / tcp_rate.p99.as_secs_f64()
    );
    println!(
        "\n- RSS during the transfers, above the RSS just before: alice +{alice_growth:.1} MiB, bob +{bob_growth:.1} MiB (after them: alice {:.1} MiB, bob {:.1} MiB)",
        idle.0, idle.1
    );
    println!("\n### Chat beside a file ({messages} messages, settled)\n");
    println!("| | p50 | p99 |");
    println!("|---|---|---|");
    println!("| no transfer | {} | {} |", ms(quiet.p50), ms(quiet.p99));
    println!(
        "| a transfer on the same connection | {} | {} |",
        ms(busy.p50),
        ms(busy.p99)
    );
    println!(
        "| ratio | {:.2}× | {:.2}× |",
        busy.p50.as_secs_f64() / quiet.p50.as_secs_f64(),
        busy.p99.as_secs_f64() / quiet.p99.as_secs_f64()
    );
    let direct = busy_samples.iter().filter(|sample| sample.direct).count();
    println!(
        "\n- {beside} transfers of {megabytes} MB completed during those messages; {direct} of {messages} arrived over the direct path first"
    );
}
