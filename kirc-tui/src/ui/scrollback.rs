//! The scrollback: messages as wrapped lines with day separators, a marker
//! at the read position, sender names in stable colours, `/me` actions and
//! delivery marks (laid out by `crate::layout`). Only the lines on screen are
//! built: the walk starts at the newest message (or the anchor of a
//! scrolled-back view) and stops once the screen is full, so a long history
//! costs no more per frame than a short one.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::layout::Layout;
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
    let shown: Vec<Line<'static>> = match scrolled {
        Some(mut rows) => {
            // Scrolled back: say so, and how to return.
            if let Some(last) = rows.last_mut() {
                *last = Line::from(Span::styled(
                    "  ↓ newer messages below · End returns",
                    Style::new().fg(Color::Yellow),
                ));
            }
            if layout.scrollback.loading
                && let Some(first) = rows.first_mut()
            {
                *first = Line::from("  loading older messages…".dim());
            }
            rows
        }
        None => {
            let mut rows = layout.rows_from_bottom(layout.height);
            rows.truncate(layout.height);
            rows.reverse();
            // Short histories sit at the bottom, next to the input line.
            let mut padded = vec![Line::default(); layout.height.saturating_sub(rows.len())];
            padded.extend(rows);
            padded
        }
    };
    frame.render_widget(Paragraph::new(shown), area);
}
