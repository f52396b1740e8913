//! The channels' engine: one task owning every channel this actor owns or
//! is in, fed by typed commands from the API and from the inbox's
//! handlers. Owning and following a channel are in `owner.rs` and
//! `member.rs`, the members' session keys in `keys.rs`; what they share is
//! here. Every record it sends goes through the ordered queue (`sender.rs`); a command that came from the inbox is
//! answered with a receiver that resolves once what it caused is in the
//! outbox, so that the inbox stores the record's offset only then.

mod acts;
mod keys;
mod member;
mod owner;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::relay::{ChannelView, RelayError};
use super::rules::{NameError, Refusal, Request};
use super::sender::{Outgoing, Queue, Then};
use super::sessions::Sessions;
use crate::backends::supervise::Backoff;
use crate::book::{ContactBook, NotLoaded};
use crate::contacts::{Contacts, ContactsError, OwnProfile};
use crate::content::{Act as MessageAct, ActKind, Content};
use crate::crypto::envelope::{self, PairKey, Rejection};
use crate::crypto::group::PickleKey;
use crate::crypto::identity::{ActorId, Identity};
use crate::crypto::profile::{InviteError, VerifiedProfile, verify_profile};
use crate::hub::Hub;
use crate::store::{self, Line, LineKind, Membership, Message, StoreError, StoredSession};
use crate::transport::router::HandlerError;

/// The channels' settings.
#[derive(Debug, Clone)]
pub struct ChannelsConfig {
    /// The most members a channel this actor creates takes.
    pub capacity: usize,
    /// How long a channel invite stays valid.
    pub invite_ttl: Duration,
    /// The most posts one channel keeps waiting for their session.
    pub max_waiting: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// What the API's callers are told.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    NotLoaded(#[from] NotLoaded),
    #[error("no channel matches {0:?}; the conversation list shows yours")]
    Unknown(String),
    #[error("{0:?} matches several channels; use the channel's id")]
    Ambiguous(String),
    #[error("you are not in {0}")]
    NotIn(String),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("no member of {channel} matches {member:?}")]
    NoSuchMember { channel: String, member: String },
    #[error("only {0}'s owner can invite to it")]
    NotOwner(String),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error(transparent)]
    Contacts(#[from] ContactsError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("kircd is stopping")]
    Stopping,
}

type Reply<T> = oneshot::Sender<Result<T, ChannelError>>;

/// A request by this actor on a channel, its target (if any) named as the
/// user typed it.
#[derive(Debug, Clone)]
pub enum Act {
    Part { reason: String },
    Kick { member: String, reason: String },
    Ban { member: String, reason: String },
    Unban { member: String },
    Op { member: String },
    Deop { member: String },
    Topic { text: String },
    Moderate { on: bool },
}

/// What a record from the inbox came to, and a receiver that resolves once
/// what it caused is in the outbox.
pub type Handled = (Result<(), Rejection>, oneshot::Receiver<()>);

pub enum Command {
    Create {
        name: String,
        topic: String,
        reply: Reply<Uuid>,
    },
    Invite {
        channel: String,
        reply: Reply<(String, i64)>,
    },
    Join {
        token: String,
        reply: Reply<Uuid>,
    },
    Act {
        channel: String,
        act: Act,
        reply: Reply<()>,
    },
    Send {
        channel: String,
        content: Content,
        idempotency_key: String,
        reply: Reply<Message>,
    },
    ActOn {
        target: Box<Message>,
        kind: ActKind,
        reply: Reply<Message>,
    },
    /// A contact joined one of our channels through its invite.
    Joined {
        channel: Uuid,
        member: Box<VerifiedProfile>,
        reply: oneshot::Sender<Result<oneshot::Receiver<()>, HandlerError>>,
    },
    /// A channel record from the inbox, from `sender` (a contact).
    Record {
        sender: ActorId,
        record_id: Uuid,
        kind: wire::Kind,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Handled, HandlerError>>,
    },
}

/// One channel as this actor holds it.
struct Channel {
    view: ChannelView,
    membership: Membership,
    sessions: Sessions,
}

pub struct Engine {
    pub pool: PgPool,
    pub identity: Arc<Identity>,
    pub own: OwnProfile,
    pub book: Arc<ContactBook>,
    pub contacts: Arc<Contacts>,
    pub hub: Arc<Hub>,
    pub queue: Queue,
    pub config: ChannelsConfig,
    /// The messages stored acts and replies wait for (messaging's).
    pub awaited: Arc<crate::messaging::Awaited>,
}

/// The engine's state once loaded.
struct Running {
    engine: Engine,
    me: ActorId,
    key: PickleKey,
    channels: HashMap<Uuid, Channel>,
}

impl Engine {
    pub async fn run(self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => return,
            () = self.book.wait_loaded() => {}
        }
        let Some(mut running) = self.load(&stop).await else {
            return;
        };
        loop {
            let command = tokio::select! {
                () = stop.cancelled() => return,
                next = commands.recv() => match next {
                    Some(command) => command,
                    None => return,
                },
            };
            running.handle(command).await;
        }
    }

    /// Loads every channel and its sessions, retrying until the database
    /// answers; then sends again what a stop left unsent.
    async fn load(self, stop: &CancellationToken) -> Option<Running> {
        let key = PickleKey::of(&self.identity);
        let me = self.identity.id();
        let mut backoff = Backoff::new(self.config.retry_initial, self.config.retry_max);
        loop {
            match load_channels(&self.pool, &key, self.config.capacity).await {
                Ok(channels) => {
                    let mut running = Running {
                        engine: self,
                        me,
                        key,
                        channels,
                    };
                    if let Err(err) = running.resume().await {
                        tracing::warn!(error = %err, "cannot resume the channels' unsent records");
                    }
                    return Some(running);
                }
                Err(err) => tracing::warn!(error = %err, "cannot load the channels; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

async fn load_channels(
    pool: &PgPool,
    key: &PickleKey,
    capacity: usize,
) -> Result<HashMap<Uuid, Channel>, StoreError> {
    let mut channels = HashMap::new();
    for stored in store::channels(pool).await? {
        let view = match ChannelView::from_stored(&stored, capacity) {
            Ok(view) => view,
            Err(err) => {
                tracing::warn!(channel = %stored.name, error = %err, "a stored channel does not load");
                continue;
            }
        };
        let sessions = Sessions::load(&store::sessions(pool, stored.id).await?, key);
        channels.insert(
            stored.id,
            Channel {
                view,
                membership: stored.membership,
                sessions,
            },
        );
    }
    Ok(channels)
}

impl Running {
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Create { name, topic, reply } => {
                let _ = reply.send(self.create(name, topic).await);
            }
            Command::Invite { channel, reply } => {
                let _ = reply.send(self.invite(&channel).await);
            }
            Command::Join { token, reply } => {
                let _ = reply.send(self.join(&token).await);
            }
            Command::Act {
                channel,
                act,
                reply,
            } => {
                let _ = reply.send(self.act(&channel, act).await);
            }
            Command::Send {
                channel,
                content,
                idempotency_key,
                reply,
            } => {
                let sent = self.send(&channel, content, &idempotency_key).await;
                let _ = reply.send(sent);
            }
            Command::ActOn {
                target,
                kind,
                reply,
            } => {
                let _ = reply.send(self.act_on(&target, kind).await);
            }
            Command::Joined {
                channel,
                member,
                reply,
            } => {
                let _ = reply.send(self.admit(channel, *member).await.map_err(Into::into));
            }
            Command::Record {
                sender,
                record_id,
                kind,
                payload,
                reply,
            } => {
                let handled = self
                    .record(sender, record_id, kind, &payload)
                    .await
                    .map_err(Into::into);
                let _ = reply.send(handled);
            }
        }
    }

    /// Finds a channel by `#name` or id among those this actor is in.
    fn resolve(&self, reference: &str) -> Result<Uuid, ChannelError> {
        if let Ok(id) = reference.parse::<Uuid>()
            && self.channels.contains_key(&id)
        {
            return Ok(id);
        }
        let mut found = self
            .channels
            .iter()
            .filter(|(_, channel)| channel.view.name.eq_ignore_ascii_case(reference))
            .map(|(id, _)| *id);
        match (found.next(), found.next()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(ChannelError::Ambiguous(reference.to_owned())),
            (None, _) => Err(ChannelError::Unknown(reference.to_owned())),
        }
    }

    /// This actor's profile, verified (it signed it itself).
    fn own_profile(&self) -> Option<VerifiedProfile> {
        verify_profile(&self.engine.own.signed()).ok()
    }

    /// Records to `to` in the queue's order, resolving once all are sent.
    fn send_all(
        &self,
        records: Vec<(ActorId, wire::Kind, Vec<u8>, Then)>,
    ) -> oneshot::Receiver<()> {
        self.engine.queue.push_all(
            records
                .into_iter()
                .map(|(to, kind, payload, then)| Outgoing {
                    to,
                    kind,
                    payload,
                    then,
                    done: None,
                })
                .collect(),
        )
    }

    /// Seals a session key for `member` (from this actor), as the inner
    /// envelope of a `ChannelKeyForward`.
    fn seal_share(
        &self,
        channel: Uuid,
        member: &VerifiedProfile,
        session_id: &str,
        export: Vec<u8>,
        epoch: u64,
    ) -> Vec<u8> {
        let payload = prost::Message::encode_to_vec(&wire::ChannelSessionKey {
            channel_id: channel.as_bytes().to_vec(),
            session_id: session_id.to_owned(),
            session_key: export,
            epoch,
        });
        let inner = envelope::seal(
            &self.engine.identity,
            member.actor_id,
            &PairKey::new(&self.engine.identity, &member.box_key),
            wire::Kind::ChannelKey,
            envelope::new_message_id(),
            &payload,
        );
        prost::Message::encode_to_vec(&wire::ChannelKeyForward { envelope: inner })
    }

    /// The records that hand this actor's sessions of `channel` to
    /// `members`: through the owner, or straight to them from the owner.
    /// `shares` are (session id, export) pairs.
    fn share_records(
        &self,
        channel: Uuid,
        members: &[VerifiedProfile],
        shares: &[(String, Vec<u8>)],
    ) -> Vec<(ActorId, wire::Kind, Vec<u8>, Then)> {
        let Some(held) = self.channels.get(&channel) else {
            return Vec::new();
        };
        let epoch = held.view.roster.epoch;
        let owner = held.view.owner;
        let mut records = Vec::new();
        for member in members.iter().filter(|member| member.actor_id != self.me) {
            for (session_id, export) in shares {
                let forward = self.seal_share(channel, member, session_id, export.clone(), epoch);
                let to = if owner == self.me {
                    member.actor_id
                } else {
                    owner
                };
                records.push((to, wire::Kind::ChannelKey, forward, Then::Nothing));
            }
        }
        records
    }

    /// Makes sure this actor has a session for `channel`'s epoch, making
    /// and sharing a new one if not; returns the records that share it.
    async fn ensure_session(
        &mut self,
        channel: Uuid,
    ) -> Result<Vec<(ActorId, wire::Kind, Vec<u8>, Then)>, ChannelError> {
        let Some(held) = self.channels.get_mut(&channel) else {
            return Err(ChannelError::Unknown(channel.to_string()));
        };
        let epoch = held.view.roster.epoch;
        if held.sessions.current(epoch).is_some() {
            return Ok(Vec::new());
        }
        let rows = held.sessions.rotate(channel, self.me, epoch, &self.key);
        let export = held.sessions.export_current();
        let members: Vec<VerifiedProfile> = held.view.profiles.values().cloned().collect();
        for row in &rows {
            store::save_session(&self.engine.pool, row).await?;
        }
        let Some(share) = export else {
            return Ok(Vec::new());
        };
        Ok(self.share_records(channel, &members, &[share]))
    }

    /// The line's message id: the same for every copy of a step.
    fn line_id(channel: Uuid, seq: u64) -> Uuid {
        let mut hasher = blake3::Hasher::new_derive_key("kirc 2026-12 channel line id v1");
        hasher.update(channel.as_bytes());
        hasher.update(&seq.to_be_bytes());
        let hash = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_bytes()[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    fn store_session(&self, row: &StoredSession) -> impl Future<Output = Result<(), StoreError>> {
        store::save_session(&self.engine.pool, row)
    }

    /// Tells the clients how a channel stands now.
    fn announce(&self, channel: Uuid) {
        if let Some(held) = self.channels.get(&channel) {
            self.engine
                .hub
                .channel_changed(&held.view.stored(held.membership));
        }
    }

    /// Tells the clients of a message or line stored now (`stored`), or
    /// already (a step repeated after a crash), and of what an act among
    /// them changed; a message may be the target of acts that came first.
    async fn publish(
        &self,
        id: Uuid,
        stored: Option<Message>,
        act: Option<&MessageAct>,
    ) -> Result<(), StoreError> {
        let acts: HashMap<Uuid, &MessageAct> = act.map(|act| (id, act)).into_iter().collect();
        let messages: &[Uuid] = if act.is_some() {
            &[]
        } else {
            std::slice::from_ref(&id)
        };
        crate::messaging::publish_stored(
            &self.engine.pool,
            &self.engine.hub,
            &self.engine.awaited,
            crate::messaging::StoredBatch {
                added: stored.into_iter().collect(),
                acts: &acts,
                messages,
            },
        )
        .await
    }
}

/// What a post's plaintext says, if it is a payload that passes the
/// checks (a member's post is anyone's bytes until then).
fn opened_content(plaintext: &[u8]) -> Option<Content> {
    use prost::Message as _;
    wire::ChatPayload::decode(plaintext)
        .ok()
        .and_then(|chat| Content::from_payload(chat).ok())
}

/// The line kind of a relayed event.
fn line_kind(kind: wire::ChannelEventKind) -> Option<LineKind> {
    Some(match kind {
        wire::ChannelEventKind::Unspecified => return None,
        wire::ChannelEventKind::Create => LineKind::Create,
        wire::ChannelEventKind::Join => LineKind::Join,
        wire::ChannelEventKind::Part => LineKind::Part,
        wire::ChannelEventKind::Kick => LineKind::Kick,
        wire::ChannelEventKind::Ban => LineKind::Ban,
        wire::ChannelEventKind::Unban => LineKind::Unban,
        wire::ChannelEventKind::Op => LineKind::Op,
        wire::ChannelEventKind::Deop => LineKind::Deop,
        wire::ChannelEventKind::Topic => LineKind::Topic,
        wire::ChannelEventKind::Moderated => LineKind::Moderated,
        wire::ChannelEventKind::Unmoderated => LineKind::Unmoderated,
    })
}

/// A rules request as an event, and the event's target and text.
fn event_of(request: &Request) -> (wire::ChannelEventKind, Option<ActorId>, String) {
    use wire::ChannelEventKind as Kind;
    match request {
        Request::Join => (Kind::Join, None, String::new()),
        Request::Post => (Kind::Unspecified, None, String::new()),
        Request::Part { reason } => (Kind::Part, None, reason.clone()),
        Request::Kick { target, reason } => (Kind::Kick, Some(*target), reason.clone()),
        Request::Ban { target, reason } => (Kind::Ban, Some(*target), reason.clone()),
        Request::Unban { target } => (Kind::Unban, Some(*target), String::new()),
        Request::Op { target } => (Kind::Op, Some(*target), String::new()),
        Request::Deop { target } => (Kind::Deop, Some(*target), String::new()),
        Request::Topic { text } => (Kind::Topic, None, text.clone()),
        Request::Moderate { on: true } => (Kind::Moderated, None, String::new()),
        Request::Moderate { on: false } => (Kind::Unmoderated, None, String::new()),
    }
}

/// The rules request a member's command asks for.
fn request_of(command: &wire::ChannelCommand) -> Option<Request> {
    use wire::ChannelEventKind as Kind;
    let target = || ActorId::from_slice(&command.target);
    let text = command.text.clone();
    Some(match Kind::try_from(command.kind).ok()? {
        Kind::Part => Request::Part { reason: text },
        Kind::Kick => Request::Kick {
            target: target()?,
            reason: text,
        },
        Kind::Ban => Request::Ban {
            target: target()?,
            reason: text,
        },
        Kind::Unban => Request::Unban { target: target()? },
        Kind::Op => Request::Op { target: target()? },
        Kind::Deop => Request::Deop { target: target()? },
        Kind::Topic => Request::Topic { text },
        Kind::Moderated => Request::Moderate { on: true },
        Kind::Unmoderated => Request::Moderate { on: false },
        Kind::Unspecified | Kind::Join | Kind::Create => return None,
    })
}

fn line(kind: wire::ChannelEventKind, target: Option<ActorId>) -> Option<Line> {
    line_kind(kind).map(|kind| Line { kind, target })
}

impl From<RelayError> for Rejection {
    fn from(err: RelayError) -> Self {
        match err {
            RelayError::Old => Rejection::Stale,
            RelayError::Forged => Rejection::BadSignature,
            RelayError::NotFromOwner | RelayError::NotAMember => Rejection::Stranger,
            RelayError::WrongChannel | RelayError::Malformed(_) | RelayError::BadRoster(_) => {
                Rejection::Malformed
            }
        }
    }
}

/// A receiver already resolved: the command caused nothing to send.
fn nothing() -> oneshot::Receiver<()> {
    let (done, flushed) = oneshot::channel();
    let _ = done.send(());
    flushed
}

fn now_ms() -> i64 {
    kirc_proto::unix_ms(std::time::SystemTime::now())
}
