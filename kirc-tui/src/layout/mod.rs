//! How the screen is divided and how a conversation's messages become
//! lines: the same layout serves `update` (to page and to know when to load
//! older messages) and `ui` (to draw), so update does not depend on render
//! and both agree to the row. Its length is the price of that one source:
//! the areas, the wrapping and the scrollback's rows must not drift apart.

use ratatui::layout::{Constraint, Layout as Split, Rect};

use crate::state::{Link, Position, Scrollback, State};

mod lines;

pub use lines::*;

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

/// The conversations the list shows, top to bottom, with their index in
/// the daemon's order (what alt-1 … alt-9 count): channels, and one-to-one
/// chats with a contact.
pub fn listed(state: &State) -> Vec<(usize, &kirc_proto::v1::Conversation)> {
    state
        .view
        .conversations
        .iter()
        .enumerate()
        .filter(|(_, conversation)| conversation.channel.is_some() || conversation.peer.is_some())
        .collect()
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
    pub(crate) fn block(&self, index: usize) -> Vec<Row> {
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
            rows.push(marker_line(&self.state.theme, self.width));
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
    pub(crate) fn rows_from_bottom(&self, want: usize) -> Vec<Row> {
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
    pub(crate) fn rows_from(&self, position: Position) -> Option<Vec<Row>> {
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
        self.before_newest(self.position_at(index, row))
    }

    /// `position`, or `None` (the newest view, which follows what
    /// arrives) if a view from there would reach the newest row.
    pub(crate) fn before_newest(&self, position: Position) -> Option<Position> {
        let bottom = self.top_of_bottom();
        let place = |at: Position| (self.index_of(at.seq), at.row);
        (place(position) < place(bottom)).then_some(position)
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

/// Where the view goes so that message `id` is on screen: `Some` of the
/// new position (`Some(None)`: the newest), or `None` if it is on screen
/// already or not loaded.
pub fn position_showing(state: &State, conversation: &str, id: &str) -> Option<Option<Position>> {
    let layout = Layout::current(state, conversation)?;
    let index = layout
        .scrollback
        .messages
        .iter()
        .position(|message| message.id == id)?;
    let top = layout
        .scrollback
        .position
        .unwrap_or_else(|| layout.top_of_bottom());
    let top_index = layout.index_of(top.seq);
    if index < top_index || (index == top_index && top.row > 0) {
        // Above the view: it becomes the top row.
        return Some(Some(layout.position_at(index, 0)));
    }
    let mut start = 0;
    let mut skip = top.row;
    for before in top_index..index {
        start += layout.block(before).len() - skip;
        skip = 0;
    }
    let height = layout.block(index).len();
    if start + height <= layout.height {
        return None;
    }
    // Below the view: its last row becomes the bottom one.
    let new_top = layout.up(layout.position_at(index, height), layout.height);
    Some(layout.before_newest(new_top))
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
