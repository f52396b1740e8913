//! The recipient's checks, frame by frame, without a network: what a
//! hostile or broken sender can make of a transfer, and what stays on disk.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::{TransferFileRecord, TransferState};
use crate::transfers::manifest::hash_reader;

/// Small pieces, so a file of a few hundred bytes has several.
const PIECE: u32 = 64;

struct Sent {
    bytes: Vec<u8>,
    hashes: Vec<Hash>,
}

fn sent(size: usize) -> Sent {
    let mut bytes = vec![0; size];
    blake3::Hasher::new()
        .update(b"receive tests")
        .finalize_xof()
        .fill(&mut bytes);
    let (_, _, hashes) = hash_reader(&mut bytes.as_slice(), PIECE).unwrap();
    Sent { bytes, hashes }
}

/// A transfer of one file of `size` bytes, offered with `file`'s hashes.
fn record(file: &Sent, size: u64) -> TransferRecord {
    TransferRecord {
        id: Uuid::nil(),
        conversation_id: Uuid::nil(),
        peer: ActorId::from_slice(&[7; 16]).unwrap(),
        outgoing: false,
        state: TransferState::Moving,
        reason: String::new(),
        piece_bytes: PIECE,
        local_path: "file.bin".into(),
        created_unix_ms: 0,
        updated_unix_ms: 0,
        files: vec![TransferFileRecord {
            offered_path: vec!["file.bin".into()],
            local_path: "file.bin".into(),
            size,
            hash: *blake3::hash(&file.bytes).as_bytes(),
            pieces_hash: pieces_hash(&file.hashes),
            piece_hashes: None,
            verified_pieces: 0,
            modified_ns: None,
            renamed: false,
            saved: false,
        }],
    }
}

/// That transfer accepted, its partial copy open under `dir`.
fn accepted(dir: &Path, file: &Sent, size: u64) -> Receiving {
    let mut receiving = Receiving::new(&record(file, size), dir);
    receiving.resume().unwrap();
    receiving
}

fn hashes(first: u64, hashes: &[Hash]) -> wire::FileFrame {
    wire::FileFrame {
        transfer_id: Uuid::nil().as_bytes().to_vec(),
        file: 0,
        body: Some(wire::file_frame::Body::Hashes(wire::PieceHashes {
            first,
            hashes: hashes.iter().flatten().copied().collect(),
        })),
    }
}

fn data(offset: u64, bytes: &[u8]) -> wire::FileFrame {
    wire::FileFrame {
        transfer_id: Uuid::nil().as_bytes().to_vec(),
        file: 0,
        body: Some(wire::file_frame::Body::Data(wire::FileData {
            offset,
            bytes: bytes.to_vec(),
        })),
    }
}

/// Sends every piece from `from` in frames of `frame` bytes; the last step.
fn send_pieces(receiving: &mut Receiving, file: &Sent, from: usize, frame: usize) -> Step {
    let mut last = Step::Nothing;
    for (index, chunk) in file.bytes[from..].chunks(frame).enumerate() {
        last = receiving
            .frame(data((from + index * frame) as u64, chunk))
            .unwrap();
    }
    last
}

#[test]
fn a_file_sent_as_offered_is_saved_whole_and_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = sent(300);
    let mut receiving = accepted(dir.path(), &file, 300);
    let step = receiving.frame(hashes(0, &file.hashes)).unwrap();
    assert!(matches!(step, Step::Hashes { file: 0, .. }));
    // Several frames per piece, as the sender cuts them (a frame never
    // crosses a piece's end: see the hostile cases below).
    assert_eq!(send_pieces(&mut receiving, &file, 0, 16), Step::FileReady);
    assert_eq!(receiving.done_bytes(), 300);
    let saved = finish(receiving.take_ready().unwrap()).unwrap();
    assert_eq!(saved, dir.path().join("file.bin"));
    assert_eq!(std::fs::read(&saved).unwrap(), file.bytes);
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    receiving.file_saved(saved);
    assert!(receiving.is_complete());
    assert!(!dir.path().join("file.bin.kirc-partial").exists());
}

#[test]
fn piece_hashes_that_do_not_match_the_offer_are_hostile() {
    let dir = tempfile::tempdir().unwrap();
    let file = sent(300);
    let mut receiving = accepted(dir.path(), &file, 300);
    let mut forged = file.hashes.clone();
    forged[2][0] ^= 1;
    assert!(matches!(
        receiving.frame(hashes(0, &forged)),
        Err(FrameError::Hostile(_))
    ));
    // More hashes than the offered size has pieces.
    let mut more = file.hashes.clone();
    more.push([0; 32]);
    assert!(matches!(
        receiving.frame(hashes(0, &more)),
        Err(FrameError::Hostile(_))
    ));
    // Bytes before the (right) hashes are not written.
    assert!(matches!(
        receiving.frame(data(0, &file.bytes[..64])),
        Err(FrameError::Ignored(_))
    ));
    assert_eq!(receiving.written, 0);
}

#[test]
fn a_piece_that_fails_its_hash_is_asked_for_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = sent(300);
    let mut receiving = accepted(dir.path(), &file, 300);
    receiving.frame(hashes(0, &file.hashes)).unwrap();
    receiving.frame(data(0, &file.bytes[..64])).unwrap();
    let mut corrupt = file.bytes[64..128].to_vec();
    corrupt[10] ^= 0xff;
    assert!(matches!(
        receiving.frame(data(64, &corrupt)),
        Err(FrameError::PieceFailed)
    ));
    assert_eq!(receiving.hash_failures, 1);
    assert_eq!(receiving.verified_pieces(), vec![1]);
    // The next piece is not taken before the failed one is sent again.
    assert!(matches!(
        receiving.frame(data(128, &file.bytes[128..192])),
        Err(FrameError::Ignored(_))
    ));
    assert_eq!(send_pieces(&mut receiving, &file, 64, 64), Step::FileReady);
    let saved = finish(receiving.take_ready().unwrap()).unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), file.bytes);
}

#[test]
fn bytes_beyond_the_offered_size_or_a_piece_are_hostile() {
    let dir = tempfile::tempdir().unwrap();
    let file = sent(300);
    let mut receiving = accepted(dir.path(), &file, 300);
    receiving.frame(hashes(0, &file.hashes)).unwrap();
    // Crossing a piece's end.
    assert!(matches!(
        receiving.frame(data(0, &file.bytes[..65])),
        Err(FrameError::Hostile(_))
    ));
    // Empty.
    assert!(matches!(
        receiving.frame(data(0, &[])),
        Err(FrameError::Hostile(_))
    ));
    assert_eq!(send_pieces(&mut receiving, &file, 0, 64), Step::FileReady);
    // Past the size the offer gave.
    assert!(matches!(
        receiving.frame(data(300, b"more")),
        Err(FrameError::Hostile(_))
    ));
    let on_disk = std::fs::metadata(dir.path().join("file.bin.kirc-partial"))
        .unwrap()
        .len();
    assert!(on_disk <= 300, "{on_disk} bytes on disk for a file of 300");
}

#[test]
fn a_file_whose_whole_hash_fails_is_not_saved() {
    // The offer's whole hash is another file's than its piece hashes
    // describe: every piece verifies, the whole does not, and nothing
    // takes the file's name.
    let dir = tempfile::tempdir().unwrap();
    let file = sent(300);
    let mut lying = Sent {
        bytes: file.bytes.clone(),
        hashes: file.hashes.clone(),
    };
    lying.bytes[0] ^= 1;
    let mut receiving = accepted(dir.path(), &lying, 300);
    receiving.frame(hashes(0, &file.hashes)).unwrap();
    assert_eq!(send_pieces(&mut receiving, &file, 0, 64), Step::FileReady);
    assert!(matches!(
        finish(receiving.take_ready().unwrap()),
        Err(FinishError::Mismatch)
    ));
    assert!(!dir.path().join("file.bin").exists());
    receiving.file_failed();
    assert_eq!(receiving.verified_pieces(), vec![0]);
}

#[test]
fn the_partial_copy_is_never_written_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, b"keep").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("file.bin.kirc-partial")).unwrap();
    let file = sent(100);
    let mut receiving = Receiving::new(&record(&file, 100), dir.path());
    assert!(matches!(receiving.resume(), Err(FrameError::Disk { .. })));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
}
