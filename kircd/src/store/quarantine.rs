//! Rejected records kept for inspection, within bounds: a flood of junk must
//! not fill the database (Aiven's free PostgreSQL has 1 GB).

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::crypto::identity::ActorId;

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

/// How much the quarantine holds, as last written or trimmed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineFill {
    pub rows: u64,
    pub bytes: u64,
    /// Rows dropped (oldest first) since the daemon started.
    pub dropped: u64,
}

/// The most of a rejected record that is kept.
pub const QUARANTINE_HEAD: usize = 4096;

/// The most the quarantine may hold.
#[derive(Debug, Clone, Copy)]
pub struct QuarantineBounds {
    pub rows: u64,
    pub bytes: u64,
}

fn head(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(QUARANTINE_HEAD)]
}

/// What the quarantine holds now.
pub async fn quarantine_fill(pool: &PgPool) -> Result<QuarantineFill, StoreError> {
    let row = sqlx::query(
        "SELECT count(*) AS rows, coalesce(sum(length(head)), 0)::bigint AS bytes FROM quarantine",
    )
    .fetch_one(pool)
    .await?;
    Ok(QuarantineFill {
        rows: u64::try_from(row.try_get::<i64, _>("rows")?).unwrap_or(0),
        bytes: u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0),
        dropped: 0,
    })
}

/// How much of its bounds the quarantine writes per batch at most: 1/8.
///
/// A flood is thousands of records per batch, each up to a 4 KiB head;
/// writing them all (and dropping as much) cost ~110 ms per 4,000 records,
/// which was most of the time a junk flood took to read, and makes a flood
/// as heavy on the database as its bounds per batch. An eighth keeps a
/// sample of the newest of every batch and fills the table over eight.
pub const QUARANTINE_BATCH_SHARE: u64 = 8;

impl QuarantineBounds {
    /// The most one batch writes.
    pub fn per_batch(self) -> QuarantineBounds {
        QuarantineBounds {
            rows: (self.rows / QUARANTINE_BATCH_SHARE).max(1).min(self.rows),
            bytes: (self.bytes / QUARANTINE_BATCH_SHARE)
                .max(QUARANTINE_HEAD as u64)
                .min(self.bytes),
        }
    }
}

/// Keeps the newest of a batch of rejected records (one statement), at most
/// `bounds.per_batch()`, then drops the oldest rows beyond `bounds`. `fill`
/// is what the quarantine held before; the result is what it holds after.
/// Records not written count as dropped.
pub async fn quarantine(
    pool: &PgPool,
    records: &[Quarantined<'_>],
    bounds: QuarantineBounds,
    fill: QuarantineFill,
) -> Result<QuarantineFill, StoreError> {
    // Newest first, the records that fit in one batch's share.
    let share = bounds.per_batch();
    let mut kept_bytes = 0u64;
    let fitting = records
        .iter()
        .rev()
        .take(usize::try_from(share.rows).unwrap_or(usize::MAX))
        .take_while(|record| {
            kept_bytes += head(record.bytes).len() as u64;
            kept_bytes <= share.bytes
        })
        .count();
    let skipped = (records.len() - fitting) as u64;
    let kept = &records[records.len() - fitting..];
    let mut fill = QuarantineFill {
        dropped: fill.dropped + skipped,
        ..fill
    };
    if kept.is_empty() {
        return Ok(fill);
    }
    let topics: Vec<&str> = kept.iter().map(|record| record.topic).collect();
    let partitions: Vec<i32> = kept.iter().map(|record| record.partition).collect();
    let offsets: Vec<i64> = kept.iter().map(|record| record.offset).collect();
    let reasons: Vec<&str> = kept.iter().map(|record| record.reason).collect();
    let senders: Vec<Option<Vec<u8>>> = kept
        .iter()
        .map(|record| record.sender.map(|id| id.as_bytes().to_vec()))
        .collect();
    let message_ids: Vec<Option<Uuid>> = kept.iter().map(|record| record.message_id).collect();
    let sizes: Vec<i32> = kept
        .iter()
        .map(|record| i32::try_from(record.bytes.len()).unwrap_or(i32::MAX))
        .collect();
    let heads: Vec<&[u8]> = kept.iter().map(|record| head(record.bytes)).collect();
    sqlx::query(
        "INSERT INTO quarantine (topic, partition, \"offset\", reason, sender, message_id, size, head)
         SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::bytea[], $6::uuid[], $7::int[], $8::bytea[])",
    )
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&reasons)
    .bind(&senders)
    .bind(&message_ids)
    .bind(&sizes)
    .bind(&heads)
    .execute(pool)
    .await?;
    fill.rows += kept.len() as u64;
    fill.bytes += heads.iter().map(|head| head.len() as u64).sum::<u64>();
    if fill.rows <= bounds.rows && fill.bytes <= bounds.bytes {
        return Ok(fill);
    }
    // Over a bound: keep the newest rows that fit in both.
    let row = sqlx::query(
        "WITH ranked AS (
             SELECT id,
                    row_number() OVER (ORDER BY id DESC) AS newer_rows,
                    sum(length(head)) OVER (ORDER BY id DESC) AS newer_bytes
             FROM quarantine
         ), dropped AS (
             DELETE FROM quarantine q USING ranked r
             WHERE q.id = r.id AND (r.newer_rows > $1 OR r.newer_bytes > $2)
             RETURNING length(q.head) AS bytes
         )
         SELECT count(*) AS rows, coalesce(sum(bytes), 0)::bigint AS bytes FROM dropped",
    )
    .bind(i64::try_from(bounds.rows).unwrap_or(i64::MAX))
    .bind(i64::try_from(bounds.bytes).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await?;
    let rows = u64::try_from(row.try_get::<i64, _>("rows")?).unwrap_or(0);
    let bytes = u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0);
    Ok(QuarantineFill {
        rows: fill.rows.saturating_sub(rows),
        bytes: fill.bytes.saturating_sub(bytes),
        dropped: fill.dropped + rows,
    })
}
