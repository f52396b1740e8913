//! Presence, typing and the live layer on Valkey (DESIGN §5).
//!
//! [`Live`] is what the inbox and the API use: contacts' presence and typing
//! into Valkey (keys with a TTL) and out as events, inbound rate buckets, and
//! sessions. [`spawn`] runs the actor's own presence (explicit away, idle,
//! no client attached → away; heartbeats to contacts; "typing" at most once
//! per 3 s per conversation; offline at shutdown), follows Valkey's expiry
//! events, shows contacts as UNKNOWN while Valkey is away and reloads them
//! when it returns, and publishes every event on the events channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kirc_proto::v1::{self as pb, BackendState, event::Kind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backends::supervise::Backoff;
use crate::backends::valkey::store::{Expired, Store};
use crate::config::PresenceConfig;
use crate::crypto::identity::ActorId;
use crate::hub::Hub;
use crate::messaging::Messaging;

/// At most one "typing" per this long per conversation.
pub const TYPING_EVERY: Duration = Duration::from_secs(3);
/// A typing record older than this when it arrives is dropped.
pub const TYPING_STALE: Duration = Duration::from_secs(5);

/// Contacts' presence is believed for this many heartbeats.
const PRESENCE_HEARTBEATS: u32 = 3;

/// The live layer shared by the inbox, the API and the presence task.
#[derive(Debug)]
pub struct Live {
    store: Store,
    hub: Arc<Hub>,
    config: PresenceConfig,
    /// Valkey answered the last time it was asked.
    valkey_up: AtomicBool,
}

impl Live {
    pub fn new(store: Store, hub: Arc<Hub>, config: PresenceConfig) -> Arc<Self> {
        Arc::new(Live {
            store,
            hub,
            config,
            valkey_up: AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How long contacts should believe our presence.
    pub fn presence_ttl(&self) -> Duration {
        self.config.heartbeat * PRESENCE_HEARTBEATS
    }

    fn current(&self, actor: ActorId) -> pb::PeerPresence {
        self.hub
            .peer_presence()
            .into_iter()
            .find(|presence| presence.actor_id == actor.to_string())
            .unwrap_or(pb::PeerPresence {
                actor_id: actor.to_string(),
                ..pb::PeerPresence::default()
            })
    }

    /// A contact's presence arrived: kept in Valkey for `ttl`, shown now.
    pub async fn peer_presence(
        &self,
        actor: ActorId,
        state: pb::PresenceState,
        text: String,
        ttl: Duration,
    ) {
        let stored = self
            .store
            .set_presence(actor, state as i32, &text, ttl)
            .await;
        self.note_valkey(stored.is_ok());
        let mut presence = self.current(actor);
        if stored.is_ok() {
            presence.state = state as i32;
            presence.text = text;
        } else {
            presence.state = pb::PresenceState::Unknown as i32;
        }
        if state != pb::PresenceState::Online && state != pb::PresenceState::Away {
            presence.typing = false;
        }
        self.hub.set_peer_presence(presence);
    }

    /// A contact started or stopped typing.
    pub async fn peer_typing(&self, actor: ActorId, active: bool) {
        let stored = self.store.set_typing(actor, active).await;
        self.note_valkey(stored.is_ok());
        let mut presence = self.current(actor);
        // Without Valkey nothing would expire the indicator: none is shown.
        presence.typing = active && stored.is_ok();
        self.hub.set_peer_presence(presence);
    }

    /// How many of `records` new records that reached the inbox from `actor`
    /// in `minute` (minutes since the epoch) its rate allows. With Valkey
    /// away there is no limit: chat goes on.
    pub async fn allowed(&self, actor: ActorId, minute: i64, records: u64) -> u64 {
        match self.store.rate(actor, minute, records).await {
            Ok(before) => self.config.rate_limit.saturating_sub(before).min(records),
            Err(_) => records,
        }
    }

    fn note_valkey(&self, up: bool) {
        self.valkey_up.store(up, Ordering::Relaxed);
    }

    /// Shows every contact as UNKNOWN (Valkey, which holds presence, is
    /// away).
    fn all_unknown(&self) {
        for mut presence in self.hub.peer_presence() {
            presence.state = pb::PresenceState::Unknown as i32;
            presence.typing = false;
            self.hub.set_peer_presence(presence);
        }
    }

    /// Reloads every contact's presence from Valkey; contacts without a key
    /// are offline.
    async fn reload(&self, contacts: &[ActorId]) -> bool {
        let Ok(stored) = self.store.presence_all().await else {
            return false;
        };
        let known: HashMap<ActorId, (i32, String)> = stored
            .into_iter()
            .map(|(actor, state, text)| (actor, (state, text)))
            .collect();
        for actor in contacts {
            let mut presence = self.current(*actor);
            let (state, text) = known
                .get(actor)
                .cloned()
                .unwrap_or((pb::PresenceState::Offline as i32, String::new()));
            presence.state = state;
            presence.text = text;
            presence.typing = false;
            self.hub.set_peer_presence(presence);
        }
        true
    }

    fn expired(&self, expired: Expired) {
        match expired {
            Expired::Presence(actor) => {
                let mut presence = self.current(actor);
                presence.state = pb::PresenceState::Offline as i32;
                presence.text.clear();
                presence.typing = false;
                self.hub.set_peer_presence(presence);
            }
            Expired::Typing(actor) => {
                let mut presence = self.current(actor);
                presence.typing = false;
                self.hub.set_peer_presence(presence);
            }
        }
    }
}

/// Requests to the presence task.
#[derive(Debug)]
pub enum Command {
    /// `/away [text]` (Away) or `/back` (Online).
    Set {
        state: pb::PresenceState,
        text: String,
        reply: oneshot::Sender<pb::Presence>,
    },
    /// A key was pressed in a TUI.
    Activity,
    Typing {
        conversation: Uuid,
        active: bool,
        reply: oneshot::Sender<bool>,
    },
}

#[derive(Debug)]
pub struct PresenceHandle {
    commands: mpsc::Sender<Command>,
    tasks: Vec<JoinHandle<()>>,
}

impl PresenceHandle {
    pub async fn send(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }

    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    pub async fn join(self) {
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a presence task failed");
            }
        }
    }
}

fn now_ms() -> i64 {
    kirc_proto::unix_ms(SystemTime::now())
}

/// The own presence as it follows from what is known.
fn own_presence(explicit: &Option<String>, interactive: usize, idle: bool) -> pb::Presence {
    let (state, text, reason) = match (explicit, interactive, idle) {
        (Some(text), _, _) => (pb::PresenceState::Away, text.clone(), "explicit"),
        (None, 0, _) => (pb::PresenceState::Away, String::new(), "no client attached"),
        (None, _, true) => (pb::PresenceState::Away, String::new(), "idle"),
        (None, _, false) => (pb::PresenceState::Online, String::new(), ""),
    };
    pb::Presence {
        state: state as i32,
        text,
        reason: reason.to_owned(),
    }
}

/// Starts the presence tasks; they stop (after telling contacts "offline")
/// when `cancel` fires.
pub fn spawn(
    live: Arc<Live>,
    messaging: Arc<Messaging>,
    valkey: redis::Client,
    cancel: CancellationToken,
) -> PresenceHandle {
    let (commands, inbox) = mpsc::channel(256);
    let tasks = vec![
        tokio::spawn(own(
            Arc::clone(&live),
            Arc::clone(&messaging),
            inbox,
            cancel.clone(),
        )),
        tokio::spawn(follow_valkey(
            Arc::clone(&live),
            messaging,
            valkey,
            cancel.clone(),
        )),
        tokio::spawn(publish_events(live, cancel)),
    ];
    PresenceHandle { commands, tasks }
}

/// The own presence: computed, announced on change and as a heartbeat.
async fn own(
    live: Arc<Live>,
    messaging: Arc<Messaging>,
    mut commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    messaging.wait_ready().await;
    let mut explicit: Option<String> = None;
    let mut interactive = live.hub.interactive();
    let mut attached_before = *interactive.borrow_and_update();
    let mut last_activity = Instant::now();
    let mut announced: Option<pb::Presence> = None;
    let mut typing_sent: HashMap<Uuid, Instant> = HashMap::new();
    let mut heartbeat = tokio::time::interval(live.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let idle_at = last_activity + live.config.idle;
        let idle = Instant::now() >= idle_at;
        let presence = own_presence(&explicit, *interactive.borrow(), idle);
        if announced.as_ref() != Some(&presence) {
            tracing::info!(state = ?presence.state(), reason = %presence.reason, "presence");
            announce(&live, &messaging, &presence).await;
            announced = Some(presence);
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = heartbeat.tick() => {
                if let Some(presence) = &announced {
                    announce(&live, &messaging, presence).await;
                }
            }
            changed = interactive.changed() => {
                if changed.is_err() {
                    break;
                }
                // Someone attaching a TUI is someone at the keyboard.
                let attached = *interactive.borrow_and_update();
                if attached > attached_before {
                    last_activity = Instant::now();
                }
                attached_before = attached;
            }
            () = tokio::time::sleep_until(idle_at), if !idle => {}
            command = commands.recv() => match command {
                None => break,
                Some(Command::Set { state, text, reply }) => {
                    explicit = (state == pb::PresenceState::Away).then_some(text);
                    last_activity = Instant::now();
                    let presence = own_presence(&explicit, *interactive.borrow(), false);
                    let _ = reply.send(presence);
                }
                Some(Command::Activity) => last_activity = Instant::now(),
                Some(Command::Typing { conversation, active, reply }) => {
                    last_activity = Instant::now();
                    let now = Instant::now();
                    let send = if active {
                        typing_sent.get(&conversation).is_none_or(|sent| now.duration_since(*sent) >= TYPING_EVERY)
                    } else {
                        // A stop matters only if a start went out recently.
                        typing_sent
                            .remove(&conversation)
                            .is_some_and(|sent| now.duration_since(sent) < crate::backends::valkey::store::TYPING_TTL)
                    };
                    if send {
                        if active {
                            typing_sent.insert(conversation, now);
                        }
                        if let Err(err) = messaging.send_typing(conversation, active).await {
                            tracing::debug!(error = %err, "typing not sent");
                        }
                    }
                    let _ = reply.send(send);
                }
            },
        }
    }
    // Contacts learn at once that we left, instead of after the TTL.
    let offline = pb::Presence {
        state: pb::PresenceState::Offline as i32,
        text: String::new(),
        reason: String::from("stopped"),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        announce(&live, &messaging, &offline),
    )
    .await;
}

async fn announce(live: &Live, messaging: &Messaging, presence: &pb::Presence) {
    live.hub
        .update_status(|status| status.presence = Some(presence.clone()));
    if let Err(err) = messaging
        .send_presence(presence.state(), &presence.text, live.presence_ttl())
        .await
    {
        tracing::debug!(error = %err, "presence not sent");
    }
}

/// Follows Valkey: its expiry events, and its coming and going (contacts
/// UNKNOWN while it is away, reloaded when it returns).
async fn follow_valkey(
    live: Arc<Live>,
    messaging: Arc<Messaging>,
    client: redis::Client,
    cancel: CancellationToken,
) {
    messaging.wait_ready().await;
    let health = messaging.health();
    let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(live.store.expiry_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            () = cancel.cancelled() => return,
            pubsub = tokio::time::timeout(health.probe_timeout, subscribed) => pubsub,
        };
        match pubsub {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                live.note_valkey(true);
                let contacts: Vec<ActorId> = messaging.accepted_contacts();
                if !live.reload(&contacts).await {
                    live.all_unknown();
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => {
                                if let Ok(key) = message.get_payload::<String>()
                                    && let Some(expired) = live.store.expired(&key)
                                {
                                    live.expired(expired);
                                }
                            }
                            // The connection is gone: Valkey went away.
                            None => break,
                        },
                    }
                }
                tracing::warn!(
                    "lost Valkey's expiry events; presence shows as unknown until it returns"
                );
                live.note_valkey(false);
                live.all_unknown();
            }
            _ => {
                live.note_valkey(false);
                live.all_unknown();
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Events published on the events channel in one Valkey round trip at most.
const PUBLISH_BATCH_MAX: usize = 512;

/// Publishes every event on the events channel as a line of JSON, for other
/// tools (a status bar, a second kircd of the same person). Events that are
/// already waiting go out together in one pipeline, with the unread total
/// taken once for them: an inbox batch of 1,000 messages costs two round
/// trips, not 1,000 (one per event made the channel the ingest's bottleneck).
async fn publish_events(live: Arc<Live>, cancel: CancellationToken) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let channel = live.store.events_channel();
    let mut events = live.hub.subscribe(0, 0).live;
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        let mut batch = match first {
            Ok(event) => vec![event],
            Err(RecvError::Lagged(_)) => Vec::new(),
            Err(RecvError::Closed) => return,
        };
        while batch.len() < PUBLISH_BATCH_MAX {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let unread: u64 = live
            .hub
            .conversations()
            .iter()
            .map(|conversation| conversation.unread)
            .sum();
        let lines: Vec<String> = batch
            .iter()
            .map(|event| event_json(event, unread))
            .collect();
        // Valkey away: the events are not kept for tools (they resubscribe).
        if live.store.publish_all(&channel, &lines).await.is_err() {
            tracing::trace!(events = lines.len(), "events not published: Valkey is away");
        }
    }
}

/// One event as the events channel carries it.
pub fn event_json(event: &pb::Event, unread: u64) -> String {
    let (kind, detail) = match &event.kind {
        Some(Kind::Snapshot(_)) => ("snapshot", serde_json::json!({})),
        Some(Kind::BackendChanged(backend)) => (
            "backend_changed",
            serde_json::json!({
                "backend": crate::backends::supervise::backend_name(backend.backend()),
                "up": backend.state() == BackendState::Up,
                "error": backend.last_error,
            }),
        ),
        Some(Kind::TopicsChanged(_)) => ("topics_changed", serde_json::json!({})),
        Some(Kind::ShuttingDown(stopping)) => (
            "shutting_down",
            serde_json::json!({ "reason": stopping.reason }),
        ),
        Some(Kind::MessageAdded(message)) => (
            "message_added",
            serde_json::json!({
                "conversation": message.conversation_id,
                "message": message.id,
                "sender": message.sender,
                "outgoing": message.outgoing,
            }),
        ),
        Some(Kind::MessageStateChanged(changed)) => (
            "message_state_changed",
            serde_json::json!({
                "conversation": changed.conversation_id,
                "message": changed.message_id,
                "state": changed.state().as_str_name(),
            }),
        ),
        Some(Kind::ContactChanged(contact)) => (
            "contact_changed",
            serde_json::json!({ "contact": contact.actor_id, "name": contact.display_name, "state": contact.state().as_str_name() }),
        ),
        Some(Kind::ReadMarkerMoved(moved)) => (
            "read_marker_moved",
            serde_json::json!({ "conversation": moved.conversation_id, "unread_in_conversation": moved.unread }),
        ),
        Some(Kind::RejectionsChanged(_)) => ("rejections_changed", serde_json::json!({})),
        Some(Kind::PeerPresenceChanged(presence)) => (
            "presence_changed",
            serde_json::json!({
                "contact": presence.actor_id,
                "state": presence.state().as_str_name(),
                "text": presence.text,
                "typing": presence.typing,
            }),
        ),
        Some(Kind::StatusChanged(_)) => ("status_changed", serde_json::json!({})),
        None => ("unknown", serde_json::json!({})),
    };
    serde_json::json!({
        "seq": event.seq,
        "at": event.at_unix_ms,
        "kind": kind,
        "unread": unread,
        "detail": detail,
    })
    .to_string()
}

/// Whether a control record made at `created_at_unix_ms` is older than
/// `limit` now.
pub fn is_stale(created_at_unix_ms: i64, limit: Duration) -> bool {
    now_ms() - created_at_unix_ms > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_presence_follows_explicit_then_clients_then_idle() {
        let away = |presence: &pb::Presence| (presence.state(), presence.reason.clone());
        assert_eq!(
            away(&own_presence(&None, 1, false)),
            (pb::PresenceState::Online, String::new())
        );
        assert_eq!(
            away(&own_presence(&None, 0, false)),
            (pb::PresenceState::Away, "no client attached".into())
        );
        assert_eq!(
            away(&own_presence(&None, 2, true)),
            (pb::PresenceState::Away, "idle".into())
        );
        let explicit = own_presence(&Some("lunch".into()), 1, false);
        assert_eq!(
            away(&explicit),
            (pb::PresenceState::Away, "explicit".into())
        );
        assert_eq!(explicit.text, "lunch");
    }

    #[test]
    fn events_are_one_json_line_with_the_unread_total() {
        let event = pb::Event {
            seq: 7,
            at_unix_ms: 1,
            kind: Some(Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
                conversation_id: "c".into(),
                last_read_seq: 3,
                unread: 0,
            })),
        };
        let line = event_json(&event, 4);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["unread"], 4);
        assert_eq!(parsed["kind"], "read_marker_moved");
        assert!(!line.contains('\n'));
    }
}
