//! How the screen is divided and how a conversation's messages become
//! lines: the same layout serves `update` (to page and to know when to load
//! older messages) and `ui` (to draw), so update does not depend on render
//! and both agree to the row. Its length is the price of that one source:
//! the areas, the wrapping and the scrollback's rows must not drift apart.

use jiff::Timestamp;
use kirc_proto::v1::{self as pb, MessageState};
use ratatui::layout::{Constraint, Layout as Split, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::state::{Link, Position, Scrollback, State};

/// The conversation list is shown when the terminal is at least this wide.
const LIST_MIN_WIDTH: u16 = 60;
const LIST_WIDTH: u16 = 24;
/// An open channel's member list is shown when the terminal is at least
/// this wide.
const MEMBERS_MIN_WIDTH: u16 = 110;
const MEMBERS_WIDTH: u16 = 20;
/// At most this many transfers show under a conversation; the rest are in
/// `/transfers`.
const MAX_TRANSFER_ROWS: usize = 3;

/// Where each part of the screen goes; `update` uses the same layout to
/// page and wrap exactly as drawn.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    pub banner: Rect,
    pub list: Option<Rect>,
    /// An open channel's members, right of its scrollback.
    pub members: Option<Rect>,
    pub title: Rect,
    pub body: Rect,
    /// The open conversation's transfers in motion, one row each.
    pub transfers: Rect,
    pub input: Rect,
    pub status: Rect,
}

pub fn areas(area: Rect, state: &State) -> Areas {
    let banner_height = if matches!(state.link, Link::Disconnected { .. }) {
        2
    } else {
        0
    };
    let [banner, middle, status] = Split::vertical([
        Constraint::Length(banner_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let (list, main) = if area.width >= LIST_MIN_WIDTH {
        let [list, main] =
            Split::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(0)]).areas(middle);
        (Some(list), main)
    } else {
        (None, middle)
    };
    let channel_open = state
        .open_conversation()
        .is_some_and(|conversation| conversation.channel.is_some());
    let (main, members) = if channel_open && area.width >= MEMBERS_MIN_WIDTH {
        let [main, members] =
            Split::horizontal([Constraint::Min(0), Constraint::Length(MEMBERS_WIDTH)]).areas(main);
        (main, Some(members))
    } else {
        (main, None)
    };
    let transfer_rows = state
        .open
        .as_deref()
        .map_or(0, |open| state.unfinished_transfers(open).len())
        .min(MAX_TRANSFER_ROWS);
    let [title, body, transfers, input] = Split::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(u16::try_from(transfer_rows).unwrap_or(0)),
        Constraint::Length(1),
    ])
    .areas(main);
    Areas {
        banner,
        list,
        members,
        title,
        body,
        transfers,
        input,
        status,
    }
}

/// Text from peers, made safe to draw: control characters (escape sequences
/// among them) and bidirectional overrides become visible placeholders, so a
/// message can neither move the cursor nor reorder the screen.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => '\u{FFFD}',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

pub fn format_time(state: &State, unix_ms: i64, format: &str) -> String {
    match Timestamp::from_millisecond(unix_ms) {
        Ok(timestamp) if unix_ms > 0 => timestamp
            .to_zoned_datetime(state.time_zone.clone())
            .strftime(format)
            .to_string(),
        _ => String::from("—"),
    }
}

/// A stable colour per actor, so a name looks the same everywhere.
pub fn colour_of(actor_id: &str) -> Color {
    const PALETTE: [Color; 10] = [
        Color::Cyan,
        Color::Magenta,
        Color::Yellow,
        Color::Green,
        Color::Blue,
        Color::LightRed,
        Color::LightCyan,
        Color::LightMagenta,
        Color::LightGreen,
        Color::LightBlue,
    ];
    // FNV-1a: stable across runs and machines, unlike std's hasher.
    let hash = actor_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    PALETTE[usize::try_from(hash % PALETTE.len() as u64).unwrap_or(0)]
}

/// Cuts `text` to at most `width` columns, with an ellipsis if cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    for c in text.chars() {
        if out.width() + c.to_string().width() + 1 > width {
            break;
        }
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// Width of the time column ("12:34 ").
const TIME_WIDTH: usize = 6;
/// Names are padded or cut to this many columns.
const NAME_WIDTH: usize = 10;

/// The mark after a received message whose first copy came over the direct
/// path (WebRTC) rather than through Kafka.
pub const DIRECT_MARK: (&str, Color) = ("⇄", Color::Cyan);

/// The mark after one of our own messages, by delivery state.
pub fn delivery_mark(state: i32) -> (&'static str, Color) {
    match MessageState::try_from(state).unwrap_or(MessageState::Unspecified) {
        MessageState::Pending | MessageState::Unspecified => ("·", Color::DarkGray),
        MessageState::Queued => ("○", Color::DarkGray),
        MessageState::Delivered => ("◐", Color::Gray),
        MessageState::Received => ("●", Color::Gray),
        MessageState::Read => ("✔", Color::Green),
    }
}

/// Rows of the scrollback area for the current screen size.
pub fn scrollback_rows(state: &State) -> u16 {
    let (columns, rows) = state.screen;
    areas(Rect::new(0, 0, columns, rows), state).body.height
}

pub(crate) fn scrollback_width(state: &State) -> usize {
    let (columns, rows) = state.screen;
    usize::from(areas(Rect::new(0, 0, columns, rows), state).body.width)
}

/// Splits `text` into pieces of at most `width` columns, at spaces where it
/// can; newlines start new pieces.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut pieces = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut line_width = 0;
        let mut last_space: Option<usize> = None;
        for c in paragraph.chars() {
            let c_width = c.width().unwrap_or(0);
            if c == ' ' && line_width + c_width > width {
                // The line is full exactly at a space: break there.
                pieces.push(std::mem::take(&mut line));
                line_width = 0;
                last_space = None;
                continue;
            }
            if line_width + c_width > width && !line.is_empty() {
                match last_space {
                    Some(at) if at > 0 => {
                        let rest = line.split_off(at);
                        pieces.push(line.trim_end().to_owned());
                        line = rest.trim_start().to_owned();
                    }
                    _ => pieces.push(std::mem::take(&mut line)),
                }
                line_width = line.width();
                last_space = None;
            }
            if c == ' ' {
                last_space = Some(line.len());
            }
            line.push(c);
            line_width += c_width;
        }
        pieces.push(line);
    }
    pieces
}

/// What a channel's line says happened, in words.
pub(crate) fn line_text(state: &State, message: &pb::ChatMessage) -> String {
    use pb::ChannelLine as L;
    let actor = sanitize(&state.name_of(&message.sender));
    let target = sanitize(&state.name_of(&message.line_target));
    let reason = if message.body.is_empty() {
        String::new()
    } else {
        format!(" ({})", sanitize(&message.body))
    };
    match message.line() {
        L::None => String::new(),
        L::Create => format!("{actor} created the channel"),
        L::Join => format!("{actor} joined"),
        L::Part if message.line_target.is_empty() => format!("{actor} left{reason}"),
        L::Part => format!("{actor} did not let {target} in{reason}"),
        L::Kick => format!("{actor} removed {target}{reason}"),
        L::Ban => format!("{actor} banned {target}{reason}"),
        L::Unban => format!("{actor} lifted the ban on {target}"),
        L::Op => format!("{actor} made {target} an operator"),
        L::Deop => format!("{actor} took {target}'s operator status"),
        L::Topic => format!("{actor} set the topic: {}", sanitize(&message.body)),
        L::Moderated => format!("{actor} made the channel moderated: only operators speak"),
        L::Unmoderated => format!("{actor} lifted moderation"),
    }
}

/// The lines of one message, in display order.
pub(crate) fn message_lines(
    state: &State,
    message: &pb::ChatMessage,
    width: usize,
) -> Vec<Line<'static>> {
    let time = format_time(state, message.created_at_unix_ms, "%H:%M");
    if message.line != pb::ChannelLine::None as i32 {
        let indent = TIME_WIDTH + 3;
        let pieces = wrap(
            &line_text(state, message),
            width.saturating_sub(indent).max(1),
        );
        return pieces
            .into_iter()
            .enumerate()
            .map(|(index, piece)| {
                let lead = if index == 0 {
                    format!("{time:<TIME_WIDTH$}── ")
                } else {
                    " ".repeat(indent)
                };
                Line::from(vec![
                    Span::styled(lead, Style::new().dim()),
                    Span::styled(piece, Style::new().fg(Color::Cyan).dim()),
                ])
            })
            .collect();
    }
    let name = sanitize(&state.name_of(&message.sender));
    let colour = colour_of(&message.sender);
    let body = sanitize_keep_newlines(&message.body);
    let mark = if message.outgoing {
        Some(delivery_mark(message.state))
    } else {
        message.direct.then_some(DIRECT_MARK)
    };
    let mark_width = mark.map_or(0, |(symbol, _)| symbol.width() + 1);
    let (head, head_width) = if message.action {
        let head = format!("* {name} ");
        let width = head.width();
        (
            vec![Span::styled(
                head,
                Style::new().fg(colour).add_modifier(Modifier::ITALIC),
            )],
            width,
        )
    } else {
        let shown = truncate(&name, NAME_WIDTH);
        let padded = format!("{shown:>NAME_WIDTH$} ");
        let width = padded.width();
        (
            vec![Span::styled(padded, Style::new().fg(colour).bold())],
            width,
        )
    };
    let indent = TIME_WIDTH + head_width;
    let text_width = width.saturating_sub(indent + mark_width).max(1);
    let pieces = wrap(&body, text_width);
    let last = pieces.len().saturating_sub(1);
    let text_style = if message.action {
        Style::new().add_modifier(Modifier::ITALIC)
    } else {
        Style::new()
    };
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut spans = if index == 0 {
                let mut spans = vec![Span::styled(
                    format!("{time:<TIME_WIDTH$}"),
                    Style::new().dim(),
                )];
                spans.extend(head.clone());
                spans
            } else {
                vec![Span::raw(" ".repeat(indent))]
            };
            spans.push(Span::styled(piece, text_style));
            if index == last
                && let Some((symbol, colour)) = mark
            {
                spans.push(Span::styled(format!(" {symbol}"), Style::new().fg(colour)));
            }
            Line::from(spans)
        })
        .collect()
}

/// Like `sanitize`, but multi-line messages keep their lines.
pub(crate) fn sanitize_keep_newlines(text: &str) -> String {
    text.split('\n')
        .map(sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn day_line(state: &State, unix_ms: i64, width: usize) -> Line<'static> {
    let day = format_time(state, unix_ms, "%A %d %B %Y");
    let label = format!(" {day} ");
    let side = width.saturating_sub(label.width()) / 2;
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().dim(),
    ))
}

pub(crate) fn marker_line(width: usize) -> Line<'static> {
    let label = " new ";
    let side = width.saturating_sub(label.len()) / 2;
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().fg(Color::Red),
    ))
}

pub(crate) fn day_of(state: &State, unix_ms: i64) -> String {
    format_time(state, unix_ms, "%Y-%m-%d")
}

/// What laying out one conversation needs, gathered once per frame or
/// scroll.
pub(crate) struct Layout<'a> {
    state: &'a State,
    pub(crate) scrollback: &'a Scrollback,
    /// Index of the first unread message from the peer: the marker goes
    /// above it.
    first_unread: Option<usize>,
    width: usize,
    pub(crate) height: usize,
}

impl<'a> Layout<'a> {
    pub(crate) fn new(
        state: &'a State,
        conversation: &str,
        width: usize,
        height: usize,
    ) -> Option<Self> {
        let scrollback = state.scrollbacks.get(conversation)?;
        let last_read_seq = state.view.conversation(conversation)?.last_read_seq;
        let first_unread = scrollback
            .messages
            .iter()
            .position(|message| !message.outgoing && message.seq > last_read_seq);
        Some(Layout {
            state,
            scrollback,
            first_unread,
            width,
            height,
        })
    }

    /// The layout at the current screen size.
    pub(crate) fn current(state: &'a State, conversation: &str) -> Option<Self> {
        Self::new(
            state,
            conversation,
            scrollback_width(state),
            usize::from(scrollback_rows(state)),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.scrollback.messages.len()
    }

    /// The rows drawn for message `index`: its day separator and read
    /// marker (if any), then its wrapped lines.
    pub(crate) fn block(&self, index: usize) -> Vec<Line<'static>> {
        let messages = &self.scrollback.messages;
        let message = &messages[index];
        let mut rows = Vec::new();
        let starts_day = match index.checked_sub(1) {
            Some(before) => {
                day_of(self.state, messages[before].created_at_unix_ms)
                    != day_of(self.state, message.created_at_unix_ms)
            }
            None => !self.scrollback.more_before,
        };
        if starts_day {
            rows.push(day_line(self.state, message.created_at_unix_ms, self.width));
        }
        if self.first_unread == Some(index) && index > 0 {
            rows.push(marker_line(self.width));
        }
        rows.extend(message_lines(self.state, message, self.width));
        rows
    }

    pub(crate) fn index_of(&self, seq: u64) -> usize {
        match self
            .scrollback
            .messages
            .binary_search_by_key(&seq, |message| message.seq)
        {
            Ok(index) | Err(index) => index.min(self.len().saturating_sub(1)),
        }
    }

    pub(crate) fn position_at(&self, index: usize, row: usize) -> Position {
        Position {
            seq: self.scrollback.messages[index].seq,
            row,
        }
    }

    /// The newest `want` rows, newest first.
    pub(crate) fn rows_from_bottom(&self, want: usize) -> Vec<Line<'static>> {
        let mut rows = Vec::new();
        for index in (0..self.len()).rev() {
            let mut block = self.block(index);
            block.reverse();
            rows.extend(block);
            if rows.len() >= want {
                break;
            }
        }
        rows
    }

    /// `height` rows from `position` down, or None if fewer are left (the
    /// view then shows the newest instead).
    pub(crate) fn rows_from(&self, position: Position) -> Option<Vec<Line<'static>>> {
        let mut rows = Vec::new();
        let mut index = self.index_of(position.seq);
        let mut skip = position.row;
        while rows.len() < self.height {
            if index >= self.len() {
                return None;
            }
            rows.extend(self.block(index).into_iter().skip(skip));
            skip = 0;
            index += 1;
        }
        rows.truncate(self.height);
        Some(rows)
    }

    /// Where the top of the view is when it shows the newest.
    pub(crate) fn top_of_bottom(&self) -> Position {
        let mut total = 0;
        for index in (0..self.len()).rev() {
            total += self.block(index).len();
            if total >= self.height {
                return self.position_at(index, total - self.height);
            }
        }
        self.position_at(0, 0)
    }

    pub(crate) fn up(&self, from: Position, rows: usize) -> Position {
        let mut index = self.index_of(from.seq);
        let mut row = from.row;
        let mut left = rows;
        while left > row {
            left -= row;
            if index == 0 {
                return self.position_at(0, 0);
            }
            index -= 1;
            row = self.block(index).len();
        }
        self.position_at(index, row - left)
    }

    pub(crate) fn down(&self, from: Position, rows: usize) -> Option<Position> {
        let mut index = self.index_of(from.seq);
        let mut row = from.row + rows;
        loop {
            let height = self.block(index).len();
            if row < height {
                break;
            }
            row -= height;
            index += 1;
            if index >= self.len() {
                return None;
            }
        }
        let position = self.position_at(index, row);
        // A position whose view would run past the newest is the newest.
        self.rows_from(position).map(|_| position)
    }

    /// Rows above `position` in what is loaded, counted up to `limit`.
    pub(crate) fn rows_above(&self, position: Position, limit: usize) -> usize {
        let mut index = self.index_of(position.seq);
        let mut count = position.row;
        while count < limit && index > 0 {
            index -= 1;
            count += self.block(index).len();
        }
        count
    }
}

/// The view after scrolling `rows` back (towards older messages).
pub fn scroll_up(state: &State, conversation: &str, rows: usize) -> Option<Position> {
    let layout = Layout::current(state, conversation)?;
    if layout.len() == 0 {
        return None;
    }
    let from = layout
        .scrollback
        .position
        .unwrap_or_else(|| layout.top_of_bottom());
    Some(layout.up(from, rows))
}

/// The view after scrolling `rows` forward; None once it reaches the newest.
pub fn scroll_down(state: &State, conversation: &str, rows: usize) -> Option<Position> {
    let layout = Layout::current(state, conversation)?;
    layout.down(layout.scrollback.position?, rows)
}

/// The view at the oldest loaded message.
pub fn scroll_top(state: &State, conversation: &str) -> Option<Position> {
    let layout = Layout::current(state, conversation)?;
    (layout.len() > 0).then(|| layout.position_at(0, 0))
}

/// Whether a scrolled-back view is within `rows` rows of the oldest loaded
/// message (time to fetch the page before it).
pub fn near_top(state: &State, conversation: &str, rows: usize) -> bool {
    let Some(layout) = Layout::current(state, conversation) else {
        return false;
    };
    match layout.scrollback.position {
        Some(position) => layout.rows_above(position, rows) < rows,
        None => false,
    }
}

/// How many rows the loaded part of a conversation takes at the current
/// width.
pub fn scrollback_lines(state: &State, conversation: &str) -> usize {
    Layout::current(state, conversation).map_or(0, |layout| {
        (0..layout.len())
            .map(|index| layout.block(index).len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_hard_breaks_long_words() {
        assert_eq!(
            wrap("hello brave new world", 11),
            vec!["hello brave", "new world"]
        );
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\ntwo", 10), vec!["one", "two"]);
        // Wide characters count two columns.
        assert_eq!(wrap("日本語テキスト", 6), vec!["日本語", "テキス", "ト"]);
    }
}
