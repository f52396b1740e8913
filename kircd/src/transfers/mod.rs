//! File transfers between contacts: offers, their answers, and the files'
//! pieces over the direct path, verified and resumable.
//!
//! One task (the engine, `engine.rs`) owns every transfer in motion. It is
//! fed by typed commands: the API's (send, answer, cancel, list, through
//! [`TransfersHandle`]), the contacts' offers and answers (from the inbox,
//! through the two control handlers here), the frames of the files
//! channels, and the peer manager's "a path opened". Offers and answers
//! travel as control records over Kafka (signed, sealed, ordered, replay-
//! checked like every control record); the bytes go on each direct
//! connection's second data channel, checked against the signed offer's
//! hashes (`manifest.rs`) and written under safe names (`names.rs`) as a
//! partial file that takes its name only once its whole hash is verified
//! (`receive.rs`). The recipient drives: it asks for the pieces it lacks
//! (an ACCEPT with how far each file is verified) whenever the path opens,
//! so a restart of either side, or a lost connection, resumes from the
//! last verified piece.

mod engine;
mod line;
pub mod manifest;
pub mod names;
mod receive;
mod send;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::book::{Contact, ContactBook, LookupError, NotLoaded};
use crate::config::FilesConfig;
use crate::crypto::envelope::Rejection;
use crate::hub::{Hub, TransferProgress};
use crate::store::{StoreError, TransferRecord};
use crate::transport::TransportError;
use crate::transport::direct::{FileChannels, FileRecord};
use crate::transport::marks::Stream;
use crate::transport::outbound::Outbound;
use crate::transport::rejections::Rejections;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Sender};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    NotLoaded(#[from] NotLoaded),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0} is not an accepted contact; files go only to contacts")]
    NotAccepted(String),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("no such transfer: {0}")]
    Unknown(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the transfers are stopping")]
    Stopped,
}

/// A transfer as the API shows it.
pub type TransferView = (TransferRecord, TransferProgress);

/// What the API asks of the engine.
#[derive(Debug)]
enum Command {
    Send {
        contact: Arc<Contact>,
        path: PathBuf,
        files: Vec<manifest::LocalFile>,
        reply: oneshot::Sender<Result<TransferView, TransferError>>,
    },
    Answer {
        id: Uuid,
        accept: bool,
        reply: oneshot::Sender<Result<TransferView, TransferError>>,
    },
    Cancel {
        id: Uuid,
        reply: oneshot::Sender<Result<TransferView, TransferError>>,
    },
    List {
        reply: oneshot::Sender<Result<Vec<TransferView>, TransferError>>,
    },
    /// A contact's offer or answer, checked for shape; the engine applies
    /// it and says whether it did.
    Control {
        from: Arc<Contact>,
        record: ControlRecord,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
}

#[derive(Debug)]
enum ControlRecord {
    Offer(manifest::CheckedOffer),
    Answer(wire::FileAnswer),
}

/// What the engine needs.
#[derive(Clone)]
pub struct Transfers {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
    pub outbound: Arc<Outbound>,
    /// Frames that contradict their offer are counted with the inbox's
    /// rejections (as malformed).
    pub rejections: Arc<Rejections>,
    /// The direct path's files channels; none when the path is off.
    pub channels: Option<Arc<dyn FileChannels>>,
    pub config: FilesConfig,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").finish_non_exhaustive()
    }
}

/// The API's and the inbox's way to the engine.
#[derive(Debug, Clone)]
pub struct TransfersHandle {
    commands: mpsc::Sender<Command>,
    book: Arc<ContactBook>,
    max_offer_bytes: u64,
}

/// The running engine.
#[derive(Debug)]
pub struct TransfersTask {
    task: JoinHandle<()>,
}

impl TransfersTask {
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the transfers engine failed");
        }
    }
}

/// The engine's commands, made before it starts: the inbox's handlers
/// need the handle before the engine can have the direct path.
#[derive(Debug)]
pub struct Commands(mpsc::Receiver<Command>);

impl TransfersHandle {
    pub fn new(book: Arc<ContactBook>, config: &FilesConfig) -> (TransfersHandle, Commands) {
        let (commands, received) = mpsc::channel(64);
        let handle = TransfersHandle {
            commands,
            book,
            max_offer_bytes: config.max_offer_bytes,
        };
        (handle, Commands(received))
    }
}

/// Starts the engine; it stops its senders when `cancel` fires (partial
/// files stay, for the resume). Frames of the files channels arrive on
/// `frames`.
pub fn spawn(
    transfers: Transfers,
    commands: Commands,
    frames: mpsc::Receiver<FileRecord>,
    cancel: CancellationToken,
) -> TransfersTask {
    let task = tokio::spawn(async move {
        // Everything a life borrows lives in the state, which outlasts it.
        let mut state = (commands.0, frames, transfers, cancel.clone());
        supervisor::restart_on_panic(
            "transfers engine",
            &mut state,
            &cancel,
            |(commands, frames, transfers, cancel)| {
                engine::run(transfers.clone(), commands, frames, cancel).boxed()
            },
        )
        .await;
    });
    TransfersTask { task }
}

fn parse_id(id: &str) -> Result<Uuid, TransferError> {
    Uuid::try_parse(id.trim()).map_err(|_| TransferError::Unknown(id.to_owned()))
}

impl TransfersHandle {
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, TransferError>>) -> Command,
    ) -> Result<T, TransferError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| TransferError::Stopped)?;
        answer.await.map_err(|_| TransferError::Stopped)?
    }

    /// Offers the file or folder at `path` (on this machine) to `to`.
    pub async fn send_file(&self, to: &str, path: &str) -> Result<TransferView, TransferError> {
        self.book.check_loaded()?;
        let contact = self.book.resolve(to)?;
        if !contact.is_accepted() {
            return Err(TransferError::NotAccepted(contact.display_name.clone()));
        }
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(TransferError::InvalidArgument(format!(
                "{} is not an absolute path; kircd reads it on its own machine, from /",
                path.display()
            )));
        }
        // Reading and hashing every byte takes a while for a large file:
        // off the runtime, and before the engine is asked, so that it goes
        // on moving other transfers meanwhile.
        let reading = path.clone();
        let files = tokio::task::spawn_blocking(move || manifest::read_local(&reading))
            .await
            .map_err(|_| TransferError::Stopped)??;
        let total: u64 = files.iter().map(|file| file.size).sum();
        if total > self.max_offer_bytes {
            return Err(TransferError::InvalidArgument(format!(
                "{} is {total} bytes; contacts refuse offers over {} bytes (files.max_offer_bytes, theirs may differ)",
                path.display(),
                self.max_offer_bytes
            )));
        }
        self.ask(|reply| Command::Send {
            contact,
            path,
            files,
            reply,
        })
        .await
    }

    pub async fn answer(&self, id: &str, accept: bool) -> Result<TransferView, TransferError> {
        let id = parse_id(id)?;
        self.ask(|reply| Command::Answer { id, accept, reply })
            .await
    }

    pub async fn cancel(&self, id: &str) -> Result<TransferView, TransferError> {
        let id = parse_id(id)?;
        self.ask(|reply| Command::Cancel { id, reply }).await
    }

    pub async fn list(&self) -> Result<Vec<TransferView>, TransferError> {
        self.ask(|reply| Command::List { reply }).await
    }

    async fn control(
        &self,
        from: Arc<Contact>,
        record: ControlRecord,
    ) -> Result<Applied, HandlerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Control {
                from,
                record,
                reply,
            })
            .await
            .map_err(|_| Box::new(TransferError::Stopped) as HandlerError)?;
        let applied = answer
            .await
            .map_err(|_| Box::new(TransferError::Stopped) as HandlerError)?;
        Ok(applied?)
    }
}

/// The stream both file kinds are judged on: a sender's offers and answers
/// are applied in the order it made them.
const FILES_STREAM: Stream = "files";

/// Offers from contacts (`KIND_FILE_OFFER`).
#[derive(Debug)]
pub struct OfferHandler {
    pub transfers: TransfersHandle,
    pub limits: manifest::OfferLimits,
}

impl ControlHandler for OfferHandler {
    fn stream(&self) -> Stream {
        FILES_STREAM
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            // Only an accepted contact may offer files: a message request
            // or an actor we have not accepted never shows us one.
            let contact = match control.sender {
                Sender::Contact(contact) if contact.is_accepted() => contact,
                _ => return Ok(Err(Rejection::Stranger)),
            };
            let Ok(offer) = wire::FileOffer::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let checked = match manifest::check_offer(&offer, self.limits) {
                Ok(checked) => checked,
                Err(err) => {
                    tracing::warn!(contact = %contact.actor_id, error = %err, "refused a file offer");
                    return Ok(Err(Rejection::Malformed));
                }
            };
            self.transfers
                .control(contact, ControlRecord::Offer(checked))
                .await
        }
        .boxed()
    }
}

/// Answers to offers, from either side (`KIND_FILE_ANSWER`).
#[derive(Debug)]
pub struct AnswerHandler {
    pub transfers: TransfersHandle,
}

/// The most resume points an answer may carry (one per file).
const MAX_RESUME_POINTS: usize = manifest::MAX_FILES;
const MAX_REASON_BYTES: usize = 512;

impl ControlHandler for AnswerHandler {
    fn stream(&self) -> Stream {
        FILES_STREAM
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let contact = match control.sender {
                Sender::Contact(contact) if contact.is_accepted() => contact,
                _ => return Ok(Err(Rejection::Stranger)),
            };
            let Ok(answer) = wire::FileAnswer::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            if answer.transfer_id.len() != 16
                || answer.resume_from.len() > MAX_RESUME_POINTS
                || answer.reason.len() > MAX_REASON_BYTES
            {
                return Ok(Err(Rejection::Malformed));
            }
            self.transfers
                .control(contact, ControlRecord::Answer(answer))
                .await
        }
        .boxed()
    }
}
