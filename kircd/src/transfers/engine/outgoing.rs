//! The sender's side: offers made here, the recipient's ACCEPT, one send
//! run per accepted transfer while the path is open, and the runs' reports.

use std::path::Path;
use std::sync::Arc;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::super::manifest;
use super::super::send::{Report, SendEnd, SendRun};
use super::super::{TransferError, TransferView};
use super::*;

impl Engine {
    /// Sends an offer of `files` (read from `path`) to `contact`.
    pub(super) async fn offer(
        &mut self,
        contact: &Contact,
        path: &Path,
        files: Vec<manifest::LocalFile>,
    ) -> Result<TransferView, TransferError> {
        let id = Uuid::now_v7();
        let offer = manifest::offer(*id.as_bytes(), &files);
        let payload = offer.encode_to_vec();
        if payload.len() + ENVELOPE_OVERHEAD > MAX_ENVELOPE_BYTES {
            return Err(TransferError::InvalidArgument(format!(
                "{} has too many files or names too long for one offer; send it as an archive or in parts",
                path.display()
            )));
        }
        let mut records = Vec::with_capacity(files.len());
        for file in files {
            let Some(source) = file.source.to_str() else {
                return Err(TransferError::Manifest(manifest::ManifestError::NotUtf8(
                    file.source,
                )));
            };
            records.push(TransferFileRecord {
                offered_path: file.path.clone(),
                local_path: source.to_owned(),
                size: file.size,
                hash: file.hash,
                pieces_hash: file.pieces_hash(),
                piece_hashes: Some(file.piece_hashes.iter().flatten().copied().collect()),
                verified_pieces: 0,
                modified_ns: Some(file.modified_ns),
                renamed: false,
                saved: false,
            });
        }
        let record = TransferRecord {
            id,
            conversation_id: contact.conversation_id,
            peer: contact.actor_id,
            outgoing: true,
            state: TransferState::Offered,
            reason: String::new(),
            piece_bytes: manifest::PIECE_BYTES,
            local_path: path.display().to_string(),
            created_unix_ms: 0,
            updated_unix_ms: 0,
            files: records,
        };
        store::insert_transfer(&self.t.pool, &record).await?;
        if let Err(err) = self
            .t
            .outbound
            .send_control(contact, wire::Kind::FileOffer, &payload)
            .await
        {
            let reason = format!("the offer could not be sent: {err}");
            store::set_transfer_state(&self.t.pool, id, TransferState::Failed, &reason).await?;
            let _ = self.refresh(id).await;
            return Err(TransferError::Transport(err));
        }
        tracing::info!(transfer = %id, contact = %contact.actor_id, "offered files");
        self.refresh(id).await
    }

    /// The recipient asks for the pieces it lacks: sent now if the path is
    /// open, else once it is.
    pub(super) async fn accepted(
        &mut self,
        record: TransferRecord,
        resume_from: Vec<u64>,
    ) -> Result<(), StoreError> {
        let id = record.id;
        store::set_transfer_state(&self.t.pool, id, TransferState::Moving, "").await?;
        store::set_verified_pieces(&self.t.pool, id, &resume_from).await?;
        if let Err(TransferError::Store(err)) = self.refresh(id).await {
            return Err(err);
        }
        if self.is_open(record.peer) {
            self.start_sending(id, resume_from);
        } else {
            tracing::debug!(transfer = %id, "accepted; waiting for the path");
            if let Some(channels) = &self.t.channels {
                channels.touch(record.peer);
            }
            self.pending.insert(id, resume_from);
        }
        Ok(())
    }

    pub(super) fn start_sending(&mut self, id: Uuid, resume_from: Vec<u64>) {
        let (Some(record), Some(channels)) = (self.records.get(&id), self.t.channels.as_ref())
        else {
            return;
        };
        self.sending.remove(&id);
        self.pending.remove(&id);
        self.next_run += 1;
        let base = record
            .files
            .iter()
            .zip(resume_from.iter().chain(std::iter::repeat(&0)))
            .map(|(file, pieces)| (pieces * u64::from(record.piece_bytes)).min(file.size))
            .sum();
        tracing::debug!(transfer = %id, run = self.next_run, ?resume_from, "sending");
        let cancel = CancellationToken::new();
        let (acked, progress) = tokio::sync::watch::channel(base);
        let run = SendRun {
            transfer: record.clone(),
            resume_from,
            run: self.next_run,
            channels: Arc::clone(channels),
            reports: self.reports.clone(),
            base,
            progress,
        };
        tokio::spawn(run.run(cancel.clone()));
        self.sending.insert(
            id,
            Sending {
                run: self.next_run,
                _stop: cancel.drop_guard(),
                base,
                sent: 0,
                acked,
            },
        );
    }

    /// The recipient of `id` (`from`) reports how far it got.
    pub(super) fn recipient_progress(&mut self, id: Uuid, from: ActorId, verified_bytes: u64) {
        if self
            .records
            .get(&id)
            .is_none_or(|record| record.peer != from)
        {
            return;
        }
        if let Some(sending) = self.sending.get(&id) {
            sending.acked.send_if_modified(|acked| {
                let moved = verified_bytes > *acked;
                *acked = (*acked).max(verified_bytes);
                moved
            });
        }
    }

    pub(super) async fn report(&mut self, report: Report) {
        match report {
            Report::Sent { id, run, bytes } => {
                if let Some(sending) = self.sending.get_mut(&id).filter(|s| s.run == run) {
                    sending.sent += bytes;
                    self.meters.entry(id).or_default().moved += bytes;
                    self.changed.insert(id);
                }
            }
            Report::Ended { id, run, end } => {
                if self
                    .sending
                    .get(&id)
                    .is_none_or(|sending| sending.run != run)
                {
                    return;
                }
                tracing::debug!(transfer = %id, run, ?end, "a send run ended");
                if let Some(sending) = self.sending.remove(&id) {
                    let meter = self.meters.entry(id).or_default();
                    meter.done = sending.base + sending.sent;
                }
                match end {
                    SendEnd::AllSent | SendEnd::Cancelled => {}
                    SendEnd::PathLost => {
                        tracing::info!(transfer = %id, "the path closed; the transfer resumes when it is back");
                    }
                    SendEnd::Failed(reason) => self.fail(id, &reason).await,
                }
            }
        }
    }
}
