//! The hub: the daemon's shared view of itself (backend health, topics) and
//! the sequenced event log that every subscriber follows.
//!
//! Subsystems hand it their own types (`model.rs`, the store's messages and
//! conversations, the contact book's contacts); it turns them into the
//! daemon API's events (`convert.rs`). Nobody reads the hub back as the
//! state of a subsystem: each keeps its own.
//!
//! One lock guards the state, the sequence counter and the replay history
//! together, so that a snapshot and the events after it never overlap or leave
//! a gap. Live delivery goes through a bounded broadcast channel: a subscriber
//! that falls further behind than its capacity is told so and cut off, and the
//! publisher never waits for anyone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use kirc_proto::DaemonView;
use kirc_proto::v1::{self as pb, Backend, BackendState, BackendStatus, TopicStatus, event::Kind};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::book::Contact;
use crate::crypto::identity::ActorId;
use crate::store::{ConversationSummary, Message, MessageState, TransferRecord};

pub mod convert;
pub mod model;

pub use model::{
    ClusterTraffic, DirectState, DirectStatus, InboxFigures, OwnPresence, PeerPresence,
    PresenceState, StatusFields, TransferProgress,
};

/// What a new subscriber receives before the live events.
#[derive(Debug)]
pub struct Subscription {
    /// A snapshot, or the events the subscriber missed, in order.
    pub backlog: Vec<Arc<pb::Event>>,
    /// Events after the backlog.
    pub live: broadcast::Receiver<Arc<pb::Event>>,
    /// Held by an interactive subscriber's stream.
    pub interactive: Option<InteractiveGuard>,
}

#[derive(Debug)]
struct Inner {
    seq: u64,
    history: VecDeque<Arc<pb::Event>>,
    backends: Vec<BackendStatus>,
    topics: Vec<TopicStatus>,
    /// Contacts and conversations as clients see them, kept by folding every
    /// published event in exactly as clients do.
    view: DaemonView,
    actor: Option<(ActorId, String)>,
    inbox: InboxFigures,
    ready: bool,
    fields: StatusFields,
    /// Set with the ShuttingDown event, which must be the last one a
    /// subscriber sees: subsystems still stopping after it (presence going
    /// offline, a last backend check) change the state but publish nothing.
    closed: bool,
}

#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<pb::Event>>,
    history_capacity: usize,
    /// Identifies this run of the daemon: sequence numbers of another run mean
    /// nothing here.
    epoch: u64,
    started_at: SystemTime,
    started: Instant,
    refused_connections: AtomicU64,
    /// Interactive subscribers (kirc-tui) attached now.
    interactive: tokio::sync::watch::Sender<usize>,
}

/// Counts an interactive subscriber for as long as it lives.
#[derive(Debug)]
pub struct InteractiveGuard(tokio::sync::watch::Sender<usize>);

impl Drop for InteractiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl Hub {
    /// A hub for the given backends (with their display endpoints), keeping
    /// `history_capacity` events for resuming subscribers.
    pub fn new(backends: &[(Backend, String)], history_capacity: usize) -> Arc<Self> {
        let started_at = SystemTime::now();
        let now_ms = kirc_proto::unix_ms(started_at);
        let backends = backends
            .iter()
            .map(|(backend, endpoint)| BackendStatus {
                backend: *backend as i32,
                state: BackendState::Connecting as i32,
                endpoint: endpoint.clone(),
                state_since_unix_ms: now_ms,
                ..BackendStatus::default()
            })
            .collect();
        let (live, _) = broadcast::channel(history_capacity.max(1));
        let epoch = started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                seq: 0,
                history: VecDeque::with_capacity(history_capacity),
                backends,
                topics: Vec::new(),
                view: DaemonView::default(),
                actor: None,
                inbox: InboxFigures::default(),
                ready: false,
                fields: StatusFields::default(),
                closed: false,
            }),
            interactive: tokio::sync::watch::Sender::new(0),
            live,
            history_capacity,
            epoch,
            started_at,
            started: Instant::now(),
            refused_connections: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, never a
        // half-made invariant worth dying for: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The current status, as `GetStatus` returns it.
    pub fn status(&self) -> pb::Status {
        let inner = self.lock();
        self.status_of(&inner)
    }

    fn status_of(&self, inner: &Inner) -> pb::Status {
        pb::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: kirc_proto::API_VERSION,
            pid: std::process::id(),
            started_at_unix_ms: kirc_proto::unix_ms(self.started_at),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            backends: inner.backends.clone(),
            topics: inner.topics.clone(),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            actor_id: inner
                .actor
                .as_ref()
                .map_or_else(String::new, |(id, _)| id.to_string()),
            display_name: inner
                .actor
                .as_ref()
                .map_or_else(String::new, |(_, name)| name.clone()),
            rejected: convert::rejections(&inner.inbox),
            inbox: Some(convert::inbox_counters(&inner.inbox)),
            ready: inner.ready,
            presence: inner.fields.presence.as_ref().map(convert::own_presence),
            heartbeat_produced_unix_ms: inner.fields.heartbeat_produced_unix_ms,
            heartbeat_consumed_unix_ms: inner.fields.heartbeat_consumed_unix_ms,
            traffic: inner.fields.traffic.iter().map(convert::traffic).collect(),
            direct_paths: inner
                .fields
                .direct
                .iter()
                .map(convert::direct_path)
                .collect(),
        }
    }

    fn snapshot_of(&self, inner: &Inner) -> Kind {
        Kind::Snapshot(pb::Snapshot {
            status: Some(self.status_of(inner)),
            epoch: self.epoch,
            contacts: inner.view.contacts.clone(),
            conversations: inner.view.conversations.clone(),
            presence: inner.view.presence.clone(),
            transfers: inner.view.transfers.clone(),
        })
    }

    fn publish(&self, inner: &mut Inner, kind: Kind) {
        if inner.closed {
            return;
        }
        inner.seq += 1;
        let event = Arc::new(pb::Event {
            seq: inner.seq,
            at_unix_ms: kirc_proto::unix_ms(SystemTime::now()),
            kind: Some(kind),
        });
        inner.view.apply(&event);
        if inner.history.len() == self.history_capacity {
            inner.history.pop_front();
        }
        inner.history.push_back(Arc::clone(&event));
        // No receiver is not an error: nobody is attached.
        let _ = self.live.send(event);
    }

    /// Starts a subscription. `since` is the last sequence number the client
    /// applied in the run identified by `epoch`; 0 (or another run's epoch)
    /// starts with a snapshot.
    pub fn subscribe(&self, since: u64, epoch: u64) -> Subscription {
        let inner = self.lock();
        let live = self.live.subscribe();
        let oldest_kept = inner
            .history
            .front()
            .map_or(inner.seq + 1, |event| event.seq);
        let can_replay =
            since > 0 && epoch == self.epoch && since <= inner.seq && since + 1 >= oldest_kept;
        let backlog = if can_replay {
            inner
                .history
                .iter()
                .filter(|event| event.seq > since)
                .cloned()
                .collect()
        } else {
            vec![Arc::new(pb::Event {
                seq: inner.seq,
                at_unix_ms: kirc_proto::unix_ms(SystemTime::now()),
                kind: Some(self.snapshot_of(&inner)),
            })]
        };
        Subscription {
            backlog,
            live,
            interactive: None,
        }
    }

    /// Counts an interactive subscriber until the guard drops.
    pub fn attach_interactive(&self) -> InteractiveGuard {
        self.interactive.send_modify(|count| *count += 1);
        InteractiveGuard(self.interactive.clone())
    }

    /// The number of interactive subscribers, as it changes.
    pub fn interactive(&self) -> tokio::sync::watch::Receiver<usize> {
        self.interactive.subscribe()
    }

    /// Changes the own-status fields (presence, heartbeat, traffic) and
    /// publishes the status if anything changed.
    pub fn update_status(&self, change: impl FnOnce(&mut StatusFields)) {
        let mut inner = self.lock();
        let mut fields = inner.fields.clone();
        change(&mut fields);
        if fields != inner.fields {
            inner.fields = fields;
            let status = self.status_of(&inner);
            self.publish(&mut inner, Kind::StatusChanged(status));
        }
    }

    /// Shows where the direct path to a contact stands.
    pub fn set_direct(&self, status: DirectStatus) {
        self.update_status(|fields| {
            match fields
                .direct
                .iter_mut()
                .find(|known| known.actor == status.actor)
            {
                Some(known) => *known = status,
                None => fields.direct.push(status),
            }
        });
    }

    /// Publishes a contact's presence or typing, if it changed.
    pub fn set_peer_presence(&self, presence: &PeerPresence) {
        let presence = convert::peer_presence(presence);
        let mut inner = self.lock();
        if inner.view.presence_of(&presence.actor_id) != Some(&presence) {
            self.publish(&mut inner, Kind::PeerPresenceChanged(presence));
        }
    }

    /// Records a successful check of `backend`.
    pub fn backend_up(&self, backend: Backend) {
        let now = kirc_proto::unix_ms(SystemTime::now());
        self.update_backend(backend, |status| {
            status.state = BackendState::Up as i32;
            status.last_error.clear();
            status.last_ok_unix_ms = now;
            status.consecutive_failures = 0;
        });
    }

    /// Records a failed check of `backend`. `error` must hold no secret.
    pub fn backend_down(&self, backend: Backend, error: String) {
        self.update_backend(backend, |status| {
            status.state = BackendState::Down as i32;
            status.last_error = error;
            status.consecutive_failures = status.consecutive_failures.saturating_add(1);
        });
    }

    /// Applies `change` and publishes the new status if its state or error
    /// changed; counters and timestamps alone do not make an event.
    fn update_backend(&self, backend: Backend, change: impl FnOnce(&mut BackendStatus)) {
        let mut inner = self.lock();
        let Some(status) = inner
            .backends
            .iter_mut()
            .find(|status| status.backend == backend as i32)
        else {
            return;
        };
        let before = (status.state, status.last_error.clone());
        change(status);
        if before != (status.state, status.last_error.clone()) {
            if before.0 != status.state {
                status.state_since_unix_ms = kirc_proto::unix_ms(SystemTime::now());
            }
            let changed = status.clone();
            self.publish(&mut inner, Kind::BackendChanged(changed));
        }
    }

    /// The state of `backend` (Connecting until its first check ends).
    pub fn backend_state(&self, backend: Backend) -> BackendState {
        self.lock()
            .backends
            .iter()
            .find(|status| status.backend == backend as i32)
            .map_or(BackendState::Unspecified, BackendStatus::state)
    }

    /// Waits until every backend has been checked at least once, whether it
    /// was up or down.
    pub async fn backends_checked(&self) {
        let mut live = self.live.subscribe();
        loop {
            let pending = self
                .lock()
                .backends
                .iter()
                .any(|status| status.state() == BackendState::Connecting);
            if !pending {
                return;
            }
            // Each first check ends with a BackendChanged event.
            if let Err(broadcast::error::RecvError::Closed) = live.recv().await {
                return;
            }
        }
    }

    #[cfg(test)]
    pub fn backend(&self, backend: Backend) -> Option<BackendStatus> {
        self.lock()
            .backends
            .iter()
            .find(|status| status.backend == backend as i32)
            .cloned()
    }

    /// Replaces the topic list, publishing it if it changed.
    pub fn set_topics(&self, topics: Vec<TopicStatus>) {
        let mut inner = self.lock();
        if inner.topics != topics {
            inner.topics = topics.clone();
            self.publish(
                &mut inner,
                Kind::TopicsChanged(pb::TopicsChanged { topics }),
            );
        }
    }

    /// Tells every subscriber that the daemon is stopping. This is the last
    /// event of the run: nothing is published after it.
    pub fn shutting_down(&self, reason: &str) {
        let mut inner = self.lock();
        self.publish(
            &mut inner,
            Kind::ShuttingDown(pb::ShuttingDown {
                reason: reason.to_owned(),
            }),
        );
        inner.closed = true;
    }

    /// Sets who this daemon is, once the identity is loaded.
    pub fn set_actor(&self, actor: ActorId, display_name: String) {
        let mut inner = self.lock();
        // The view names this actor as a member of new conversations.
        let mut status = self.status_of(&inner);
        status.actor_id = actor.to_string();
        status.display_name.clone_from(&display_name);
        inner.view.status = Some(status);
        inner.actor = Some((actor, display_name));
    }

    /// Replaces contacts and conversations (loaded from the database), marks
    /// the daemon ready, and tells subscribers with a fresh snapshot in the
    /// stream.
    pub fn load_view(&self, contacts: &[Arc<Contact>], conversations: &[ConversationSummary]) {
        let mut inner = self.lock();
        inner.ready = true;
        let contacts: Vec<pb::Contact> = contacts
            .iter()
            .map(|contact| convert::contact(contact))
            .collect();
        let me = inner.actor.clone();
        let me = me.as_ref().map(|(id, name)| (*id, name.as_str()));
        inner.view.conversations = conversations
            .iter()
            .map(|summary| convert::conversation(summary, me, &contacts))
            .collect();
        inner.view.contacts = contacts;
        let snapshot = self.snapshot_of(&inner);
        self.publish(&mut inner, snapshot);
    }

    fn publish_event(&self, kind: Kind) {
        let mut inner = self.lock();
        self.publish(&mut inner, kind);
    }

    /// A message was stored: sent from here or received.
    pub fn message_added(&self, message: &Message) {
        self.publish_event(Kind::MessageAdded(convert::message(message)));
    }

    /// A stored message changed: edited, deleted, reacted to, or the
    /// message it replies to arrived.
    pub fn message_updated(&self, message: &Message) {
        self.publish_event(Kind::MessageUpdated(convert::message(message)));
    }

    /// A transfer was offered, answered, moved on, or ended.
    pub fn transfer_changed(&self, transfer: &TransferRecord, progress: TransferProgress) {
        self.publish_event(Kind::TransferChanged(convert::transfer(transfer, progress)));
    }

    /// A sent message moved to `state`.
    pub fn message_state_changed(&self, id: Uuid, conversation: Uuid, state: MessageState) {
        self.publish_event(Kind::MessageStateChanged(pb::MessageStateChanged {
            message_id: id.to_string(),
            conversation_id: conversation.to_string(),
            state: convert::message_state(state) as i32,
        }));
    }

    /// A channel was made, joined or left, or changed.
    pub fn channel_changed(&self, channel: &crate::store::StoredChannel) {
        let mut inner = self.lock();
        let me = inner.actor.as_ref().map(|(id, _)| *id);
        let kind = Kind::ChannelChanged(pb::ChannelChanged {
            conversation_id: channel.id.to_string(),
            channel: Some(convert::channel_info(channel, me)),
        });
        self.publish(&mut inner, kind);
    }

    /// A contact was added, changed state, or asked to be added.
    pub fn contact_changed(&self, contact: &Contact) {
        self.publish_event(Kind::ContactChanged(convert::contact(contact)));
    }

    /// A conversation was muted or unmuted.
    pub fn conversation_muted(&self, conversation: Uuid, muted: bool) {
        self.publish_event(Kind::ConversationMuted(pb::ConversationMuted {
            conversation_id: conversation.to_string(),
            muted,
        }));
    }

    /// A conversation's read marker moved.
    pub fn read_marker_moved(&self, conversation: Uuid, last_read_seq: u64, unread: u64) {
        self.publish_event(Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
            conversation_id: conversation.to_string(),
            last_read_seq,
            unread,
        }));
    }

    /// Replaces the inbox's counters (rejections by reason, redeliveries,
    /// quarantine), publishing them if they changed.
    pub fn set_inbox(&self, inbox: InboxFigures) {
        let mut inner = self.lock();
        if inner.inbox != inbox {
            let changed = pb::RejectionsChanged {
                rejected: convert::rejections(&inbox),
                inbox: Some(convert::inbox_counters(&inbox)),
            };
            inner.inbox = inbox;
            self.publish(&mut inner, Kind::RejectionsChanged(changed));
        }
    }

    /// The conversation summaries as clients see them.
    pub fn conversations(&self) -> Vec<pb::Conversation> {
        self.lock().view.conversations.clone()
    }

    /// Whether `id` is a channel's conversation (read under the lock, so a
    /// send does not copy every conversation to ask).
    pub fn is_channel(&self, id: &str) -> bool {
        self.lock()
            .view
            .conversations
            .iter()
            .any(|known| known.id == id && known.kind == pb::ConversationKind::Channel as i32)
    }

    pub fn count_refused_connection(&self) -> u64 {
        self.refused_connections.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests;
