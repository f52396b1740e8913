//! Channels: the channel itself (also a conversation of kind 'channel'),
//! its roster and bans, and the Megolm group sessions of its members,
//! stored as the encrypted pickles `crypto::group` makes.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::crypto::identity::ActorId;

/// A member's standing, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredRole {
    Member,
    Op,
    Owner,
}

impl StoredRole {
    fn as_str(self) -> &'static str {
        match self {
            StoredRole::Member => "member",
            StoredRole::Op => "op",
            StoredRole::Owner => "owner",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "owner" => StoredRole::Owner,
            "op" => StoredRole::Op,
            _ => StoredRole::Member,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    pub actor_id: ActorId,
    pub role: StoredRole,
    pub signed_profile: Vec<u8>,
}

/// A channel with its roster, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChannel {
    pub id: Uuid,
    pub owner: ActorId,
    pub name: String,
    pub topic: String,
    pub moderated: bool,
    pub epoch: u64,
    pub seq: u64,
    pub joined: bool,
    /// In the owner's order (joining order).
    pub roster: Vec<RosterRow>,
    pub bans: Vec<ActorId>,
}

/// Stores a channel and its conversation as they are now: made if new,
/// otherwise its modes, order and roster replaced by these (one
/// transaction, so a reader sees the roster of one point of the order).
pub async fn save_channel(pool: &PgPool, channel: &StoredChannel) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO conversations (id, kind) VALUES ($1, 'channel') ON CONFLICT (id) DO NOTHING",
    )
    .bind(channel.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO channels (id, owner, name, topic, moderated, epoch, seq, joined)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET name = $3, topic = $4, moderated = $5,
             epoch = $6, seq = $7, joined = $8",
    )
    .bind(channel.id)
    .bind(channel.owner.as_bytes().as_slice())
    .bind(&channel.name)
    .bind(&channel.topic)
    .bind(channel.moderated)
    .bind(i64::try_from(channel.epoch).unwrap_or(i64::MAX))
    .bind(i64::try_from(channel.seq).unwrap_or(i64::MAX))
    .bind(channel.joined)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM channel_roster WHERE channel_id = $1")
        .bind(channel.id)
        .execute(&mut *tx)
        .await?;
    let ids: Vec<Vec<u8>> = channel
        .roster
        .iter()
        .map(|row| row.actor_id.as_bytes().to_vec())
        .collect();
    let roles: Vec<&str> = channel.roster.iter().map(|row| row.role.as_str()).collect();
    let profiles: Vec<&[u8]> = channel
        .roster
        .iter()
        .map(|row| row.signed_profile.as_slice())
        .collect();
    sqlx::query(
        "INSERT INTO channel_roster (channel_id, actor_id, role, signed_profile, position)
         SELECT $1, actor_id, role, signed_profile, position
         FROM unnest($2::bytea[], $3::text[], $4::bytea[])
             WITH ORDINALITY AS r (actor_id, role, signed_profile, position)",
    )
    .bind(channel.id)
    .bind(&ids)
    .bind(&roles)
    .bind(&profiles)
    .execute(&mut *tx)
    .await?;
    // Everyone who was ever in the channel stays a member of its
    // conversation: their lines stay theirs in the history.
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, actor_id)
         SELECT $1, member FROM unnest($2::bytea[]) AS member
         ON CONFLICT DO NOTHING",
    )
    .bind(channel.id)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM channel_bans WHERE channel_id = $1 AND NOT (actor_id = ANY($2))")
        .bind(channel.id)
        .bind(bans(channel))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO channel_bans (channel_id, actor_id)
         SELECT $1, banned FROM unnest($2::bytea[]) AS banned
         ON CONFLICT DO NOTHING",
    )
    .bind(channel.id)
    .bind(bans(channel))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

fn bans(channel: &StoredChannel) -> Vec<Vec<u8>> {
    channel
        .bans
        .iter()
        .map(|banned| banned.as_bytes().to_vec())
        .collect()
}

/// Every channel this actor owns or is (or was) a member of.
pub async fn channels(pool: &PgPool) -> Result<Vec<StoredChannel>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, owner, name, topic, moderated, epoch, seq, joined
         FROM channels ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    let mut channels = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let roster = sqlx::query(
            "SELECT actor_id, role, signed_profile FROM channel_roster
             WHERE channel_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(RosterRow {
                actor_id: actor(&row, "actor_id")?,
                role: StoredRole::parse(row.try_get("role").ok()?),
                signed_profile: row.try_get("signed_profile").ok()?,
            })
        })
        .collect();
        let bans =
            sqlx::query("SELECT actor_id FROM channel_bans WHERE channel_id = $1 ORDER BY at")
                .bind(id)
                .fetch_all(pool)
                .await?
                .iter()
                .filter_map(|row| actor(row, "actor_id"))
                .collect();
        let Some(owner) = actor(&row, "owner") else {
            continue;
        };
        channels.push(StoredChannel {
            id,
            owner,
            name: row.try_get("name")?,
            topic: row.try_get("topic")?,
            moderated: row.try_get("moderated")?,
            epoch: u64::try_from(row.try_get::<i64, _>("epoch")?).unwrap_or(0),
            seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
            joined: row.try_get("joined")?,
            roster,
            bans,
        });
    }
    Ok(channels)
}

fn actor(row: &sqlx::postgres::PgRow, column: &str) -> Option<ActorId> {
    let bytes: Vec<u8> = row.try_get(column).ok()?;
    ActorId::from_slice(&bytes)
}

/// A group session as stored: its pickle opens only with the identity's
/// derived key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub channel_id: Uuid,
    pub session_id: String,
    pub outbound: bool,
    pub author: ActorId,
    pub epoch: u64,
    pub pickle: String,
}

/// Stores a session, or its newer state (an outbound session moves on with
/// every message it encrypts).
pub async fn save_session(pool: &PgPool, session: &StoredSession) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO group_sessions (channel_id, session_id, outbound, author, epoch, pickle)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (channel_id, session_id, outbound) DO UPDATE SET pickle = $6",
    )
    .bind(session.channel_id)
    .bind(&session.session_id)
    .bind(session.outbound)
    .bind(session.author.as_bytes().as_slice())
    .bind(i64::try_from(session.epoch).unwrap_or(i64::MAX))
    .bind(&session.pickle)
    .execute(pool)
    .await?;
    Ok(())
}

/// A channel's sessions, oldest first (the last outbound one is the
/// current).
pub async fn sessions(pool: &PgPool, channel_id: Uuid) -> Result<Vec<StoredSession>, StoreError> {
    let rows = sqlx::query(
        "SELECT session_id, outbound, author, epoch, pickle FROM group_sessions
         WHERE channel_id = $1 ORDER BY position",
    )
    .bind(channel_id)
    .fetch_all(pool)
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(author) = actor(&row, "author") else {
            continue;
        };
        sessions.push(StoredSession {
            channel_id,
            session_id: row.try_get("session_id")?,
            outbound: row.try_get("outbound")?,
            author,
            epoch: u64::try_from(row.try_get::<i64, _>("epoch")?).unwrap_or(0),
            pickle: row.try_get("pickle")?,
        });
    }
    Ok(sessions)
}
