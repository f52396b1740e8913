//! The direct path: a WebRTC data channel with each accepted contact that
//! is online, negotiated over the `rpc-*` topics.
//!
//! One task (the peer manager) owns every connection. It follows the
//! contacts' presence (open one connection to each accepted contact shown
//! online or away, close it when the contact goes offline or stops being an
//! accepted contact; past the cap, a contact with chat takes the place of
//! the connection unused the longest, and one merely online waits),
//! takes the contacts' signalling from the inbox ([`signal::SignalHandler`]),
//! sends its own through the outbound path, and reacts to each
//! connection's events: candidates are trickled in batches, an open channel
//! is offered to the outbound path ([`Channels`]), a `disconnected`
//! connection is restarted (ICE restart, by the side that offered), a
//! `failed` one is replaced by a new session after a capped backoff.
//! Messages that arrive on a channel go to the inbox, which checks them
//! like any record.
//!
//! `link.rs` wraps the `webrtc` crate; `negotiation.rs` holds the rules
//! (glare, backoff, room under the cap) as pure functions.

mod channels;
pub mod link;
mod manager;
pub mod negotiation;
pub mod probe;
pub mod signal;
mod sockets;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::book::ContactBook;
use crate::config::RtcConfig;
use crate::hub::Hub;
use crate::live::Live;
use crate::transport::direct::{DirectRecord, FileRecord};
use crate::transport::outbound::Outbound;
pub use channels::Channels;
use signal::Signal;

/// What the peer manager needs.
#[derive(Debug)]
pub struct Peers {
    pub config: RtcConfig,
    pub book: Arc<ContactBook>,
    pub live: Arc<Live>,
    pub outbound: Arc<Outbound>,
    pub hub: Arc<Hub>,
    /// Where messages from the channels go: the inbox.
    pub inbound: mpsc::Sender<DirectRecord>,
    /// Where frames from the files channels go: the transfers.
    pub files: mpsc::Sender<FileRecord>,
}

#[derive(Debug)]
pub struct PeersHandle {
    pub channels: Arc<Channels>,
    task: JoinHandle<()>,
}

impl PeersHandle {
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the peer manager failed");
        }
    }
}

/// Starts the peer manager; it closes every connection when `cancel`
/// fires. Signalling arrives on `signals`.
pub fn spawn(
    peers: Peers,
    signals: mpsc::Receiver<Signal>,
    cancel: CancellationToken,
) -> PeersHandle {
    let channels = Arc::new(Channels::default());
    let manager = manager::Manager::new(peers, Arc::clone(&channels));
    let task = tokio::spawn(manager.run(signals, cancel));
    PeersHandle { channels, task }
}
