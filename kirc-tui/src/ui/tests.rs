//! Snapshots of the status screen. Times are fixed and shown in UTC, so the
//! snapshots do not depend on the machine.

use kirc_proto::v1::{self as pb, Backend, BackendState, BackendStatus, TopicStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::render;
use crate::state::{Link, State};

const T0: i64 = 1_795_000_000_000;

fn backend(backend: Backend, state: BackendState, endpoint: &str, error: &str) -> BackendStatus {
    BackendStatus {
        backend: backend as i32,
        state: state as i32,
        endpoint: endpoint.into(),
        last_error: error.into(),
        state_since_unix_ms: T0 + 60_000,
        last_ok_unix_ms: T0,
        consecutive_failures: if error.is_empty() { 0 } else { 4 },
    }
}

fn topics() -> Vec<TopicStatus> {
    ["data-in", "data-out", "rpc-in", "rpc-out"]
        .iter()
        .map(|role| TopicStatus {
            role: (*role).into(),
            name: format!("alice.{role}"),
            present: true,
            partitions: 2,
        })
        .collect()
}

fn status(postgres: BackendStatus) -> pb::Status {
    pb::Status {
        version: "0.1.0".into(),
        api_version: 1,
        pid: 4242,
        started_at_unix_ms: T0,
        uptime_ms: 0,
        backends: vec![
            backend(Backend::Kafka, BackendState::Up, "127.0.0.1:19092", ""),
            postgres,
            backend(Backend::Valkey, BackendState::Up, "127.0.0.1:16379/0", ""),
        ],
        topics: topics(),
        refused_connections: 0,
        ..pb::Status::default()
    }
}

fn draw(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(frame, state)).unwrap();
    terminal
}

fn connected(status: pb::Status) -> State {
    let mut state = State::new(
        "/run/user/1000/kirc/kircd.sock".into(),
        jiff::tz::TimeZone::UTC,
    );
    state.link = Link::Connected;
    state.view.status = Some(status);
    state.last_seq = 17;
    state
}

#[test]
fn healthy() {
    let state = connected(status(backend(
        Backend::Postgres,
        BackendState::Up,
        "127.0.0.1:15432/kirc_alice",
        "",
    )));
    insta::assert_snapshot!(draw(&state, 80, 16).backend());
}

#[test]
fn degraded() {
    let mut state = connected(status(backend(
        Backend::Postgres,
        BackendState::Down,
        "127.0.0.1:15432/kirc_alice",
        "Connection refused (os error 111)",
    )));
    if let Some(status) = &mut state.view.status {
        status.topics[2].present = false;
        status.topics[2].partitions = 0;
    }
    insta::assert_snapshot!(draw(&state, 80, 18).backend());
}

#[test]
fn disconnected_keeps_the_last_known_status_greyed() {
    let mut state = connected(status(backend(
        Backend::Postgres,
        BackendState::Up,
        "127.0.0.1:15432/kirc_alice",
        "",
    )));
    state.daemon_stopping = Some("SIGTERM".into());
    state.link = Link::Disconnected {
        error: "kircd closed the connection".into(),
        since_unix_ms: T0 + 120_000,
        attempt: 3,
        retry_in_ms: 400,
    };
    insta::assert_snapshot!(draw(&state, 80, 16).backend());
}

#[test]
fn never_connected() {
    let mut state = State::new(
        "/run/user/1000/kirc/kircd.sock".into(),
        jiff::tz::TimeZone::UTC,
    );
    state.link = Link::Disconnected {
        error: "no kircd is listening on /run/user/1000/kirc/kircd.sock: the socket does not exist (start it with `kircd run`)".into(),
        since_unix_ms: T0,
        attempt: 1,
        retry_in_ms: 100,
    };
    insta::assert_snapshot!(draw(&state, 80, 8).backend());
}

#[test]
fn tiny_and_odd_sizes_never_panic() {
    let state = connected(status(backend(
        Backend::Postgres,
        BackendState::Down,
        "127.0.0.1:15432/kirc_alice",
        "a very long error message that will need wrapping on a narrow terminal",
    )));
    for (width, height) in [(1, 1), (20, 6), (5, 40), (200, 3), (0, 0)] {
        draw(&state, width, height);
    }
}
