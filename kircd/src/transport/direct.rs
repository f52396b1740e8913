//! The seam to the direct path (the `peers` subsystem, above this layer):
//! what the outbound path needs of it, and what it hands the inbox.
//! Envelopes travel on it exactly as sealed for Kafka: the channel is a
//! faster pipe, never a trusted one.

use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::crypto::identity::ActorId;

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
