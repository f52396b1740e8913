//! kirc-tui: attaches to a running kircd and shows its state.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use kirc_tui::state::State;
use kirc_tui::update::{Msg, update};
use kirc_tui::{connection, settings, ui};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(
    name = "kirc-tui",
    version,
    about = "The K-IRC terminal client: attaches to your running kircd."
)]
struct Cli {
    /// kircd's socket [default: KIRC_API_SOCKET, else api.socket in kircd's config, else $XDG_RUNTIME_DIR/kirc/kircd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// Puts the terminal in raw mode on the alternate screen, and puts it back
/// when dropped: on return, on error, and on panic (ratatui's hook).
struct TerminalGuard(ratatui::DefaultTerminal);

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        Ok(TerminalGuard(
            ratatui::try_init().context("cannot set up the terminal")?,
        ))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let socket = settings::socket_path(cli.socket)?;
    let time_zone = jiff::tz::TimeZone::system();
    let mut state = State::new(socket.display().to_string(), time_zone);

    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (messages, mut inbox) = mpsc::channel(256);
    let link = tokio::spawn(connection::run(socket, messages));

    let mut terminal = TerminalGuard::enter()?;
    let mut keys = EventStream::new();
    while !state.quit {
        terminal.0.draw(|frame| ui::render(frame, &state))?;
        tokio::select! {
            input = keys.next() => match input {
                Some(Ok(Event::Key(key))) => update(&mut state, Msg::Key(key)),
                // A resize only needs the redraw at the top of the loop.
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err).context("reading the terminal failed"),
                None => break,
            },
            Some(msg) = inbox.recv() => update(&mut state, msg),
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    drop(terminal);
    link.abort();
    Ok(())
}
