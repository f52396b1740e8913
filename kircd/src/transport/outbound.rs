//! The one outbound path. [`Outbound::seal_for`] seals a payload for a
//! contact (signed, boxed with the pair key, or anonymously for a contact
//! request); the sealed envelope goes into the own outbox topic of its
//! [`Lane`], from where the delivery workers take it to the contact.

use std::sync::{Arc, OnceLock};

use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

use super::direct::DirectPath;
use super::kafka::Outbox;
use super::kafka::handoff::{FirstAttempt, Stored};
use super::{Lane, TransportError};
use crate::backends::kafka::Delivered;
use crate::book::Contact;
use crate::crypto::envelope::{self, PairKey};
use crate::crypto::identity::{ActorId, Identity};

/// An envelope sealed for one contact, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub id: Uuid,
    pub recipient: ActorId,
    pub kind: wire::Kind,
    /// The Kafka key: the conversation, so that its records keep their order.
    pub conversation: Uuid,
    pub bytes: Vec<u8>,
}

impl Sealed {
    pub fn lane(&self) -> Lane {
        Lane::of(self.kind)
    }
}

#[derive(Debug)]
pub struct Outbound {
    identity: Arc<Identity>,
    outbox: Outbox,
    /// Held while a control record is sealed and produced, so that the
    /// records of each stream reach the contact in the order of their ids
    /// (the contact refuses one not newer than the last it applied).
    control_order: tokio::sync::Mutex<()>,
    /// The direct path, once the peer manager runs.
    direct: OnceLock<Arc<dyn DirectPath>>,
}

impl std::fmt::Debug for dyn DirectPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectPath")
    }
}

impl Outbound {
    pub fn new(identity: Arc<Identity>, outbox: Outbox) -> Self {
        Outbound {
            identity,
            outbox,
            control_order: tokio::sync::Mutex::new(()),
            direct: OnceLock::new(),
        }
    }

    /// Lets the outbound path use the direct path too (set once, by the
    /// daemon, when the peer manager starts).
    pub fn set_direct(&self, direct: Arc<dyn DirectPath>) {
        let _ = self.direct.set(direct);
    }

    /// Sends a sealed envelope over the direct path as well, if a channel
    /// to the contact is open; true if it went.
    pub async fn send_direct(&self, contact: ActorId, envelope: &[u8]) -> bool {
        match self.direct.get() {
            Some(direct) => direct.send(contact, envelope).await,
            None => false,
        }
    }

    /// Tells the direct path that chat with `contact` happened just now.
    pub fn touch_direct(&self, contact: ActorId) {
        if let Some(direct) = self.direct.get() {
            direct.touch(contact);
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Seals `payload` of `kind` for `contact` under a new message id (a
    /// UUIDv7, so ids sort by creation).
    pub fn seal_for(&self, contact: &Contact, kind: wire::Kind, payload: &[u8]) -> Sealed {
        let id = envelope::new_message_id();
        let bytes = if kind == wire::Kind::ContactRequest {
            // The contact does not know our keys yet.
            envelope::seal_anonymous(
                &self.identity,
                contact.actor_id,
                &contact.box_key,
                kind,
                id,
                payload,
            )
        } else {
            envelope::seal(
                &self.identity,
                contact.actor_id,
                &contact.pair,
                kind,
                id,
                payload,
            )
        };
        Sealed {
            id,
            recipient: contact.actor_id,
            kind,
            conversation: contact.conversation_id,
            bytes,
        }
    }

    /// Puts a sealed envelope (or one sealed earlier and stored) into the
    /// own outbox of its lane; returns where it landed once the broker
    /// acknowledged it, and the wait for the delivery worker's first
    /// attempt to hand it on. `stored` tells the worker whether a chat
    /// record's message is stored.
    pub async fn enqueue(
        &self,
        lane: Lane,
        conversation: Uuid,
        bytes: &[u8],
        stored: Stored,
    ) -> Result<(Delivered, FirstAttempt), TransportError> {
        self.outbox
            .produce(lane, conversation.as_bytes(), bytes, stored)
            .await
    }

    /// Seals a record other than chat for `contact` and puts it in the own
    /// outbox of its lane (`rpc-out`; `data-out` for channel records).
    /// Sealing (which picks the id) and producing happen under one lock:
    /// the contact applies a stream's records only in increasing id order,
    /// so they must leave in that order. Typing and presence, which are
    /// worth nothing once late, take only the direct path while it is
    /// open: that spares the free tier's budget, and a closed channel puts
    /// them back on Kafka by itself.
    pub async fn send_control(
        &self,
        contact: &Contact,
        kind: wire::Kind,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let _in_order = self.control_order.lock().await;
        let sealed = self.seal_for(contact, kind, payload);
        if matches!(kind, wire::Kind::Typing | wire::Kind::Presence)
            && self.send_direct(contact.actor_id, &sealed.bytes).await
        {
            return Ok(());
        }
        self.enqueue(
            sealed.lane(),
            sealed.conversation,
            &sealed.bytes,
            Stored::Before,
        )
        .await
        .map(drop)
    }

    /// Seals a record to this actor itself and produces it straight to the
    /// own rpc-in (the keep-warm heartbeat).
    pub async fn send_to_self(
        &self,
        kind: wire::Kind,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let me = self.identity.id();
        let pair = PairKey::new(&self.identity, &self.identity.box_key());
        let bytes = envelope::seal(
            &self.identity,
            me,
            &pair,
            kind,
            envelope::new_message_id(),
            payload,
        );
        self.outbox
            .produce_to_own_inbox(me.as_bytes(), &bytes)
            .await
            .map(drop)
    }
}
