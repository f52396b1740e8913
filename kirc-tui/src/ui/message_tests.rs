//! Snapshots of messages acted on: a reply with its quote, reactions (ours
//! in bold), an edited message, a deleted one, the message cursor, and the
//! input line's prompt while a reply is written.

use kirc_proto::v1 as pb;

use super::tests::{BOB, ME, connected, draw, healthy, message};
use crate::state::{Compose, Scrollback, State};

fn with_acts_open(mut state: State) -> State {
    use pb::MessageState::{Read, Received};
    let question = message(1, BOB, "shall we move the meetup to thursday?", 0, Received);
    let mut answer = message(2, ME, "thursday works", 1, Read);
    answer.reply_to = question.id.clone();
    answer.quote = Some(pb::Quote {
        sender: BOB.into(),
        excerpt: question.body.clone(),
        deleted: false,
    });
    let mut question = question;
    question.reactions = vec![
        pb::ReactionCount {
            emoji: "👍".into(),
            count: 2,
            mine: true,
        },
        pb::ReactionCount {
            emoji: "🎉".into(),
            count: 1,
            mine: false,
        },
    ];
    let mut edited = message(3, BOB, "see you at 7 (not 6)", 2, Received);
    edited.edited = true;
    let mut deleted = message(4, BOB, "", 3, Received);
    deleted.deleted = true;
    let mut to_deleted = message(5, ME, "what did you say?", 4, Read);
    to_deleted.reply_to = deleted.id.clone();
    to_deleted.quote = Some(pb::Quote {
        sender: BOB.into(),
        excerpt: String::new(),
        deleted: true,
    });
    state.open = Some("conv-bob".into());
    state.scrollbacks.insert(
        "conv-bob".into(),
        Scrollback::whole(vec![question, answer, edited, deleted, to_deleted]),
    );
    state
}

#[test]
fn replies_reactions_edits_and_deletions() {
    let state = with_acts_open(connected(healthy()));
    insta::assert_snapshot!(draw(&state, 90, 16).backend());
}

#[test]
fn the_message_cursor_and_a_reply_being_written() {
    let mut state = with_acts_open(connected(healthy()));
    state.selected = Some("m3".into());
    insta::assert_snapshot!("cursor", draw(&state, 90, 16).backend());
    state.selected = None;
    state.compose = Some(Compose::Reply("m3".into()));
    state.input.insert_str("great");
    insta::assert_snapshot!("replying", draw(&state, 90, 16).backend());
}

#[test]
fn links_are_underlined_and_written_as_terminal_hyperlinks_even_when_wrapped() {
    use ratatui::backend::CrosstermBackend;
    use ratatui::layout::Rect;
    use ratatui::{Terminal, TerminalOptions, Viewport};

    let mut state = connected(healthy());
    let long =
        "https://example.com/a/rather/long/path/that/cannot/fit/on/one/row/of/the/scrollback";
    let messages = vec![
        message(
            1,
            BOB,
            "docs at https://docs.rs/ratatui then lunch",
            0,
            pb::MessageState::Received,
        ),
        message(
            2,
            BOB,
            &format!("and {long}"),
            1,
            pb::MessageState::Received,
        ),
        message(
            3,
            BOB,
            "not this: file:///etc/passwd",
            2,
            pb::MessageState::Received,
        ),
    ];
    state.open = Some("conv-bob".into());
    state
        .scrollbacks
        .insert("conv-bob".into(), Scrollback::whole(messages));
    update_size(&mut state, 90, 16);
    let mut written = Vec::new();
    {
        let mut terminal = Terminal::with_options(
            CrosstermBackend::new(&mut written),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, 90, 16)),
            },
        )
        .unwrap();
        terminal.draw(|frame| super::render(frame, &state)).unwrap();
    }
    let written = String::from_utf8_lossy(&written);
    let opened = |url: &str| written.matches(&format!("\x1b]8;;{url}\x1b\\")).count();
    assert_eq!(opened("https://docs.rs/ratatui"), 1);
    assert_eq!(opened(long), 2, "the wrapped link is a link on both rows");
    assert_eq!(
        written.matches("\x1b]8;;\x1b\\").count(),
        3,
        "each opened link is closed"
    );
    assert!(!written.contains("\x1b]8;;file:"));
}

fn update_size(state: &mut State, columns: u16, rows: u16) {
    crate::update::update(state, crate::update::Msg::Resize(columns, rows));
}

#[test]
fn emoji_sequences_take_their_width_in_messages_names_and_reactions() {
    let mut state = connected(healthy());
    state.view.contacts[0].display_name = "👨‍👩‍👧 fam".into();
    if let Some(peer) = &mut state.view.conversations[0].peer {
        peer.display_name = "👨‍👩‍👧 fam".into();
    }
    let mut hearts = message(
        1,
        BOB,
        "❤️❤️❤️ a heart with its selector is two columns, and so is 👨‍👩‍👧‍👦 a family, 🇫🇷 a flag and 👍🏽 a thumb",
        0,
        pb::MessageState::Received,
    );
    hearts.reactions = vec![pb::ReactionCount {
        emoji: "👩‍💻".into(),
        count: 1,
        mine: true,
    }];
    state.open = Some("conv-bob".into());
    state
        .scrollbacks
        .insert("conv-bob".into(), Scrollback::whole(vec![hearts]));
    insta::assert_snapshot!(draw(&state, 60, 9).backend());
}

#[test]
fn a_theme_colours_the_names_links_counts_and_selection() {
    let mut state = connected(healthy());
    state.theme = crate::theme::Theme::from_config(
        &"attention = \"#ff8800\"\nlink = \"lightgreen\"\nselection = \"17\"\nnames = [\"#112233\"]\n"
            .parse()
            .unwrap(),
    )
    .unwrap();
    state.view.conversations[0].unread = 2;
    state.open = Some("conv-bob".into());
    state.scrollbacks.insert(
        "conv-bob".into(),
        Scrollback::whole(vec![message(
            1,
            BOB,
            "https://kirc.example",
            0,
            pb::MessageState::Received,
        )]),
    );
    state.selected = Some("m1".into());
    // The buffer's debug form lists every style run: the colours are the
    // theme's.
    insta::assert_debug_snapshot!(draw(&state, 70, 5).backend().buffer());
}
