//! Everything the screen shows, and nothing else.

use jiff::tz::TimeZone;
use kirc_proto::DaemonView;

/// The link to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Trying to reach the daemon; `attempt` counts from 1 since the last
    /// success.
    Connecting { attempt: u32 },
    /// Subscribed and receiving events.
    Connected,
    /// Lost or never reached; retrying after `retry_in_ms`.
    Disconnected {
        error: String,
        since_unix_ms: i64,
        attempt: u32,
        retry_in_ms: u64,
    },
}

#[derive(Debug, Clone)]
pub struct State {
    pub socket: String,
    pub link: Link,
    /// The daemon's state as of the last event; kept while disconnected so
    /// that the screen still shows what was last known.
    pub view: DaemonView,
    /// The sequence number of the last event applied.
    pub last_seq: u64,
    /// Why the daemon last said it was stopping, if it did.
    pub daemon_stopping: Option<String>,
    /// The time zone times are shown in.
    pub time_zone: TimeZone,
    pub quit: bool,
}

impl State {
    pub fn new(socket: String, time_zone: TimeZone) -> Self {
        State {
            socket,
            link: Link::Connecting { attempt: 1 },
            view: DaemonView::default(),
            last_seq: 0,
            daemon_stopping: None,
            time_zone,
            quit: false,
        }
    }
}
