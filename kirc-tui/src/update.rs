//! Applies messages to the state. No I/O: what to do outside (quit) is read
//! from the state by the main loop.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use kirc_proto::v1::{self as pb, event::Kind};

use crate::state::{Link, State};

/// Everything that can change the state.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Link(Link),
    Event(Box<pb::Event>),
}

pub fn update(state: &mut State, msg: Msg) {
    match msg {
        Msg::Key(key) => on_key(state, key),
        Msg::Link(link) => {
            if link == Link::Connected {
                state.daemon_stopping = None;
            }
            state.link = link;
        }
        Msg::Event(event) => apply_event(state, *event),
    }
}

fn on_key(state: &mut State, key: KeyEvent) {
    if key.kind == KeyEventKind::Release {
        return;
    }
    match (key.code, key.modifiers) {
        (KeyCode::Char('q'), KeyModifiers::NONE) | (KeyCode::Char('c'), KeyModifiers::CONTROL) => {
            state.quit = true;
        }
        _ => {}
    }
}

fn apply_event(state: &mut State, event: pb::Event) {
    state.last_seq = event.seq;
    state.view.apply(&event);
    if let Some(Kind::ShuttingDown(stopping)) = event.kind {
        state.daemon_stopping = Some(stopping.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kirc_proto::v1::{Backend, BackendState, BackendStatus};

    fn snapshot(seq: u64) -> pb::Event {
        pb::Event {
            seq,
            at_unix_ms: 0,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                status: Some(pb::Status {
                    backends: vec![BackendStatus {
                        backend: Backend::Kafka as i32,
                        state: BackendState::Up as i32,
                        ..BackendStatus::default()
                    }],
                    ..pb::Status::default()
                }),
                epoch: 7,
                ..pb::Snapshot::default()
            })),
        }
    }

    fn state() -> State {
        State::new("/tmp/s".into(), jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn backend_change_replaces_that_backend_only() {
        let mut state = state();
        update(&mut state, Msg::Event(Box::new(snapshot(4))));
        update(
            &mut state,
            Msg::Event(Box::new(pb::Event {
                seq: 5,
                at_unix_ms: 0,
                kind: Some(Kind::BackendChanged(BackendStatus {
                    backend: Backend::Kafka as i32,
                    state: BackendState::Down as i32,
                    last_error: "refused".into(),
                    ..BackendStatus::default()
                })),
            })),
        );
        let status = state.view.status.as_ref().unwrap();
        assert_eq!(status.backends.len(), 1);
        assert_eq!(status.backends[0].last_error, "refused");
        assert_eq!(state.last_seq, 5);
    }

    #[test]
    fn q_and_ctrl_c_quit_other_keys_do_not() {
        let mut state = state();
        update(
            &mut state,
            Msg::Key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE)),
        );
        assert!(!state.quit);
        update(
            &mut state,
            Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        );
        assert!(state.quit);
        let mut state = self::state();
        update(
            &mut state,
            Msg::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)),
        );
        assert!(state.quit);
    }

    #[test]
    fn status_survives_a_disconnect_and_stopping_clears_on_reconnect() {
        let mut state = state();
        update(&mut state, Msg::Event(Box::new(snapshot(1))));
        update(
            &mut state,
            Msg::Event(Box::new(pb::Event {
                seq: 2,
                at_unix_ms: 0,
                kind: Some(Kind::ShuttingDown(pb::ShuttingDown {
                    reason: "SIGTERM".into(),
                })),
            })),
        );
        update(
            &mut state,
            Msg::Link(Link::Disconnected {
                error: "gone".into(),
                since_unix_ms: 0,
                attempt: 1,
                retry_in_ms: 250,
            }),
        );
        assert!(state.view.status.is_some());
        assert_eq!(state.daemon_stopping.as_deref(), Some("SIGTERM"));
        update(&mut state, Msg::Link(Link::Connected));
        assert_eq!(state.daemon_stopping, None);
    }
}
