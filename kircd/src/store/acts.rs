//! Replies, reactions, edits and deletions (migration 0012): what the acts
//! stored as rows of `messages` make of their targets, the reply quotes and
//! reaction counts a message is shown with, and a message's versions.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{Message, StoreError, message_from_row};
pub use crate::content::{Act, ActKind};
use crate::crypto::identity::ActorId;

/// How long a reply's quote of the message it answers is, at most, in bytes.
pub const QUOTE_BYTES: usize = 200;

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub sender: Option<ActorId>,
    pub excerpt: String,
    pub deleted: bool,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u32,
    /// One of them is this actor's.
    pub mine: bool,
}

/// What the store knows of an act's target when the act arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub conversation_id: Uuid,
    pub sender: Option<ActorId>,
    /// A message one may act on: chat, not an act, a channel's line or a
    /// transfer's line.
    pub actable: bool,
}

/// The facts of those of `ids` that are stored.
pub async fn act_targets(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, TargetFacts>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT id, conversation_id, sender,
                act IS NULL AND line IS NULL AND transfer_id IS NULL AS actable
         FROM messages WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut facts = HashMap::with_capacity(rows.len());
    for row in &rows {
        let sender: Vec<u8> = row.try_get("sender")?;
        facts.insert(
            row.try_get("id")?,
            TargetFacts {
                conversation_id: row.try_get("conversation_id")?,
                sender: ActorId::from_slice(&sender),
                actable: row.try_get("actable")?,
            },
        );
    }
    Ok(facts)
}

/// The messages that stored acts and replies wait for: not stored yet.
pub async fn awaited_messages(pool: &PgPool) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT a.act_target FROM messages a
         WHERE a.act_target IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM messages t WHERE t.id = a.act_target)
         UNION
         SELECT r.reply_to FROM messages r
         WHERE r.reply_to IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM messages t WHERE t.id = r.reply_to)",
    )
    .fetch_all(pool)
    .await?)
}

/// Which of `ids` are stored messages.
pub async fn stored_of(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT id FROM messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?,
    )
}

/// How many acts of `conversation` wait for a message that has not arrived.
pub async fn waiting_acts(pool: &PgPool, conversation: Uuid) -> Result<u64, StoreError> {
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages a
         WHERE a.conversation_id = $1 AND a.act IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM messages t WHERE t.id = a.act_target)",
    )
    .bind(conversation)
    .fetch_one(pool)
    .await?;
    Ok(super::count(waiting))
}

/// Brings the messages `ids` in line with every act stored on them (the
/// newest edit by their sender gives the text, a deletion by it empties
/// them and the edits, for good), and returns, decorated, those of them
/// that changed or that `reacted` names (a reaction changes no row), and
/// the stored replies to any of them. Acts by anyone but the target's
/// sender, or from another conversation, change nothing. Run after acts or
/// their targets are stored, in whatever order they came.
pub async fn apply_acts(
    pool: &PgPool,
    ids: &[Uuid],
    reacted: &[Uuid],
) -> Result<Vec<Message>, StoreError> {
    if ids.is_empty() && reacted.is_empty() {
        return Ok(Vec::new());
    }
    // One statement: the derived state of each target, the edits a
    // deletion empties, and the targets' rows where they differ.
    let changed: Vec<Uuid> = sqlx::query_scalar(
        "WITH derived AS (
             SELECT t.id, coalesce(t.first_body, t.body) AS original,
                    EXISTS (SELECT 1 FROM messages a
                            WHERE a.act_target = t.id AND a.act = 'delete'
                              AND a.sender = t.sender AND a.conversation_id = t.conversation_id)
                        AS gone,
                    (SELECT a.body FROM messages a
                     WHERE a.act_target = t.id AND a.act = 'edit'
                       AND a.sender = t.sender AND a.conversation_id = t.conversation_id
                     ORDER BY a.id DESC LIMIT 1) AS newest
             FROM messages t
             WHERE t.id = ANY($1) AND t.act IS NULL AND t.line IS NULL AND t.transfer_id IS NULL
               AND EXISTS (SELECT 1 FROM messages a WHERE a.act_target = t.id)
         ), wiped AS (
             UPDATE messages a SET body = ''
             FROM derived d
             WHERE d.gone AND a.act_target = d.id AND a.act = 'edit' AND a.body <> ''
         ), next AS (
             SELECT id, gone,
                    NOT gone AND newest IS NOT NULL AS edited,
                    CASE WHEN gone THEN '' ELSE coalesce(newest, original) END AS body,
                    CASE WHEN gone OR newest IS NULL THEN NULL ELSE original END AS first_body
             FROM derived
         )
         UPDATE messages m
         SET deleted = n.gone, edited = n.edited, body = n.body, first_body = n.first_body
         FROM next n
         WHERE m.id = n.id
           AND (m.deleted, m.edited, m.body, m.first_body)
               IS DISTINCT FROM (n.gone, n.edited, n.body, n.first_body)
         RETURNING m.id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut touched: Vec<Uuid> = changed;
    touched.extend(reacted.iter().copied());
    touched.sort_unstable();
    touched.dedup();
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE id = ANY($1) AND act IS NULL
         UNION
         SELECT ",
        message_columns!(),
        " FROM messages WHERE reply_to = ANY($2)
         ORDER BY seq"
    ))
    .bind(&touched)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut messages = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    decorate(pool, &mut messages).await?;
    Ok(messages)
}

/// Fills in the reply quotes and reaction counts of `messages`.
pub async fn decorate(pool: &PgPool, messages: &mut [Message]) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = messages.iter().map(|message| message.id).collect();
    let answered: Vec<Uuid> = messages
        .iter()
        .filter_map(|message| message.reply_to)
        .collect();
    let mut quotes = HashMap::new();
    if !answered.is_empty() {
        let rows = sqlx::query(
            "SELECT id, conversation_id, sender, deleted, body FROM messages
             WHERE id = ANY($1) AND act IS NULL",
        )
        .bind(&answered)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let conversation: Uuid = row.try_get("conversation_id")?;
            let sender: Vec<u8> = row.try_get("sender")?;
            let body: String = row.try_get("body")?;
            quotes.insert(
                id,
                (
                    conversation,
                    Quote {
                        sender: ActorId::from_slice(&sender),
                        excerpt: excerpt(&body, QUOTE_BYTES).to_owned(),
                        deleted: row.try_get("deleted")?,
                    },
                ),
            );
        }
    }
    // The newest act per (target, sender, emoji) decides whether that
    // reaction stands; emojis in the order they were first used.
    let rows = sqlx::query(
        "SELECT latest.act_target, latest.body AS emoji, count(*) AS count,
                bool_or(latest.outgoing) AS mine, min(latest.first_id::text) AS first
         FROM (
             SELECT DISTINCT ON (a.act_target, a.sender, a.body)
                    a.act_target, a.body, a.act, a.outgoing,
                    min(a.id::text) OVER (PARTITION BY a.act_target, a.body) AS first_id
             FROM messages a
             JOIN messages t ON t.id = a.act_target AND t.conversation_id = a.conversation_id
             WHERE a.act_target = ANY($1) AND a.act IN ('react', 'unreact') AND NOT t.deleted
             ORDER BY a.act_target, a.sender, a.body, a.id DESC
         ) latest
         WHERE latest.act = 'react'
         GROUP BY latest.act_target, latest.body
         ORDER BY latest.act_target, first",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut reactions: HashMap<Uuid, Vec<ReactionCount>> = HashMap::new();
    for row in &rows {
        let count: i64 = row.try_get("count")?;
        reactions
            .entry(row.try_get("act_target")?)
            .or_default()
            .push(ReactionCount {
                emoji: row.try_get("emoji")?,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                mine: row.try_get("mine")?,
            });
    }
    for message in messages {
        message.quote = message
            .reply_to
            .and_then(|answered| quotes.get(&answered))
            .filter(|(conversation, _)| *conversation == message.conversation_id)
            .map(|(_, quote)| quote.clone());
        message.reactions = reactions.remove(&message.id).unwrap_or_default();
    }
    Ok(())
}

/// The start of `text`, at most `bytes` long, cut at a character boundary.
pub fn excerpt(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One text a message had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub text: String,
    pub at_unix_ms: i64,
}

/// The texts of message `id`, oldest first: what it was sent with, then
/// each edit by its sender; none once deleted. `None` if there is no such
/// message.
pub async fn versions(pool: &PgPool, id: Uuid) -> Result<Option<Vec<Version>>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT coalesce(first_body, body) AS original, deleted,
                (extract(epoch from created_at) * 1000)::bigint AS at
         FROM messages WHERE id = $1 AND act IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    if row.try_get::<bool, _>("deleted")? {
        return Ok(Some(Vec::new()));
    }
    let mut versions = vec![Version {
        text: row.try_get("original")?,
        at_unix_ms: row.try_get("at")?,
    }];
    let edits = sqlx::query(
        "SELECT a.body, (extract(epoch from a.created_at) * 1000)::bigint AS at
         FROM messages a JOIN messages t ON t.id = a.act_target
         WHERE a.act_target = $1 AND a.act = 'edit'
           AND a.sender = t.sender AND a.conversation_id = t.conversation_id
         ORDER BY a.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    for edit in &edits {
        versions.push(Version {
            text: edit.try_get("body")?,
            at_unix_ms: edit.try_get("at")?,
        });
    }
    Ok(Some(versions))
}

/// The stored message `id` (not an act), decorated.
pub async fn message_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE id = $1 AND act IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut messages = [message_from_row(&row)?];
    decorate(pool, &mut messages).await?;
    let [message] = messages;
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_cut_at_a_character() {
        assert_eq!(excerpt("hello", 10), "hello");
        assert_eq!(excerpt("hello", 3), "hel");
        // "é" is two bytes: a cut inside it goes back before it.
        assert_eq!(excerpt("aé", 2), "a");
        assert_eq!(excerpt("aé", 3), "aé");
    }
}
