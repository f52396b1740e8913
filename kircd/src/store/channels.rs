//! Channels: the channel itself (also a conversation of kind 'channel'),
//! its roster and bans, its invites, the owner's steps, the Megolm group
//! sessions of its members (the encrypted pickles `crypto::group` makes),
//! the posts waiting for theirs, and the channel's messages and lines.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{Message, MessageState, StoreError, message_from_row};
use crate::crypto::identity::ActorId;

/// What a channel's line that is not a message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Create,
    Join,
    Part,
    Kick,
    Ban,
    Unban,
    Op,
    Deop,
    Topic,
    Moderated,
    Unmoderated,
}

impl LineKind {
    pub const ALL: [LineKind; 11] = [
        LineKind::Create,
        LineKind::Join,
        LineKind::Part,
        LineKind::Kick,
        LineKind::Ban,
        LineKind::Unban,
        LineKind::Op,
        LineKind::Deop,
        LineKind::Topic,
        LineKind::Moderated,
        LineKind::Unmoderated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Create => "create",
            LineKind::Join => "join",
            LineKind::Part => "part",
            LineKind::Kick => "kick",
            LineKind::Ban => "ban",
            LineKind::Unban => "unban",
            LineKind::Op => "op",
            LineKind::Deop => "deop",
            LineKind::Topic => "topic",
            LineKind::Moderated => "moderated",
            LineKind::Unmoderated => "unmoderated",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        LineKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A channel's line: what happened, and to whom (the message's sender is
/// who did it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub target: Option<ActorId>,
}

pub(super) fn line_from_row(row: &sqlx::postgres::PgRow) -> Result<Option<Line>, sqlx::Error> {
    let kind: Option<String> = row.try_get("line")?;
    let target: Option<Vec<u8>> = row.try_get("line_target")?;
    Ok(kind.as_deref().and_then(LineKind::parse).map(|kind| Line {
        kind,
        target: target.as_deref().and_then(ActorId::from_slice),
    }))
}

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

async fn save_channel_in(
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

/// A message or line of a channel, as this actor stores it.
#[derive(Debug, Clone)]
pub struct ChannelItem<'a> {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub sender: ActorId,
    pub outgoing: bool,
    pub action: bool,
    pub body: &'a str,
    pub created_at_unix_ms: i64,
    pub channel_seq: Option<u64>,
    pub line: Option<Line>,
    pub state: MessageState,
    /// An own post: the encoded `ChannelPost`, kept until it is in the own
    /// outbox (the channel seals it when it sends it, so that records to the
    /// owner leave in the order of their ids).
    pub post: Option<&'a [u8]>,
    /// An own post: the Kafka key it goes out with.
    pub outbox_key: Option<Uuid>,
    /// An own post: the caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
}

async fn insert_item_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    item: &ChannelItem<'_>,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, action, body, created_at,
             state, envelope, channel_seq, line, line_target, outbox_key, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::double precision / 1000),
             $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (id) DO NOTHING
         RETURNING ",
        message_columns!()
    ))
    .bind(item.id)
    .bind(item.channel_id)
    .bind(item.sender.as_bytes().as_slice())
    .bind(item.outgoing)
    .bind(item.action)
    .bind(item.body)
    .bind(item.created_at_unix_ms)
    .bind(item.state.as_str())
    .bind(item.post)
    .bind(item.channel_seq.and_then(|seq| i64::try_from(seq).ok()))
    .bind(item.line.map(|line| line.kind.as_str()))
    .bind(
        item.line
            .and_then(|line| line.target)
            .map(|target| target.as_bytes().to_vec()),
    )
    .bind(item.outbox_key)
    .bind(item.idempotency_key)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Stores a channel's message or line; `None` if its id is already stored
/// (a copy relayed again, or a replay).
pub async fn insert_channel_item(
    pool: &PgPool,
    item: &ChannelItem<'_>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    let stored = insert_item_in(&mut tx, item).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A member stores a relayed step: the channel as it is after it, and the
/// step's message or line, in one transaction.
pub async fn apply_relayed(
    pool: &PgPool,
    channel: &StoredChannel,
    item: Option<&ChannelItem<'_>>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    save_channel_in(&mut tx, channel).await?;
    let stored = match item {
        Some(item) => insert_item_in(&mut tx, item).await?,
        None => None,
    };
    tx.commit().await?;
    Ok(stored)
}

/// One step of an owner's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub channel_id: Uuid,
    pub seq: u64,
    pub cause_id: Option<Uuid>,
    /// The encoded `ChannelRelay`.
    pub relay: Vec<u8>,
    pub recipients: Vec<ActorId>,
}

/// The owner makes a step: the channel after it, the step to fan out, and
/// its own copy of the message or line, in one transaction.
pub async fn save_step(
    pool: &PgPool,
    channel: &StoredChannel,
    step: &Step,
    item: Option<&ChannelItem<'_>>,
) -> Result<Option<Message>, StoreError> {
    let mut tx = pool.begin().await?;
    save_channel_in(&mut tx, channel).await?;
    let recipients: Vec<Vec<u8>> = step
        .recipients
        .iter()
        .map(|actor| actor.as_bytes().to_vec())
        .collect();
    sqlx::query(
        "INSERT INTO channel_steps (channel_id, seq, cause_id, relay, recipients)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(step.channel_id)
    .bind(i64::try_from(step.seq).unwrap_or(i64::MAX))
    .bind(step.cause_id)
    .bind(&step.relay)
    .bind(&recipients)
    .execute(&mut *tx)
    .await?;
    let stored = match item {
        Some(item) => insert_item_in(&mut tx, item).await?,
        None => None,
    };
    tx.commit().await?;
    Ok(stored)
}

fn step_from_row(row: &sqlx::postgres::PgRow) -> Result<Step, sqlx::Error> {
    let recipients: Vec<Vec<u8>> = row.try_get("recipients")?;
    Ok(Step {
        channel_id: row.try_get("channel_id")?,
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        cause_id: row.try_get("cause_id")?,
        relay: row.try_get("relay")?,
        recipients: recipients
            .iter()
            .filter_map(|actor| ActorId::from_slice(actor))
            .collect(),
    })
}

/// The step a record caused, if it caused one.
pub async fn step_of_cause(pool: &PgPool, cause_id: Uuid) -> Result<Option<Step>, StoreError> {
    let row = sqlx::query(
        "SELECT channel_id, seq, cause_id, relay, recipients FROM channel_steps WHERE cause_id = $1",
    )
    .bind(cause_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(step_from_row).transpose()?)
}

/// Steps whose fan-out a stop or crash interrupted, in order.
pub async fn steps_not_fanned_out(pool: &PgPool) -> Result<Vec<Step>, StoreError> {
    let rows = sqlx::query(
        "SELECT channel_id, seq, cause_id, relay, recipients FROM channel_steps
         WHERE NOT fanned_out ORDER BY channel_id, seq",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(step_from_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Every recipient's copy of the step is in the own outbox.
pub async fn step_fanned_out(pool: &PgPool, channel_id: Uuid, seq: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE channel_steps SET fanned_out = TRUE WHERE channel_id = $1 AND seq = $2")
        .bind(channel_id)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(())
}

/// Keeps a post whose session has not arrived yet. At most `limit` wait per
/// channel: past it the post is not kept (false), so that no owner can fill
/// a member's database with posts it cannot open.
pub async fn add_waiting(
    pool: &PgPool,
    channel_id: Uuid,
    seq: u64,
    session_id: &str,
    post: &[u8],
    limit: u64,
) -> Result<bool, StoreError> {
    let kept = sqlx::query(
        "INSERT INTO channel_waiting (channel_id, seq, session_id, post)
         SELECT $1, $2, $3, $4
         WHERE (SELECT count(*) FROM channel_waiting WHERE channel_id = $1) < $5
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_id)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .bind(session_id)
    .bind(post)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(kept > 0)
}

/// The posts waiting for `session_id`, in order: (seq, encoded post).
pub async fn waiting_for(
    pool: &PgPool,
    channel_id: Uuid,
    session_id: &str,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, post FROM channel_waiting WHERE channel_id = $1 AND session_id = $2
         ORDER BY seq",
    )
    .bind(channel_id)
    .bind(session_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
                row.try_get("post")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Forgets waiting posts once opened (or found unopenable).
pub async fn drop_waiting(pool: &PgPool, channel_id: Uuid, seqs: &[u64]) -> Result<(), StoreError> {
    let seqs: Vec<i64> = seqs
        .iter()
        .filter_map(|seq| i64::try_from(*seq).ok())
        .collect();
    sqlx::query("DELETE FROM channel_waiting WHERE channel_id = $1 AND seq = ANY($2)")
        .bind(channel_id)
        .bind(&seqs)
        .execute(pool)
        .await?;
    Ok(())
}

/// An own post relayed back by the owner: its place, and RECEIVED (the
/// owner has it and relays it to everyone). `None` if it is not an own
/// post of this channel, or already placed.
pub async fn place_own_post(
    pool: &PgPool,
    channel_id: Uuid,
    id: Uuid,
    channel_seq: u64,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE messages SET channel_seq = $3, state = 'received', envelope = NULL
         WHERE id = $1 AND conversation_id = $2 AND outgoing AND channel_seq IS NULL
         RETURNING ",
        message_columns!()
    ))
    .bind(id)
    .bind(channel_id)
    .bind(i64::try_from(channel_seq).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from_row).transpose()?)
}

/// Own posts not yet in the own outbox, oldest first: (id, channel, the
/// encoded `ChannelPost`, the Kafka key).
pub async fn unsent_channel_posts(
    pool: &PgPool,
) -> Result<Vec<(Uuid, Uuid, Vec<u8>, Uuid)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, conversation_id, envelope, outbox_key FROM messages
         WHERE state = 'pending' AND outgoing AND outbox_key IS NOT NULL
             AND envelope IS NOT NULL
         ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                row.try_get("conversation_id")?,
                row.try_get("envelope")?,
                row.try_get("outbox_key")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// The encoded posts of this actor's in `channel` that the owner has not
/// relayed back yet.
pub async fn unplaced_own_posts(
    pool: &PgPool,
    channel_id: Uuid,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT envelope FROM messages
         WHERE conversation_id = $1 AND outgoing AND channel_seq IS NULL
             AND outbox_key IS NOT NULL AND envelope IS NOT NULL
         ORDER BY seq",
    )
    .bind(channel_id)
    .fetch_all(pool)
    .await?)
}
