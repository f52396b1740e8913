//! Contacts: who this actor knows, with each one's signed profile as
//! received. The profile is kept as bytes; the contact book verifies it.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{ContactState, StoreError};
use crate::crypto::identity::ActorId;

macro_rules! contact_columns {
    () => {
        "actor_id, signed_profile, profile_updated_at, state, peer_accepted, (extract(epoch from created_at) * 1000)::bigint AS added_ms"
    };
}

/// A contact row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContact {
    /// As stored; the contact book checks it against the profile's key.
    pub actor_id: Vec<u8>,
    /// The encoded `SignedProfile`, unverified until the contact book reads it.
    pub signed_profile: Vec<u8>,
    /// The time the contact stamped on that profile (0 for rows written
    /// before it was kept: the book fills it in).
    pub profile_updated_at_unix_ms: i64,
    pub state: ContactState,
    pub peer_accepted: bool,
    pub added_at_unix_ms: i64,
}

fn contact_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredContact, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(StoredContact {
        actor_id: row.try_get("actor_id")?,
        signed_profile: row.try_get("signed_profile")?,
        profile_updated_at_unix_ms: row.try_get("profile_updated_at")?,
        state: ContactState::parse(&state),
        peer_accepted: row.try_get("peer_accepted")?,
        added_at_unix_ms: row.try_get("added_ms")?,
    })
}

/// A verified profile to store, in the columns it fills.
#[derive(Debug, Clone, Copy)]
pub struct ProfileColumns<'a> {
    pub actor_id: ActorId,
    pub display_name: &'a str,
    pub signing_key: &'a [u8; 32],
    pub box_key: &'a [u8; 32],
    pub signed_profile: &'a [u8],
    pub updated_at_unix_ms: i64,
}

/// A contact as saved, and whether the profile given was newer than the
/// stored one (and so replaced it).
#[derive(Debug, Clone)]
pub struct SavedContact {
    pub contact: StoredContact,
    pub profile_newer: bool,
}

/// Stores or refreshes a contact and makes sure the one-to-one conversation
/// `direct` with it exists, with both as members. A new contact gets
/// `state`; an existing one keeps its state unless `state` is Accepted and
/// it was a request (adding someone who asked accepts them). Blocked stays
/// blocked. The profile replaces the stored one only if the contact stamped
/// it later: a replayed old profile never rolls back a name or an address.
/// `stored_stamp` reads the stamp of a stored profile whose row predates the
/// `profile_updated_at` column.
pub async fn save_contact(
    pool: &PgPool,
    me: ActorId,
    profile: ProfileColumns<'_>,
    direct: Uuid,
    state: ContactState,
    peer_accepted: bool,
    stored_stamp: impl FnOnce(&[u8]) -> Option<i64>,
) -> Result<SavedContact, StoreError> {
    let mut tx = pool.begin().await?;
    let stored = sqlx::query(
        "SELECT signed_profile, profile_updated_at FROM contacts WHERE actor_id = $1 FOR UPDATE",
    )
    .bind(profile.actor_id.as_bytes().as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let profile_newer = match stored {
        None => true,
        Some(row) => {
            let stamp: i64 = row.try_get("profile_updated_at")?;
            let stamp = if stamp > 0 {
                Some(stamp)
            } else {
                let bytes: Vec<u8> = row.try_get("signed_profile")?;
                stored_stamp(&bytes)
            };
            // A stored profile that no longer decodes is replaced by any valid one.
            stamp.is_none_or(|stamp| stamp < profile.updated_at_unix_ms)
        }
    };
    let row = sqlx::query(concat!(
        "INSERT INTO contacts (actor_id, display_name, signing_key, box_key, signed_profile, profile_updated_at, state, peer_accepted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (actor_id) DO UPDATE SET
             display_name = CASE WHEN $9 THEN EXCLUDED.display_name ELSE contacts.display_name END,
             box_key = CASE WHEN $9 THEN EXCLUDED.box_key ELSE contacts.box_key END,
             signed_profile = CASE WHEN $9 THEN EXCLUDED.signed_profile ELSE contacts.signed_profile END,
             profile_updated_at = CASE WHEN $9 THEN EXCLUDED.profile_updated_at ELSE contacts.profile_updated_at END,
             state = CASE WHEN contacts.state = 'request' AND EXCLUDED.state = 'accepted' THEN 'accepted' ELSE contacts.state END,
             peer_accepted = contacts.peer_accepted OR EXCLUDED.peer_accepted,
             updated_at = now()
         RETURNING ",
        contact_columns!()
    ))
    .bind(profile.actor_id.as_bytes().as_slice())
    .bind(profile.display_name)
    .bind(profile.signing_key.as_slice())
    .bind(profile.box_key.as_slice())
    .bind(profile.signed_profile)
    .bind(profile.updated_at_unix_ms)
    .bind(state.as_str())
    .bind(peer_accepted)
    .bind(profile_newer)
    .fetch_one(&mut *tx)
    .await?;
    super::conversations::ensure_direct(&mut tx, direct, me, profile.actor_id).await?;
    tx.commit().await?;
    Ok(SavedContact {
        contact: contact_from_row(&row)?,
        profile_newer,
    })
}

/// Sets a contact's state; `None` if there is no such contact.
pub async fn set_contact_state(
    pool: &PgPool,
    actor: ActorId,
    state: ContactState,
) -> Result<Option<StoredContact>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE contacts SET state = $2, updated_at = now() WHERE actor_id = $1 RETURNING ",
        contact_columns!()
    ))
    .bind(actor.as_bytes().as_slice())
    .bind(state.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(contact_from_row).transpose()?)
}

/// Every contact, oldest first.
pub async fn contacts(pool: &PgPool) -> Result<Vec<StoredContact>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts ORDER BY created_at"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(contact_from_row)
        .collect::<Result<_, _>>()?)
}

/// Fills in the stamp of a profile stored before the column kept it.
pub async fn set_profile_stamp(
    pool: &PgPool,
    actor: ActorId,
    updated_at_unix_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE contacts SET profile_updated_at = $2 WHERE actor_id = $1 AND profile_updated_at = 0",
    )
    .bind(actor.as_bytes().as_slice())
    .bind(updated_at_unix_ms)
    .execute(pool)
    .await?;
    Ok(())
}
