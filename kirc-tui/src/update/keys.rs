//! Keys, the input line and slash commands: what each does to the state,
//! and the effects it asks for.

use super::*;

pub(super) fn on_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.kind == KeyEventKind::Release {
        return;
    }
    effects.push(Effect::Activity);
    let before = state.input.text().to_owned();
    let open_before = state.open.clone();
    edit_or_act(state, key, effects);
    // Typing is reported for text, not for commands.
    if let Some(conversation) = open_before
        && state.open.as_ref() == Some(&conversation)
    {
        let now = state.input.text();
        let texting = |text: &str| !text.trim().is_empty() && !text.starts_with('/');
        if now != before {
            if texting(now) {
                effects.push(Effect::Typing {
                    conversation,
                    active: true,
                });
            } else if texting(&before) {
                effects.push(Effect::Typing {
                    conversation,
                    active: false,
                });
            }
        }
    }
}

pub(super) fn edit_or_act(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.code != KeyCode::Tab {
        state.completion = None;
    }
    if state.overlay.is_some() && overlay_key(state, key, effects) {
        return;
    }
    if state.selected.is_some() && state.keymap.action(&key).is_none() {
        if messages::selected_key(state, key, effects) {
            return;
        }
        // Any other key leaves the message cursor and does what it does.
        state.selected = None;
    }
    if let Some(action) = state.keymap.action(&key) {
        on_action(state, action, effects);
        return;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::Char(digit @ '1'..='9') if alt => {
            let index = (digit as usize) - ('1' as usize);
            if let Some(conversation) = state.conversation_ids().get(index).cloned() {
                open(state, &conversation, effects);
            }
        }
        KeyCode::Char('a') if ctrl => state.input.home(),
        KeyCode::Char('e') if ctrl => state.input.end(),
        KeyCode::Char('w') if ctrl => state.input.delete_word_back(),
        KeyCode::Char('u') if ctrl => state.input.delete_to_start(),
        KeyCode::Char('k') if ctrl => state.input.delete_to_end(),
        KeyCode::Char('b') if alt => state.input.word_left(),
        KeyCode::Char('f') if alt => state.input.word_right(),
        KeyCode::Char(c) if !ctrl && !alt => state.input.insert(c),
        KeyCode::Left => state.input.left(),
        KeyCode::Right => state.input.right(),
        KeyCode::Up => state.input.history_back(),
        KeyCode::Down => state.input.history_forward(),
        KeyCode::Backspace => state.input.backspace(),
        KeyCode::Delete => state.input.delete(),
        // A new line in the message (most terminals send alt-enter for it;
        // Enter alone sends).
        KeyCode::Enter if alt => state.input.insert('\n'),
        KeyCode::Enter => submit(state, effects),
        // A reply, edit or reaction being written is given up first.
        KeyCode::Esc if state.compose.take().is_some() => {}
        KeyCode::Esc => state.notice = None,
        _ => {}
    }
}

/// Keys while an overlay is open; returns true if the key was used.
pub(super) fn overlay_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) -> bool {
    if key.code == KeyCode::Esc {
        state.overlay = None;
        return true;
    }
    if let Some(Overlay::Search {
        results, selected, ..
    }) = &mut state.overlay
    {
        match key.code {
            KeyCode::Up => {
                *selected = selected.saturating_sub(1);
                return true;
            }
            KeyCode::Down => {
                *selected = (*selected + 1).min(results.len().saturating_sub(1));
                return true;
            }
            KeyCode::Enter => {
                if let Some(result) = results.get(*selected).cloned() {
                    state.overlay = None;
                    state.open = Some(result.conversation_id.clone());
                    if let Some(scrollback) = state.scrollbacks.get_mut(&result.conversation_id) {
                        scrollback.loading = false;
                    }
                    effects.extend(load(
                        state,
                        &result.conversation_id,
                        Anchor::Around(result.id),
                    ));
                }
                return true;
            }
            _ => {}
        }
    }
    if let Some(Overlay::Invite { token, .. }) = &state.overlay {
        if key.code == KeyCode::Char('y') {
            effects.push(Effect::Copy(token.clone()));
            notice(state, "copied the invite token to the clipboard", false);
            return true;
        }
        return false;
    }
    if let Some(Overlay::Help { scroll }) = &mut state.overlay {
        let page = usize::from(state.screen.1.saturating_sub(4)).max(1);
        match key.code {
            KeyCode::Up => *scroll = scroll.saturating_sub(1),
            KeyCode::Down => *scroll += 1,
            KeyCode::PageUp => *scroll = scroll.saturating_sub(page),
            KeyCode::PageDown => *scroll += page,
            KeyCode::Home => *scroll = 0,
            _ => return false,
        }
        // No further than the help's lines go (a command or key per line,
        // and the few lines around them), so that Up after many Downs
        // moves at once; the renderer stops at the last screenful.
        let lines = commands::COMMANDS.len() + state.keymap.described.len() + 16;
        *scroll = (*scroll).min(lines);
        return true;
    }
    if let Some(Overlay::Links { selected }) = state.overlay {
        let links = state
            .open
            .as_deref()
            .map(|open| crate::links::of_conversation(state, open))
            .unwrap_or_default();
        let moved = |selected: usize| Some(Overlay::Links { selected });
        match key.code {
            KeyCode::Up => state.overlay = moved(selected.saturating_sub(1)),
            KeyCode::Down => {
                state.overlay = moved((selected + 1).min(links.len().saturating_sub(1)));
            }
            KeyCode::Enter | KeyCode::Char('y') => {
                let Some(url) = links.get(selected).cloned() else {
                    return true;
                };
                if key.code == KeyCode::Enter {
                    state.overlay = None;
                    notice(state, format!("opening {url}"), false);
                    effects.push(Effect::OpenLink(url));
                } else {
                    notice(state, "copied the link to the clipboard", false);
                    effects.push(Effect::Copy(url));
                }
            }
            _ => return false,
        }
        return true;
    }
    if let Some(Overlay::Transfers { selected }) = &mut state.overlay {
        let count = state.view.transfers.len();
        match key.code {
            KeyCode::Up => *selected = selected.saturating_sub(1),
            KeyCode::Down => *selected = (*selected + 1).min(count.saturating_sub(1)),
            KeyCode::Char(c @ ('c' | 'a' | 'r')) => {
                let Some(transfer) = state.view.transfers.get(*selected) else {
                    return true;
                };
                let offered_to_us =
                    !transfer.outgoing && transfer.state() == pb::TransferState::Offered;
                let unfinished = matches!(
                    transfer.state(),
                    pb::TransferState::Offered | pb::TransferState::Moving
                );
                let transfer_id = transfer.transfer_id.clone();
                match c {
                    'c' if unfinished => effects.push(Effect::CancelTransfer(transfer_id)),
                    'a' | 'r' if offered_to_us => effects.push(Effect::AnswerTransfer {
                        transfer_id,
                        accept: c == 'a',
                    }),
                    _ => {}
                }
            }
            _ => return false,
        }
        return true;
    }
    false
}

pub(super) fn on_action(state: &mut State, action: Action, effects: &mut Vec<Effect>) {
    match action {
        Action::NextConversation | Action::PreviousConversation => {
            let ids = state.conversation_ids();
            if ids.is_empty() {
                return;
            }
            let current = state
                .open
                .as_ref()
                .and_then(|open| ids.iter().position(|id| id == open));
            let next = match (current, action) {
                (None, _) => 0,
                (Some(index), Action::NextConversation) => (index + 1) % ids.len(),
                (Some(index), _) => (index + ids.len() - 1) % ids.len(),
            };
            open(state, &ids[next], effects);
        }
        Action::ScrollUp | Action::ScrollDown | Action::ScrollTop | Action::ScrollBottom => {
            scroll(state, action, effects)
        }
        Action::NextUnread => {
            let found = next_conversation(state, |conversation| conversation.unread > 0);
            match found {
                Some(id) => open(state, &id, effects),
                None => notice(state, "nothing unread", false),
            }
        }
        Action::NextMention => {
            let found = next_conversation(state, |conversation| {
                state.mentions.contains(&conversation.id)
            });
            match found {
                Some(id) => open(state, &id, effects),
                None => notice(state, "no unread mention", false),
            }
        }
        Action::Editor => effects.push(Effect::Editor(state.input.text().to_owned())),
        Action::SelectPrevious => messages::select(state, true),
        Action::SelectNext => messages::select(state, false),
        Action::Complete => complete(state),
        Action::Help => state.overlay = Some(Overlay::Help { scroll: 0 }),
        Action::Quit => state.quit = true,
    }
}

/// The first conversation after the open one (in list order, wrapping
/// round) that `wanted` accepts.
fn next_conversation(state: &State, wanted: impl Fn(&pb::Conversation) -> bool) -> Option<String> {
    let conversations = &state.view.conversations;
    let start = state
        .open
        .as_ref()
        .and_then(|open| {
            conversations
                .iter()
                .position(|conversation| &conversation.id == open)
        })
        .map_or(0, |index| index + 1);
    (0..conversations.len())
        .map(|offset| &conversations[(start + offset) % conversations.len()])
        .find(|conversation| state.open.as_ref() != Some(&conversation.id) && wanted(conversation))
        .map(|conversation| conversation.id.clone())
}

/// Tab: completes a command name (first word after `/`) or a contact name;
/// Tab again cycles through the candidates.
pub(super) fn complete(state: &mut State) {
    if let Some(completion) = &mut state.completion {
        completion.index = (completion.index + 1) % completion.candidates.len();
        let candidate = completion.candidates[completion.index].clone();
        let start = completion.start;
        state.input.replace_word(start, &candidate);
        return;
    }
    let (start, word) = state.input.current_word();
    let is_command = start == 0 && word.starts_with('/');
    let candidates: Vec<String> = if is_command {
        commands::complete(&word[1..])
            .into_iter()
            .map(|name| format!("/{name} "))
            .collect()
    } else {
        let lower = word.to_lowercase();
        let mut names: Vec<String> = state
            .view
            .contacts
            .iter()
            .map(|contact| contact.display_name.clone())
            .filter(|name| name.to_lowercase().starts_with(&lower))
            .collect();
        names.sort();
        names.dedup();
        // A name at the start of a message addresses someone: "bob: ".
        let suffix = if start == 0 { ": " } else { " " };
        names
            .into_iter()
            .map(|name| format!("{name}{suffix}"))
            .collect()
    };
    if candidates.is_empty() {
        return;
    }
    state.input.replace_word(start, &candidates[0]);
    if candidates.len() > 1 {
        state.completion = Some(Completion {
            start,
            candidates,
            index: 0,
        });
    }
}

// ---------------------------------------------------------------- lines

pub(super) fn submit(state: &mut State, effects: &mut Vec<Effect>) {
    let line = state.input.take();
    if line.trim().is_empty() {
        return;
    }
    if messages::submit_compose(state, &line, effects) {
        return;
    }
    // A line that was questioned and is entered again goes out as text.
    if state.confirm.as_deref() == Some(line.as_str()) {
        state.confirm = None;
        send_text(state, line, false, effects);
        return;
    }
    state.confirm = None;
    match commands::parse(&line) {
        Line::Text(text) => send_text(state, text, false, effects),
        Line::Usage(usage) => {
            state.input.set(&line);
            notice(state, usage, true);
        }
        Line::Unknown { name, suggestion } => {
            // Probably a typo: nothing is sent until Enter confirms it.
            let hint = suggestion.map_or_else(String::new, |command| {
                format!(" (did you mean /{command}?)")
            });
            notice(
                state,
                format!("/{name} is not a command{hint}; Enter again sends the line as a message"),
                true,
            );
            state.input.set(&line);
            state.confirm = Some(line);
        }
        Line::Command(command) => run(state, command, effects),
    }
}

pub(super) fn send_text(state: &mut State, text: String, action: bool, effects: &mut Vec<Effect>) {
    send_text_replying(state, text, action, None, effects);
}

/// Sends text to the open conversation, as a reply to `reply_to` if given.
pub(super) fn send_text_replying(
    state: &mut State,
    text: String,
    action: bool,
    reply_to: Option<String>,
    effects: &mut Vec<Effect>,
) {
    if let Some(channel) = channels::open_channel(state).map(|channel| channel.id.clone()) {
        effects.push(Effect::Send {
            to: channel,
            text,
            action,
            reply_to,
        });
        return;
    }
    let Some(peer) = state
        .open_conversation()
        .and_then(|conversation| conversation.peer.clone())
    else {
        notice(state, "open a conversation first: /msg <contact>", true);
        state.input.set(&text);
        return;
    };
    effects.push(Effect::Send {
        to: peer.actor_id,
        text,
        action,
        reply_to,
    });
}

/// A contact by name, actor id or fingerprint, or the open conversation's.
pub(super) fn contact_ref(state: &State, name: Option<&str>) -> Option<String> {
    match name {
        Some(name) => Some(name.to_owned()),
        None => state
            .open_conversation()
            .and_then(|conversation| conversation.peer.as_ref())
            .map(|peer| peer.actor_id.clone()),
    }
}

pub(super) fn find_contact<'a>(state: &'a State, name: &str) -> Option<&'a pb::Contact> {
    state.view.contacts.iter().find(|contact| {
        contact.display_name.eq_ignore_ascii_case(name)
            || contact.actor_id == name
            || contact.fingerprint.replace(' ', "") == name.replace(' ', "")
    })
}

pub(super) fn run(state: &mut State, command: Command, effects: &mut Vec<Effect>) {
    match command {
        Command::Msg { to, text } if to.starts_with('#') => {
            match channels::find_channel(state, &to).map(|channel| channel.id.clone()) {
                Some(id) => {
                    open(state, &id, effects);
                    if let Some(text) = text {
                        effects.push(Effect::Send {
                            to: id,
                            text,
                            action: false,
                            reply_to: None,
                        });
                    }
                }
                None => notice(state, format!("you are not in {to}"), true),
            }
        }
        Command::Msg { to, text } => match find_contact(state, &to).cloned() {
            Some(contact) => {
                open(state, &contact.conversation_id, effects);
                if let Some(text) = text {
                    effects.push(Effect::Send {
                        to: contact.actor_id,
                        text,
                        action: false,
                        reply_to: None,
                    });
                }
            }
            None => notice(
                state,
                format!("no contact named {to}; /contacts lists them"),
                true,
            ),
        },
        Command::Me(action) => send_text(state, action, true, effects),
        Command::Add(token) => effects.push(Effect::AddContact(token)),
        Command::Invite(_)
        | Command::CreateChannel { .. }
        | Command::Join(_)
        | Command::Part(_)
        | Command::Topic(_)
        | Command::Names
        | Command::Act { .. }
        | Command::Moderate(_) => channels::run(state, command, effects),
        Command::Mute(muted) => match state.open.clone() {
            Some(conversation) => effects.push(Effect::SetMuted {
                conversation,
                muted,
            }),
            None => notice(state, "open a conversation first", true),
        },
        Command::Links => match state.open.as_deref() {
            Some(open) if !crate::links::of_conversation(state, open).is_empty() => {
                state.overlay = Some(Overlay::Links { selected: 0 });
            }
            _ => notice(state, "no links in this conversation", false),
        },
        Command::Open(number) => {
            let links = state
                .open
                .as_deref()
                .map(|open| crate::links::of_conversation(state, open))
                .unwrap_or_default();
            match links.get(number - 1) {
                Some(url) => {
                    effects.push(Effect::OpenLink(url.clone()));
                    notice(state, format!("opening {url}"), false);
                }
                None => notice(
                    state,
                    format!("there is no link {number} here; /links lists them"),
                    true,
                ),
            }
        }
        Command::ReadAll => {
            for conversation in &state.view.conversations {
                if conversation.unread > 0
                    && let Some(last) = &conversation.last_message
                {
                    effects.push(Effect::MarkRead {
                        conversation: conversation.id.clone(),
                        up_to: last.id.clone(),
                    });
                }
            }
            state.mentions.clear();
        }
        Command::Reply(_)
        | Command::React(_)
        | Command::Edit(_)
        | Command::Delete
        | Command::Versions => messages::run_command(state, command, effects),
        Command::Accept(name) => match contact_ref(state, name.as_deref()) {
            Some(contact) => effects.push(Effect::Accept(contact)),
            None => notice(
                state,
                "name the contact, or open their conversation first",
                true,
            ),
        },
        Command::Block(name) => match contact_ref(state, name.as_deref()) {
            Some(contact) => effects.push(Effect::Block(contact)),
            None => notice(
                state,
                "name the contact, or open their conversation first",
                true,
            ),
        },
        Command::Unblock(name) => effects.push(Effect::Unblock(name)),
        Command::Contacts => state.overlay = Some(Overlay::Contacts),
        Command::Whois(name) => match find_contact(state, &name) {
            Some(contact) => {
                state.overlay = Some(Overlay::Whois {
                    actor_id: contact.actor_id.clone(),
                })
            }
            None => notice(state, format!("no contact named {name}"), true),
        },
        Command::Search(words) => effects.push(Effect::Search(words)),
        Command::SendFile(path) => match contact_ref(state, None) {
            Some(to) => effects.push(Effect::SendFile { to, path }),
            None => notice(state, "open a conversation first: /msg <contact>", true),
        },
        Command::AnswerFile { accept } => {
            let offer = state
                .open
                .as_deref()
                .and_then(|open| state.offer_to_answer(open))
                .map(|transfer| transfer.transfer_id.clone());
            match offer {
                Some(transfer_id) => effects.push(Effect::AnswerTransfer {
                    transfer_id,
                    accept,
                }),
                None => notice(state, "no file is offered in this conversation", true),
            }
        }
        Command::Transfers => state.overlay = Some(Overlay::Transfers { selected: 0 }),
        Command::Away(text) => effects.push(Effect::SetPresence {
            state: pb::PresenceState::Away,
            text,
        }),
        Command::Back => effects.push(Effect::SetPresence {
            state: pb::PresenceState::Online,
            text: String::new(),
        }),
        Command::Close => {
            state.open = None;
        }
        Command::Help => state.overlay = Some(Overlay::Help { scroll: 0 }),
        Command::Quit => state.quit = true,
    }
}
