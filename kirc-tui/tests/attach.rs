//! The real kirc-tui binary in a real pty (tmux), attached to a real kircd on
//! the local stack: it shows the status, survives a daemon restart, and gives
//! the terminal back on exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, all_up, bin};

const WAIT: Duration = Duration::from_secs(30);

fn backends_up(screen: &str) -> bool {
    [
        "Kafka      up",
        "PostgreSQL up",
        "Valkey     up",
        " connected ",
    ]
    .iter()
    .all(|needle| screen.contains(needle))
}

#[tokio::test]
async fn attaches_shows_status_survives_a_restart_and_restores_the_terminal() {
    let actor = Actor::new("tui").await;
    let daemon = Daemon::start(&actor).await;
    daemon
        .watch()
        .await
        .wait_until("all up", WAIT, all_up)
        .await;

    let command = format!(
        "env TZ=UTC {} --socket {}",
        bin("kirc-tui").display(),
        actor.socket.display()
    );
    let tui = Tmux::start(&command, 100, 30);
    let screen = tui.wait_for("the status screen", WAIT, backends_up).await;
    assert!(
        screen.contains(&format!("{}data-in", actor.topic_prefix)),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("pid {}", daemon.pid())),
        "{screen}"
    );

    // The daemon stops: the TUI says so and keeps running.
    assert!(daemon.stop().await.success());
    let screen = tui
        .wait_for("the disconnected banner", WAIT, |screen| {
            screen.contains("DISCONNECTED") && screen.contains("kircd stopped (SIGTERM)")
        })
        .await;
    assert_eq!(
        tui.exit_status(),
        None,
        "the TUI is still running:\n{screen}"
    );

    // It comes back: the TUI reconnects by itself and shows the new daemon.
    let daemon = Daemon::start(&actor).await;
    let pid = daemon.pid();
    tui.wait_for("the new daemon's status", WAIT, |screen| {
        backends_up(screen) && screen.contains(&format!("pid {pid}"))
    })
    .await;

    // Quit: exit status 0 and the screen from before the TUI is back (the
    // alternate screen was left).
    tui.send_keys(&["-l", "/quit"]);
    tui.send_keys(&["Enter"]);
    let screen = tui
        .wait_for("the TUI to exit", WAIT, |screen| {
            Tmux::exit_status_on(screen).is_some()
        })
        .await;
    assert_eq!(Tmux::exit_status_on(&screen), Some(0), "{screen}");
    assert!(
        screen.contains("before the TUI"),
        "terminal restored:\n{screen}"
    );
    assert!(!screen.contains("Backends"), "terminal restored:\n{screen}");
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn sigterm_restores_the_terminal_too() {
    let actor = Actor::new("tuisig").await;
    let command = format!(
        "env TZ=UTC {} --socket {}",
        bin("kirc-tui").display(),
        actor.socket.display()
    );
    let tui = Tmux::start(&command, 80, 20);
    // No daemon at all: the TUI explains and keeps retrying.
    tui.wait_for("the not-running hint", WAIT, |screen| {
        screen.contains("DISCONNECTED") && screen.contains("kircd is not reachable")
    })
    .await;
    tui.signal_program(rustix::process::Signal::TERM);
    let screen = tui
        .wait_for("the TUI to exit", WAIT, |screen| {
            Tmux::exit_status_on(screen).is_some()
        })
        .await;
    assert_eq!(Tmux::exit_status_on(&screen), Some(0), "{screen}");
    assert!(
        screen.contains("before the TUI"),
        "terminal restored:\n{screen}"
    );
}
