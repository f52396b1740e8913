//! Reading history: pages and search.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::conversations::seq_of;
use super::{Message, StoreError, message_from_row};

/// Which page of a conversation.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Latest,
    Before(Uuid),
    After(Uuid),
    Around(Uuid),
}

pub struct Page {
    pub messages: Vec<Message>,
    pub more_before: bool,
    pub more_after: bool,
}

async fn page_before(
    pool: &PgPool,
    conversation: Uuid,
    seq: i64,
    inclusive: bool,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    // `seq < $2 + 1` is `seq <= $2`; one statement serves both.
    let bound = if inclusive {
        seq.saturating_add(1)
    } else {
        seq
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 AND seq < $2 AND act IS NULL ORDER BY seq DESC LIMIT $3"
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
) -> Result<Vec<Message>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 AND seq > $2 AND act IS NULL ORDER BY seq LIMIT $3"
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
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND seq < $2 AND act IS NULL) AS before,
                EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND seq > $3 AND act IS NULL) AS after",
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
    let mut messages = match anchor {
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
    super::decorate(pool, &mut messages).await?;
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
) -> Result<Vec<Message>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages
         WHERE search @@ plainto_tsquery('simple', $1) AND ($2::uuid IS NULL OR conversation_id = $2)
           AND act IS NULL
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(query)
    .bind(conversation)
    .bind(i64::from(limit.clamp(1, 500)))
    .fetch_all(pool)
    .await?;
    let mut messages = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    super::decorate(pool, &mut messages).await?;
    Ok(messages)
}
