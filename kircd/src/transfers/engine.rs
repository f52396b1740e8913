//! The task that owns every transfer in motion: the API's commands, the
//! contacts' offers and answers, the files channels' frames, the senders'
//! reports and the paths opening all come here, one at a time, so a
//! transfer's state has one writer (PostgreSQL's row guards the rule that
//! an ended transfer never moves again).
//!
//! This file is past the size the project aims for. Its seams are the
//! commands (offer, answer, cancel), the frames (`frame`, `finish_ready`,
//! `complete`) and the paths (`paths_changed`, `start_sending`); it stays
//! whole until the fair sharing between transfers is fixed, since that fix
//! touches all three and a split first would move the same code twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::line;
use super::manifest::{self, CheckedOffer};
use super::receive::{self, FrameError, Receiving, Step};
use super::send::{Report, SendEnd, SendRun};
use super::{Command, ControlRecord, TransferError, TransferView, Transfers};
use crate::book::Contact;
use crate::crypto::envelope::{MAX_ENVELOPE_BYTES, Rejection};
use crate::crypto::identity::ActorId;
use crate::hub::TransferProgress;
use crate::store::{self, StoreError, TransferFileRecord, TransferRecord, TransferState};
use crate::transport::direct::FileRecord;
use crate::transport::router::Applied;

/// How often the progress of moving transfers is published.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The rate is the bytes of this last stretch of time.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// Pieces (or whole files) that may fail their hash before the sender is
/// taken for broken and the transfer fails.
const MAX_HASH_FAILURES: u32 = 3;

/// Loading the transfers at start is retried after this, doubling up to
/// the maximum.
const LOAD_RETRY_FIRST: Duration = Duration::from_millis(500);
const LOAD_RETRY_MAX: Duration = Duration::from_secs(10);

/// Ended transfers listed beside the unfinished ones.
const RECENT_ENDED: i64 = 50;

/// The sealed envelope's overhead around an offer (header, signature,
/// box), with room to spare.
const ENVELOPE_OVERHEAD: usize = 1024;

/// A transfer's bytes over the last few seconds.
#[derive(Debug, Default)]
struct Meter {
    done: u64,
    /// Bytes sent or written since kircd started, resends included.
    moved: u64,
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn set(&mut self, done: u64) {
        let now = Instant::now();
        if done < self.done {
            // A resume from an earlier point (the recipient lost what it
            // had not verified): the rate starts again from here.
            self.samples.clear();
        }
        self.done = done;
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn rate(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((first_at, first)), Some((last_at, last))) if last_at > first_at => {
                let seconds = last_at.duration_since(*first_at).as_secs_f64();
                (last.saturating_sub(*first) as f64 / seconds) as u64
            }
            _ => 0,
        }
    }
}

/// A sender run in progress.
#[derive(Debug)]
struct Sending {
    run: u64,
    /// Stops the run when the entry goes, however the engine drops it
    /// (removed, replaced, or the engine itself gone after a panic).
    _stop: DropGuard,
    /// Bytes the recipient held when the run started.
    base: u64,
    sent: u64,
}

struct Engine {
    t: Transfers,
    /// Transfers not ended, as last stored.
    records: HashMap<Uuid, TransferRecord>,
    receiving: HashMap<Uuid, Receiving>,
    sending: HashMap<Uuid, Sending>,
    /// Accepted outgoing transfers waiting for a path, with the points the
    /// recipient asked for.
    pending: HashMap<Uuid, Vec<u64>>,
    meters: HashMap<Uuid, Meter>,
    /// Contacts whose path was open when last looked at.
    open: HashSet<ActorId>,
    /// Transfers whose progress changed since it was last published.
    changed: HashSet<Uuid>,
    next_run: u64,
    reports: mpsc::Sender<Report>,
}

/// One life of the engine, from loading what PostgreSQL holds until
/// `cancel`. The receivers are borrowed so that a new life after a panic
/// takes the commands and frames that were waiting.
pub(super) async fn run(
    transfers: Transfers,
    commands: &mut mpsc::Receiver<Command>,
    frames: &mut mpsc::Receiver<FileRecord>,
    cancel: &CancellationToken,
) {
    let (reports, mut reported) = mpsc::channel(256);
    let mut opened = transfers
        .channels
        .as_ref()
        .map(|channels| channels.opened());
    let mut engine = Engine {
        t: transfers,
        records: HashMap::new(),
        receiving: HashMap::new(),
        sending: HashMap::new(),
        pending: HashMap::new(),
        meters: HashMap::new(),
        open: HashSet::new(),
        changed: HashSet::new(),
        next_run: 0,
        reports,
    };
    if !engine.load(cancel).await {
        return;
    }
    engine.paths_changed().await;
    // One interval for the engine's life: a sleep made anew on each turn
    // of the loop never fired while frames kept coming faster than it, and
    // progress went unpublished for a whole transfer.
    let mut progress_due = tokio::time::interval(PROGRESS_INTERVAL);
    progress_due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Ticks only while something moves: idle, the engine sleeps.
        let moving = engine
            .records
            .values()
            .any(|record| record.state == TransferState::Moving);
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(command) = commands.recv() => engine.command(command).await,
            Some(frame) = frames.recv() => engine.frame(frame).await,
            Some(report) = reported.recv() => engine.report(report).await,
            Some(()) = path_opened(&mut opened) => engine.paths_changed().await,
            _ = progress_due.tick(), if moving => engine.publish_progress(),
        }
    }
    // Dropping the engine stops its senders.
}

/// Resolves when a path opens; never without the direct path.
async fn path_opened(opened: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match opened {
        Some(opened) => opened.changed().await.ok(),
        None => std::future::pending().await,
    }
}

fn with_reason(error: impl std::fmt::Display) -> String {
    error.to_string()
}

impl Engine {
    /// Transfers that were moving when kircd last stopped, retried until
    /// PostgreSQL answers (seen in CI: a restarted daemon's first query
    /// failed, and its transfer was never shown or resumed); false if
    /// cancelled first.
    async fn load(&mut self, cancel: &CancellationToken) -> bool {
        let mut delay = LOAD_RETRY_FIRST;
        let records = loop {
            match store::transfers(&self.t.pool, 0).await {
                Ok(records) => break records,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "cannot load the unfinished transfers yet");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(LOAD_RETRY_MAX);
        };
        for record in records {
            if !record.outgoing && record.state == TransferState::Moving {
                let receiving = Receiving::new(&record, &self.t.config.download_dir);
                self.receiving.insert(record.id, receiving);
            }
            // Shown from the start, not only once something moves.
            self.publish(&record);
            self.records.insert(record.id, record);
        }
        true
    }

    fn is_open(&self, peer: ActorId) -> bool {
        self.t
            .channels
            .as_ref()
            .is_some_and(|channels| channels.is_open(peer))
    }

    fn progress(&self, id: Uuid) -> TransferProgress {
        let record = self.records.get(&id);
        let meter = self.meters.get(&id);
        let done = match (self.receiving.get(&id), self.sending.get(&id)) {
            (Some(receiving), _) => receiving.done_bytes(),
            (None, Some(sending)) => sending.base + sending.sent,
            (None, None) => meter.map_or(0, |meter| meter.done),
        };
        TransferProgress {
            done_bytes: done,
            bytes_per_second: meter.map_or(0, Meter::rate),
            waiting: record.is_some_and(|record| !self.is_open(record.peer)),
            moved_bytes: meter.map_or(0, |meter| meter.moved),
        }
    }

    fn publish(&self, record: &TransferRecord) {
        self.show(record, self.progress(record.id));
    }

    /// Publishes `record` with `progress` as an ended transfer shows it;
    /// what was published.
    fn show(&self, record: &TransferRecord, mut progress: TransferProgress) -> TransferProgress {
        if record.state == TransferState::Complete {
            progress.done_bytes = record.files.iter().map(|file| file.size).sum();
        }
        if record.state.is_ended() {
            progress.bytes_per_second = 0;
        }
        self.t.hub.transfer_changed(record, progress);
        progress
    }

    fn publish_progress(&mut self) {
        let now_waiting: Vec<Uuid> = self
            .records
            .values()
            .filter(|record| record.state == TransferState::Moving)
            .map(|record| record.id)
            .collect();
        for id in now_waiting {
            let done = self.progress(id).done_bytes;
            self.meters.entry(id).or_default().set(done);
            self.changed.insert(id);
        }
        for id in std::mem::take(&mut self.changed) {
            if let Some(record) = self.records.get(&id) {
                self.publish(record);
            }
        }
    }

    /// Reloads a transfer after a change of state, publishes it, and
    /// forgets it once ended.
    async fn refresh(&mut self, id: Uuid) -> Result<TransferView, TransferError> {
        let record = store::transfer(&self.t.pool, id)
            .await?
            .ok_or_else(|| TransferError::Unknown(id.simple().to_string()))?;
        let progress = self.progress(id);
        if record.state.is_ended() {
            // The partial files go before the end is shown: whoever sees
            // it sees the download folder as it stays.
            self.forget(id);
        } else {
            self.records.insert(id, record.clone());
        }
        let progress = self.show(&record, progress);
        if record.state == TransferState::Complete {
            self.leave_line(&record).await;
        }
        Ok((record, progress))
    }

    /// The completed transfer's line in its conversation; its
    /// MessageAdded is what notifies the user.
    async fn leave_line(&self, record: &TransferRecord) {
        let sender = if record.outgoing {
            self.t.book.me()
        } else {
            record.peer
        };
        let body = line::completed(record, &self.t.config.download_dir);
        match store::insert_transfer_line(&self.t.pool, record, sender, &body).await {
            Ok(Some(message)) => self.t.hub.message_added(&message),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(transfer = %record.id, error = %err, "cannot leave a completed transfer's line in its conversation");
            }
        }
    }

    fn forget(&mut self, id: Uuid) {
        self.records.remove(&id);
        self.pending.remove(&id);
        self.meters.remove(&id);
        self.sending.remove(&id);
        if let Some(mut receiving) = self.receiving.remove(&id) {
            receiving.remove_partials();
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Send {
                contact,
                path,
                files,
                reply,
            } => {
                let _ = reply.send(self.offer(&contact, &path, files).await);
            }
            Command::Answer { id, accept, reply } => {
                let _ = reply.send(self.answer(id, accept).await);
            }
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel(id).await);
            }
            Command::List { reply } => {
                let listed = store::transfers(&self.t.pool, RECENT_ENDED)
                    .await
                    .map(|records| {
                        records
                            .into_iter()
                            .map(|record| {
                                let progress = self.progress(record.id);
                                (record, progress)
                            })
                            .collect()
                    })
                    .map_err(TransferError::from);
                let _ = reply.send(listed);
            }
            Command::Control {
                from,
                record,
                reply,
            } => {
                let applied = match record {
                    ControlRecord::Offer(offer) => self.offered(&from, offer).await,
                    ControlRecord::Answer(answer) => self.answered(&from, answer).await,
                };
                let _ = reply.send(applied);
            }
        }
    }

    /// Sends an offer of `files` (read from `path`) to `contact`.
    async fn offer(
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

    async fn send_answer(
        &self,
        peer: ActorId,
        id: Uuid,
        kind: wire::FileAnswerKind,
        resume_from: Vec<u64>,
        reason: &str,
    ) {
        let Some(contact) = self.t.book.get(&peer) else {
            return;
        };
        let answer = wire::FileAnswer {
            transfer_id: id.as_bytes().to_vec(),
            kind: kind as i32,
            resume_from,
            reason: reason.to_owned(),
        };
        if let Err(err) = self
            .t
            .outbound
            .send_control(&contact, wire::Kind::FileAnswer, &answer.encode_to_vec())
            .await
        {
            tracing::warn!(transfer = %id, error = %err, "cannot send an answer about a transfer");
        }
    }

    async fn known(&mut self, id: Uuid) -> Result<TransferRecord, TransferError> {
        if let Some(record) = self.records.get(&id) {
            return Ok(record.clone());
        }
        store::transfer(&self.t.pool, id)
            .await?
            .ok_or_else(|| TransferError::Unknown(id.simple().to_string()))
    }

    async fn answer(&mut self, id: Uuid, accept: bool) -> Result<TransferView, TransferError> {
        let record = self.known(id).await?;
        if record.outgoing || record.state != TransferState::Offered {
            return Err(TransferError::InvalidArgument(String::from(
                "only an offer made to you and not yet answered can be accepted or refused",
            )));
        }
        if accept {
            self.accept(record).await
        } else {
            store::set_transfer_state(&self.t.pool, id, TransferState::Refused, "refused by you")
                .await?;
            self.send_answer(
                record.peer,
                id,
                wire::FileAnswerKind::Refuse,
                Vec::new(),
                "",
            )
            .await;
            self.refresh(id).await
        }
    }

    /// Takes an offer: the files are received whenever the path is open.
    async fn accept(&mut self, record: TransferRecord) -> Result<TransferView, TransferError> {
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
    async fn ask_for_pieces(&mut self, id: Uuid) {
        if self.request_pieces(id).await {
            self.finish_ready(id).await;
        }
    }

    /// The asking part of `ask_for_pieces`; false if the transfer failed.
    async fn request_pieces(&mut self, id: Uuid) -> bool {
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

    async fn cancel(&mut self, id: Uuid) -> Result<TransferView, TransferError> {
        let record = self.known(id).await?;
        if record.state.is_ended() {
            return Err(TransferError::InvalidArgument(String::from(
                "that transfer has already ended",
            )));
        }
        store::set_transfer_state(
            &self.t.pool,
            id,
            TransferState::Cancelled,
            "cancelled by you",
        )
        .await?;
        self.send_answer(
            record.peer,
            id,
            wire::FileAnswerKind::Cancel,
            Vec::new(),
            "",
        )
        .await;
        self.refresh(id).await
    }

    /// Ends a transfer that cannot go on, on both sides.
    async fn fail(&mut self, id: Uuid, reason: &str) {
        tracing::warn!(transfer = %id, reason, "a transfer failed");
        let peer = self.records.get(&id).map(|record| record.peer);
        match store::set_transfer_state(&self.t.pool, id, TransferState::Failed, reason).await {
            Ok(true) => {
                if let Some(peer) = peer {
                    self.send_answer(peer, id, wire::FileAnswerKind::Fail, Vec::new(), reason)
                        .await;
                }
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(transfer = %id, error = %err, "cannot store a transfer's failure")
            }
        }
        let _ = self.refresh(id).await;
    }

    /// A contact's offer, checked for shape: stored (with where each file
    /// will be saved) and shown, or accepted at once if small enough.
    async fn offered(
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

    /// A contact's answer about a transfer of ours or of theirs.
    async fn answered(
        &mut self,
        from: &Contact,
        answer: wire::FileAnswer,
    ) -> Result<Applied, StoreError> {
        let Ok(id) = Uuid::from_slice(&answer.transfer_id) else {
            return Ok(Err(Rejection::Malformed));
        };
        let record = match self.known(id).await {
            Ok(record) => record,
            Err(TransferError::Store(err)) => return Err(err),
            Err(_) => return Ok(Err(Rejection::Malformed)),
        };
        if record.peer != from.actor_id {
            return Ok(Err(Rejection::Malformed));
        }
        if record.state.is_ended() {
            // Said after the transfer ended here (a cancel that crossed a
            // DONE, say): nothing to do.
            return Ok(Ok(()));
        }
        use wire::FileAnswerKind as Kind;
        let kind = Kind::try_from(answer.kind).unwrap_or(Kind::Unspecified);
        tracing::debug!(transfer = %id, ?kind, resume_from = ?answer.resume_from, "answer received");
        let name = &from.display_name;
        let ended = match (record.outgoing, kind) {
            (true, Kind::Accept) => {
                if answer.resume_from.len() != record.files.len() {
                    return Ok(Err(Rejection::Malformed));
                }
                self.accepted(record, answer.resume_from).await?;
                None
            }
            (true, Kind::Refuse) => Some((TransferState::Refused, format!("refused by {name}"))),
            (true, Kind::Done) => Some((TransferState::Complete, String::new())),
            (_, Kind::Cancel) => Some((TransferState::Cancelled, format!("cancelled by {name}"))),
            (_, Kind::Fail) => Some((
                TransferState::Failed,
                format!("{name}'s side: {}", answer.reason),
            )),
            _ => return Ok(Err(Rejection::Malformed)),
        };
        if let Some((state, reason)) = ended {
            store::set_transfer_state(&self.t.pool, id, state, &reason).await?;
            if let Err(TransferError::Store(err)) = self.refresh(id).await {
                return Err(err);
            }
        }
        Ok(Ok(()))
    }

    /// The recipient asks for the pieces it lacks: sent now if the path is
    /// open, else once it is.
    async fn accepted(
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

    fn start_sending(&mut self, id: Uuid, resume_from: Vec<u64>) {
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
        let run = SendRun {
            transfer: record.clone(),
            resume_from,
            run: self.next_run,
            channels: Arc::clone(channels),
            reports: self.reports.clone(),
        };
        tokio::spawn(run.run(cancel.clone()));
        self.sending.insert(
            id,
            Sending {
                run: self.next_run,
                _stop: cancel.drop_guard(),
                base,
                sent: 0,
            },
        );
    }

    async fn report(&mut self, report: Report) {
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

    /// Paths opened: recipients ask for what they lack, senders with an
    /// answer waiting start.
    async fn paths_changed(&mut self) {
        let peers: HashSet<ActorId> = self.records.values().map(|record| record.peer).collect();
        let open: HashSet<ActorId> = peers
            .into_iter()
            .filter(|peer| self.is_open(*peer))
            .collect();
        let newly: HashSet<ActorId> = open.difference(&self.open).copied().collect();
        self.open = open;
        if newly.is_empty() {
            return;
        }
        let asking: Vec<Uuid> = self
            .receiving
            .values()
            .filter(|receiving| newly.contains(&receiving.peer))
            .map(|receiving| receiving.id)
            .collect();
        for id in asking {
            self.ask_for_pieces(id).await;
        }
        let starting: Vec<(Uuid, Vec<u64>)> = self
            .pending
            .iter()
            .filter(|(id, _)| {
                self.records
                    .get(id)
                    .is_some_and(|record| newly.contains(&record.peer))
            })
            .map(|(id, points)| (*id, points.clone()))
            .collect();
        for (id, points) in starting {
            self.start_sending(id, points);
        }
    }

    /// A frame from a contact's files channel.
    async fn frame(&mut self, record: FileRecord) {
        let Ok(frame) = wire::FileFrame::decode(record.bytes) else {
            tracing::debug!(contact = %record.from, "a file frame that does not decode was dropped");
            return;
        };
        let Ok(id) = Uuid::from_slice(&frame.transfer_id) else {
            return;
        };
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
                self.changed.insert(id);
                if let Err(err) = store::set_verified_pieces(&self.t.pool, id, &verified).await {
                    tracing::warn!(transfer = %id, error = %err, "cannot store a transfer's progress");
                }
            }
            Ok(Step::FileReady) => {
                let verified = receiving.verified_pieces();
                if let Err(err) = store::set_verified_pieces(&self.t.pool, id, &verified).await {
                    tracing::warn!(transfer = %id, error = %err, "cannot store a transfer's progress");
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

    /// Finishes every file of `id` that is ready, in order; the transfer
    /// is complete after its last.
    async fn finish_ready(&mut self, id: Uuid) {
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

    async fn complete(&mut self, id: Uuid) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_starts_again_when_a_resume_goes_back() {
        let mut meter = Meter::default();
        meter.set(10_000_000);
        std::thread::sleep(Duration::from_millis(5));
        meter.set(20_000_000);
        assert!(meter.rate() > 0);
        // The recipient restarted and asks from an earlier point.
        meter.set(4_000_000);
        assert_eq!(meter.rate(), 0);
        assert_eq!(meter.samples.len(), 1);
    }
}
