//! Everything the channels send, in one queue, in order: a member's key
//! shares before the posts they open, an owner's steps in their order. Each
//! record is sealed when it is sent (so records to one contact leave in the
//! order of their ids, which the contact's replay check requires) and
//! retried until its outbox takes it; what follows waits.

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backends::supervise::Backoff;
use crate::book::ContactBook;
use crate::crypto::identity::ActorId;
use crate::hub::Hub;
use crate::store::{self, MessageState};
use crate::transport::outbound::Outbound;

/// What is recorded once a record is in the own outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// An own post left: QUEUED.
    PostQueued {
        id: Uuid,
        channel: Uuid,
    },
    /// The last recipient's copy of an owner's step left.
    FannedOut {
        channel: Uuid,
        seq: u64,
    },
}

#[derive(Debug)]
pub struct Outgoing {
    pub to: ActorId,
    pub kind: wire::Kind,
    pub payload: Vec<u8>,
    pub then: Then,
    /// Told when the record is in the outbox (or skipped for good).
    pub done: Option<oneshot::Sender<()>>,
}

/// The queue's sending end.
#[derive(Debug, Clone)]
pub struct Queue(mpsc::UnboundedSender<Outgoing>);

impl Queue {
    pub fn push(&self, outgoing: Outgoing) {
        // The sender task ends only at shutdown, after the engine.
        let _ = self.0.send(outgoing);
    }

    /// Queues `records` to `to`s; the receiver resolves once the last is in
    /// the outbox.
    pub fn push_all(&self, records: Vec<Outgoing>) -> oneshot::Receiver<()> {
        let (done, flushed) = oneshot::channel();
        let last = records.len().checked_sub(1);
        let mut done = Some(done);
        for (index, mut record) in records.into_iter().enumerate() {
            if Some(index) == last {
                record.done = done.take();
            }
            self.push(record);
        }
        // Nothing queued: flushed at once.
        if let Some(done) = done {
            let _ = done.send(());
        }
        flushed
    }
}

pub struct Sender {
    pub book: Arc<ContactBook>,
    pub outbound: Arc<Outbound>,
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

pub fn queue() -> (Queue, mpsc::UnboundedReceiver<Outgoing>) {
    let (send, receive) = mpsc::unbounded_channel();
    (Queue(send), receive)
}

impl Sender {
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<Outgoing>, stop: CancellationToken) {
        loop {
            let outgoing = tokio::select! {
                () = stop.cancelled() => return,
                next = queue.recv() => match next {
                    Some(outgoing) => outgoing,
                    None => return,
                },
            };
            if !self.send(&outgoing, &stop).await {
                return;
            }
            self.then(outgoing.then, &stop).await;
            if let Some(done) = outgoing.done {
                let _ = done.send(());
            }
        }
    }

    /// Sends one record, retrying; false if stopped first.
    async fn send(&self, outgoing: &Outgoing, stop: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            let Some(contact) = self.book.get(&outgoing.to) else {
                tracing::warn!(to = %outgoing.to, "a channel record for someone no longer a contact is dropped");
                return true;
            };
            match self
                .outbound
                .send_control(&contact, outgoing.kind, &outgoing.payload)
                .await
            {
                Ok(()) => return true,
                Err(err) => {
                    tracing::warn!(error = %err, to = %contact.display_name, "cannot queue a channel record; retrying");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn then(&self, then: Then, stop: &CancellationToken) {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            let result = match then {
                Then::Nothing => return,
                Then::PostQueued { id, channel } => {
                    store::advance_messages(&self.pool, &[id], MessageState::Queued, true)
                        .await
                        .map(|moved| {
                            if !moved.is_empty() {
                                self.hub
                                    .message_state_changed(id, channel, MessageState::Queued);
                            }
                        })
                }
                Then::FannedOut { channel, seq } => {
                    store::step_fanned_out(&self.pool, channel, seq).await
                }
            };
            match result {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record a channel record sent; retrying")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}
