//! Typing, commands, completion, switching, presence and drafts.

use super::*;

#[test]
fn text_goes_to_the_open_conversation_and_commands_run() {
    let mut state = state();
    let effects = type_line(&mut state, "hello?");
    assert!(effects.is_empty());
    assert!(
        state
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("open a conversation first")
    );
    assert_eq!(state.input.text(), "hello?", "nothing typed is lost");
    update(&mut state, ctrl('u'));

    let effects = type_line(&mut state, "/msg bob hi bob");
    assert_eq!(
        effects,
        vec![
            Effect::LoadHistory {
                conversation: "conv-bob".into(),
                anchor: Anchor::Latest
            },
            Effect::Send {
                to: BOB.into(),
                text: "hi bob".into(),
                action: false,
                reply_to: None,
            }
        ]
    );
    assert_eq!(state.open.as_deref(), Some("conv-bob"));
    assert_eq!(
        type_line(&mut state, "/me waves"),
        vec![Effect::Send {
            to: BOB.into(),
            text: "waves".into(),
            action: true,
            reply_to: None,
        }]
    );
    assert_eq!(type_line(&mut state, "/invite"), vec![Effect::CreateInvite]);
    assert_eq!(
        type_line(&mut state, "/accept carol"),
        vec![Effect::Accept("carol".into())]
    );
    assert_eq!(
        type_line(&mut state, "/block"),
        vec![Effect::Block(BOB.into())]
    );
    assert_eq!(
        type_line(&mut state, "/search zebra"),
        vec![Effect::Search("zebra".into())]
    );
    type_line(&mut state, "/help");
    assert_eq!(state.overlay, Some(Overlay::Help { scroll: 0 }));
    update(&mut state, key(KeyCode::Esc));
    assert_eq!(state.overlay, None);
    type_line(&mut state, "/quit");
    assert!(state.quit);
}

#[test]
fn a_mistyped_command_is_questioned_and_sent_only_when_confirmed() {
    let mut state = state();
    open_bob(&mut state, Vec::new());
    let effects = type_line(&mut state, "/mgs bob hi");
    assert!(effects.is_empty());
    let notice = state.notice.clone().unwrap();
    assert!(notice.text.contains("did you mean /msg"), "{}", notice.text);
    assert_eq!(
        state.input.text(),
        "/mgs bob hi",
        "the line comes back for editing"
    );
    let effects = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::Send {
            to: BOB.into(),
            text: "/mgs bob hi".into(),
            action: false,
            reply_to: None,
        }]
    );
}

#[test]
fn a_multi_line_paste_is_one_message() {
    let mut state = state();
    open_bob(&mut state, Vec::new());
    assert!(
        update(
            &mut state,
            Msg::Paste("line one\r\nline two\nline three".into())
        )
        .is_empty()
    );
    let effects = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::Send {
            to: BOB.into(),
            text: "line one\nline two\nline three".into(),
            action: false,
            reply_to: None,
        }]
    );
}

#[test]
fn tab_completes_commands_and_cycles_contact_names() {
    let mut state = state();
    for c in "/bl".chars() {
        update(&mut state, key(KeyCode::Char(c)));
    }
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.input.text(), "/block ");
    update(&mut state, ctrl('u'));
    // Two contacts: Tab cycles bob, carol.
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.input.text(), "bob: ");
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.input.text(), "carol: ");
    update(&mut state, ctrl('u'));
    for c in "/msg ca".chars() {
        update(&mut state, key(KeyCode::Char(c)));
    }
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.input.text(), "/msg carol ");
}

#[test]
fn conversations_switch_with_alt_digits_and_ctrl_n_p() {
    let mut state = state();
    update(
        &mut state,
        Msg::Key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT)),
    );
    assert_eq!(state.open.as_deref(), Some("conv-carol"));
    update(&mut state, ctrl('n'));
    assert_eq!(state.open.as_deref(), Some("conv-bob"));
    update(&mut state, ctrl('p'));
    assert_eq!(state.open.as_deref(), Some("conv-carol"));
    update(
        &mut state,
        Msg::Key(KeyEvent::new(KeyCode::Char('9'), KeyModifiers::ALT)),
    );
    assert_eq!(
        state.open.as_deref(),
        Some("conv-carol"),
        "no ninth conversation: nothing changes"
    );
}

#[test]
fn typing_is_reported_for_text_and_stopped_when_sent_or_cleared_but_not_for_commands() {
    let mut state = state();
    open_bob(&mut state, Vec::new());
    let typing = |effects: &[Effect]| -> Vec<bool> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Typing {
                    conversation,
                    active,
                } if conversation == "conv-bob" => Some(*active),
                _ => None,
            })
            .collect()
    };
    let effects = crate::update::update(&mut state, key(KeyCode::Char('h')));
    assert_eq!(typing(&effects), vec![true]);
    assert!(effects.contains(&Effect::Activity));
    let effects = crate::update::update(&mut state, key(KeyCode::Backspace));
    assert_eq!(typing(&effects), vec![false], "cleared");
    for c in "hi".chars() {
        crate::update::update(&mut state, key(KeyCode::Char(c)));
    }
    let effects = crate::update::update(&mut state, key(KeyCode::Enter));
    assert_eq!(typing(&effects), vec![false], "sent");
    assert!(
        effects
            .iter()
            .any(|effect| matches!(effect, Effect::Send { .. }))
    );
    // A command being typed is not typing.
    let effects = crate::update::update(&mut state, key(KeyCode::Char('/')));
    assert!(typing(&effects).is_empty());
}

#[test]
fn away_and_back_set_presence() {
    let mut state = state();
    assert_eq!(
        type_line(&mut state, "/away lunch"),
        vec![Effect::SetPresence {
            state: pb::PresenceState::Away,
            text: "lunch".into()
        }]
    );
    assert_eq!(
        type_line(&mut state, "/back"),
        vec![Effect::SetPresence {
            state: pb::PresenceState::Online,
            text: String::new()
        }]
    );
}

#[test]
fn drafts_follow_their_conversation_and_the_session_restores_them() {
    let mut state = State::new("/tmp/s".into(), jiff::tz::TimeZone::UTC);
    update(&mut state, Msg::Link(Link::Connected));
    let contacts = vec![
        contact(BOB, "bob", "conv-bob", ContactState::Accepted),
        contact(CAROL, "carol", "conv-carol", ContactState::Accepted),
    ];
    let conversations = conversations_of(&contacts);
    let effects = crate::update::update(
        &mut state,
        event(
            1,
            Kind::Snapshot(pb::Snapshot {
                status: None,
                epoch: 1,
                contacts,
                conversations,
                presence: Vec::new(),
                transfers: Vec::new(),
            }),
        ),
    );
    assert_eq!(
        effects,
        vec![Effect::LoadSession("default".into())],
        "asked once, at the first snapshot"
    );
    let mut drafts = std::collections::HashMap::new();
    drafts.insert("conv-carol".to_owned(), "unfinished".to_owned());
    crate::update::update(
        &mut state,
        Msg::Session(pb::Session {
            name: "default".into(),
            open_conversation: "conv-carol".into(),
            drafts,
        }),
    );
    assert_eq!(state.open.as_deref(), Some("conv-carol"));
    assert_eq!(state.input.text(), "unfinished");
    // Switching keeps each conversation's draft, and saves the session.
    let effects = crate::update::update(
        &mut state,
        Msg::Key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::ALT)),
    );
    let saved = effects.iter().find_map(|effect| match effect {
        Effect::SaveSession(session) => Some(session.clone()),
        _ => None,
    });
    let saved = saved.expect("the session is saved on a switch");
    assert_eq!(saved.open_conversation, "conv-bob");
    assert_eq!(
        saved.drafts.get("conv-carol").map(String::as_str),
        Some("unfinished")
    );
    assert_eq!(state.input.text(), "");
    crate::update::update(
        &mut state,
        Msg::Key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT)),
    );
    assert_eq!(state.input.text(), "unfinished");
    assert_eq!(session_of(&state).drafts.len(), 1);
}
