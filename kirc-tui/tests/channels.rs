//! A channel in three kirc-tui in real ptys (tmux), one per member: alice
//! creates it, bob and carol join with its token, what each types shows in
//! the others' scrollbacks, and alice removing carol shows as a line to bob
//! and as "no longer in this channel" to carol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, invite_to, listed};

fn tui(actor: &Actor) -> Tmux {
    Tmux::kirc_tui(actor, "", 110, 30)
}

const WAIT: Duration = Duration::from_secs(30);

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

    alice_tui.type_line("/create #tui where the tests talk");
    alice_tui
        .wait_for("#tui in alice's list", WAIT, |screen| {
            listed(screen, "#tui")
        })
        .await;
    let token = invite_to(&alice_daemon, "#tui").await;
    for pane in [&bob_tui, &carol_tui] {
        pane.type_line(&format!("/join {token}"));
    }
    for pane in [&bob_tui, &carol_tui] {
        pane.wait_for("#tui in the list", WAIT, |screen| listed(screen, "#tui"))
            .await;
        pane.type_line("/join #tui");
        pane.wait_for("inside #tui", WAIT, |screen| {
            screen.contains("where the tests talk") && screen.contains("/3 here")
        })
        .await;
    }

    alice_tui.type_line("/join #tui");
    alice_tui.type_line("hello channel");
    bob_tui.type_line("hi from bob");
    for pane in [&alice_tui, &bob_tui, &carol_tui] {
        pane.wait_for("both messages", WAIT, |screen| {
            screen.contains("alice hello channel") && screen.contains("bob hi from bob")
        })
        .await;
    }

    alice_tui.type_line("/kick carol spam");
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
    carol_tui.type_line("still here?");
    carol_tui
        .wait_for("carol refused", WAIT, |screen| {
            screen.contains("you are not in #tui")
        })
        .await;
}
