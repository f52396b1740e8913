//! Contacts and the invites this actor issued.

use kirc_proto::wire::v1 as wire;
use prost::Message;
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{ContactRecord, ContactState, StoreError};
use crate::crypto::envelope::{PairKey, conversation_id};
use crate::crypto::identity::{ActorId, Identity};
use crate::crypto::profile::{VerifiedProfile, verify_profile};

macro_rules! contact_columns {
    () => {
        "actor_id, signed_profile, state, peer_accepted, (extract(epoch from created_at) * 1000)::bigint AS added_ms"
    };
}

fn contact_from_row(
    row: &sqlx::postgres::PgRow,
    me: &Identity,
) -> Result<ContactRecord, StoreError> {
    let actor_bytes: Vec<u8> = row.try_get("actor_id")?;
    let signed_bytes: Vec<u8> = row.try_get("signed_profile")?;
    let shown =
        ActorId::from_slice(&actor_bytes).map_or_else(|| String::from("?"), |id| id.to_string());
    let signed = wire::SignedProfile::decode(signed_bytes.as_slice())
        .map_err(|_| StoreError::DamagedContact(shown.clone()))?;
    let verified =
        verify_profile(&signed).map_err(|_| StoreError::DamagedContact(shown.clone()))?;
    if verified.actor_id.as_bytes().as_slice() != actor_bytes.as_slice() {
        return Err(StoreError::DamagedContact(shown));
    }
    let state: String = row.try_get("state")?;
    Ok(record(
        verified,
        ContactState::parse(&state),
        row.try_get("peer_accepted")?,
        row.try_get("added_ms")?,
        me,
    ))
}

fn record(
    verified: VerifiedProfile,
    state: ContactState,
    peer_accepted: bool,
    added_at_unix_ms: i64,
    me: &Identity,
) -> ContactRecord {
    ContactRecord {
        actor_id: verified.actor_id,
        display_name: verified.profile.display_name.clone(),
        signing_key: verified.signing_key,
        access: verified.profile.kafka.clone().unwrap_or_default(),
        signed_profile: verified.signed,
        state,
        peer_accepted,
        added_at_unix_ms,
        conversation_id: conversation_id(me.id(), verified.actor_id),
        pair: std::sync::Arc::new(PairKey::new(me, &verified.box_key)),
        box_key: verified.box_key,
    }
}

/// A contact as saved, and whether the profile given was newer than the
/// stored one (and so replaced it).
#[derive(Debug, Clone)]
pub struct SavedContact {
    pub contact: ContactRecord,
    pub profile_newer: bool,
}

/// Stores or refreshes a contact's profile. A new contact gets `state`; an
/// existing one keeps its state unless `state` is Accepted and it was a
/// request (adding someone who asked accepts them). Blocked stays blocked.
/// The profile replaces the stored one only if the contact stamped it later:
/// a replayed old profile never rolls back a name or an address.
pub async fn save_contact(
    pool: &PgPool,
    me: &Identity,
    verified: &VerifiedProfile,
    state: ContactState,
    peer_accepted: bool,
) -> Result<SavedContact, StoreError> {
    let mut tx = pool.begin().await?;
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT signed_profile FROM contacts WHERE actor_id = $1 FOR UPDATE")
            .bind(verified.actor_id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await?;
    // A stored profile that no longer decodes is replaced by any valid one.
    let profile_newer = stored.is_none_or(|bytes| {
        wire::SignedProfile::decode(bytes.as_slice())
            .ok()
            .and_then(|signed| wire::PublicProfile::decode(signed.profile.as_slice()).ok())
            .is_none_or(|profile| profile.updated_at_unix_ms < verified.profile.updated_at_unix_ms)
    });
    let row = sqlx::query(concat!(
        "INSERT INTO contacts (actor_id, display_name, signing_key, box_key, signed_profile, state, peer_accepted)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (actor_id) DO UPDATE SET
             display_name = CASE WHEN $8 THEN EXCLUDED.display_name ELSE contacts.display_name END,
             box_key = CASE WHEN $8 THEN EXCLUDED.box_key ELSE contacts.box_key END,
             signed_profile = CASE WHEN $8 THEN EXCLUDED.signed_profile ELSE contacts.signed_profile END,
             state = CASE WHEN contacts.state = 'request' AND EXCLUDED.state = 'accepted' THEN 'accepted' ELSE contacts.state END,
             peer_accepted = contacts.peer_accepted OR EXCLUDED.peer_accepted,
             updated_at = now()
         RETURNING ",
        contact_columns!()
    ))
    .bind(verified.actor_id.as_bytes().as_slice())
    .bind(&verified.profile.display_name)
    .bind(verified.signing_key.to_bytes().as_slice())
    .bind(verified.box_key.as_bytes().as_slice())
    .bind(verified.signed.encode_to_vec())
    .bind(state.as_str())
    .bind(peer_accepted)
    .bind(profile_newer)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO conversations (id, peer) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(conversation_id(me.id(), verified.actor_id))
        .bind(verified.actor_id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(SavedContact {
        contact: contact_from_row(&row, me)?,
        profile_newer,
    })
}

pub async fn set_contact_state(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
    state: ContactState,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE contacts SET state = $2, updated_at = now() WHERE actor_id = $1 RETURNING ",
        contact_columns!()
    ))
    .bind(actor.as_bytes().as_slice())
    .bind(state.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn set_peer_accepted(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE contacts SET peer_accepted = TRUE, updated_at = now() WHERE actor_id = $1 AND NOT peer_accepted RETURNING ",
        contact_columns!()
    ))
    .bind(actor.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn contact(
    pool: &PgPool,
    me: &Identity,
    actor: ActorId,
) -> Result<Option<ContactRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts WHERE actor_id = $1"
    ))
    .bind(actor.as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(|row| contact_from_row(&row, me)).transpose()
}

pub async fn contacts(pool: &PgPool, me: &Identity) -> Result<Vec<ContactRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts ORDER BY created_at"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| contact_from_row(row, me)).collect()
}

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
