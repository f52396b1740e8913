//! The task that owns every transfer in motion: the API's commands, the
//! contacts' offers and answers, the files channels' frames, the senders'
//! reports and the paths opening all come here, one at a time, so a
//! transfer's state has one writer (PostgreSQL's row guards the rule that
//! an ended transfer never moves again).
//!
//! Here: the loop, loading, progress, the commands and what both sides
//! share (answers, cancel, failure, paths opening); the sender's side is in
//! `outgoing`, the recipient's in `incoming`. Past 600 lines by a few; the
//! next seam is progress (`Meter`, `progress`, `publish_progress`), which
//! would go to a file of its own.

mod incoming;
mod outgoing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::line;
use super::receive::Receiving;
use super::send::Report;
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
    /// The recipient's latest progress (verified bytes); the run keeps at
    /// most a window beyond it on the way.
    acked: tokio::sync::watch::Sender<u64>,
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
    pub(super) async fn load(&mut self, cancel: &CancellationToken) -> bool {
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

    pub(super) fn is_open(&self, peer: ActorId) -> bool {
        self.t
            .channels
            .as_ref()
            .is_some_and(|channels| channels.is_open(peer))
    }

    pub(super) fn progress(&self, id: Uuid) -> TransferProgress {
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

    pub(super) fn publish(&self, record: &TransferRecord) {
        self.show(record, self.progress(record.id));
    }

    /// Publishes `record` with `progress` as an ended transfer shows it;
    /// what was published.
    pub(super) fn show(
        &self,
        record: &TransferRecord,
        mut progress: TransferProgress,
    ) -> TransferProgress {
        if record.state == TransferState::Complete {
            progress.done_bytes = record.files.iter().map(|file| file.size).sum();
        }
        if record.state.is_ended() {
            progress.bytes_per_second = 0;
        }
        self.t.hub.transfer_changed(record, progress);
        progress
    }

    pub(super) fn publish_progress(&mut self) {
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
    pub(super) async fn refresh(&mut self, id: Uuid) -> Result<TransferView, TransferError> {
        let record = store::transfer(&self.t.pool, id)
            .await?
            .ok_or_else(|| TransferError::Unknown(id.simple().to_string()))?;
        let progress = self.progress(id);
        if record.state.is_ended() {
            // The partial files go before the end is shown: whoever sees
            // it sees the download folder as it stays.
            self.forget(id);
            // The transfers still moving are published at the same
            // instant, so a view never shows this end beside another
            // transfer's figure from up to one interval ago.
            self.publish_progress();
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
    pub(super) async fn leave_line(&self, record: &TransferRecord) {
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

    pub(super) fn forget(&mut self, id: Uuid) {
        self.records.remove(&id);
        self.pending.remove(&id);
        self.meters.remove(&id);
        self.sending.remove(&id);
        if let Some(mut receiving) = self.receiving.remove(&id) {
            receiving.remove_partials();
        }
    }

    pub(super) async fn command(&mut self, command: Command) {
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

    pub(super) async fn send_answer(
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

    pub(super) async fn known(&mut self, id: Uuid) -> Result<TransferRecord, TransferError> {
        if let Some(record) = self.records.get(&id) {
            return Ok(record.clone());
        }
        store::transfer(&self.t.pool, id)
            .await?
            .ok_or_else(|| TransferError::Unknown(id.simple().to_string()))
    }

    pub(super) async fn answer(
        &mut self,
        id: Uuid,
        accept: bool,
    ) -> Result<TransferView, TransferError> {
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

    pub(super) async fn cancel(&mut self, id: Uuid) -> Result<TransferView, TransferError> {
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
    pub(super) async fn fail(&mut self, id: Uuid, reason: &str) {
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

    /// A contact's answer about a transfer of ours or of theirs.
    pub(super) async fn answered(
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

    /// Paths opened: recipients ask for what they lack, senders with an
    /// answer waiting start.
    pub(super) async fn paths_changed(&mut self) {
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
