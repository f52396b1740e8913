//! The scrollback: messages as wrapped lines with day separators, a marker
//! at the read position, sender names in stable colours, `/me` actions and
//! delivery marks (laid out by `crate::layout`). Only the lines on screen are
//! built: the walk starts at the newest message (or the anchor of a
//! scrolled-back view) and stops once the screen is full, so a long history
//! costs no more per frame than a short one.

use std::num::NonZeroU16;

use ratatui::Frame;
use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use unicode_width::UnicodeWidthStr;

use crate::layout::{Layout, Row, RowLink};
use crate::state::State;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let Some(conversation) = state.open_conversation() else {
        return;
    };
    let Some(layout) = Layout::new(
        state,
        &conversation.id,
        usize::from(area.width),
        usize::from(area.height),
    ) else {
        frame.render_widget(Paragraph::new("loading…".dim()), area);
        return;
    };
    if layout.len() == 0 {
        let text = if layout.scrollback.loading {
            "loading…"
        } else {
            "no messages yet: say hello"
        };
        frame.render_widget(Paragraph::new(text.dim()), area);
        return;
    }
    let scrolled = layout
        .scrollback
        .position
        .and_then(|position| layout.rows_from(position));
    let shown: Vec<Row> = match scrolled {
        Some(mut rows) => {
            // Scrolled back: say so, and how to return.
            if let Some(last) = rows.last_mut() {
                *last = Row::from(Line::from(Span::styled(
                    "  ↓ newer messages below · End returns",
                    Style::new().fg(state.theme.attention),
                )));
            }
            if layout.scrollback.loading
                && let Some(first) = rows.first_mut()
            {
                *first = Row::from(Line::from("  loading older messages…".dim()));
            }
            rows
        }
        None => {
            let mut rows = layout.rows_from_bottom(layout.height);
            rows.truncate(layout.height);
            rows.reverse();
            // Short histories sit at the bottom, next to the input line.
            let mut padded = vec![Row::default(); layout.height.saturating_sub(rows.len())];
            padded.extend(rows);
            padded
        }
    };
    let links: Vec<(u16, Vec<RowLink>)> = shown
        .iter()
        .enumerate()
        .filter(|(_, row)| !row.links.is_empty())
        .map(|(at, row)| (u16::try_from(at).unwrap_or(u16::MAX), row.links.clone()))
        .collect();
    let lines: Vec<Line<'static>> = shown.into_iter().map(|row| row.line).collect();
    frame.render_widget(Paragraph::new(lines), area);
    let buffer = frame.buffer_mut();
    for (row, row_links) in links {
        for link in row_links {
            hyperlink(buffer, area, row, &link);
        }
    }
}

/// Makes the cells of `link` on row `row` of `area` a terminal hyperlink
/// (OSC 8): the opening sequence goes into its first cell, the closing one
/// into its last, each cell keeping its width (terminals without OSC 8
/// ignore the sequences). A URL wrapped over two rows is a link on each.
fn hyperlink(buffer: &mut Buffer, area: Rect, row: u16, link: &RowLink) {
    if !crate::links::openable(&link.url) || row >= area.height {
        return;
    }
    let y = area.y + row;
    let start = u16::try_from(link.column).unwrap_or(u16::MAX);
    let end = u16::try_from(link.column + link.width)
        .unwrap_or(u16::MAX)
        .min(area.width);
    if start >= end {
        return;
    }
    // The cells that start a symbol: a wide character's second cell is
    // hidden behind it, and a sequence written there would never be sent.
    let mut cells = Vec::new();
    let mut x = start;
    while x < end {
        cells.push(x);
        let width = buffer
            .cell((area.x + x, y))
            .map_or(1, |cell| cell.symbol().width().max(1));
        x = x.saturating_add(u16::try_from(width).unwrap_or(1));
    }
    let (Some(&first), Some(&last)) = (cells.first(), cells.last()) else {
        return;
    };
    let open = format!("\x1b]8;;{}\x1b\\", link.url);
    let close = "\x1b]8;;\x1b\\";
    let ends = if first == last {
        vec![first]
    } else {
        vec![first, last]
    };
    for x in ends {
        let Some(cell) = buffer.cell_mut((area.x + x, y)) else {
            continue;
        };
        let symbol = cell.symbol().to_owned();
        let Some(width) = NonZeroU16::new(u16::try_from(symbol.width()).unwrap_or(1).max(1)) else {
            continue;
        };
        let mut wrapped = String::new();
        if x == first {
            wrapped.push_str(&open);
        }
        wrapped.push_str(&symbol);
        if x == last {
            wrapped.push_str(close);
        }
        cell.set_symbol(&wrapped)
            .set_diff_option(CellDiffOption::ForcedWidth(width));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(buffer: &Buffer, y: u16) -> Vec<String> {
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol().to_owned())
            .collect()
    }

    #[test]
    fn a_hyperlink_opens_in_its_first_cell_and_closes_in_its_last_even_when_they_are_one() {
        let area = Rect::new(0, 0, 8, 2);
        let mut buffer = Buffer::with_lines(["ab日c    ", "e       "]);
        let url = "https://x.example";
        hyperlink(
            &mut buffer,
            area,
            0,
            &RowLink {
                column: 1,
                width: 4,
                url: url.into(),
            },
        );
        hyperlink(
            &mut buffer,
            area,
            1,
            &RowLink {
                column: 0,
                width: 1,
                url: url.into(),
            },
        );
        let open = format!("\x1b]8;;{url}\x1b\\");
        let close = "\x1b]8;;\x1b\\";
        // The wide character's second cell is left alone.
        assert_eq!(
            symbols(&buffer, 0)[..5],
            ["a", &format!("{open}b"), "日", " ", &format!("c{close}")]
        );
        assert_eq!(symbols(&buffer, 1)[0], format!("{open}e{close}"));
        // Not a web link: left alone.
        let mut plain = Buffer::with_lines(["x"]);
        hyperlink(
            &mut plain,
            Rect::new(0, 0, 1, 1),
            0,
            &RowLink {
                column: 0,
                width: 1,
                url: "file:///etc/passwd".into(),
            },
        );
        assert_eq!(plain[(0, 0)].symbol(), "x");
    }
}
