//! kirc-tui's figures (issue #4), each with a baseline from the same run:
//!
//! - render time per frame of a conversation with 10,000 messages of
//!   scrollback, at the newest and scrolled halfway back, against an empty
//!   conversation on the same 120×40 frame;
//! - start to the first full frame of a conversation with history (the real
//!   binary in a pty, against a real kircd), against the same binary's
//!   `--version`;
//! - keypress to echoed character in the input line, against `cat` echoing
//!   through the same kind of pty.
//!
//! Run with `dev/bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use kirc_proto::v1::{self as pb, ContactState, event::Kind};
use kirc_testkit::{Actor, Daemon, befriend, bin, send};
use kirc_tui::state::{Link, Scrollback, State};
use kirc_tui::update::{Msg, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Summary {
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |quantile: f64| samples[((samples.len() as f64 - 1.0) * quantile).round() as usize];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

fn row(figure: &str, ours: &Summary, base: &Summary, goal: &str) {
    println!(
        "| {figure} | {} | {} | {} | {} | {:.1}× | {goal} |",
        ms(ours.p50),
        ms(ours.p99),
        ms(base.p50),
        ms(base.p99),
        ours.p50.as_secs_f64() / base.p50.as_secs_f64()
    );
}

/// A state with one conversation holding `count` messages, open.
fn state_with_history(count: usize) -> State {
    let mut state = State::new("/tmp/bench.sock".into(), jiff::tz::TimeZone::UTC);
    let bob = pb::Contact {
        actor_id: "b".repeat(32),
        display_name: "bob".into(),
        state: ContactState::Accepted as i32,
        peer_accepted: true,
        conversation_id: "conv".into(),
        ..pb::Contact::default()
    };
    update(&mut state, Msg::Link(Link::Connected));
    update(&mut state, Msg::Resize(120, 40));
    update(
        &mut state,
        Msg::Event(Box::new(pb::Event {
            seq: 1,
            at_unix_ms: 0,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                status: Some(pb::Status {
                    actor_id: "a".repeat(32),
                    display_name: "alice".into(),
                    ..pb::Status::default()
                }),
                epoch: 1,
                contacts: vec![bob.clone()],
                conversations: vec![pb::Conversation {
                    id: "conv".into(),
                    peer: Some(bob.clone()),
                    last_read_seq: count as u64,
                    ..pb::Conversation::default()
                }],
                presence: Vec::new(),
                transfers: Vec::new(),
            })),
        })),
    );
    let messages = (1..=count as u64)
        .map(|seq| pb::ChatMessage {
            id: format!("m{seq}"),
            conversation_id: "conv".into(),
            sender: if seq % 3 == 0 {
                "a".repeat(32)
            } else {
                "b".repeat(32)
            },
            outgoing: seq % 3 == 0,
            body: format!("message number {seq}: a line of chat of a usual length, some words"),
            created_at_unix_ms: 1_795_000_000_000 + i64::try_from(seq).unwrap() * 30_000,
            state: pb::MessageState::Read as i32,
            seq,
            ..pb::ChatMessage::default()
        })
        .collect();
    state.open = Some("conv".into());
    state
        .scrollbacks
        .insert("conv".into(), Scrollback::whole(messages));
    state
}

fn frame_times(state: &State, frames: usize) -> Vec<Duration> {
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    // Warm up, then time full redraws (the backend's buffer is reset so
    // every frame draws everything).
    for _ in 0..50 {
        terminal
            .draw(|frame| kirc_tui::ui::render(frame, state))
            .unwrap();
    }
    (0..frames)
        .map(|_| {
            terminal.clear().unwrap();
            let start = Instant::now();
            terminal
                .draw(|frame| kirc_tui::ui::render(frame, state))
                .unwrap();
            start.elapsed()
        })
        .collect()
}

/// A program in a 120×40 pty (`script`), with its input and output.
struct Pty {
    child: Child,
    input: ChildStdin,
    output: ChildStdout,
    seen: Vec<u8>,
}

impl Pty {
    fn spawn(command: &str) -> Pty {
        let mut child = Command::new("script")
            .args([
                "-qfec",
                &format!("stty cols 120 rows 40 -echo; exec {command}"),
                "/dev/null",
            ])
            .env("TZ", "UTC")
            .env("TERM", "xterm-256color")
            .env("KIRC_TUI_CONFIG", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Pty {
            input: child.stdin.take().unwrap(),
            output: child.stdout.take().unwrap(),
            child,
            seen: Vec::new(),
        }
    }

    /// Reads output until `needle` has appeared `count` times in all of it.
    async fn until(&mut self, needle: &[u8], count: usize) {
        let mut buf = [0u8; 65536];
        loop {
            if self
                .seen
                .windows(needle.len())
                .filter(|window| *window == needle)
                .count()
                >= count
            {
                return;
            }
            let read = tokio::time::timeout(Duration::from_secs(30), self.output.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {:?} from the program in the pty; its output ends with:\n{}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&self.seen[self.seen.len().saturating_sub(3000)..])
                    )
                })
                .unwrap();
            assert!(read > 0, "the program in the pty exited");
            self.seen.extend_from_slice(&buf[..read]);
        }
    }

    async fn keypress_times(&mut self, key: &str, presses: usize) -> Vec<Duration> {
        let mut samples = Vec::with_capacity(presses);
        let before = self
            .seen
            .windows(key.len())
            .filter(|window| *window == key.as_bytes())
            .count();
        for press in 1..=presses {
            let start = Instant::now();
            self.input.write_all(key.as_bytes()).await.unwrap();
            self.input.flush().await.unwrap();
            self.until(key.as_bytes(), before + press).await;
            samples.push(start.elapsed());
        }
        samples
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Render, in process.
    let history = state_with_history(10_000);
    let bottom = summarize(frame_times(&history, 2000));
    let mut middle_state = history.clone();
    let total = kirc_tui::layout::scrollback_lines(&middle_state, "conv");
    let halfway = kirc_tui::layout::scroll_up(&middle_state, "conv", total / 2);
    if let Some(scrollback) = middle_state.scrollbacks.get_mut("conv") {
        scrollback.position = halfway;
    }
    let middle = summarize(frame_times(&middle_state, 200));
    let empty = summarize(frame_times(&state_with_history(0), 2000));

    // Start to first frame, against real daemons.
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    for index in 0..300 {
        send(
            &alice_daemon,
            &bob.actor_id,
            &format!("history line {index}"),
        )
        .await;
    }
    // No spaces: the terminal output moves the cursor over blank cells.
    let newest = "the-newest-message";
    send(&alice_daemon, &bob.actor_id, newest).await;
    let mut watch = bob_daemon.watch().await;
    watch
        .wait_for(
            "the newest message at bob",
            Duration::from_secs(60),
            |view| {
                view.conversations
                    .iter()
                    .any(|c| c.last_message.as_ref().is_some_and(|m| m.body == newest))
            },
        )
        .await;
    let tui = format!(
        "{} --socket {} --open alice",
        bin("kirc-tui").display(),
        bob.socket.display()
    );
    let mut starts = Vec::new();
    let mut versions = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let mut pty = Pty::spawn(&tui);
        pty.until(newest.as_bytes(), 1).await;
        starts.push(start.elapsed());
        pty.stop().await;

        let start = Instant::now();
        let status = Command::new(bin("kirc-tui"))
            .arg("--version")
            .output()
            .await
            .unwrap()
            .status;
        assert!(status.success());
        versions.push(start.elapsed());
    }

    // Keypress to echo.
    let mut pty = Pty::spawn(&tui);
    pty.until(newest.as_bytes(), 1).await;
    // At most what fits in the input line: past its edge the line scrolls and
    // a new character changes no cell of its own.
    let keys = summarize(pty.keypress_times("§", 80).await);
    pty.stop().await;
    let mut cat = Pty::spawn("sh -c 'stty echo; echo echo-on; exec cat'");
    // Typing before the terminal echoes again would be typing into the void.
    cat.until(b"echo-on", 1).await;
    let echo = summarize(cat.keypress_times("§", 80).await);
    cat.stop().await;
    assert!(bob_daemon.stop().await.success());
    assert!(alice_daemon.stop().await.success());

    println!();
    println!(
        "| figure | kirc-tui p50 | kirc-tui p99 | baseline p50 | baseline p99 | ratio (p50) | goal |"
    );
    println!("|---|---|---|---|---|---|---|");
    row(
        "render a 120×40 frame, 10,000 messages of scrollback, at the newest, vs an empty conversation",
        &bottom,
        &empty,
        "p99 ≤ 2 ms",
    );
    row(
        &format!(
            "same, scrolled back halfway ({} of {total} lines)",
            total / 2
        ),
        &middle,
        &empty,
        "—",
    );
    row(
        "start to the first full frame of a conversation (301 messages) vs `kirc-tui --version`",
        &summarize(starts),
        &summarize(versions),
        "≤ 150 ms",
    );
    row(
        "keypress to echoed character vs `cat` echoing in a pty",
        &keys,
        &echo,
        "—",
    );
}
