//! The recipient's side: offers from contacts, accepting one, asking for
//! the pieces still missing (at first, after a restart, after a lost
//! path), the frames as they come, and each file finished once its whole
//! hash verifies.

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use uuid::Uuid;

use super::super::manifest::CheckedOffer;
use super::super::receive::{self, FrameError, Receiving, Step};
use super::super::{TransferError, TransferView};
use super::*;

impl Engine {
    /// A contact's offer, checked for shape: stored (with where each file
    /// will be saved) and shown, or accepted at once if small enough.
    pub(super) async fn offered(
        &mut self,
        from: &Contact,
        offer: CheckedOffer,
    ) -> Result<Applied, StoreError> {
        let id = Uuid::from_bytes(offer.transfer_id);
        let reserved = store::unfinished_incoming_paths(&self.t.pool).await?;
        let download_dir = &self.t.config.download_dir;
        // Every file of an offer shares its top-level name (a file's own,
        // or its folder's), made unique in the download folder once.
        let mut tops: HashMap<String, String> = HashMap::new();
        let mut files = Vec::with_capacity(offer.files.len());
        for file in &offer.files {
            let mut components = file.path.iter();
            let top = components
                .next()
                .and_then(|top| top.to_str())
                .unwrap_or("_")
                .to_owned();
            let unique = tops
                .entry(top.clone())
                .or_insert_with(|| receive::unused_top(download_dir, &top, &reserved))
                .clone();
            let mut local = PathBuf::from(&unique);
            local.extend(components);
            files.push(TransferFileRecord {
                offered_path: file.offered.clone(),
                local_path: local.to_string_lossy().into_owned(),
                size: file.size,
                hash: file.hash,
                pieces_hash: file.pieces_hash,
                piece_hashes: None,
                verified_pieces: 0,
                modified_ns: None,
                renamed: file.renamed() || unique != top,
                saved: false,
            });
        }
        let local_path = tops.values().next().cloned().unwrap_or_default();
        let record = TransferRecord {
            id,
            conversation_id: from.conversation_id,
            peer: from.actor_id,
            outgoing: false,
            state: TransferState::Offered,
            reason: String::new(),
            piece_bytes: offer.piece_bytes,
            local_path,
            created_unix_ms: 0,
            updated_unix_ms: 0,
            files,
        };
        if !store::insert_transfer(&self.t.pool, &record).await? {
            return Ok(Err(Rejection::Replay));
        }
        tracing::info!(transfer = %id, contact = %from.actor_id, bytes = offer.total_bytes, files = offer.files.len(), "files offered");
        if offer.total_bytes <= self.t.config.auto_accept_bytes {
            if let Err(err) = self.accept(record).await {
                tracing::warn!(transfer = %id, error = %err, "cannot accept a small offer by itself");
            }
        } else {
            let _ = self.refresh(id).await;
        }
        Ok(Ok(()))
    }

    /// Takes an offer: the files are received whenever the path is open.
    pub(super) async fn accept(
        &mut self,
        record: TransferRecord,
    ) -> Result<TransferView, TransferError> {
        let id = record.id;
        if !store::set_transfer_state(&self.t.pool, id, TransferState::Moving, "").await? {
            return self.refresh(id).await;
        }
        let mut moving = record;
        moving.state = TransferState::Moving;
        self.receiving
            .insert(id, Receiving::new(&moving, &self.t.config.download_dir));
        let view = self.refresh(id).await?;
        self.ask_for_pieces(id).await;
        Ok(view)
    }

    /// Opens the recipient's current file at its last verified piece and
    /// asks the sender for the rest; finishes what is ready (a file of no
    /// bytes is, at once).
    pub(super) async fn ask_for_pieces(&mut self, id: Uuid) {
        if self.request_pieces(id).await {
            self.finish_ready(id).await;
        }
    }

    /// The asking part of `ask_for_pieces`; false if the transfer failed.
    pub(super) async fn request_pieces(&mut self, id: Uuid) -> bool {
        let Some(receiving) = self.receiving.get_mut(&id) else {
            return false;
        };
        let peer = receiving.peer;
        match receiving.resume() {
            Ok(resume_from) => {
                tracing::debug!(transfer = %id, ?resume_from, "asking for pieces");
                self.send_answer(peer, id, wire::FileAnswerKind::Accept, resume_from, "")
                    .await;
                true
            }
            Err(err) => {
                self.fail(id, &with_reason(err)).await;
                false
            }
        }
    }

    /// A frame from a contact's files channel.
    pub(super) async fn frame(&mut self, record: FileRecord) {
        let Ok(frame) = wire::FileFrame::decode(record.bytes) else {
            tracing::debug!(contact = %record.from, "a file frame that does not decode was dropped");
            return;
        };
        let Ok(id) = Uuid::from_slice(&frame.transfer_id) else {
            return;
        };
        if let Some(wire::file_frame::Body::Progress(progress)) = &frame.body {
            self.recipient_progress(id, record.from, progress.verified_bytes);
            return;
        }
        let Some(receiving) = self
            .receiving
            .get_mut(&id)
            .filter(|receiving| receiving.peer == record.from)
        else {
            tracing::trace!(transfer = %id, "a frame of a transfer not being received");
            return;
        };
        let written_before = receiving.written;
        let step = receiving.frame(frame);
        let written = receiving.written - written_before;
        if written > 0 {
            self.meters.entry(id).or_default().moved += written;
        }
        let Some(receiving) = self.receiving.get_mut(&id) else {
            return;
        };
        match step {
            Ok(Step::Nothing) => {}
            Ok(Step::Hashes { file, hashes }) => {
                if let Err(err) = store::set_piece_hashes(&self.t.pool, id, file, &hashes).await {
                    tracing::warn!(transfer = %id, error = %err, "cannot store piece hashes");
                }
            }
            Ok(Step::Verified) => {
                let verified = receiving.verified_pieces();
                let done = receiving.done_bytes();
                self.changed.insert(id);
                if let Err(err) = store::set_verified_pieces(&self.t.pool, id, &verified).await {
                    tracing::warn!(transfer = %id, error = %err, "cannot store a transfer's progress");
                } else {
                    self.send_progress(id, record.from, done);
                }
            }
            Ok(Step::FileReady) => {
                let verified = receiving.verified_pieces();
                let done = receiving.done_bytes();
                if let Err(err) = store::set_verified_pieces(&self.t.pool, id, &verified).await {
                    tracing::warn!(transfer = %id, error = %err, "cannot store a transfer's progress");
                } else {
                    self.send_progress(id, record.from, done);
                }
                self.finish_ready(id).await;
            }
            Err(FrameError::Ignored(why)) => {
                tracing::trace!(transfer = %id, why, "a file frame was ignored");
            }
            Err(FrameError::PieceFailed) => {
                self.t.rejections.add(Rejection::Malformed);
                tracing::warn!(transfer = %id, contact = %record.from, "a piece failed its hash check");
                if receiving.hash_failures > MAX_HASH_FAILURES {
                    self.fail(id, "the sender's pieces keep failing their hash check")
                        .await;
                } else {
                    self.ask_for_pieces(id).await;
                }
            }
            Err(FrameError::Hostile(why)) => {
                self.t.rejections.add(Rejection::Malformed);
                tracing::warn!(transfer = %id, contact = %record.from, why, "a file frame was refused");
                self.fail(id, &format!("the sender's data is wrong: {why}"))
                    .await;
            }
            Err(err @ FrameError::Disk { .. }) => self.fail(id, &disk_reason(&err)).await,
        }
    }

    /// Tells the sender of `id` that `verified_bytes` are verified and
    /// recorded here, which opens its window that far. Only once recorded:
    /// a restart resumes from what was recorded, so the sender never has
    /// more than its window beyond a resume's starting point. Sent from a
    /// task of its own, so that a full channel never holds the engine;
    /// the sender keeps the largest figure, whatever order they arrive in.
    fn send_progress(&self, id: Uuid, sender: ActorId, verified_bytes: u64) {
        let Some(channels) = self.t.channels.clone() else {
            return;
        };
        let frame = bytes::Bytes::from(
            wire::FileFrame {
                transfer_id: id.as_bytes().to_vec(),
                file: 0,
                body: Some(wire::file_frame::Body::Progress(wire::FileProgress {
                    verified_bytes,
                })),
            }
            .encode_to_vec(),
        );
        tokio::spawn(async move {
            if let Err(err) = channels.send_file(sender, frame).await {
                tracing::debug!(transfer = %id, error = %err, "a progress frame was not sent");
            }
        });
    }

    /// Finishes every file of `id` that is ready, in order; the transfer
    /// is complete after its last.
    pub(super) async fn finish_ready(&mut self, id: Uuid) {
        loop {
            let Some(receiving) = self.receiving.get_mut(&id) else {
                return;
            };
            let index = receiving.current();
            let Some(job) = receiving.take_ready() else {
                return;
            };
            let finished = tokio::task::spawn_blocking(move || receive::finish(job)).await;
            let Some(receiving) = self.receiving.get_mut(&id) else {
                return;
            };
            match finished {
                Ok(Ok(saved)) => {
                    let relative = saved
                        .strip_prefix(&self.t.config.download_dir)
                        .unwrap_or(&saved)
                        .to_string_lossy()
                        .into_owned();
                    receiving.file_saved(saved);
                    if let Err(err) =
                        store::set_file_saved(&self.t.pool, id, index, &relative).await
                    {
                        tracing::warn!(transfer = %id, error = %err, "cannot store a saved file");
                    }
                    if receiving.is_complete() {
                        self.complete(id).await;
                        return;
                    }
                    if let Err(err) = receiving.resume() {
                        self.fail(id, &disk_reason(&err)).await;
                        return;
                    }
                }
                Ok(Err(receive::FinishError::Mismatch)) => {
                    receiving.file_failed();
                    if receiving.hash_failures > MAX_HASH_FAILURES {
                        self.fail(id, "a file's bytes do not match the offer's hash")
                            .await;
                    } else {
                        self.request_pieces(id).await;
                    }
                    return;
                }
                Ok(Err(err)) => {
                    self.fail(id, &err.to_string()).await;
                    return;
                }
                Err(_) => return,
            }
        }
    }

    pub(super) async fn complete(&mut self, id: Uuid) {
        let Some(receiving) = self.receiving.remove(&id) else {
            return;
        };
        tracing::info!(transfer = %id, "every file received and verified");
        if let Err(err) =
            store::set_transfer_state(&self.t.pool, id, TransferState::Complete, "").await
        {
            tracing::warn!(transfer = %id, error = %err, "cannot store a completed transfer");
        }
        self.send_answer(
            receiving.peer,
            id,
            wire::FileAnswerKind::Done,
            Vec::new(),
            "",
        )
        .await;
        let _ = self.refresh(id).await;
    }
}

/// A disk error as the user should read it.
fn disk_reason(err: &FrameError) -> String {
    match err {
        FrameError::Disk { source, path } if source.kind() == std::io::ErrorKind::StorageFull => {
            format!("the disk is full (writing {})", path.display())
        }
        other => other.to_string(),
    }
}
