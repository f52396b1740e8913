//! One WebRTC connection with its two data channels: the small interface the
//! peer manager uses (offer, answer, candidates, send, events, close), over
//! the `webrtc` crate. Nothing else in kircd names the crate but
//! `sockets.rs` (the runtime it runs on), so another implementation
//! (str0m) could replace it here.
//!
//! Settings that are not negotiable: mDNS off (it would open a multicast
//! socket per connection and announce the host name), certificate
//! fingerprint verification on (the fingerprint arrives in a signed,
//! sealed offer and is what binds the channel to the contact), a bounded
//! send buffer, and two ordered, reliable channels opened by the offerer:
//! one for chat and control, one for files, so that a message never waits
//! behind a file's bytes in a channel's buffer. The link reports itself
//! open once both are.
//!
//! The file is a little past the size the project aims for; most of it is
//! the one `Link` type and its handler, which share the channel slots. The
//! seam, when it grows, is the settings and figures (`LinkSettings`,
//! `figures`, `max_message`) against the connection's life.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
    StatsSelector,
};

use super::sockets::BufferedRuntime;
use crate::config::{IcePolicy, RtcConfig};
use crate::crypto::identity::ActorId;
use crate::transport::direct::{DirectRecord, FileRecord};

/// The data channels' labels.
const CHANNEL_LABEL: &str = "kirc";
const FILES_LABEL: &str = "kirc-files";

/// How many channels a link opens.
const CHANNELS: u8 = 2;

/// Bytes the channel may hold unsent; a send beyond it waits.
const SEND_BUFFER: usize = 1024 * 1024;

/// The largest message this end takes, advertised in its SDP; each side
/// sends at most the smaller of the two ends' (a peer that advertises the
/// crate's default gets 64 KiB). File frames fill it: the per-message cost
/// of the stack is what limits a transfer (measured on loopback: 16 KiB
/// frames 11.8 MB/s, 64 KiB 24.5 MB/s).
const MAX_MESSAGE: u32 = 256 * 1024;

/// ICE timeouts: `disconnected` after this long without an answer to its
/// checks, `failed` after the second, checks every third. The crate's
/// defaults (5 s / 25 s / 2 s) are kept; named here because the peer
/// manager's reactions (ICE restart, new session) are timed by them.
pub const ICE_DISCONNECTED: Duration = Duration::from_secs(5);
pub const ICE_FAILED: Duration = Duration::from_secs(25);
const ICE_KEEPALIVE: Duration = Duration::from_secs(2);

/// Connectivity checks are paced every 50 ms, the pacing RFC 8445 gives
/// (Ta) and browsers use, instead of the crate's 200 ms: on a fast route
/// the second round of checks (nomination) is what ICE waits for, so the
/// interval is most of its time to `connected`. Each pair still gets the
/// crate's 1.4 s before it counts as failed.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
const ICE_BINDING_REQUESTS: u16 = 28;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(String);

impl From<webrtc::error::Error> for LinkError {
    fn from(err: webrtc::error::Error) -> Self {
        LinkError(err.to_string())
    }
}

/// The connection's state, as the peer manager acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// ICE lost the route for a while; an ICE restart may bring it back.
    Disconnected,
    /// Gave up: the session is over.
    Failed,
    Closed,
}

/// What a connection reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// A local candidate to send to the contact; `None` when gathering is
    /// complete.
    Candidate(Option<RTCIceCandidateInit>),
    State(LinkState),
    /// The data channel opened: sends go through from now on.
    Open,
    Message(Bytes),
    ChannelClosed,
}

/// How the connection reaches the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Host,
    ServerReflexive,
    PeerReflexive,
    Relay,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Host => "host",
            Route::ServerReflexive => "server-reflexive",
            Route::PeerReflexive => "peer-reflexive",
            Route::Relay => "relay",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFigures {
    pub route: Option<Route>,
    pub round_trip: Option<Duration>,
}

/// What every connection is built with.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    ice_servers: Vec<RTCIceServer>,
    relay_only: bool,
    udp_bind: Vec<SocketAddr>,
}

impl LinkSettings {
    pub fn new(config: &RtcConfig) -> Self {
        let mut ice_servers = Vec::new();
        if !config.stun_urls.is_empty() {
            ice_servers.push(RTCIceServer {
                urls: config.stun_urls.clone(),
                ..RTCIceServer::default()
            });
        }
        if let Some(turn) = &config.turn {
            use secrecy::ExposeSecret;
            ice_servers.push(RTCIceServer {
                urls: vec![turn.url.clone()],
                username: turn.username.clone(),
                credential: turn.credential.expose_secret().to_owned(),
            });
        }
        LinkSettings {
            ice_servers,
            relay_only: config.ice_policy == IcePolicy::Relay,
            udp_bind: config.udp_bind.clone(),
        }
    }
}

/// Forwards the crate's callbacks as [`LinkEvent`]s. Callbacks run on the
/// connection's driver, so they never wait: the queue is unbounded, which
/// is safe because the manager drains it at once and a connection reports
/// few state changes and candidates; messages are bounded by the channel's
/// own flow control.
struct Events {
    events: Tagged,
    channels: Arc<Slots>,
}

/// A link's two channels, once created (the offerer) or announced (the
/// answerer), and how many of them are open.
#[derive(Default)]
struct Slots {
    chat: Mutex<Option<Arc<dyn DataChannel>>>,
    files: Mutex<Option<Arc<dyn DataChannel>>>,
    open: AtomicU8,
}

/// Which of a link's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelKind {
    Chat,
    Files,
}

impl Slots {
    fn slot(&self, kind: ChannelKind) -> std::sync::MutexGuard<'_, Option<Arc<dyn DataChannel>>> {
        match kind {
            ChannelKind::Chat => &self.chat,
            ChannelKind::Files => &self.files,
        }
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where a connection's events go, marked with the number the manager gave
/// the connection, so that one queue serves them all.
#[derive(Clone)]
pub struct Tagged {
    pub tag: u64,
    pub events: mpsc::UnboundedSender<(u64, LinkEvent)>,
    pub messages: Messages,
    /// Where the files channel's frames go, as frames of this contact;
    /// none: they are dropped.
    pub files: Option<(ActorId, mpsc::Sender<FileRecord>)>,
}

/// Where the channel's messages go.
#[derive(Clone)]
pub enum Messages {
    /// Onto the events queue, as [`LinkEvent::Message`].
    Events,
    /// Straight to the inbox, as records of the contact `from`. The manager
    /// has nothing to do with a message, and the hop through its queue was
    /// a tenth of the direct path's time.
    Inbox {
        from: ActorId,
        inbox: mpsc::Sender<DirectRecord>,
    },
}

impl Tagged {
    fn send(&self, event: LinkEvent) -> bool {
        self.events.send((self.tag, event)).is_ok()
    }

    /// Hands on a frame the files channel received; waits while the
    /// transfers are behind, which holds the contact's sending back
    /// through the channel's flow control. False once nobody reads.
    async fn deliver_file(&self, frame: Bytes) -> bool {
        match &self.files {
            Some((from, sink)) => sink
                .send(FileRecord {
                    from: *from,
                    bytes: frame,
                })
                .await
                .is_ok(),
            None => true,
        }
    }

    /// Hands on a message the channel received; false once nobody reads.
    fn deliver(&self, message: Bytes) -> bool {
        match &self.messages {
            Messages::Events => self.send(LinkEvent::Message(message)),
            Messages::Inbox { from, inbox } => {
                let record = DirectRecord {
                    from: *from,
                    bytes: message,
                    arrived: crate::backends::hops::now(),
                };
                match inbox.try_send(record) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // The inbox is behind: the Kafka copy will do.
                        tracing::debug!(contact = %from, "a direct record was dropped: the inbox is busy");
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(candidate) => {
                self.events.send(LinkEvent::Candidate(Some(candidate)));
            }
            Err(err) => tracing::debug!(error = %err, "a local candidate could not be encoded"),
        }
    }

    async fn on_ice_gathering_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceGatheringState,
    ) {
        if state == webrtc::peer_connection::RTCIceGatheringState::Complete {
            self.events.send(LinkEvent::Candidate(None));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::Connected => LinkState::Connected,
            RTCPeerConnectionState::Disconnected => LinkState::Disconnected,
            RTCPeerConnectionState::Failed => LinkState::Failed,
            RTCPeerConnectionState::Closed => LinkState::Closed,
            _ => LinkState::Connecting,
        };
        self.events.send(LinkEvent::State(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        // Only the answerer learns of the channels here; reading them must
        // not hold up the driver that calls us.
        let (events, slots) = (self.events.clone(), Arc::clone(&self.channels));
        tokio::spawn(async move {
            let kind = match channel.label().await.as_deref() {
                Ok(CHANNEL_LABEL) => ChannelKind::Chat,
                Ok(FILES_LABEL) => ChannelKind::Files,
                _ => {
                    tracing::debug!("a data channel with an unknown label was closed");
                    let _ = channel.close().await;
                    return;
                }
            };
            *slots.slot(kind) = Some(Arc::clone(&channel));
            read_channel(channel, kind, events, slots).await;
        });
    }
}

async fn read_channel(
    channel: Arc<dyn DataChannel>,
    kind: ChannelKind,
    events: Tagged,
    slots: Arc<Slots>,
) {
    while let Some(event) = channel.poll().await {
        let handed_on = match event {
            DataChannelEvent::OnOpen => {
                if slots.open.fetch_add(1, Ordering::AcqRel) + 1 == CHANNELS {
                    events.send(LinkEvent::Open)
                } else {
                    true
                }
            }
            DataChannelEvent::OnMessage(message) => match kind {
                ChannelKind::Chat => events.deliver(message.data.freeze()),
                ChannelKind::Files => events.deliver_file(message.data.freeze()).await,
            },
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if !handed_on {
            return;
        }
    }
    events.send(LinkEvent::ChannelClosed);
}

/// One connection to one contact.
pub struct Link {
    events: Tagged,
    connection: Arc<dyn PeerConnection>,
    channels: Arc<Slots>,
    /// Candidates that came before the remote description; the crate
    /// refuses them until then.
    early_candidates: tokio::sync::Mutex<Option<Vec<RTCIceCandidateInit>>>,
    /// Held by a file frame's send while it waits for buffer room. The
    /// crate wakes every waiting sender at once and the first to run wins;
    /// this lock queues them in arrival order instead, so transfers to one
    /// contact take turns frame by frame.
    file_turns: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// A new connection; its events go to `events`.
    pub async fn new(settings: &LinkSettings, events: Tagged) -> Result<Link, LinkError> {
        let channels = Arc::new(Slots::default());
        let loopback = settings.udp_bind.iter().any(|addr| addr.ip().is_loopback());
        let setting_engine = SettingEngineBuilder::new()
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE))
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(loopback)
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED),
                Some(ICE_FAILED),
                Some(ICE_KEEPALIVE),
            )
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_BINDING_REQUESTS))
            .build();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(settings.ice_servers.clone())
            .with_ice_transport_policy(if settings.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            })
            .build();
        let connection = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Events {
                events: events.clone(),
                channels: Arc::clone(&channels),
            }))
            .with_udp_addrs(settings.udp_bind.clone())
            .with_runtime(BufferedRuntime::new())
            .with_data_channel_send_buffer_limit(SEND_BUFFER)
            .build()
            .await?;
        Ok(Link {
            events,
            connection: Arc::new(connection),
            channels,
            early_candidates: tokio::sync::Mutex::new(Some(Vec::new())),
            file_turns: tokio::sync::Mutex::new(()),
        })
    }

    /// Opens the data channels and makes the offer (the SDP to send).
    pub async fn offer(&self) -> Result<String, LinkError> {
        for (label, kind) in [
            (CHANNEL_LABEL, ChannelKind::Chat),
            (FILES_LABEL, ChannelKind::Files),
        ] {
            let channel = self.connection.create_data_channel(label, None).await?;
            *self.channels.slot(kind) = Some(Arc::clone(&channel));
            tokio::spawn(read_channel(
                channel,
                kind,
                self.events.clone(),
                Arc::clone(&self.channels),
            ));
        }
        self.local_offer().await
    }

    /// A new offer with new ICE credentials, on the same connection.
    pub async fn restart_ice(&self) -> Result<String, LinkError> {
        self.connection.restart_ice().await?;
        self.local_offer().await
    }

    async fn local_offer(&self) -> Result<String, LinkError> {
        let offer = self.connection.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        self.connection.set_local_description(offer).await?;
        Ok(sdp)
    }

    /// Takes the contact's offer and makes the answer (the SDP to send).
    pub async fn answer(&self, offer_sdp: String) -> Result<String, LinkError> {
        self.connection
            .set_remote_description(RTCSessionDescription::offer(offer_sdp)?)
            .await?;
        self.flush_candidates().await;
        let answer = self.connection.create_answer(None).await?;
        let sdp = answer.sdp.clone();
        self.connection.set_local_description(answer).await?;
        Ok(sdp)
    }

    /// Takes the contact's answer to our offer.
    pub async fn accept_answer(&self, answer_sdp: String) -> Result<(), LinkError> {
        self.connection
            .set_remote_description(RTCSessionDescription::answer(answer_sdp)?)
            .await?;
        self.flush_candidates().await;
        Ok(())
    }

    /// A candidate of the contact's; kept until the remote description is
    /// set.
    pub async fn add_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), LinkError> {
        {
            let mut early = self.early_candidates.lock().await;
            if let Some(early) = early.as_mut() {
                early.push(candidate);
                return Ok(());
            }
        }
        self.connection.add_ice_candidate(candidate).await?;
        Ok(())
    }

    async fn flush_candidates(&self) {
        let early = self.early_candidates.lock().await.take();
        for candidate in early.unwrap_or_default() {
            if let Err(err) = self.connection.add_ice_candidate(candidate).await {
                tracing::debug!(error = %err, "a remote candidate was refused");
            }
        }
    }

    fn channel(&self, kind: ChannelKind) -> Result<Arc<dyn DataChannel>, LinkError> {
        self.channels
            .slot(kind)
            .clone()
            .ok_or_else(|| LinkError(String::from("the data channel is not open")))
    }

    /// Sends one message on the chat channel; waits while its send buffer
    /// is full.
    pub async fn send(&self, message: &[u8]) -> Result<(), LinkError> {
        let channel = self.channel(ChannelKind::Chat)?;
        channel.send(BytesMut::from(message)).await?;
        Ok(())
    }

    /// Sends one frame on the files channel; waits for its turn and while
    /// its send buffer is full.
    pub async fn send_file(&self, frame: Bytes) -> Result<(), LinkError> {
        let channel = self.channel(ChannelKind::Files)?;
        let _turn = self.file_turns.lock().await;
        channel.send(BytesMut::from(frame)).await?;
        Ok(())
    }

    /// The largest message both ends take, once the association is up.
    pub async fn max_message(&self) -> Option<usize> {
        let sctp = self.connection.sctp().await?;
        let bytes = sctp.max_message_size().await.ok()?;
        usize::try_from(bytes).ok()
    }

    /// The route in use and its round-trip time.
    pub async fn figures(&self) -> LinkFigures {
        let report = self
            .connection
            .get_stats(std::time::Instant::now(), StatsSelector::None)
            .await;
        let selected = report
            .transport()
            .map(|transport| transport.selected_candidate_pair_id.clone())
            .unwrap_or_default();
        let Some(pair) = report
            .candidate_pairs()
            .find(|pair| *pair.stats.id == selected)
            .or_else(|| report.candidate_pairs().find(|pair| pair.nominated))
        else {
            return LinkFigures {
                route: None,
                round_trip: None,
            };
        };
        let route = report.iter().find_map(|entry| match entry {
            // A local candidate's stats id is its candidate id, prefixed.
            webrtc::peer_connection::RTCStatsReportEntry::LocalCandidate(candidate)
                if candidate.stats.id.ends_with(&pair.local_candidate_id) =>
            {
                Some(match candidate.candidate_type {
                    RTCIceCandidateType::Srflx => Route::ServerReflexive,
                    RTCIceCandidateType::Prflx => Route::PeerReflexive,
                    RTCIceCandidateType::Relay => Route::Relay,
                    _ => Route::Host,
                })
            }
            _ => None,
        });
        let round_trip = (pair.current_round_trip_time.is_finite()
            && pair.current_round_trip_time > 0.0)
            .then(|| Duration::from_secs_f64(pair.current_round_trip_time));
        LinkFigures { route, round_trip }
    }

    pub async fn close(&self) {
        for kind in [ChannelKind::Chat, ChannelKind::Files] {
            let channel = self.channels.slot(kind).take();
            if let Some(channel) = channel {
                let _ = channel.close().await;
            }
        }
        if let Err(err) = self.connection.close().await {
            tracing::debug!(error = %err, "closing a direct connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> LinkSettings {
        LinkSettings {
            ice_servers: Vec::new(),
            relay_only: false,
            udp_bind: vec!["127.0.0.1:0".parse().unwrap()],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_links_on_loopback_open_a_channel_and_carry_messages() {
        let (sender, mut events) = mpsc::unbounded_channel();
        let tagged = |tag| Tagged {
            tag,
            events: sender.clone(),
            messages: Messages::Events,
            files: None,
        };
        let offerer = Link::new(&loopback(), tagged(1)).await.unwrap();
        let answerer = Link::new(&loopback(), tagged(2)).await.unwrap();
        let offer = offerer.offer().await.unwrap();
        assert!(
            offer.contains("a=fingerprint:"),
            "the offer carries the DTLS fingerprint"
        );
        let answer = answerer.answer(offer).await.unwrap();
        offerer.accept_answer(answer).await.unwrap();

        let mut open = [false, false];
        let mut received = None;
        let exchange = async {
            while received.is_none() {
                let (tag, event) = events.recv().await.unwrap();
                let (this, other) = if tag == 1 {
                    (&offerer, &answerer)
                } else {
                    (&answerer, &offerer)
                };
                match event {
                    LinkEvent::Candidate(Some(candidate)) => {
                        other.add_candidate(candidate).await.unwrap();
                    }
                    LinkEvent::Open => {
                        open[usize::from(tag == 2)] = true;
                        if tag == 1 {
                            this.send(b"hello over the direct path").await.unwrap();
                        }
                    }
                    LinkEvent::Message(bytes) => received = Some((tag, bytes)),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("the channel opens and carries a message");
        let (tag, bytes) = received.unwrap();
        assert_eq!(tag, 2);
        assert_eq!(&bytes[..], b"hello over the direct path");
        assert!(open[0]);
        let figures = offerer.figures().await;
        assert_eq!(figures.route, Some(Route::Host));
        offerer.close().await;
        answerer.close().await;
    }
}
