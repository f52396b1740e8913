//! Every SQL statement of the messaging core: profile, contacts, invites,
//! conversations, messages, receipts, read markers, control marks,
//! quarantine. Callers get typed records; nothing else in kircd writes SQL
//! for these tables. One file per group of tables; this one holds the shared
//! types and the actor's own profile.

use ed25519_dalek::VerifyingKey;
use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::crypto::envelope::PairKey;
use crate::crypto::identity::{ActorId, Identity};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "this database belongs to actor {stored}, not to this identity ({ours})\n  fix: give each actor a database of its own (postgres.url)"
    )]
    ForeignDatabase { stored: String, ours: String },
    #[error("the stored profile of contact {0} no longer verifies")]
    DamagedContact(String),
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

    fn to_pb(self) -> pb::ContactState {
        match self {
            ContactState::Accepted => pb::ContactState::Accepted,
            ContactState::Request => pb::ContactState::Request,
            ContactState::Blocked => pb::ContactState::Blocked,
        }
    }
}

/// A contact with its verified profile.
#[derive(Debug, Clone)]
pub struct ContactRecord {
    pub actor_id: ActorId,
    pub display_name: String,
    pub signing_key: VerifyingKey,
    pub box_key: crypto_box::PublicKey,
    pub access: wire::KafkaAccess,
    pub signed_profile: wire::SignedProfile,
    pub state: ContactState,
    pub peer_accepted: bool,
    pub added_at_unix_ms: i64,
    pub conversation_id: Uuid,
    /// The box between us, computed once per contact.
    pub pair: std::sync::Arc<PairKey>,
}

impl ContactRecord {
    pub fn to_pb(&self) -> pb::Contact {
        pb::Contact {
            actor_id: self.actor_id.to_string(),
            display_name: self.display_name.clone(),
            state: self.state.to_pb() as i32,
            peer_accepted: self.peer_accepted,
            conversation_id: self.conversation_id.to_string(),
            fingerprint: self.actor_id.fingerprint(),
            delivery_path: format!(
                "{} → {} ({})",
                self.access.bootstrap_servers,
                self.access.data_in_topic,
                self.access.security_protocol
            ),
            added_at_unix_ms: self.added_at_unix_ms,
        }
    }
}

/// The delivery states of a sent message, in order; a message only moves
/// forward.
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

    pub fn to_pb(self) -> pb::MessageState {
        match self {
            MessageState::Pending => pb::MessageState::Pending,
            MessageState::Queued => pb::MessageState::Queued,
            MessageState::Delivered => pb::MessageState::Delivered,
            MessageState::Received => pb::MessageState::Received,
            MessageState::Read => pb::MessageState::Read,
        }
    }
}

/// SQL for a state's rank, so that updates only move forward.
macro_rules! state_rank {
    () => {
        "CASE state WHEN 'pending' THEN 0 WHEN 'queued' THEN 1 WHEN 'delivered' THEN 2 WHEN 'received' THEN 3 ELSE 4 END"
    };
}

fn state_rank(state: MessageState) -> i32 {
    match state {
        MessageState::Pending => 0,
        MessageState::Queued => 1,
        MessageState::Delivered => 2,
        MessageState::Received => 3,
        MessageState::Read => 4,
    }
}

macro_rules! message_columns {
    () => {
        "id, seq, conversation_id, sender, outgoing, action, body, (extract(epoch from created_at) * 1000)::bigint AS created_ms, state"
    };
}

mod contacts;
mod history;
mod marks;
mod messages;
mod quarantine;

pub use contacts::*;
pub use history::*;
pub use marks::*;
pub use messages::*;
pub use quarantine::*;

/// Records this actor's profile, or checks that the database is its own.
pub async fn ensure_profile(
    pool: &PgPool,
    identity: &Identity,
    display_name: &str,
) -> Result<(), StoreError> {
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT actor_id FROM profile")
        .fetch_optional(pool)
        .await?;
    match stored {
        Some(stored) if stored.as_slice() != identity.id().as_bytes() => {
            Err(StoreError::ForeignDatabase {
                stored: ActorId::from_slice(&stored)
                    .map_or_else(|| String::from("?"), |id| id.to_string()),
                ours: identity.id().to_string(),
            })
        }
        Some(_) => {
            sqlx::query("UPDATE profile SET display_name = $1 WHERE display_name <> $1")
                .bind(display_name)
                .execute(pool)
                .await?;
            Ok(())
        }
        None => {
            sqlx::query("INSERT INTO profile (actor_id, display_name, signing_key, box_key) VALUES ($1, $2, $3, $4)")
                .bind(identity.id().as_bytes().as_slice())
                .bind(display_name)
                .bind(identity.signing_key().to_bytes().as_slice())
                .bind(identity.box_key().as_bytes().as_slice())
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
