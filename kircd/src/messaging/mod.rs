//! The messaging core: contacts, sending, receiving, receipts (DESIGN §2–§4).
//!
//! [`Messaging`] holds what the API calls act on and is shared with the
//! workers: the delivery workers (own `data-out`/`rpc-out` → peers'
//! `data-in`/`rpc-in`) and the inbox worker (own `data-in`/`rpc-in` → the
//! database → events). Every change is persisted first and published as an
//! event second; offsets are stored only after that.

mod delivery;
mod inbox;
pub mod links;
pub mod marks;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use kirc_proto::v1::{self as pb, event::Kind};
use kirc_proto::wire::v1 as wire;
use prost::Message;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::contacts::{self, InviteError};
use crate::envelope::{self, Rejection};
use crate::hub::Hub;
use crate::identity::{ActorId, Identity};
use crate::presence::Live;
use crate::store::{self, ContactRecord, ContactState, MessageState, StoreError};
use crate::supervise::Backoff;
use crate::traffic::Budgets;
use links::{Outbox, PeerProducers};

/// Longest chat message accepted from the API, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("starting: {0}")]
    NotReady(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error("no contact matches {0:?}; `ListContacts` shows them")]
    UnknownContact(String),
    #[error("{0:?} matches several contacts; use the actor id")]
    AmbiguousContact(String),
    #[error("{0} is blocked; unblock them first")]
    Blocked(String),
    #[error("{0} has asked to be added; accept the request first")]
    NotAccepted(String),
    #[error("no such conversation: {0}")]
    UnknownConversation(String),
    #[error("no such message in that conversation: {0}")]
    UnknownMessage(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the outbox is unreachable: {0}")]
    Outbox(String),
}

impl From<sqlx::Error> for MessagingError {
    fn from(err: sqlx::Error) -> Self {
        MessagingError::Store(StoreError::Database(err))
    }
}

/// Counts of rejected records, by reason.
#[derive(Debug, Default)]
pub struct Rejections {
    counts: Mutex<BTreeMap<Rejection, u64>>,
}

impl Rejections {
    pub fn add(&self, rejection: Rejection) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(rejection)
            .or_default() += 1;
    }

    pub fn to_pb(&self) -> Vec<pb::RejectionCount> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(rejection, count)| pb::RejectionCount {
                reason: rejection.reason().to_owned(),
                count: *count,
            })
            .collect()
    }
}

/// The messaging core, shared by the API and the workers.
pub struct Messaging {
    pub identity: Identity,
    pub me: ActorId,
    display_name: String,
    config: Config,
    pool: PgPool,
    hub: Arc<Hub>,
    outbox: Outbox,
    peers: PeerProducers,
    /// Contacts by id, as stored; refreshed on every change.
    contacts: RwLock<HashMap<ActorId, ContactRecord>>,
    rejections: Rejections,
    /// Presence, typing and rate limits on Valkey.
    live: Arc<Live>,
    budgets: Budgets,
    ready: AtomicBool,
    /// Becomes true once, when `ready` does; the daemon waits on it before
    /// telling systemd it is ready.
    ready_signal: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Messaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    kirc_proto::unix_ms(SystemTime::now())
}

impl Messaging {
    pub fn new(
        config: &Config,
        identity: Identity,
        pool: PgPool,
        hub: Arc<Hub>,
        live: Arc<Live>,
        budgets: Budgets,
    ) -> Result<Arc<Self>, MessagingError> {
        let me = identity.id();
        let outbox = Outbox::new(&config.kafka, me, budgets.clone())
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        hub.set_actor(me.to_string(), config.actor_name.clone());
        Ok(Arc::new(Messaging {
            identity,
            me,
            display_name: config.actor_name.clone(),
            config: config.clone(),
            pool,
            hub,
            outbox,
            contacts: RwLock::new(HashMap::new()),
            rejections: Rejections::default(),
            live,
            peers: PeerProducers::new(budgets.clone()),
            budgets,
            ready: AtomicBool::new(false),
            ready_signal: tokio::sync::watch::Sender::new(false),
        }))
    }

    fn check_ready(&self) -> Result<(), MessagingError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(MessagingError::NotReady(String::from(
                "kircd has not reached its database yet; see GetStatus",
            )))
        }
    }

    /// This actor's signed public profile, as contacts get it.
    pub fn signed_profile(&self) -> wire::SignedProfile {
        let public = &self.config.public;
        let profile = wire::PublicProfile {
            signing_key: self.identity.signing_key().to_bytes().to_vec(),
            box_key: self.identity.box_key().as_bytes().to_vec(),
            display_name: self.display_name.clone(),
            kafka: Some(wire::KafkaAccess {
                bootstrap_servers: public.bootstrap_servers.clone(),
                data_in_topic: self.config.kafka.topics.data_in.clone(),
                rpc_in_topic: self.config.kafka.topics.rpc_in.clone(),
                security_protocol: public.security_protocol.clone(),
                sasl_mechanism: public.sasl_mechanism.clone(),
                username: public.username.clone().unwrap_or_default(),
                password: public
                    .password
                    .as_ref()
                    .map(|password| secrecy::ExposeSecret::expose_secret(password).to_owned())
                    .unwrap_or_default(),
                ca_pem: public.ca_pem.clone().unwrap_or_default(),
            }),
            updated_at_unix_ms: now_ms(),
        };
        contacts::sign_profile(&self.identity, &profile)
    }

    // ------------------------------------------------------------ contacts

    fn remember(&self, contact: &ContactRecord) {
        self.contacts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(contact.actor_id, contact.clone());
        self.hub
            .publish_event(Kind::ContactChanged(contact.to_pb()));
    }

    pub fn known(&self, actor: &ActorId) -> Option<ContactRecord> {
        self.contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(actor)
            .cloned()
    }

    /// A contact by actor id, display name or conversation id.
    fn resolve(&self, reference: &str) -> Result<ContactRecord, MessagingError> {
        let reference = reference.trim();
        let contacts = self
            .contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(id) = reference.parse::<ActorId>()
            && let Some(contact) = contacts.get(&id)
        {
            return Ok(contact.clone());
        }
        let matches: Vec<&ContactRecord> = contacts
            .values()
            .filter(|contact| {
                contact.display_name.eq_ignore_ascii_case(reference)
                    || contact.conversation_id.to_string() == reference
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(MessagingError::UnknownContact(reference.to_owned())),
            _ => Err(MessagingError::AmbiguousContact(reference.to_owned())),
        }
    }

    pub async fn create_invite(
        &self,
        ttl: Option<Duration>,
    ) -> Result<pb::CreateInviteResponse, MessagingError> {
        self.check_ready()?;
        let ttl = ttl.unwrap_or(self.config.messaging.invite_ttl);
        let expires_at_unix_ms = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let (secret, hash) = contacts::new_secret();
        store::insert_invite(&self.pool, Uuid::now_v7(), &hash, expires_at_unix_ms).await?;
        let token = contacts::encode_token(&wire::Invite {
            profile: Some(self.signed_profile()),
            secret: secret.to_vec(),
            expires_at_unix_ms,
        });
        Ok(pb::CreateInviteResponse {
            token,
            expires_at_unix_ms,
        })
    }

    pub async fn add_contact(&self, token: &str) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let (invite, profile) = contacts::read_token(token, now_ms())?;
        if profile.actor_id == self.me {
            return Err(InviteError::OwnInvite.into());
        }
        if let Some(existing) = self.known(&profile.actor_id) {
            match existing.state {
                ContactState::Blocked => {
                    return Err(MessagingError::Blocked(existing.display_name));
                }
                ContactState::Accepted => {
                    return Err(InviteError::AlreadyUsed(existing.display_name).into());
                }
                ContactState::Request => {}
            }
        }
        let contact = store::save_contact(
            &self.pool,
            &self.identity,
            &profile,
            ContactState::Accepted,
            false,
        )
        .await?;
        self.remember(&contact);
        let request = wire::ContactRequest {
            profile: Some(self.signed_profile()),
            invite_secret: invite.secret,
        };
        let envelope = envelope::seal_anonymous(
            &self.identity,
            contact.actor_id,
            &contact.box_key,
            wire::Kind::ContactRequest,
            envelope::new_message_id(),
            &request.encode_to_vec(),
        );
        self.send_control(&contact, &envelope).await?;
        Ok(contact.to_pb())
    }

    pub async fn accept_contact(&self, reference: &str) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let contact = self.resolve(reference)?;
        if contact.state == ContactState::Accepted {
            return Ok(contact.to_pb());
        }
        let contact = store::set_contact_state(
            &self.pool,
            &self.identity,
            contact.actor_id,
            ContactState::Accepted,
        )
        .await?
        .ok_or_else(|| MessagingError::UnknownContact(reference.to_owned()))?;
        self.remember(&contact);
        self.send_accepted(&contact).await?;
        Ok(contact.to_pb())
    }

    pub async fn block_contact(
        &self,
        reference: &str,
        blocked: bool,
    ) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let contact = self.resolve(reference)?;
        let state = if blocked {
            ContactState::Blocked
        } else {
            ContactState::Accepted
        };
        let contact = store::set_contact_state(&self.pool, &self.identity, contact.actor_id, state)
            .await?
            .ok_or_else(|| MessagingError::UnknownContact(reference.to_owned()))?;
        self.remember(&contact);
        Ok(contact.to_pb())
    }

    pub fn list_contacts(&self) -> Result<Vec<pb::Contact>, MessagingError> {
        self.check_ready()?;
        let contacts = self
            .contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<pb::Contact> = contacts.values().map(ContactRecord::to_pb).collect();
        list.sort_by_key(|contact| contact.added_at_unix_ms);
        Ok(list)
    }

    async fn send_accepted(&self, contact: &ContactRecord) -> Result<(), MessagingError> {
        let accepted = wire::ContactAccepted {
            profile: Some(self.signed_profile()),
        };
        let envelope = envelope::seal(
            &self.identity,
            contact.actor_id,
            &contact.pair,
            wire::Kind::ContactAccepted,
            envelope::new_message_id(),
            &accepted.encode_to_vec(),
        );
        self.send_control(contact, &envelope).await
    }

    /// Puts a control envelope in the own rpc-out; the rpc delivery worker
    /// takes it to the contact's rpc-in.
    async fn send_control(
        &self,
        contact: &ContactRecord,
        envelope: &[u8],
    ) -> Result<(), MessagingError> {
        self.outbox
            .produce(
                &self.config.kafka.topics.rpc_out,
                contact.conversation_id.as_bytes(),
                envelope,
            )
            .await
            .map(drop)
            .map_err(|err| MessagingError::Outbox(err.to_string()))
    }

    // ------------------------------------------------------------ messages

    pub async fn send_message(
        &self,
        to: &str,
        text: &str,
        action: bool,
    ) -> Result<pb::ChatMessage, MessagingError> {
        self.check_ready()?;
        if text.trim().is_empty() {
            return Err(MessagingError::InvalidArgument(String::from(
                "the message is empty",
            )));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(MessagingError::InvalidArgument(format!(
                "the message is {} bytes; the limit is {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let contact = self.resolve(to)?;
        match contact.state {
            ContactState::Blocked => return Err(MessagingError::Blocked(contact.display_name)),
            ContactState::Request => return Err(MessagingError::NotAccepted(contact.display_name)),
            ContactState::Accepted => {}
        }
        let id = envelope::new_message_id();
        let payload = wire::ChatPayload {
            text: text.to_owned(),
            action,
        };
        let sealed = envelope::seal(
            &self.identity,
            contact.actor_id,
            &contact.pair,
            wire::Kind::Chat,
            id,
            &payload.encode_to_vec(),
        );
        let outgoing = store::Outgoing {
            id,
            conversation_id: contact.conversation_id,
            sender: self.me,
            action,
            body: text.to_owned(),
            created_at_unix_ms: envelope::Header {
                message_id: id,
                sender: self.me,
                recipient: contact.actor_id,
                kind: wire::Kind::Chat,
            }
            .created_at_unix_ms(),
            envelope: sealed,
        };
        let mut message = store::insert_outgoing(&self.pool, &outgoing).await?;
        self.hub.publish_event(Kind::MessageAdded(message.clone()));
        self.enqueue(id, contact.conversation_id, &outgoing.envelope)
            .await?;
        message.state = pb::MessageState::Queued as i32;
        Ok(message)
    }

    /// Produces a stored message to the own data-out; once acknowledged it is
    /// durable there and becomes QUEUED.
    async fn enqueue(
        &self,
        id: Uuid,
        conversation: Uuid,
        envelope: &[u8],
    ) -> Result<(), MessagingError> {
        self.outbox
            .produce(
                &self.config.kafka.topics.data_out,
                conversation.as_bytes(),
                envelope,
            )
            .await
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        self.advance(&[id], MessageState::Queued).await?;
        Ok(())
    }

    /// Moves sent messages forward and publishes each move.
    async fn advance(&self, ids: &[Uuid], state: MessageState) -> Result<(), MessagingError> {
        for (id, conversation) in store::advance_messages(&self.pool, ids, state, true).await? {
            self.hub
                .publish_event(Kind::MessageStateChanged(pb::MessageStateChanged {
                    message_id: id.to_string(),
                    conversation_id: conversation.to_string(),
                    state: state.to_pb() as i32,
                }));
        }
        Ok(())
    }

    pub async fn history(
        &self,
        request: &pb::GetHistoryRequest,
    ) -> Result<pb::GetHistoryResponse, MessagingError> {
        self.check_ready()?;
        let conversation = parse_uuid(&request.conversation_id, "conversation_id")?;
        let anchor = match &request.anchor {
            None => store::Anchor::Latest,
            Some(pb::get_history_request::Anchor::Before(id)) => {
                store::Anchor::Before(parse_uuid(id, "before")?)
            }
            Some(pb::get_history_request::Anchor::After(id)) => {
                store::Anchor::After(parse_uuid(id, "after")?)
            }
            Some(pb::get_history_request::Anchor::Around(id)) => {
                store::Anchor::Around(parse_uuid(id, "around")?)
            }
        };
        let limit = if request.limit == 0 {
            50
        } else {
            request.limit
        };
        let page = store::history(&self.pool, conversation, anchor, limit)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(format!("{anchor:?}")))?;
        Ok(pb::GetHistoryResponse {
            messages: page.messages,
            more_before: page.more_before,
            more_after: page.more_after,
        })
    }

    pub async fn conversations(&self) -> Result<Vec<pb::Conversation>, MessagingError> {
        self.check_ready()?;
        Ok(store::conversations(&self.pool, &self.identity).await?)
    }

    pub async fn search(
        &self,
        request: &pb::SearchRequest,
    ) -> Result<Vec<pb::ChatMessage>, MessagingError> {
        self.check_ready()?;
        if request.query.trim().is_empty() {
            return Err(MessagingError::InvalidArgument(String::from(
                "the search is empty",
            )));
        }
        let conversation = if request.conversation_id.is_empty() {
            None
        } else {
            Some(parse_uuid(&request.conversation_id, "conversation_id")?)
        };
        let limit = if request.limit == 0 {
            50
        } else {
            request.limit
        };
        Ok(store::search(&self.pool, &request.query, conversation, limit).await?)
    }

    pub async fn mark_read(
        &self,
        conversation_id: &str,
        up_to: &str,
    ) -> Result<pb::MarkReadResponse, MessagingError> {
        self.check_ready()?;
        let conversation = parse_uuid(conversation_id, "conversation_id")?;
        let up_to = parse_uuid(up_to, "up_to")?;
        let before = self
            .hub
            .conversations()
            .iter()
            .find(|known| known.id == conversation_id)
            .map_or(0, |known| known.last_read_seq);
        let (last_read_seq, unread, moved) = store::mark_read(&self.pool, conversation, up_to)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(up_to.to_string()))?;
        if moved {
            self.hub
                .publish_event(Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
                    conversation_id: conversation_id.to_owned(),
                    last_read_seq,
                    unread,
                }));
            if self.config.messaging.read_receipts {
                let ids = store::incoming_between(
                    &self.pool,
                    conversation,
                    i64::try_from(before).unwrap_or(0),
                    i64::try_from(last_read_seq).unwrap_or(0),
                )
                .await?;
                if let Some(peer) = self.peer_of(conversation) {
                    self.send_receipt(&peer, wire::ReceiptKind::Read, &ids)
                        .await?;
                }
            }
        }
        Ok(pb::MarkReadResponse {
            last_read_seq,
            unread,
            moved,
        })
    }

    fn peer_of(&self, conversation: Uuid) -> Option<ContactRecord> {
        self.contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|contact| contact.conversation_id == conversation)
            .cloned()
    }

    async fn send_receipt(
        &self,
        contact: &ContactRecord,
        kind: wire::ReceiptKind,
        ids: &[Uuid],
    ) -> Result<(), MessagingError> {
        // A receipt of thousands of ids would exceed the envelope limit;
        // chunks of 1,000 ids stay far below it.
        for chunk in ids.chunks(1000) {
            let receipt = wire::Receipt {
                kind: kind as i32,
                message_ids: chunk.iter().map(|id| id.as_bytes().to_vec()).collect(),
            };
            let envelope = envelope::seal(
                &self.identity,
                contact.actor_id,
                &contact.pair,
                wire::Kind::Receipt,
                envelope::new_message_id(),
                &receipt.encode_to_vec(),
            );
            self.send_control(contact, &envelope).await?;
        }
        Ok(())
    }

    /// Sends the current profile to every contact if it changed since it was
    /// last sent (a new address, credential or display name), so that they
    /// reach this actor where it is now.
    async fn publish_profile_if_changed(
        &self,
        contacts: &[ContactRecord],
    ) -> Result<(), MessagingError> {
        let mut current = wire::PublicProfile::decode(self.signed_profile().profile.as_slice())
            .unwrap_or_default();
        current.updated_at_unix_ms = 0;
        let current = current.encode_to_vec();
        let published = store::published_profile(&self.pool).await?;
        if published.as_deref() == Some(current.as_slice()) {
            return Ok(());
        }
        // The first start has nobody to tell; later changes go to everyone
        // who accepted us.
        let recipients: Vec<&ContactRecord> = contacts
            .iter()
            .filter(|contact| contact.state == ContactState::Accepted)
            .collect();
        if published.is_some() {
            tracing::info!(
                contacts = recipients.len(),
                "the public profile changed; sending it to contacts"
            );
            for contact in recipients {
                self.send_accepted(contact).await?;
            }
        }
        store::set_published_profile(&self.pool, &current).await?;
        Ok(())
    }

    pub fn health(&self) -> crate::config::HealthConfig {
        self.config.health.clone()
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Contacts we exchange messages with.
    pub fn accepted_contacts(&self) -> Vec<ActorId> {
        self.contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|contact| contact.state == ContactState::Accepted)
            .map(|contact| contact.actor_id)
            .collect()
    }

    /// Tells every accepted contact our presence.
    pub async fn send_presence(
        &self,
        state: pb::PresenceState,
        text: &str,
        ttl: Duration,
    ) -> Result<(), MessagingError> {
        let contacts: Vec<ContactRecord> = self
            .contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|contact| contact.state == ContactState::Accepted)
            .cloned()
            .collect();
        let presence = wire::Presence {
            state: state as i32,
            text: text.to_owned(),
            ttl_seconds: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1),
        };
        for contact in contacts {
            let envelope = envelope::seal(
                &self.identity,
                contact.actor_id,
                &contact.pair,
                wire::Kind::Presence,
                envelope::new_message_id(),
                &presence.encode_to_vec(),
            );
            self.send_control(&contact, &envelope).await?;
        }
        Ok(())
    }

    /// Tells the peer of `conversation` that we type (or stopped).
    pub async fn send_typing(
        &self,
        conversation: Uuid,
        active: bool,
    ) -> Result<(), MessagingError> {
        let contact = self
            .peer_of(conversation)
            .ok_or_else(|| MessagingError::UnknownConversation(conversation.to_string()))?;
        if contact.state != ContactState::Accepted {
            return Ok(());
        }
        let envelope = envelope::seal(
            &self.identity,
            contact.actor_id,
            &contact.pair,
            wire::Kind::Typing,
            envelope::new_message_id(),
            &wire::Typing { active }.encode_to_vec(),
        );
        self.send_control(&contact, &envelope).await
    }

    /// Produces a heartbeat to the own rpc-in (the inbox consumes it), so that
    /// the cluster sees both a produce and a consume.
    pub async fn keep_warm(&self) -> Result<(), MessagingError> {
        let pair = envelope::PairKey::new(&self.identity, &self.identity.box_key());
        let envelope = envelope::seal(
            &self.identity,
            self.me,
            &pair,
            wire::Kind::Heartbeat,
            envelope::new_message_id(),
            &wire::Heartbeat {}.encode_to_vec(),
        );
        self.outbox
            .produce(
                &self.config.kafka.topics.rpc_in,
                self.me.as_bytes(),
                &envelope,
            )
            .await
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        self.hub
            .update_status(|status| status.heartbeat_produced_unix_ms = now_ms());
        Ok(())
    }

    /// Waits until the messaging core has loaded.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready_signal.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    pub fn publish_rejections(&self) {
        self.hub.set_rejections(self.rejections.to_pb());
    }

    /// Loads the profile, contacts and conversations, and re-sends what a
    /// crash left between the database and the outbox.
    async fn load(&self) -> Result<(), MessagingError> {
        store::ensure_profile(&self.pool, &self.identity, &self.display_name).await?;
        let contacts = store::contacts(&self.pool, &self.identity).await?;
        {
            let mut known = self
                .contacts
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            known.clear();
            known.extend(
                contacts
                    .iter()
                    .map(|contact| (contact.actor_id, contact.clone())),
            );
        }
        let conversations = store::conversations(&self.pool, &self.identity).await?;
        self.ready.store(true, Ordering::Release);
        self.hub.load_view(
            contacts.iter().map(ContactRecord::to_pb).collect(),
            conversations,
        );
        self.ready_signal.send_replace(true);
        self.publish_profile_if_changed(&contacts).await?;
        let pending = store::pending_outgoing(&self.pool).await?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "re-sending messages stored but not yet in the outbox"
            );
        }
        for (id, conversation, envelope) in pending {
            self.enqueue(id, conversation, &envelope).await?;
        }
        Ok(())
    }
}

fn parse_uuid(text: &str, field: &str) -> Result<Uuid, MessagingError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| MessagingError::InvalidArgument(format!("{field} is not a UUID: {text:?}")))
}

/// The running messaging workers.
#[derive(Debug)]
pub struct MessagingHandle {
    task: JoinHandle<()>,
}

impl MessagingHandle {
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the messaging task failed");
        }
    }
}

/// Loads the messaging state once the database answers (retrying with
/// backoff), then runs the delivery and inbox workers until cancelled.
pub fn spawn(messaging: Arc<Messaging>, cancel: CancellationToken) -> MessagingHandle {
    let task = tokio::spawn(async move {
        let health = messaging.config.health.clone();
        let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
        loop {
            match messaging.load().await {
                Ok(()) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "messaging is waiting for the database");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        tracing::info!(actor = %messaging.me, "messaging ready");
        let topics = messaging.config.kafka.topics.clone();
        let workers = vec![
            tokio::spawn(delivery::run(
                Arc::clone(&messaging),
                topics.data_out.clone(),
                delivery::Route::Data,
                cancel.clone(),
            )),
            tokio::spawn(delivery::run(
                Arc::clone(&messaging),
                topics.rpc_out.clone(),
                delivery::Route::Rpc,
                cancel.clone(),
            )),
            tokio::spawn(inbox::run(Arc::clone(&messaging), cancel.clone())),
            tokio::spawn(keep_warm(Arc::clone(&messaging), cancel.clone())),
            tokio::spawn(report_traffic(Arc::clone(&messaging), cancel.clone())),
        ];
        for worker in workers {
            if let Err(err) = worker.await {
                tracing::error!(error = %err, "a messaging worker failed");
            }
        }
        messaging.outbox.flush(Duration::from_secs(5));
    });
    MessagingHandle { task }
}

/// The keep-warm heartbeat: at start and then every interval.
async fn keep_warm(messaging: Arc<Messaging>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(messaging.config.messaging.keep_warm_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(err) = messaging.keep_warm().await {
            tracing::warn!(error = %err, "keep-warm heartbeat not produced; retrying at the next interval");
        }
    }
}

/// Publishes the traffic figures once a second while traffic flows, and not
/// at all while it does not.
async fn report_traffic(messaging: Arc<Messaging>, cancel: CancellationToken) {
    let activity = Arc::clone(&messaging.budgets.activity);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = activity.notified() => {}
        }
        loop {
            let traffic = messaging.budgets.snapshot();
            let quiet = traffic.iter().all(|cluster| cluster.last_second_bytes == 0);
            messaging
                .hub
                .update_status(|status| status.traffic = traffic);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if quiet
                && messaging
                    .budgets
                    .snapshot()
                    .iter()
                    .all(|cluster| cluster.last_second_bytes == 0)
            {
                messaging
                    .hub
                    .update_status(|status| status.traffic = messaging.budgets.snapshot());
                break;
            }
        }
    }
}
