//! Reading history: pages, search, conversation summaries, read markers.

use kirc_proto::v1 as pb;
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{ContactRecord, StoreError, contacts, message_from_row};
use crate::crypto::identity::Identity;

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
