//! Applies messages to the state and says what to ask the daemon. No I/O:
//! the main loop carries out the returned effects and feeds their results
//! back as messages.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use kirc_proto::v1::{self as pb, event::Kind};

use crate::commands::{self, Command, Line};
use crate::keys::Action;
use crate::state::{Completion, Link, Notice, Overlay, Scrollback, State};

/// How long a typing indicator shows without news from the daemon.
pub const TYPING_SHOWN_MS: i64 = 6_000;

/// Messages per history page.
pub const PAGE: u32 = 200;
/// Load the older page when the view is this many lines from the top of
/// what is loaded.
const PREFETCH_LINES: usize = 50;

/// Everything that can change the state.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Focus(bool),
    /// The terminal's size, in columns and rows.
    Resize(u16, u16),
    Link(Link),
    Event(Box<pb::Event>),
    /// A page of history arrived.
    History {
        conversation: String,
        page: pb::GetHistoryResponse,
        anchor: Anchor,
    },
    Invite(pb::CreateInviteResponse),
    SearchResults {
        query: String,
        messages: Vec<pb::ChatMessage>,
    },
    /// The session kept in the daemon: open conversation and drafts.
    Session(pb::Session),
    /// The clock, for typing deadlines (Unix ms).
    Tick(i64),
    /// A command finished; the text is shown in the status line.
    Done(String),
    Failed(String),
}

/// Which page of a conversation to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    Latest,
    Before(String),
    Around(String),
}

/// What the main loop asks the daemon for.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    LoadHistory {
        conversation: String,
        anchor: Anchor,
    },
    Send {
        to: String,
        text: String,
        action: bool,
    },
    MarkRead {
        conversation: String,
        up_to: String,
    },
    AddContact(String),
    CreateInvite,
    Accept(String),
    Block(String),
    Unblock(String),
    Search(String),
    SetPresence {
        state: pb::PresenceState,
        text: String,
    },
    /// A key was pressed (the executor sends at most one per 10 s).
    Activity,
    /// Typing in a conversation, or stopped.
    Typing {
        conversation: String,
        active: bool,
    },
    LoadSession(String),
    SaveSession(pb::Session),
    /// Bell and/or desktop notification, as configured.
    Notify {
        title: String,
        body: String,
    },
}

pub fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    let mut effects = Vec::new();
    match msg {
        Msg::Key(key) => on_key(state, key, &mut effects),
        Msg::Paste(text) => {
            // A paste is text in the line, never lines sent one by one.
            state
                .input
                .insert_str(&text.replace("\r\n", "\n").replace('\r', "\n"));
            state.completion = None;
        }
        Msg::Focus(focused) => state.focused = focused,
        Msg::Resize(columns, rows) => state.screen = (columns, rows),
        Msg::Link(link) => {
            if link == Link::Connected {
                state.daemon_stopping = None;
            }
            state.link = link;
        }
        Msg::Event(event) => on_event(state, *event, &mut effects),
        Msg::History {
            conversation,
            page,
            anchor,
        } => {
            let scrollback = state.scrollbacks.entry(conversation).or_default();
            scrollback.loading = false;
            match anchor {
                Anchor::Latest => {
                    scrollback.merge(page.messages);
                    scrollback.more_before = page.more_before;
                    scrollback.reaches_newest = true;
                }
                Anchor::Before(_) => {
                    scrollback.merge(page.messages);
                    scrollback.more_before = page.more_before;
                }
                Anchor::Around(_) => {
                    *scrollback = Scrollback {
                        messages: page.messages,
                        more_before: page.more_before,
                        reaches_newest: !page.more_after,
                        loading: false,
                        position: None,
                    };
                }
            }
        }
        Msg::Invite(invite) => {
            state.overlay = Some(Overlay::Invite {
                token: invite.token,
                expires_at_unix_ms: invite.expires_at_unix_ms,
            });
        }
        Msg::SearchResults { query, messages } => {
            state.overlay = Some(Overlay::Search {
                query,
                results: messages,
                selected: 0,
            });
        }
        Msg::Session(session) => {
            state.drafts = session.drafts;
            if state.open.is_none()
                && !session.open_conversation.is_empty()
                && state
                    .view
                    .conversation(&session.open_conversation)
                    .is_some()
            {
                open(state, &session.open_conversation, &mut effects);
            } else if let Some(open) = state.open.clone()
                && state.input.is_empty()
            {
                let draft = state.drafts.get(&open).cloned().unwrap_or_default();
                state.input.set(&draft);
            }
        }
        Msg::Tick(now) => {
            state.now_unix_ms = now;
            state.typing_until.retain(|_, until| *until > now);
        }
        Msg::Done(text) => state.notice = Some(Notice { text, error: false }),
        Msg::Failed(text) => state.notice = Some(Notice { text, error: true }),
    }
    effects.extend(mark_read(state));
    effects
}

fn notice(state: &mut State, text: impl Into<String>, error: bool) {
    state.notice = Some(Notice {
        text: text.into(),
        error,
    });
}

// ---------------------------------------------------------------- events

fn on_event(state: &mut State, event: pb::Event, effects: &mut Vec<Effect>) {
    state.view.apply(&event);
    match event.kind {
        Some(Kind::Snapshot(_)) => {
            // A new snapshot (a reconnect, a restarted daemon): held pages
            // may be stale; the open one is fetched again.
            state.scrollbacks.clear();
            state.read_requested.clear();
            if !state.session_requested {
                state.session_requested = true;
                effects.push(Effect::LoadSession(state.session.clone()));
            }
            // A daemon that has not loaded its state yet (just restarted)
            // sends a snapshot without contacts and conversations: what is
            // open, or asked to be, waits for the loaded snapshot that
            // follows instead of being dropped.
            let loaded = state
                .view
                .status
                .as_ref()
                .is_some_and(|status| status.ready);
            if let Some(wanted) = state.pending_open.take() {
                match find_contact(state, &wanted) {
                    Some(contact) => state.open = Some(contact.conversation_id.clone()),
                    None if !loaded => state.pending_open = Some(wanted),
                    None => notice(state, format!("no contact named {wanted}"), true),
                }
            }
            if let Some(open) = state.open.clone() {
                if state.view.conversation(&open).is_some() {
                    effects.extend(load(state, &open, Anchor::Latest));
                } else if loaded {
                    state.open = None;
                }
            }
        }
        Some(Kind::MessageAdded(message)) => {
            let conversation = message.conversation_id.clone();
            if !message.outgoing {
                let own_name = state
                    .view
                    .status
                    .as_ref()
                    .map(|status| status.display_name.clone())
                    .unwrap_or_default();
                if !own_name.is_empty()
                    && message
                        .body
                        .to_lowercase()
                        .contains(&own_name.to_lowercase())
                {
                    state.mentions.insert(conversation.clone());
                }
                let on_screen = state.open.as_deref() == Some(conversation.as_str());
                if !state.focused || !on_screen {
                    effects.push(Effect::Notify {
                        title: format!("K-IRC: {}", state.name_of(&message.sender)),
                        body: crate::ui::sanitize(&message.body),
                    });
                }
            }
            // A scrolled-back view is anchored to a message, so it keeps
            // its place as this one arrives below.
            if let Some(scrollback) = state.scrollbacks.get_mut(&conversation)
                && scrollback.reaches_newest
            {
                scrollback.merge(vec![message]);
            }
        }
        Some(Kind::MessageStateChanged(changed)) => {
            if let Some(scrollback) = state.scrollbacks.get_mut(&changed.conversation_id)
                && let Some(message) = scrollback
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|message| message.id == changed.message_id)
            {
                message.state = changed.state;
            }
        }
        Some(Kind::ReadMarkerMoved(moved)) if moved.unread == 0 => {
            state.mentions.remove(&moved.conversation_id);
        }
        Some(Kind::PeerPresenceChanged(presence)) => {
            if presence.typing {
                // Believed for the daemon's own expiry time, counted from
                // when the daemon heard it.
                state
                    .typing_until
                    .insert(presence.actor_id, event.at_unix_ms + TYPING_SHOWN_MS);
                state.now_unix_ms = state.now_unix_ms.max(event.at_unix_ms);
            } else {
                state.typing_until.remove(&presence.actor_id);
            }
        }
        Some(Kind::ShuttingDown(stopping)) => state.daemon_stopping = Some(stopping.reason),
        _ => {}
    }
}

/// Moves the read marker when, and only when, the newest message of the
/// open conversation is on screen and the terminal has focus (soju's rule):
/// a message arriving does not make it read by itself.
fn mark_read(state: &mut State) -> Option<Effect> {
    if !state.focused || state.overlay.is_some() || !matches!(state.link, Link::Connected) {
        return None;
    }
    let open = state.open.clone()?;
    let conversation = state.view.conversation(&open)?;
    let scrollback = state.scrollbacks.get(&open)?;
    if scrollback.position.is_some() || !scrollback.reaches_newest {
        return None;
    }
    let newest = scrollback
        .messages
        .iter()
        .rev()
        .find(|message| !message.outgoing)?;
    let requested = state.read_requested.get(&open).copied().unwrap_or(0);
    if newest.seq <= conversation.last_read_seq || newest.seq <= requested {
        return None;
    }
    state.read_requested.insert(open.clone(), newest.seq);
    Some(Effect::MarkRead {
        conversation: open,
        up_to: newest.id.clone(),
    })
}

fn load(state: &mut State, conversation: &str, anchor: Anchor) -> Option<Effect> {
    let scrollback = state
        .scrollbacks
        .entry(conversation.to_owned())
        .or_default();
    if scrollback.loading {
        return None;
    }
    scrollback.loading = true;
    Some(Effect::LoadHistory {
        conversation: conversation.to_owned(),
        anchor,
    })
}

/// Opens a conversation: shows it and fetches its newest page if it has none.
fn open(state: &mut State, conversation: &str, effects: &mut Vec<Effect>) {
    // Each conversation keeps its own unsent text.
    if let Some(previous) = state.open.clone()
        && previous != conversation
    {
        let draft = state.input.text().to_owned();
        state.drafts.insert(previous, draft);
        let next = state.drafts.get(conversation).cloned().unwrap_or_default();
        state.input.set(&next);
    } else if state.open.is_none() && state.input.is_empty() {
        let next = state.drafts.get(conversation).cloned().unwrap_or_default();
        state.input.set(&next);
    }
    let switched = state.open.as_deref() != Some(conversation);
    state.open = Some(conversation.to_owned());
    if switched {
        effects.push(Effect::SaveSession(session_of(state)));
    }
    state.overlay = None;
    state.confirm = None;
    let loaded = state
        .scrollbacks
        .get(conversation)
        .is_some_and(|scrollback| scrollback.reaches_newest && !scrollback.messages.is_empty());
    if !loaded {
        effects.extend(load(state, conversation, Anchor::Latest));
    }
}

/// The session as it stands, for saving.
pub fn session_of(state: &State) -> pb::Session {
    let mut drafts = state.drafts.clone();
    if let Some(open) = &state.open {
        drafts.insert(open.clone(), state.input.text().to_owned());
    }
    drafts.retain(|_, text| !text.is_empty());
    pb::Session {
        name: state.session.clone(),
        open_conversation: state.open.clone().unwrap_or_default(),
        drafts,
    }
}

// ---------------------------------------------------------------- keys

fn on_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
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

fn edit_or_act(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.code != KeyCode::Tab {
        state.completion = None;
    }
    if state.overlay.is_some() && overlay_key(state, key, effects) {
        return;
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
        KeyCode::Enter => submit(state, effects),
        KeyCode::Esc => state.notice = None,
        _ => {}
    }
}

/// Keys while an overlay is open; returns true if the key was used.
fn overlay_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) -> bool {
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
    false
}

fn on_action(state: &mut State, action: Action, effects: &mut Vec<Effect>) {
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
        Action::Complete => complete(state),
        Action::Help => state.overlay = Some(Overlay::Help),
        Action::Quit => state.quit = true,
    }
}

fn scroll(state: &mut State, action: Action, effects: &mut Vec<Effect>) {
    let Some(conversation) = state.open.clone() else {
        return;
    };
    let page = usize::from(crate::ui::scrollback_rows(state).max(2)) - 1;
    let position = match action {
        Action::ScrollUp => crate::ui::scroll_up(state, &conversation, page),
        Action::ScrollDown => crate::ui::scroll_down(state, &conversation, page),
        Action::ScrollTop => crate::ui::scroll_top(state, &conversation),
        _ => None,
    };
    let Some(scrollback) = state.scrollbacks.get_mut(&conversation) else {
        return;
    };
    scrollback.position = position;
    if position.is_none() && !scrollback.reaches_newest {
        // Back from an old search result to the present.
        scrollback.messages.clear();
        scrollback.loading = false;
        effects.extend(load(state, &conversation, Anchor::Latest));
        return;
    }
    // Near the top of what is loaded: fetch the page before it.
    let more_before = scrollback.more_before;
    let first = scrollback
        .messages
        .first()
        .map(|message| message.id.clone());
    if more_before
        && crate::ui::near_top(state, &conversation, PREFETCH_LINES + page)
        && let Some(first) = first
    {
        effects.extend(load(state, &conversation, Anchor::Before(first)));
    }
}

/// Tab: completes a command name (first word after `/`) or a contact name;
/// Tab again cycles through the candidates.
fn complete(state: &mut State) {
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

fn submit(state: &mut State, effects: &mut Vec<Effect>) {
    let line = state.input.take();
    if line.trim().is_empty() {
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

fn send_text(state: &mut State, text: String, action: bool, effects: &mut Vec<Effect>) {
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
    });
}

/// A contact by name, actor id or fingerprint, or the open conversation's.
fn contact_ref(state: &State, name: Option<&str>) -> Option<String> {
    match name {
        Some(name) => Some(name.to_owned()),
        None => state
            .open_conversation()
            .and_then(|conversation| conversation.peer.as_ref())
            .map(|peer| peer.actor_id.clone()),
    }
}

fn find_contact<'a>(state: &'a State, name: &str) -> Option<&'a pb::Contact> {
    state.view.contacts.iter().find(|contact| {
        contact.display_name.eq_ignore_ascii_case(name)
            || contact.actor_id == name
            || contact.fingerprint.replace(' ', "") == name.replace(' ', "")
    })
}

fn run(state: &mut State, command: Command, effects: &mut Vec<Effect>) {
    match command {
        Command::Msg { to, text } => match find_contact(state, &to).cloned() {
            Some(contact) => {
                open(state, &contact.conversation_id, effects);
                if let Some(text) = text {
                    effects.push(Effect::Send {
                        to: contact.actor_id,
                        text,
                        action: false,
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
        Command::Invite => effects.push(Effect::CreateInvite),
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
        Command::Help => state.overlay = Some(Overlay::Help),
        Command::Quit => state.quit = true,
    }
}

#[cfg(test)]
mod tests;
