//! Acting on messages: the message cursor and its keys, replies and edits
//! composed in the input line, reactions, deletions, versions, copying, and
//! a message changed by the daemon.

use super::*;
use crate::state::Compose;

/// The keys a selected message takes (shown by the help).
pub const SELECTED_KEYS: &[(&str, &str)] = &[
    ("r", "reply"),
    ("+", "react (an emoji, Enter)"),
    ("e", "edit your message"),
    ("d d", "delete your message for everyone"),
    ("y", "copy its text"),
    ("o", "open its link"),
    ("v", "its versions"),
    ("g", "go to the message it answers"),
    ("esc", "leave the message cursor"),
];

/// A message the daemon changed (edited, deleted, reacted to, or the one a
/// reply quotes arrived): replaced where it is held.
pub(super) fn replace(state: &mut State, message: pb::ChatMessage) {
    if let Some(scrollback) = state.scrollbacks.get_mut(&message.conversation_id)
        && let Some(held) = scrollback
            .messages
            .iter_mut()
            .find(|held| held.id == message.id)
    {
        // The state may be ahead of the copy (events of two writers).
        let delivery = held.state.max(message.state);
        *held = message;
        held.state = delivery;
    }
}

/// Moves the message cursor one message up (`older`) or down, starting at
/// the newest; past the newest it leaves. Lines and transfers are skipped:
/// nothing acts on them.
pub(super) fn select(state: &mut State, older: bool) {
    let Some(open) = state.open.clone() else {
        return;
    };
    let Some(scrollback) = state.scrollbacks.get(&open) else {
        return;
    };
    let actable: Vec<&pb::ChatMessage> = scrollback
        .messages
        .iter()
        .filter(|message| {
            message.line == pb::ChannelLine::None as i32 && message.transfer_id.is_empty()
        })
        .collect();
    let current = state
        .selected
        .as_ref()
        .and_then(|id| actable.iter().position(|message| &message.id == id));
    let next = match (current, older) {
        (None, true) => actable.len().checked_sub(1),
        (None, false) => None,
        (Some(index), true) => Some(index.saturating_sub(1)),
        (Some(index), false) => (index + 1 < actable.len()).then_some(index + 1),
    };
    state.selected = next.map(|index| actable[index].id.clone());
    state.confirm = None;
    keep_in_view(state, &open);
}

/// Selects message `id` of `conversation` and shows it: at once if it is
/// loaded, else once the page around it arrives.
fn go_to(state: &mut State, conversation: &str, id: &str, effects: &mut Vec<Effect>) {
    state.selected = Some(id.to_owned());
    if state.open_message(id).is_some() {
        keep_in_view(state, conversation);
        return;
    }
    if let Some(scrollback) = state.scrollbacks.get_mut(conversation) {
        scrollback.loading = false;
    }
    effects.extend(load(state, conversation, Anchor::Around(id.to_owned())));
}

/// Scrolls so that the selected message is on screen.
pub(super) fn keep_in_view(state: &mut State, conversation: &str) {
    let Some(selected) = state.selected.clone() else {
        return;
    };
    let Some(position) = crate::layout::position_showing(state, conversation, &selected) else {
        return;
    };
    if let Some(scrollback) = state.scrollbacks.get_mut(conversation) {
        scrollback.position = position;
    }
}

/// A key while a message is selected; returns true if it was used.
pub(super) fn selected_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) -> bool {
    let Some(id) = state.selected.clone() else {
        return false;
    };
    let Some(message) = state.open_message(&id).cloned() else {
        state.selected = None;
        return false;
    };
    let modifiers = key.modifiers - KeyModifiers::SHIFT;
    if !modifiers.is_empty() {
        return false;
    }
    let deleting = state.confirm.as_deref() == Some(DELETE_CONFIRM);
    state.confirm = None;
    match key.code {
        KeyCode::Up => select(state, true),
        KeyCode::Down => select(state, false),
        KeyCode::Esc => state.selected = None,
        KeyCode::Char('r') => {
            state.selected = None;
            state.compose = Some(Compose::Reply(id));
        }
        KeyCode::Char('+') => {
            state.selected = None;
            state.compose = Some(Compose::React(id));
        }
        KeyCode::Char('e') => {
            if !message.outgoing || message.deleted {
                notice(state, "only your own messages can be edited", true);
            } else {
                state.selected = None;
                state.input.set(&message.body);
                state.compose = Some(Compose::Edit(id));
            }
        }
        KeyCode::Char('d') => {
            if !message.outgoing || message.deleted {
                notice(state, "only your own messages can be deleted", true);
            } else if deleting {
                state.selected = None;
                effects.push(Effect::Delete(id));
            } else {
                state.confirm = Some(String::from(DELETE_CONFIRM));
                notice(
                    state,
                    "d again deletes this message for everyone; Esc keeps it",
                    false,
                );
            }
        }
        KeyCode::Char('y') => {
            if message.deleted {
                notice(state, "a deleted message has no text to copy", true);
            } else {
                effects.push(Effect::Copy(message.body.clone()));
                notice(state, "copied the message to the clipboard", false);
            }
        }
        KeyCode::Char('v') => effects.push(Effect::Versions(id)),
        KeyCode::Char('g') if !message.reply_to.is_empty() => {
            go_to(state, &message.conversation_id, &message.reply_to, effects);
        }
        KeyCode::Char('o') => {
            let links = crate::links::of_message(&message);
            match links.first() {
                None => notice(state, "this message has no link", true),
                Some(url) => {
                    effects.push(Effect::OpenLink(url.clone()));
                    let more = if links.len() > 1 {
                        format!(" (the first of {}; /links lists them)", links.len())
                    } else {
                        String::new()
                    };
                    notice(state, format!("opening {url}{more}"), false);
                }
            }
        }
        _ => return false,
    }
    true
}

/// `confirm` while a deletion waits for its second `d`.
const DELETE_CONFIRM: &str = "\u{0}delete";

/// The message a command acts on: the selected one, or else the newest one
/// that `pick` accepts.
fn target(state: &State, pick: impl Fn(&pb::ChatMessage) -> bool) -> Option<pb::ChatMessage> {
    if let Some(selected) = state
        .selected
        .as_deref()
        .and_then(|id| state.open_message(id))
    {
        return Some(selected.clone());
    }
    let open = state.open.as_deref()?;
    state
        .scrollbacks
        .get(open)?
        .messages
        .iter()
        .rev()
        .find(|message| {
            message.line == pb::ChannelLine::None as i32
                && message.transfer_id.is_empty()
                && !message.deleted
                && pick(message)
        })
        .cloned()
}

/// Runs /reply, /react, /edit, /delete and /versions.
pub(super) fn run_command(state: &mut State, command: Command, effects: &mut Vec<Effect>) {
    let theirs = |message: &pb::ChatMessage| !message.outgoing;
    let ours = |message: &pb::ChatMessage| message.outgoing;
    match command {
        Command::Reply(text) => match target(state, theirs) {
            Some(message) => send_reply(state, text, message.id, effects),
            None => notice(state, "no message to reply to here", true),
        },
        Command::React(emoji) => match target(state, theirs) {
            Some(message) => react(state, &message, emoji, effects),
            None => notice(state, "no message to react to here", true),
        },
        Command::Edit(text) => match target(state, ours) {
            Some(message) if message.outgoing && !message.deleted => match text {
                Some(text) => effects.push(Effect::Edit {
                    message_id: message.id,
                    text,
                }),
                None => {
                    state.input.set(&message.body);
                    state.compose = Some(Compose::Edit(message.id));
                }
            },
            _ => notice(state, "you have no message here to edit", true),
        },
        Command::Delete => match target(state, ours) {
            Some(message) if message.outgoing && !message.deleted => {
                effects.push(Effect::Delete(message.id));
            }
            _ => notice(state, "you have no message here to delete", true),
        },
        Command::Versions => match target(state, |_| true) {
            Some(message) => effects.push(Effect::Versions(message.id)),
            None => notice(state, "no message here", true),
        },
        _ => {}
    }
    state.selected = None;
}

/// Reacts with `emoji`, or takes our reaction back if we reacted with it.
fn react(state: &mut State, message: &pb::ChatMessage, emoji: String, effects: &mut Vec<Effect>) {
    let emoji = emoji.trim().to_owned();
    if emoji.is_empty() || emoji.chars().any(char::is_whitespace) {
        notice(
            state,
            "react with one emoji (or a short word without spaces)",
            true,
        );
        return;
    }
    let remove = message
        .reactions
        .iter()
        .any(|reaction| reaction.mine && reaction.emoji == emoji);
    effects.push(Effect::React {
        message_id: message.id.clone(),
        emoji,
        remove,
    });
}

fn send_reply(state: &mut State, text: String, reply_to: String, effects: &mut Vec<Effect>) {
    send_text_replying(state, text, false, Some(reply_to), effects);
}

/// Enter while composing: the line goes as a reply, an edit or a reaction.
/// Returns false when nothing is being composed, or the line is a command
/// (which ends the composing).
pub(super) fn submit_compose(state: &mut State, line: &str, effects: &mut Vec<Effect>) -> bool {
    let Some(compose) = state.compose.take() else {
        return false;
    };
    if line.starts_with('/') && !line.starts_with("//") {
        return false;
    }
    match compose {
        Compose::Reply(id) => send_reply(state, line.to_owned(), id, effects),
        Compose::Edit(id) => effects.push(Effect::Edit {
            message_id: id,
            text: line.to_owned(),
        }),
        Compose::React(id) => match state.open_message(&id).cloned() {
            Some(message) => react(state, &message, line.to_owned(), effects),
            None => notice(state, "that message is no longer here", true),
        },
    }
    true
}
