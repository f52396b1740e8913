//! Acting on messages in two kirc-tui in real ptys (tmux): alice selects
//! bob's message with the message cursor, replies to it, reacts to it,
//! edits her reply and deletes it; bob's screen shows each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, befriend, listed, send};

fn tui(actor: &Actor) -> Tmux {
    Tmux::kirc_tui(actor, "", 100, 24)
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_reply_a_reaction_an_edit_and_a_deletion_show_on_the_other_screen() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    send(&bob_daemon, &alice.actor_id, "lunch at noon?").await;
    let (alice_tui, bob_tui) = (tui(&alice), tui(&bob));
    // Commands name contacts: each TUI must hold the daemon's state first.
    for (pane, contact) in [(&alice_tui, "bob"), (&bob_tui, "alice")] {
        pane.wait_for("the contact listed", WAIT, |screen| {
            screen.contains(" connected ") && listed(screen, contact)
        })
        .await;
    }
    alice_tui.type_line("/msg bob");
    bob_tui.type_line("/msg alice");
    alice_tui
        .wait_for("bob's question", WAIT, |screen| {
            screen.contains("lunch at noon?")
        })
        .await;

    // The cursor starts at the newest message: bob's question.
    alice_tui.send_keys(&["M-Up", "r"]);
    alice_tui
        .wait_for("the reply prompt", WAIT, |screen| {
            screen.contains("↳ reply to bob >")
        })
        .await;
    alice_tui.type_line("yes, noon");
    bob_tui
        .wait_for("the reply with its quote", WAIT, |screen| {
            screen.contains("↳ bob: lunch at noon?") && screen.contains("alice yes, noon")
        })
        .await;

    // Two up: past alice's reply to bob's question.
    alice_tui.send_keys(&["M-Up", "M-Up", "+"]);
    alice_tui.type_line("👍");
    bob_tui
        .wait_for("alice's reaction", WAIT, |screen| screen.contains("👍 1"))
        .await;

    alice_tui.send_keys(&["M-Up", "e", "C-u"]);
    alice_tui.type_line("yes, noon works");
    bob_tui
        .wait_for("the edit", WAIT, |screen| {
            screen.contains("alice yes, noon works (edited)")
        })
        .await;

    alice_tui.send_keys(&["M-Up", "d"]);
    alice_tui
        .wait_for("the question before deleting", WAIT, |screen| {
            screen.contains("d again deletes")
        })
        .await;
    alice_tui.send_keys(&["d"]);
    bob_tui
        .wait_for("the deletion", WAIT, |screen| {
            screen.contains("alice message deleted") && !screen.contains("noon works")
        })
        .await;
    alice_tui
        .wait_for("the deletion at alice too", WAIT, |screen| {
            screen.contains("alice message deleted")
        })
        .await;
}
