//! Control marks: the last control record applied per sender and stream.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::crypto::identity::ActorId;

/// Where a control record was read and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub message_id: Uuid,
    pub partition: i32,
    pub offset: i64,
    /// SHA-256 of the record's bytes.
    pub digest: [u8; 32],
}

/// Every stored mark: (sender, stream name, mark).
pub async fn control_marks(pool: &PgPool) -> Result<Vec<(ActorId, String, Mark)>, StoreError> {
    let rows = sqlx::query(
        "SELECT sender, stream, message_id, partition, \"offset\", digest FROM control_marks",
    )
    .fetch_all(pool)
    .await?;
    let mut marks = Vec::with_capacity(rows.len());
    for row in &rows {
        let sender: Vec<u8> = row.try_get("sender")?;
        let digest: Vec<u8> = row.try_get("digest")?;
        let (Some(sender), Ok(digest)) = (
            ActorId::from_slice(&sender),
            <[u8; 32]>::try_from(digest.as_slice()),
        ) else {
            continue;
        };
        marks.push((
            sender,
            row.try_get("stream")?,
            Mark {
                message_id: row.try_get("message_id")?,
                partition: row.try_get("partition")?,
                offset: row.try_get("offset")?,
                digest,
            },
        ));
    }
    Ok(marks)
}

/// Stores `mark` as the stream's mark unless a later one is stored.
pub async fn save_control_mark(
    pool: &PgPool,
    sender: ActorId,
    stream: &str,
    mark: &Mark,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO control_marks (sender, stream, message_id, partition, \"offset\", digest)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (sender, stream) DO UPDATE SET
             message_id = EXCLUDED.message_id, partition = EXCLUDED.partition,
             \"offset\" = EXCLUDED.\"offset\", digest = EXCLUDED.digest
         WHERE control_marks.message_id < EXCLUDED.message_id",
    )
    .bind(sender.as_bytes().as_slice())
    .bind(stream)
    .bind(mark.message_id)
    .bind(mark.partition)
    .bind(mark.offset)
    .bind(mark.digest.as_slice())
    .execute(pool)
    .await?;
    Ok(())
}
