//! Scrolling back, paging, and views that stay put.

use super::*;

#[test]
fn scrolling_up_fetches_older_pages_once() {
    let mut state = state();
    update(&mut state, Msg::Resize(80, 24));
    let page: Vec<pb::ChatMessage> = (301..=500)
        .map(|seq| message(&format!("m{seq}"), "conv-bob", BOB, seq, "x"))
        .collect();
    type_line(&mut state, "/msg bob");
    update(
        &mut state,
        Msg::History {
            conversation: "conv-bob".into(),
            page: pb::GetHistoryResponse {
                messages: page,
                more_before: true,
                more_after: false,
            },
            anchor: Anchor::Latest,
        },
    );
    let mut asked = Vec::new();
    for _ in 0..20 {
        asked.extend(update(&mut state, key(KeyCode::PageUp)));
    }
    let loads: Vec<&Effect> = asked
        .iter()
        .filter(|effect| matches!(effect, Effect::LoadHistory { .. }))
        .collect();
    assert_eq!(
        loads,
        vec![&Effect::LoadHistory {
            conversation: "conv-bob".into(),
            anchor: Anchor::Before("m301".into())
        }],
        "one request for the page before, while it is on its way"
    );
}

fn screen(state: &State) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    terminal
        .draw(|frame| crate::ui::render(frame, state))
        .unwrap();
    terminal.backend().to_string()
}

#[test]
fn a_scrolled_back_view_stays_put_as_messages_arrive_and_end_returns() {
    let mut state = state();
    update(&mut state, Msg::Resize(80, 24));
    let lots: Vec<pb::ChatMessage> = (1..=100)
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
    open_bob(&mut state, lots);
    update(&mut state, key(KeyCode::PageUp));
    let position = state.scrollbacks["conv-bob"]
        .position
        .expect("scrolled back");
    let before = screen(&state);
    assert!(before.contains("newer messages below"), "{before}");
    assert!(
        !before.contains("line 100 "),
        "the newest is off screen:\n{before}"
    );

    // New messages arrive: the view does not move.
    for seq in 101..=105 {
        update(
            &mut state,
            event(
                seq,
                Kind::MessageAdded(message(
                    &format!("m{seq}"),
                    "conv-bob",
                    BOB,
                    seq,
                    &format!("line {seq}"),
                )),
            ),
        );
    }
    assert_eq!(state.scrollbacks["conv-bob"].position, Some(position));
    // (The list's unread count changes; the scrollback does not.)
    let scrollback_part = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .filter_map(|line| line.split_once('│').map(|(_, right)| right.to_owned()))
            .collect()
    };
    assert_eq!(scrollback_part(&screen(&state)), scrollback_part(&before));

    // Home goes to the oldest, PageDown comes back, End returns to the newest.
    update(&mut state, key(KeyCode::Home));
    assert!(screen(&state).contains("line 1 "));
    for _ in 0..20 {
        update(&mut state, key(KeyCode::PageDown));
    }
    assert_eq!(
        state.scrollbacks["conv-bob"].position, None,
        "paging down reaches the newest"
    );
    update(&mut state, key(KeyCode::PageUp));
    update(&mut state, key(KeyCode::End));
    assert_eq!(state.scrollbacks["conv-bob"].position, None);
    assert!(screen(&state).contains("line 105"));
}
