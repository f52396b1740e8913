//! How one message becomes lines on screen: its quote if it is a reply,
//! its name and time, its text wrapped (or that it was deleted), its marks,
//! its reactions; a channel's lines; and the helpers they share (safe text,
//! widths, colours).

use jiff::Timestamp;
use kirc_proto::v1::{self as pb, MessageState};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::state::State;
use crate::theme::Theme;

/// One row of the scrollback: what it shows, and the links on it (drawn
/// as terminal hyperlinks over the cells they cover).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub line: Line<'static>,
    pub links: Vec<RowLink>,
}

/// A link's cells on a row: from `column`, `width` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLink {
    pub column: usize,
    pub width: usize,
    pub url: String,
}

impl From<Line<'static>> for Row {
    fn from(line: Line<'static>) -> Self {
        Row {
            line,
            links: Vec::new(),
        }
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

/// Cuts `text` to at most `width` columns, with an ellipsis if cut; never
/// inside a grapheme (an emoji sequence stays whole or goes).
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for grapheme in text.graphemes(true) {
        let grapheme_width = grapheme.width();
        if used + grapheme_width + 1 > width {
            break;
        }
        out.push_str(grapheme);
        used += grapheme_width;
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
pub const DIRECT_MARK: &str = "⇄";

/// The mark after one of our own messages, by delivery state.
pub fn delivery_mark(theme: &Theme, state: i32) -> (&'static str, Color) {
    match MessageState::try_from(state).unwrap_or(MessageState::Unspecified) {
        MessageState::Pending | MessageState::Unspecified => ("·", theme.quiet),
        MessageState::Queued => ("○", theme.quiet),
        MessageState::Delivered => ("◐", theme.soft),
        MessageState::Received => ("●", theme.soft),
        MessageState::Read => ("✔", theme.good),
    }
}

/// Splits `text` into pieces of at most `width` columns, at spaces where it
/// can; newlines start new pieces.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    wrap_at(text, width)
        .into_iter()
        .map(|piece| piece.text)
        .collect()
}

/// A wrapped piece of a text and where it starts in it (bytes), so that
/// what was found in the text (links) can be found in the pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub text: String,
    pub start: usize,
}

/// [`wrap`], keeping each piece's place in `text`.
pub(crate) fn wrap_at(text: &str, width: usize) -> Vec<Piece> {
    let width = width.max(1);
    let mut pieces = Vec::new();
    let mut paragraph_start = 0;
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut line_start = paragraph_start;
        let mut line_width = 0;
        let mut last_space: Option<usize> = None;
        for (at, grapheme) in paragraph.grapheme_indices(true) {
            let g_width = grapheme.width();
            if grapheme == " " && line_width + g_width > width {
                // The line is full exactly at a space: break there.
                pieces.push(Piece {
                    text: std::mem::take(&mut line),
                    start: line_start,
                });
                line_start = paragraph_start + at + 1;
                line_width = 0;
                last_space = None;
                continue;
            }
            if line_width + g_width > width && !line.is_empty() {
                match last_space {
                    Some(space) if space > 0 => {
                        let rest = line.split_off(space);
                        let kept = rest.trim_start();
                        let skipped = rest.len() - kept.len();
                        pieces.push(Piece {
                            text: line.trim_end().to_owned(),
                            start: line_start,
                        });
                        line_start += space + skipped;
                        line = kept.to_owned();
                    }
                    _ => {
                        let taken = std::mem::take(&mut line);
                        let taken_len = taken.len();
                        pieces.push(Piece {
                            text: taken,
                            start: line_start,
                        });
                        line_start += taken_len;
                    }
                }
                line_width = line.width();
                last_space = None;
            }
            if grapheme == " " {
                last_space = Some(line.len());
            }
            line.push_str(grapheme);
            line_width += g_width;
        }
        pieces.push(Piece {
            text: line,
            start: line_start,
        });
        paragraph_start += paragraph.len() + 1;
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
pub(crate) fn message_lines(state: &State, message: &pb::ChatMessage, width: usize) -> Vec<Row> {
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
                Row::from(Line::from(vec![
                    Span::styled(lead, Style::new().dim()),
                    Span::styled(piece, Style::new().fg(state.theme.accent).dim()),
                ]))
            })
            .collect();
    }
    let name = sanitize(&state.name_of(&message.sender));
    let colour = state.theme.name_colour(&message.sender);
    let mark = if message.outgoing {
        Some(delivery_mark(&state.theme, message.state))
    } else {
        message.direct.then_some((DIRECT_MARK, state.theme.accent))
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
    let edited_width = if message.edited && !message.deleted {
        EDITED.width()
    } else {
        0
    };
    let text_width = width
        .saturating_sub(indent + mark_width + edited_width)
        .max(1);
    let (body, text_style) = if message.deleted {
        (
            String::from(DELETED),
            Style::new().add_modifier(Modifier::ITALIC).dim(),
        )
    } else if message.action {
        (
            sanitize_keep_newlines(&message.body),
            Style::new().add_modifier(Modifier::ITALIC),
        )
    } else {
        (sanitize_keep_newlines(&message.body), Style::new())
    };
    let pieces = wrap_at(&body, text_width);
    let links = if message.deleted {
        Vec::new()
    } else {
        crate::links::find(&body)
    };
    let last = pieces.len().saturating_sub(1);
    let selected = state.selected.as_deref() == Some(message.id.as_str());
    let time_column = if selected {
        format!("{time:<5}{SELECTED}")
    } else {
        format!("{time:<TIME_WIDTH$}")
    };
    let mut rows = Vec::with_capacity(pieces.len() + 2);
    if !message.reply_to.is_empty() {
        rows.push(Row::from(quote_line(state, message, indent, width)));
    }
    for (index, piece) in pieces.into_iter().enumerate() {
        let mut spans = if index == 0 {
            let mut spans = vec![Span::styled(time_column.clone(), Style::new().dim())];
            spans.extend(head.clone());
            spans
        } else {
            vec![Span::raw(" ".repeat(indent))]
        };
        let mut row_links = Vec::new();
        spans.extend(linked_spans(
            &body,
            &piece,
            &links,
            text_style,
            state.theme.link,
            indent,
            &mut row_links,
        ));
        if index == last {
            if edited_width > 0 {
                spans.push(Span::styled(EDITED, Style::new().dim()));
            }
            if let Some((symbol, colour)) = mark {
                spans.push(Span::styled(format!(" {symbol}"), Style::new().fg(colour)));
            }
        }
        rows.push(Row {
            line: Line::from(spans),
            links: row_links,
        });
    }
    if !message.reactions.is_empty() && !message.deleted {
        rows.push(Row::from(reactions_line(state, message, indent, width)));
    }
    if selected {
        for row in &mut rows {
            row.line =
                std::mem::take(&mut row.line).patch_style(Style::new().bg(state.theme.selection));
        }
    }
    rows
}

/// The spans of one wrapped piece of `body`, its links underlined; each
/// link's cells go to `row_links` (the piece starts at column `column`).
fn linked_spans(
    body: &str,
    piece: &Piece,
    links: &[(std::ops::Range<usize>, String)],
    style: Style,
    link_colour: Color,
    column: usize,
    row_links: &mut Vec<RowLink>,
) -> Vec<Span<'static>> {
    let end = piece.start + piece.text.len();
    let mut spans = Vec::new();
    let mut cursor = piece.start;
    let mut column = column;
    for (range, url) in links {
        let from = range.start.max(piece.start);
        let to = range.end.min(end);
        if from >= to {
            continue;
        }
        if from > cursor {
            let plain = &body[cursor..from];
            column += plain.width();
            spans.push(Span::styled(plain.to_owned(), style));
        }
        let shown = &body[from..to];
        row_links.push(RowLink {
            column,
            width: shown.width(),
            url: url.clone(),
        });
        column += shown.width();
        spans.push(Span::styled(
            shown.to_owned(),
            style.fg(link_colour).add_modifier(Modifier::UNDERLINED),
        ));
        cursor = to;
    }
    if cursor < end {
        spans.push(Span::styled(body[cursor..end].to_owned(), style));
    }
    spans
}

/// What an edited message says after its text.
const EDITED: &str = " (edited)";
/// What shows instead of a deleted message's text.
const DELETED: &str = "message deleted";
/// Marks the selected message, after its time (a terminal without colours
/// still shows which one it is).
const SELECTED: &str = "▌";

/// The row above a reply: whom it answers and the start of what they said.
fn quote_line(
    state: &State,
    message: &pb::ChatMessage,
    indent: usize,
    width: usize,
) -> Line<'static> {
    let quoted = match &message.quote {
        None => String::from("a message not here yet"),
        Some(quote) if quote.deleted => String::from("a deleted message"),
        Some(quote) => {
            let name = sanitize(&state.name_of(&quote.sender));
            let first_line = quote.excerpt.lines().next().unwrap_or_default();
            format!("{name}: {}", sanitize(first_line))
        }
    };
    let room = width.saturating_sub(indent + 2);
    Line::from(vec![
        Span::raw(" ".repeat(indent)),
        Span::styled(format!("↳ {}", truncate(&quoted, room)), Style::new().dim()),
    ])
}

/// The row under a message with reactions: each emoji and its count, this
/// actor's own in bold.
fn reactions_line(
    state: &State,
    message: &pb::ChatMessage,
    indent: usize,
    width: usize,
) -> Line<'static> {
    let mut spans = vec![Span::raw(" ".repeat(indent))];
    let mut used = indent;
    for reaction in &message.reactions {
        let text = format!("{} {}", sanitize(&reaction.emoji), reaction.count);
        let needed = text.width() + 2;
        if used + needed > width {
            spans.push(Span::styled("…", Style::new().dim()));
            break;
        }
        let style = if reaction.mine {
            Style::new().fg(state.theme.attention).bold()
        } else {
            Style::new().dim()
        };
        spans.push(Span::styled(text, style));
        spans.push(Span::raw("  "));
        used += needed;
    }
    Line::from(spans)
}

/// Like `sanitize`, but multi-line messages keep their lines.
pub(crate) fn sanitize_keep_newlines(text: &str) -> String {
    text.split('\n')
        .map(sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn day_line(state: &State, unix_ms: i64, width: usize) -> Row {
    let day = format_time(state, unix_ms, "%A %d %B %Y");
    let label = format!(" {day} ");
    let side = width.saturating_sub(label.width()) / 2;
    Row::from(Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().dim(),
    )))
}

pub(crate) fn marker_line(theme: &Theme, width: usize) -> Row {
    let label = " new ";
    let side = width.saturating_sub(label.len()) / 2;
    Row::from(Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
        Style::new().fg(theme.bad),
    )))
}

pub(crate) fn day_of(state: &State, unix_ms: i64) -> String {
    format_time(state, unix_ms, "%Y-%m-%d")
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
        // An emoji sequence is one grapheme two columns wide, never split.
        assert_eq!(wrap("👨‍👩‍👧‍👦👨‍👩‍👧‍👦👨‍👩‍👧‍👦", 4), vec!["👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "👨‍👩‍👧‍👦"]);
        assert_eq!(wrap("❤️❤️❤️", 5), vec!["❤️❤️", "❤️"]);
    }

    #[test]
    fn truncation_counts_and_keeps_graphemes() {
        assert_eq!(truncate("🇫🇷🇫🇷🇫🇷", 5), "🇫🇷🇫🇷…");
        assert_eq!(truncate("ab👍🏽", 4), "ab👍🏽");
        assert_eq!(truncate("ab👍🏽c", 4), "ab…");
    }

    #[test]
    fn every_piece_knows_where_it_starts_in_the_text() {
        for (text, width) in [
            ("hello brave new world", 11),
            ("abcdefghij", 4),
            ("one\ntwo  three four", 5),
            ("a  b   c    d", 3),
            ("日本語 テキスト です", 6),
            ("see https://example.com/a/long/path now", 12),
        ] {
            for piece in wrap_at(text, width) {
                assert!(
                    text[piece.start..].starts_with(&piece.text),
                    "{text:?} at {width}: {piece:?}"
                );
            }
        }
    }
}
