//! Snapshots of the main screens. Times are fixed and shown in UTC, so the
//! snapshots do not depend on the machine.

use kirc_proto::v1::{
    self as pb, Backend, BackendState, BackendStatus, ContactState, TopicStatus, event::Kind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::render;
use crate::state::{Link, Overlay, Scrollback, State};
use crate::update::{Msg, update};

pub(super) const T0: i64 = 1_795_000_000_000;
pub(super) const ME: &str = "0c25af013d72cdeda5f6702551730668";
pub(super) const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
pub(super) const CAROL: &str = "ca401ca401ca401ca401ca401ca401ca";

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
        backends: vec![
            backend(Backend::Kafka, BackendState::Up, "127.0.0.1:19092", ""),
            postgres,
            backend(Backend::Valkey, BackendState::Up, "127.0.0.1:16379/0", ""),
        ],
        topics: topics(),
        actor_id: ME.into(),
        display_name: "alice".into(),
        ready: true,
        presence: Some(pb::Presence {
            state: pb::PresenceState::Online as i32,
            text: String::new(),
            reason: String::new(),
        }),
        heartbeat_consumed_unix_ms: T0 + 30_000,
        ..pb::Status::default()
    }
}

pub(super) fn healthy() -> pb::Status {
    status(backend(
        Backend::Postgres,
        BackendState::Up,
        "127.0.0.1:15432/kirc_alice",
        "",
    ))
}

pub(super) fn draw(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(frame, state)).unwrap();
    terminal
}

fn contact(actor_id: &str, name: &str, state: ContactState, peer_accepted: bool) -> pb::Contact {
    pb::Contact {
        actor_id: actor_id.into(),
        display_name: name.into(),
        state: state as i32,
        peer_accepted,
        conversation_id: format!("conv-{name}"),
        fingerprint: "b0b0 b0b0 b0b0 b0b0 b0b0 b0b0 b0b0 b0b0".into(),
        delivery_path: "127.0.0.1:19092 → bob.data-in (plaintext)".into(),
        added_at_unix_ms: T0,
    }
}

/// A connected state with contacts bob (accepted) and carol (a message
/// request), the given status, sized 100×30.
pub(super) fn connected(status: pb::Status) -> State {
    let mut state = State::new(
        "/run/user/1000/kirc/kircd.sock".into(),
        jiff::tz::TimeZone::UTC,
    );
    let contacts = vec![
        contact(BOB, "bob", ContactState::Accepted, true),
        contact(CAROL, "carol", ContactState::Request, true),
    ];
    let conversations = vec![
        pb::Conversation {
            id: "conv-bob".into(),
            peer: Some(contacts[0].clone()),
            last_activity_unix_ms: T0,
            unread: 0,
            last_read_seq: 3,
            last_message: None,
            ..pb::Conversation::default()
        },
        pb::Conversation {
            id: "conv-carol".into(),
            peer: Some(contacts[1].clone()),
            last_activity_unix_ms: T0,
            unread: 2,
            last_read_seq: 0,
            last_message: None,
            ..pb::Conversation::default()
        },
    ];
    update(&mut state, Msg::Link(Link::Connected));
    update(&mut state, Msg::Resize(100, 30));
    update(
        &mut state,
        Msg::Event(Box::new(pb::Event {
            seq: 1,
            at_unix_ms: 0,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                status: Some(status),
                epoch: 1,
                contacts,
                conversations,
                presence: vec![
                    pb::PeerPresence {
                        actor_id: BOB.into(),
                        state: pb::PresenceState::Online as i32,
                        text: String::new(),
                        typing: true,
                    },
                    pb::PeerPresence {
                        actor_id: CAROL.into(),
                        state: pb::PresenceState::Away as i32,
                        text: "at the meetup".into(),
                        typing: false,
                    },
                ],
                transfers: Vec::new(),
            })),
        })),
    );
    state
}

pub(super) fn message(
    seq: u64,
    sender: &str,
    body: &str,
    minutes: i64,
    state: pb::MessageState,
) -> pb::ChatMessage {
    pb::ChatMessage {
        id: format!("m{seq}"),
        conversation_id: "conv-bob".into(),
        sender: sender.into(),
        outgoing: sender == ME,
        action: false,
        body: body.into(),
        created_at_unix_ms: T0 + minutes * 60_000,
        state: state as i32,
        seq,
        direct: false,
        transfer_id: String::new(),
        ..pb::ChatMessage::default()
    }
}

fn with_bob_open(mut state: State) -> State {
    use pb::MessageState::*;
    let mut messages = vec![
        message(1, BOB, "hey alice, are you around?", 0, Received),
        message(2, ME, "yes! just setting up K-IRC", 1, Read),
        message(3, BOB, "nice — it works over Kafka, right?", 2, Received),
        // The next day: a separator line, then the unread marker.
        message(
            4,
            BOB,
            "good morning! here is a long line that has to wrap because it does not fit in the width of the scrollback at all",
            24 * 60,
            Received,
        ),
        message(5, ME, "morning", 24 * 60 + 1, Delivered),
        message(6, ME, "sending…", 24 * 60 + 2, Pending),
    ];
    // The long line came over the direct path first.
    messages[3].direct = true;
    let mut action = message(
        7,
        BOB,
        "waves \u{1b}[31mnot red\u{1b}[0m",
        24 * 60 + 3,
        Received,
    );
    action.action = true;
    messages.push(action);
    state.open = Some("conv-bob".into());
    state
        .scrollbacks
        .insert("conv-bob".into(), Scrollback::whole(messages));
    state.input.insert_str("typing a rep");
    // bob's indicator is fresh.
    state.typing_until.insert(BOB.into(), T0 + 10_000);
    state.now_unix_ms = T0;
    state
}

#[test]
fn status_healthy() {
    let state = connected(healthy());
    insta::assert_snapshot!(draw(&state, 100, 20).backend());
}

#[test]
fn status_degraded() {
    let mut status = status(backend(
        Backend::Postgres,
        BackendState::Down,
        "127.0.0.1:15432/kirc_alice",
        "Connection refused (os error 111)",
    ));
    status.topics[2].present = false;
    status.topics[2].partitions = 0;
    let state = connected(status);
    insta::assert_snapshot!(draw(&state, 100, 22).backend());
}

#[test]
fn disconnected_keeps_the_last_known_conversation() {
    let mut state = with_bob_open(connected(healthy()));
    state.daemon_stopping = Some("SIGTERM".into());
    state.link = Link::Disconnected {
        error: "kircd closed the connection".into(),
        since_unix_ms: T0 + 120_000,
        attempt: 3,
        retry_in_ms: 400,
    };
    insta::assert_snapshot!(draw(&state, 100, 20).backend());
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
fn conversation() {
    let state = with_bob_open(connected(healthy()));
    insta::assert_snapshot!(draw(&state, 100, 20).backend());
}

#[test]
fn message_request() {
    let mut state = connected(healthy());
    state.open = Some("conv-carol".into());
    let mut request = message(
        1,
        CAROL,
        "hi, we met at the meetup — add me?",
        0,
        pb::MessageState::Received,
    );
    request.conversation_id = "conv-carol".into();
    state
        .scrollbacks
        .insert("conv-carol".into(), Scrollback::whole(vec![request]));
    state.overlay = Some(Overlay::Contacts);
    insta::assert_snapshot!(draw(&state, 100, 16).backend());
}

#[test]
fn whois_with_a_direct_path() {
    let mut status = healthy();
    status.direct_paths.push(pb::DirectPath {
        actor_id: BOB.into(),
        state: pb::DirectPathState::Connected as i32,
        reason: String::new(),
        route: "host".into(),
        round_trip_us: 420,
        session: "ab".repeat(16),
    });
    let mut state = with_bob_open(connected(status));
    state.overlay = Some(Overlay::Whois {
        actor_id: BOB.into(),
    });
    insta::assert_snapshot!(draw(&state, 100, 22).backend());
}

#[test]
fn help() {
    let mut state = connected(healthy());
    state.overlay = Some(Overlay::Help { scroll: 0 });
    insta::assert_snapshot!(draw(&state, 110, 56).backend());
}

#[test]
fn a_muted_conversation_in_the_list() {
    let mut state = connected(healthy());
    state.view.conversations[0].muted = true;
    state.view.conversations[0].unread = 3;
    insta::assert_snapshot!(draw(&state, 60, 6).backend());
}

#[test]
fn help_scrolled_to_its_end() {
    let mut state = connected(healthy());
    state.overlay = Some(Overlay::Help { scroll: 1000 });
    insta::assert_snapshot!(draw(&state, 110, 30).backend());
}

#[test]
fn search_results() {
    let mut state = with_bob_open(connected(healthy()));
    use pb::MessageState::Received;
    state.overlay = Some(Overlay::Search {
        query: "kafka".into(),
        results: vec![
            message(3, BOB, "nice — it works over Kafka, right?", 2, Received),
            message(1, ME, "kafka all the way down", 0, Received),
        ],
        selected: 1,
    });
    insta::assert_snapshot!(draw(&state, 100, 16).backend());
}

#[test]
fn invite_with_qr() {
    let mut state = connected(healthy());
    state.overlay = Some(Overlay::Invite {
        token: "kirc1:CiAKHgoIYWxpY2VfaWQSEnRoaXMgaXMgYSB0ZXN0IHRva2Vu".into(),
        expires_at_unix_ms: T0 + 7 * 24 * 3_600_000,
    });
    insta::assert_snapshot!(draw(&state, 100, 40).backend());
}

fn transfer(
    id: &str,
    outgoing: bool,
    state: pb::TransferState,
    files: &[(&str, u64)],
    done_bytes: u64,
) -> pb::Transfer {
    pb::Transfer {
        transfer_id: id.into(),
        contact_id: BOB.into(),
        conversation_id: "conv-bob".into(),
        outgoing,
        state: state as i32,
        files: files
            .iter()
            .map(|(path, size)| pb::TransferFile {
                path: (*path).into(),
                size: *size,
                ..pb::TransferFile::default()
            })
            .collect(),
        total_bytes: files.iter().map(|(_, size)| size).sum(),
        done_bytes,
        created_at_unix_ms: T0,
        ..pb::Transfer::default()
    }
}

/// bob's conversation with four transfers in motion (three show under
/// it) and one ended of each kind, most recent first as the daemon keeps
/// them.
fn with_transfers(mut state: State) -> State {
    use pb::TransferState::*;
    let mut sending = transfer("t1", true, Moving, &[("video.bin", 50_000_000)], 20_000_000);
    sending.bytes_per_second = 12_500_000;
    let offer = transfer(
        "t2",
        false,
        Offered,
        &[("photos/a.jpg", 2_000_000), ("photos/b.jpg", 3_000_000)],
        0,
    );
    let mut waiting = transfer("t3", false, Moving, &[("notes.txt", 4096)], 1024);
    waiting.waiting = true;
    let asked = transfer("t4", true, Offered, &[("slides.pdf", 9_000_000)], 0);
    let complete = transfer(
        "t5",
        false,
        Complete,
        &[("song.flac", 31_000_000)],
        31_000_000,
    );
    let mut failed = transfer("t6", false, Failed, &[("iso.img", 700_000_000)], 0);
    failed.reason = "the disk is full (writing /home/alice/Downloads/iso.img)".into();
    let mut cancelled = transfer("t7", true, Cancelled, &[("draft.odt", 12_000)], 0);
    cancelled.reason = "cancelled by bob".into();
    state.view.transfers = vec![sending, offer, waiting, asked, complete, failed, cancelled];
    let mut line = message(
        8,
        BOB,
        "received song.flac (29.6 MiB), saved as /home/alice/Downloads/song.flac, blake3 5d1c…",
        24 * 60 + 4,
        pb::MessageState::Received,
    );
    line.transfer_id = "t5".into();
    if let Some(scrollback) = state.scrollbacks.get_mut("conv-bob") {
        scrollback.messages.push(line);
    }
    state
}

#[test]
fn transfers_under_the_conversation() {
    let state = with_transfers(with_bob_open(connected(healthy())));
    insta::assert_snapshot!(draw(&state, 120, 22).backend());
}

#[test]
fn transfers_overlay() {
    let mut state = with_transfers(with_bob_open(connected(healthy())));
    state.overlay = Some(Overlay::Transfers { selected: 1 });
    insta::assert_snapshot!(draw(&state, 120, 16).backend());
}

#[test]
fn tiny_and_odd_sizes_never_panic() {
    let mut state = with_bob_open(connected(healthy()));
    state
        .input
        .insert_str("\u{202E}rtl override \u{200B}zero width 👩‍👩‍👧 עברית \u{7}");
    for (width, height) in [
        (1, 1),
        (20, 6),
        (5, 40),
        (200, 3),
        (0, 0),
        (59, 10),
        (61, 10),
    ] {
        draw(&state, width, height);
        for overlay in [
            Overlay::Help { scroll: 0 },
            Overlay::Contacts,
            Overlay::Invite {
                token: "kirc1:abc".into(),
                expires_at_unix_ms: T0,
            },
        ] {
            state.overlay = Some(overlay);
            draw(&state, width, height);
        }
        state.overlay = None;
    }
}

#[test]
fn peer_text_cannot_inject_escape_sequences() {
    let state = with_bob_open(connected(healthy()));
    let terminal = draw(&state, 100, 20);
    let screen = terminal.backend().to_string();
    assert!(!screen.contains('\u{1b}'));
    assert!(screen.contains("waves �[31mnot red�[0m"), "{screen}");
}

#[test]
fn a_resize_storm_never_panics() {
    let mut state = with_bob_open(connected(healthy()));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    for step in 0u16..400 {
        let width = (step * 37) % 160;
        let height = (step * 11) % 50;
        update(&mut state, Msg::Resize(width, height));
        terminal.backend_mut().resize(width, height);
        terminal
            .resize(ratatui::layout::Rect::new(0, 0, width, height))
            .unwrap();
        // Scrolling at odd sizes exercises the layout as well.
        if step % 7 == 0 {
            update(
                &mut state,
                Msg::Key(crossterm::event::KeyEvent::new(
                    crossterm::event::KeyCode::PageUp,
                    crossterm::event::KeyModifiers::NONE,
                )),
            );
        }
        terminal.draw(|frame| render(frame, &state)).unwrap();
    }
}
