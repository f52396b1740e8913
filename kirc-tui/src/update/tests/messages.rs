//! The message cursor and what its keys and the message commands ask of
//! the daemon; a message the daemon changed.

use super::*;
use crate::state::Compose;

fn alt(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::ALT))
}

fn char_key(c: char) -> Msg {
    key(KeyCode::Char(c))
}

/// bob's conversation with bob's m1, our m2, bob's m3 (the newest).
fn with_three() -> State {
    let mut state = state();
    let mut mine = message("m2", "conv-bob", ME, 2, "mine");
    mine.outgoing = true;
    open_bob(
        &mut state,
        vec![
            message("m1", "conv-bob", BOB, 1, "first"),
            mine,
            message("m3", "conv-bob", BOB, 3, "third"),
        ],
    );
    state
}

#[test]
fn alt_up_and_down_walk_the_message_cursor_from_the_newest_and_out() {
    let mut state = with_three();
    let walk: Vec<Option<String>> = [
        alt(KeyCode::Up),
        alt(KeyCode::Up),
        key(KeyCode::Up),
        key(KeyCode::Up),
        key(KeyCode::Down),
        alt(KeyCode::Down),
        alt(KeyCode::Down),
    ]
    .into_iter()
    .map(|msg| {
        update(&mut state, msg);
        state.selected.clone()
    })
    .collect();
    let ids = |ids: &[Option<&str>]| -> Vec<Option<String>> {
        ids.iter().map(|id| id.map(String::from)).collect()
    };
    assert_eq!(
        walk,
        ids(&[
            Some("m3"),
            Some("m2"),
            Some("m1"),
            Some("m1"),
            Some("m2"),
            Some("m3"),
            None
        ])
    );
    update(&mut state, alt(KeyCode::Up));
    update(&mut state, key(KeyCode::Esc));
    assert_eq!(state.selected, None);
}

#[test]
fn a_selected_message_is_replied_to_reacted_to_copied_and_its_versions_shown() {
    let mut state = with_three();
    update(&mut state, alt(KeyCode::Up));
    update(&mut state, char_key('r'));
    assert_eq!(state.compose, Some(Compose::Reply("m3".into())));
    assert_eq!(
        type_line(&mut state, "yes"),
        vec![Effect::Send {
            to: BOB.into(),
            text: "yes".into(),
            action: false,
            reply_to: Some("m3".into()),
        }]
    );
    assert_eq!(state.compose, None, "one reply, then plain messages again");

    update(&mut state, alt(KeyCode::Up));
    update(&mut state, char_key('+'));
    assert_eq!(
        type_line(&mut state, "👍"),
        vec![Effect::React {
            message_id: "m3".into(),
            emoji: "👍".into(),
            remove: false,
        }]
    );

    update(&mut state, alt(KeyCode::Up));
    assert_eq!(
        update(&mut state, char_key('y')),
        vec![Effect::Copy("third".into())]
    );
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|notice| notice.text.contains("copied"))
    );
    assert_eq!(
        update(&mut state, char_key('v')),
        vec![Effect::Versions("m3".into())]
    );
}

#[test]
fn only_our_own_message_is_edited_or_deleted_and_a_deletion_asks_first() {
    let mut state = with_three();
    update(&mut state, alt(KeyCode::Up));
    assert!(update(&mut state, char_key('e')).is_empty());
    assert!(state.notice.as_ref().is_some_and(|notice| notice.error));
    assert_eq!(state.compose, None);

    update(&mut state, key(KeyCode::Up));
    assert_eq!(state.selected.as_deref(), Some("m2"));
    update(&mut state, char_key('e'));
    assert_eq!(state.compose, Some(Compose::Edit("m2".into())));
    assert_eq!(state.input.text(), "mine", "the text to change");
    update(&mut state, ctrl('u'));
    assert_eq!(
        type_line(&mut state, "mine, better"),
        vec![Effect::Edit {
            message_id: "m2".into(),
            text: "mine, better".into(),
        }]
    );

    update(&mut state, alt(KeyCode::Up));
    update(&mut state, key(KeyCode::Up));
    assert!(update(&mut state, char_key('d')).is_empty(), "asks first");
    assert_eq!(
        update(&mut state, char_key('d')),
        vec![Effect::Delete("m2".into())]
    );
}

#[test]
fn the_commands_act_on_the_newest_message_of_the_right_side() {
    let mut state = with_three();
    assert_eq!(
        type_line(&mut state, "/react 🎉"),
        vec![Effect::React {
            message_id: "m3".into(),
            emoji: "🎉".into(),
            remove: false,
        }]
    );
    assert_eq!(
        type_line(&mut state, "/edit fixed"),
        vec![Effect::Edit {
            message_id: "m2".into(),
            text: "fixed".into(),
        }]
    );
    assert_eq!(
        type_line(&mut state, "/delete"),
        vec![Effect::Delete("m2".into())]
    );
    assert_eq!(
        type_line(&mut state, "/reply sure"),
        vec![Effect::Send {
            to: BOB.into(),
            text: "sure".into(),
            action: false,
            reply_to: Some("m3".into()),
        }]
    );
    // /edit without text puts the message in the line to change it.
    assert!(type_line(&mut state, "/edit").is_empty());
    assert_eq!(state.input.text(), "mine");
    assert_eq!(state.compose, Some(Compose::Edit("m2".into())));
    update(&mut state, key(KeyCode::Esc));
    assert_eq!(state.compose, None, "Esc gives the edit up");
}

#[test]
fn our_own_reaction_with_the_same_emoji_is_taken_back() {
    let mut state = with_three();
    let mut reacted = message("m3", "conv-bob", BOB, 3, "third");
    reacted.reactions = vec![pb::ReactionCount {
        emoji: "👍".into(),
        count: 2,
        mine: true,
    }];
    update(&mut state, event(2, Kind::MessageUpdated(reacted)));
    assert_eq!(
        type_line(&mut state, "/react 👍"),
        vec![Effect::React {
            message_id: "m3".into(),
            emoji: "👍".into(),
            remove: true,
        }]
    );
}

#[test]
fn an_updated_message_replaces_the_held_one_without_a_notification() {
    let mut state = with_three();
    let mut edited = message("m1", "conv-bob", BOB, 1, "first, edited");
    edited.edited = true;
    let effects = update(&mut state, event(2, Kind::MessageUpdated(edited)));
    assert!(effects.is_empty(), "{effects:?}");
    let held = state.open_message("m1").unwrap();
    assert_eq!((held.body.as_str(), held.edited), ("first, edited", true));
    assert_eq!(state.scrollbacks["conv-bob"].messages.len(), 3);
}

#[test]
fn y_copies_the_invite_token_and_alt_enter_starts_a_new_line() {
    let mut state = with_three();
    update(
        &mut state,
        Msg::Invite(pb::CreateInviteResponse {
            token: "kirc1:abc".into(),
            expires_at_unix_ms: 1,
        }),
    );
    assert_eq!(
        update(&mut state, char_key('y')),
        vec![Effect::Copy("kirc1:abc".into())]
    );
    update(&mut state, key(KeyCode::Esc));
    update(&mut state, char_key('a'));
    update(&mut state, alt(KeyCode::Enter));
    update(&mut state, char_key('b'));
    assert_eq!(state.input.text(), "a\nb");
    assert_eq!(
        update(&mut state, key(KeyCode::Enter)),
        vec![Effect::Send {
            to: BOB.into(),
            text: "a\nb".into(),
            action: false,
            reply_to: None,
        }]
    );
}

#[test]
fn alt_u_and_alt_m_go_to_the_next_unread_and_mention_and_readall_marks_every_one() {
    let mut state = with_three();
    let mut to_carol = message("c1", "conv-carol", CAROL, 10, "hey alice!");
    to_carol.outgoing = false;
    update(&mut state, event(2, Kind::MessageAdded(to_carol)));
    assert!(state.mentions.contains("conv-carol"));
    update(&mut state, alt(KeyCode::Char('m')));
    assert_eq!(state.open.as_deref(), Some("conv-carol"));
    update(&mut state, alt(KeyCode::Char('u')));
    assert_eq!(
        state.open.as_deref(),
        Some("conv-carol"),
        "nothing else is unread: it stays"
    );
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|notice| notice.text == "nothing unread")
    );
}

#[test]
fn the_notice_that_a_contact_will_confirm_goes_once_they_do() {
    let mut state = state();
    let mut dave = contact(
        "dddddddddddddddddddddddddddddddd",
        "dave",
        "conv-dave",
        ContactState::Accepted,
    );
    dave.peer_accepted = false;
    update(&mut state, Msg::Added(dave.clone()));
    assert!(
        state
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("they will confirm")
    );
    dave.peer_accepted = true;
    update(&mut state, event(2, Kind::ContactChanged(dave)));
    assert_eq!(
        state.notice.as_ref().unwrap().text,
        "dave confirmed: you can talk"
    );
}

#[test]
fn links_open_by_number_from_the_list_and_from_the_selected_message() {
    let mut state = state();
    open_bob(
        &mut state,
        vec![
            message("m1", "conv-bob", BOB, 1, "old https://old.example"),
            message(
                "m2",
                "conv-bob",
                BOB,
                2,
                "two: https://a.example and https://b.example",
            ),
        ],
    );
    // Newest first: m2's two, then m1's.
    assert_eq!(
        type_line(&mut state, "/open 3"),
        vec![Effect::OpenLink("https://old.example".into())]
    );
    assert!(type_line(&mut state, "/open 4").is_empty());
    assert!(state.notice.as_ref().is_some_and(|notice| notice.error));

    type_line(&mut state, "/links");
    assert_eq!(state.overlay, Some(Overlay::Links { selected: 0 }));
    update(&mut state, key(KeyCode::Down));
    assert_eq!(
        update(&mut state, char_key('y')),
        vec![Effect::Copy("https://b.example".into())]
    );
    assert_eq!(
        update(&mut state, key(KeyCode::Enter)),
        vec![Effect::OpenLink("https://b.example".into())]
    );
    assert_eq!(state.overlay, None);

    update(&mut state, alt(KeyCode::Up));
    update(&mut state, alt(KeyCode::Up));
    assert_eq!(
        update(&mut state, char_key('o')),
        vec![Effect::OpenLink("https://old.example".into())]
    );
}

#[test]
fn a_muted_conversation_counts_but_never_notifies() {
    let mut state = state();
    update(&mut state, Msg::Focus(false));
    assert_eq!(
        type_line(&mut state, "/msg carol")
            .into_iter()
            .filter(|effect| matches!(effect, Effect::LoadHistory { .. }))
            .count(),
        1
    );
    assert_eq!(
        type_line(&mut state, "/mute"),
        vec![Effect::SetMuted {
            conversation: "conv-carol".into(),
            muted: true,
        }]
    );
    update(
        &mut state,
        event(
            2,
            Kind::ConversationMuted(pb::ConversationMuted {
                conversation_id: "conv-bob".into(),
                muted: true,
            }),
        ),
    );
    let effects = update(
        &mut state,
        event(
            3,
            Kind::MessageAdded(message("m9", "conv-bob", BOB, 9, "hello alice")),
        ),
    );
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::Notify { .. })),
        "{effects:?}"
    );
    assert_eq!(state.view.conversation("conv-bob").unwrap().unread, 1);
}

fn mouse(kind: MouseEventKind, column: u16, row: u16) -> Msg {
    Msg::Mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

#[test]
fn the_wheel_scrolls_the_conversation_and_a_click_opens_one_from_the_list() {
    let mut state = state();
    update(&mut state, Msg::Resize(80, 10));
    let messages: Vec<pb::ChatMessage> = (1..=30)
        .map(|seq| {
            message(
                &format!("m{seq}"),
                "conv-bob",
                BOB,
                seq,
                &format!("line {seq}"),
            )
        })
        .collect();
    open_bob(&mut state, messages);
    assert_eq!(state.scrollbacks["conv-bob"].position, None);
    // The scrollback is right of the 24-column list.
    update(&mut state, mouse(MouseEventKind::ScrollUp, 40, 4));
    let up = state.scrollbacks["conv-bob"]
        .position
        .expect("scrolled back");
    update(&mut state, mouse(MouseEventKind::ScrollUp, 40, 4));
    let further = state.scrollbacks["conv-bob"].position.unwrap();
    assert!(
        further.seq < up.seq || further.row < up.row,
        "{up:?} then {further:?}"
    );
    update(&mut state, mouse(MouseEventKind::ScrollDown, 40, 4));
    update(&mut state, mouse(MouseEventKind::ScrollDown, 40, 4));
    assert_eq!(
        state.scrollbacks["conv-bob"].position, None,
        "back at the newest"
    );

    // The wheel over the list scrolls nothing; a click on its second row
    // opens carol's request.
    update(&mut state, mouse(MouseEventKind::ScrollUp, 3, 4));
    assert_eq!(state.scrollbacks["conv-bob"].position, None);
    let effects = update(
        &mut state,
        mouse(MouseEventKind::Down(MouseButton::Left), 5, 1),
    );
    assert_eq!(state.open.as_deref(), Some("conv-carol"));
    assert!(
        effects
            .iter()
            .any(|effect| matches!(effect, Effect::LoadHistory { .. }))
    );
}

#[test]
fn ctrl_x_hands_the_draft_to_the_editor_and_takes_back_what_it_wrote() {
    let mut state = with_three();
    for c in "draft".chars() {
        update(&mut state, char_key(c));
    }
    assert_eq!(
        update(&mut state, ctrl('x')),
        vec![Effect::Editor("draft".into())]
    );
    update(&mut state, Msg::Composed("draft, longer\nand on".into()));
    assert_eq!(state.input.text(), "draft, longer\nand on");
}

#[test]
fn g_on_a_reply_goes_to_the_message_it_answers_loaded_or_not() {
    let mut state = state();
    let mut reply = message("m5", "conv-bob", BOB, 5, "yes to that");
    reply.reply_to = "m1".into();
    let mut old_reply = message("m6", "conv-bob", BOB, 6, "and to this");
    old_reply.reply_to = "m0".into();
    open_bob(
        &mut state,
        vec![message("m1", "conv-bob", BOB, 1, "first"), reply, old_reply],
    );
    update(&mut state, alt(KeyCode::Up));
    update(&mut state, key(KeyCode::Up));
    assert_eq!(state.selected.as_deref(), Some("m5"));
    assert!(update(&mut state, char_key('g')).is_empty(), "m1 is loaded");
    assert_eq!(state.selected.as_deref(), Some("m1"));

    update(&mut state, key(KeyCode::Esc));
    update(&mut state, alt(KeyCode::Up));
    assert_eq!(
        update(&mut state, char_key('g')),
        vec![Effect::LoadHistory {
            conversation: "conv-bob".into(),
            anchor: Anchor::Around("m0".into()),
        }]
    );
    update(
        &mut state,
        Msg::History {
            conversation: "conv-bob".into(),
            page: pb::GetHistoryResponse {
                messages: vec![message("m0", "conv-bob", BOB, 0, "long ago")],
                more_before: false,
                more_after: true,
            },
            anchor: Anchor::Around("m0".into()),
        },
    );
    assert_eq!(state.selected.as_deref(), Some("m0"));
    assert!(state.open_message("m0").is_some());
}
