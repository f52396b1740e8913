//! The open data channels, shared between the peer manager (which opens
//! and closes them) and the outbound path (which sends on them), and when
//! chat with each contact last happened, which decides who gets a place
//! under `rtc.max_peers`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::link::Link;
use crate::crypto::identity::ActorId;
use crate::transport::direct::{DirectPath, FileChannels, FileSendError};

/// A send that the channel does not take within this long is given up (the
/// Kafka copy carries the message).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Open data channels, shared with the outbound path.
#[derive(Debug, Default)]
pub struct Channels {
    open: Mutex<HashMap<ActorId, Arc<Link>>>,
    /// When chat with each contact last happened (sent or received, over
    /// either path), for the eviction order.
    used: Mutex<HashMap<ActorId, std::time::Instant>>,
    /// Contacts with chat since the manager last looked and no channel open.
    touched: Mutex<HashSet<ActorId>>,
    touched_notify: Notify,
    /// Bumped each time a channel opens.
    opened: tokio::sync::watch::Sender<u64>,
}

impl Channels {
    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Arc<Link>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_used(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, std::time::Instant>> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_touched(&self) -> std::sync::MutexGuard<'_, HashSet<ActorId>> {
        self.touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn insert(&self, contact: ActorId, link: Arc<Link>) {
        self.lock_open().insert(contact, link);
        self.opened.send_modify(|opened| *opened += 1);
    }

    pub(super) fn remove(&self, contact: ActorId) {
        self.lock_open().remove(&contact);
    }

    pub fn is_open(&self, contact: ActorId) -> bool {
        self.lock_open().contains_key(&contact)
    }

    pub(super) fn last_used(&self, contact: ActorId) -> Option<std::time::Instant> {
        self.lock_used().get(&contact).copied()
    }

    /// Resolves once chat happened with a contact that has no channel.
    pub(super) async fn touched(&self) {
        self.touched_notify.notified().await;
    }

    /// The contacts with chat and no channel since the last call.
    pub(super) fn take_touched(&self) -> HashSet<ActorId> {
        std::mem::take(&mut *self.lock_touched())
    }
}

impl DirectPath for Channels {
    fn send<'a>(&'a self, contact: ActorId, envelope: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            let Some(link) = self.lock_open().get(&contact).cloned() else {
                return false;
            };
            match tokio::time::timeout(SEND_TIMEOUT, link.send(envelope)).await {
                Ok(Ok(())) => true,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "a send on the direct path failed");
                    false
                }
                Err(_) => false,
            }
        }
        .boxed()
    }

    fn touch(&self, contact: ActorId) {
        self.lock_used().insert(contact, std::time::Instant::now());
        if !self.is_open(contact) {
            self.lock_touched().insert(contact);
            self.touched_notify.notify_one();
        }
    }
}

impl FileChannels for Channels {
    fn send_file<'a>(
        &'a self,
        contact: ActorId,
        frame: Bytes,
    ) -> BoxFuture<'a, Result<(), FileSendError>> {
        async move {
            let link = self
                .lock_open()
                .get(&contact)
                .cloned()
                .ok_or(FileSendError::NotOpen)?;
            link.send_file(frame)
                .await
                .map_err(|err| FileSendError::Closed(err.to_string()))
        }
        .boxed()
    }

    fn is_open(&self, contact: ActorId) -> bool {
        Channels::is_open(self, contact)
    }

    fn max_message<'a>(&'a self, contact: ActorId) -> BoxFuture<'a, Option<usize>> {
        async move {
            let link = self.lock_open().get(&contact).cloned()?;
            link.max_message().await
        }
        .boxed()
    }

    fn opened(&self) -> tokio::sync::watch::Receiver<u64> {
        self.opened.subscribe()
    }

    fn touch(&self, contact: ActorId) {
        DirectPath::touch(self, contact);
    }
}
