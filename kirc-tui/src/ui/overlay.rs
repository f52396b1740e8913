//! Panels drawn over the conversation: help, invite (with its QR code),
//! search results, contacts, whois, transfers, a conversation's links, a
//! message's versions.

use kirc_proto::v1::ContactState;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::commands::COMMANDS;
use crate::keys::EDITING_KEYS;
use crate::layout::{delivery_mark, format_time, sanitize, truncate};
use crate::state::{Overlay, State};

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

fn panel(frame: &mut Frame<'_>, area: Rect, title: &str, lines: Vec<Line<'static>>, width: u16) {
    scrolled_panel(frame, area, title, lines, width, None);
}

/// A panel whose lines may not all fit: from line `scroll` on (the value
/// kept in the state is clamped here, where the height is known).
fn scrolled_panel(
    frame: &mut Frame<'_>,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    width: u16,
    scroll: Option<usize>,
) {
    let inner_width = usize::from(width.min(area.width).saturating_sub(2)).max(1);
    // Rows the lines take once wrapped at the panel's width.
    let rows: usize = lines
        .iter()
        .map(|line| line.width().div_ceil(inner_width).max(1))
        .sum();
    let fits = usize::from(area.height.saturating_sub(2));
    let overflow = rows > fits;
    let height = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let area = centered(area, width, height);
    frame.render_widget(Clear, area);
    let bottom = if scroll.is_some() && overflow {
        " ↑↓ PgUp PgDn scroll · Esc closes "
    } else {
        " Esc closes "
    };
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .title(format!(" {title} "))
        .title_bottom(bottom);
    let offset = scroll.unwrap_or(0).min(rows.saturating_sub(fits));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0))
            .block(block),
        area,
    );
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State, overlay: &Overlay) {
    match overlay {
        Overlay::Help { scroll } => help(frame, area, state, *scroll),
        Overlay::Invite {
            token,
            expires_at_unix_ms,
        } => invite(frame, area, state, token, *expires_at_unix_ms),
        Overlay::Search {
            query,
            results,
            selected,
        } => search(frame, area, state, query, results, *selected),
        Overlay::Contacts => contacts(frame, area, state),
        Overlay::Whois { actor_id } => whois(frame, area, state, actor_id),
        Overlay::Transfers { selected } => transfers(frame, area, state, *selected),
        Overlay::Versions { versions, .. } => message_versions(frame, area, state, versions),
        Overlay::Links { selected } => links(frame, area, state, *selected),
    }
}

fn links(frame: &mut Frame<'_>, area: Rect, state: &State, selected: usize) {
    let urls = state
        .open
        .as_deref()
        .map(|open| crate::links::of_conversation(state, open))
        .unwrap_or_default();
    let width = usize::from(area.width.saturating_sub(10));
    let lines = urls
        .iter()
        .enumerate()
        .map(|(index, url)| {
            let style = if index == selected {
                Style::new().reversed()
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{:>3} ", index + 1), Style::new().dim()),
                Span::styled(truncate(url, width), style.fg(state.theme.link)),
            ])
        })
        .collect();
    scrolled_panel(
        frame,
        area,
        "Links · Enter opens · y copies",
        lines,
        area.width,
        Some(selected.saturating_sub(usize::from(area.height.saturating_sub(4)))),
    );
}

fn message_versions(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &State,
    versions: &[kirc_proto::v1::MessageVersion],
) {
    let lines = if versions.is_empty() {
        vec![Line::from("deleted: no text is kept".dim())]
    } else {
        versions
            .iter()
            .enumerate()
            .map(|(index, version)| {
                let label = if index == 0 { "sent" } else { "edited" };
                Line::from(vec![
                    Span::styled(
                        format!(
                            "{label:<7}{} ",
                            format_time(state, version.at_unix_ms, "%Y-%m-%d %H:%M")
                        ),
                        Style::new().dim(),
                    ),
                    Span::raw(sanitize(&version.text)),
                ])
            })
            .collect()
    };
    panel(frame, area, "Versions", lines, 90);
}

fn help(frame: &mut Frame<'_>, area: Rect, state: &State, scroll: usize) {
    let mut lines = vec![Line::from("Commands".bold())];
    for (name, args, doc) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(
                format!("  /{name} {args}"),
                Style::new().fg(state.theme.accent),
            ),
            Span::raw(format!(" — {doc}")),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from("Keys".bold()));
    for (keys, doc) in &state.keymap.described {
        lines.push(Line::from(vec![
            Span::styled(format!("  {keys:<16}"), Style::new().fg(state.theme.accent)),
            Span::raw(*doc),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(
            format!("  {:<16}", "alt-1 … alt-9"),
            Style::new().fg(state.theme.accent),
        ),
        Span::raw("open conversation 1 … 9"),
    ]));
    let selected: Vec<String> = crate::update::SELECTED_KEYS
        .iter()
        .map(|(key, doc)| format!("{key} {doc}"))
        .collect();
    lines.push(Line::from(
        format!("  a selected message: {}", selected.join(" · ")).dim(),
    ));
    let editing: Vec<String> = EDITING_KEYS
        .iter()
        .map(|(key, doc)| format!("{key} {doc}"))
        .collect();
    lines.push(Line::from(
        format!("  input line: {}", editing.join(" · ")).dim(),
    ));
    lines.push(Line::default());
    let marks: Vec<String> = [
        ("pending", 1),
        ("queued", 2),
        ("delivered", 3),
        ("received", 4),
        ("read", 5),
    ]
    .iter()
    .map(|(name, delivery)| format!("{} {name}", delivery_mark(&state.theme, *delivery).0))
    .collect();
    lines.push(Line::from(format!("  your messages: {}", marks.join("  "))));
    lines.push(Line::from(format!(
        "  their messages: {} came over the direct path first (else Kafka)",
        crate::layout::DIRECT_MARK
    )));
    lines.push(Line::from(
        "  //text sends a line that starts with a slash".dim(),
    ));
    scrolled_panel(frame, area, "Help", lines, 100, Some(scroll));
}

fn invite(frame: &mut Frame<'_>, area: Rect, state: &State, token: &str, expires_at_unix_ms: i64) {
    let until = format_time(state, expires_at_unix_ms, "%Y-%m-%d %H:%M");
    // A channel's token lets anyone who holds it join, until it expires.
    let (what, how_long) = if token.starts_with("kircc1:") {
        (
            "Give this token to whoever should join; they join with /join <token>.",
            format!("Anyone who has it can join until {until}."),
        )
    } else {
        (
            "Give this token to a friend; they add you with /add <token>.",
            format!("It works once, until {until}."),
        )
    };
    let mut lines = vec![
        Line::from(what),
        Line::from(how_long.dim()),
        Line::from("y copies the token to the clipboard, without the box around it.".dim()),
        Line::default(),
    ];
    lines.push(Line::from(Span::styled(
        token.to_owned(),
        Style::new().fg(state.theme.accent),
    )));
    // The QR code needs its full size to scan; show it only where it fits.
    if let Ok(code) = QrCode::new(token.as_bytes()) {
        let image = code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build();
        let qr_lines: Vec<&str> = image.lines().collect();
        let qr_width = qr_lines.first().map_or(0, |line| line.chars().count());
        let fits = usize::from(area.height) >= qr_lines.len() + lines.len() + 4
            && usize::from(area.width) >= qr_width + 4;
        lines.push(Line::default());
        if fits {
            lines.extend(qr_lines.into_iter().map(|line| Line::from(line.to_owned())));
        } else {
            lines.push(Line::from(
                format!(
                    "(the QR code needs {} × {} cells; enlarge the terminal to see it)",
                    qr_width,
                    image.lines().count()
                )
                .dim(),
            ));
        }
    }
    panel(frame, area, "Invite", lines, area.width);
}

fn search(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &State,
    query: &str,
    results: &[kirc_proto::v1::ChatMessage],
    selected: usize,
) {
    let mut lines = vec![Line::from(format!(
        "{} result(s) for “{}” — ↑↓ choose, Enter opens",
        results.len(),
        sanitize(query)
    ))];
    if results.is_empty() {
        lines.push(Line::from("nothing found".dim()));
    }
    let width = usize::from(area.width.saturating_sub(8)).max(20);
    let height = usize::from(area.height.saturating_sub(6)).max(1);
    // Keep the selected result in view.
    let first = selected.saturating_sub(height.saturating_sub(1));
    for (index, message) in results.iter().enumerate().skip(first).take(height) {
        let when = format_time(state, message.created_at_unix_ms, "%Y-%m-%d %H:%M");
        let name = sanitize(&state.name_of(&message.sender));
        let text = truncate(
            &sanitize(&message.body.replace('\n', " ")),
            width.saturating_sub(when.len() + name.len() + 4),
        );
        let mut style = Style::new();
        if index == selected {
            style = style.reversed();
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{when} "), style.dim()),
            Span::styled(
                format!("{name}: "),
                style.fg(state.theme.name_colour(&message.sender)),
            ),
            Span::styled(text, style),
        ]));
    }
    panel(frame, area, "Search", lines, area.width.saturating_sub(4));
}

fn contacts(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let mut lines = Vec::new();
    let mut requests = Vec::new();
    for contact in &state.view.contacts {
        let what = match contact.state() {
            ContactState::Request => "message request — /accept or /block",
            ContactState::Blocked => "blocked",
            _ if !contact.peer_accepted => "waiting for them to accept",
            _ => "contact",
        };
        let line = Line::from(vec![
            Span::styled(
                format!("  {:<16}", truncate(&sanitize(&contact.display_name), 16)),
                Style::new()
                    .fg(state.theme.name_colour(&contact.actor_id))
                    .bold(),
            ),
            Span::raw(format!(" {what}")),
        ]);
        if contact.state() == ContactState::Request {
            requests.push(line);
        } else {
            lines.push(line);
        }
    }
    let mut all = Vec::new();
    if !requests.is_empty() {
        all.push(Line::from("Message requests".bold()));
        all.extend(requests);
        all.push(Line::default());
    }
    all.push(Line::from("Contacts".bold()));
    if lines.is_empty() {
        all.push(Line::from(
            "  none yet: /invite, or /add a friend's token".dim(),
        ));
    }
    all.extend(lines);
    all.push(Line::default());
    all.push(Line::from(
        "/whois <contact> shows a contact's fingerprint and delivery path".dim(),
    ));
    panel(frame, area, "Contacts", all, 72);
}

/// Where the direct path (WebRTC) to a contact stands, from the status.
fn direct_path(state: &State, actor_id: &str) -> String {
    state
        .view
        .status
        .as_ref()
        .and_then(|status| {
            status
                .direct_paths
                .iter()
                .find(|path| path.actor_id == actor_id)
        })
        .map_or_else(
            || String::from("off"),
            |path| sanitize(&kirc_proto::direct_path_summary(path)),
        )
}

fn whois(frame: &mut Frame<'_>, area: Rect, state: &State, actor_id: &str) {
    let Some(contact) = state.view.contact(actor_id) else {
        panel(
            frame,
            area,
            "Whois",
            vec![Line::from("no such contact")],
            40,
        );
        return;
    };
    let state_text = match contact.state() {
        ContactState::Request => "message request",
        ContactState::Blocked => "blocked",
        _ if contact.peer_accepted => "contact (both sides accepted)",
        _ => "contact (waiting for them to accept)",
    };
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<14}"), Style::new().bold()),
            Span::raw(value),
        ])
    };
    let lines = vec![
        field("name", sanitize(&contact.display_name)),
        field("state", state_text.to_owned()),
        field("actor id", contact.actor_id.clone()),
        field("fingerprint", contact.fingerprint.clone()),
        field("delivery path", sanitize(&contact.delivery_path)),
        field("direct path", direct_path(state, actor_id)),
        field(
            "added",
            format_time(state, contact.added_at_unix_ms, "%Y-%m-%d %H:%M"),
        ),
        Line::default(),
        Line::from("Compare the fingerprint with your contact over another channel.".dim()),
    ];
    panel(frame, area, "Whois", lines, 90);
}

fn transfers(frame: &mut Frame<'_>, area: Rect, state: &State, selected: usize) {
    let mut lines = vec![Line::from(
        "↑↓ choose · c cancels · a accepts, r refuses an offer to you".dim(),
    )];
    if state.view.transfers.is_empty() {
        lines.push(Line::from(
            "  no transfers yet: /send <path> in a conversation".dim(),
        ));
    }
    let height = usize::from(area.height.saturating_sub(6)).max(1);
    // Keep the selected transfer in view.
    let first = selected.saturating_sub(height.saturating_sub(1));
    for (index, transfer) in state
        .view
        .transfers
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
    {
        let mut line = super::transfers::line(state, transfer, true);
        if index == selected {
            line = line.reversed();
        }
        lines.push(line);
    }
    panel(
        frame,
        area,
        "Transfers",
        lines,
        area.width.saturating_sub(4),
    );
}
