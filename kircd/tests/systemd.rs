//! kircd under systemd's `Type=notify` protocol, spoken to directly: a test
//! binds the NOTIFY_SOCKET datagram socket a service manager would, starts the
//! real kircd against the local stack, and reads what kircd sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kirc_proto::v1::{Backend, BackendState};
use kirc_testkit::{Actor, NotifySocket, backend};
use tokio::process::Child;

/// A kircd started with NOTIFY_SOCKET (and the given extra environment).
struct Notified {
    child: Child,
    notify: NotifySocket,
}

impl Notified {
    async fn start(actor: &Actor, env: &[(&str, &str)]) -> Notified {
        let notify = NotifySocket::new();
        let mut command = actor.kircd();
        command
            .arg("run")
            .env("NOTIFY_SOCKET", notify.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        Notified {
            child: command.spawn().unwrap(),
            notify,
        }
    }

    async fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap())
            .unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "kircd stopped with {status}");
    }
}

fn status_line(notification: &str) -> &str {
    notification
        .lines()
        .find_map(|line| line.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS in {notification:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_once_every_backend_is_checked_and_commands_work() {
    let actor = Actor::new("ready").await;
    let mut kircd = Notified::start(&actor, &[]).await;
    let ready = kircd.notify.until("READY=1", Duration::from_secs(30)).await;
    // READY carries each backend's checked state, never "connecting".
    assert_eq!(status_line(&ready), "kafka up, postgres up, valkey up");

    // At READY the socket serves and the state is loaded: the profile is
    // there, and a command that needs the database succeeds.
    let mut client = kirc_proto::connect(&actor.socket).await.unwrap();
    let status = client
        .get_status(kirc_proto::v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.actor_id, actor.actor_id);
    for which in [Backend::Kafka, Backend::Postgres, Backend::Valkey] {
        assert_eq!(
            backend(&status, which).state(),
            BackendState::Up,
            "{which:?}"
        );
    }
    client
        .create_invite(kirc_proto::v1::CreateInviteRequest::default())
        .await
        .expect("commands work at READY");
    kircd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_a_backend_that_is_down_instead_of_waiting_for_it() {
    let mut actor = Actor::new("ready-down").await;
    // Nothing listens on port 1: Valkey is down from the start.
    actor.set("valkey.url", "redis://127.0.0.1:1/0");
    let started = Instant::now();
    let mut kircd = Notified::start(&actor, &[]).await;
    let ready = kircd.notify.until("READY=1", Duration::from_secs(30)).await;
    assert_eq!(status_line(&ready), "kafka up, postgres up, valkey DOWN");
    // Well before the 60 s bound: a down backend is reported, not waited for.
    assert!(started.elapsed() < Duration::from_secs(20));
    let status = kirc_proto::connect(&actor.socket)
        .await
        .unwrap()
        .get_status(kirc_proto::v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        backend(&status, Backend::Valkey).state(),
        BackendState::Down
    );
    kircd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_pings_come_at_half_the_interval_systemd_asks_for() {
    let actor = Actor::new("watchdog").await;
    // WatchdogSec=400ms: kircd should ping every 200 ms.
    let mut kircd = Notified::start(&actor, &[("WATCHDOG_USEC", "400000")]).await;
    kircd.notify.until("READY=1", Duration::from_secs(30)).await;
    let from = kircd.notify.received.len();
    kircd.notify.collect(Duration::from_secs(3)).await;
    let pings: Vec<Instant> = kircd.notify.received[from..]
        .iter()
        .filter(|(_, text)| text.lines().any(|line| line == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    let mut gaps: Vec<Duration> = pings.windows(2).map(|pair| pair[1] - pair[0]).collect();
    gaps.sort();
    assert!(
        (12..=18).contains(&pings.len()),
        "expected about 15 pings in 3 s, got {}: {gaps:?}",
        pings.len()
    );
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(150) && median <= Duration::from_millis(250),
        "median gap {median:?}"
    );
    // Every gap stays well inside the 400 ms systemd would wait.
    assert!(
        gaps.last().unwrap() < &Duration::from_millis(400),
        "{gaps:?}"
    );
    kircd.stop().await;

    // A watchdog meant for another process (WATCHDOG_PID) is not kircd's.
    let mut kircd = Notified::start(
        &actor,
        &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
    )
    .await;
    kircd.notify.until("READY=1", Duration::from_secs(30)).await;
    let from = kircd.notify.received.len();
    kircd.notify.collect(Duration::from_secs(1)).await;
    assert!(
        !kircd.notify.received[from..]
            .iter()
            .any(|(_, text)| text.contains("WATCHDOG=1")),
        "{:?}",
        kircd.notify.received
    );
    kircd.stop().await;
}
