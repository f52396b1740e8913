//! Sent and received messages and the receipts for them.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{Act, Message, MessageState, StoreError, message_from_row};
use crate::crypto::identity::ActorId;

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
    /// The client's key for this message, if it gave one.
    pub idempotency_key: Option<String>,
    pub reply_to: Option<Uuid>,
    /// A reaction, edit or deletion rather than a message to show (the
    /// body is then the act's).
    pub act: Option<Act>,
}

/// Stores a message to send, as PENDING. With an idempotency key already
/// used, nothing is stored: `None`, and [`outgoing_by_key`] has the message.
pub async fn insert_outgoing(
    pool: &PgPool,
    message: &Outgoing,
) -> Result<Option<Message>, StoreError> {
    // The conversation's row is not touched: its activity is its last
    // message's (`conversations`), so a message costs one row, not two.
    let row = sqlx::query(concat!(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at, state, envelope, idempotency_key, reply_to, act_target, act)
         VALUES ($1, $2, $3, TRUE, $4, $5, to_timestamp($6 / 1000.0), 'pending', $7, $8, $9, $10, $11)
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ",
        message_columns!()
    ))
    .bind(message.id)
    .bind(message.conversation_id)
    .bind(message.sender.as_bytes().as_slice())
    .bind(message.action)
    .bind(&message.body)
    .bind(message.created_at_unix_ms)
    .bind(&message.envelope)
    .bind(message.idempotency_key.as_deref())
    .bind(message.reply_to)
    .bind(message.act.as_ref().map(|act| act.target))
    .bind(message.act.as_ref().map(|act| act.kind.name()))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Whether a sent message `id` is stored.
pub async fn outgoing_exists(pool: &PgPool, id: Uuid) -> Result<bool, StoreError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1 AND outgoing)")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(exists)
}

/// The message sent with `key`, if any.
pub async fn outgoing_by_key(pool: &PgPool, key: &str) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE idempotency_key = $1 AND outgoing"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Records where a sent message sits in the own data-out and moves it
/// forward to QUEUED; returns its conversation if its state moved (a message
/// the delivery already moved past QUEUED keeps its state). The place a
/// receipt range may name is kept by the delivery worker instead
/// ([`record_copy`]), for every copy it hands on.
pub async fn set_queued(
    pool: &PgPool,
    id: Uuid,
    partition: i32,
    offset: i64,
) -> Result<Option<Uuid>, StoreError> {
    place_and_advance(pool, id, (partition, offset), MessageState::Queued, false).await
}

/// Keeps the place of a copy of the sent message `id` in the own data-out,
/// which the delivery worker is handing to the contact, among those a
/// receipt range may name, unless a receipt covered the message already,
/// and makes it the message's own place. This is the only record of a copy
/// whose produce timed out although the broker wrote it: the sender never
/// learnt its offset. The own place outlives the copy's row (a receipt
/// deletes that), and a range sent again after a restart may end at the
/// message; without it here, a message whose `SendMessage` left the place
/// to the delivery worker (each judges the first attempt by its own clock)
/// or failed to write it would have no place left to be found by.
pub async fn record_copy(
    pool: &PgPool,
    id: Uuid,
    partition: i32,
    offset: i64,
) -> Result<(), StoreError> {
    // PENDING is below every state: the place is written, no state moves.
    place_and_advance(pool, id, (partition, offset), MessageState::Pending, true).await?;
    Ok(())
}

/// [`record_copy`], the message's own place ([`set_queued`]'s) and the move
/// forward to DELIVERED in one statement, for a copy handed on at the first
/// attempt; returns the message's conversation if its state moved. The
/// own place is kept although the message skips QUEUED: a receipt range
/// sent again (after a restart) may end at a message whose copy a receipt
/// already covered, and [`received_range`] then finds that end by it.
pub async fn record_copy_delivered(
    pool: &PgPool,
    id: Uuid,
    partition: i32,
    offset: i64,
) -> Result<Option<Uuid>, StoreError> {
    place_and_advance(pool, id, (partition, offset), MessageState::Delivered, true).await
}

/// Writes a sent message's own place (partition, offset) in the own
/// data-out, moves it forward to `state`, and with `keep_copy` also keeps
/// that place as a copy's ([`record_copy`]); returns the message's
/// conversation if its state moved (a message already past `state` keeps
/// its own).
async fn place_and_advance(
    pool: &PgPool,
    id: Uuid,
    (partition, offset): (i32, i64),
    state: MessageState,
    keep_copy: bool,
) -> Result<Option<Uuid>, StoreError> {
    // One statement, one round trip; every part reads the row as it was
    // before it.
    let row = sqlx::query(concat!(
        "WITH earlier AS (
             SELECT id, ",
        state_rank!(),
        " AS rank FROM messages WHERE id = $1 AND outgoing FOR UPDATE
         ), copy AS (
             INSERT INTO awaiting_receipt (message_id, conversation_id, outbox_partition, outbox_offset)
             SELECT id, conversation_id, $2, $3 FROM messages
             WHERE $6 AND id = $1 AND outgoing AND state IN ('pending', 'queued', 'delivered')
             ON CONFLICT DO NOTHING
         )
         UPDATE messages m
         SET outbox_partition = $2, outbox_offset = $3,
             state = CASE WHEN earlier.rank < $4 THEN $5 ELSE m.state END
         FROM earlier WHERE m.id = earlier.id
         RETURNING m.conversation_id, earlier.rank < $4 AS moved"
    ))
    .bind(id)
    .bind(partition)
    .bind(offset)
    .bind(state.rank())
    .bind(state.as_str())
    .bind(keep_copy)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let moved: bool = row.try_get("moved")?;
    Ok(moved.then(|| row.try_get("conversation_id")).transpose()?)
}

/// Sent messages still QUEUED whose data-out record is gone: below their
/// partition's earliest offset in `low` (partition, offset); oldest first.
pub async fn expired_from_outbox(
    pool: &PgPool,
    low: &[(i32, i64)],
) -> Result<Vec<Resend>, StoreError> {
    let partitions: Vec<i32> = low.iter().map(|(partition, _)| *partition).collect();
    let offsets: Vec<i64> = low.iter().map(|(_, offset)| *offset).collect();
    let rows = sqlx::query(
        "SELECT m.id, m.conversation_id, m.envelope
         FROM messages m
         JOIN unnest($1::int[], $2::bigint[]) AS low(partition, earliest)
           ON m.outbox_partition = low.partition AND m.outbox_offset < low.earliest
         WHERE m.state = 'queued' AND m.outgoing AND m.envelope IS NOT NULL
           AND m.outbox_key IS NULL
         ORDER BY m.seq",
    )
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(pool)
    .await?;
    to_resend(&rows)
}

/// The sealed bytes of a message this actor sent.
pub async fn outgoing_envelope(pool: &PgPool, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT envelope FROM messages WHERE id = $1 AND outgoing")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
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
    .bind(state.rank())
    .bind(only_outgoing)
    .fetch_all(pool)
    .await?;
    moved_messages(&rows)
}

/// (id, conversation) of each row a state update returned.
fn moved_messages(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("conversation_id")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// A sent message to produce (again): id, conversation, sealed bytes.
pub type Resend = (Uuid, Uuid, Vec<u8>);

fn to_resend(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Resend>, StoreError> {
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

/// Sent messages not yet in the outbox, oldest first (after a crash between
/// storing and producing). Channel posts are the channel's to send again
/// (`channel_posts_unsent`).
pub async fn pending_outgoing(pool: &PgPool) -> Result<Vec<Resend>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, conversation_id, envelope FROM messages
         WHERE state = 'pending' AND outgoing AND outbox_key IS NULL ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    to_resend(&rows)
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
    /// SHA-256 of the record's bytes.
    pub digest: [u8; 32],
    /// A record that named the same sender was refused since this sender's
    /// previous chat in the batch: a receipt range must not span the gap.
    pub after_refused: bool,
    pub reply_to: Option<Uuid>,
    /// A reaction, edit or deletion (the body is then the act's).
    pub act: Option<Act>,
}

/// What storing a batch did to each message.
#[derive(Debug)]
pub struct Stored {
    pub added: Vec<Message>,
    /// Already stored, and this is the same record again: read again by our
    /// consumer (same place) or sent again by the sender after its crash
    /// (same sender, same bytes).
    pub redelivered: Vec<Uuid>,
    /// Already stored, and this is not the same record: the id from another
    /// sender, or other bytes under it. A replay.
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
    let mut named_conversations = conversations.clone();
    named_conversations.sort_unstable();
    named_conversations.dedup();
    let senders: Vec<Vec<u8>> = batch.iter().map(|m| m.sender.as_bytes().to_vec()).collect();
    let actions: Vec<bool> = batch.iter().map(|m| m.action).collect();
    let bodies: Vec<String> = batch.iter().map(|m| m.body.clone()).collect();
    let created: Vec<i64> = batch.iter().map(|m| m.created_at_unix_ms).collect();
    let partitions: Vec<i32> = batch.iter().map(|m| m.partition).collect();
    let offsets: Vec<i64> = batch.iter().map(|m| m.offset).collect();
    let digests: Vec<&[u8]> = batch.iter().map(|m| m.digest.as_slice()).collect();
    let replies: Vec<Option<Uuid>> = batch.iter().map(|m| m.reply_to).collect();
    let targets: Vec<Option<Uuid>> = batch
        .iter()
        .map(|m| m.act.as_ref().map(|act| act.target))
        .collect();
    let acts: Vec<Option<&str>> = batch
        .iter()
        .map(|m| m.act.as_ref().map(|act| act.kind.name()))
        .collect();
    // One statement for the batch, in order (WITH ORDINALITY keeps it in
    // `seq`); a message id already stored is left as it is. The
    // conversations' rows are not touched (see `insert_outgoing`), only
    // looked up, once each: if one does not exist, nothing is inserted and
    // the batch fails below, as it did when this was a foreign key
    // (migration 0014 says why it is not). The guard counts the named
    // conversations found through the primary key (`$13` holds each once)
    // rather than anti-joining them: PostgreSQL then takes a generic plan
    // after its first five executions (an index scan whatever the table's
    // size) instead of planning every single-message batch again, which
    // cost more than executing it (0.11–0.14 ms of planning against
    // 0.08 ms of execution; 0.035 ms planning with the generic plan).
    let rows = sqlx::query(concat!(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at, state, source_partition, source_offset, digest, reply_to, act_target, act)
         SELECT id, conversation_id, sender, FALSE, action, body, to_timestamp(created / 1000.0), 'received', part, off, digest, reply_to, act_target, act
         FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bool[], $5::text[], $6::bigint[], $7::int[], $8::bigint[], $9::bytea[], $10::uuid[], $11::uuid[], $12::text[])
              WITH ORDINALITY AS batch(id, conversation_id, sender, action, body, created, part, off, digest, reply_to, act_target, act, position)
         WHERE (SELECT count(*) FROM conversations c WHERE c.id = ANY($13::uuid[])) = cardinality($13::uuid[])
         ORDER BY position
         ON CONFLICT (id) DO NOTHING
         RETURNING ",
        message_columns!()
    ))
    .bind(&ids)
    .bind(&conversations)
    .bind(&senders)
    .bind(&actions)
    .bind(&bodies)
    .bind(&created)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&digests)
    .bind(&replies)
    .bind(&targets)
    .bind(&acts)
    .bind(&named_conversations)
    .fetch_all(pool)
    .await?;
    for row in &rows {
        stored.added.push(message_from_row(row)?);
    }
    stored.added.sort_by_key(|message| message.seq);

    if stored.added.len() < batch.len() {
        // The first occurrence of an id in the batch is the one inserted; a
        // second one in the same batch is judged like any other.
        let mut unclaimed: std::collections::HashSet<Uuid> =
            stored.added.iter().map(|m| m.id).collect();
        let others: Vec<&Incoming> = batch.iter().filter(|m| !unclaimed.remove(&m.id)).collect();
        let other_ids: Vec<Uuid> = others.iter().map(|m| m.id).collect();
        let known = sqlx::query(
            "SELECT id, sender, digest, source_partition, source_offset FROM messages WHERE id = ANY($1)",
        )
        .bind(&other_ids)
        .fetch_all(pool)
        .await?;
        let mut known_by_id = std::collections::HashMap::new();
        for row in &known {
            let id: Uuid = row.try_get("id")?;
            known_by_id.insert(id, row);
        }
        // Neither inserted nor stored before: the batch named a
        // conversation that does not exist, and nothing was inserted.
        if others.iter().any(|m| !known_by_id.contains_key(&m.id)) {
            return Err(StoreError::UnknownConversation);
        }
        for message in others {
            let same_record = known_by_id.get(&message.id).is_some_and(|row| {
                let sender: Option<Vec<u8>> = row.try_get("sender").ok();
                let digest: Option<Vec<u8>> = row.try_get("digest").ok().flatten();
                let place = (
                    row.try_get::<Option<i32>, _>("source_partition")
                        .ok()
                        .flatten(),
                    row.try_get::<Option<i64>, _>("source_offset")
                        .ok()
                        .flatten(),
                );
                // A place proves the same record only in a Kafka inbox: a
                // record from the direct path has none (partition -1).
                let same_place = message.partition >= 0
                    && place == (Some(message.partition), Some(message.offset));
                sender.as_deref() == Some(message.sender.as_bytes().as_slice())
                    && (digest.as_deref() == Some(message.digest.as_slice()) || same_place)
            });
            if same_record {
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

/// Our messages in `conversation` that a received range from `first` to
/// `last` covers: the two ends, and the messages whose copies the delivery
/// worker handed on between theirs (same partition of the own data-out,
/// offsets between). The contact stores our copies in the order of our
/// data-out, so its run is one stretch of it; an end may have several
/// copies (a produce that timed out and was written anyway, a message
/// produced again at a start), and the stretch taken is the shortest one
/// that fits: the last end's first copy at or after the first end's
/// earliest, and the first end's last copy at or before that. An end of
/// which no copy is known covers itself alone.
pub async fn received_range(
    pool: &PgPool,
    conversation: Uuid,
    first: Uuid,
    last: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "WITH copies AS (
             SELECT message_id, outbox_partition AS place, outbox_offset AS at
             FROM awaiting_receipt
             WHERE message_id IN ($2, $3) AND conversation_id = $1
             UNION
             SELECT id, outbox_partition, outbox_offset FROM messages
             WHERE id IN ($2, $3) AND conversation_id = $1 AND outgoing
               AND outbox_partition IS NOT NULL
         ), high AS (
             SELECT copy.place, min(copy.at) AS at FROM copies copy
             WHERE copy.message_id = $3
               AND copy.at >= (SELECT min(start.at) FROM copies start
                               WHERE start.message_id = $2 AND start.place = copy.place)
             GROUP BY copy.place
         ), ends AS (
             SELECT high.place, max(start.at) AS low, high.at AS high
             FROM high JOIN copies start
               ON start.message_id = $2 AND start.place = high.place AND start.at <= high.at
             GROUP BY high.place, high.at
         )
         SELECT awaiting.message_id
         FROM awaiting_receipt awaiting
         JOIN ends ON awaiting.outbox_partition = ends.place
                  AND awaiting.outbox_offset BETWEEN ends.low AND ends.high
         WHERE awaiting.conversation_id = $1
         UNION
         SELECT id FROM messages WHERE id IN ($2, $3) AND conversation_id = $1 AND outgoing",
    )
    .bind(conversation)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?)
}

/// Our messages in `conversation` that a read range from `first` to `last`
/// covers: those we stored from one end to the other, past PENDING (a
/// message not yet in the outbox cannot have been read). The reader stores a
/// sender's messages in the order they were sent, which is ours.
pub async fn read_range(
    pool: &PgPool,
    conversation: Uuid,
    first: Uuid,
    last: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "WITH ends AS (
             SELECT min(seq) AS low, max(seq) AS high FROM messages
             WHERE id IN ($2, $3) AND conversation_id = $1 AND outgoing
         )
         SELECT id FROM messages, ends
         WHERE conversation_id = $1 AND outgoing AND seq BETWEEN ends.low AND ends.high
           AND state <> 'pending'",
    )
    .bind(conversation)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?)
}

/// The sent messages of `conversation` the contact has not reported
/// received yet.
pub async fn unreceived_outgoing(
    pool: &PgPool,
    conversation: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND outgoing
           AND state IN ('pending', 'queued', 'delivered')",
    )
    .bind(conversation)
    .fetch_all(pool)
    .await?)
}

/// What a contact's receipt says of our messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Received,
    Read,
}

impl ReceiptKind {
    /// The state a message covered by such a receipt moves to; its name is
    /// also the receipt's kind as stored.
    pub fn state(self) -> MessageState {
        match self {
            ReceiptKind::Received => MessageState::Received,
            ReceiptKind::Read => MessageState::Read,
        }
    }
}

/// Applies a contact's receipt of `kind` for our messages `ids`: notes it,
/// takes their copies out of later ranges (a receipt of either kind means
/// the message was stored) and moves them forward to the receipt's state,
/// all in one statement. A range finds the messages between its ends by
/// those copies: were the copies taken out and the states moved in two
/// statements, a crash between them would leave the covered messages
/// behind for good, since the range, applied again after the restart, no
/// longer finds them. Returns (id, conversation) of each message whose
/// state moved.
pub async fn apply_receipts(
    pool: &PgPool,
    ids: &[Uuid],
    kind: ReceiptKind,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let state = kind.state();
    let rows = sqlx::query(concat!(
        "WITH covered AS (DELETE FROM awaiting_receipt WHERE message_id = ANY($1)),
         noted AS (
             INSERT INTO receipts (message_id, kind)
             SELECT id, $2 FROM messages WHERE id = ANY($1) AND outgoing
             ON CONFLICT DO NOTHING
         )
         UPDATE messages SET state = $2 WHERE id = ANY($1) AND outgoing AND ",
        state_rank!(),
        " < $3
         RETURNING id, conversation_id"
    ))
    .bind(ids)
    .bind(state.as_str())
    .bind(state.rank())
    .fetch_all(pool)
    .await?;
    moved_messages(&rows)
}
