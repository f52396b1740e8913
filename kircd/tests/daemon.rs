//! kircd against the real local stack, driven over its real socket.
//! Needs `dev/stack up` (the README's test command does it).
//!
//! Past 600 lines on purpose: each test is one whole scenario of the
//! daemon's life (start, socket, stop, resume), read top to bottom; they
//! share no fixtures a split would make clearer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use kirc_proto::v1::{self as pb, Backend, BackendState, event::Kind};
use kirc_testkit::{Actor, Daemon, Watcher, all_up, backend, is};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn starts_healthy_with_its_four_topics() {
    let actor = Actor::new("healthy").await;
    let daemon = Daemon::start(&actor).await;
    let status = daemon
        .watch()
        .await
        .wait_until("all backends up and topics present", WAIT, all_up)
        .await;

    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.api_version, kirc_proto::API_VERSION);
    assert_eq!(status.pid, daemon.pid());
    let roles: Vec<_> = status
        .topics
        .iter()
        .map(|topic| topic.role.as_str())
        .collect();
    assert_eq!(roles, ["data-in", "data-out", "rpc-in", "rpc-out"]);
    for topic in &status.topics {
        assert_eq!(topic.name, format!("{}{}", actor.topic_prefix, topic.role));
        assert_eq!(topic.partitions, 2);
    }
    for which in [Backend::Kafka, Backend::Postgres, Backend::Valkey] {
        assert!(backend(&status, which).last_error.is_empty());
        assert!(backend(&status, which).last_ok_unix_ms > 0);
    }

    // GetStatus agrees with the stream.
    let polled = daemon.status().await;
    assert!(all_up(&polled));

    // The socket and its folder are owner-only.
    let dir = std::fs::metadata(actor.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700);
    let socket = std::fs::metadata(&actor.socket).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o600);

    // `kircd status` prints the same over the same socket.
    let output = actor.kircd().arg("status").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("kafka     up"), "{text}");
    assert!(
        text.contains(&format!("{}rpc-in (2 partitions)", actor.topic_prefix)),
        "{text}"
    );

    // The doctor passes on the same config.
    let output = actor.kircd().arg("doctor").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    assert!(
        text.contains(&format!("kircd {} running", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );

    // Migrations ran and this run was recorded.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "{}/{}",
        actor.stack.postgres, actor.database
    ))
    .await
    .unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM daemon_runs WHERE pid = $1")
        .bind(i32::try_from(daemon.pid()).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(runs, 1);

    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn graceful_stop_tells_subscribers_and_removes_the_socket() {
    let actor = Actor::new("stop").await;
    let daemon = Daemon::start(&actor).await;
    let mut watcher = daemon.watch().await;
    watcher.wait_until("all up", WAIT, all_up).await;

    let log_dir = daemon.log_dir.clone();
    daemon.signal(rustix::process::Signal::TERM);
    let rest = watcher.drain(WAIT).await;
    let last = rest.last().expect("a ShuttingDown event");
    assert!(
        matches!(&last.kind, Some(Kind::ShuttingDown(stopping)) if stopping.reason == "SIGTERM"),
        "{rest:?}"
    );
    let mut daemon = daemon;
    assert!(daemon.wait().await.success());
    assert!(!actor.socket.exists(), "the socket is removed");
    assert!(
        !actor.socket.with_extension("lock").exists(),
        "the lock file is removed"
    );

    // The rolling log file holds the whole story.
    let log = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect::<String>();
    for line in ["kircd starting", "ready", "stopping", "stopped"] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
}

/// A SIGTERM right after READY arrives while the consumers are still joining
/// their groups; librdkafka can then block closing a consumer forever
/// (confluentinc/librdkafka#4884), which hung about one start in seven
/// (release build) before kircd bounded the close. The race window is the
/// group join, some milliseconds after READY; the stops sweep it in steps
/// of 10 ms (a deliberate offset, not a wait for readiness).
#[tokio::test]
async fn stops_promptly_when_stopped_right_after_ready() {
    const STARTS: u64 = 30;
    // A graceful stop takes about 0.2 s; this leaves room for a busy machine
    // and stays well under systemd's TimeoutStopSec=30s.
    const STOP_BOUND: Duration = Duration::from_secs(10);
    let actor = Actor::new("quickstop").await;
    for start in 0..STARTS {
        let mut daemon = Daemon::start(&actor).await;
        // An attached TUI: presence goes online, and offline at shutdown —
        // after ShuttingDown, which must still be the last event.
        let mut watcher = Watcher::interactive(&daemon.socket).await;
        tokio::time::sleep(Duration::from_millis(start % 10 * 10)).await;
        let stopping = std::time::Instant::now();
        daemon.signal(rustix::process::Signal::TERM);
        let events = watcher.drain(STOP_BOUND).await;
        assert!(
            matches!(
                events.last().and_then(|event| event.kind.as_ref()),
                Some(Kind::ShuttingDown(_))
            ),
            "start {start}: ShuttingDown is the last event: {events:?}"
        );
        let status = tokio::time::timeout(STOP_BOUND, daemon.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "start {start}: kircd did not stop within {STOP_BOUND:?} of SIGTERM:\n{}",
                    daemon.stderr()
                )
            });
        assert!(status.success(), "start {start}: {status:?}");
        assert!(stopping.elapsed() < STOP_BOUND);
    }
}

#[tokio::test]
async fn a_second_kircd_on_the_same_socket_is_refused_and_a_stale_socket_is_replaced() {
    let actor = Actor::new("second").await;
    let first = Daemon::start(&actor).await;

    let output = actor.kircd().arg("run").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another kircd (pid {}) is already serving",
            first.pid()
        )),
        "{stderr}"
    );
    // The first is unharmed.
    assert_eq!(first.status().await.pid, first.pid());

    // A kircd killed outright leaves its socket behind; the next one
    // replaces it.
    let mut first = first;
    first.signal(rustix::process::Signal::KILL);
    first.wait().await;
    assert!(actor.socket.exists(), "SIGKILL leaves the socket file");
    let second = Daemon::start(&actor).await;
    assert_eq!(second.status().await.pid, second.pid());
    assert!(
        second.stderr().contains("replaced a stale socket"),
        "{}",
        second.stderr()
    );
    assert!(second.stop().await.success());
}

#[tokio::test]
async fn two_subscribers_see_the_same_events_and_a_resumed_one_gets_exactly_what_it_missed() {
    let mut actor = Actor::new("subs").await;
    // Valkey is pointed at a port nobody listens on, so the daemon produces a
    // stream of events as we move it; the others stay up.
    actor.set("valkey.url", "redis://127.0.0.1:9/0");
    let daemon = Daemon::start(&actor).await;
    let mut first = daemon.watch().await;
    let mut second = daemon.watch().await;
    for watcher in [&mut first, &mut second] {
        watcher
            .wait_until("kafka and postgres up, valkey down", WAIT, |status| {
                is(status, Backend::Kafka, BackendState::Up)
                    && is(status, Backend::Postgres, BackendState::Up)
                    && is(status, Backend::Valkey, BackendState::Down)
                    && status.topics.len() == 4
            })
            .await;
    }
    // Bring both to the same position, then compare what follows.
    let target = first.seq.max(second.seq);
    for watcher in [&mut first, &mut second] {
        while watcher.seq < target {
            watcher.next(WAIT).await.unwrap();
        }
    }
    let resume_at = (second.seq, second.epoch);
    drop(second);

    // Stop PostgreSQL's database for this actor only, by revoking access:
    // other tests keep theirs. Dropping connections makes the pool fail.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "{}/postgres",
        actor.stack.postgres
    ))
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
        actor.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        actor.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    first
        .wait_until("postgres down", WAIT, |status| {
            is(status, Backend::Postgres, BackendState::Down)
        })
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
        actor.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    first
        .wait_until("postgres up again", WAIT, |status| {
            is(status, Backend::Postgres, BackendState::Up)
        })
        .await;
    let missed: Vec<pb::Event> = first
        .events
        .iter()
        .filter(|event| event.seq > resume_at.0)
        .cloned()
        .collect();
    assert!(missed.len() >= 2, "down and up are two events: {missed:?}");

    let mut resumed = Watcher::subscribe(&daemon.socket, resume_at.0, resume_at.1).await;
    for expected in &missed {
        let got = resumed.next(WAIT).await.expect("a replayed event");
        assert_eq!(
            &got, expected,
            "replay matches the live stream event for event"
        );
    }
    // Nothing more than what was missed: the next event either does not
    // come, or is a new one that the first subscriber sees too.
    if let Some(extra) = resumed.next(Duration::from_millis(500)).await {
        let twin = first.next(WAIT).await.unwrap();
        assert_eq!(extra, twin);
    }

    // Another run's epoch, or a position from the future, gets a snapshot.
    let mut stranger = Watcher::subscribe(&daemon.socket, resume_at.0, resume_at.1 ^ 1).await;
    let event = stranger.next(WAIT).await.unwrap();
    assert!(matches!(event.kind, Some(Kind::Snapshot(_))), "{event:?}");
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn unreachable_bootstrap_is_reported_with_its_error_and_the_daemon_stays_up() {
    let mut actor = Actor::new("nokafka").await;
    actor.set("kafka.bootstrap_servers", "127.0.0.1:9");
    let daemon = Daemon::start(&actor).await;
    let status = daemon
        .watch()
        .await
        .wait_until("kafka down with an error", WAIT, |status| {
            is(status, Backend::Kafka, BackendState::Down)
                && is(status, Backend::Postgres, BackendState::Up)
        })
        .await;
    let kafka = backend(&status, Backend::Kafka);
    assert!(
        kafka.last_error.contains("127.0.0.1:9"),
        "{}",
        kafka.last_error
    );
    assert!(
        kafka.last_error.contains("Connection refused"),
        "{}",
        kafka.last_error
    );

    let output = actor
        .kircd()
        .args(["doctor", "--timeout", "3s"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(text.contains("FAIL  kafka       127.0.0.1:9:"), "{text}");
    assert!(
        text.contains("fix: check kafka.bootstrap_servers"),
        "{text}"
    );
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn invalid_config_exits_before_binding_and_names_the_key() {
    let mut actor = Actor::new("badconfig").await;
    actor.set("kafka.partitions", 0);
    let output = actor.kircd().arg("run").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("invalid `kafka.partitions`"), "{stderr}");
    assert!(
        stderr.contains("fix: use a number from 1 to 64"),
        "{stderr}"
    );
    assert!(!actor.socket.exists(), "nothing was bound");

    let mut actor = Actor::new("nocert").await;
    actor
        .set("kafka.security_protocol", "ssl")
        .set("kafka.client_cert_file", "/nonexistent/client.pem")
        .set("kafka.client_key_file", "/nonexistent/client.key");
    let output = actor.kircd().arg("run").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("invalid `kafka.client_cert_file`")
            && stderr.contains("/nonexistent/client.pem"),
        "{stderr}"
    );

    // The doctor reports the same problem as a failed check.
    let output = actor.kircd().arg("doctor").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(text.contains("FAIL  config"), "{text}");
    assert!(
        text.contains("fix: point `kafka.client_cert_file` at an existing"),
        "{text}"
    );
}

#[tokio::test]
async fn connections_from_another_uid_are_refused() {
    let actor = Actor::new("uid").await;
    let daemon = Daemon::start(&actor).await;
    let run_dir = actor.socket.parent().unwrap();

    // A copy of the client that the unprivileged user can execute.
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = public.path().join("kircd");
    std::fs::copy(kirc_testkit::bin("kircd"), &client).unwrap();
    let as_nobody = || {
        let mut command = tokio::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&client)
            .args(["status", "--socket"])
            .arg(&actor.socket)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", public.path());
        command
    };

    // 1. The owner-only folder stops another user at the file system.
    let output = as_nobody().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("permission denied"), "{stderr}");

    // 2. Even with the folder and socket opened up, the daemon checks the
    // peer's uid (SO_PEERCRED) and refuses.
    std::fs::set_permissions(actor.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&actor.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = as_nobody().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stdout}{stderr}");
    assert!(!stdout.contains("kafka"), "no status leaked: {stdout}");
    let status = daemon.status().await;
    assert!(status.refused_connections >= 1, "{status:?}");
    assert!(
        daemon
            .stderr()
            .contains("refused a connection from another user")
            && daemon.stderr().contains("peer_uid=65534"),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn speaks_sd_notify_status_watchdog_and_stopping() {
    let actor = Actor::new("notify").await;
    let mut command = actor.kircd();
    // As systemd sets it for WatchdogSec=1s: pings are due every 500 ms.
    command.env("WATCHDOG_USEC", "1000000");
    let daemon = Daemon::start_command(&actor, command).await;
    // READY comes with the backends' state once each has been checked.
    assert!(
        daemon
            .ready
            .contains("STATUS=kafka up, postgres up, valkey up"),
        "{}",
        daemon.ready
    );

    // Pings keep coming at about half the watchdog interval.
    let start = std::time::Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let text = daemon
            .notification(Duration::from_secs(2))
            .await
            .expect("a watchdog ping");
        if text.contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "3 pings took {:?}",
        start.elapsed()
    );

    daemon.signal(rustix::process::Signal::TERM);
    let mut stopping = false;
    while let Some(text) = daemon.notification(Duration::from_secs(5)).await {
        if text.contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 was sent");
    let mut daemon = daemon;
    assert!(daemon.wait().await.success());
}

#[tokio::test]
async fn missing_topics_are_named_when_kircd_may_not_create_them() {
    let mut actor = Actor::new("notopics").await;
    // `kircd init` made the actor's topics; a new prefix names topics that do
    // not exist.
    actor.topic_prefix = format!("{}none.", actor.topic_prefix);
    let prefix = actor.topic_prefix.clone();
    actor.set("kafka.topic_prefix", prefix);
    actor.set("kafka.create_topics", false);
    let daemon = Daemon::start(&actor).await;
    let status = daemon
        .watch()
        .await
        .wait_until("kafka up with topics listed", WAIT, |status| {
            is(status, Backend::Kafka, BackendState::Up) && status.topics.len() == 4
        })
        .await;
    assert!(
        status
            .topics
            .iter()
            .all(|topic| !topic.present && topic.partitions == 0)
    );
    assert!(
        daemon.stderr().contains(&format!(
            "missing={p}data-in, {p}data-out, {p}rpc-in, {p}rpc-out",
            p = actor.topic_prefix
        )),
        "{}",
        daemon.stderr()
    );

    let output = actor.kircd().arg("doctor").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        text.contains(&format!("{}rpc-out MISSING", actor.topic_prefix)),
        "{text}"
    );
    assert!(
        text.contains("run `terraform apply` in terraform/")
            && text.contains("set kafka.create_topics = true"),
        "{text}"
    );
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn a_service_manager_that_stops_reading_cannot_stall_the_daemon() {
    let actor = Actor::new("deafmanager").await;
    let mut command = actor.kircd();
    // Pings every 50 ms fill the never-read notification queue quickly.
    command.env("WATCHDOG_USEC", "100000");
    let daemon = Daemon::start_command(&actor, command).await;
    let deadline = std::time::Instant::now() + WAIT;
    // kircd logs each notification it had to drop; the log is the only
    // signal that the queue is full.
    while !daemon.stderr().contains("notification dropped") {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving, and it stops promptly.
    assert!(daemon.status().await.pid > 0);
    let started = std::time::Instant::now();
    assert!(daemon.stop().await.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn init_creates_an_owner_only_identity_and_keeps_it_unless_forced() {
    // Actor::new ran `kircd init` already.
    let actor = Actor::new("init").await;
    let key = actor.dir.path().join("identity.key");
    let mode = std::fs::metadata(&key).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();

    // Running init again (to re-check, or after changing the config) keeps
    // the identity: contacts know this actor by it.
    let output = actor.kircd().arg("init").output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("identity:    kept"), "{stdout}");
    assert!(
        stdout.contains(&format!("actor id:    {}", actor.actor_id)),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the identity is untouched"
    );
    let kept_key = before;

    // The profile was recorded in the actor's database.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "{}/{}",
        actor.stack.postgres, actor.database
    ))
    .await
    .unwrap();
    let (name, id): (String, Vec<u8>) =
        sqlx::query_as("SELECT display_name, actor_id FROM profile")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(name, "init");
    assert_eq!(
        id.iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>(),
        actor.actor_id
    );

    // --force replaces it with a new one.
    let output = actor
        .kircd()
        .args(["init", "--force"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("identity:    created"), "{stdout}");
    assert!(!stdout.contains(&actor.actor_id), "{stdout}");
    assert_ne!(std::fs::read(&key).unwrap(), kept_key);

    // A daemon without an identity refuses to start, and says how to fix it.
    std::fs::remove_file(&key).unwrap();
    let output = actor.kircd().arg("run").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("no identity at") && stderr.contains("kircd init"),
        "{stderr}"
    );
}
