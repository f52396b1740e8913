//! kirc-tui: attaches to a running kircd.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use crossterm::cursor::Show;
use crossterm::event::{
    DisableBracketedPaste, DisableFocusChange, DisableMouseCapture, EnableBracketedPaste,
    EnableFocusChange, EnableMouseCapture, Event, EventStream,
};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use kirc_tui::settings::{self, Desktop, NotifyConfig};
use kirc_tui::state::State;
use kirc_tui::update::{Effect, Msg, update};
use kirc_tui::{connection, ui};
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

    /// kirc-tui's settings [default: KIRC_TUI_CONFIG, else $XDG_CONFIG_HOME/kirc/tui.toml].
    #[arg(long, value_name = "FILE")]
    tui_config: Option<PathBuf>,

    /// Open the conversation with this contact (name or actor id) at start.
    #[arg(long, value_name = "CONTACT")]
    open: Option<String>,

    /// The session to keep drafts and the open conversation under; several
    /// terminals can keep separate ones.
    #[arg(long, value_name = "NAME", default_value = "default")]
    session: String,
}

/// Puts the terminal in raw mode on the alternate screen with focus and
/// bracketed-paste reporting, and puts it back when dropped: on return, on
/// error, and on panic (ratatui's hook restores raw mode and the screen).
struct TerminalGuard {
    terminal: ratatui::DefaultTerminal,
    mouse: bool,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> anyhow::Result<Self> {
        let terminal = ratatui::try_init().context("cannot set up the terminal")?;
        crossterm::execute!(std::io::stdout(), EnableFocusChange, EnableBracketedPaste)
            .context("cannot enable focus and paste reporting")?;
        if mouse {
            crossterm::execute!(std::io::stdout(), EnableMouseCapture)
                .context("cannot enable mouse reporting")?;
        }
        Ok(TerminalGuard { terminal, mouse })
    }
}

impl TerminalGuard {
    /// Gives the terminal back as it was (for an editor), runs `run`, and
    /// takes it again.
    fn suspended<T>(&mut self, run: impl FnOnce() -> T) -> anyhow::Result<T> {
        let mut out = std::io::stdout();
        if self.mouse {
            crossterm::execute!(out, DisableMouseCapture)?;
        }
        crossterm::execute!(
            out,
            DisableBracketedPaste,
            DisableFocusChange,
            LeaveAlternateScreen,
            Show
        )?;
        disable_raw_mode()?;
        let result = run();
        enable_raw_mode()?;
        crossterm::execute!(
            out,
            EnterAlternateScreen,
            EnableFocusChange,
            EnableBracketedPaste
        )?;
        if self.mouse {
            crossterm::execute!(out, EnableMouseCapture)?;
        }
        // The screen was the editor's: everything is drawn again. Drawing
        // an empty frame makes the next one differ from it everywhere
        // (Terminal::clear would ask the terminal where its cursor is, and
        // an answer that comes late is typed into the input line).
        crossterm::execute!(out, Clear(ClearType::All))?;
        self.terminal.draw(|_| {})?;
        Ok(result)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.mouse {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        }
        let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste, DisableFocusChange);
        ratatui::restore();
    }
}

/// Rings the bell and/or asks the terminal for a desktop notification.
fn notify(config: NotifyConfig, title: &str, body: &str) {
    let mut out = std::io::stdout();
    // Notification text goes inside an escape sequence: keep only what is
    // printable and cut it short.
    let clean = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_control() && *c != ';')
            .take(200)
            .collect()
    };
    if config.bell {
        let _ = out.write_all(b"\x07");
    }
    match config.desktop {
        Desktop::Off => {}
        Desktop::Osc9 => {
            let _ = write!(out, "\x1b]9;{}: {}\x07", clean(title), clean(body));
        }
        Desktop::Osc777 => {
            let _ = write!(out, "\x1b]777;notify;{};{}\x07", clean(title), clean(body));
        }
    }
    let _ = out.flush();
}

/// How long quitting waits for the session to be saved.
const SAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sleeps until the Unix time `deadline` (ms).
async fn sleep_until_unix_ms(deadline: Option<i64>) {
    let now = kirc_proto::unix_ms(std::time::SystemTime::now());
    let wait = deadline.map_or(0, |deadline| (deadline - now).max(0));
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from(wait).unwrap_or(0),
    ))
    .await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let socket = settings::socket_path(cli.socket)?;
    let tui_config = match cli.tui_config.or_else(settings::tui_config_file) {
        Some(path) => settings::load_tui_config(&path)?,
        None => settings::TuiConfig::default(),
    };
    let time_zone = jiff::tz::TimeZone::system();
    let mut state = State::new(socket.display().to_string(), time_zone);
    state.keymap = tui_config.keymap;
    let opener = tui_config.opener;
    state.notify = tui_config.notify;
    state.theme = tui_config.theme;
    state.pending_open = cli.open;
    state.session = cli.session;

    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (messages, mut inbox) = mpsc::channel(1024);
    let (effects, effects_inbox) = mpsc::channel::<Effect>(256);
    let link = tokio::spawn(connection::run(socket.clone(), messages.clone()));
    let executor = tokio::spawn(connection::execute(socket.clone(), effects_inbox, messages));

    let mut terminal = TerminalGuard::enter(tui_config.mouse)?;
    let size = terminal
        .terminal
        .size()
        .context("cannot read the terminal size")?;
    update(&mut state, Msg::Resize(size.width, size.height));
    let mut keys = EventStream::new();
    while !state.quit {
        terminal.terminal.draw(|frame| ui::render(frame, &state))?;
        let msg = tokio::select! {
            input = keys.next() => match input {
                Some(Ok(Event::Key(key))) => Msg::Key(key),
                Some(Ok(Event::Mouse(mouse))) => Msg::Mouse(mouse),
                Some(Ok(Event::Paste(text))) => Msg::Paste(text),
                Some(Ok(Event::FocusGained)) => Msg::Focus(true),
                Some(Ok(Event::FocusLost)) => Msg::Focus(false),
                Some(Ok(Event::Resize(columns, rows))) => Msg::Resize(columns, rows),
                Some(Err(err)) => return Err(err).context("reading the terminal failed"),
                None => break,
            },
            Some(msg) = inbox.recv() => msg,
            // A typing indicator's deadline: the clock moves the state.
            () = sleep_until_unix_ms(state.next_deadline()), if state.next_deadline().is_some() => {
                Msg::Tick(kirc_proto::unix_ms(std::time::SystemTime::now()))
            }
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        };
        for effect in update(&mut state, msg) {
            match effect {
                Effect::Notify { title, body } => notify(state.notify, &title, &body),
                Effect::OpenLink(url) => {
                    if let Err(err) = kirc_tui::terminal::open_link(&url, opener.as_deref()) {
                        update(&mut state, Msg::Failed(format!("cannot open {url}: {err}")));
                    }
                }
                Effect::Editor(draft) => {
                    // The editor reads the terminal: this stream must not
                    // (a new one reads nothing until it is polled).
                    drop(std::mem::replace(&mut keys, EventStream::new()));
                    let msg =
                        match terminal.suspended(|| kirc_tui::terminal::edit_in_editor(&draft))? {
                            Ok(text) => Msg::Composed(text),
                            Err(err) => Msg::Failed(format!("the editor: {err}")),
                        };
                    update(&mut state, msg);
                }
                Effect::Copy(text) => {
                    if let Err(err) = kirc_tui::terminal::copy(&mut std::io::stdout(), &text) {
                        update(
                            &mut state,
                            Msg::Failed(format!("cannot write to the terminal: {err}")),
                        );
                    }
                }
                other => {
                    if effects.send(other).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(terminal);
    // Detaching keeps the drafts and the open conversation for next time.
    let session = kirc_tui::update::session_of(&state);
    if let Err(err) = tokio::time::timeout(SAVE_WAIT, connection::save_session(&socket, session))
        .await
        .unwrap_or_else(|_| Err(String::from("no answer")))
    {
        eprintln!("kirc-tui: the session was not saved: {err}");
    }
    link.abort();
    executor.abort();
    Ok(())
}
