//! File transfers between two real kircd on the local stack, over the
//! direct path on loopback: what arrives is what was sent (BLAKE3), saved
//! owner-only under the recipient's download folder. Resume after a kill is
//! in `transfers_resume.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/files.rs"]
mod files;
#[path = "support/direct.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use files::*;
use kirc_proto::DaemonView;
use kirc_proto::v1::{self as pb, TransferState};
use kirc_testkit::{Daemon, Watcher};
use support::*;

#[tokio::test]
async fn a_large_file_and_a_folder_of_small_ones_arrive_verified() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        _clients,
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;

    // 50 MB: above the default automatic acceptance, so bob is asked.
    let (large_path, large) = file_of(&alice, "video.bin", 50_000_000);
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
    // Each side's history has the transfer's line, found by its hash.
    let hash = blake3::hash(&large).to_hex().to_string();
    for (daemon, outgoing, says) in [
        (
            &bob_daemon,
            false,
            "received video.bin (47.7 MiB), saved as",
        ),
        (&alice_daemon, true, "sent video.bin (47.7 MiB), from"),
    ] {
        let found = daemon
            .client()
            .await
            .search(pb::SearchRequest {
                query: hash.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        assert_eq!(found.len(), 1, "{says}: {found:?}");
        let line = &found[0];
        assert_eq!(line.transfer_id, id);
        assert_eq!(line.outgoing, outgoing);
        assert!(line.body.starts_with(says), "{}", line.body);
        assert!(
            line.body.ends_with(&format!("blake3 {hash}")),
            "{}",
            line.body
        );
    }

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

async fn cancel(daemon: &Daemon, transfer: &str) -> pb::Transfer {
    daemon
        .client()
        .await
        .cancel_transfer(pb::TransferRequest {
            transfer_id: transfer.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_refusal_and_a_cancel_from_either_side_end_the_transfer_on_both() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        _clients,
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;
    let (path, _) = file_of(&alice, "large.bin", 50_000_000);

    let refused = offered(&alice_daemon, &bob, &mut bob_watch, &path).await;
    answer(&bob_daemon, &refused, false).await;
    let at_alice = wait_state(
        &mut alice_watch,
        &refused,
        TransferState::Refused,
        "alice hears no",
    )
    .await;
    assert_eq!(at_alice.reason, "refused by bob");

    // Each side stops one while its bytes move. The other daemon is
    // frozen (SIGSTOP) from the first bytes to the cancel, so that the
    // transfer cannot finish first however fast loopback is.
    for (canceller, frozen, other, who) in [
        (&bob_daemon, &alice_daemon, &mut alice_watch, "bob"),
        (&alice_daemon, &bob_daemon, &mut bob_watch, "alice"),
    ] {
        let id = send_file(&alice_daemon, &bob, &path).await.transfer_id;
        let mut at_bob = bob_daemon.watch().await;
        wait_state(
            &mut at_bob,
            &id,
            TransferState::Offered,
            "bob sees the offer",
        )
        .await;
        answer(&bob_daemon, &id, true).await;
        at_bob
            .wait_for("some bytes moved", TRANSFER_WAIT, |view| {
                view.transfer(&id).is_some_and(|known| known.done_bytes > 0)
            })
            .await;
        frozen.signal(rustix::process::Signal::STOP);
        let stopped = cancel(canceller, &id).await;
        frozen.signal(rustix::process::Signal::CONT);
        assert_eq!(stopped.state, TransferState::Cancelled as i32);
        let there = wait_state(other, &id, TransferState::Cancelled, "the other side stops").await;
        assert_eq!(there.reason, format!("cancelled by {who}"));
        wait_state(
            &mut at_bob,
            &id,
            TransferState::Cancelled,
            "bob's side ended",
        )
        .await;
        assert!(
            !downloads.exists() || files_under(&downloads).is_empty(),
            "nothing half-done is left: {:?}",
            files_under(&downloads)
        );
    }
    let again = alice_daemon
        .client()
        .await
        .cancel_transfer(pb::TransferRequest {
            transfer_id: refused,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::InvalidArgument, "{again}");
}

#[tokio::test]
async fn an_offer_made_while_the_recipient_is_offline_moves_once_it_is_back() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    kirc_testkit::befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    assert!(bob_daemon.stop().await.success());
    let _alice_client = Watcher::interactive(&alice_daemon.socket).await;
    let mut alice_watch = alice_daemon.watch().await;

    let (path, data) = file_of(&alice, "slides.pdf", 3_000_000);
    let id = send_file(&alice_daemon, &bob, &path).await.transfer_id;
    let offered = wait_state(
        &mut alice_watch,
        &id,
        TransferState::Offered,
        "the offer is out",
    )
    .await;
    assert!(
        !offered.waiting,
        "only an accepted transfer waits for the path"
    );

    let (_bob_daemon, _bob_client, mut bob_watch) = restart(&bob).await;
    // 3 MB is under bob's automatic acceptance.
    wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob, back, has the file",
    )
    .await;
    wait_state(
        &mut alice_watch,
        &id,
        TransferState::Complete,
        "alice hears it arrived",
    )
    .await;
    assert_saved(&downloads.join("slides.pdf"), &data);
}

#[tokio::test]
async fn offers_from_strangers_and_malformed_ones_are_refused_and_counted() {
    use kirc_proto::wire::v1 as wire;
    use kirc_testkit::{kafka, rejected};
    use kircd::crypto::envelope;
    use kircd::crypto::identity::Identity;
    use prost::Message as _;

    let (alice, _) = actor("alice").await;
    let (bob, _) = actor("bob").await;
    let OnlinePair {
        alice_daemon: _alice_daemon,
        bob_daemon: _bob_daemon,
        _clients,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;
    let bob_keys = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let alice_keys = Identity::load(&alice.dir.path().join("identity.key")).unwrap();
    let offer = |path: &[&str], hash_len: usize| {
        wire::FileOffer {
            transfer_id: uuid::Uuid::now_v7().as_bytes().to_vec(),
            piece_bytes: 262_144,
            files: vec![wire::OfferedFile {
                path: path.iter().map(|c| (*c).to_owned()).collect(),
                size: 10,
                hash: vec![1; hash_len],
                pieces_hash: vec![2; 32],
            }],
        }
        .encode_to_vec()
    };
    let sealed = |from: &Identity, payload: Vec<u8>| {
        envelope::seal(
            from,
            bob_keys.id(),
            &envelope::PairKey::new(from, &bob_keys.box_key()),
            wire::Kind::FileOffer,
            envelope::new_message_id(),
            &payload,
        )
    };
    let eve = Identity::generate();
    let before = bob_watch.view.status.clone().unwrap_or_default();
    let producer = kafka::producer(&alice.stack.kafka);
    let rpc_in = format!("{}rpc-in", bob.topic_prefix);
    kafka::produce(&producer, &rpc_in, b"eve", &sealed(&eve, offer(&["x"], 32))).await;
    kafka::produce(
        &producer,
        &rpc_in,
        b"a",
        &sealed(&alice_keys, offer(&["y"], 5)),
    )
    .await;
    // From alice, well-formed, with a path that climbs: shown under a safe
    // name inside the download folder.
    let climbing = sealed(&alice_keys, offer(&["..", "..", ".bashrc"], 32));
    kafka::produce(&producer, &rpc_in, b"a", &climbing).await;
    let counted =
        |status: &pb::Status, reason| rejected(status, reason) - rejected(&before, reason);
    let view = bob_watch
        .wait_for("the offers judged", WAIT, |view| {
            view.status.as_ref().is_some_and(|status| {
                counted(status, "stranger") >= 1 && counted(status, "malformed") >= 1
            }) && !view.transfers.is_empty()
        })
        .await;
    assert_eq!(view.transfers.len(), 1, "only alice's good offer is shown");
    let shown = &view.transfers[0];
    assert_eq!(shown.files[0].path, "_/_/_bashrc");
    assert!(shown.files[0].renamed);
    let status = view.status.unwrap();
    assert_eq!(
        (counted(&status, "stranger"), counted(&status, "malformed")),
        (1, 1)
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `bytes` of tmpfs on `at` (created). Needs root, as the rest
    /// of the tests' setup (`dev/test` installs with apt).
    fn mount(at: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed ({status}): this test needs root",
            at.display()
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon still stopping may hold a file open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_transfer_on_both_sides_and_keeps_what_was_complete() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let _disk = Tmpfs::mount(&downloads, 8 * 1024 * 1024);
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        _clients,
        mut alice_watch,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;

    // 3 MB fit (and are accepted by themselves)…
    let (small_path, small) = file_of(&alice, "fits.bin", 3_000_000);
    let id = send_file(&alice_daemon, &bob, &small_path)
        .await
        .transfer_id;
    wait_state(
        &mut bob_watch,
        &id,
        TransferState::Complete,
        "bob has the small file",
    )
    .await;

    // …20 MB more do not.
    let (large_path, _) = file_of(&alice, "too-big.bin", 20_000_000);
    let id = offered(&alice_daemon, &bob, &mut bob_watch, &large_path).await;
    answer(&bob_daemon, &id, true).await;
    let at_bob = wait_state(
        &mut bob_watch,
        &id,
        TransferState::Failed,
        "bob's disk is full",
    )
    .await;
    assert!(
        at_bob.reason.contains("the disk is full"),
        "{}",
        at_bob.reason
    );
    let at_alice = wait_state(
        &mut alice_watch,
        &id,
        TransferState::Failed,
        "alice hears bob's disk is full",
    )
    .await;
    assert!(
        at_alice.reason.contains("the disk is full"),
        "{}",
        at_alice.reason
    );

    // What was complete stays, and the partial copy is gone (its space is
    // the user's again).
    assert_saved(&downloads.join("fits.bin"), &small);
    assert_eq!(files_under(&downloads), ["fits.bin"]);
}

#[tokio::test]
async fn two_transfers_at_once_share_the_path() {
    let (alice, _) = actor("alice").await;
    let (bob, downloads) = actor("bob").await;
    let OnlinePair {
        alice_daemon,
        bob_daemon,
        mut bob_watch,
        ..
    } = online_pair(&alice, &bob).await;
    let (first_path, first) = file_of(&alice, "first.bin", 40_000_000);
    let (second_path, second) = file_of(&alice, "second.bin", 40_000_000);
    let first_id = offered(&alice_daemon, &bob, &mut bob_watch, &first_path).await;
    let second_id = offered(&alice_daemon, &bob, &mut bob_watch, &second_path).await;
    answer(&bob_daemon, &first_id, true).await;
    answer(&bob_daemon, &second_id, true).await;

    let done =
        |view: &DaemonView, id: &str| view.transfer(id).map_or(0, |transfer| transfer.done_bytes);
    let both = bob_watch
        .wait_for("both transfers moving", TRANSFER_WAIT, |view| {
            done(view, &first_id) > 0 && done(view, &second_id) > 0
        })
        .await;
    let start = (done(&both, &first_id), done(&both, &second_id));
    // A chat message is never stuck behind a file: it arrives while both
    // are still moving, in a fraction of either's time.
    let conversation = conversation_with(&bob_daemon, &alice).await;
    let text = "beside the files";
    kirc_testkit::send(&alice_daemon, &bob.name, text).await;
    kirc_testkit::wait_history(
        &bob_daemon,
        &conversation,
        "a chat message beside the files",
        TRANSFER_WAIT,
        |history| {
            kirc_testkit::incoming(history)
                .iter()
                .any(|body| body == text)
        },
    )
    .await;
    let listed = bob_daemon
        .client()
        .await
        .list_transfers(pb::ListTransfersRequest {})
        .await
        .unwrap()
        .into_inner()
        .transfers;
    assert!(
        listed
            .iter()
            .all(|transfer| transfer.state == TransferState::Moving as i32),
        "the message waited for a file: {listed:?}"
    );
    let one = bob_watch
        .wait_for("one transfer complete", TRANSFER_WAIT, |view| {
            [&first_id, &second_id].iter().any(|id| {
                view.transfer(id)
                    .is_some_and(|known| known.state == TransferState::Complete as i32)
            })
        })
        .await;
    let moved = (
        done(&one, &first_id) - start.0,
        done(&one, &second_id) - start.1,
    );
    println!("while both moved: {} and {} bytes", moved.0, moved.1);
    let (ahead, behind) = (moved.0.max(moved.1), moved.0.min(moved.1));
    // Both figures are from one instant: when a transfer ends, kircd
    // publishes the others' progress with it. Equal shares would be 1:1;
    // two thirds allows for the channel's scheduling in whole frames.
    assert!(
        behind * 3 >= ahead * 2,
        "one transfer moved {ahead} bytes while the other moved {behind}"
    );

    for (id, name, data) in [
        (&first_id, "first.bin", &first),
        (&second_id, "second.bin", &second),
    ] {
        wait_state(&mut bob_watch, id, TransferState::Complete, "both complete").await;
        assert_saved(&downloads.join(name), data);
    }
}
