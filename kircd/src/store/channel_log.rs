//! A channel's log: its messages and lines as this actor stores them, the
//! owner's steps until they are fanned out, and the posts waiting for the
//! session that opens them.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::channels::save_channel_in;
use super::{Act, Message, MessageState, StoreError, StoredChannel, message_from_row};
use crate::crypto::identity::ActorId;

/// What a channel's line that is not a message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Create,
    Join,
    Part,
    Kick,
    Ban,
    Unban,
    Op,
    Deop,
    Topic,
    Moderated,
    Unmoderated,
}

impl LineKind {
    pub const ALL: [LineKind; 11] = [
        LineKind::Create,
        LineKind::Join,
        LineKind::Part,
        LineKind::Kick,
        LineKind::Ban,
        LineKind::Unban,
        LineKind::Op,
        LineKind::Deop,
        LineKind::Topic,
        LineKind::Moderated,
        LineKind::Unmoderated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Create => "create",
            LineKind::Join => "join",
            LineKind::Part => "part",
            LineKind::Kick => "kick",
            LineKind::Ban => "ban",
            LineKind::Unban => "unban",
            LineKind::Op => "op",
            LineKind::Deop => "deop",
            LineKind::Topic => "topic",
            LineKind::Moderated => "moderated",
            LineKind::Unmoderated => "unmoderated",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        LineKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A channel's line: what happened, and to whom (the message's sender is
/// who did it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub target: Option<ActorId>,
}

pub(super) fn line_from_row(row: &sqlx::postgres::PgRow) -> Result<Option<Line>, sqlx::Error> {
    let kind: Option<String> = row.try_get("line")?;
    let target: Option<Vec<u8>> = row.try_get("line_target")?;
    Ok(kind.as_deref().and_then(LineKind::parse).map(|kind| Line {
        kind,
        target: target.as_deref().and_then(ActorId::from_slice),
    }))
}

/// A message or line of a channel, as this actor stores it.
#[derive(Debug, Clone)]
pub struct ChannelItem<'a> {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub sender: ActorId,
    pub outgoing: bool,
    pub action: bool,
    pub body: &'a str,
    pub created_at_unix_ms: i64,
    pub channel_seq: Option<u64>,
    pub line: Option<Line>,
    pub state: MessageState,
    /// An own post: the encoded `ChannelPost`, kept until it is in the own
    /// outbox (the channel seals it when it sends it, so that records to the
    /// owner leave in the order of their ids).
    pub post: Option<&'a [u8]>,
    /// An own post: the Kafka key it goes out with.
    pub outbox_key: Option<Uuid>,
    /// An own post: the caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
    pub reply_to: Option<Uuid>,
    /// A reaction, edit or deletion (the body is then the act's).
    pub act: Option<Act>,
}

async fn insert_item_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    item: &ChannelItem<'_>,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at,
             state, envelope, channel_seq, line, line_target, outbox_key, idempotency_key,
             reply_to, act_target, act)
         VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::double precision / 1000),
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO NOTHING
         RETURNING ",
        message_columns!()
    ))
    .bind(item.id)
    .bind(item.channel_id)
    .bind(item.sender.as_bytes().as_slice())
    .bind(item.outgoing)
    .bind(item.action)
    .bind(item.body)
    .bind(item.created_at_unix_ms)
    .bind(item.state.as_str())
    .bind(item.post)
    .bind(item.channel_seq.and_then(|seq| i64::try_from(seq).ok()))
    .bind(item.line.map(|line| line.kind.as_str()))
    .bind(
        item.line
            .and_then(|line| line.target)
            .map(|target| target.as_bytes().to_vec()),
    )
    .bind(item.outbox_key)
    .bind(item.idempotency_key)
    .bind(item.reply_to)
    .bind(item.act.as_ref().map(|act| act.target))
    .bind(item.act.as_ref().map(|act| act.kind.name()))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Stores a channel's message or line; `None` if its id is already stored
/// (a copy relayed again, or a replay).
pub async fn insert_channel_item(
    pool: &PgPool,
    item: &ChannelItem<'_>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    let stored = insert_item_in(&mut tx, item).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A member stores a relayed step: the channel as it is after it, and the
/// step's message or line, in one transaction.
pub async fn apply_relayed(
    pool: &PgPool,
    channel: &StoredChannel,
    item: Option<&ChannelItem<'_>>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    save_channel_in(&mut tx, channel).await?;
    let stored = match item {
        Some(item) => insert_item_in(&mut tx, item).await?,
        None => None,
    };
    tx.commit().await?;
    Ok(stored)
}

/// One step of an owner's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub channel_id: Uuid,
    pub seq: u64,
    pub cause_id: Option<Uuid>,
    /// The encoded `ChannelRelay`.
    pub relay: Vec<u8>,
    pub recipients: Vec<ActorId>,
}

/// The owner makes a step: the channel after it, the step to fan out, and
/// its own copy of the message or line, in one transaction.
pub async fn save_step(
    pool: &PgPool,
    channel: &StoredChannel,
    step: &Step,
    item: Option<&ChannelItem<'_>>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    save_channel_in(&mut tx, channel).await?;
    let recipients: Vec<Vec<u8>> = step
        .recipients
        .iter()
        .map(|actor| actor.as_bytes().to_vec())
        .collect();
    sqlx::query(
        "INSERT INTO channel_steps (channel_id, seq, cause_id, relay, recipients)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(step.channel_id)
    .bind(i64::try_from(step.seq).unwrap_or(i64::MAX))
    .bind(step.cause_id)
    .bind(&step.relay)
    .bind(&recipients)
    .execute(&mut *tx)
    .await?;
    let stored = match item {
        Some(item) => insert_item_in(&mut tx, item).await?,
        None => None,
    };
    tx.commit().await?;
    Ok(stored)
}

fn step_from_row(row: &sqlx::postgres::PgRow) -> Result<Step, sqlx::Error> {
    let recipients: Vec<Vec<u8>> = row.try_get("recipients")?;
    Ok(Step {
        channel_id: row.try_get("channel_id")?,
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        cause_id: row.try_get("cause_id")?,
        relay: row.try_get("relay")?,
        recipients: recipients
            .iter()
            .filter_map(|actor| ActorId::from_slice(actor))
            .collect(),
    })
}

/// The step a record caused, if it caused one.
pub async fn step_of_cause(pool: &PgPool, cause_id: Uuid) -> Result<Option<Step>, StoreError> {
    let row = sqlx::query(
        "SELECT channel_id, seq, cause_id, relay, recipients FROM channel_steps WHERE cause_id = $1",
    )
    .bind(cause_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(step_from_row).transpose()?)
}

/// Steps whose fan-out a stop or crash interrupted, in order.
pub async fn steps_not_fanned_out(pool: &PgPool) -> Result<Vec<Step>, StoreError> {
    let rows = sqlx::query(
        "SELECT channel_id, seq, cause_id, relay, recipients FROM channel_steps
         WHERE NOT fanned_out ORDER BY channel_id, seq",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(step_from_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Every recipient's copy of the step is in the own outbox.
pub async fn step_fanned_out(pool: &PgPool, channel_id: Uuid, seq: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE channel_steps SET fanned_out = TRUE WHERE channel_id = $1 AND seq = $2")
        .bind(channel_id)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(())
}

/// Keeps a post whose session has not arrived yet. At most `limit` wait per
/// channel: past it the post is not kept (false), so that no owner can fill
/// a member's database with posts it cannot open.
pub async fn add_waiting(
    pool: &PgPool,
    channel_id: Uuid,
    seq: u64,
    session_id: &str,
    post: &[u8],
    limit: u64,
) -> Result<bool, StoreError> {
    let kept = sqlx::query(
        "INSERT INTO channel_waiting (channel_id, seq, session_id, post)
         SELECT $1, $2, $3, $4
         WHERE (SELECT count(*) FROM channel_waiting WHERE channel_id = $1) < $5
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_id)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .bind(session_id)
    .bind(post)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(kept > 0)
}

/// The posts waiting for `session_id`, in order: (seq, encoded post).
pub async fn waiting_for(
    pool: &PgPool,
    channel_id: Uuid,
    session_id: &str,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, post FROM channel_waiting WHERE channel_id = $1 AND session_id = $2
         ORDER BY seq",
    )
    .bind(channel_id)
    .bind(session_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
                row.try_get("post")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Forgets waiting posts once opened (or found unopenable).
pub async fn drop_waiting(pool: &PgPool, channel_id: Uuid, seqs: &[u64]) -> Result<(), StoreError> {
    let seqs: Vec<i64> = seqs
        .iter()
        .filter_map(|seq| i64::try_from(*seq).ok())
        .collect();
    sqlx::query("DELETE FROM channel_waiting WHERE channel_id = $1 AND seq = ANY($2)")
        .bind(channel_id)
        .bind(&seqs)
        .execute(pool)
        .await?;
    Ok(())
}

/// An own post relayed back by the owner: its place, and RECEIVED (the
/// owner has it and relays it to everyone). `None` if it is not an own
/// post of this channel, or already placed.
pub async fn place_own_post(
    pool: &PgPool,
    channel_id: Uuid,
    id: Uuid,
    channel_seq: u64,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE messages SET channel_seq = $3, state = 'received', envelope = NULL
         WHERE id = $1 AND conversation_id = $2 AND outgoing AND channel_seq IS NULL
         RETURNING ",
        message_columns!()
    ))
    .bind(id)
    .bind(channel_id)
    .bind(i64::try_from(channel_seq).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Own posts not yet in the own outbox, oldest first: (id, channel, the
/// encoded `ChannelPost`, the Kafka key).
pub async fn unsent_channel_posts(
    pool: &PgPool,
) -> Result<Vec<(Uuid, Uuid, Vec<u8>, Uuid)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, conversation_id, envelope, outbox_key FROM messages
         WHERE state = 'pending' AND outgoing AND outbox_key IS NOT NULL
             AND envelope IS NOT NULL
         ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                row.try_get("conversation_id")?,
                row.try_get("envelope")?,
                row.try_get("outbox_key")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// The encoded posts of this actor's in `channel` that the owner has not
/// relayed back yet.
pub async fn unplaced_own_posts(
    pool: &PgPool,
    channel_id: Uuid,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT envelope FROM messages
         WHERE conversation_id = $1 AND outgoing AND channel_seq IS NULL
             AND outbox_key IS NOT NULL AND envelope IS NOT NULL
         ORDER BY seq",
    )
    .bind(channel_id)
    .fetch_all(pool)
    .await?)
}
