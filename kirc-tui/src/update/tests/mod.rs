use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kirc_proto::v1::{self as pb, ContactState, event::Kind};

use super::*;
use crate::state::State;

/// `update`, without the housekeeping effects (activity, typing reports,
/// session loads and saves) that most tests do not look at.
fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    super::update(state, msg)
        .into_iter()
        .filter(|effect| {
            !matches!(
                effect,
                Effect::Activity
                    | Effect::Typing { .. }
                    | Effect::LoadSession(_)
                    | Effect::SaveSession(_)
            )
        })
        .collect()
}

const ME: &str = "00000000000000000000000000000000";
const BOB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CAROL: &str = "cccccccccccccccccccccccccccccccc";

fn contact(actor_id: &str, name: &str, conversation: &str, state: ContactState) -> pb::Contact {
    pb::Contact {
        actor_id: actor_id.into(),
        display_name: name.into(),
        state: state as i32,
        peer_accepted: true,
        conversation_id: conversation.into(),
        fingerprint: String::new(),
        delivery_path: String::new(),
        added_at_unix_ms: 1,
    }
}

fn event(seq: u64, kind: Kind) -> Msg {
    Msg::Event(Box::new(pb::Event {
        seq,
        at_unix_ms: 0,
        kind: Some(kind),
    }))
}

fn message(id: &str, conversation: &str, sender: &str, seq: u64, body: &str) -> pb::ChatMessage {
    pb::ChatMessage {
        id: id.into(),
        conversation_id: conversation.into(),
        sender: sender.into(),
        outgoing: sender == ME,
        action: false,
        body: body.into(),
        created_at_unix_ms: 1_795_000_000_000 + i64::try_from(seq).unwrap() * 1000,
        state: pb::MessageState::Received as i32,
        seq,
        direct: false,
        transfer_id: String::new(),
        ..pb::ChatMessage::default()
    }
}

/// A one-to-one conversation with each of `contacts`.
fn conversations_of(contacts: &[pb::Contact]) -> Vec<pb::Conversation> {
    contacts
        .iter()
        .map(|contact| pb::Conversation {
            id: contact.conversation_id.clone(),
            peer: Some(contact.clone()),
            ..pb::Conversation::default()
        })
        .collect()
}

/// A connected state with contacts bob and carol (a request).
fn state() -> State {
    let mut state = State::new("/tmp/s".into(), jiff::tz::TimeZone::UTC);
    let contacts = vec![
        contact(BOB, "bob", "conv-bob", ContactState::Accepted),
        contact(CAROL, "carol", "conv-carol", ContactState::Request),
    ];
    let conversations = conversations_of(&contacts);
    update(&mut state, Msg::Link(Link::Connected));
    let effects = update(
        &mut state,
        event(
            1,
            Kind::Snapshot(pb::Snapshot {
                status: Some(pb::Status {
                    actor_id: ME.into(),
                    display_name: "alice".into(),
                    ..pb::Status::default()
                }),
                epoch: 1,
                contacts,
                conversations,
                presence: Vec::new(),
                transfers: Vec::new(),
            }),
        ),
    );
    assert!(effects.is_empty());
    state
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_line(state: &mut State, text: &str) -> Vec<Effect> {
    for c in text.chars() {
        update(state, key(KeyCode::Char(c)));
    }
    update(state, key(KeyCode::Enter))
}

/// Opens bob's conversation and answers its history request with
/// `messages`; returns what the answer caused.
fn open_bob(state: &mut State, messages: Vec<pb::ChatMessage>) -> Vec<Effect> {
    let effects = type_line(state, "/msg bob");
    assert_eq!(
        effects,
        vec![Effect::LoadHistory {
            conversation: "conv-bob".into(),
            anchor: Anchor::Latest
        }]
    );
    update(
        state,
        Msg::History {
            conversation: "conv-bob".into(),
            page: pb::GetHistoryResponse {
                messages,
                more_before: false,
                more_after: false,
            },
            anchor: Anchor::Latest,
        },
    )
}

mod input;
mod messages;
mod scroll;
mod transfers;

#[test]
fn a_message_is_read_only_when_on_screen_and_focused() {
    let mut state = state();
    // Unfocused: a new message notifies and stays unread.
    update(&mut state, Msg::Focus(false));
    assert!(open_bob(&mut state, vec![message("m1", "conv-bob", BOB, 1, "hi")]).is_empty());
    let effects = update(
        &mut state,
        event(
            2,
            Kind::MessageAdded(message("m2", "conv-bob", BOB, 2, "there")),
        ),
    );
    assert!(
        matches!(effects.as_slice(), [Effect::Notify { .. }]),
        "{effects:?}"
    );
    // Focus comes back: now the marker moves, to the newest message.
    let effects = update(&mut state, Msg::Focus(true));
    assert_eq!(
        effects,
        vec![Effect::MarkRead {
            conversation: "conv-bob".into(),
            up_to: "m2".into()
        }]
    );
    // Asked once, not again while the daemon answers.
    assert!(update(&mut state, Msg::Focus(true)).is_empty());
    // The daemon moves it; a new message while focused and on screen is read.
    update(
        &mut state,
        event(
            3,
            Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
                conversation_id: "conv-bob".into(),
                last_read_seq: 2,
                unread: 0,
            }),
        ),
    );
    let effects = update(
        &mut state,
        event(
            4,
            Kind::MessageAdded(message("m3", "conv-bob", BOB, 3, "!")),
        ),
    );
    assert_eq!(
        effects,
        vec![Effect::MarkRead {
            conversation: "conv-bob".into(),
            up_to: "m3".into()
        }]
    );
}

#[test]
fn a_message_in_another_conversation_or_while_scrolled_back_is_not_read() {
    let mut state = state();
    let lots: Vec<pb::ChatMessage> = (1..=100)
        .map(|seq| message(&format!("m{seq}"), "conv-bob", BOB, seq, "line"))
        .collect();
    update(&mut state, Msg::Resize(80, 24));
    // Opening it, focused, with the newest message on screen, reads it.
    let effects = open_bob(&mut state, lots);
    assert_eq!(
        effects,
        vec![Effect::MarkRead {
            conversation: "conv-bob".into(),
            up_to: "m100".into()
        }]
    );
    // A message elsewhere: notified, not read.
    let effects = update(
        &mut state,
        event(
            2,
            Kind::MessageAdded(message("c1", "conv-carol", CAROL, 101, "psst")),
        ),
    );
    assert!(
        matches!(effects.as_slice(), [Effect::Notify { .. }]),
        "{effects:?}"
    );
    // Scrolled back, a new message is not read either.
    update(&mut state, key(KeyCode::PageUp));
    let effects = update(
        &mut state,
        event(
            3,
            Kind::MessageAdded(message("m101", "conv-bob", BOB, 102, "new")),
        ),
    );
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::MarkRead { .. })),
        "{effects:?}"
    );
    assert!(state.scrollbacks["conv-bob"].position.is_some());
    // Back at the bottom it is.
    let effects = update(&mut state, key(KeyCode::End));
    assert!(
        effects
            .iter()
            .any(|effect| matches!(effect, Effect::MarkRead { up_to, .. } if up_to == "m101"))
    );
}

#[test]
fn a_snapshot_reloads_the_open_conversation() {
    let mut state = state();
    open_bob(&mut state, vec![message("m1", "conv-bob", BOB, 1, "hi")]);
    let view = state.view.clone();
    let snapshot = pb::Snapshot {
        status: view.status,
        epoch: 2,
        contacts: view.contacts,
        conversations: view.conversations,
        presence: Vec::new(),
        transfers: Vec::new(),
    };
    let effects = update(&mut state, event(1, Kind::Snapshot(snapshot)));
    assert_eq!(
        effects,
        vec![Effect::LoadHistory {
            conversation: "conv-bob".into(),
            anchor: Anchor::Latest
        }]
    );
}

#[test]
fn a_typing_indicator_expires_by_the_clock_even_without_a_stop() {
    let mut state = state();
    let at = 1_795_000_000_000;
    super::update(
        &mut state,
        Msg::Event(Box::new(pb::Event {
            seq: 2,
            at_unix_ms: at,
            kind: Some(Kind::PeerPresenceChanged(pb::PeerPresence {
                actor_id: BOB.into(),
                state: pb::PresenceState::Online as i32,
                text: String::new(),
                typing: true,
            })),
        })),
    );
    assert!(state.is_typing(BOB));
    assert_eq!(state.next_deadline(), Some(at + TYPING_SHOWN_MS));
    super::update(&mut state, Msg::Tick(at + 3_000));
    assert!(state.is_typing(BOB));
    super::update(&mut state, Msg::Tick(at + TYPING_SHOWN_MS + 1));
    assert!(
        !state.is_typing(BOB),
        "gone although the daemon still says typing"
    );
    assert_eq!(state.next_deadline(), None);
}

#[test]
fn a_snapshot_of_a_daemon_still_loading_keeps_the_open_conversation() {
    let mut state = state();
    open_bob(&mut state, Vec::new());
    let snapshot = |ready: bool, conversations: Vec<pb::Conversation>| {
        Kind::Snapshot(pb::Snapshot {
            status: Some(pb::Status {
                actor_id: ME.into(),
                ready,
                ..pb::Status::default()
            }),
            epoch: 2,
            contacts: Vec::new(),
            conversations,
            presence: Vec::new(),
            transfers: Vec::new(),
        })
    };
    // kircd restarted: its first snapshot comes before its database.
    update(&mut state, event(1, snapshot(false, Vec::new())));
    assert_eq!(state.open.as_deref(), Some("conv-bob"));
    // Loaded: the conversation is there, its history is fetched again.
    let bob = pb::Conversation {
        id: "conv-bob".into(),
        peer: Some(contact(BOB, "bob", "conv-bob", ContactState::Accepted)),
        ..pb::Conversation::default()
    };
    let effects = update(&mut state, event(2, snapshot(true, vec![bob])));
    assert_eq!(state.open.as_deref(), Some("conv-bob"));
    assert!(
        effects.iter().any(|effect| matches!(effect, Effect::LoadHistory { conversation, .. } if conversation == "conv-bob")),
        "{effects:?}"
    );
    // A loaded daemon without it: it is gone.
    update(&mut state, event(3, snapshot(true, Vec::new())));
    assert_eq!(state.open, None);
}

#[test]
fn a_message_state_never_moves_back() {
    let mut state = state();
    let mut sent = message("m1", "conv-bob", ME, 1, "hi");
    sent.state = pb::MessageState::Pending as i32;
    open_bob(&mut state, vec![sent]);
    let changed = |seq, to: pb::MessageState| {
        event(
            seq,
            Kind::MessageStateChanged(pb::MessageStateChanged {
                message_id: "m1".into(),
                conversation_id: "conv-bob".into(),
                state: to as i32,
            }),
        )
    };
    let shown = |state: &State| state.scrollbacks["conv-bob"].messages[0].state;
    // The delivery's DELIVERED may be published before the send's QUEUED.
    update(&mut state, changed(2, pb::MessageState::Delivered));
    assert_eq!(shown(&state), pb::MessageState::Delivered as i32);
    update(&mut state, changed(3, pb::MessageState::Queued));
    assert_eq!(shown(&state), pb::MessageState::Delivered as i32);
    update(&mut state, changed(4, pb::MessageState::Received));
    assert_eq!(shown(&state), pb::MessageState::Received as i32);
}
