//! Channels: IRC-style group conversations, each relayed by the actor that
//! created it (ARCHITECTURE.md, "Channels"). `rules.rs` decides what the
//! owner allows, `relay.rs` what a member accepts from the owner, `view.rs`
//! turns a channel into its stored and relayed shapes, `sessions.rs` holds
//! a channel's group sessions; `engine/` is the task that owns them all,
//! `sender.rs` its ordered outgoing queue, `handlers.rs` the inbox's way in.
//! The group crypto is `crypto::group`.

mod engine;
pub mod handlers;
pub mod relay;
pub mod rules;
mod sender;
mod sessions;
mod view;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use engine::{Act, ChannelError, ChannelsConfig};
use engine::{Command, Engine};

use crate::book::ContactBook;
use crate::contacts::{Contacts, OwnProfile};
use crate::content::{ActKind, Content};
use crate::crypto::identity::Identity;
use crate::hub::Hub;
use crate::store::Message;
use crate::transport::outbound::Outbound;

/// The way to the channels' engine: every call is a command, answered when
/// the engine has done it.
#[derive(Debug, Clone)]
pub struct Channels {
    commands: mpsc::Sender<Command>,
}

/// What the engine and its sender need.
pub struct Parts {
    pub pool: sqlx::PgPool,
    pub identity: Arc<Identity>,
    pub own: OwnProfile,
    pub book: Arc<ContactBook>,
    pub contacts: Arc<Contacts>,
    pub hub: Arc<Hub>,
    pub outbound: Arc<Outbound>,
    pub config: ChannelsConfig,
    /// The messages stored acts and replies wait for (messaging's).
    pub awaited: Arc<crate::messaging::Awaited>,
}

impl Channels {
    /// Starts the engine and its sender; both end with `stop`.
    pub fn start(
        parts: Parts,
        stop: &CancellationToken,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (queue, queued) = sender::queue();
        let sender = sender::Sender {
            book: Arc::clone(&parts.book),
            outbound: parts.outbound,
            pool: parts.pool.clone(),
            hub: Arc::clone(&parts.hub),
            retry_initial: parts.config.retry_initial,
            retry_max: parts.config.retry_max,
        };
        let engine = Engine {
            pool: parts.pool,
            identity: parts.identity,
            own: parts.own,
            book: parts.book,
            contacts: parts.contacts,
            hub: parts.hub,
            queue,
            config: parts.config,
            awaited: parts.awaited,
        };
        let (commands, received) = mpsc::channel(64);
        let tasks = vec![
            tokio::spawn(engine.run(received, stop.clone())),
            tokio::spawn(sender.run(queued, stop.clone())),
        ];
        (Channels { commands }, tasks)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, ChannelError>>) -> Command,
    ) -> Result<T, ChannelError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ChannelError::Stopping)?;
        answer.await.map_err(|_| ChannelError::Stopping)?
    }

    /// Creates a channel owned by this actor; returns its id.
    pub async fn create(&self, name: String, topic: String) -> Result<Uuid, ChannelError> {
        self.ask(|reply| Command::Create { name, topic, reply })
            .await
    }

    /// A new invite token to a channel this actor owns, and its expiry.
    pub async fn invite(&self, channel: String) -> Result<(String, i64), ChannelError> {
        self.ask(|reply| Command::Invite { channel, reply }).await
    }

    /// Asks to join the channel of a `kircc1:` token; returns its id.
    pub async fn join(&self, token: String) -> Result<Uuid, ChannelError> {
        self.ask(|reply| Command::Join { token, reply }).await
    }

    pub async fn act(&self, channel: String, act: Act) -> Result<(), ChannelError> {
        self.ask(|reply| Command::Act {
            channel,
            act,
            reply,
        })
        .await
    }

    /// Says `content` in a channel; an idempotency key used before returns
    /// the message first sent with it (see `SendMessage`).
    pub async fn send(
        &self,
        channel: String,
        content: Content,
        idempotency_key: String,
    ) -> Result<Message, ChannelError> {
        self.ask(|reply| Command::Send {
            channel,
            content,
            idempotency_key,
            reply,
        })
        .await
    }

    /// Reacts to, edits or deletes `target`, a message of a channel this
    /// actor is in; returns it as it now is.
    pub async fn act_on(&self, target: Message, kind: ActKind) -> Result<Message, ChannelError> {
        self.ask(|reply| Command::ActOn {
            target: Box::new(target),
            kind,
            reply,
        })
        .await
    }
}
