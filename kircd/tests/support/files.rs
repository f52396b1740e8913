//! What the file transfer tests share: actors with the direct path and a
//! download folder, files of known content, offers, answers and waits on a
//! transfer's state, and checks of what was saved.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kirc_proto::v1::{self as pb, TransferState};
use kirc_testkit::{Actor, Daemon, Watcher};

use super::support::direct;

/// A 50 MB file crosses loopback in seconds; this bounds a stuck one.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(180);

/// An actor with the direct path on and its downloads in its own folder.
pub async fn actor(name: &str) -> (Actor, PathBuf) {
    let mut actor = direct(name).await;
    let downloads = actor.dir.path().join("downloads");
    actor.set("files.download_dir", downloads.to_str().unwrap());
    (actor, downloads)
}

/// `size` bytes that differ everywhere (a BLAKE3 output stream), so that a
/// piece in the wrong place fails its hash.
pub fn content(seed: &str, size: usize) -> Vec<u8> {
    let mut bytes = vec![0; size];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// A file of `size` bytes of `content(name)` in `actor`'s folder: its
/// path and its bytes.
pub fn file_of(actor: &Actor, name: &str, size: usize) -> (PathBuf, Vec<u8>) {
    let bytes = content(name, size);
    let path = actor.dir.path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

pub async fn send_file(daemon: &Daemon, to: &Actor, path: &Path) -> pb::Transfer {
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

/// Offers the file at `path` to `to` and waits for `to` to see the offer;
/// its id.
pub async fn offered(from: &Daemon, to: &Actor, watch: &mut Watcher, path: &Path) -> String {
    let id = send_file(from, to, path).await.transfer_id;
    wait_state(watch, &id, TransferState::Offered, "the offer seen").await;
    id
}

pub async fn answer(daemon: &Daemon, transfer: &str, accept: bool) -> pb::Transfer {
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

pub async fn wait_state(
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

pub fn assert_saved(path: &Path, expected: &[u8]) {
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
pub fn files_under(folder: &Path) -> Vec<String> {
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

/// `actor`'s daemon again, online (a client attached) and watched.
pub async fn restart(actor: &Actor) -> (Daemon, Watcher, Watcher) {
    let daemon = Daemon::start(actor).await;
    let client = Watcher::interactive(&daemon.socket).await;
    let watch = daemon.watch().await;
    (daemon, client, watch)
}
