//! Applies messages to the state and says what to ask the daemon. No I/O:
//! the main loop carries out the returned effects and feeds their results
//! back as messages.

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use kirc_proto::v1::{self as pb, event::Kind};

use crate::commands::{self, Command, Line};
use crate::keys::Action;
use crate::state::{Completion, Link, Notice, Overlay, Scrollback, State};

mod channels;
mod keys;
mod messages;
mod scroll;

use keys::*;
pub use messages::SELECTED_KEYS;
use scroll::*;

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
    /// A mouse event (only with `[mouse] enabled` in tui.toml).
    Mouse(MouseEvent),
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
    /// The texts a message had, oldest first.
    Versions {
        message_id: String,
        versions: Vec<pb::MessageVersion>,
    },
    /// The clock, for typing deadlines (Unix ms).
    Tick(i64),
    /// A command finished; the text is shown in the status line.
    Done(String),
    /// A contact was added from its invite (and may not have confirmed yet).
    Added(pb::Contact),
    /// The draft as the editor left it.
    Composed(String),
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
        /// A reply: the id of the message it answers.
        reply_to: Option<String>,
    },
    React {
        message_id: String,
        emoji: String,
        remove: bool,
    },
    Edit {
        message_id: String,
        text: String,
    },
    Delete(String),
    Versions(String),
    /// Put text on the clipboard (OSC 52, which works over SSH and in
    /// tmux); carried out by the main loop, on the terminal.
    Copy(String),
    /// Open a web link with the configured opener; carried out by the main
    /// loop.
    OpenLink(String),
    SetMuted {
        conversation: String,
        muted: bool,
    },
    /// Hand the terminal to `$EDITOR` with this draft; the main loop does,
    /// and the text comes back as `Msg::Composed`.
    Editor(String),
    MarkRead {
        conversation: String,
        up_to: String,
    },
    AddContact(String),
    CreateInvite,
    CreateChannel {
        name: String,
        topic: String,
    },
    /// An invite token to a channel (`#name` or id).
    ChannelInvite(String),
    JoinChannel(String),
    ChannelAct {
        channel: String,
        act: pb::ChannelLine,
        member: String,
        text: String,
    },
    Accept(String),
    Block(String),
    Unblock(String),
    Search(String),
    /// Offer the file or folder at `path` (as typed: the executor makes it
    /// absolute) to `to`.
    SendFile {
        to: String,
        path: String,
    },
    AnswerTransfer {
        transfer_id: String,
        accept: bool,
    },
    CancelTransfer(String),
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
        Msg::Mouse(mouse) => on_mouse(state, mouse, &mut effects),
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
            let scrollback = state.scrollbacks.entry(conversation.clone()).or_default();
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
                Anchor::Around(around) => {
                    *scrollback = Scrollback {
                        messages: page.messages,
                        more_before: page.more_before,
                        reaches_newest: !page.more_after,
                        loading: false,
                        position: None,
                    };
                    // A jump to a message (a reply's original): it is the
                    // selected one, on screen.
                    if state.selected.as_deref() == Some(around.as_str()) {
                        messages::keep_in_view(state, &conversation);
                    }
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
        Msg::Versions {
            message_id,
            versions,
        } => {
            state.overlay = Some(Overlay::Versions {
                message_id,
                versions,
            });
        }
        Msg::Tick(now) => {
            state.now_unix_ms = now;
            state.typing_until.retain(|_, until| *until > now);
        }
        Msg::Done(text) => notice(state, text, false),
        Msg::Failed(text) => notice(state, text, true),
        Msg::Composed(text) => state.input.set(&text),
        Msg::Added(contact) => {
            let waiting = !contact.peer_accepted;
            state.notice = Some(Notice {
                text: if waiting {
                    format!(
                        "added {}; they will confirm when their daemon has your request",
                        contact.display_name
                    )
                } else {
                    format!("added {}", contact.display_name)
                },
                error: false,
                until_confirmed: waiting.then_some(contact.actor_id),
            });
        }
    }
    effects.extend(mark_read(state));
    effects
}

/// Rows the wheel scrolls per step.
const WHEEL_ROWS: usize = 3;

/// The wheel scrolls the conversation; a click on the list opens the
/// conversation clicked.
fn on_mouse(state: &mut State, mouse: MouseEvent, effects: &mut Vec<Effect>) {
    let (columns, rows) = state.screen;
    let areas = crate::layout::areas(ratatui::layout::Rect::new(0, 0, columns, rows), state);
    let at = ratatui::layout::Position::new(mouse.column, mouse.row);
    match mouse.kind {
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown if areas.body.contains(at) => {
            if state.overlay.is_some() {
                return;
            }
            let Some(conversation) = state.open.clone() else {
                return;
            };
            let position = if mouse.kind == MouseEventKind::ScrollUp {
                crate::layout::scroll_up(state, &conversation, WHEEL_ROWS)
            } else {
                crate::layout::scroll_down(state, &conversation, WHEEL_ROWS)
            };
            move_view(state, &conversation, position, WHEEL_ROWS, effects);
        }
        MouseEventKind::Down(MouseButton::Left) => {
            let Some(list) = areas.list.filter(|list| list.contains(at)) else {
                return;
            };
            let row = usize::from(mouse.row - list.y);
            if let Some(id) = crate::layout::listed(state)
                .get(row)
                .map(|(_, conversation)| conversation.id.clone())
            {
                open(state, &id, effects);
            }
        }
        _ => {}
    }
}

fn notice(state: &mut State, text: impl Into<String>, error: bool) {
    state.notice = Some(Notice {
        text: text.into(),
        error,
        until_confirmed: None,
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
            // A channel's lines (a join, a kick) never notify.
            if !message.outgoing && message.line == pb::ChannelLine::None as i32 {
                let own_name = state
                    .view
                    .status
                    .as_ref()
                    .map(|status| status.display_name.clone())
                    .unwrap_or_default();
                let mentioned = !own_name.is_empty()
                    && message
                        .body
                        .to_lowercase()
                        .contains(&own_name.to_lowercase());
                if mentioned {
                    state.mentions.insert(conversation.clone());
                }
                // In a channel, as in IRC, only a mention notifies.
                let channel = state
                    .view
                    .conversation(&conversation)
                    .and_then(|known| known.channel.as_ref())
                    .map(|channel| channel.name.clone());
                let on_screen = state.open.as_deref() == Some(conversation.as_str());
                let muted = state
                    .view
                    .conversation(&conversation)
                    .is_some_and(|known| known.muted);
                if (!state.focused || !on_screen) && (channel.is_none() || mentioned) && !muted {
                    let sender = state.name_of(&message.sender);
                    effects.push(Effect::Notify {
                        title: match channel {
                            Some(channel) => format!("K-IRC: {sender} in {channel}"),
                            None => format!("K-IRC: {sender}"),
                        },
                        body: crate::layout::sanitize(&message.body),
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
        Some(Kind::MessageUpdated(message)) => messages::replace(state, message),
        // "They will confirm" is no longer true once they did.
        Some(Kind::ContactChanged(contact))
            if contact.peer_accepted
                && state.notice.as_ref().is_some_and(|notice| {
                    notice.until_confirmed.as_deref() == Some(&contact.actor_id)
                }) =>
        {
            notice(
                state,
                format!("{} confirmed: you can talk", contact.display_name),
                false,
            );
        }
        Some(Kind::MessageStateChanged(changed)) => {
            if let Some(scrollback) = state.scrollbacks.get_mut(&changed.conversation_id)
                && let Some(message) = scrollback
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|message| message.id == changed.message_id)
            {
                // States only move forward; two of the daemon's writers
                // (the send's QUEUED, the delivery's DELIVERED) may publish
                // out of order.
                message.state = message.state.max(changed.state);
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

#[cfg(test)]
mod tests;
