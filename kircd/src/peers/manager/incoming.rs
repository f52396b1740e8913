//! What reaches the peer manager from outside: the contacts' signalling,
//! and the events of its connections.

use std::sync::Arc;

use kirc_proto::wire::v1 as wire;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCIceCandidateInit;

use super::{CANDIDATE_BATCH, Manager, RoomWait, Session};
use crate::crypto::identity::ActorId;
use crate::hub::{DirectState, PresenceState};
use crate::peers::link::{self, Link, LinkEvent, LinkState};
use crate::peers::negotiation::{self, OnOffer, Role};
use crate::peers::signal::{Signal, Step};

impl Manager {
    pub(super) async fn on_signal(
        &mut self,
        signal: Signal,
        events: &mpsc::UnboundedSender<(u64, LinkEvent)>,
    ) {
        let actor = signal.from.actor_id;
        if !signal.from.is_accepted() {
            return;
        }
        let me = self.peers.book.me();
        let current = self
            .peer(&signal.from)
            .session
            .as_ref()
            .map(Session::current);
        tracing::debug!(
            contact = %actor,
            session = crate::peers::signal::short(&signal.session),
            step = signal.step.name(),
            current = current.map(|current| crate::peers::signal::short(&current.id)),
            "signalling received"
        );
        match signal.step {
            Step::Offer(sdp) => {
                match negotiation::on_offer(current, negotiation::polite(me, actor), signal.session)
                {
                    OnOffer::Ignore => {}
                    OnOffer::Renegotiate => {
                        let Some(link) = self.link_of(actor) else {
                            return;
                        };
                        match link.answer(sdp).await {
                            Ok(answer) => {
                                self.signal(actor, signal.session, Step::Answer(answer))
                                    .await;
                            }
                            Err(err) => self.fail(actor, &err.to_string()).await,
                        }
                    }
                    OnOffer::Answer => {
                        if current.is_some() {
                            // A glare lost politely, or the contact started
                            // afresh: the current session is dropped.
                            self.end_session(actor, None, "replaced by the contact's session")
                                .await;
                        } else if !self.admit(actor).await {
                            // Full of contacts in use: the contact waits
                            // (and so do we) instead of taking a place
                            // only to lose it to the next one.
                            self.signal(
                                actor,
                                signal.session,
                                Step::HangUp(String::from(negotiation::NO_ROOM)),
                            )
                            .await;
                            self.wait_for_room(actor, RoomWait::Here, super::WAITING_FOR_ROOM);
                            return;
                        }
                        let answered = async {
                            let (tag, link) = self.new_link(actor, events).await?;
                            let answer = link.answer(sdp).await?;
                            Ok::<_, link::LinkError>((tag, link, answer))
                        }
                        .await;
                        match answered {
                            Ok((tag, link, answer)) => {
                                self.install(actor, signal.session, Role::Answerer, tag, link);
                                self.signal(actor, signal.session, Step::Answer(answer))
                                    .await;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, contact = %actor, "cannot answer a direct connection");
                                self.backoff(actor, &err.to_string());
                            }
                        }
                    }
                }
            }
            Step::Answer(sdp) => {
                if !negotiation::concerns(current, signal.session) {
                    // The contact answered a session this side dropped (a
                    // restart, a glare seen late): it would wait for it
                    // until the timeout. Told, it drops it and both start
                    // afresh, and the polite rule settles who offers.
                    self.signal(
                        actor,
                        signal.session,
                        Step::HangUp(String::from("unknown session")),
                    )
                    .await;
                    return;
                }
                if current.is_some_and(|current| current.role != Role::Offerer) {
                    return;
                }
                let Some(link) = self.link_of(actor) else {
                    return;
                };
                if let Err(err) = link.accept_answer(sdp).await {
                    self.fail(actor, &err.to_string()).await;
                }
            }
            Step::Candidates { candidates, .. } => {
                if !negotiation::concerns(current, signal.session) {
                    return;
                }
                let Some(link) = self.link_of(actor) else {
                    return;
                };
                for candidate in candidates {
                    let init = RTCIceCandidateInit {
                        candidate: candidate.candidate,
                        sdp_mid: Some(candidate.sdp_mid),
                        sdp_mline_index: u16::try_from(candidate.sdp_mline_index).ok(),
                        username_fragment: (!candidate.username_fragment.is_empty())
                            .then_some(candidate.username_fragment),
                        ..RTCIceCandidateInit::default()
                    };
                    if let Err(err) = link.add_candidate(init).await {
                        tracing::debug!(error = %err, "a candidate of the contact's was refused");
                    }
                }
            }
            Step::HangUp(reason) => {
                if negotiation::concerns(current, signal.session) {
                    tracing::info!(contact = %actor, reason, "the contact hung up the direct path");
                    if reason == negotiation::NO_ROOM {
                        self.end_session(actor, None, "the contact has no place free")
                            .await;
                        self.wait_for_room(actor, RoomWait::There, "the contact has no place free");
                    } else {
                        self.end_session(actor, None, "the contact hung up").await;
                        self.backoff(actor, "the contact hung up");
                    }
                } else if reason == negotiation::NO_ROOM
                    && current.is_none()
                    && self.contacts.get(&actor).and_then(|peer| peer.ended) == Some(signal.session)
                {
                    // The contact closed the session to make room for
                    // another, and the connection's close came before
                    // these words: what ended as a failure, to be retried
                    // within seconds, is a wait for a place there, or this
                    // side would offer again only to be turned away.
                    self.wait_for_room(actor, RoomWait::There, "the contact has no place free");
                }
            }
        }
    }

    fn link_of(&self, actor: ActorId) -> Option<Arc<Link>> {
        self.contacts
            .get(&actor)?
            .session
            .as_ref()
            .map(|session| Arc::clone(&session.link))
    }

    fn by_tag(&self, tag: u64) -> Option<ActorId> {
        self.contacts
            .iter()
            .find(|(_, peer)| {
                peer.session
                    .as_ref()
                    .is_some_and(|session| session.tag == tag)
            })
            .map(|(actor, _)| *actor)
    }

    pub(super) async fn on_event(&mut self, tag: u64, event: LinkEvent) {
        // Events of a connection already replaced are dropped.
        let Some(actor) = self.by_tag(tag) else {
            return;
        };
        if let LinkEvent::State(state) = &event {
            tracing::debug!(contact = %actor, ?state, "direct connection state");
        }
        match event {
            // The links of the manager hand their messages to the inbox
            // themselves.
            LinkEvent::Message(_) => {}
            LinkEvent::Candidate(candidate) => {
                let Some(session) = self.session_mut(actor) else {
                    return;
                };
                match candidate {
                    Some(candidate) => {
                        session.outgoing.push(wire::Candidate {
                            candidate: candidate.candidate,
                            sdp_mid: candidate.sdp_mid.unwrap_or_default(),
                            sdp_mline_index: u32::from(candidate.sdp_mline_index.unwrap_or(0)),
                            username_fragment: candidate.username_fragment.unwrap_or_default(),
                        });
                        session.outgoing_since.get_or_insert_with(Instant::now);
                    }
                    None => {
                        session.gathered = true;
                        self.flush_candidates(true).await;
                    }
                }
            }
            LinkEvent::Open => {
                let Some(link) = self.link_of(actor) else {
                    return;
                };
                // The route is known once connected: shown with the state.
                let figures = link.figures().await;
                let Some(peer) = self.contacts.get_mut(&actor) else {
                    return;
                };
                let Some(session) = peer.session.as_mut() else {
                    return;
                };
                session.open = true;
                peer.failures = 0;
                peer.status.state = DirectState::Connected;
                peer.status.reason.clear();
                peer.status.route = figures.route.map(link::Route::name);
                peer.status.round_trip = figures.round_trip;
                self.channels.insert(actor, Arc::clone(&session.link));
                self.peers.hub.set_direct(peer.status.clone());
                tracing::info!(contact = %actor, "direct path open");
            }
            LinkEvent::State(LinkState::Disconnected) => {
                self.channels.remove(actor);
                let offline =
                    self.peers.live.states().borrow().get(&actor) == Some(&PresenceState::Offline);
                if offline {
                    // Gone, not just a route lost: nothing to restart.
                    self.end_session(actor, None, "the contact went offline")
                        .await;
                    return;
                }
                let Some(peer) = self.contacts.get_mut(&actor) else {
                    return;
                };
                let Some(session) = peer.session.as_ref() else {
                    return;
                };
                // The side that offered restarts ICE; the other answers it.
                // Until the route is back (or ICE gives up and the session
                // fails), Kafka carries everything and the state says so.
                let (id, link, offerer) = (
                    session.id,
                    Arc::clone(&session.link),
                    session.role == Role::Offerer,
                );
                peer.status.state = DirectState::Connecting;
                peer.status.reason = String::from(if offerer {
                    "route lost; restarting ICE"
                } else {
                    "route lost; waiting for the contact's ICE restart"
                });
                self.peers.hub.set_direct(peer.status.clone());
                if offerer {
                    tracing::info!(contact = %actor, "direct path interrupted; restarting ICE");
                    match link.restart_ice().await {
                        Ok(sdp) => self.signal(actor, id, Step::Offer(sdp)).await,
                        Err(err) => self.fail(actor, &err.to_string()).await,
                    }
                }
            }
            LinkEvent::State(LinkState::Connected) => {
                // Connected again after an interruption, on the same
                // session: the channel is usable again as it was.
                let Some(peer) = self.contacts.get_mut(&actor) else {
                    return;
                };
                let Some(session) = peer.session.as_ref() else {
                    return;
                };
                if session.open {
                    let link = Arc::clone(&session.link);
                    self.channels.insert(actor, link);
                    if peer.status.state != DirectState::Connected {
                        peer.status.state = DirectState::Connected;
                        peer.status.reason.clear();
                        self.peers.hub.set_direct(peer.status.clone());
                        tracing::info!(contact = %actor, "direct path back");
                    }
                }
            }
            LinkEvent::State(LinkState::Failed) => {
                self.fail(actor, "the connection failed").await;
            }
            LinkEvent::State(LinkState::Closed) | LinkEvent::ChannelClosed => {
                self.fail(actor, "the channel closed").await;
            }
            LinkEvent::State(LinkState::Connecting) => {}
        }
    }

    fn session_mut(&mut self, actor: ActorId) -> Option<&mut Session> {
        self.contacts.get_mut(&actor)?.session.as_mut()
    }

    /// Sends the candidates gathered so far: those waiting a batch's time,
    /// or all of them (`now`), with end-of-candidates once gathering ended.
    pub(super) async fn flush_candidates(&mut self, now: bool) {
        let mut batches = Vec::new();
        for (actor, peer) in &mut self.contacts {
            let Some(session) = peer.session.as_mut() else {
                continue;
            };
            let pending_end = session.gathered && !session.end_sent;
            let due = now
                || session
                    .outgoing_since
                    .is_some_and(|since| since.elapsed() >= CANDIDATE_BATCH);
            let batch_ready = due && !session.outgoing.is_empty();
            if !(pending_end || batch_ready) {
                continue;
            }
            session.end_sent = session.gathered;
            let candidates = std::mem::take(&mut session.outgoing);
            session.outgoing_since = None;
            batches.push((
                *actor,
                session.id,
                Step::Candidates {
                    candidates,
                    end: session.gathered,
                },
            ));
        }
        for (actor, session, step) in batches {
            self.signal(actor, session, step).await;
        }
    }

    /// Reads the route and round-trip time of every open channel.
    pub(super) async fn read_figures(&mut self) {
        let open: Vec<(ActorId, Arc<Link>)> = self
            .contacts
            .iter()
            .filter_map(|(actor, peer)| {
                let session = peer.session.as_ref()?;
                session.open.then(|| (*actor, Arc::clone(&session.link)))
            })
            .collect();
        for (actor, link) in open {
            let figures = link.figures().await;
            if let Some(peer) = self.contacts.get_mut(&actor) {
                let before = peer.status.clone();
                peer.status.route = figures.route.map(link::Route::name);
                peer.status.round_trip = figures.round_trip;
                if peer.status != before {
                    self.peers.hub.set_direct(peer.status.clone());
                }
            }
        }
    }
}
