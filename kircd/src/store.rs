//! Every SQL statement of the messaging core: profile, contacts, invites,
//! conversations, messages, receipts, read markers, quarantine. Callers get
//! typed records; nothing else in kircd writes SQL for these tables.

use ed25519_dalek::VerifyingKey;
use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use prost::Message;
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::contacts::{VerifiedProfile, verify_profile};
use crate::envelope::{PairKey, conversation_id};
use crate::identity::{ActorId, Identity};

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

// ------------------------------------------------------------------ profile

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

// ------------------------------------------------------------------ contacts

macro_rules! contact_columns {
    () => {
        "actor_id, signed_profile, state, peer_accepted, (extract(epoch from created_at) * 1000)::bigint AS added_ms"
    };
}

fn contact_from_row(
    row: &sqlx::postgres::PgRow,
    me: &Identity,
) -> Result<ContactRecord, StoreError> {
    let actor_bytes: Vec<u8> = row.try_get("actor_id")?;
    let signed_bytes: Vec<u8> = row.try_get("signed_profile")?;
    let shown =
        ActorId::from_slice(&actor_bytes).map_or_else(|| String::from("?"), |id| id.to_string());
    let signed = wire::SignedProfile::decode(signed_bytes.as_slice())
        .map_err(|_| StoreError::DamagedContact(shown.clone()))?;
    let verified =
        verify_profile(&signed).map_err(|_| StoreError::DamagedContact(shown.clone()))?;
    if verified.actor_id.as_bytes().as_slice() != actor_bytes.as_slice() {
        return Err(StoreError::DamagedContact(shown));
    }
    let state: String = row.try_get("state")?;
    Ok(record(
        verified,
        ContactState::parse(&state),
        row.try_get("peer_accepted")?,
        row.try_get("added_ms")?,
        me,
    ))
}

fn record(
    verified: VerifiedProfile,
    state: ContactState,
    peer_accepted: bool,
    added_at_unix_ms: i64,
    me: &Identity,
) -> ContactRecord {
    ContactRecord {
        actor_id: verified.actor_id,
        display_name: verified.profile.display_name.clone(),
        signing_key: verified.signing_key,
        access: verified.profile.kafka.clone().unwrap_or_default(),
        signed_profile: verified.signed,
        state,
        peer_accepted,
        added_at_unix_ms,
        conversation_id: conversation_id(me.id(), verified.actor_id),
        pair: std::sync::Arc::new(PairKey::new(me, &verified.box_key)),
        box_key: verified.box_key,
    }
}

/// Stores or refreshes a contact's profile. A new contact gets `state`; an
/// existing one keeps its state unless `state` is Accepted and it was a
/// request (adding someone who asked accepts them). Blocked stays blocked.
pub async fn save_contact(
    pool: &PgPool,
    me: &Identity,
    verified: &VerifiedProfile,
    state: ContactState,
    peer_accepted: bool,
) -> Result<ContactRecord, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(concat!(
        "INSERT INTO contacts (actor_id, display_name, signing_key, box_key, signed_profile, state, peer_accepted)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (actor_id) DO UPDATE SET
             display_name = EXCLUDED.display_name,
             box_key = EXCLUDED.box_key,
             signed_profile = EXCLUDED.signed_profile,
             state = CASE WHEN contacts.state = 'request' AND EXCLUDED.state = 'accepted' THEN 'accepted' ELSE contacts.state END,
             peer_accepted = contacts.peer_accepted OR EXCLUDED.peer_accepted,
             updated_at = now()
         RETURNING ",
        contact_columns!()
    ))
    .bind(verified.actor_id.as_bytes().as_slice())
    .bind(&verified.profile.display_name)
    .bind(verified.signing_key.to_bytes().as_slice())
    .bind(verified.box_key.as_bytes().as_slice())
    .bind(verified.signed.encode_to_vec())
    .bind(state.as_str())
    .bind(peer_accepted)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO conversations (id, peer) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(conversation_id(me.id(), verified.actor_id))
        .bind(verified.actor_id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    contact_from_row(&row, me)
}

pub async fn set_contact_state(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
    state: ContactState,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE contacts SET state = $2, updated_at = now() WHERE actor_id = $1 RETURNING ",
        contact_columns!()
    ))
    .bind(actor.as_bytes().as_slice())
    .bind(state.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn set_peer_accepted(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE contacts SET peer_accepted = TRUE, updated_at = now() WHERE actor_id = $1 AND NOT peer_accepted RETURNING ",
        contact_columns!()
    ))
    .bind(actor.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn contact(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts WHERE actor_id = $1"
    ))
    .bind(actor.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn contacts(pool: &PgPool, me: &Identity) -> Result<Vec<ContactRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts ORDER BY created_at"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| contact_from_row(row, me)).collect()
}

// ------------------------------------------------------------------ invites

pub async fn insert_invite(
    pool: &PgPool,
    id: Uuid,
    secret_hash: &[u8],
    expires_at_unix_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO invites (id, secret_hash, expires_at) VALUES ($1, $2, to_timestamp($3 / 1000.0))")
        .bind(id)
        .bind(secret_hash)
        .bind(expires_at_unix_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a presented one-time secret turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClaim {
    /// Valid, and now used up by this actor.
    Valid,
    Expired,
    AlreadyUsed,
    Unknown,
}

pub async fn claim_invite(
    pool: &PgPool,
    secret_hash: &[u8],
    by: ActorId,
) -> Result<InviteClaim, StoreError> {
    let claimed = sqlx::query(
        "UPDATE invites SET used_at = now(), used_by = $2
         WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING id",
    )
    .bind(secret_hash)
    .bind(by.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(InviteClaim::Valid);
    }
    let row = sqlx::query("SELECT used_at IS NOT NULL AS used, used_by, expires_at <= now() AS expired FROM invites WHERE secret_hash = $1")
        .bind(secret_hash)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        None => InviteClaim::Unknown,
        Some(row) => {
            let used_by: Option<Vec<u8>> = row.try_get("used_by")?;
            // The same actor presenting its secret again (its request was
            // redelivered) is still the valid claim it was.
            if used_by.as_deref() == Some(by.as_bytes().as_slice()) {
                InviteClaim::Valid
            } else if row.try_get::<bool, _>("used")? {
                InviteClaim::AlreadyUsed
            } else {
                InviteClaim::Expired
            }
        }
    })
}

// ------------------------------------------------------------------ messages

macro_rules! message_columns {
    () => {
        "id, seq, conversation_id, sender, outgoing, action, body, (extract(epoch from created_at) * 1000)::bigint AS created_ms, state"
    };
}

pub fn message_from_row(row: &sqlx::postgres::PgRow) -> Result<pb::ChatMessage, sqlx::Error> {
    let id: Uuid = row.try_get("id")?;
    let conversation: Uuid = row.try_get("conversation_id")?;
    let sender: Vec<u8> = row.try_get("sender")?;
    let seq: i64 = row.try_get("seq")?;
    let state: String = row.try_get("state")?;
    Ok(pb::ChatMessage {
        id: id.to_string(),
        conversation_id: conversation.to_string(),
        sender: ActorId::from_slice(&sender).map_or_else(String::new, |id| id.to_string()),
        outgoing: row.try_get("outgoing")?,
        action: row.try_get("action")?,
        body: row.try_get("body")?,
        created_at_unix_ms: row.try_get("created_ms")?,
        state: MessageState::parse(&state).to_pb() as i32,
        seq: u64::try_from(seq).unwrap_or(0),
    })
}

/// A message this actor sends, as first stored.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub sender: ActorId,
    pub action: bool,
    pub body: String,
    pub created_at_unix_ms: i64,
    pub envelope: Vec<u8>,
}

pub async fn insert_outgoing(
    pool: &PgPool,
    message: &Outgoing,
) -> Result<pb::ChatMessage, StoreError> {
    // One statement: the message and the conversation's activity together,
    // in one round trip (the send path waits for it).
    let row = sqlx::query(concat!(
        "WITH inserted AS (
             INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at, state, envelope)
             VALUES ($1, $2, $3, TRUE, $4, $5, to_timestamp($6 / 1000.0), 'pending', $7)
             RETURNING *
         ), touched AS (
             UPDATE conversations SET last_activity_at = greatest(last_activity_at, to_timestamp($6 / 1000.0))
             WHERE id = $2
         )
         SELECT ",
        message_columns!(),
        " FROM inserted"
    ))
    .bind(message.id)
    .bind(message.conversation_id)
    .bind(message.sender.as_bytes().as_slice())
    .bind(message.action)
    .bind(&message.body)
    .bind(message.created_at_unix_ms)
    .bind(&message.envelope)
    .fetch_one(pool)
    .await?;
    Ok(message_from_row(&row)?)
}

/// Moves messages forward to `state`; returns those that moved, with their
/// conversation. Messages already at or past it are left alone.
pub async fn advance_messages(
    pool: &PgPool,
    ids: &[Uuid],
    state: MessageState,
    only_outgoing: bool,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "UPDATE messages SET state = $2 WHERE id = ANY($1) AND ",
        state_rank!(),
        " < $3 AND (outgoing OR NOT $4)
         RETURNING id, conversation_id"
    ))
    .bind(ids)
    .bind(state.as_str())
    .bind(state_rank(state))
    .bind(only_outgoing)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("conversation_id")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Sent messages not yet in the outbox, oldest first (after a crash between
/// storing and producing).
pub async fn pending_outgoing(pool: &PgPool) -> Result<Vec<(Uuid, Uuid, Vec<u8>)>, StoreError> {
    let rows = sqlx::query("SELECT id, conversation_id, envelope FROM messages WHERE state = 'pending' AND outgoing ORDER BY seq")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                row.try_get("conversation_id")?,
                row.try_get("envelope")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// A received chat message, ready to store.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub sender: ActorId,
    pub action: bool,
    pub body: String,
    pub created_at_unix_ms: i64,
    pub partition: i32,
    pub offset: i64,
}

/// What storing a batch did to each message.
#[derive(Debug)]
pub struct Stored {
    pub added: Vec<pb::ChatMessage>,
    /// Already stored from the same place: a redelivery after a crash.
    pub redelivered: Vec<Uuid>,
    /// Already stored from elsewhere: a replay.
    pub replayed: Vec<Uuid>,
}

/// Stores a batch of received messages in one statement; a message id that
/// is already stored is left as it is (that makes redelivery a no-op).
pub async fn insert_incoming(pool: &PgPool, batch: &[Incoming]) -> Result<Stored, StoreError> {
    let mut stored = Stored {
        added: Vec::new(),
        redelivered: Vec::new(),
        replayed: Vec::new(),
    };
    if batch.is_empty() {
        return Ok(stored);
    }
    let ids: Vec<Uuid> = batch.iter().map(|m| m.id).collect();
    let conversations: Vec<Uuid> = batch.iter().map(|m| m.conversation_id).collect();
    let senders: Vec<Vec<u8>> = batch.iter().map(|m| m.sender.as_bytes().to_vec()).collect();
    let actions: Vec<bool> = batch.iter().map(|m| m.action).collect();
    let bodies: Vec<String> = batch.iter().map(|m| m.body.clone()).collect();
    let created: Vec<i64> = batch.iter().map(|m| m.created_at_unix_ms).collect();
    let partitions: Vec<i32> = batch.iter().map(|m| m.partition).collect();
    let offsets: Vec<i64> = batch.iter().map(|m| m.offset).collect();
    // One statement: the batch, in order (WITH ORDINALITY keeps it in
    // `seq`), and the conversations' activity; a message id already stored
    // is left as it is.
    let rows = sqlx::query(concat!(
        "WITH inserted AS (
             INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at, state, source_partition, source_offset)
             SELECT id, conversation_id, sender, FALSE, action, body, to_timestamp(created / 1000.0), 'received', part, off
             FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bool[], $5::text[], $6::bigint[], $7::int[], $8::bigint[])
                  WITH ORDINALITY AS batch(id, conversation_id, sender, action, body, created, part, off, position)
             ORDER BY position
             ON CONFLICT (id) DO NOTHING
             RETURNING *
         ), touched AS (
             UPDATE conversations c SET last_activity_at = greatest(c.last_activity_at, latest.at)
             FROM (SELECT conversation_id, max(created_at) AS at FROM inserted GROUP BY conversation_id) latest
             WHERE c.id = latest.conversation_id
         )
         SELECT ",
        message_columns!(),
        " FROM inserted"
    ))
    .bind(&ids)
    .bind(&conversations)
    .bind(&senders)
    .bind(&actions)
    .bind(&bodies)
    .bind(&created)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(pool)
    .await?;
    for row in &rows {
        stored.added.push(message_from_row(row)?);
    }
    stored.added.sort_by_key(|message| message.seq);

    if stored.added.len() < batch.len() {
        let added: std::collections::HashSet<String> =
            stored.added.iter().map(|m| m.id.clone()).collect();
        let others: Vec<&Incoming> = batch
            .iter()
            .filter(|m| !added.contains(&m.id.to_string()))
            .collect();
        let other_ids: Vec<Uuid> = others.iter().map(|m| m.id).collect();
        let known = sqlx::query(
            "SELECT id, source_partition, source_offset FROM messages WHERE id = ANY($1)",
        )
        .bind(&other_ids)
        .fetch_all(pool)
        .await?;
        for message in others {
            let same_place = known.iter().any(|row| {
                row.try_get::<Uuid, _>("id").ok() == Some(message.id)
                    && row
                        .try_get::<Option<i32>, _>("source_partition")
                        .ok()
                        .flatten()
                        == Some(message.partition)
                    && row
                        .try_get::<Option<i64>, _>("source_offset")
                        .ok()
                        .flatten()
                        == Some(message.offset)
            });
            if same_place {
                stored.redelivered.push(message.id);
            } else {
                stored.replayed.push(message.id);
            }
        }
    }
    Ok(stored)
}

/// Which of `ids` are our own messages in `conversation`.
pub async fn outgoing_in(
    pool: &PgPool,
    conversation: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE id = ANY($1) AND conversation_id = $2 AND outgoing",
    )
    .bind(ids)
    .bind(conversation)
    .fetch_all(pool)
    .await?)
}

pub async fn insert_receipts(pool: &PgPool, ids: &[Uuid], kind: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO receipts (message_id, kind)
         SELECT id, $2 FROM messages WHERE id = ANY($1) AND outgoing
         ON CONFLICT DO NOTHING",
    )
    .bind(ids)
    .bind(kind)
    .execute(pool)
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ history

/// Which page of a conversation.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Latest,
    Before(Uuid),
    After(Uuid),
    Around(Uuid),
}

pub struct Page {
    pub messages: Vec<pb::ChatMessage>,
    pub more_before: bool,
    pub more_after: bool,
}

async fn seq_of(pool: &PgPool, conversation: Uuid, id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM messages WHERE id = $1 AND conversation_id = $2")
            .bind(id)
            .bind(conversation)
            .fetch_optional(pool)
            .await?,
    )
}

async fn page_before(
    pool: &PgPool,
    conversation: Uuid,
    seq: i64,
    inclusive: bool,
    limit: i64,
) -> Result<Vec<pb::ChatMessage>, StoreError> {
    // `seq < $2 + 1` is `seq <= $2`; one statement serves both.
    let bound = if inclusive {
        seq.saturating_add(1)
    } else {
        seq
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
    ))
    .bind(conversation)
    .bind(bound)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut messages = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    messages.reverse();
    Ok(messages)
}

async fn page_after(
    pool: &PgPool,
    conversation: Uuid,
    seq: i64,
    limit: i64,
) -> Result<Vec<pb::ChatMessage>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(conversation)
    .bind(seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Whether the conversation has messages before `first` and after `last`.
async fn more_around(
    pool: &PgPool,
    conversation: Uuid,
    first: i64,
    last: i64,
) -> Result<(bool, bool), StoreError> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND seq < $2) AS before,
                EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND seq > $3) AS after",
    )
    .bind(conversation)
    .bind(first)
    .bind(last)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("before")?, row.try_get("after")?))
}

/// A page of history, oldest first. `None` if the anchor is not a message of
/// the conversation.
pub async fn history(
    pool: &PgPool,
    conversation: Uuid,
    anchor: Anchor,
    limit: u32,
) -> Result<Option<Page>, StoreError> {
    let limit = i64::from(limit.clamp(1, 500));
    let messages = match anchor {
        Anchor::Latest => page_before(pool, conversation, i64::MAX, true, limit).await?,
        Anchor::Before(id) => {
            let Some(seq) = seq_of(pool, conversation, id).await? else {
                return Ok(None);
            };
            page_before(pool, conversation, seq, false, limit).await?
        }
        Anchor::After(id) => {
            let Some(seq) = seq_of(pool, conversation, id).await? else {
                return Ok(None);
            };
            page_after(pool, conversation, seq, limit).await?
        }
        Anchor::Around(id) => {
            let Some(seq) = seq_of(pool, conversation, id).await? else {
                return Ok(None);
            };
            let before = limit / 2;
            let mut messages = page_before(pool, conversation, seq, true, before + 1).await?;
            messages.extend(page_after(pool, conversation, seq, limit - before - 1).await?);
            messages
        }
    };
    let (more_before, more_after) = match (messages.first(), messages.last()) {
        (Some(first), Some(last)) => {
            more_around(
                pool,
                conversation,
                i64::try_from(first.seq).unwrap_or(0),
                i64::try_from(last.seq).unwrap_or(0),
            )
            .await?
        }
        _ => (false, false),
    };
    Ok(Some(Page {
        messages,
        more_before,
        more_after,
    }))
}

/// Messages matching `query` (words, as in a search box), newest first.
pub async fn search(
    pool: &PgPool,
    query: &str,
    conversation: Option<Uuid>,
    limit: u32,
) -> Result<Vec<pb::ChatMessage>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages
         WHERE search @@ plainto_tsquery('simple', $1) AND ($2::uuid IS NULL OR conversation_id = $2)
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(query)
    .bind(conversation)
    .bind(i64::from(limit.clamp(1, 500)))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

// ------------------------------------------------------------------ conversations and read markers

pub async fn conversations(
    pool: &PgPool,
    me: &Identity,
) -> Result<Vec<pb::Conversation>, StoreError> {
    let contacts: std::collections::HashMap<Vec<u8>, ContactRecord> = contacts(pool, me)
        .await?
        .into_iter()
        .map(|contact| (contact.actor_id.as_bytes().to_vec(), contact))
        .collect();
    let rows = sqlx::query(concat!(
        "SELECT c.id AS conv_id, c.peer, (extract(epoch from c.last_activity_at) * 1000)::bigint AS activity_ms,
                coalesce(r.last_read_seq, 0) AS read_seq,
                (SELECT count(*) FROM messages u WHERE u.conversation_id = c.id AND NOT u.outgoing
                    AND u.seq > coalesce(r.last_read_seq, 0)) AS unread,
                last.*
         FROM conversations c
         LEFT JOIN read_markers r ON r.conversation_id = c.id
         LEFT JOIN LATERAL (SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.conversation_id = c.id ORDER BY seq DESC LIMIT 1) last ON TRUE
         ORDER BY c.last_activity_at DESC"
    ))
    .fetch_all(pool)
    .await?;
    let mut result = Vec::with_capacity(rows.len());
    for row in &rows {
        let peer: Vec<u8> = row.try_get("peer")?;
        let id: Uuid = row.try_get("conv_id")?;
        let last_id: Option<Uuid> = row.try_get("id")?;
        result.push(pb::Conversation {
            id: id.to_string(),
            peer: contacts.get(&peer).map(ContactRecord::to_pb),
            last_activity_unix_ms: row.try_get("activity_ms")?,
            unread: u64::try_from(row.try_get::<i64, _>("unread")?).unwrap_or(0),
            last_read_seq: u64::try_from(row.try_get::<i64, _>("read_seq")?).unwrap_or(0),
            last_message: match last_id {
                Some(_) => Some(message_from_row(row)?),
                None => None,
            },
        });
    }
    Ok(result)
}

/// Moves the read marker forward to `up_to` (never back). Returns the marker
/// and the unread count after, and whether it moved.
pub async fn mark_read(
    pool: &PgPool,
    conversation: Uuid,
    up_to: Uuid,
) -> Result<Option<(u64, u64, bool)>, StoreError> {
    let Some(seq) = seq_of(pool, conversation, up_to).await? else {
        return Ok(None);
    };
    let moved = sqlx::query(
        "INSERT INTO read_markers (conversation_id, last_read_seq) VALUES ($1, $2)
         ON CONFLICT (conversation_id) DO UPDATE SET last_read_seq = EXCLUDED.last_read_seq, updated_at = now()
         WHERE read_markers.last_read_seq < EXCLUDED.last_read_seq
         RETURNING last_read_seq",
    )
    .bind(conversation)
    .bind(seq)
    .fetch_optional(pool)
    .await?
    .is_some();
    let row = sqlx::query(
        "SELECT r.last_read_seq,
                (SELECT count(*) FROM messages u WHERE u.conversation_id = $1 AND NOT u.outgoing AND u.seq > r.last_read_seq) AS unread
         FROM read_markers r WHERE r.conversation_id = $1",
    )
    .bind(conversation)
    .fetch_one(pool)
    .await?;
    let last: i64 = row.try_get("last_read_seq")?;
    let unread: i64 = row.try_get("unread")?;
    Ok(Some((
        u64::try_from(last).unwrap_or(0),
        u64::try_from(unread).unwrap_or(0),
        moved,
    )))
}

/// Ids of received messages in `conversation` with seq in (after, up_to], for
/// read receipts.
pub async fn incoming_between(
    pool: &PgPool,
    conversation: Uuid,
    after: i64,
    up_to: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND NOT outgoing AND seq > $2 AND seq <= $3 ORDER BY seq",
    )
    .bind(conversation)
    .bind(after)
    .bind(up_to)
    .fetch_all(pool)
    .await?)
}

// ------------------------------------------------------------------ quarantine

/// A rejected record, kept for inspection.
#[derive(Debug, Clone)]
pub struct Quarantined<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
    pub sender: Option<ActorId>,
    pub message_id: Option<Uuid>,
    pub bytes: &'a [u8],
}

/// The most of a rejected record that is kept.
const QUARANTINE_HEAD: usize = 4096;

pub async fn quarantine(pool: &PgPool, record: &Quarantined<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO quarantine (topic, partition, \"offset\", reason, sender, message_id, size, head)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.topic)
    .bind(record.partition)
    .bind(record.offset)
    .bind(record.reason)
    .bind(record.sender.map(|id| id.as_bytes().to_vec()))
    .bind(record.message_id)
    .bind(i32::try_from(record.bytes.len()).unwrap_or(i32::MAX))
    .bind(&record.bytes[..record.bytes.len().min(QUARANTINE_HEAD)])
    .execute(pool)
    .await?;
    Ok(())
}
