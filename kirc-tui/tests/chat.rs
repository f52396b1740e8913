//! Two kircd on the local stack and three kirc-tui in real ptys (tmux):
//! alice types a message, bob's two TUIs show it as unread, bob opens the
//! conversation in one of them, and only then his read marker moves — in
//! both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, befriend};

const WAIT: Duration = Duration::from_secs(30);

fn tui(actor: &Actor, extra: &str) -> Tmux {
    Tmux::kirc_tui(actor, extra, 110, 30)
}

/// The conversation list's line for `name`, e.g. "1   alice      1".
fn list_line(screen: &str, name: &str) -> Option<String> {
    screen
        .lines()
        .find(|line| {
            line.split('│')
                .next()
                .is_some_and(|list| list.contains(name))
        })
        .map(|line| {
            line.split('│')
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_owned()
        })
}

#[tokio::test]
async fn a_message_typed_in_one_tui_is_read_only_when_opened_and_all_tuis_agree() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;

    let alice_tui = tui(&alice, "--open bob");
    let bob_first = tui(&bob, "");
    let bob_second = tui(&bob, "");
    alice_tui
        .wait_for("alice's conversation with bob", WAIT, |screen| {
            screen.contains(" bob ") && screen.contains("no messages yet")
        })
        .await;
    for pane in [&bob_first, &bob_second] {
        pane.wait_for("bob's list", WAIT, |screen| {
            list_line(screen, "alice").is_some()
        })
        .await;
    }

    // alice types and presses Enter.
    alice_tui.send_keys(&["-l", "hello from alice"]);
    alice_tui.send_keys(&["Enter"]);
    alice_tui
        .wait_for("alice's own message", WAIT, |screen| {
            screen.contains("alice hello from alice")
        })
        .await;

    // Both of bob's TUIs show one unread message in alice's conversation…
    for pane in [&bob_first, &bob_second] {
        pane.wait_for("one unread from alice", WAIT, |screen| {
            list_line(screen, "alice").is_some_and(|line| line.ends_with(" 1"))
        })
        .await;
    }
    // …and the daemon agrees: nothing read yet, merely because it arrived.
    let view = bob_watch
        .wait_for("the message at bob", WAIT, |view| {
            view.conversations.iter().any(|c| c.unread == 1)
        })
        .await;
    let conversation = view
        .conversations
        .iter()
        .find(|c| c.unread == 1)
        .unwrap()
        .clone();
    assert_eq!(conversation.last_read_seq, 0);

    // bob opens the conversation in his first TUI: it shows the message and
    // his read marker moves.
    bob_first.send_keys(&["-l", "/msg alice"]);
    bob_first.send_keys(&["Enter"]);
    bob_first
        .wait_for("the message in bob's scrollback", WAIT, |screen| {
            screen.contains("alice hello from alice")
        })
        .await;
    let view = bob_watch
        .wait_for("bob's read marker moved", WAIT, |view| {
            view.conversation(&conversation.id)
                .is_some_and(|c| c.last_read_seq > 0 && c.unread == 0)
        })
        .await;
    assert_eq!(
        view.conversation(&conversation.id).unwrap().last_read_seq,
        conversation.last_message.as_ref().unwrap().seq
    );
    // His second TUI, which never opened it, agrees: no unread count.
    bob_second
        .wait_for("the second TUI cleared the count", WAIT, |screen| {
            list_line(screen, "alice").is_some_and(|line| !line.ends_with(" 1"))
        })
        .await;
    // alice sees her message read.
    alice_tui
        .wait_for("the read mark at alice", WAIT, |screen| {
            screen.contains("hello from alice ✔")
        })
        .await;

    for pane in [&alice_tui, &bob_first, &bob_second] {
        pane.send_keys(&["C-c"]);
        let screen = pane
            .wait_for("the TUI to exit", WAIT, |screen| {
                Tmux::exit_status_on(screen).is_some()
            })
            .await;
        assert_eq!(Tmux::exit_status_on(&screen), Some(0), "{screen}");
    }
}

#[tokio::test]
async fn typing_shows_at_the_peer_and_a_draft_survives_detaching_and_reattaching() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let bob_tui = tui(&bob, "--open alice");
    let alice_tui = tui(&alice, "--open bob");
    for pane in [&alice_tui, &bob_tui] {
        pane.wait_for("an open conversation", WAIT, |screen| {
            screen.contains("no messages yet")
        })
        .await;
    }
    alice_tui.send_keys(&["-l", "half a thought"]);
    alice_tui
        .wait_for("the draft in the input line", WAIT, |screen| {
            screen.contains("> half a thought")
        })
        .await;
    bob_tui
        .wait_for("alice typing at bob", WAIT, |screen| {
            screen.contains("alice is typing…")
        })
        .await;

    // alice detaches; the draft and the open conversation are kept.
    alice_tui.send_keys(&["C-c"]);
    let screen = alice_tui
        .wait_for("the TUI to exit", WAIT, |screen| {
            Tmux::exit_status_on(screen).is_some()
        })
        .await;
    assert_eq!(Tmux::exit_status_on(&screen), Some(0), "{screen}");
    let again = tui(&alice, "");
    let screen = again
        .wait_for("the draft restored", WAIT, |screen| {
            screen.contains("> half a thought")
        })
        .await;
    assert!(
        screen.contains(" bob "),
        "the conversation with bob is open again:\n{screen}"
    );
    again.send_keys(&["C-c"]);
    bob_tui.send_keys(&["C-c"]);
}

#[tokio::test]
async fn a_message_sent_while_kircd_restarts_is_retried_and_arrives_once() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;

    let alice_tui = tui(&alice, "--open bob");
    alice_tui
        .wait_for("alice's conversation with bob", WAIT, |screen| {
            screen.contains("no messages yet")
        })
        .await;
    assert!(alice_daemon.stop().await.success());
    alice_tui
        .wait_for("the TUI has lost kircd", WAIT, |screen| {
            screen.contains("DISCONNECTED")
        })
        .await;
    // alice types while her daemon is away: the TUI says it keeps trying.
    alice_tui.send_keys(&["-l", "sent while away"]);
    alice_tui.send_keys(&["Enter"]);
    alice_tui
        .wait_for("the retry notice", WAIT, |screen| {
            screen.contains("not sent yet")
        })
        .await;
    let alice_daemon = Daemon::start(&alice).await;
    alice_tui
        .wait_for("the message sent after all", WAIT, |screen| {
            screen.contains("alice sent while away")
        })
        .await;
    let view = bob_watch
        .wait_for("the message at bob", WAIT, |view| {
            view.conversations.iter().any(|conversation| {
                conversation
                    .last_message
                    .as_ref()
                    .is_some_and(|last| last.body == "sent while away")
            })
        })
        .await;
    let conversation = &view.conversations[0].id;
    let history = kirc_testkit::history_all(&bob_daemon, conversation).await;
    let bodies: Vec<&str> = history
        .iter()
        .map(|message| message.body.as_str())
        .collect();
    assert_eq!(bodies, ["sent while away"]);
    let at_alice = kirc_testkit::history_all(&alice_daemon, conversation).await;
    assert_eq!(at_alice.len(), 1);
    alice_tui.send_keys(&["C-c"]);
}

#[tokio::test]
async fn ctrl_x_writes_the_message_in_the_editor_and_brings_it_back() {
    let alice = Actor::new("alice").await;
    let _alice_daemon = Daemon::start(&alice).await;
    // An "editor" that writes on the draft as a person would, then quits.
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf ' and more\\nsecond line\\n' >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pane = Tmux::start(
        &format!(
            "env TZ=UTC KIRC_TUI_CONFIG=/nonexistent VISUAL= EDITOR={} {} --socket {}",
            editor.display(),
            kirc_testkit::bin("kirc-tui").display(),
            alice.socket.display()
        ),
        80,
        20,
    );
    pane.wait_for("connected", WAIT, |screen| screen.contains(" connected "))
        .await;
    pane.send_keys(&["-l", "draft"]);
    pane.send_keys(&["C-x"]);
    pane.wait_for("the edited draft in the input line", WAIT, |screen| {
        screen.contains("> draft and more↵second line")
    })
    .await;
    assert!(pane.screen().contains(" connected "), "the screen is back");
}
