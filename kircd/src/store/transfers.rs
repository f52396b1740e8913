//! File transfers and their files: what was offered, how far each file is
//! verified, and how each transfer ended.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::{Message, StoreError, message_from_row};
use crate::crypto::identity::ActorId;

/// Where a transfer stands. Offered → Moving → Complete, or it ends
/// Refused, Cancelled or Failed; an ended transfer never moves again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    Offered,
    Moving,
    Complete,
    Refused,
    Cancelled,
    Failed,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Offered => "offered",
            TransferState::Moving => "moving",
            TransferState::Complete => "complete",
            TransferState::Refused => "refused",
            TransferState::Cancelled => "cancelled",
            TransferState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "offered" => TransferState::Offered,
            "moving" => TransferState::Moving,
            "complete" => TransferState::Complete,
            "refused" => TransferState::Refused,
            "cancelled" => TransferState::Cancelled,
            _ => TransferState::Failed,
        }
    }

    pub fn is_ended(self) -> bool {
        !matches!(self, TransferState::Offered | TransferState::Moving)
    }
}

/// A transfer as stored, with its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub peer: ActorId,
    pub outgoing: bool,
    pub state: TransferState,
    pub reason: String,
    pub piece_bytes: u32,
    pub local_path: String,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub files: Vec<TransferFileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFileRecord {
    pub offered_path: Vec<String>,
    pub local_path: String,
    pub size: u64,
    pub hash: [u8; 32],
    pub pieces_hash: [u8; 32],
    pub piece_hashes: Option<Vec<u8>>,
    pub verified_pieces: u64,
    pub modified_ns: Option<i64>,
    pub renamed: bool,
    pub saved: bool,
}

/// Stores a new transfer; false if its id is taken (a second copy of an
/// offer, or one whose id another transfer has).
pub async fn insert_transfer(pool: &PgPool, transfer: &TransferRecord) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO transfers (id, conversation_id, peer, outgoing, state, reason, piece_bytes, local_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(transfer.id)
    .bind(transfer.conversation_id)
    .bind(transfer.peer.as_bytes().as_slice())
    .bind(transfer.outgoing)
    .bind(transfer.state.as_str())
    .bind(&transfer.reason)
    .bind(i32::try_from(transfer.piece_bytes).unwrap_or(i32::MAX))
    .bind(&transfer.local_path)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    // One statement for every file: a folder of a thousand files is one
    // round trip to a PostgreSQL tens of milliseconds away, not a thousand.
    // A file's offered path (an array) travels as a JSON array, since
    // `unnest` flattens an array of arrays.
    let files = &transfer.files;
    let positions: Vec<i32> = (0..files.len())
        .map(|position| i32::try_from(position).unwrap_or(i32::MAX))
        .collect();
    let offered: Vec<String> = files
        .iter()
        .map(|file| serde_json::Value::from(file.offered_path.clone()).to_string())
        .collect();
    let local: Vec<&str> = files.iter().map(|file| file.local_path.as_str()).collect();
    let sizes: Vec<i64> = files.iter().map(|file| to_i64(file.size)).collect();
    let hashes: Vec<&[u8]> = files.iter().map(|file| file.hash.as_slice()).collect();
    let pieces_hashes: Vec<&[u8]> = files
        .iter()
        .map(|file| file.pieces_hash.as_slice())
        .collect();
    let piece_hashes: Vec<Option<&[u8]>> = files
        .iter()
        .map(|file| file.piece_hashes.as_deref())
        .collect();
    let verified: Vec<i64> = files
        .iter()
        .map(|file| to_i64(file.verified_pieces))
        .collect();
    let modified: Vec<Option<i64>> = files.iter().map(|file| file.modified_ns).collect();
    let renamed: Vec<bool> = files.iter().map(|file| file.renamed).collect();
    sqlx::query(
        "INSERT INTO transfer_files (transfer_id, position, offered_path, local_path, size, hash, pieces_hash, piece_hashes, verified_pieces, modified_ns, renamed)
         SELECT $1, position, ARRAY(SELECT part FROM jsonb_array_elements_text(offered::jsonb) WITH ORDINALITY AS path(part, n) ORDER BY n), local_path, size, hash, pieces_hash, piece_hashes, verified_pieces, modified_ns, renamed
         FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bigint[], $10::bigint[], $11::bool[])
           AS file(position, offered, local_path, size, hash, pieces_hash, piece_hashes, verified_pieces, modified_ns, renamed)",
    )
    .bind(transfer.id)
    .bind(&positions)
    .bind(&offered)
    .bind(&local)
    .bind(&sizes)
    .bind(&hashes)
    .bind(&pieces_hashes)
    .bind(&piece_hashes)
    .bind(&verified)
    .bind(&modified)
    .bind(&renamed)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Moves a transfer that has not ended to `state`; false if it had ended
/// (an ended transfer stays as it ended).
pub async fn set_transfer_state(
    pool: &PgPool,
    id: Uuid,
    state: TransferState,
    reason: &str,
) -> Result<bool, StoreError> {
    let moved = sqlx::query(
        "UPDATE transfers SET state = $2, reason = $3, updated_at = now()
         WHERE id = $1 AND state IN ('offered', 'moving')",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// The recipient's folder for a transfer, once it is known.
pub async fn set_transfer_local_path(
    pool: &PgPool,
    id: Uuid,
    local_path: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE transfers SET local_path = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(local_path)
        .execute(pool)
        .await?;
    Ok(())
}

/// A file's piece hashes, once checked.
pub async fn set_piece_hashes(
    pool: &PgPool,
    id: Uuid,
    position: u32,
    piece_hashes: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE transfer_files SET piece_hashes = $3 WHERE transfer_id = $1 AND position = $2",
    )
    .bind(id)
    .bind(i32::try_from(position).unwrap_or(i32::MAX))
    .bind(piece_hashes)
    .execute(pool)
    .await?;
    Ok(())
}

/// A received file is verified whole and saved at `local_path` (relative
/// to the download folder).
pub async fn set_file_saved(
    pool: &PgPool,
    id: Uuid,
    position: u32,
    local_path: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE transfer_files SET saved = TRUE, local_path = $3
         WHERE transfer_id = $1 AND position = $2",
    )
    .bind(id)
    .bind(i32::try_from(position).unwrap_or(i32::MAX))
    .bind(local_path)
    .execute(pool)
    .await?;
    Ok(())
}

/// The local paths (top-level folders or files) of the recipient's
/// transfers that have not ended: names a new offer must not take.
pub async fn unfinished_incoming_paths(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT local_path FROM transfers WHERE NOT outgoing AND state IN ('offered', 'moving')",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| row.try_get("local_path").map_err(StoreError::from))
        .collect()
}

/// How many pieces of each file are verified, in the offer's order.
pub async fn set_verified_pieces(
    pool: &PgPool,
    id: Uuid,
    verified: &[u64],
) -> Result<(), StoreError> {
    let positions: Vec<i32> = (0..verified.len())
        .map(|position| i32::try_from(position).unwrap_or(i32::MAX))
        .collect();
    let counts: Vec<i64> = verified.iter().copied().map(to_i64).collect();
    sqlx::query(
        "UPDATE transfer_files AS file SET verified_pieces = given.count
         FROM unnest($2::int[], $3::bigint[]) AS given(position, count)
         WHERE file.transfer_id = $1 AND file.position = given.position
           AND file.verified_pieces IS DISTINCT FROM given.count",
    )
    .bind(id)
    .bind(&positions)
    .bind(&counts)
    .execute(pool)
    .await?;
    Ok(())
}

/// The columns `transfer_from_row` reads.
macro_rules! transfer_columns {
    () => {
        "id, conversation_id, peer, outgoing, state, reason, piece_bytes, local_path,
         (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
         (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms"
    };
}

/// One transfer with its files.
pub async fn transfer(pool: &PgPool, id: Uuid) -> Result<Option<TransferRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        transfer_columns!(),
        " FROM transfers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut transfers = with_files(pool, vec![transfer_from_row(&row)?]).await?;
    Ok(transfers.pop())
}

/// Transfers that have not ended, and the `recent` newest of those that
/// have, newest first.
pub async fn transfers(pool: &PgPool, recent: i64) -> Result<Vec<TransferRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "(SELECT ",
        transfer_columns!(),
        " FROM transfers WHERE state IN ('offered', 'moving'))
         UNION
         (SELECT ",
        transfer_columns!(),
        " FROM transfers WHERE state NOT IN ('offered', 'moving')
          ORDER BY created_at DESC LIMIT $1)
         ORDER BY created_ms DESC, id"
    ))
    .bind(recent)
    .fetch_all(pool)
    .await?;
    let records = rows
        .iter()
        .map(transfer_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    with_files(pool, records).await
}

fn transfer_from_row(row: &PgRow) -> Result<TransferRecord, StoreError> {
    let peer: Vec<u8> = row.try_get("peer")?;
    let state: String = row.try_get("state")?;
    let piece_bytes: i32 = row.try_get("piece_bytes")?;
    Ok(TransferRecord {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        peer: ActorId::from_slice(&peer)
            .ok_or_else(|| sqlx::Error::Decode("a transfer's peer is not an actor id".into()))?,
        outgoing: row.try_get("outgoing")?,
        state: TransferState::parse(&state),
        reason: row.try_get("reason")?,
        piece_bytes: u32::try_from(piece_bytes).unwrap_or(0),
        local_path: row.try_get("local_path")?,
        created_unix_ms: row.try_get("created_ms")?,
        updated_unix_ms: row.try_get("updated_ms")?,
        files: Vec::new(),
    })
}

async fn with_files(
    pool: &PgPool,
    mut transfers: Vec<TransferRecord>,
) -> Result<Vec<TransferRecord>, StoreError> {
    if transfers.is_empty() {
        return Ok(transfers);
    }
    let ids: Vec<Uuid> = transfers.iter().map(|transfer| transfer.id).collect();
    let rows = sqlx::query(
        "SELECT transfer_id, offered_path, local_path, size, hash, pieces_hash, piece_hashes,
                verified_pieces, modified_ns, renamed, saved
         FROM transfer_files WHERE transfer_id = ANY($1) ORDER BY transfer_id, position",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for row in rows {
        let id: Uuid = row.try_get("transfer_id")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        let pieces_hash: Vec<u8> = row.try_get("pieces_hash")?;
        let size: i64 = row.try_get("size")?;
        let verified: i64 = row.try_get("verified_pieces")?;
        let file = TransferFileRecord {
            offered_path: row.try_get("offered_path")?,
            local_path: row.try_get("local_path")?,
            size: u64::try_from(size).unwrap_or(0),
            hash: hash.as_slice().try_into().map_err(|_| {
                sqlx::Error::Decode("a transfer file's hash is not 32 bytes".into())
            })?,
            pieces_hash: pieces_hash.as_slice().try_into().map_err(|_| {
                sqlx::Error::Decode("a transfer file's pieces hash is not 32 bytes".into())
            })?,
            piece_hashes: row.try_get("piece_hashes")?,
            verified_pieces: u64::try_from(verified).unwrap_or(0),
            modified_ns: row.try_get("modified_ns")?,
            renamed: row.try_get("renamed")?,
            saved: row.try_get("saved")?,
        };
        if let Some(transfer) = transfers.iter_mut().find(|transfer| transfer.id == id) {
            transfer.files.push(file);
        }
    }
    Ok(transfers)
}

/// Leaves the line of a completed transfer in its conversation: a message
/// whose id is the transfer's, RECEIVED on both sides (the sender has the
/// recipient's DONE), with no envelope, so it is never delivered. `None`
/// if the line is there already.
pub async fn insert_transfer_line(
    pool: &PgPool,
    transfer: &TransferRecord,
    sender: ActorId,
    body: &str,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, body, created_at, state, transfer_id)
         VALUES ($1, $2, $3, $4, $5, now(), 'received', $1)
         ON CONFLICT (id) DO NOTHING
         RETURNING ",
        message_columns!()
    ))
    .bind(transfer.id)
    .bind(transfer.conversation_id)
    .bind(sender.as_bytes().as_slice())
    .bind(transfer.outgoing)
    .bind(body)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}
