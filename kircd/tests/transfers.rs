//! File transfers between two real kircd on the local stack, over the
//! direct path on loopback: what arrives is what was sent (BLAKE3), saved
//! owner-only under the recipient's download folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/direct.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kirc_proto::v1::{self as pb, TransferState};
use kirc_testkit::{Actor, Daemon, Watcher};
use support::*;

/// A 50 MB file crosses loopback in seconds; this bounds a stuck one.
const TRANSFER_WAIT: Duration = Duration::from_secs(180);

/// An actor with the direct path on and its downloads in its own folder.
async fn actor(name: &str) -> (Actor, PathBuf) {
    let mut actor = direct(name).await;
    let downloads = actor.dir.path().join("downloads");
    actor.set("files.download_dir", downloads.to_str().unwrap());
    (actor, downloads)
}

/// `size` bytes that differ everywhere (a BLAKE3 output stream), so that a
/// piece in the wrong place fails its hash.
fn content(seed: &str, size: usize) -> Vec<u8> {
    let mut bytes = vec![0; size];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

async fn send_file(daemon: &Daemon, to: &Actor, path: &Path) -> pb::Transfer {
    daemon
        .client()
        .await
        .send_file(pb::SendFileRequest {
            to: to.name.clone(),
            path: path.to_str().unwrap().to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn answer(daemon: &Daemon, transfer: &str, accept: bool) -> pb::Transfer {
    daemon
        .client()
        .await
        .answer_transfer(pb::AnswerTransferRequest {
            transfer_id: transfer.to_owned(),
            accept,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_state(
    watch: &mut Watcher,
    transfer: &str,
    state: TransferState,
    what: &str,
) -> pb::Transfer {
    let view = watch
        .wait_for(what, TRANSFER_WAIT, |view| {
            view.transfer(transfer)
                .is_some_and(|known| known.state == state as i32)
        })
        .await;
    view.transfer(transfer).unwrap().clone()
}

fn assert_saved(path: &Path, expected: &[u8]) {
    let saved = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(saved.len(), expected.len(), "{}", path.display());
    assert!(
        blake3::hash(&saved) == blake3::hash(expected),
        "{} differs from what was sent",
        path.display()
    );
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is owner-only", path.display());
}

/// Every file under `folder`, relative, sorted.
fn files_under(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(folder)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_large_file_and_a_folder_of_small_ones_arrive_verified() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;

    // 50 MB: above the default automatic acceptance, so bob is asked.
    let large = content("large", 50_000_000);
    let large_path = alice.dir.path().join("video.bin");
    std::fs::write(&large_path, &large).unwrap();
    let offered = send_file(&alice_daemon, &bob, &large_path).await;
    assert_eq!(offered.state, TransferState::Offered as i32);
    assert_eq!(offered.total_bytes, 50_000_000);
    let id = offered.transfer_id.clone();
    let at_bob = wait_state(
        &mut bob_watch,
        &id,
        TransferState::Offered,
        "bob sees the offer",
    )
    .await;
    assert!(!at_bob.outgoing);
    assert_eq!(at_bob.files[0].path, "video.bin");
    assert_eq!(at_bob.files[0].hash, offered.files[0].hash);

    answer(&bob_daemon, &id, true).await;
    let done = wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob has the file",
    )
    .await;
    assert_eq!(done.done_bytes, 50_000_000);
    wait_state(
        &mut alice_watch,
        &id,
        TransferState::Complete,
        "alice hears it arrived",
    )
    .await;
    assert_saved(&downloads.join("video.bin"), &large);
    let mode = std::fs::metadata(&downloads).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the download folder kircd made is owner-only");

    // A folder of 100 small files in two levels, under the automatic
    // acceptance: no question asked.
    let folder = alice.dir.path().join("notes");
    let mut expected = Vec::new();
    for n in 0..100 {
        let relative = format!("{}/file {n}.txt", if n % 2 == 0 { "even" } else { "odd" });
        let bytes = content(&relative, 1000 + n * 37);
        std::fs::create_dir_all(folder.join(&relative).parent().unwrap()).unwrap();
        std::fs::write(folder.join(&relative), &bytes).unwrap();
        expected.push((relative, bytes));
    }
    let offered = send_file(&alice_daemon, &bob, &folder).await;
    assert_eq!(offered.files.len(), 100);
    let id = offered.transfer_id.clone();
    wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob has the folder",
    )
    .await;
    let saved = downloads.join("notes");
    let mut names: Vec<String> = expected.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    assert_eq!(files_under(&saved), names, "every file, and nothing else");
    for (relative, bytes) in &expected {
        assert_saved(&saved.join(relative), bytes);
    }

    // The same folder again lands beside the first, numbered.
    let again = send_file(&alice_daemon, &bob, &folder).await;
    let at_bob = wait_state(
        &mut bob_watch,
        &again.transfer_id,
        TransferState::Complete,
        "bob has the folder twice",
    )
    .await;
    assert_eq!(at_bob.local_path, "notes (1)");
    assert!(at_bob.files.iter().all(|file| file.renamed));
    assert_eq!(files_under(&downloads.join("notes (1)")).len(), 100);
}

/// What a resume may send twice: the sender's channel buffer (1 MiB), the
/// recipient's queue of frames (64 of 16 KiB), the SCTP window in flight
/// and the piece being written (256 KiB), with room to spare.
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

/// `actor`'s daemon again, online (a client attached) and watched.
async fn restart(actor: &Actor) -> (Daemon, Watcher, Watcher) {
    let daemon = Daemon::start(actor).await;
    let client = Watcher::interactive(&daemon.socket).await;
    let watch = daemon.watch().await;
    (daemon, client, watch)
}

/// The restarted daemon shows the transfer unfinished: the kill did land
/// halfway.
async fn assert_unfinished_at_restart(watch: &mut Watcher, transfer: &str) {
    let view = watch
        .wait_for("the transfer shown after the restart", TRANSFER_WAIT, |view| {
            view.transfer(transfer).is_some()
        })
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
    let data = content("resume at the recipient", 50_000_000);
    let path = alice.dir.path().join("archive.tar");
    std::fs::write(&path, &data).unwrap();
    let id = send_file(&alice_daemon, &bob, &path).await.transfer_id;
    wait_state(&mut bob_watch, &id, TransferState::Offered, "bob sees the offer").await;
    answer(&bob_daemon, &id, true).await;
    kill_halfway(&mut bob_daemon, &mut bob_watch, &id).await;
    drop((bob_client, bob_watch));
    let (_bob_daemon, _bob_client, mut bob_watch) = restart(&bob).await;
    assert_unfinished_at_restart(&mut bob_watch, &id).await;

    wait_state(&mut bob_watch, &id, TransferState::Complete, "bob has the file after his restart").await;
    let at_alice =
        wait_state(&mut alice_watch, &id, TransferState::Complete, "alice hears it arrived").await;
    assert_saved(&downloads.join("archive.tar"), &data);
    assert_eq!(
        files_under(&downloads),
        ["archive.tar"],
        "no partial copy is left"
    );
    let resent = at_alice.moved_bytes - 50_000_000;
    println!("recipient killed: {resent} bytes sent twice");
    assert!(
        resent < RESENT_BOUND,
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
    let data = content("resume at the sender", 50_000_000);
    let path = alice.dir.path().join("backup.img");
    std::fs::write(&path, &data).unwrap();
    let id = send_file(&alice_daemon, &bob, &path).await.transfer_id;
    wait_state(&mut bob_watch, &id, TransferState::Offered, "bob sees the offer").await;
    answer(&bob_daemon, &id, true).await;
    kill_halfway(&mut alice_daemon, &mut alice_watch, &id).await;
    drop((alice_client, alice_watch));
    let (_alice_daemon, _alice_client, mut alice_watch) = restart(&alice).await;
    assert_unfinished_at_restart(&mut alice_watch, &id).await;

    let at_bob = wait_state(&mut bob_watch, &id, TransferState::Complete, "bob has the file").await;
    wait_state(&mut alice_watch, &id, TransferState::Complete, "alice, restarted, hears it arrived").await;
    assert_saved(&downloads.join("backup.img"), &data);
    let resent = at_bob.moved_bytes - 50_000_000;
    println!("sender killed: {resent} bytes sent twice");
    assert!(
        resent < RESENT_BOUND,
        "bob received {resent} bytes twice (bound {RESENT_BOUND})"
    );
}
