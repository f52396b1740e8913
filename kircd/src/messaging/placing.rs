//! The sent messages whose place is still being written. A received range
//! names only its two ends; the messages between them are found by the
//! places of the copies the delivery worker handed on
//! (`store::received_range`), and a read range by their state past
//! PENDING. The delivery worker writes a copy's place beside handing it on,
//! and `SendMessage` writes the QUEUED state behind its answer, so without
//! this a contact's receipt could be applied while a message it covers has
//! no place or state yet, and that message would never be marked: its
//! receipt is not sent twice. A message is registered before its record is
//! produced (so before any contact can hold it) and again while the
//! delivery worker hands on a copy, and a range waits for every message
//! registered before it arrived.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Debug, Default)]
pub(super) struct Placing {
    /// How many registrations each message has: the call's and the
    /// delivery worker's may overlap.
    writing: Mutex<HashMap<Uuid, usize>>,
    written: Notify,
}

/// One message's registration; dropping it (the write done or given up,
/// or the call cancelled) ends it.
#[derive(Debug)]
pub(super) struct Placement {
    placing: Arc<Placing>,
    id: Uuid,
}

impl Drop for Placement {
    fn drop(&mut self) {
        let mut writing = self.placing.lock();
        if let Some(count) = writing.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                writing.remove(&self.id);
            }
        }
        drop(writing);
        self.placing.written.notify_waiters();
    }
}

impl Placing {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, usize>> {
        // Counts by id: what a panic left behind is still counts by id.
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `id` until the returned placement is dropped.
    pub fn begin(self: &Arc<Self>, id: Uuid) -> Placement {
        *self.lock().entry(id).or_default() += 1;
        Placement {
            placing: Arc::clone(self),
            id,
        }
    }

    /// Waits until every message registered now has its place written
    /// (those registered later are not waited for: no receipt that has
    /// arrived can cover them).
    pub async fn settled(&self) {
        let mut waiting: HashSet<Uuid> = self.lock().keys().copied().collect();
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            // Registered before the check, so an end between the check and
            // the wait is not missed.
            written.as_mut().enable();
            {
                let writing = self.lock();
                waiting.retain(|id| writing.contains_key(id));
            }
            if waiting.is_empty() {
                return;
            }
            written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_range_waits_for_the_places_begun_before_it_and_no_later_ones() {
        let placing = Arc::new(Placing::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = placing.begin(a);
        let second = placing.begin(b);
        let settled = placing.settled();
        tokio::pin!(settled);
        assert!(settled.as_mut().now_or_never().is_none());
        drop(first);
        assert!(settled.as_mut().now_or_never().is_none());
        // A message produced after the receipt arrived is not waited for.
        let later = placing.begin(Uuid::now_v7());
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .expect("settled once both earlier places are written");
        drop(later);
        // Nothing registered: nothing to wait for.
        assert!(placing.settled().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_message_registered_twice_is_waited_for_until_both_end() {
        let placing = Arc::new(Placing::default());
        let id = Uuid::now_v7();
        let by_the_call = placing.begin(id);
        let by_the_delivery = placing.begin(id);
        drop(by_the_call);
        let settled = placing.settled();
        tokio::pin!(settled);
        assert!(settled.as_mut().now_or_never().is_none());
        drop(by_the_delivery);
        tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .expect("settled once the second registration ends");
    }
}
