//! The daemon's observable state in its own terms: what subsystems hand the
//! hub. The hub turns these into the daemon API's types (`convert.rs`).

use crate::crypto::identity::ActorId;
use crate::store::QuarantineFill;

/// Presence as the live layer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceState {
    /// Not heard, or Valkey (which keeps presence) is unreachable.
    #[default]
    Unknown,
    Online,
    Away,
    Offline,
}

impl PresenceState {
    /// The number kirc.v1 and kirc.wire.v1 give the state, which is also how
    /// Valkey keeps it.
    pub fn code(self) -> i32 {
        match self {
            PresenceState::Unknown => 0,
            PresenceState::Online => 1,
            PresenceState::Away => 2,
            PresenceState::Offline => 3,
        }
    }

    pub fn from_code(code: i32) -> Self {
        match code {
            1 => PresenceState::Online,
            2 => PresenceState::Away,
            3 => PresenceState::Offline,
            _ => PresenceState::Unknown,
        }
    }
}

/// A contact's presence and typing, as last heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPresence {
    pub actor: ActorId,
    pub state: PresenceState,
    pub text: String,
    pub typing: bool,
}

impl PeerPresence {
    pub fn unknown(actor: ActorId) -> Self {
        PeerPresence {
            actor,
            state: PresenceState::Unknown,
            text: String::new(),
            typing: false,
        }
    }
}

/// This actor's own presence and why it is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnPresence {
    pub state: PresenceState,
    pub text: String,
    /// "explicit", "idle", "no client attached", "stopped", or empty.
    pub reason: &'static str,
}

/// One cluster's traffic figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTraffic {
    /// The cluster's bootstrap servers.
    pub cluster: String,
    pub budget_bytes_per_second: u64,
    /// Bytes produced in the last whole second.
    pub last_second_bytes: u64,
    pub total_bytes: u64,
    /// Sends that had to wait for the budget.
    pub paced: u64,
}

/// The inbox's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFigures {
    /// Rejected records by reason, in the reasons' order.
    pub rejected: Vec<(&'static str, u64)>,
    pub redelivered: u64,
    pub quarantine: QuarantineFill,
    pub log_lines_suppressed: u64,
}

/// Where the direct path to a contact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectState {
    Off,
    Connecting,
    Connected,
    Failed,
}

/// The direct path to one contact, as the peer manager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectStatus {
    pub actor: ActorId,
    pub state: DirectState,
    pub reason: String,
    /// The candidate type in use ("host", "relay", …), once connected.
    pub route: Option<&'static str>,
    pub round_trip: Option<std::time::Duration>,
    /// The current session's id, in hex.
    pub session: String,
}

impl DirectStatus {
    pub fn off(actor: ActorId) -> Self {
        DirectStatus {
            actor,
            state: DirectState::Off,
            reason: String::new(),
            route: None,
            round_trip: None,
            session: String::new(),
        }
    }
}

/// The own-status fields other subsystems keep current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFields {
    pub presence: Option<OwnPresence>,
    pub heartbeat_produced_unix_ms: i64,
    pub heartbeat_consumed_unix_ms: i64,
    pub traffic: Vec<ClusterTraffic>,
    /// Per contact, in the order first reported.
    pub direct: Vec<DirectStatus>,
}

/// How far a transfer has come, beside what is stored of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferProgress {
    /// Bytes verified by the recipient (the recipient's side), or sent
    /// (the sender's side).
    pub done_bytes: u64,
    pub bytes_per_second: u64,
    /// Moving, but no direct path to the contact is open.
    pub waiting: bool,
    /// Bytes sent or written since the daemon started, resends included.
    pub moved_bytes: u64,
}
