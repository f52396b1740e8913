//! File transfers that survive a `kill -9` of either daemon halfway:
//! the transfer completes with the right hash, and less than a stated
//! bound is sent twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/files.rs"]
mod files;
#[path = "support/direct.rs"]
mod support;

use files::*;
use kirc_proto::v1::TransferState;
use kirc_testkit::{Daemon, Watcher};
use support::*;

/// What a resume may send twice: the sender's window beyond the recipient's
/// recorded progress (`transfers::send::WINDOW_BYTES`). Without the window
/// this was the buffers between the two (the sender's channel buffer, the
/// association's window, the crate's queue of up to 256 frames, the
/// recipient's own queue), and it once came to 4.98 MB.
const RESENT_BOUND: u64 = 4 * 1024 * 1024;

/// Kills `daemon` (SIGKILL) once `watch` shows the transfer a fifth done.
async fn kill_halfway(daemon: &mut Daemon, watch: &mut Watcher, transfer: &str) {
    watch
        .wait_for("the transfer a fifth done", TRANSFER_WAIT, |view| {
            view.transfer(transfer)
                .is_some_and(|known| known.done_bytes >= known.total_bytes / 5)
        })
        .await;
    daemon.signal(rustix::process::Signal::KILL);
    daemon.wait().await;
}

/// The restarted daemon shows the transfer unfinished: the kill did land
/// halfway.
async fn assert_unfinished_at_restart(watch: &mut Watcher, transfer: &str) {
    let view = watch
        .wait_for(
            "the transfer shown after the restart",
            TRANSFER_WAIT,
            |view| view.transfer(transfer).is_some(),
        )
        .await;
    let shown = view.transfer(transfer).unwrap();
    assert_eq!(shown.state, TransferState::Moving as i32, "{shown:?}");
    assert!(shown.done_bytes < shown.total_bytes, "{shown:?}");
}

#[tokio::test]
async fn a_transfer_resumes_after_the_recipient_is_killed_halfway() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        alice_daemon,
        mut bob_daemon,
        _clients: (_alice_client, bob_client),
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;
    let (path, data) = file_of(&alice, "archive.tar", 50_000_000);
    let id = offered(&alice_daemon, &bob, &mut bob_watch, &path).await;
    answer(&bob_daemon, &id, true).await;
    kill_halfway(&mut bob_daemon, &mut bob_watch, &id).await;
    drop((bob_client, bob_watch));
    let (_bob_daemon, _bob_client, mut bob_watch) = restart(&bob).await;
    assert_unfinished_at_restart(&mut bob_watch, &id).await;

    wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob has the file after his restart",
    )
    .await;
    let at_alice = wait_state(
        &mut alice_watch,
        &id,
        TransferState::Complete,
        "alice hears it arrived",
    )
    .await;
    assert_saved(&downloads.join("archive.tar"), &data);
    assert_eq!(
        files_under(&downloads),
        ["archive.tar"],
        "no partial copy is left"
    );
    let resent = at_alice.moved_bytes - 50_000_000;
    println!("recipient killed: {resent} bytes sent twice");
    assert!(
        resent <= RESENT_BOUND,
        "alice sent {resent} bytes twice (bound {RESENT_BOUND})"
    );
}

#[tokio::test]
async fn a_transfer_resumes_after_the_sender_is_killed_halfway() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        mut alice_daemon,
        bob_daemon,
        _clients: (alice_client, _bob_client),
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;
    let (path, data) = file_of(&alice, "backup.img", 50_000_000);
    let id = offered(&alice_daemon, &bob, &mut bob_watch, &path).await;
    answer(&bob_daemon, &id, true).await;
    kill_halfway(&mut alice_daemon, &mut alice_watch, &id).await;
    drop((alice_client, alice_watch));
    let (_alice_daemon, _alice_client, mut alice_watch) = restart(&alice).await;
    assert_unfinished_at_restart(&mut alice_watch, &id).await;

    let at_bob = wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob has the file",
    )
    .await;
    wait_state(
        &mut alice_watch,
        &id,
        TransferState::Complete,
        "alice, restarted, hears it arrived",
    )
    .await;
    assert_saved(&downloads.join("backup.img"), &data);
    let resent = at_bob.moved_bytes - 50_000_000;
    println!("sender killed: {resent} bytes sent twice");
    assert!(
        resent <= RESENT_BOUND,
        "bob received {resent} bytes twice (bound {RESENT_BOUND})"
    );
}
