//! File transfers as lines: those in motion under the open conversation,
//! and every one in the `/transfers` overlay. One line per transfer, the
//! same in both places: direction, name, size, and where it stands (the
//! offer and how to answer it, a progress bar with rate and time left, or
//! how it ended).

use kirc_proto::human_bytes;
use kirc_proto::v1::{self as pb, TransferState};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::layout::{sanitize, truncate};
use crate::state::State;
use crate::theme::Theme;

/// Cells of the progress bar.
const BAR_CELLS: usize = 20;

/// The open conversation's transfers in motion, one per row of `area`.
pub fn render_strip(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let Some(open) = state.open.as_deref() else {
        return;
    };
    let lines: Vec<Line<'static>> = state
        .unfinished_transfers(open)
        .into_iter()
        .take(usize::from(area.height))
        .map(|transfer| line(state, transfer, false))
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

/// One transfer as a line; `with_contact` names the contact (the overlay
/// lists every conversation's).
pub fn line(state: &State, transfer: &pb::Transfer, with_contact: bool) -> Line<'static> {
    let (arrow, towards) = if transfer.outgoing {
        ("↑", "to")
    } else {
        ("↓", "from")
    };
    let contact = sanitize(&state.name_of(&transfer.contact_id));
    let mut spans = vec![Span::styled(
        format!(" {arrow} "),
        Style::new().fg(state.theme.accent).bold(),
    )];
    if with_contact {
        spans.push(Span::raw(format!("{towards} ")));
        spans.push(Span::styled(
            format!("{} ", truncate(&contact, 16)),
            Style::new().fg(state.theme.name_colour(&transfer.contact_id)),
        ));
    }
    spans.push(Span::styled(
        truncate(&sanitize(&name(transfer)), 32),
        Style::new().bold(),
    ));
    spans.push(Span::raw(format!(" ({}) ", size(transfer))));
    spans.extend(standing(&state.theme, transfer, &contact));
    Line::from(spans)
}

/// What the transfer is called: its file's name, or its folder's with a
/// slash.
pub fn name(transfer: &pb::Transfer) -> String {
    match transfer.files.as_slice() {
        [file] if !file.path.contains('/') => file.path.clone(),
        files => {
            let top = files
                .first()
                .and_then(|file| file.path.split('/').next())
                .unwrap_or_default();
            format!("{top}/")
        }
    }
}

fn size(transfer: &pb::Transfer) -> String {
    let bytes = human_bytes(transfer.total_bytes);
    match transfer.files.len() {
        1 => bytes,
        count => format!("{count} files, {bytes}"),
    }
}

/// Where the transfer stands, after its name.
fn standing(theme: &Theme, transfer: &pb::Transfer, contact: &str) -> Vec<Span<'static>> {
    let reason = || sanitize(&transfer.reason);
    match transfer.state() {
        TransferState::Offered if transfer.outgoing => vec![Span::styled(
            format!("offered; waiting for {contact} to answer"),
            Style::new().dim(),
        )],
        TransferState::Offered => vec![Span::styled(
            format!("{contact} offers it: /accept-file or /refuse-file"),
            Style::new().fg(theme.attention),
        )],
        TransferState::Moving => {
            let mut spans = vec![
                Span::styled(bar(transfer), Style::new().fg(theme.good)),
                Span::raw(format!(" {:>3} % ", percent(transfer))),
            ];
            if transfer.waiting {
                spans.push(Span::styled(
                    format!("waiting for a direct path to {contact}"),
                    Style::new().fg(theme.attention),
                ));
            } else {
                spans.push(Span::raw(human_bytes(transfer.done_bytes)));
                if transfer.bytes_per_second > 0 {
                    spans.push(Span::styled(
                        format!(
                            " · {}/s · {} left",
                            human_bytes(transfer.bytes_per_second),
                            time_left(transfer)
                        ),
                        Style::new().dim(),
                    ));
                }
            }
            spans
        }
        TransferState::Complete => vec![Span::styled("complete", Style::new().fg(theme.good))],
        // The daemon's reason says who: "refused by bob", "cancelled by
        // you".
        TransferState::Refused | TransferState::Cancelled => {
            let word = if transfer.state() == TransferState::Refused {
                "refused"
            } else {
                "cancelled"
            };
            let said = reason();
            vec![Span::styled(
                if said.is_empty() {
                    word.to_owned()
                } else {
                    said
                },
                Style::new().fg(theme.bad),
            )]
        }
        TransferState::Failed => vec![Span::styled(
            format!("failed: {}", reason()),
            Style::new().fg(theme.bad).bold(),
        )],
        TransferState::Unspecified => vec![Span::raw("?")],
    }
}

fn percent(transfer: &pb::Transfer) -> u64 {
    if transfer.total_bytes == 0 {
        return 100;
    }
    (u128::from(transfer.done_bytes.min(transfer.total_bytes)) * 100
        / u128::from(transfer.total_bytes)) as u64
}

/// `[█████░░░░░…]`, in whole cells.
fn bar(transfer: &pb::Transfer) -> String {
    let filled = usize::try_from(percent(transfer)).unwrap_or(100) * BAR_CELLS / 100;
    format!("[{}{}]", "█".repeat(filled), "░".repeat(BAR_CELLS - filled))
}

/// The rest at the current rate: "42 s", "3 min 20 s", "2 h 05 min".
fn time_left(transfer: &pb::Transfer) -> String {
    let rest = transfer.total_bytes.saturating_sub(transfer.done_bytes);
    let seconds = rest.div_ceil(transfer.bytes_per_second.max(1));
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moving(done: u64, total: u64, rate: u64) -> pb::Transfer {
        pb::Transfer {
            state: TransferState::Moving as i32,
            done_bytes: done,
            total_bytes: total,
            bytes_per_second: rate,
            ..pb::Transfer::default()
        }
    }

    #[test]
    fn the_bar_and_time_left_follow_the_bytes_and_the_rate() {
        let cases = [
            (0, 100, 10, "[░░░░░░░░░░░░░░░░░░░░]", 0, "10 s"),
            (50, 100, 10, "[██████████░░░░░░░░░░]", 50, "5 s"),
            (99, 100, 1, "[███████████████████░]", 99, "1 s"),
            (100, 100, 1, "[████████████████████]", 100, "0 s"),
            (0, 6_000, 10, "[░░░░░░░░░░░░░░░░░░░░]", 0, "10 min 00 s"),
            (
                0,
                7_260_000,
                1_000,
                "[░░░░░░░░░░░░░░░░░░░░]",
                0,
                "2 h 01 min",
            ),
            // A done count past the total (a resume's resent bytes) stays
            // at the end.
            (150, 100, 1, "[████████████████████]", 100, "0 s"),
        ];
        for (done, total, rate, shown, per_cent, left) in cases {
            let transfer = moving(done, total, rate);
            assert_eq!(bar(&transfer), shown, "{done}/{total}");
            assert_eq!(percent(&transfer), per_cent, "{done}/{total}");
            assert_eq!(time_left(&transfer), left, "{done}/{total} at {rate}");
        }
        assert_eq!(percent(&moving(0, 0, 0)), 100, "an empty file is done");
    }

    #[test]
    fn a_transfer_is_named_by_its_file_or_its_folder() {
        let file = |path: &str| pb::TransferFile {
            path: path.into(),
            ..pb::TransferFile::default()
        };
        let one = pb::Transfer {
            files: vec![file("report.pdf")],
            ..pb::Transfer::default()
        };
        let folder = pb::Transfer {
            files: vec![file("photos/a.jpg"), file("photos/b.jpg")],
            ..pb::Transfer::default()
        };
        let nested = pb::Transfer {
            files: vec![file("photos/2026/a.jpg")],
            ..pb::Transfer::default()
        };
        assert_eq!(name(&one), "report.pdf");
        assert_eq!(name(&folder), "photos/");
        assert_eq!(name(&nested), "photos/");
    }
}
