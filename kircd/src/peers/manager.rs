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
use super::negotiation::{self, Current, Role, Room, SessionId};
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
/// A contact waiting for a place is tried again this soon after the wait
/// began if chat with it happens (not at once: a busy conversation would
/// otherwise offer at every message while the contact has no place).
const TOUCHED_RETRY: Duration = Duration::from_secs(5);
/// The state of a contact kept off the direct path by the cap.
const WAITING_FOR_ROOM: &str =
    "waiting for a free place: rtc.max_peers connections are open to contacts in use";

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

/// Why a contact waits for a place under `rtc.max_peers`. Either way, chat
/// with the contact tries again within `TOUCHED_RETRY` of the wait's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoomWait {
    /// This side had no place: tried again as soon as one frees up here.
    Here,
    /// The contact had none: tried again after `RETRY_CAP`.
    There,
}

/// The manager's record of one contact.
struct Peer {
    contact: Arc<Contact>,
    session: Option<Session>,
    /// Sessions in a row that never opened or broke.
    failures: u32,
    retry_at: Instant,
    /// Waiting for a place under `rtc.max_peers`, and since when.
    room_wait: Option<(RoomWait, Instant)>,
    /// The session that ended last: its hang-up can arrive after the
    /// connection's own close, and still say why it ended.
    ended: Option<SessionId>,
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
        let channels = Arc::clone(&self.channels);
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
                () = channels.touched() => {
                    let now = Instant::now();
                    for actor in channels.take_touched() {
                        if let Some(peer) = self.contacts.get_mut(&actor)
                            && peer.session.is_none()
                            && let Some((_, since)) = peer.room_wait
                        {
                            peer.retry_at = peer.retry_at.min(since + TOUCHED_RETRY).max(now);
                        }
                    }
                    let states = presence.borrow().clone();
                    self.reconcile(&states, &events_sender).await;
                }
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
        let room_free = self.sessions() < self.peers.config.max_peers;
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
                        let waits_here = matches!(peer.room_wait, Some((RoomWait::Here, _)));
                        if wanted && waits_here && room_free {
                            deadlines.push(now);
                        } else if wanted && peer.retry_at > now {
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
                room_wait: None,
                ended: None,
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
            let room_free = self.sessions() < self.peers.config.max_peers;
            let peer = self.peer(contact);
            peer.contact = Arc::clone(contact);
            let has_session = peer.session.is_some();
            let route_lost = peer.session.as_ref().is_some_and(|session| session.open)
                && peer.status.state == DirectState::Connecting;
            let waits_here = matches!(peer.room_wait, Some((RoomWait::Here, _)));
            let due = now >= peer.retry_at || (waits_here && room_free);
            match state {
                // "Offline" alone does not end a session: the connection
                // itself says whether the contact is there. A contact that
                // stops closes it (its end is seen at once); one that
                // crashed stops answering ICE's checks (disconnected after
                // 5 s). Presence is the weaker signal: it expires when its
                // heartbeats are late, which the traffic budget's pacing
                // can make them, and an "offline" read from a backlog after
                // a restart may be older than the session. Both together
                // (route lost, contact offline) end it: an ICE restart
                // cannot reach a daemon that is gone, and the one that
                // comes back starts a new session.
                PresenceState::Offline if route_lost => {
                    self.end_session(*actor, None, "the contact went offline")
                        .await;
                }
                PresenceState::Online | PresenceState::Away if !has_session && due => {
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

    /// Whether a session with `actor` may start: a place is free, or one is
    /// made by closing the least recently used connection for a contact
    /// used more recently (see `negotiation::room`).
    async fn admit(&mut self, actor: ActorId) -> bool {
        let open: Vec<(ActorId, Option<std::time::Instant>)> = self
            .contacts
            .iter()
            .filter(|(other, peer)| **other != actor && peer.session.is_some())
            .map(|(other, _)| (*other, self.channels.last_used(*other)))
            .collect();
        let wanted = self.channels.last_used(actor);
        match negotiation::room(&open, wanted, self.peers.config.max_peers) {
            Room::Free => true,
            Room::Full => false,
            Room::Evict(evicted) => {
                self.end_session(
                    evicted,
                    Some(negotiation::NO_ROOM),
                    "closed to make room for a contact in use",
                )
                .await;
                self.wait_for_room(
                    evicted,
                    RoomWait::Here,
                    "closed to make room for a contact in use",
                );
                true
            }
        }
    }

    /// `actor` waits for a place under the cap; the state says why.
    fn wait_for_room(&mut self, actor: ActorId, which: RoomWait, reason: &str) {
        let Some(peer) = self.contacts.get_mut(&actor) else {
            return;
        };
        let now = Instant::now();
        peer.room_wait = Some((which, now));
        peer.retry_at = now + RETRY_CAP;
        let status = DirectStatus {
            state: DirectState::Off,
            reason: reason.to_owned(),
            ..DirectStatus::off(actor)
        };
        if peer.status != status {
            peer.status = status;
            self.peers.hub.set_direct(peer.status.clone());
        }
    }

    async fn new_link(
        &mut self,
        actor: ActorId,
        events: &mpsc::UnboundedSender<(u64, LinkEvent)>,
    ) -> Result<(u64, Arc<Link>), link::LinkError> {
        self.next_tag += 1;
        let tag = self.next_tag;
        let link = Link::new(
            &self.settings,
            Tagged {
                tag,
                events: events.clone(),
                messages: link::Messages::Inbox {
                    from: actor,
                    inbox: self.peers.inbound.clone(),
                },
                files: Some((actor, self.peers.files.clone())),
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
        let actor = contact.actor_id;
        if !self.admit(actor).await {
            self.wait_for_room(actor, RoomWait::Here, WAITING_FOR_ROOM);
            return;
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let made = async {
            let (tag, link) = self.new_link(actor, events).await?;
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
        peer.room_wait = None;
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
        peer.ended = Some(session.id);
        tracing::debug!(contact = %actor, session = signal::short(&session.id), reason, "direct session ended");
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
        // A failure's backoff takes over from any wait for a place.
        peer.room_wait = None;
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
