//! The sender's side of one transfer: from the points the recipient asked
//! for, each file's piece hashes and then its pieces, read one at a time
//! (memory stays at one piece whatever the size), checked against the
//! hashes made when the offer was (a file changed since is not sent), and
//! cut into frames the files channel takes; its send buffer's limit is the
//! back-pressure.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::manifest::{self, Hash, piece_count};
use crate::crypto::identity::ActorId;
use crate::store::TransferRecord;
use crate::transport::direct::FileChannels;

/// Room in a message for a frame's fields around its bytes (transfer id,
/// file, offset: under 64 bytes), with plenty to spare.
const FRAME_OVERHEAD: usize = 256;

/// Bytes of a file per frame: as many as the largest message both ends of
/// the channel take allows (fewer, larger messages move faster), within
/// these bounds. The largest is a whole piece.
const MIN_FRAME_BYTES: usize = 16 * 1024;
const MAX_FRAME_BYTES: usize = 256 * 1024;

fn frame_bytes(max_message: Option<usize>) -> usize {
    max_message
        .map_or(MIN_FRAME_BYTES, |max| max.saturating_sub(FRAME_OVERHEAD))
        .clamp(MIN_FRAME_BYTES, MAX_FRAME_BYTES)
}

/// Bytes a run keeps on the way beyond the recipient's latest progress
/// (`FileProgress`: verified and recorded there). The channel and the crate
/// under it buffer far more than this (hundreds of frames between the
/// association and the reader), all of it lost when either side is killed;
/// the window bounds what a resume sends twice to this, whatever they hold.
/// Sixteen pieces: enough to keep a path of 100 MB/s and 40 ms busy.
pub const WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Piece hashes per frame (32 KiB).
const HASHES_PER_FRAME: usize = 1024;

/// What a sender reports to the engine.
#[derive(Debug)]
pub enum Report {
    /// `bytes` more were handed to the channel.
    Sent { id: Uuid, run: u64, bytes: u64 },
    /// The run ended.
    Ended { id: Uuid, run: u64, end: SendEnd },
}

#[derive(Debug, PartialEq, Eq)]
pub enum SendEnd {
    /// Every piece asked for is on its way; the recipient says DONE.
    AllSent,
    /// The path closed; the recipient asks again when it is back.
    PathLost,
    Cancelled,
    /// A file cannot be sent (changed or gone since the offer); the reason.
    Failed(String),
}

/// One run of sending `transfer` to its recipient from `resume_from`.
pub struct SendRun {
    pub transfer: TransferRecord,
    pub resume_from: Vec<u64>,
    pub run: u64,
    pub channels: Arc<dyn FileChannels>,
    pub reports: mpsc::Sender<Report>,
    /// Bytes the recipient held when the run started (what `resume_from`
    /// says), in the terms of its progress reports.
    pub base: u64,
    /// The recipient's progress reports (verified bytes).
    pub progress: watch::Receiver<u64>,
}

impl SendRun {
    pub async fn run(self, cancel: CancellationToken) {
        let (id, run, reports) = (self.transfer.id, self.run, self.reports.clone());
        let end = tokio::select! {
            () = cancel.cancelled() => SendEnd::Cancelled,
            end = self.send_all() => end,
        };
        let _ = reports.send(Report::Ended { id, run, end }).await;
    }

    async fn send_all(&self) -> SendEnd {
        let mut position = self.base;
        let mut progress = self.progress.clone();
        let piece_bytes = self.transfer.piece_bytes;
        let frame_bytes = frame_bytes(self.channels.max_message(peer(&self.transfer)).await);
        for (index, file) in self.transfer.files.iter().enumerate() {
            let pieces = piece_count(file.size, piece_bytes);
            let from = self.resume_from.get(index).copied().unwrap_or(0);
            if from >= pieces {
                continue;
            }
            let hashes: Vec<Hash> = file
                .piece_hashes
                .as_deref()
                .unwrap_or_default()
                .chunks_exact(32)
                .filter_map(|hash| Hash::try_from(hash).ok())
                .collect();
            let file_index = u32::try_from(index).unwrap_or(u32::MAX);
            for (chunk, hashes) in hashes.chunks(HASHES_PER_FRAME).enumerate() {
                let frame = self.frame(
                    file_index,
                    wire::file_frame::Body::Hashes(wire::PieceHashes {
                        first: (chunk * HASHES_PER_FRAME) as u64,
                        hashes: hashes.iter().flatten().copied().collect(),
                    }),
                );
                if self.send(frame).await.is_err() {
                    return SendEnd::PathLost;
                }
            }
            let source = PathBuf::from(&file.local_path);
            let opened = match open_unchanged(&source, file.size, file.modified_ns) {
                Ok(opened) => opened,
                Err(reason) => return SendEnd::Failed(reason),
            };
            let mut opened = Some(opened);
            for piece in from..pieces {
                let Some(reading) = opened.take() else {
                    return SendEnd::Failed(String::from("the file closed"));
                };
                let expected = usize::try_from(piece)
                    .ok()
                    .and_then(|piece| hashes.get(piece))
                    .copied();
                let offset = piece * u64::from(piece_bytes);
                let length = (file.size - offset).min(u64::from(piece_bytes)) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0; length];
                    let result = reading.read_exact_at(&mut buffer, offset);
                    (reading, result.map(|()| buffer))
                })
                .await;
                let Ok((reading, bytes)) = read else {
                    return SendEnd::Failed(String::from("reading the file stopped"));
                };
                let bytes = match bytes {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        return SendEnd::Failed(format!("cannot read {}: {err}", source.display()));
                    }
                };
                if Some(*blake3::hash(&bytes).as_bytes()) != expected {
                    return SendEnd::Failed(format!(
                        "{} changed since it was offered; offer it again",
                        source.display()
                    ));
                }
                opened = Some(reading);
                let bytes = Bytes::from(bytes);
                for (at, slice) in (0..bytes.len()).step_by(frame_bytes).map(|at| {
                    let end = (at + frame_bytes).min(bytes.len());
                    (at, bytes.slice(at..end))
                }) {
                    let length = slice.len() as u64;
                    if window(&mut progress, position + length).await.is_err() {
                        return SendEnd::PathLost;
                    }
                    position += length;
                    let frame = self.frame(
                        file_index,
                        wire::file_frame::Body::Data(wire::FileData {
                            offset: offset + at as u64,
                            bytes: slice.to_vec(),
                        }),
                    );
                    if self.send(frame).await.is_err() {
                        return SendEnd::PathLost;
                    }
                    let _ = self
                        .reports
                        .send(Report::Sent {
                            id: self.transfer.id,
                            run: self.run,
                            bytes: length,
                        })
                        .await;
                }
            }
        }
        SendEnd::AllSent
    }

    fn frame(&self, file: u32, body: wire::file_frame::Body) -> Bytes {
        Bytes::from(
            wire::FileFrame {
                transfer_id: self.transfer.id.as_bytes().to_vec(),
                file,
                body: Some(body),
            }
            .encode_to_vec(),
        )
    }

    async fn send(&self, frame: Bytes) -> Result<(), ()> {
        self.channels
            .send_file(peer(&self.transfer), frame)
            .await
            .map_err(|err| tracing::debug!(transfer = %self.transfer.id, error = %err, "a file frame was not sent"))
    }
}

/// Waits until the recipient's `progress` lets a run have sent up to
/// `position`; Err if the engine is gone.
async fn window(progress: &mut watch::Receiver<u64>, position: u64) -> Result<(), ()> {
    progress
        .wait_for(|verified| position <= verified.saturating_add(WINDOW_BYTES))
        .await
        .map(|_| ())
        .map_err(|_| ())
}

fn peer(transfer: &TransferRecord) -> ActorId {
    transfer.peer
}

/// Opens a file to send, if it is still what was offered (same size, same
/// modification time).
fn open_unchanged(path: &PathBuf, size: u64, modified_ns: Option<i64>) -> Result<File, String> {
    let file = File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let metadata = file
        .metadata()
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if metadata.len() != size
        || modified_ns.is_some_and(|ns| manifest::modified_ns(&metadata) != ns)
    {
        return Err(format!(
            "{} changed since it was offered; offer it again",
            path.display()
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_fills_the_agreed_message_size_within_bounds() {
        // The crate's default (a peer that advertises nothing larger).
        assert_eq!(frame_bytes(Some(65_536)), 65_536 - FRAME_OVERHEAD);
        assert_eq!(frame_bytes(Some(256 * 1024)), 256 * 1024 - FRAME_OVERHEAD);
        assert_eq!(frame_bytes(Some(16 * 1024 * 1024)), MAX_FRAME_BYTES);
        assert_eq!(frame_bytes(Some(1200)), MIN_FRAME_BYTES);
        assert_eq!(frame_bytes(None), MIN_FRAME_BYTES);
    }
}
