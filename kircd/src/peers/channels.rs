//! The open data channels, shared between the peer manager (which opens
//! and closes them) and the outbound path (which sends on them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::link::Link;
use crate::crypto::identity::ActorId;
use crate::transport::direct::DirectPath;

/// A send that the channel does not take within this long is given up (the
/// Kafka copy carries the message).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Open data channels, shared with the outbound path.
#[derive(Debug, Default)]
pub struct Channels {
    open: Mutex<HashMap<ActorId, Arc<Link>>>,
    /// When each channel was last used to send, for the eviction order.
    used: Mutex<HashMap<ActorId, std::time::Instant>>,
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

    pub(super) fn insert(&self, contact: ActorId, link: Arc<Link>) {
        self.lock_open().insert(contact, link);
        self.lock_used().insert(contact, std::time::Instant::now());
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
}

impl DirectPath for Channels {
    fn send<'a>(&'a self, contact: ActorId, envelope: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            let Some(link) = self.lock_open().get(&contact).cloned() else {
                return false;
            };
            self.lock_used().insert(contact, std::time::Instant::now());
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
}
