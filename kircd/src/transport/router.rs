//! The inbound router: what each kind of record from the own inboxes is
//! handed to once the inbox has checked it. Chat goes to one [`ChatSink`]
//! in batches; each control kind goes to the [`ControlHandler`] registered
//! for it, one record at a time, after the inbox established its sender
//! (`Opening`) and judged it against the sender's mark for the handler's
//! stream. A kind without a handler is refused as malformed, so adding a
//! kind (signalling, file offers, channel records) is registering a handler,
//! not editing the inbox.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

use super::marks::Stream;
use crate::book::Contact;
use crate::crypto::envelope::{Header, Rejection};
use crate::crypto::profile::VerifiedProfile;
use crate::store::Incoming;

/// A failure that is not the record's fault (the database is away): the
/// batch is processed again later.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// How a kind's records are authenticated before a handler sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// From a contact that may write to us (not blocked): signed with its
    /// key, boxed with the pair key.
    FromContact,
    /// A contact request from someone who may not be a contact yet: boxed
    /// anonymously to us, with the sender's signed profile inside, and the
    /// envelope signed by the key that profile names.
    ContactRequest,
    /// From this actor itself (the keep-warm heartbeat).
    Own,
}

/// Who sent a control record, as its opening established.
#[derive(Debug, Clone)]
pub enum Sender {
    Contact(Arc<Contact>),
    /// The profile inside a contact request, verified.
    Requester(Box<VerifiedProfile>),
    Own,
}

/// A control record, authenticated and decrypted.
#[derive(Debug, Clone)]
pub struct Control<'a> {
    pub header: &'a Header,
    pub sender: Sender,
    pub payload: Vec<u8>,
}

/// Whether a control record made at `created_at_unix_ms` is older than
/// `limit` now: what such a record says (typing, presence, signalling) no
/// longer holds.
pub fn is_stale(created_at_unix_ms: i64, limit: std::time::Duration) -> bool {
    kirc_proto::unix_ms(std::time::SystemTime::now()) - created_at_unix_ms
        > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

/// What a handler made of a record: applied (its stream's mark moves), or
/// refused for a reason that is counted like any rejection.
pub type Applied = Result<(), Rejection>;

/// Handles one control kind.
pub trait ControlHandler: Send + Sync {
    /// The stream whose mark the kind's records are judged against.
    fn stream(&self) -> Stream;

    fn opening(&self) -> Opening {
        Opening::FromContact
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>>;
}

/// What storing a batch of chat messages found.
#[derive(Debug, Default)]
pub struct ChatOutcome {
    /// Already stored, and the same record again: not an attack.
    pub redelivered: u64,
    /// Refused by the sink: replays (already stored under another sender
    /// or other bytes) and acts on messages their sender may not act on.
    pub refused: Vec<(Uuid, Rejection)>,
}

/// Takes the chat messages of a batch, in order.
pub trait ChatSink: Send + Sync {
    fn store<'a>(
        &'a self,
        chats: &'a [Incoming],
    ) -> BoxFuture<'a, Result<ChatOutcome, HandlerError>>;
}

/// The handlers of every kind.
#[derive(Clone)]
pub struct Router {
    chat: Arc<dyn ChatSink>,
    control: HashMap<wire::Kind, Arc<dyn ControlHandler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("control", &self.control.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(chat: Arc<dyn ChatSink>) -> Self {
        Router {
            chat,
            control: HashMap::new(),
        }
    }

    /// Registers the handler of a control kind; a kind has one handler.
    pub fn on(&mut self, kind: wire::Kind, handler: Arc<dyn ControlHandler>) -> &mut Self {
        debug_assert!(kind != wire::Kind::Chat, "chat goes to the chat sink");
        self.control.insert(kind, handler);
        self
    }

    pub fn chat(&self) -> &Arc<dyn ChatSink> {
        &self.chat
    }

    pub fn control(&self, kind: wire::Kind) -> Option<&Arc<dyn ControlHandler>> {
        self.control.get(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_record_is_stale_once_older_than_its_limit() {
        let limit = Duration::from_secs(5);
        let now = kirc_proto::unix_ms(SystemTime::now());
        assert!(!is_stale(now, limit));
        assert!(!is_stale(now - 4_000, limit));
        assert!(is_stale(now - 6_000, limit));
    }
}
