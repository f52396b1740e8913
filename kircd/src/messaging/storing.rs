//! The sent messages whose row is being written while their record is
//! produced. `SendMessage` stores a new message and produces its record to
//! data-out side by side, so the delivery worker may hold the record before
//! the write is over; it hands the record on only once the message is known
//! to be stored. The record handed over by the send path carries the
//! write's outcome itself; a record the worker fetched back from data-out
//! asks here first, and the store only when no write is in progress. An
//! entry leaves only after its outcome is known, so a look-up made after it
//! left sees the write's result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, Default)]
pub(super) struct Storing {
    /// The outcome of each write in progress: `Some(stored)` once over.
    writing: Mutex<HashMap<Uuid, watch::Receiver<Option<bool>>>>,
}

/// One message's write in progress; [`Writing::finish`] tells its outcome,
/// and dropping it unfinished (the call cut short) leaves the answer to the
/// store.
#[derive(Debug)]
pub(super) struct Writing {
    storing: Arc<Storing>,
    id: Uuid,
    outcome: watch::Sender<Option<bool>>,
}

impl Storing {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Receiver<Option<bool>>>> {
        // Entries by id: what a panic left behind is still entries by id.
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers the write of `id` until the returned [`Writing`] ends.
    pub fn begin(self: &Arc<Self>, id: Uuid) -> Writing {
        let (outcome, watch) = watch::channel(None);
        self.lock().insert(id, watch);
        Writing {
            storing: Arc::clone(self),
            id,
            outcome,
        }
    }

    /// The outcome of the write of `id`, if one is in progress.
    pub fn outcome_of(&self, id: Uuid) -> Option<watch::Receiver<Option<bool>>> {
        self.lock().get(&id).cloned()
    }
}

impl Writing {
    /// Where the outcome will be told.
    pub fn outcome(&self) -> watch::Receiver<Option<bool>> {
        self.outcome.subscribe()
    }

    /// The write is over: `stored` tells whether the message is stored.
    pub fn finish(self, stored: bool) {
        // Before the entry leaves (in drop): whoever holds it learns the
        // outcome, and whoever comes later asks the store, which has it.
        self.outcome.send_replace(Some(stored));
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.storing.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_in_progress_is_waited_for_and_leaves_once_told() {
        let storing = Arc::new(Storing::default());
        let id = Uuid::now_v7();
        let writing = storing.begin(id);
        let mut handed = writing.outcome();
        let mut fetched = storing.outcome_of(id).expect("in progress");
        assert_eq!(*handed.borrow(), None);
        writing.finish(true);
        assert_eq!(*handed.wait_for(Option::is_some).await.unwrap(), Some(true));
        assert_eq!(
            *fetched.wait_for(Option::is_some).await.unwrap(),
            Some(true)
        );
        assert!(storing.outcome_of(id).is_none(), "the store has it now");
    }

    #[tokio::test]
    async fn a_failed_write_says_so_and_a_dropped_one_says_nothing() {
        let storing = Arc::new(Storing::default());
        let (failed, cut_short) = (Uuid::now_v7(), Uuid::now_v7());
        let writing = storing.begin(failed);
        let mut outcome = writing.outcome();
        writing.finish(false);
        assert_eq!(
            *outcome.wait_for(Option::is_some).await.unwrap(),
            Some(false)
        );

        let writing = storing.begin(cut_short);
        let mut outcome = writing.outcome();
        drop(writing);
        assert!(
            outcome.wait_for(Option::is_some).await.is_err(),
            "closed without an outcome: the store is asked"
        );
        assert!(storing.outcome_of(cut_short).is_none());
    }
}
