//! What kircd keeps in the actor's Valkey: contacts' presence and typing
//! (keys with a TTL, so a contact who vanishes expires by itself), per-TUI
//! sessions, inbound rate buckets, and the events channel. Every key starts
//! with `valkey.key_prefix`. Valkey is a cache here: when it is down these
//! calls fail and their callers degrade (presence unknown, no rate limit,
//! drafts not kept) while chat goes on.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::crypto::identity::ActorId;
use crate::hub::PresenceState;

/// How long a session (drafts, open conversation) is kept unused.
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a rate count (and the offsets it was counted through) is kept:
/// the minute it counts and the next, when records of it may still arrive.
const RATE_TTL_SECS: i64 = 120;

/// One inbox batch's additions to the inbound rate: records per sender and
/// minute, and per inbox partition the highest offset the batch read.
#[derive(Debug, Default, Clone)]
pub struct RateTally {
    pub counts: Vec<(ActorId, i64, u64)>,
    pub through: Vec<(String, i64)>,
}

impl RateTally {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.through.is_empty()
    }
}

/// How long a typing indicator lives without a new "typing".
pub const TYPING_TTL: Duration = Duration::from_secs(6);

#[derive(Clone)]
pub struct Keys {
    connection: ConnectionManager,
    prefix: String,
    db: i64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What an expired key was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    Presence(ActorId),
    Typing(ActorId),
}

impl Keys {
    pub fn new(connection: ConnectionManager, prefix: &str, db: i64) -> Self {
        Keys {
            connection,
            prefix: prefix.to_owned(),
            db,
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// The channel kircd publishes its events on.
    pub fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// The keyspace channel that announces expired keys in our database.
    pub fn expiry_channel(&self) -> String {
        format!("__keyevent@{}__:expired", self.db)
    }

    /// Reads an expired key's name back into what it was, if it is ours.
    pub fn expired(&self, key: &str) -> Option<Expired> {
        let rest = key.strip_prefix(&self.prefix)?;
        let (kind, actor) = rest.split_once(':')?;
        let actor = actor.parse::<ActorId>().ok()?;
        match kind {
            "presence" => Some(Expired::Presence(actor)),
            "typing" => Some(Expired::Typing(actor)),
            _ => None,
        }
    }

    pub async fn set_presence(
        &self,
        actor: ActorId,
        state: PresenceState,
        text: &str,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        connection
            .set_ex(
                self.key("presence", &actor.to_string()),
                format!("{}\t{text}", state.code()),
                ttl.as_secs().max(1),
            )
            .await
    }

    /// Every contact's presence still held: (actor, state, text).
    pub async fn presence_all(&self) -> redis::RedisResult<Vec<(ActorId, PresenceState, String)>> {
        let mut connection = self.connection.clone();
        let pattern = self.key("presence", "*");
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<'_, String> = connection.scan_match(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
            keys
        };
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = connection.mget(&keys).await?;
        Ok(keys
            .iter()
            .zip(values)
            .filter_map(|(key, value)| {
                let Some(Expired::Presence(actor)) = self.expired(key) else {
                    return None;
                };
                let (state, text) = value?
                    .split_once('\t')
                    .map(|(s, t)| (s.to_owned(), t.to_owned()))?;
                Some((actor, PresenceState::from_code(state.parse().ok()?), text))
            })
            .collect())
    }

    pub async fn set_typing(&self, actor: ActorId, active: bool) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        let key = self.key("typing", &actor.to_string());
        if active {
            connection.set_ex(key, 1, TYPING_TTL.as_secs()).await
        } else {
            connection.del(key).await
        }
    }

    /// Adds each `(actor, minute, records)` of `tally` to that actor's count
    /// for the minute (minutes since the epoch), and raises each inbox
    /// partition's counted-through offset, in one transaction; returns each
    /// count before its records. Both expire after the same two minutes: a
    /// counted-through offset is only needed while the counts it protects
    /// from a second count are kept.
    pub async fn rate(&self, tally: &RateTally) -> redis::RedisResult<Vec<u64>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &(actor, minute, records) in &tally.counts {
            let key = self.key("rate", &format!("{actor}:{minute}"));
            pipe.incr(&key, records)
                .expire(&key, RATE_TTL_SECS)
                .ignore();
        }
        if !tally.through.is_empty() {
            let key = self.key("rate", "read");
            for (partition, offset) in &tally.through {
                // GT: only ever raised, whatever order two batches' writes
                // arrive in.
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg("GT")
                    .arg(*offset)
                    .arg(partition)
                    .ignore();
            }
            pipe.expire(&key, RATE_TTL_SECS).ignore();
        }
        let mut connection = self.connection.clone();
        let after: Vec<u64> = pipe.query_async(&mut connection).await?;
        Ok(after
            .into_iter()
            .zip(&tally.counts)
            .map(|(after, &(_, _, records))| after.saturating_sub(records))
            .collect())
    }

    /// The offset through which the records of an inbox `partition` were
    /// counted by [`Keys::rate`], if that was in the last two minutes.
    pub async fn counted_through(&self, partition: &str) -> redis::RedisResult<Option<i64>> {
        let mut connection = self.connection.clone();
        let score: Option<f64> = connection
            .zscore(self.key("rate", "read"), partition)
            .await?;
        // Offsets are below 2^53: the score holds them exactly.
        #[allow(clippy::cast_possible_truncation)]
        Ok(score.map(|score| score as i64))
    }

    pub async fn session(
        &self,
        name: &str,
    ) -> redis::RedisResult<(String, HashMap<String, String>)> {
        let mut connection = self.connection.clone();
        let fields: HashMap<String, String> = connection.hgetall(self.key("session", name)).await?;
        let mut drafts = HashMap::new();
        let mut open = String::new();
        for (field, value) in fields {
            if field == "open" {
                open = value;
            } else if let Some(conversation) = field.strip_prefix("draft:") {
                drafts.insert(conversation.to_owned(), value);
            }
        }
        Ok((open, drafts))
    }

    pub async fn save_session(
        &self,
        name: &str,
        open: &str,
        drafts: &HashMap<String, String>,
    ) -> redis::RedisResult<()> {
        let key = self.key("session", name);
        let mut fields: Vec<(String, String)> = vec![(String::from("open"), open.to_owned())];
        fields.extend(
            drafts
                .iter()
                .filter(|(_, text)| !text.is_empty())
                .map(|(conversation, text)| (format!("draft:{conversation}"), text.clone())),
        );
        let mut connection = self.connection.clone();
        redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore()
            .expire(
                &key,
                i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX),
            )
            .ignore()
            .query_async::<()>(&mut connection)
            .await
    }

    /// Publishes `payloads` on `channel` in order, in one round trip.
    pub async fn publish_all(&self, channel: &str, payloads: &[String]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.publish(channel, payload).ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async(&mut connection).await
    }
}
