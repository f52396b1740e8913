//! How envelopes leave and arrive. Outbound, everything goes through one
//! path: [`outbound::Outbound`] seals a payload for a contact
//! (`seal_for`) and puts it in the own outbox topic of its [`Lane`], from
//! where the delivery workers hand it to a [`Transport`] that reaches the
//! contact (today the contact's Kafka inbox). Inbound, the inbox worker
//! checks every record of the own inboxes (`inbox/check.rs`, a pure
//! function of the record and the contact book), rate-limits senders, and
//! hands chat to the [`router::ChatSink`] and each control kind to the
//! handler registered for it (`router.rs`), after judging it against its
//! sender's mark (`marks.rs`).
//!
//! This module knows envelopes, Kafka and the contact book; what a record
//! means is for the handlers (contacts/, messaging/, presence/) to say.

pub mod direct;
pub mod inbox;
pub mod kafka;
pub mod marks;
pub mod outbound;
pub mod rejections;
pub mod router;

use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;

use crate::backends::traffic::Priority;
use crate::book::Contact;

/// The two kinds of traffic, each with its own topics (`data-*` for chat,
/// `rpc-*` for everything else) and its own priority under a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Chat messages and channel records: durable (the inbox and outbox
    /// topics of this lane keep records for days, the control lane's for
    /// one), delivered once, in order.
    Data,
    /// Control records: receipts, profiles, presence, typing, heartbeats.
    Control,
}

/// Whether records of `kind` are chat as far as transport goes: a row of
/// the sender's messages, delivered, stored by the chat sink, acknowledged
/// by receipts and copied over the direct path. A reaction, edit or
/// deletion is, so that it takes the same path as the messages it acts on.
pub fn carries_chat(kind: wire::Kind) -> bool {
    matches!(kind, wire::Kind::Chat | wire::Kind::MessageAct)
}

impl Lane {
    /// The lane of a wire kind.
    pub fn of(kind: wire::Kind) -> Lane {
        match kind {
            wire::Kind::Chat
            | wire::Kind::MessageAct
            | wire::Kind::ChannelPost
            | wire::Kind::ChannelRelay
            | wire::Kind::ChannelCommand
            | wire::Kind::ChannelKey => Lane::Data,
            _ => Lane::Control,
        }
    }

    /// Under a budget, control goes before chat, so that receipts, presence
    /// and typing stay live while a burst of messages is paced.
    pub fn priority(self) -> Priority {
        match self {
            Lane::Data => Priority::Chat,
            Lane::Control => Priority::Control,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lane::Data => "data",
            Lane::Control => "rpc",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the outbox is unreachable: {0}")]
    Outbox(String),
    #[error("cannot reach the contact: {0}")]
    Peer(String),
}

/// A way to hand a sealed envelope to a contact. The delivery workers call
/// it for every record of the own outbox until it succeeds; an error is
/// retried with backoff (the contact is looked up again each time, so a
/// corrected profile takes effect at once).
pub trait Transport: Send + Sync {
    fn deliver<'a>(
        &'a self,
        contact: &'a Contact,
        lane: Lane,
        key: &'a [u8],
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Drops what is held for reaching `contact` after a failure, so that
    /// the next attempt starts afresh (a changed DNS name, a replaced
    /// cluster).
    fn forget(&self, contact: &Contact);
}
