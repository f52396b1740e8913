//! Channels: the channel itself (also a conversation of kind 'channel'),
//! its roster and bans, its invites, and the Megolm group sessions of its
//! members (the encrypted pickles `crypto::group` makes). A channel's
//! messages, lines and steps are in `channel_log.rs`.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::crypto::identity::ActorId;

/// Where this actor stands in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Asked the owner to join; nothing relayed yet.
    Joining,
    Joined,
    /// Parted, kicked or banned: the history stays.
    Left,
}

impl Membership {
    fn as_str(self) -> &'static str {
        match self {
            Membership::Joining => "joining",
            Membership::Joined => "joined",
            Membership::Left => "left",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "joining" => Membership::Joining,
            "left" => Membership::Left,
            _ => Membership::Joined,
        }
    }
}

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
    /// The name in the profile, kept beside it for the conversation's
    /// members (who stay named once they leave).
    pub display_name: String,
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
    pub membership: Membership,
    /// In the owner's order (joining order).
    pub roster: Vec<RosterRow>,
    pub bans: Vec<ActorId>,
    /// Who was in the channel and is no longer, with their names (read
    /// only: kept by `save_channel` from the rosters it saw).
    pub former: Vec<(ActorId, String)>,
}

/// Stores a channel and its conversation as they are now: made if new,
/// otherwise its modes, order and roster replaced by these (one
/// transaction, so a reader sees the roster of one point of the order).
pub async fn save_channel(pool: &PgPool, channel: &StoredChannel) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    save_channel_in(&mut tx, channel).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn save_channel_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    channel: &StoredChannel,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO conversations (id, kind) VALUES ($1, 'channel') ON CONFLICT (id) DO NOTHING",
    )
    .bind(channel.id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO channels (id, owner, name, topic, moderated, epoch, seq, membership)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET name = $3, topic = $4, moderated = $5,
             epoch = $6, seq = $7, membership = $8",
    )
    .bind(channel.id)
    .bind(channel.owner.as_bytes().as_slice())
    .bind(&channel.name)
    .bind(&channel.topic)
    .bind(channel.moderated)
    .bind(i64::try_from(channel.epoch).unwrap_or(i64::MAX))
    .bind(i64::try_from(channel.seq).unwrap_or(i64::MAX))
    .bind(channel.membership.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM channel_roster WHERE channel_id = $1")
        .bind(channel.id)
        .execute(&mut **tx)
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
    .execute(&mut **tx)
    .await?;
    // Everyone who was ever in the channel stays a member of its
    // conversation: their lines stay theirs in the history.
    let names: Vec<&str> = channel
        .roster
        .iter()
        .map(|row| row.display_name.as_str())
        .collect();
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, actor_id, display_name)
         SELECT $1, member, name FROM unnest($2::bytea[], $3::text[]) AS m (member, name)
         ON CONFLICT (conversation_id, actor_id) DO UPDATE SET display_name = excluded.display_name",
    )
    .bind(channel.id)
    .bind(&ids)
    .bind(&names)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM channel_bans WHERE channel_id = $1 AND NOT (actor_id = ANY($2))")
        .bind(channel.id)
        .bind(bans(channel))
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO channel_bans (channel_id, actor_id)
         SELECT $1, banned FROM unnest($2::bytea[]) AS banned
         ON CONFLICT DO NOTHING",
    )
    .bind(channel.id)
    .bind(bans(channel))
    .execute(&mut **tx)
    .await?;
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
        "SELECT id, owner, name, topic, moderated, epoch, seq, membership
         FROM channels ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    let mut channels = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let roster: Vec<RosterRow> = sqlx::query(
            "SELECT r.actor_id, r.role, r.signed_profile, coalesce(m.display_name, '') AS name
             FROM channel_roster r
             LEFT JOIN conversation_members m
               ON m.conversation_id = r.channel_id AND m.actor_id = r.actor_id
             WHERE r.channel_id = $1 ORDER BY r.position",
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
                display_name: row.try_get("name").ok()?,
            })
        })
        .collect();
        let former = sqlx::query(
            "SELECT m.actor_id, m.display_name FROM conversation_members m
             WHERE m.conversation_id = $1 AND NOT EXISTS (
                 SELECT 1 FROM channel_roster r
                 WHERE r.channel_id = m.conversation_id AND r.actor_id = m.actor_id)
             ORDER BY m.joined_at, m.actor_id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .filter_map(|row| Some((actor(row, "actor_id")?, row.try_get("display_name").ok()?)))
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
            membership: Membership::parse(row.try_get("membership")?),
            roster,
            bans,
            former,
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

/// Records an invite to a channel this actor owns (the secret's hash).
pub async fn add_channel_invite(
    pool: &PgPool,
    channel_id: Uuid,
    secret_hash: &[u8],
    expires_at_unix_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO channel_invites (secret_hash, channel_id, expires_at)
         VALUES ($1, $2, to_timestamp($3::double precision / 1000))",
    )
    .bind(secret_hash)
    .bind(channel_id)
    .bind(expires_at_unix_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// The channel an invite's secret admits to, if it is one of ours and has
/// not expired.
pub async fn channel_of_invite(
    pool: &PgPool,
    secret_hash: &[u8],
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT channel_id FROM channel_invites WHERE secret_hash = $1 AND expires_at > now()",
    )
    .bind(secret_hash)
    .fetch_optional(pool)
    .await?)
}
