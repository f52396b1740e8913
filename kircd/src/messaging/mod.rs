//! The messaging core: contacts, sending, receiving, receipts (DESIGN §2–§4).
//!
//! [`Messaging`] holds what the API calls act on and is shared with the
//! workers: the delivery workers (own `data-out`/`rpc-out` → peers'
//! `data-in`/`rpc-in`) and the inbox worker (own `data-in`/`rpc-in` → the
//! database → events). Every change is persisted first and published as an
//! event second; offsets are stored only after that.

mod contacts;
mod delivery;
mod inbox;
pub mod links;
pub mod marks;
mod read;
pub mod rejections;
mod send;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use kirc_proto::v1::event::Kind;
use kirc_proto::wire::v1 as wire;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backends::supervise::Backoff;
use crate::backends::traffic::Budgets;
use crate::config::Config;
use crate::crypto::identity::{ActorId, Identity};
use crate::crypto::profile::InviteError;
use crate::hub::Hub;
use crate::presence::Live;
use crate::store::{self, ContactRecord, ContactState, StoreError};
use links::{Outbox, PeerProducers};
use marks::Marks;
pub use rejections::Rejections;

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
    /// The last control record applied per sender and stream.
    marks: Marks,
    /// Held while a control record is sealed and produced, so that the
    /// records of each stream reach the contact in the order of their ids
    /// (the contact refuses one not newer than the last it applied).
    control_order: tokio::sync::Mutex<()>,
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
            marks: Marks::default(),
            control_order: tokio::sync::Mutex::new(()),
            live,
            peers: PeerProducers::new(budgets.clone()),
            budgets,
            ready: AtomicBool::new(false),
            ready_signal: tokio::sync::watch::Sender::new(false),
        }))
    }

    pub(super) fn check_ready(&self) -> Result<(), MessagingError> {
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
        crate::crypto::profile::sign_profile(&self.identity, &profile)
    }

    pub(super) fn remember(&self, contact: &ContactRecord) {
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
    pub(super) fn resolve(&self, reference: &str) -> Result<ContactRecord, MessagingError> {
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
        self.hub
            .set_inbox(self.rejections.to_pb(), self.rejections.inbox_pb());
    }

    /// Loads the profile, contacts and conversations, and re-sends what a
    /// crash left between the database and the outbox.
    pub(super) async fn load(&self) -> Result<(), MessagingError> {
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
        self.marks.load(&self.pool).await?;
        self.rejections
            .set_quarantine(store::quarantine_fill(&self.pool).await?);
        self.publish_rejections();
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
            tokio::spawn(requeue_expired(Arc::clone(&messaging), cancel.clone())),
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

/// Looks for messages that expired from data-out before delivery, at start
/// and then every `messaging.outbox_check_interval`: a contact offline
/// longer than the topic's retention must still get every message.
async fn requeue_expired(messaging: Arc<Messaging>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(messaging.config.messaging.outbox_check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(err) = messaging.requeue_expired().await {
            tracing::debug!(error = %err, "cannot check data-out for expired messages; trying at the next interval");
        }
    }
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
