//! Each backend stopped and restarted under a running kircd: it reports the
//! outage with its error, stays up, and recovers by itself.
//!
//! This file stops the shared local stack's services, so it holds a single
//! test: cargo runs test binaries one after another, and the tests inside
//! this binary cannot race each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{Backend, BackendState};
use kirc_testkit::{Actor, Daemon, all_up, backend, is, stack_ctl};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_backend_goes_down_and_comes_back_without_a_daemon_restart() {
    let actor = Actor::new("outage").await;
    let daemon = Daemon::start(&actor).await;
    let pid = daemon.pid();
    let mut watcher = daemon.watch().await;
    watcher.wait_until("all up", WAIT, all_up).await;

    for (service, which, error_hint) in [
        ("postgres", Backend::Postgres, "refused"),
        ("valkey", Backend::Valkey, ""),
        ("kafka", Backend::Kafka, "Connect"),
    ] {
        stack_ctl(&["down", service]);
        // The first failure may be the server saying goodbye ("terminating
        // connection"); the retries then settle on the lasting cause.
        let status = watcher
            .wait_until(&format!("{service} down with its error"), WAIT, |status| {
                let down = backend(status, which);
                is(status, which, BackendState::Down)
                    && !down.last_error.is_empty()
                    && down.last_error.contains(error_hint)
            })
            .await;
        assert!(backend(&status, which).consecutive_failures >= 1);
        // The daemon still answers, and it is the same process.
        let polled = daemon.status().await;
        assert_eq!(polled.pid, pid);
        assert!(is(&polled, which, BackendState::Down));

        stack_ctl(&["up", service]);
        let status = watcher
            .wait_until(&format!("{service} back up"), WAIT, all_up)
            .await;
        assert!(backend(&status, which).last_error.is_empty());
        assert_eq!(backend(&status, which).consecutive_failures, 0);
    }
    assert_eq!(daemon.status().await.pid, pid, "no restart happened");
    assert!(daemon.stop().await.success());
}
