//! Rejected records kept for inspection.

use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::identity::ActorId;

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
