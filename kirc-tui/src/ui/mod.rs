//! Drawing. `render` reads the state and nothing else: no I/O, no clock.

use jiff::Timestamp;
use kirc_proto::v1::{Backend, BackendState, BackendStatus};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::state::{Link, State};

pub fn render(frame: &mut Frame<'_>, state: &State) {
    let banner_height = if matches!(state.link, Link::Disconnected { .. }) {
        2
    } else {
        0
    };
    let [title, banner, body, status_bar, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(state)), title);
    if let Link::Disconnected { error, .. } = &state.link {
        let why = match &state.daemon_stopping {
            Some(reason) => format!("kircd stopped ({reason}); waiting for it to come back."),
            None => error.clone(),
        };
        frame.render_widget(
            Paragraph::new(why)
                .style(Style::new().fg(Color::Red))
                .wrap(Wrap { trim: true }),
            banner,
        );
    }
    render_body(frame, body, state);
    frame.render_widget(Paragraph::new(link_line(state)), status_bar);
    frame.render_widget(
        Paragraph::new(Line::from(vec![" q".bold(), " quit".dim()])),
        help,
    );
}

fn format_time(state: &State, unix_ms: i64, format: &str) -> String {
    match Timestamp::from_millisecond(unix_ms) {
        Ok(timestamp) if unix_ms > 0 => timestamp
            .to_zoned_datetime(state.time_zone.clone())
            .strftime(format)
            .to_string(),
        _ => String::from("—"),
    }
}

const DATE_TIME: &str = "%Y-%m-%d %H:%M:%S";
const TIME: &str = "%H:%M:%S";

fn title_line(state: &State) -> Line<'static> {
    let mut spans = vec![Span::styled(" K-IRC ", Style::new().bold().reversed())];
    if let Some(status) = &state.view.status {
        spans.push(Span::raw(format!(
            " kircd {} · pid {} · started {}",
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

fn state_span(backend: &BackendStatus, stale: bool) -> [Span<'static>; 2] {
    let (dot, word, color) = match backend.state() {
        BackendState::Up => ("●", "up", Color::Green),
        BackendState::Down => ("●", "down", Color::Red),
        BackendState::Connecting | BackendState::Unspecified => ("○", "connecting", Color::Yellow),
    };
    // What was last known from a daemon that is gone is shown, but greyed.
    let color = if stale { Color::DarkGray } else { color };
    [
        Span::styled(format!(" {dot} "), Style::new().fg(color)),
        Span::styled(
            format!("{word:<11}"),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ),
    ]
}

fn render_body(frame: &mut Frame<'_>, area: Rect, state: &State) {
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
        let [dot, word] = state_span(backend, stale);
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
                Span::styled(backend.last_error.clone(), Style::new().fg(Color::Red)),
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
            Span::styled("missing", Style::new().fg(Color::Red).bold())
        };
        lines.push(Line::from(vec![
            Span::raw(format!("   {:<9} ", topic.role)),
            Span::raw(format!("{:<24} ", topic.name)),
            detail,
        ]));
    }
    if status.refused_connections > 0 {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!(
                " {} connection(s) from other users refused",
                status.refused_connections
            ),
            Style::new().fg(Color::Yellow),
        )));
    }
    let block = Block::new().borders(Borders::TOP).title(" Backends ");
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn link_line(state: &State) -> Line<'static> {
    match &state.link {
        Link::Connected => Line::from(vec![
            Span::styled(
                " connected ",
                Style::new().fg(Color::Black).bg(Color::Green),
            ),
            Span::raw(format!(" {} · event {}", state.socket, state.last_seq)),
        ]),
        Link::Connecting { attempt } => Line::from(vec![
            Span::styled(
                " connecting ",
                Style::new().fg(Color::Black).bg(Color::Yellow),
            ),
            Span::raw(format!(" {} · attempt {attempt}", state.socket)),
        ]),
        Link::Disconnected {
            since_unix_ms,
            attempt,
            retry_in_ms,
            ..
        } => Line::from(vec![
            Span::styled(
                " DISCONNECTED ",
                Style::new().fg(Color::White).bg(Color::Red).bold(),
            ),
            Span::raw(format!(
                " since {} · retry {attempt} in {} · {}",
                format_time(state, *since_unix_ms, TIME),
                humantime::format_duration(std::time::Duration::from_millis(*retry_in_ms)),
                state.socket
            )),
        ]),
    }
}

#[cfg(test)]
mod tests;
