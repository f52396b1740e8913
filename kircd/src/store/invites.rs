//! The invites this actor issued. Only a hash of each one-time secret is
//! kept.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::crypto::identity::ActorId;

pub async fn insert_invite(
    pool: &PgPool,
    id: Uuid,
    secret_hash: &[u8],
    expires_at_unix_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO invites (id, secret_hash, expires_at) VALUES ($1, $2, to_timestamp($3 / 1000.0))")
        .bind(id)
        .bind(secret_hash)
        .bind(expires_at_unix_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a presented one-time secret turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClaim {
    /// Valid, and now used up by this actor.
    Valid,
    Expired,
    AlreadyUsed,
    Unknown,
}

pub async fn claim_invite(
    pool: &PgPool,
    secret_hash: &[u8],
    by: ActorId,
) -> Result<InviteClaim, StoreError> {
    let claimed = sqlx::query(
        "UPDATE invites SET used_at = now(), used_by = $2
         WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING id",
    )
    .bind(secret_hash)
    .bind(by.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(InviteClaim::Valid);
    }
    let row = sqlx::query("SELECT used_at IS NOT NULL AS used, used_by, expires_at <= now() AS expired FROM invites WHERE secret_hash = $1")
        .bind(secret_hash)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        None => InviteClaim::Unknown,
        Some(row) => {
            let used_by: Option<Vec<u8>> = row.try_get("used_by")?;
            // The same actor presenting its secret again (its request was
            // redelivered) is still the valid claim it was.
            if used_by.as_deref() == Some(by.as_bytes().as_slice()) {
                InviteClaim::Valid
            } else if row.try_get::<bool, _>("used")? {
                InviteClaim::AlreadyUsed
            } else {
                InviteClaim::Expired
            }
        }
    })
}
