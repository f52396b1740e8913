//! The peer manager's task: one record per contact, one session at most
//! per contact, driven by presence, signalling and the connections' events.
//! What comes from outside (signalling, connection events) is handled in
//! `incoming.rs`.

mod incoming;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Peers;
use super::channels::Channels;
use super::link::{self, Link, LinkEvent, LinkSettings, Tagged};
use super::negotiation::{self, Current, Role, SessionId};
use super::signal::{self, Signal, Step};
use crate::book::Contact;
use crate::crypto::identity::ActorId;
use crate::hub::{DirectState, DirectStatus, PresenceState};

/// A session whose channel has not opened by then is given up.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two tries to reach a contact.
const RETRY_CAP: Duration = Duration::from_secs(60);
/// Candidates gathered within this long go out in one record.
const CANDIDATE_BATCH: Duration = Duration::from_millis(100);
/// How often the route and round-trip time of open channels are read.
const FIGURES_EVERY: Duration = Duration::from_secs(5);

/// One session with a contact: its connection and where it stands.
struct Session {
    id: SessionId,
    role: Role,
    tag: u64,
    link: Arc<Link>,
    open: bool,
    started: Instant,
    /// Local candidates not sent yet, and since when the oldest waits.
    outgoing: Vec<wire::Candidate>,
    outgoing_since: Option<Instant>,
    gathered: bool,
    end_sent: bool,
}

impl Session {
    fn current(&self) -> Current {
        Current {
            id: self.id,
            role: self.role,
            open: self.open,
        }
    }
}

/// The manager's record of one contact.
struct Peer {
    contact: Arc<Contact>,
    session: Option<Session>,
    /// Sessions in a row that never opened or broke.
    failures: u32,
    retry_at: Instant,
    status: DirectStatus,
}

pub(super) struct Manager {
    peers: Peers,
    settings: LinkSettings,
    channels: Arc<Channels>,
    contacts: HashMap<ActorId, Peer>,
    next_tag: u64,
}

impl Manager {
    pub(super) fn new(peers: Peers, channels: Arc<Channels>) -> Self {
        Manager {
            settings: LinkSettings::new(&peers.config),
            peers,
            channels,
            contacts: HashMap::new(),
            next_tag: 0,
        }
    }

    pub(super) async fn run(
        mut self,
        mut signals: mpsc::Receiver<Signal>,
        cancel: CancellationToken,
    ) {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.peers.book.wait_loaded() => {}
        }
        let (events_sender, mut events) = mpsc::unbounded_channel();
        let mut presence = self.peers.live.states();
        let mut contacts = self.peers.book.changes();
        let mut figures_at = Instant::now() + FIGURES_EVERY;
        loop {
            // Nothing to do, nothing wakes the task: it sleeps until the
            // next deadline it has (a batch of candidates, a retry, a
            // session's timeout, the figures of open channels), if any.
            let wake = self.wake_at(&presence.borrow(), figures_at);
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = presence.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let states = presence.borrow_and_update().clone();
                    self.reconcile(&states, &events_sender).await;
                }
                changed = contacts.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    contacts.borrow_and_update();
                    let states = presence.borrow().clone();
                    self.reconcile(&states, &events_sender).await;
                }
                Some(signal) = signals.recv() => self.on_signal(signal, &events_sender).await,
                Some((tag, event)) = events.recv() => self.on_event(tag, event).await,
                () = sleep_until(wake) => {
                    let states = presence.borrow().clone();
                    self.reconcile(&states, &events_sender).await;
                    self.flush_candidates(false).await;
                    if Instant::now() >= figures_at {
                        figures_at = Instant::now() + FIGURES_EVERY;
                        self.read_figures().await;
                    }
                }
            }
        }
        for actor in self.contacts.keys().copied().collect::<Vec<_>>() {
            self.end_session(actor, None, "kircd stopped").await;
        }
    }

    /// The earliest deadline of any contact's record, if there is one.
    fn wake_at(
        &self,
        states: &HashMap<ActorId, PresenceState>,
        figures_at: Instant,
    ) -> Option<Instant> {
        let now = Instant::now();
        self.contacts
            .iter()
            .flat_map(|(actor, peer)| {
                let mut deadlines = Vec::new();
                match &peer.session {
                    Some(session) => {
                        if let Some(since) = session.outgoing_since {
                            deadlines.push(since + CANDIDATE_BATCH);
                        }
                        if session.open {
                            // The figures, and a check that the contact is
                            // still one (a block closes its channel).
                            deadlines.push(figures_at);
                        } else {
                            deadlines.push(session.started + SESSION_TIMEOUT);
                        }
                    }
                    None => {
                        let wanted = matches!(
                            states.get(actor),
                            Some(PresenceState::Online | PresenceState::Away)
                        );
                        if wanted && peer.retry_at > now {
                            deadlines.push(peer.retry_at);
                        }
                    }
                }
                deadlines
            })
            .min()
    }

    fn peer(&mut self, contact: &Arc<Contact>) -> &mut Peer {
        self.contacts
            .entry(contact.actor_id)
            .or_insert_with(|| Peer {
                contact: Arc::clone(contact),
                session: None,
                failures: 0,
                retry_at: Instant::now(),
                status: DirectStatus::off(contact.actor_id),
            })
    }

    /// Opens what should be open and closes what should not, after a
    /// change of presence, and at each deadline (so that a retry falls due
    /// and a blocked contact's channel is closed).
    async fn reconcile(
        &mut self,
        states: &HashMap<ActorId, PresenceState>,
        events: &mpsc::UnboundedSender<(u64, LinkEvent)>,
    ) {
        let accepted: HashMap<ActorId, Arc<Contact>> = self
            .peers
            .book
            .accepted()
            .into_iter()
            .map(|contact| (contact.actor_id, contact))
            .collect();
        // No longer an accepted contact (blocked, removed): closed without a
        // word to it.
        let gone: Vec<ActorId> = self
            .contacts
            .keys()
            .filter(|actor| !accepted.contains_key(actor))
            .copied()
            .collect();
        for actor in gone {
            self.end_session(actor, None, "not an accepted contact")
                .await;
            self.contacts.remove(&actor);
            self.peers.hub.set_direct(DirectStatus::off(actor));
        }
        let now = Instant::now();
        for (actor, contact) in &accepted {
            let state = states.get(actor).copied().unwrap_or(PresenceState::Unknown);
            let peer = self.peer(contact);
            peer.contact = Arc::clone(contact);
            let has_session = peer.session.is_some();
            let open = peer.session.as_ref().is_some_and(|session| session.open);
            match state {
                // Gone: its side is closed or closing. A session still
                // negotiating is left to its timeout: an "offline" read from
                // a backlog after a restart may be older than the contact's
                // offer, and ICE fails by itself if the contact is gone.
                PresenceState::Offline if open => {
                    self.end_session(*actor, None, "the contact went offline")
                        .await;
                }
                PresenceState::Online | PresenceState::Away
                    if !has_session && now >= peer.retry_at =>
                {
                    self.offer(contact, events).await;
                }
                // Unknown (Valkey away): what is open stays open.
                _ => {}
            }
        }
        // Sessions that never opened.
        let expired: Vec<ActorId> = self
            .contacts
            .iter()
            .filter(|(_, peer)| {
                peer.session
                    .as_ref()
                    .is_some_and(|session| !session.open && now - session.started > SESSION_TIMEOUT)
            })
            .map(|(actor, _)| *actor)
            .collect();
        for actor in expired {
            self.fail(actor, "no connection within the time allowed")
                .await;
        }
    }

    fn sessions(&self) -> usize {
        self.contacts
            .values()
            .filter(|peer| peer.session.is_some())
            .count()
    }

    /// Makes room for one more session under the cap: closes the least
    /// recently used.
    async fn make_room(&mut self) {
        let cap = self.peers.config.max_peers;
        if self.sessions() < cap {
            return;
        }
        let never = std::time::Instant::now() - Duration::from_secs(365 * 24 * 3600);
        let open: Vec<(ActorId, std::time::Instant)> = self
            .contacts
            .iter()
            .filter(|(_, peer)| peer.session.is_some())
            .map(|(actor, _)| (*actor, self.channels.last_used(*actor).unwrap_or(never)))
            .collect();
        if let Some(actor) = negotiation::evict(&open, cap) {
            self.end_session(
                actor,
                Some("room for another contact"),
                "closed to make room",
            )
            .await;
            if let Some(peer) = self.contacts.get_mut(&actor) {
                // It stays closed until a session frees a place.
                peer.retry_at = Instant::now() + RETRY_CAP;
            }
        }
    }

    async fn new_link(
        &mut self,
        events: &mpsc::UnboundedSender<(u64, LinkEvent)>,
    ) -> Result<(u64, Arc<Link>), link::LinkError> {
        self.next_tag += 1;
        let tag = self.next_tag;
        let link = Link::new(
            &self.settings,
            Tagged {
                tag,
                events: events.clone(),
            },
        )
        .await?;
        Ok((tag, Arc::new(link)))
    }

    async fn offer(
        &mut self,
        contact: &Arc<Contact>,
        events: &mpsc::UnboundedSender<(u64, LinkEvent)>,
    ) {
        self.make_room().await;
        let actor = contact.actor_id;
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let made = async {
            let (tag, link) = self.new_link(events).await?;
            let sdp = link.offer().await?;
            Ok::<_, link::LinkError>((tag, link, sdp))
        }
        .await;
        let (tag, link, sdp) = match made {
            Ok(made) => made,
            Err(err) => {
                tracing::warn!(error = %err, contact = %actor, "cannot make a direct connection");
                self.backoff(actor, &err.to_string());
                return;
            }
        };
        self.install(actor, id, Role::Offerer, tag, link);
        self.signal(actor, id, Step::Offer(sdp)).await;
    }

    fn install(&mut self, actor: ActorId, id: SessionId, role: Role, tag: u64, link: Arc<Link>) {
        let Some(peer) = self.contacts.get_mut(&actor) else {
            return;
        };
        peer.session = Some(Session {
            id,
            role,
            tag,
            link,
            open: false,
            started: Instant::now(),
            outgoing: Vec::new(),
            outgoing_since: None,
            gathered: false,
            end_sent: false,
        });
        peer.status.state = DirectState::Connecting;
        peer.status.reason.clear();
        peer.status.session = id.iter().map(|byte| format!("{byte:02x}")).collect();
        self.peers.hub.set_direct(peer.status.clone());
    }

    /// Sends a signalling step to a contact over Kafka.
    async fn signal(&self, actor: ActorId, session: SessionId, step: Step) {
        let Some(peer) = self.contacts.get(&actor) else {
            return;
        };
        tracing::debug!(contact = %actor, session = signal::short(&session), step = step.name(), "signalling sent");
        let payload = signal::encode(session, step);
        if let Err(err) = self
            .peers
            .outbound
            .send_control(&peer.contact, wire::Kind::Signal, &payload)
            .await
        {
            tracing::debug!(error = %err, "signalling not sent");
        }
    }

    /// Ends the current session with `actor`, telling it `hang_up` if
    /// given; the contact's state shows `reason`.
    async fn end_session(&mut self, actor: ActorId, hang_up: Option<&str>, reason: &str) {
        self.channels.remove(actor);
        let Some(peer) = self.contacts.get_mut(&actor) else {
            return;
        };
        let Some(session) = peer.session.take() else {
            return;
        };
        peer.status = DirectStatus {
            state: DirectState::Off,
            reason: reason.to_owned(),
            ..DirectStatus::off(actor)
        };
        self.peers.hub.set_direct(peer.status.clone());
        if let Some(words) = hang_up {
            self.signal(actor, session.id, Step::HangUp(words.to_owned()))
                .await;
        }
        session.link.close().await;
    }

    /// The session broke or never opened: closed, and tried again after a
    /// backoff.
    async fn fail(&mut self, actor: ActorId, reason: &str) {
        let had_session = self
            .contacts
            .get(&actor)
            .is_some_and(|peer| peer.session.is_some());
        if !had_session {
            return;
        }
        tracing::info!(contact = %actor, reason, "direct path lost; Kafka carries everything meanwhile");
        self.end_session(actor, None, reason).await;
        self.backoff(actor, reason);
    }

    fn backoff(&mut self, actor: ActorId, reason: &str) {
        let Some(peer) = self.contacts.get_mut(&actor) else {
            return;
        };
        let delay = negotiation::retry_delay(peer.failures, RETRY_CAP);
        peer.failures = peer.failures.saturating_add(1);
        peer.retry_at = Instant::now() + delay;
        peer.status.state = DirectState::Failed;
        reason.clone_into(&mut peer.status.reason);
        self.peers.hub.set_direct(peer.status.clone());
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
