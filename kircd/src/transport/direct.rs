//! The seam to the direct path (the `peers` subsystem, above this layer):
//! what the outbound path needs of it, and what it hands the inbox.
//! Envelopes travel on it exactly as sealed for Kafka: the channel is a
//! faster pipe, never a trusted one.

use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::crypto::identity::ActorId;

/// Why a file frame could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSendError {
    #[error("no direct path to the contact is open")]
    NotOpen,
    #[error("the direct path closed: {0}")]
    Closed(String),
}

/// Open data channels to contacts.
pub trait DirectPath: Send + Sync {
    /// Sends a sealed envelope to `contact` if a channel to it is open;
    /// false if none is (the caller then relies on Kafka alone).
    fn send<'a>(&'a self, contact: ActorId, envelope: &'a [u8]) -> BoxFuture<'a, bool>;

    /// Chat with `contact` happened just now (sent or received, over either
    /// path): a contact in use may take a place from one idle longer.
    fn touch(&self, contact: ActorId);
}

/// An envelope that arrived on the channel of `from`; the inbox checks it
/// like any record of its own topics.
#[derive(Debug, Clone)]
pub struct DirectRecord {
    pub from: ActorId,
    pub bytes: Bytes,
    /// When the channel handed it over, for the timing marks.
    pub arrived: Option<SystemTime>,
}

/// The files channel beside each chat channel: what the transfers need of
/// the direct path.
pub trait FileChannels: Send + Sync {
    /// Sends one frame on the files channel to `contact`; waits while the
    /// channel holds its limit of unsent bytes (the transfers' back-
    /// pressure), fails at once if no path to the contact is open.
    fn send_file<'a>(
        &'a self,
        contact: ActorId,
        frame: Bytes,
    ) -> BoxFuture<'a, Result<(), FileSendError>>;

    fn is_open(&self, contact: ActorId) -> bool;

    /// The largest message the files channel to `contact` carries, as both
    /// ends agreed; `None` if no path is open.
    fn max_message<'a>(&'a self, contact: ActorId) -> BoxFuture<'a, Option<usize>>;

    /// Changes each time a path opens, so that a waiting transfer can look
    /// again.
    fn opened(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The transfer with `contact` is using the path: keep it, or open one.
    fn touch(&self, contact: ActorId);
}

/// A frame that arrived on the files channel of `from`.
#[derive(Debug, Clone)]
pub struct FileRecord {
    pub from: ActorId,
    pub bytes: Bytes,
}
