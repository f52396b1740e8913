//! Drawing. `render` reads the state and nothing else: no I/O, no clock.
//!
//! Layout: conversation list on the left (hidden on narrow terminals), the
//! open conversation (title, scrollback, input) on the right, a status bar at
//! the bottom, a red banner at the top while the daemon is away, and
//! overlays (help, invite, search, contacts, whois, transfers) on top. The
//! open conversation's transfers in motion show between its scrollback and
//! the input line.

mod channel;
mod overlay;
mod scrollback;
mod transfers;

use kirc_proto::v1::{Backend, BackendState, BackendStatus, ContactState, PresenceState};
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

pub use crate::layout::{Areas, areas, sanitize};
use crate::layout::{format_time, truncate};
use crate::state::{Compose, Link, State};
use crate::theme::Theme;

pub fn render(frame: &mut Frame<'_>, state: &State) {
    let areas = areas(frame.area(), state);
    if let Link::Disconnected { error, .. } = &state.link {
        let why = match &state.daemon_stopping {
            Some(reason) => format!("kircd stopped ({reason}); waiting for it to come back."),
            None => error.clone(),
        };
        frame.render_widget(
            Paragraph::new(why)
                .style(Style::new().fg(state.theme.bad))
                .wrap(Wrap { trim: true }),
            areas.banner,
        );
    }
    if let Some(list) = areas.list {
        render_list(frame, list, state);
    }
    if let Some(members) = areas.members {
        channel::render_members(frame, members, state);
    }
    match state.open_conversation() {
        Some(_) => {
            render_title(frame, areas.title, state);
            scrollback::render(frame, areas.body, state);
            transfers::render_strip(frame, areas.transfers, state);
        }
        None => {
            frame.render_widget(Paragraph::new(home_title(state)), areas.title);
            render_home(frame, areas.body, state);
        }
    }
    render_input(frame, areas.input, state);
    frame.render_widget(Paragraph::new(status_line(state)), areas.status);
    if let Some(overlay) = &state.overlay {
        overlay::render(frame, frame.area(), state, overlay);
    }
}

const DATE_TIME: &str = "%Y-%m-%d %H:%M:%S";
const TIME: &str = "%H:%M:%S";

fn render_list(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let block = Block::new().borders(Borders::RIGHT);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    for (index, conversation) in crate::layout::listed(state) {
        if let Some(channel) = &conversation.channel {
            lines.push(channel::entry(
                state,
                index,
                conversation,
                channel,
                inner.width,
            ));
            continue;
        }
        let Some(peer) = &conversation.peer else {
            continue;
        };
        let mark = match peer.state() {
            ContactState::Request => "?",
            ContactState::Blocked => "⊘",
            _ if state.mentions.contains(&conversation.id) => "@",
            _ => " ",
        };
        lines.push(list_row(
            state,
            index,
            conversation,
            mark,
            Some(presence_dot(state, &peer.actor_id)),
            sanitize(&peer.display_name),
            Style::new().fg(state.theme.name_colour(&peer.actor_id)),
            inner.width,
        ));
    }
    if lines.is_empty() {
        lines.push(Line::from("no contacts yet".dim()));
        lines.push(Line::from("/invite or /add".dim()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One conversation in the list: its number (alt-1 … alt-9), a mark (a
/// request, blocked, a mention, muted), a presence dot for a contact, the name in
/// `style` (bold while unread, reversed when open), and the unread count
/// at the right edge.
#[allow(clippy::too_many_arguments)]
fn list_row(
    state: &State,
    index: usize,
    conversation: &kirc_proto::v1::Conversation,
    mark: &str,
    dot: Option<(&'static str, Color)>,
    name: String,
    mut style: Style,
    width: u16,
) -> Line<'static> {
    let unread = if conversation.unread > 0 {
        format!("{}", conversation.unread)
    } else {
        String::new()
    };
    let number = if index < 9 {
        format!("{}", index + 1)
    } else {
        String::from(" ")
    };
    // A muted conversation says so where nothing else is marked, and its
    // count does not call for attention.
    let mark = if conversation.muted && mark == " " {
        MUTED_MARK
    } else {
        mark
    };
    let unread_style = if conversation.muted {
        Style::new().dim()
    } else {
        Style::new().fg(state.theme.attention).bold()
    };
    let width = usize::from(width);
    let dot_width = dot.map_or(0, |(dot, _)| dot.width() + 1);
    let used = number.width() + 1 + mark.width() + 1 + dot_width + unread.width();
    let name = truncate(&name, width.saturating_sub(used + 1));
    let padding = width.saturating_sub(used + name.width());
    if conversation.unread > 0 && !conversation.muted {
        style = style.add_modifier(Modifier::BOLD);
    }
    if state.open.as_deref() == Some(conversation.id.as_str()) {
        style = style.add_modifier(Modifier::REVERSED);
    }
    let mut spans = vec![
        Span::styled(format!("{number} "), Style::new().dim()),
        Span::styled(format!("{mark} "), Style::new().fg(state.theme.attention)),
    ];
    if let Some((dot, colour)) = dot {
        spans.push(Span::styled(format!("{dot} "), Style::new().fg(colour)));
    }
    spans.extend([
        Span::styled(name, style),
        Span::raw(" ".repeat(padding)),
        Span::styled(unread, unread_style),
    ]);
    Line::from(spans)
}

/// The list's mark of a muted conversation.
pub const MUTED_MARK: &str = "~";

/// A contact's presence as a dot: online, away, offline, or unknown (while
/// the daemon's Valkey is away, or never heard).
pub(crate) fn presence_dot(state: &State, actor_id: &str) -> (&'static str, Color) {
    let presence = state
        .view
        .presence_of(actor_id)
        .map(kirc_proto::v1::PeerPresence::state);
    match presence {
        Some(PresenceState::Online) => ("●", state.theme.good),
        Some(PresenceState::Away) => ("●", state.theme.attention),
        Some(PresenceState::Offline) => ("○", state.theme.quiet),
        _ => ("◌", state.theme.quiet),
    }
}

fn render_title(frame: &mut Frame<'_>, area: Rect, state: &State) {
    if let Some(channel) = state
        .open_conversation()
        .and_then(|conversation| conversation.channel.as_ref())
    {
        frame.render_widget(Paragraph::new(channel::title(state, channel)), area);
        return;
    }
    let Some(peer) = state
        .open_conversation()
        .and_then(|conversation| conversation.peer.as_ref())
    else {
        return;
    };
    let presence = state.view.presence_of(&peer.actor_id);
    let (dot, dot_colour) = presence_dot(state, &peer.actor_id);
    let presence_text = match presence {
        Some(presence) if !presence.text.is_empty() => format!(" {} ", sanitize(&presence.text)),
        _ => String::new(),
    };
    let typing = if state.is_typing(&peer.actor_id) {
        format!("  {} is typing…", sanitize(&peer.display_name))
    } else {
        String::new()
    };
    let (what, colour) = match peer.state() {
        ContactState::Request => ("message request: /accept or /block", state.theme.attention),
        ContactState::Blocked => ("blocked: /unblock to talk again", state.theme.bad),
        _ if !peer.peer_accepted => ("waiting for them to accept", state.theme.attention),
        _ => ("contact", state.theme.good),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {dot}"), Style::new().fg(dot_colour)),
            Span::styled(
                format!(" {} ", sanitize(&peer.display_name)),
                Style::new().bold().reversed(),
            ),
            Span::styled(presence_text, Style::new().dim()),
            Span::styled(format!(" {what}"), Style::new().fg(colour)),
            Span::styled(typing, Style::new().fg(state.theme.accent).italic()),
            Span::styled(format!("  {}", peer.fingerprint), Style::new().dim()),
        ])),
        area,
    );
}

fn home_title(state: &State) -> Line<'static> {
    let mut spans = vec![Span::styled(" K-IRC ", Style::new().bold().reversed())];
    if let Some(status) = &state.view.status {
        let me = if status.display_name.is_empty() {
            String::new()
        } else {
            format!(" {} ·", sanitize(&status.display_name))
        };
        spans.push(Span::raw(format!(
            "{me} kircd {} · pid {} · started {}",
            status.version,
            status.pid,
            format_time(state, status.started_at_unix_ms, DATE_TIME)
        )));
    }
    Line::from(spans)
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Kafka => "Kafka",
        Backend::Postgres => "PostgreSQL",
        Backend::Valkey => "Valkey",
        Backend::Unspecified => "?",
    }
}

fn state_span(theme: &Theme, backend: &BackendStatus, stale: bool) -> [Span<'static>; 2] {
    let (dot, word, color) = match backend.state() {
        BackendState::Up => ("●", "up", theme.good),
        BackendState::Down => ("●", "down", theme.bad),
        BackendState::Connecting | BackendState::Unspecified => {
            ("○", "connecting", theme.attention)
        }
    };
    // What was last known from a daemon that is gone is shown, but greyed.
    let color = if stale { theme.quiet } else { color };
    [
        Span::styled(format!(" {dot} "), Style::new().fg(color)),
        Span::styled(
            format!("{word:<11}"),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ),
    ]
}

/// The home screen: the daemon's status, and how to start.
fn render_home(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let stale = state.link != Link::Connected;
    let Some(status) = &state.view.status else {
        let text = match &state.link {
            Link::Connecting { .. } => "Connecting to kircd…",
            _ => {
                "kircd is not reachable. Start it with `kircd run` (or `systemctl --user start kircd`)."
            }
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(Block::new().borders(Borders::TOP).title(" Daemon ")),
            area,
        );
        return;
    };
    let mut lines = Vec::new();
    for backend in &status.backends {
        let [dot, word] = state_span(&state.theme, backend, stale);
        lines.push(Line::from(vec![
            dot,
            Span::styled(
                format!("{:<11}", backend_name(backend.backend())),
                Style::new().bold(),
            ),
            word,
            Span::raw(backend.endpoint.clone()),
        ]));
        if backend.state() == BackendState::Down {
            lines.push(Line::from(vec![
                Span::raw("   "),
                Span::styled(backend.last_error.clone(), Style::new().fg(state.theme.bad)),
            ]));
            lines.push(Line::from(
                format!(
                    "   down since {}, {} failed check(s)",
                    format_time(state, backend.state_since_unix_ms, DATE_TIME),
                    backend.consecutive_failures
                )
                .dim(),
            ));
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(" Topics".bold()));
    if status.topics.is_empty() {
        lines.push(Line::from("   not known yet (waiting for Kafka)".dim()));
    }
    for topic in &status.topics {
        let detail = if topic.present {
            Span::raw(format!("{} partitions", topic.partitions))
        } else {
            Span::styled("missing", Style::new().fg(state.theme.bad).bold())
        };
        lines.push(Line::from(vec![
            Span::raw(format!("   {:<9} ", topic.role)),
            Span::raw(format!("{:<24} ", topic.name)),
            detail,
        ]));
    }
    if !status.rejected.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!(
                " rejected inbound records: {}",
                kirc_proto::rejection_summary(&status.rejected)
            ),
            Style::new().fg(state.theme.attention),
        )));
    }
    if status.refused_connections > 0 {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!(
                " {} connection(s) from other users refused",
                status.refused_connections
            ),
            Style::new().fg(state.theme.attention),
        )));
    }
    lines.push(Line::default());
    lines.push(Line::from(
        " Ctrl+N or /msg <contact> opens a conversation · /invite to add someone · F1 help".dim(),
    ));
    let block = Block::new().borders(Borders::TOP).title(" Backends ");
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// The input line's prompt: what Enter will do with the line.
fn prompt(state: &State) -> String {
    match &state.compose {
        None => String::from("> "),
        Some(Compose::Reply(id)) => {
            let to = state.open_message(id).map_or_else(String::new, |message| {
                truncate(&sanitize(&state.name_of(&message.sender)), 12)
            });
            format!("↳ reply to {to} > ")
        }
        Some(Compose::Edit(_)) => String::from("edit > "),
        Some(Compose::React(_)) => String::from("react with > "),
    }
}

fn render_input(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let prompt = prompt(state);
    let prompt_width = prompt.width();
    // Newlines from a paste are shown, not executed.
    let shown: String = state
        .input
        .text()
        .chars()
        .map(|c| if c == '\n' { '↵' } else { c })
        .collect();
    let shown = sanitize(&shown);
    let before_cursor: String = shown.chars().take(state.input.cursor()).collect();
    let room = usize::from(area.width).saturating_sub(prompt_width + 1);
    // Scroll the line so the cursor stays in view.
    let mut skip = 0;
    while before_cursor.chars().skip(skip).collect::<String>().width() > room {
        skip += 1;
    }
    let visible: String = shown.chars().skip(skip).collect();
    let visible = truncate_plain(&visible, room);
    let cursor_column = before_cursor.chars().skip(skip).collect::<String>().width();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(prompt, Style::new().bold()),
            Span::raw(visible),
        ])),
        area,
    );
    if state.overlay.is_none() && area.width > 0 && area.height > 0 {
        let x = area.x
            + u16::try_from(prompt_width + cursor_column)
                .unwrap_or(u16::MAX)
                .min(area.width - 1);
        frame.set_cursor_position(Position::new(x, area.y));
    }
}

/// Cuts to `width` columns without an ellipsis, never inside a grapheme.
fn truncate_plain(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for grapheme in text.graphemes(true) {
        used += grapheme.width();
        if used > width {
            break;
        }
        out.push_str(grapheme);
    }
    out
}

fn status_line(state: &State) -> Line<'static> {
    let mut spans = match &state.link {
        Link::Connected => vec![Span::styled(
            " connected ",
            Style::new().fg(Color::Black).bg(state.theme.good),
        )],
        Link::Connecting { attempt } => vec![Span::styled(
            format!(" connecting ({attempt}) "),
            Style::new().fg(Color::Black).bg(state.theme.attention),
        )],
        Link::Disconnected {
            since_unix_ms,
            attempt,
            retry_in_ms,
            ..
        } => vec![
            Span::styled(
                " DISCONNECTED ",
                Style::new().fg(Color::White).bg(state.theme.bad).bold(),
            ),
            Span::raw(format!(
                " since {} · retry {attempt} in {}",
                format_time(state, *since_unix_ms, TIME),
                humantime::format_duration(std::time::Duration::from_millis(*retry_in_ms))
            )),
        ],
    };
    if let Some(status) = &state.view.status {
        let stale = state.link != Link::Connected;
        for backend in &status.backends {
            let colour = match (stale, backend.state()) {
                (true, _) => state.theme.quiet,
                (_, BackendState::Up) => state.theme.good,
                (_, BackendState::Down) => state.theme.bad,
                _ => state.theme.attention,
            };
            let short = match backend.backend() {
                Backend::Kafka => "kafka",
                Backend::Postgres => "pg",
                Backend::Valkey => "valkey",
                Backend::Unspecified => "?",
            };
            spans.push(Span::styled(format!(" ●{short}"), Style::new().fg(colour)));
        }
    }
    if let Some(status) = &state.view.status {
        if let Some(presence) = &status.presence {
            let (word, colour) = match presence.state() {
                PresenceState::Online => ("online", state.theme.good),
                PresenceState::Away => ("away", state.theme.attention),
                _ => ("offline", state.theme.quiet),
            };
            spans.push(Span::styled(format!("  {word}"), Style::new().fg(colour)));
            if !presence.text.is_empty() {
                spans.push(Span::styled(
                    format!(" ({})", sanitize(&presence.text)),
                    Style::new().dim(),
                ));
            }
        }
        if status.heartbeat_consumed_unix_ms > 0 {
            spans.push(Span::styled(
                format!(
                    "  ♥ {}",
                    format_time(state, status.heartbeat_consumed_unix_ms, "%H:%M")
                ),
                Style::new().dim(),
            ));
        }
    }
    if let Some(notice) = &state.notice {
        let style = if notice.error {
            Style::new().fg(state.theme.bad)
        } else {
            Style::new().fg(state.theme.accent)
        };
        spans.push(Span::styled(format!("  {}", sanitize(&notice.text)), style));
    }
    Line::from(spans)
}

#[cfg(test)]
mod channel_tests;
#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod tests;
