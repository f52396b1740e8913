//! The live layer on Valkey: contacts' presence and typing (keys with a
//! TTL, so a contact who vanishes expires by itself) shown as events,
//! inbound rate buckets, and sessions. Valkey is a cache here: when it is
//! away, presence shows as unknown, typing is not shown, rates are not
//! limited and sessions are not kept, while chat goes on.
//!
//! [`Live`] keeps contacts' presence as last shown, so that a change is
//! made from what it knows, not read back from the hub. `follow.rs` follows
//! Valkey itself: its expiry events, and its coming and going.

mod follow;
pub mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::PresenceConfig;
use crate::crypto::identity::ActorId;
use crate::hub::{Hub, PeerPresence, PresenceState};
pub use follow::spawn;
pub use keys::RateTally;
use keys::{Expired, Keys};

/// Contacts' presence is believed for this many heartbeats.
const PRESENCE_HEARTBEATS: u32 = 3;

#[derive(Debug)]
pub struct Live {
    keys: Keys,
    hub: Arc<Hub>,
    config: PresenceConfig,
    /// Valkey answered the last time it was asked.
    valkey_up: AtomicBool,
    /// Contacts' presence as last shown.
    shown: Mutex<HashMap<ActorId, PeerPresence>>,
    /// Contacts' presence states as last shown, for those who act on them
    /// (the direct path follows who is online).
    states: tokio::sync::watch::Sender<HashMap<ActorId, PresenceState>>,
}

impl Live {
    pub fn new(keys: Keys, hub: Arc<Hub>, config: PresenceConfig) -> Arc<Self> {
        Arc::new(Live {
            keys,
            hub,
            config,
            valkey_up: AtomicBool::new(false),
            shown: Mutex::new(HashMap::new()),
            states: tokio::sync::watch::Sender::new(HashMap::new()),
        })
    }

    /// Contacts' presence states, updated whenever one changes.
    pub fn states(&self) -> tokio::sync::watch::Receiver<HashMap<ActorId, PresenceState>> {
        self.states.subscribe()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    /// How long contacts should believe our presence.
    pub fn presence_ttl(&self) -> Duration {
        self.config.heartbeat * PRESENCE_HEARTBEATS
    }

    /// Changes what is shown of `actor` and publishes it if it changed.
    fn show(&self, actor: ActorId, change: impl FnOnce(&mut PeerPresence)) {
        let presence = {
            let mut shown = self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let presence = shown
                .entry(actor)
                .or_insert_with(|| PeerPresence::unknown(actor));
            change(presence);
            presence.clone()
        };
        self.states.send_if_modified(|states| {
            states.insert(actor, presence.state) != Some(presence.state)
        });
        self.hub.set_peer_presence(&presence);
    }

    /// A contact's presence arrived: kept in Valkey for `ttl`, shown now.
    pub async fn peer_presence(
        &self,
        actor: ActorId,
        state: PresenceState,
        text: String,
        ttl: Duration,
    ) {
        let stored = self.keys.set_presence(actor, state, &text, ttl).await;
        self.note_valkey(stored.is_ok());
        self.show(actor, |presence| {
            if stored.is_ok() {
                presence.state = state;
                presence.text = text;
            } else {
                presence.state = PresenceState::Unknown;
            }
            if state != PresenceState::Online && state != PresenceState::Away {
                presence.typing = false;
            }
        });
    }

    /// A contact started or stopped typing.
    pub async fn peer_typing(&self, actor: ActorId, active: bool) {
        let stored = self.keys.set_typing(actor, active).await;
        self.note_valkey(stored.is_ok());
        // Without Valkey nothing would expire the indicator: none is shown.
        self.show(actor, |presence| presence.typing = active && stored.is_ok());
    }

    /// Adds a batch's `tally` to the counts in Valkey and returns each
    /// count before it (in `tally.counts`' order); `None` with Valkey away.
    pub async fn count_in_valkey(&self, tally: &RateTally) -> Option<Vec<u64>> {
        self.keys.rate(tally).await.ok()
    }

    /// Adds a batch's `tally` to the counts in Valkey without waiting: for a
    /// later process, which reads them for the minutes around its start.
    /// One lost (Valkey away, or kircd stopping) lets a sender a little past
    /// its rate in those minutes, no more.
    pub fn add_to_rate(&self, tally: RateTally) {
        let keys = self.keys.clone();
        tokio::spawn(async move {
            let _ = keys.rate(&tally).await;
        });
    }

    /// The offset through which an inbox partition's records were counted
    /// in the last two minutes; `None` if none were, or Valkey is away.
    pub async fn counted_through(&self, partition: &str) -> Option<i64> {
        self.keys.counted_through(partition).await.ok().flatten()
    }

    /// How many of `records` new records the rate allows a sender that
    /// already sent `before` in the same minute.
    pub fn allowance(&self, before: u64, records: u64) -> u64 {
        self.config.rate_limit.saturating_sub(before).min(records)
    }

    fn note_valkey(&self, up: bool) {
        self.valkey_up.store(up, Ordering::Relaxed);
    }

    /// Shows every contact heard of as UNKNOWN (Valkey, which holds
    /// presence, is away).
    fn all_unknown(&self) {
        let actors: Vec<ActorId> = self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        for actor in actors {
            self.show(actor, |presence| {
                presence.state = PresenceState::Unknown;
                presence.typing = false;
            });
        }
    }

    /// Reloads every contact's presence from Valkey; contacts without a key
    /// are offline.
    async fn reload(&self, contacts: &[ActorId]) -> bool {
        let Ok(stored) = self.keys.presence_all().await else {
            return false;
        };
        let known: HashMap<ActorId, (PresenceState, String)> = stored
            .into_iter()
            .map(|(actor, state, text)| (actor, (state, text)))
            .collect();
        for actor in contacts {
            let (state, text) = known
                .get(actor)
                .cloned()
                .unwrap_or((PresenceState::Offline, String::new()));
            self.show(*actor, |presence| {
                presence.state = state;
                presence.text = text;
                presence.typing = false;
            });
        }
        true
    }

    fn expired(&self, expired: Expired) {
        match expired {
            Expired::Presence(actor) => self.show(actor, |presence| {
                presence.state = PresenceState::Offline;
                presence.text.clear();
                presence.typing = false;
            }),
            Expired::Typing(actor) => self.show(actor, |presence| presence.typing = false),
        }
    }
}
