//! Faults during traffic: a steady two-way stream between alice and bob while
//! the broker is stopped (SIGTERM) and killed (SIGKILL), PostgreSQL is shut
//! down immediately, Valkey is killed, and each kircd is killed with
//! `kill -9`. Clients retry with idempotency keys, as kirc-tui does.
//! Afterwards nothing is lost or duplicated, the order is kept, every message
//! is received; for each fault the time the service (or kircd) takes to be
//! back, and then kircd's time to traffic flowing again both ways, are
//! measured (`--nocapture` shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kirc_proto::v1::{self as pb, MessageState};
use kirc_testkit::{Actor, Daemon, befriend, history_all, incoming, stack_ctl, wait_history};

/// Messages per second each way.
const RATE: u64 = 5;
/// A long broker outage: several times librdkafka's longest reconnect
/// backoff (10 s), and longer than a consumer group's session (30 s), which
/// kircd's consumer no longer depends on.
const LONG_OUTAGE: Duration = Duration::from_secs(35);
/// The most any recovery may take before the test gives up.
const RECOVERY_BOUND: Duration = Duration::from_secs(120);

/// Restarts whatever a failed test left stopped, so that later tests find
/// the stack up.
struct StackGuard;

impl Drop for StackGuard {
    fn drop(&mut self) {
        stack_ctl(&["up"]);
    }
}

/// Sends `{prefix}{n}` for n = 0, 1, … at RATE to `to`, each with its own
/// idempotency key, retrying every failure (the daemon restarting, its
/// backends down) until it is accepted; `sent` counts the accepted ones.
fn stream(
    socket: PathBuf,
    to: String,
    prefix: &'static str,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(1000 / RATE));
        // After a send that waited out an outage, go on at the rate rather
        // than fire every missed tick at once.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conversation = String::new();
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let index = sent.load(Ordering::Relaxed);
            let request = pb::SendMessageRequest {
                to: to.clone(),
                text: format!("{prefix}{index}"),
                action: false,
                idempotency_key: format!("{prefix}-{index}"),
                reply_to: String::new(),
            };
            let result = match kirc_proto::connect(&socket).await {
                Ok(mut client) => client
                    .send_message(request)
                    .await
                    .map(tonic::Response::into_inner),
                Err(err) => Err(tonic::Status::unavailable(err.to_string())),
            };
            match result {
                Ok(message) => {
                    conversation = message.conversation_id;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => assert!(
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown
                    ),
                    "{prefix}{index}: {status:?}"
                ),
            }
        }
        conversation
    })
}

/// Waits until `daemon` holds `{prefix}{index}` among its incoming messages.
async fn arrived(daemon: &Daemon, conversation: &str, prefix: &str, index: u64) {
    let text = format!("{prefix}{index}");
    wait_history(daemon, conversation, &text, RECOVERY_BOUND, |history| {
        history
            .iter()
            .any(|message| !message.outgoing && message.body == text)
    })
    .await;
}

#[tokio::test]
async fn faults_during_traffic_lose_and_duplicate_nothing() {
    let _guard = StackGuard;
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let mut bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let conversation = alice_daemon
        .client()
        .await
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations[0]
        .id
        .clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (to_bob, to_alice) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let streams = [
        stream(
            alice.socket.clone(),
            bob.actor_id.clone(),
            "a",
            Arc::clone(&to_bob),
            Arc::clone(&stop),
        ),
        stream(
            bob.socket.clone(),
            alice.actor_id.clone(),
            "b",
            Arc::clone(&to_alice),
            Arc::clone(&stop),
        ),
    ];
    // Traffic flows before the first fault.
    arrived(&bob_daemon, &conversation, "a", 5).await;

    let mut recoveries = Vec::new();
    for fault in [
        "broker down for a long outage",
        "broker SIGTERM",
        "broker SIGKILL",
        "PostgreSQL immediate restart",
        "Valkey SIGKILL",
        "alice's kircd kill -9",
        "bob's kircd kill -9",
    ] {
        match fault {
            "broker SIGTERM" | "broker down for a long outage" => {
                stack_ctl(&["down", "kafka"]);
            }
            "broker SIGKILL" => stack_ctl(&["crash", "kafka"]),
            "PostgreSQL immediate restart" => stack_ctl(&["crash", "postgres"]),
            "Valkey SIGKILL" => stack_ctl(&["crash", "valkey"]),
            "alice's kircd kill -9" => {
                alice_daemon.signal(rustix::process::Signal::KILL);
                alice_daemon.wait().await;
            }
            _ => {
                bob_daemon.signal(rustix::process::Signal::KILL);
                bob_daemon.wait().await;
            }
        }
        // A moment down, as traffic goes on trying; or a long outage.
        let down = if fault == "broker down for a long outage" {
            LONG_OUTAGE
        } else {
            Duration::from_secs(2)
        };
        tokio::time::sleep(down).await;
        let restoring = Instant::now();
        match fault {
            "alice's kircd kill -9" => alice_daemon = Daemon::start(&alice).await,
            "bob's kircd kill -9" => bob_daemon = Daemon::start(&bob).await,
            _ => stack_ctl(&["up"]),
        }
        // The service (or kircd) answers again; from here on the recovery
        // is kircd's.
        let restored = Instant::now();
        let restart = restored - restoring;
        // Recovered: a message sent after the restore has arrived, each way.
        let (next_a, next_b) = (
            to_bob.load(Ordering::Relaxed) + 1,
            to_alice.load(Ordering::Relaxed) + 1,
        );
        let both = async {
            arrived(&bob_daemon, &conversation, "a", next_a).await;
            arrived(&alice_daemon, &conversation, "b", next_b).await;
        };
        if tokio::time::timeout(RECOVERY_BOUND, both).await.is_err() {
            for (name, daemon) in [("alice", &alice_daemon), ("bob", &bob_daemon)] {
                let text = daemon.stderr();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!(
                    "---- {name} ----\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            panic!("{fault}: no recovery");
        }
        let took = restored.elapsed();
        // A client left without brokers by a restarting broker is repaired
        // by kircd and says so; how often it happens belongs in the figures.
        let repaired = |daemon: &Daemon| daemon.stderr().matches("had lost every broker").count();
        eprintln!(
            "fault: {fault}: back in {:.2} s, then traffic both ways again in {:.2} s \
             (clients repaired after losing every broker, so far: alice {}, bob {})",
            restart.as_secs_f64(),
            took.as_secs_f64(),
            repaired(&alice_daemon),
            repaired(&bob_daemon),
        );
        recoveries.push((fault, took));
    }

    stop.store(true, Ordering::Relaxed);
    for handle in streams {
        handle.await.unwrap();
    }
    for (daemon, prefix, count) in [
        (&bob_daemon, "a", to_bob.load(Ordering::Relaxed)),
        (&alice_daemon, "b", to_alice.load(Ordering::Relaxed)),
    ] {
        let wanted: Vec<String> = (0..count).map(|index| format!("{prefix}{index}")).collect();
        let history = wait_history(
            daemon,
            &conversation,
            "every message",
            RECOVERY_BOUND,
            |history| history.iter().filter(|message| !message.outgoing).count() as u64 >= count,
        )
        .await;
        assert_eq!(incoming(&history), wanted, "{prefix}: each once, in order");
    }
    for daemon in [&alice_daemon, &bob_daemon] {
        wait_history(
            daemon,
            &conversation,
            "all received",
            RECOVERY_BOUND,
            |history| {
                history
                    .iter()
                    .filter(|message| message.outgoing)
                    .all(|message| message.state >= MessageState::Received as i32)
            },
        )
        .await;
    }
    let total = history_all(&alice_daemon, &conversation).await.len();
    eprintln!(
        "faults: {} messages in all; recoveries: {}",
        total,
        recoveries
            .iter()
            .map(|(fault, took)| format!("{fault} {:.2} s", took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
