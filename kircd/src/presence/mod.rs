//! The actor's own presence and typing, told to its contacts; and the
//! handlers of the contacts' presence and typing records.
//!
//! One task owns the own presence, fed by [`Command`]s from the API: it
//! follows explicit away/back, idleness and whether any client is attached,
//! announces each change to every accepted contact and repeats it as a
//! heartbeat, sends "typing" at most once per [`TYPING_SEND_EVERY`] per
//! conversation, and says "offline" when stopped.

mod handlers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::book::ContactBook;
use crate::hub::{Hub, OwnPresence, PresenceState};
use crate::live::Live;
use crate::transport::outbound::Outbound;
pub use handlers::{PresenceHandler, TypingHandler};

/// At most one "typing" to a contact per this long per conversation.
pub const TYPING_SEND_EVERY: Duration = Duration::from_secs(3);

/// A contact's "typing" lives this long without a new one (in Valkey too).
pub use crate::live::keys::TYPING_TTL;

/// Requests to the presence task.
#[derive(Debug)]
pub enum Command {
    /// `/away [text]` (Away) or `/back` (Online).
    Set {
        state: PresenceState,
        text: String,
        reply: oneshot::Sender<OwnPresence>,
    },
    /// A key was pressed in a TUI.
    Activity,
    Typing {
        conversation: Uuid,
        active: bool,
        reply: oneshot::Sender<bool>,
    },
}

/// What the presence task needs.
#[derive(Debug, Clone)]
pub struct Presence {
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
    pub live: Arc<Live>,
    pub outbound: Arc<Outbound>,
}

#[derive(Debug)]
pub struct PresenceHandle {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl PresenceHandle {
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the presence task failed");
        }
    }
}

/// The own presence as it follows from what is known.
fn own_presence(explicit: &Option<String>, interactive: usize, idle: bool) -> OwnPresence {
    let (state, text, reason) = match (explicit, interactive, idle) {
        (Some(text), _, _) => (PresenceState::Away, text.clone(), "explicit"),
        (None, 0, _) => (PresenceState::Away, String::new(), "no client attached"),
        (None, _, true) => (PresenceState::Away, String::new(), "idle"),
        (None, _, false) => (PresenceState::Online, String::new(), ""),
    };
    OwnPresence {
        state,
        text,
        reason,
    }
}

/// Starts the presence task; it stops (after telling contacts "offline")
/// when `cancel` fires.
pub fn spawn(presence: Presence, cancel: CancellationToken) -> PresenceHandle {
    let (commands, inbox) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = presence.book.wait_loaded() => {}
        }
        presence.own(inbox, cancel).await;
    });
    PresenceHandle { commands, task }
}

impl Presence {
    /// The own presence: computed, announced on change and as a heartbeat.
    async fn own(&self, mut commands: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let config = self.live.config().clone();
        let mut explicit: Option<String> = None;
        let mut interactive = self.hub.interactive();
        let mut attached_before = *interactive.borrow_and_update();
        let mut last_activity = Instant::now();
        let mut announced: Option<OwnPresence> = None;
        let mut typing_sent: HashMap<Uuid, Instant> = HashMap::new();
        let mut contacts = self.book.changes();
        let mut heartbeat = tokio::time::interval(config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let idle_at = last_activity + config.idle;
            let idle = Instant::now() >= idle_at;
            let presence = own_presence(&explicit, *interactive.borrow(), idle);
            if announced.as_ref() != Some(&presence) {
                tracing::info!(state = ?presence.state, reason = %presence.reason, "presence");
                self.announce(&presence).await;
                announced = Some(presence);
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                // A contact just accepted (or changed) hears our presence now,
                // not at the next heartbeat: its direct path and its view of
                // us need it.
                changed = contacts.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    contacts.borrow_and_update();
                    if let Some(presence) = &announced {
                        self.announce(presence).await;
                    }
                }
                _ = heartbeat.tick() => {
                    if let Some(presence) = &announced {
                        self.announce(presence).await;
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
                        explicit = (state == PresenceState::Away).then_some(text);
                        last_activity = Instant::now();
                        let presence = own_presence(&explicit, *interactive.borrow(), false);
                        let _ = reply.send(presence);
                    }
                    Some(Command::Activity) => last_activity = Instant::now(),
                    Some(Command::Typing { conversation, active, reply }) => {
                        last_activity = Instant::now();
                        let now = Instant::now();
                        let send = if active {
                            typing_sent.get(&conversation).is_none_or(|sent| now.duration_since(*sent) >= TYPING_SEND_EVERY)
                        } else {
                            // A stop matters only if a start went out recently.
                            typing_sent
                                .remove(&conversation)
                                .is_some_and(|sent| now.duration_since(sent) < TYPING_TTL)
                        };
                        if send {
                            if active {
                                typing_sent.insert(conversation, now);
                            }
                            self.send_typing(conversation, active).await;
                        }
                        let _ = reply.send(send);
                    }
                },
            }
        }
        // Contacts learn at once that we left, instead of after the TTL.
        let offline = OwnPresence {
            state: PresenceState::Offline,
            text: String::new(),
            reason: "stopped",
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), self.announce(&offline)).await;
    }

    /// Shows the own presence in the status and tells every accepted contact.
    async fn announce(&self, presence: &OwnPresence) {
        self.hub
            .update_status(|status| status.presence = Some(presence.clone()));
        let record = wire::Presence {
            state: presence.state.code(),
            text: presence.text.clone(),
            ttl_seconds: u32::try_from(self.live.presence_ttl().as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
        };
        let payload = record.encode_to_vec();
        for contact in self.book.mutual() {
            if let Err(err) = self
                .outbound
                .send_control(&contact, wire::Kind::Presence, &payload)
                .await
            {
                tracing::debug!(error = %err, "presence not sent");
                return;
            }
        }
    }

    /// Tells the contact of `conversation` that we type (or stopped).
    async fn send_typing(&self, conversation: Uuid, active: bool) {
        let Some(contact) = self.book.by_conversation(conversation) else {
            tracing::debug!(%conversation, "typing not sent: no such conversation");
            return;
        };
        if !contact.is_accepted() {
            return;
        }
        let payload = wire::Typing { active }.encode_to_vec();
        if let Err(err) = self
            .outbound
            .send_control(&contact, wire::Kind::Typing, &payload)
            .await
        {
            tracing::debug!(error = %err, "typing not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_presence_follows_explicit_then_clients_then_idle() {
        let away = |presence: &OwnPresence| (presence.state, presence.reason);
        assert_eq!(
            away(&own_presence(&None, 1, false)),
            (PresenceState::Online, "")
        );
        assert_eq!(
            away(&own_presence(&None, 0, false)),
            (PresenceState::Away, "no client attached")
        );
        assert_eq!(
            away(&own_presence(&None, 2, true)),
            (PresenceState::Away, "idle")
        );
        let explicit = own_presence(&Some("lunch".into()), 1, false);
        assert_eq!(away(&explicit), (PresenceState::Away, "explicit"));
        assert_eq!(explicit.text, "lunch");
    }
}
