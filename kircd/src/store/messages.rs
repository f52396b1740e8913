//! Sent and received messages and the receipts for them.

use kirc_proto::v1 as pb;
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{MessageState, StoreError, state_rank};
use crate::identity::ActorId;

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
