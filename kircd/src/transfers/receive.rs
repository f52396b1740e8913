//! The recipient's side of one transfer: the frames of the files channel
//! checked and written. Files arrive one after the other, each as its
//! piece hashes (checked against the offer's `pieces_hash`) and then its
//! bytes in order, written to `<name>.kirc-partial` (owner-only) and hashed
//! piece by piece. A file whose pieces are all verified is finished off the
//! runtime (`finish`): synced, hashed whole once more against the offer,
//! and given its name by a hard link, which never replaces a file that
//! took the name meanwhile.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

use super::manifest::{Hash, piece_count, pieces_hash};
use super::names;
use crate::crypto::identity::ActorId;
use crate::store::TransferRecord;

/// What a frame changed that must be stored or acted on.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// A file's piece hashes arrived whole and match the offer.
    Hashes {
        file: u32,
        hashes: Vec<u8>,
    },
    /// A piece was verified.
    Verified,
    /// Every piece of the current file is verified: finish it.
    FileReady,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Harmless: a frame of a file already done, or one sent before the
    /// last resume point.
    #[error("ignored: {0}")]
    Ignored(&'static str),
    /// A piece failed its hash check: it is asked for again, a few times.
    #[error("a piece failed its hash check")]
    PieceFailed,
    /// The sender's frames contradict its signed offer: the transfer
    /// cannot go on.
    #[error("{0}")]
    Hostile(&'static str),
    #[error("cannot write {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct ReceivingFile {
    /// Where the file will be saved (absolute).
    path: PathBuf,
    size: u64,
    hash: Hash,
    pieces_hash: Hash,
    piece_hashes: Vec<Hash>,
    hashes_done: bool,
    verified: u64,
    saved: bool,
    next_offset: u64,
    piece: blake3::Hasher,
    partial: Option<File>,
}

impl ReceivingFile {
    fn pieces(&self, piece_bytes: u32) -> u64 {
        piece_count(self.size, piece_bytes)
    }

    fn partial_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(names::PARTIAL_SUFFIX);
        PathBuf::from(name)
    }
}

/// One incoming transfer in motion.
#[derive(Debug)]
pub struct Receiving {
    pub id: Uuid,
    pub peer: ActorId,
    piece_bytes: u32,
    files: Vec<ReceivingFile>,
    current: usize,
    /// Pieces that failed their hash check; past a few the sender is
    /// taken for broken or hostile.
    pub hash_failures: u32,
    /// File bytes written since this was made, rewritten ones included.
    pub written: u64,
}

/// A file ready to be finished, handed to a blocking task.
#[derive(Debug)]
pub struct Finish {
    partial: File,
    partial_path: PathBuf,
    path: PathBuf,
    hash: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("the file's bytes do not match the hash of the offer")]
    Mismatch,
    #[error("cannot save {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn disk(path: &Path) -> impl FnOnce(std::io::Error) -> FrameError + '_ {
    move |source| FrameError::Disk {
        path: path.to_owned(),
        source,
    }
}

/// Creates `folder` and its parents, owner-only.
fn create_folders(folder: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(folder)
}

impl Receiving {
    /// The transfer as stored, its files under `download_dir`.
    pub fn new(record: &TransferRecord, download_dir: &Path) -> Self {
        let files = record
            .files
            .iter()
            .map(|file| {
                let hashes: Vec<Hash> = file
                    .piece_hashes
                    .as_deref()
                    .unwrap_or_default()
                    .chunks_exact(32)
                    .filter_map(|hash| hash.try_into().ok())
                    .collect();
                let pieces = piece_count(file.size, record.piece_bytes);
                let hashes_done =
                    hashes.len() as u64 == pieces && pieces_hash(&hashes) == file.pieces_hash;
                ReceivingFile {
                    path: download_dir.join(&file.local_path),
                    size: file.size,
                    hash: file.hash,
                    pieces_hash: file.pieces_hash,
                    piece_hashes: if hashes_done { hashes } else { Vec::new() },
                    hashes_done,
                    verified: file.verified_pieces.min(pieces),
                    saved: file.saved,
                    next_offset: 0,
                    piece: blake3::Hasher::new(),
                    partial: None,
                }
            })
            .collect::<Vec<_>>();
        let current = files
            .iter()
            .position(|file| !file.saved)
            .unwrap_or(files.len());
        Receiving {
            id: record.id,
            peer: record.peer,
            piece_bytes: record.piece_bytes,
            files,
            current,
            hash_failures: 0,
            written: 0,
        }
    }

    /// Opens the current file's partial copy at its last verified piece, so
    /// that what arrives next continues from there; the resume points to
    /// ask the sender for (pieces verified, per file).
    pub fn resume(&mut self) -> Result<Vec<u64>, FrameError> {
        let piece_bytes = u64::from(self.piece_bytes);
        if let Some(file) = self.files.get_mut(self.current) {
            let partial_path = file.partial_path();
            if let Some(folder) = partial_path.parent() {
                create_folders(folder).map_err(disk(folder))?;
            }
            // A link put where the partial copy goes would send the bytes
            // elsewhere.
            if std::fs::symlink_metadata(&partial_path).is_ok_and(|meta| meta.is_symlink()) {
                return Err(FrameError::Disk {
                    path: partial_path,
                    source: std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        "a symbolic link is where the file goes",
                    ),
                });
            }
            let partial = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&partial_path)
                .map_err(disk(&partial_path))?;
            let kept = (file.verified * piece_bytes).min(file.size);
            partial.set_len(kept).map_err(disk(&partial_path))?;
            file.next_offset = kept;
            file.piece = blake3::Hasher::new();
            file.partial = Some(partial);
        }
        Ok(self
            .files
            .iter()
            .map(|file| {
                if file.saved {
                    file.pieces(self.piece_bytes)
                } else {
                    file.verified
                }
            })
            .collect())
    }

    /// Bytes verified so far, over every file.
    pub fn done_bytes(&self) -> u64 {
        let piece_bytes = u64::from(self.piece_bytes);
        self.files
            .iter()
            .map(|file| {
                if file.saved {
                    file.size
                } else {
                    (file.verified * piece_bytes).min(file.size)
                }
            })
            .sum()
    }

    pub fn verified_pieces(&self) -> Vec<u64> {
        self.files.iter().map(|file| file.verified).collect()
    }

    pub fn is_complete(&self) -> bool {
        self.current >= self.files.len()
    }

    /// The current file has every piece verified (a file of no bytes has
    /// none to wait for).
    pub fn current_ready(&self) -> bool {
        self.files.get(self.current).is_some_and(|file| {
            file.hashes_done
                && file.partial.is_some()
                && file.verified == file.pieces(self.piece_bytes)
        })
    }

    /// The index of the file being received.
    pub fn current(&self) -> u32 {
        u32::try_from(self.current).unwrap_or(u32::MAX)
    }

    /// Applies one frame.
    pub fn frame(&mut self, frame: wire::FileFrame) -> Result<Step, FrameError> {
        let piece_bytes = self.piece_bytes;
        let index = usize::try_from(frame.file).unwrap_or(usize::MAX);
        if index != self.current {
            return Err(FrameError::Ignored("a frame of a file not being received"));
        }
        let Some(file) = self.files.get_mut(index) else {
            return Err(FrameError::Ignored("a frame after the last file"));
        };
        let pieces = file.pieces(piece_bytes);
        match frame.body {
            Some(wire::file_frame::Body::Hashes(hashes)) => {
                if file.hashes_done {
                    return Err(FrameError::Ignored("piece hashes already known"));
                }
                if hashes.first != file.piece_hashes.len() as u64 {
                    return Err(FrameError::Ignored("piece hashes out of order"));
                }
                if hashes.hashes.len() % 32 != 0
                    || file.piece_hashes.len() as u64 + (hashes.hashes.len() / 32) as u64 > pieces
                {
                    return Err(FrameError::Hostile(
                        "more piece hashes than the offer's size has pieces",
                    ));
                }
                file.piece_hashes.extend(
                    hashes
                        .hashes
                        .chunks_exact(32)
                        .filter_map(|hash| Hash::try_from(hash).ok()),
                );
                if file.piece_hashes.len() as u64 == pieces {
                    if pieces_hash(&file.piece_hashes) != file.pieces_hash {
                        file.piece_hashes.clear();
                        return Err(FrameError::Hostile(
                            "the piece hashes do not match the offer",
                        ));
                    }
                    file.hashes_done = true;
                    return Ok(Step::Hashes {
                        file: frame.file,
                        hashes: file.piece_hashes.iter().flatten().copied().collect(),
                    });
                }
                Ok(Step::Nothing)
            }
            Some(wire::file_frame::Body::Data(data)) => {
                if !file.hashes_done || file.partial.is_none() {
                    return Err(FrameError::Ignored("bytes before the piece hashes"));
                }
                if data.offset != file.next_offset {
                    return Err(FrameError::Ignored("bytes not where the file goes on"));
                }
                let piece = data.offset / u64::from(piece_bytes);
                let piece_end = ((piece + 1) * u64::from(piece_bytes)).min(file.size);
                let end = data.offset.saturating_add(data.bytes.len() as u64);
                if data.bytes.is_empty() || end > piece_end {
                    return Err(FrameError::Hostile(
                        "bytes beyond the piece or the size the offer gave",
                    ));
                }
                let partial_path = file.partial_path();
                let Some(partial) = file.partial.as_ref() else {
                    return Err(FrameError::Ignored("bytes before the piece hashes"));
                };
                partial
                    .write_all_at(&data.bytes, data.offset)
                    .map_err(disk(&partial_path))?;
                file.piece.update(&data.bytes);
                file.next_offset = end;
                self.written += data.bytes.len() as u64;
                if end < piece_end {
                    return Ok(Step::Nothing);
                }
                let verified = file.piece.finalize();
                file.piece = blake3::Hasher::new();
                let expected = usize::try_from(piece)
                    .ok()
                    .and_then(|piece| file.piece_hashes.get(piece));
                if expected != Some(verified.as_bytes()) {
                    // Back to the start of the piece: the sender is asked
                    // for it again.
                    file.next_offset = piece * u64::from(piece_bytes);
                    self.hash_failures += 1;
                    return Err(FrameError::PieceFailed);
                }
                file.verified = piece + 1;
                Ok(if file.verified == pieces {
                    Step::FileReady
                } else {
                    Step::Verified
                })
            }
            // A body of a later version, perhaps: nothing to act on.
            Some(wire::file_frame::Body::Progress(_)) => {
                Err(FrameError::Ignored("progress is for the sender"))
            }
            None => Err(FrameError::Ignored(
                "a frame without a body this kircd reads",
            )),
        }
    }

    /// Takes the current file's partial copy for finishing; `None` if it
    /// is not ready.
    pub fn take_ready(&mut self) -> Option<Finish> {
        if !self.current_ready() {
            return None;
        }
        let file = self.files.get_mut(self.current)?;
        let partial_path = file.partial_path();
        Some(Finish {
            partial: file.partial.take()?,
            partial_path,
            path: file.path.clone(),
            hash: file.hash,
        })
    }

    /// The current file is saved (at `saved`): on to the next one.
    pub fn file_saved(&mut self, saved: PathBuf) {
        if let Some(file) = self.files.get_mut(self.current) {
            file.saved = true;
            file.path = saved;
        }
        self.current += 1;
    }

    /// The finished file failed its whole-file check: it starts over.
    pub fn file_failed(&mut self) {
        if let Some(file) = self.files.get_mut(self.current) {
            file.verified = 0;
        }
        self.hash_failures += 1;
    }

    /// Removes the partial copies (the transfer ended without them).
    pub fn remove_partials(&mut self) {
        for file in &mut self.files {
            file.partial = None;
            if !file.saved {
                let _ = std::fs::remove_file(file.partial_path());
            }
        }
    }
}

/// Finishes a file: synced, hashed whole against the offer, and given its
/// name (or, if something took the name meanwhile, a numbered one).
/// Blocking. The saved path.
pub fn finish(job: Finish) -> Result<PathBuf, FinishError> {
    let disk = |path: &Path| {
        let path = path.to_owned();
        move |source| FinishError::Disk { path, source }
    };
    job.partial.sync_all().map_err(disk(&job.partial_path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut offset = 0u64;
    loop {
        let read = job
            .partial
            .read_at(&mut buffer, offset)
            .map_err(disk(&job.partial_path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        offset += read as u64;
    }
    if *hasher.finalize().as_bytes() != job.hash {
        return Err(FinishError::Mismatch);
    }
    let folder = job.path.parent().unwrap_or(Path::new("/")).to_owned();
    let name = job
        .path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("_")
        .to_owned();
    for attempt in 0..1000u32 {
        let candidate = if attempt == 0 {
            job.path.clone()
        } else {
            folder.join(names::unused_name(&name, |taken| {
                taken == name || folder.join(taken).exists()
            }))
        };
        match std::fs::hard_link(&job.partial_path, &candidate) {
            Ok(()) => {
                std::fs::remove_file(&job.partial_path).map_err(disk(&job.partial_path))?;
                if let Ok(folder) = File::open(&folder) {
                    let _ = folder.sync_all();
                }
                return Ok(candidate);
            }
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(disk(&candidate)(err)),
        }
    }
    Err(FinishError::Disk {
        path: job.path,
        source: std::io::Error::new(ErrorKind::AlreadyExists, "no free name"),
    })
}

/// The top-level name an offer is saved under in `download_dir`: its own,
/// or a numbered one if taken there (by a file, a partial copy, or an
/// unfinished transfer's folder in `reserved`).
pub fn unused_top(download_dir: &Path, top: &str, reserved: &[String]) -> String {
    names::unused_name(top, |candidate| {
        let mut partial = candidate.to_owned();
        partial.push_str(names::PARTIAL_SUFFIX);
        download_dir.join(candidate).exists()
            || download_dir.join(partial).exists()
            || reserved.iter().any(|taken| taken == candidate)
    })
}

#[cfg(test)]
#[path = "receive_tests.rs"]
mod tests;
