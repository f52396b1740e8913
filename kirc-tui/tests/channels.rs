//! A channel in three kirc-tui in real ptys (tmux), one per member: alice
//! creates it, bob and carol join with its token, what each types shows in
//! the others' scrollbacks, and alice removing carol shows as a line to bob
//! and as "no longer in this channel" to carol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, bin, invite_to};

const WAIT: Duration = Duration::from_secs(30);

fn tui(actor: &Actor) -> Tmux {
    Tmux::start(
        &format!(
            "env TZ=UTC KIRC_TUI_CONFIG=/nonexistent {} --socket {}",
            bin("kirc-tui").display(),
            actor.socket.display()
        ),
        110,
        30,
    )
}

/// Whether the conversation list (left of the bar) shows `name`.
fn listed(screen: &str, name: &str) -> bool {
    screen
        .lines()
        .filter_map(|line| line.split_once('│'))
        .any(|(list, _)| list.contains(name))
}

fn type_line(pane: &Tmux, text: &str) {
    pane.send_keys(&["-l", text]);
    pane.send_keys(&["Enter"]);
}

#[tokio::test]
async fn three_tuis_in_one_channel_see_what_each_says_and_the_kick() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let carol = Actor::new("carol").await;
    let alice_daemon = Daemon::start(&alice).await;
    let _bob_daemon = Daemon::start(&bob).await;
    let _carol_daemon = Daemon::start(&carol).await;
    let (alice_tui, bob_tui, carol_tui) = (tui(&alice), tui(&bob), tui(&carol));
    for pane in [&alice_tui, &bob_tui, &carol_tui] {
        pane.wait_for("connected", WAIT, |screen| screen.contains(" connected "))
            .await;
    }

    type_line(&alice_tui, "/create #tui where the tests talk");
    alice_tui
        .wait_for("#tui in alice's list", WAIT, |screen| {
            listed(screen, "#tui")
        })
        .await;
    let token = invite_to(&alice_daemon, "#tui").await;
    for pane in [&bob_tui, &carol_tui] {
        type_line(pane, &format!("/join {token}"));
    }
    for pane in [&bob_tui, &carol_tui] {
        pane.wait_for("#tui in the list", WAIT, |screen| listed(screen, "#tui"))
            .await;
        type_line(pane, "/join #tui");
        pane.wait_for("inside #tui", WAIT, |screen| {
            screen.contains("where the tests talk") && screen.contains("/3 here")
        })
        .await;
    }

    type_line(&alice_tui, "/join #tui");
    type_line(&alice_tui, "hello channel");
    type_line(&bob_tui, "hi from bob");
    for pane in [&alice_tui, &bob_tui, &carol_tui] {
        pane.wait_for("both messages", WAIT, |screen| {
            screen.contains("alice hello channel") && screen.contains("bob hi from bob")
        })
        .await;
    }

    type_line(&alice_tui, "/kick carol spam");
    bob_tui
        .wait_for("the kick as a line", WAIT, |screen| {
            screen.contains("alice removed carol (spam)") && screen.contains("/2 here")
        })
        .await;
    carol_tui
        .wait_for("carol out", WAIT, |screen| {
            screen.contains("you are no longer in this channel")
        })
        .await;
    type_line(&carol_tui, "still here?");
    carol_tui
        .wait_for("carol refused", WAIT, |screen| {
            screen.contains("you are not in #tui")
        })
        .await;
}
