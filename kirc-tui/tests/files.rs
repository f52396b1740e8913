//! Two kircd with the direct path on and a kirc-tui each in a real pty
//! (tmux): alice types `/send`, bob's TUI shows the offer under the
//! conversation, bob types `/accept-file`, and both TUIs show the finished
//! transfer's line in the conversation; the file on bob's disk is alice's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Tmux, befriend};

/// Each step is a few hops on loopback (the offer over Kafka, 20 MB over
/// the channel); this bounds a stuck one.
const WAIT: Duration = Duration::from_secs(60);

/// `actor`'s kirc-tui with the conversation with `peer` open.
fn tui(actor: &Actor, peer: &str) -> Tmux {
    Tmux::kirc_tui(actor, &format!("--open {peer}"), 120, 30)
}

async fn actor(name: &str) -> Actor {
    let mut actor = Actor::new(name).await;
    let downloads = actor.dir.path().join("downloads");
    actor
        .direct_path()
        .set("files.download_dir", downloads.to_str().unwrap());
    actor
}

#[tokio::test]
async fn a_file_sent_from_one_tui_is_offered_accepted_and_shown_in_both() {
    let alice = actor("alice").await;
    let bob = actor("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    // 20 MB: above the automatic acceptance, so bob is asked.
    let mut bytes = vec![0; 20_000_000];
    blake3::Hasher::new()
        .update(b"sent from a tui")
        .finalize_xof()
        .fill(&mut bytes);
    let path = alice.dir.path().join("big.bin");
    std::fs::write(&path, &bytes).unwrap();

    let alice_tui = tui(&alice, "bob");
    let bob_tui = tui(&bob, "alice");
    for (pane, peer) in [(&alice_tui, "bob"), (&bob_tui, "alice")] {
        pane.wait_for("the conversation open", WAIT, |screen| {
            screen.contains(&format!(" {peer} ")) && screen.contains("no messages yet")
        })
        .await;
    }

    alice_tui.send_keys(&["-l", &format!("/send {}", path.display())]);
    alice_tui.send_keys(&["Enter"]);
    alice_tui
        .wait_for("alice's offer under the conversation", WAIT, |screen| {
            screen.contains("↑ big.bin (19.1 MiB) offered; waiting for bob to answer")
        })
        .await;
    bob_tui
        .wait_for("the offer under bob's conversation", WAIT, |screen| {
            screen.contains("↓ big.bin (19.1 MiB) alice offers it: /accept-file or /refuse-file")
        })
        .await;

    bob_tui.send_keys(&["-l", "/accept-file"]);
    bob_tui.send_keys(&["Enter"]);
    bob_tui
        .wait_for("the transfer's line at bob", WAIT, |screen| {
            screen.contains("received big.bin (19.1 MiB), saved as")
        })
        .await;
    alice_tui
        .wait_for("the transfer's line at alice", WAIT, |screen| {
            screen.contains("sent big.bin (19.1 MiB), from")
        })
        .await;
    // Finished: nothing is left under either conversation.
    for pane in [&alice_tui, &bob_tui] {
        pane.wait_for("the strip gone", WAIT, |screen| {
            !screen.contains("big.bin (19.1 MiB) ")
        })
        .await;
    }
    let saved = std::fs::read(bob.dir.path().join("downloads/big.bin")).unwrap();
    assert!(
        blake3::hash(&saved) == blake3::hash(&bytes),
        "bob has alice's file"
    );

    // The overlay lists it, complete.
    bob_tui.send_keys(&["-l", "/transfers"]);
    bob_tui.send_keys(&["Enter"]);
    bob_tui
        .wait_for("the transfers overlay", WAIT, |screen| {
            screen.contains("Transfers")
                && screen.contains("↓ from alice big.bin (19.1 MiB) complete")
        })
        .await;
}
