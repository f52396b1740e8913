//! The scrollback: messages as wrapped lines with day separators, a marker
//! at the read position, sender names in stable colours, `/me` actions and
//! delivery marks. Only the lines on screen are built: the walk starts at the
//! newest message and stops once the screen (plus the scroll offset) is full,
//! so a long history costs no more per frame than a short one.

use kirc_proto::v1::{self as pb, MessageState};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::{areas, colour_of, format_time, sanitize, truncate};
use crate::state::{Scrollback, State};

/// Width of the time column ("12:34 ").
const TIME_WIDTH: usize = 6;
/// Names are padded or cut to this many columns.
const NAME_WIDTH: usize = 10;

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

fn scrollback_width(state: &State) -> usize {
    let (columns, rows) = state.screen;
    usize::from(areas(Rect::new(0, 0, columns, rows), state).body.width)
}

/// Splits `text` into pieces of at most `width` columns, at spaces where it
/// can; newlines start new pieces.
fn wrap(text: &str, width: usize) -> Vec<String> {
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

/// The lines of one message, in display order.
fn message_lines(state: &State, message: &pb::ChatMessage, width: usize) -> Vec<Line<'static>> {
    let time = format_time(state, message.created_at_unix_ms, "%H:%M");
    let name = sanitize(&state.name_of(&message.sender));
    let colour = colour_of(&message.sender);
    let body = sanitize_keep_newlines(&message.body);
    let mark = message.outgoing.then(|| delivery_mark(message.state));
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
fn sanitize_keep_newlines(text: &str) -> String {
    text.split('\n')
        .map(sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

fn day_line(state: &State, unix_ms: i64, width: usize) -> Line<'static> {
    let day = format_time(state, unix_ms, "%A %d %B %Y");
    let label = format!(" {day} ");
    let side = width.saturating_sub(label.width()) / 2;
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().dim(),
    ))
}

fn marker_line(width: usize) -> Line<'static> {
    let label = " new ";
    let side = width.saturating_sub(label.len()) / 2;
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().fg(Color::Red),
    ))
}

fn day_of(state: &State, unix_ms: i64) -> String {
    format_time(state, unix_ms, "%Y-%m-%d")
}

/// Builds lines from the newest message back until `want` lines exist (all
/// of them if `want` is `usize::MAX`). Returned newest first.
fn lines_from_bottom(
    state: &State,
    scrollback: &Scrollback,
    last_read_seq: u64,
    width: usize,
    want: usize,
) -> Vec<Line<'static>> {
    let messages = &scrollback.messages;
    let mut lines: Vec<Line<'static>> = Vec::new();
    // The first unread message from the peer gets the marker above it.
    let first_unread = messages
        .iter()
        .position(|message| !message.outgoing && message.seq > last_read_seq);
    for index in (0..messages.len()).rev() {
        let message = &messages[index];
        let mut block = message_lines(state, message, width);
        block.reverse();
        lines.extend(block);
        if first_unread == Some(index) && index > 0 {
            lines.push(marker_line(width));
        }
        let starts_day = match index.checked_sub(1) {
            Some(before) => {
                day_of(state, messages[before].created_at_unix_ms)
                    != day_of(state, message.created_at_unix_ms)
            }
            None => !scrollback.more_before,
        };
        if starts_day {
            lines.push(day_line(state, message.created_at_unix_ms, width));
        }
        if lines.len() >= want {
            break;
        }
    }
    lines
}

/// How many lines the loaded part of a conversation takes at the current
/// width (for scrolling bounds).
pub fn scrollback_lines(state: &State, conversation: &str) -> usize {
    let (Some(scrollback), Some(summary)) = (
        state.scrollbacks.get(conversation),
        state.view.conversation(conversation),
    ) else {
        return 0;
    };
    lines_from_bottom(
        state,
        scrollback,
        summary.last_read_seq,
        scrollback_width(state),
        usize::MAX,
    )
    .len()
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let Some(conversation) = state.open_conversation() else {
        return;
    };
    let height = usize::from(area.height);
    let width = usize::from(area.width);
    let Some(scrollback) = state.scrollbacks.get(&conversation.id) else {
        frame.render_widget(Paragraph::new("loading…".dim()), area);
        return;
    };
    if scrollback.messages.is_empty() {
        let text = if scrollback.loading {
            "loading…"
        } else {
            "no messages yet: say hello"
        };
        frame.render_widget(Paragraph::new(text.dim()), area);
        return;
    }
    let mut lines = lines_from_bottom(
        state,
        scrollback,
        conversation.last_read_seq,
        width,
        scrollback.scroll + height,
    );
    let more_above = scrollback.more_before || lines.len() > scrollback.scroll + height;
    let scroll = scrollback.scroll.min(lines.len().saturating_sub(1));
    let mut visible: Vec<Line<'static>> = lines.drain(scroll..).take(height).collect();
    if visible.len() == height && more_above && scroll > 0 {
        // Say that there is more above when scrolled back.
        visible.pop();
        visible.push(Line::from(
            if scrollback.loading {
                "  loading older messages…"
            } else {
                "  ↑ older messages above"
            }
            .dim(),
        ));
    }
    visible.reverse();
    // Short histories sit at the bottom, next to the input line.
    let padding = height.saturating_sub(visible.len());
    let mut shown = vec![Line::default(); padding];
    shown.extend(visible);
    if scroll > 0
        && let Some(last) = shown.last_mut()
    {
        *last = Line::from(Span::styled(
            format!("  ↓ {scroll} lines below · End to return"),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(shown), area);
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
