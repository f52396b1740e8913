//! Conversations, their members and read markers. A conversation has
//! members; a one-to-one chat is the case of two: this actor and the
//! contact.

use sqlx::Row;
use sqlx::postgres::{PgPool, Postgres};
use uuid::Uuid;

use super::{Message, StoreError, count, message_from_row};
use crate::crypto::identity::ActorId;

/// What kind of conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    /// This actor and one contact.
    Direct,
    /// A channel, relayed by its owner (`store::channels`).
    Channel,
}

impl ConversationKind {
    fn parse(text: &str) -> Self {
        match text {
            "channel" => ConversationKind::Channel,
            _ => ConversationKind::Direct,
        }
    }
}

/// A conversation as the conversation list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub id: Uuid,
    pub kind: ConversationKind,
    /// Every member, this actor included, in the order they joined.
    pub members: Vec<ActorId>,
    pub last_activity_unix_ms: i64,
    pub unread: u64,
    pub last_read_seq: u64,
    pub last_message: Option<Message>,
    /// Kind `Channel`: the channel.
    pub channel: Option<super::StoredChannel>,
    pub muted: bool,
}

/// Makes sure the one-to-one conversation `id` of `me` and `peer` exists,
/// with both as members.
pub(super) async fn ensure_direct(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: Uuid,
    me: ActorId,
    peer: ActorId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO conversations (id, kind) VALUES ($1, 'direct') ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, actor_id)
         SELECT $1, member FROM unnest($2::bytea[]) AS member
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind([me.as_bytes().to_vec(), peer.as_bytes().to_vec()])
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every conversation, most recent activity first: a conversation's
/// activity is the time of its last message, or when it was made
/// (`last_activity_at`, which messages no longer move: one row written per
/// message, not two).
pub async fn conversations(pool: &PgPool) -> Result<Vec<ConversationSummary>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT c.id AS conv_id, c.kind, c.muted,
                greatest((extract(epoch from c.last_activity_at) * 1000)::bigint, last.created_ms) AS activity_ms,
                (SELECT array_agg(m.actor_id ORDER BY m.joined_at, m.actor_id) FROM conversation_members m
                    WHERE m.conversation_id = c.id) AS members,
                coalesce(r.last_read_seq, 0) AS read_seq,
                (SELECT count(*) FROM messages u WHERE u.conversation_id = c.id AND NOT u.outgoing
                    AND u.line IS NULL AND u.act IS NULL AND u.seq > coalesce(r.last_read_seq, 0)) AS unread,
                last.*
         FROM conversations c
         LEFT JOIN read_markers r ON r.conversation_id = c.id
         LEFT JOIN LATERAL (SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.conversation_id = c.id AND m.act IS NULL ORDER BY seq DESC LIMIT 1) last ON TRUE
         ORDER BY activity_ms DESC"
    ))
    .fetch_all(pool)
    .await?;
    let mut result = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        let members: Option<Vec<Vec<u8>>> = row.try_get("members")?;
        let last_id: Option<Uuid> = row.try_get("id")?;
        result.push(ConversationSummary {
            id: row.try_get("conv_id")?,
            kind: ConversationKind::parse(&kind),
            members: members
                .unwrap_or_default()
                .iter()
                .filter_map(|member| ActorId::from_slice(member))
                .collect(),
            last_activity_unix_ms: row.try_get("activity_ms")?,
            unread: count(row.try_get("unread")?),
            last_read_seq: count(row.try_get("read_seq")?),
            last_message: match last_id {
                Some(_) => Some(message_from_row(row)?),
                None => None,
            },
            channel: None,
            muted: row.try_get("muted")?,
        });
    }
    if result
        .iter()
        .any(|summary| summary.kind == ConversationKind::Channel)
    {
        let mut channels = super::channels(pool).await?;
        for summary in &mut result {
            if let Some(at) = channels.iter().position(|channel| channel.id == summary.id) {
                summary.channel = Some(channels.swap_remove(at));
            }
        }
    }
    Ok(result)
}

/// Mutes or unmutes a conversation; false if there is no such one.
pub async fn set_muted(pool: &PgPool, conversation: Uuid, muted: bool) -> Result<bool, StoreError> {
    let updated = sqlx::query("UPDATE conversations SET muted = $2 WHERE id = $1")
        .bind(conversation)
        .bind(muted)
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// The seq of message `id` in `conversation`, if it is one of its messages.
pub(super) async fn seq_of(
    pool: &PgPool,
    conversation: Uuid,
    id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM messages WHERE id = $1 AND conversation_id = $2")
            .bind(id)
            .bind(conversation)
            .fetch_optional(pool)
            .await?,
    )
}

/// A read marker after `mark_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarker {
    /// The marker before the call.
    pub before: u64,
    pub last_read_seq: u64,
    /// Received messages after the marker.
    pub unread: u64,
    pub moved: bool,
}

/// Moves the read marker forward to `up_to` (never back). `None` if `up_to`
/// is not a message of the conversation.
pub async fn mark_read(
    pool: &PgPool,
    conversation: Uuid,
    up_to: Uuid,
) -> Result<Option<ReadMarker>, StoreError> {
    let Some(seq) = seq_of(pool, conversation, up_to).await? else {
        return Ok(None);
    };
    // The statement's snapshot is taken before its upsert: `old` is the
    // marker as it was.
    let row = sqlx::query(
        "WITH old AS (
             SELECT last_read_seq FROM read_markers WHERE conversation_id = $1
         ), moved AS (
             INSERT INTO read_markers (conversation_id, last_read_seq) VALUES ($1, $2)
             ON CONFLICT (conversation_id) DO UPDATE SET last_read_seq = EXCLUDED.last_read_seq, updated_at = now()
             WHERE read_markers.last_read_seq < EXCLUDED.last_read_seq
             RETURNING last_read_seq
         )
         SELECT coalesce((SELECT last_read_seq FROM old), 0) AS before,
                coalesce((SELECT last_read_seq FROM moved), (SELECT last_read_seq FROM old), 0) AS after,
                EXISTS (SELECT 1 FROM moved) AS moved",
    )
    .bind(conversation)
    .bind(seq)
    .fetch_one(pool)
    .await?;
    let after: i64 = row.try_get("after")?;
    let unread: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages
         WHERE conversation_id = $1 AND NOT outgoing AND line IS NULL AND act IS NULL AND seq > $2",
    )
    .bind(conversation)
    .bind(after)
    .fetch_one(pool)
    .await?;
    Ok(Some(ReadMarker {
        before: count(row.try_get("before")?),
        last_read_seq: count(after),
        unread: count(unread),
        moved: row.try_get("moved")?,
    }))
}

/// Ids of received messages in `conversation` with seq in (after, up_to], for
/// read receipts.
pub async fn incoming_between(
    pool: &PgPool,
    conversation: Uuid,
    after: u64,
    up_to: u64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND NOT outgoing AND seq > $2 AND seq <= $3 ORDER BY seq",
    )
    .bind(conversation)
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(i64::try_from(up_to).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?)
}
