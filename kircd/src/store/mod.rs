//! Every SQL statement kircd runs: the own profile, contacts, invites,
//! conversations and their members, messages, receipts, read markers,
//! control marks, quarantine. Callers get plain records: nothing here
//! verifies a signature, derives a key or knows the daemon API's types.
//! One file per group of tables; this one holds the shared types and the
//! actor's own profile.

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::crypto::identity::ActorId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "this database belongs to actor {stored}, not to this identity ({ours})\n  fix: give each actor a database of its own (postgres.url)"
    )]
    ForeignDatabase { stored: String, ours: String },
    /// A bug, not bad input: the inbox names a conversation from its
    /// contact book, which is loaded from the conversations' rows.
    #[error("a batch of received messages names a conversation that is not in the database")]
    UnknownConversation,
}

/// Where a contact stands with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    Accepted,
    Request,
    Blocked,
}

impl ContactState {
    fn as_str(self) -> &'static str {
        match self {
            ContactState::Accepted => "accepted",
            ContactState::Request => "request",
            ContactState::Blocked => "blocked",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "accepted" => ContactState::Accepted,
            "blocked" => ContactState::Blocked,
            _ => ContactState::Request,
        }
    }
}

/// The delivery states of a sent message, in order; a message only moves
/// forward. A received message is `Received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageState {
    Pending,
    Queued,
    Delivered,
    Received,
    Read,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::Queued => "queued",
            MessageState::Delivered => "delivered",
            MessageState::Received => "received",
            MessageState::Read => "read",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "queued" => MessageState::Queued,
            "delivered" => MessageState::Delivered,
            "received" => MessageState::Received,
            "read" => MessageState::Read,
            _ => MessageState::Pending,
        }
    }

    fn rank(self) -> i32 {
        match self {
            MessageState::Pending => 0,
            MessageState::Queued => 1,
            MessageState::Delivered => 2,
            MessageState::Received => 3,
            MessageState::Read => 4,
        }
    }
}

/// SQL for a state's rank (`MessageState::rank`), so that updates only move
/// forward.
macro_rules! state_rank {
    () => {
        "CASE state WHEN 'pending' THEN 0 WHEN 'queued' THEN 1 WHEN 'delivered' THEN 2 WHEN 'received' THEN 3 ELSE 4 END"
    };
}

macro_rules! message_columns {
    () => {
        "id, seq, conversation_id, sender, outgoing, action, body, (extract(epoch from created_at) * 1000)::bigint AS created_ms, state, coalesce(source_partition = -1, FALSE) AS direct, transfer_id, channel_seq, line, line_target, reply_to, edited, deleted"
    };
}

/// A stored chat message, sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    /// The local order: history pages and read markers count by it.
    pub seq: u64,
    pub conversation_id: Uuid,
    /// `None` only for a row whose sender column was damaged.
    pub sender: Option<ActorId>,
    pub outgoing: bool,
    pub action: bool,
    pub body: String,
    pub created_at_unix_ms: i64,
    pub state: MessageState,
    /// Received, and its first copy came over the direct path (stored
    /// with partition -1) rather than from the Kafka inbox.
    pub direct: bool,
    /// The line a completed file transfer left (its id).
    pub transfer_id: Option<Uuid>,
    /// A channel's message or line: its place in the owner's order (a sent
    /// post has none until the owner relays it back).
    pub channel_seq: Option<u64>,
    /// A channel's line that is not a message (a join, a kick...).
    pub line: Option<Line>,
    /// A reply: the message it answers.
    pub reply_to: Option<Uuid>,
    /// What the reply shows of it, once it is stored ([`decorate`]).
    pub quote: Option<Quote>,
    /// The body is an edit's text.
    pub edited: bool,
    /// Deleted by its sender: the body is empty.
    pub deleted: bool,
    /// Filled in by [`decorate`].
    pub reactions: Vec<ReactionCount>,
}

fn message_from_row(row: &sqlx::postgres::PgRow) -> Result<Message, sqlx::Error> {
    use sqlx::Row;
    let sender: Vec<u8> = row.try_get("sender")?;
    let seq: i64 = row.try_get("seq")?;
    let state: String = row.try_get("state")?;
    Ok(Message {
        id: row.try_get("id")?,
        seq: u64::try_from(seq).unwrap_or(0),
        conversation_id: row.try_get("conversation_id")?,
        sender: ActorId::from_slice(&sender),
        outgoing: row.try_get("outgoing")?,
        action: row.try_get("action")?,
        body: row.try_get("body")?,
        created_at_unix_ms: row.try_get("created_ms")?,
        state: MessageState::parse(&state),
        direct: row.try_get("direct")?,
        transfer_id: row.try_get("transfer_id")?,
        channel_seq: row
            .try_get::<Option<i64>, _>("channel_seq")?
            .and_then(|seq| u64::try_from(seq).ok()),
        line: line_from_row(row)?,
        reply_to: row.try_get("reply_to")?,
        quote: None,
        edited: row.try_get("edited")?,
        deleted: row.try_get("deleted")?,
        reactions: Vec::new(),
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

mod acts;
mod channel_log;
mod channels;
mod contacts;
mod conversations;
mod history;
mod invites;
mod marks;
mod messages;
mod quarantine;
mod transfers;

pub use acts::*;
pub use channel_log::*;
pub use channels::*;
pub use contacts::*;
pub use conversations::*;
pub use history::*;
pub use invites::*;
pub use marks::*;
pub use messages::*;
pub use quarantine::*;
pub use transfers::*;

/// Records this actor's profile, or checks that the database is its own.
pub async fn ensure_profile(
    pool: &PgPool,
    me: ActorId,
    display_name: &str,
    signing_key: &[u8; 32],
    box_key: &[u8; 32],
) -> Result<(), StoreError> {
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT actor_id FROM profile")
        .fetch_optional(pool)
        .await?;
    match stored {
        Some(stored) if stored.as_slice() != me.as_bytes() => Err(StoreError::ForeignDatabase {
            stored: ActorId::from_slice(&stored)
                .map_or_else(|| String::from("?"), |id| id.to_string()),
            ours: me.to_string(),
        }),
        Some(_) => {
            sqlx::query("UPDATE profile SET display_name = $1 WHERE display_name <> $1")
                .bind(display_name)
                .execute(pool)
                .await?;
            Ok(())
        }
        None => {
            sqlx::query("INSERT INTO profile (actor_id, display_name, signing_key, box_key) VALUES ($1, $2, $3, $4)")
                .bind(me.as_bytes().as_slice())
                .bind(display_name)
                .bind(signing_key.as_slice())
                .bind(box_key.as_slice())
                .execute(pool)
                .await?;
            Ok(())
        }
    }
}

/// The profile last sent to contacts, if any.
pub async fn published_profile(pool: &PgPool) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT published_profile FROM profile")
        .fetch_optional(pool)
        .await?
        .flatten())
}

pub async fn set_published_profile(pool: &PgPool, profile: &[u8]) -> Result<(), StoreError> {
    sqlx::query("UPDATE profile SET published_profile = $1")
        .bind(profile)
        .execute(pool)
        .await?;
    Ok(())
}
