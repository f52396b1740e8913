//! Loading the daemon's state from PostgreSQL at start: the own profile
//! row, the contact book, the control marks, the quarantine's fill and the
//! conversations; then the state is marked loaded (commands and workers
//! wait for that), and what a crash left half-done is finished: a changed
//! profile told to contacts, messages stored but not yet in the outbox
//! produced.

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::backends::supervise::Backoff;
use crate::book::ContactBook;
use crate::config::HealthConfig;
use crate::contacts::Contacts;
use crate::hub::Hub;
use crate::messaging::Messaging;
use crate::store;
use crate::transport::marks::Marks;
use crate::transport::rejections::Rejections;

/// What loading fills.
#[derive(Debug, Clone)]
pub struct Loader {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
    pub marks: Arc<Marks>,
    pub rejections: Arc<Rejections>,
    pub contacts: Arc<Contacts>,
    pub messaging: Arc<Messaging>,
    pub health: HealthConfig,
}

impl Loader {
    /// Loads once the database answers, retrying with backoff until loaded
    /// or cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.health.retry_initial, self.health.retry_max);
        loop {
            match self.load().await {
                Ok(()) => break,
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "kircd is waiting for the database to load its state"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        tracing::info!(actor = %self.book.me(), "state loaded");
    }

    async fn load(&self) -> anyhow::Result<()> {
        let identity = self.book.identity();
        let (me, name) = self.contacts.me();
        store::ensure_profile(
            &self.pool,
            me,
            name,
            identity.signing_key().as_bytes(),
            identity.box_key().as_bytes(),
        )
        .await?;
        let contacts = self.book.load(&self.pool).await?;
        self.marks.load(&self.pool).await?;
        self.rejections
            .set_quarantine(store::quarantine_fill(&self.pool).await?);
        self.hub.set_inbox(self.rejections.figures());
        self.messaging.load_awaited().await?;
        let conversations = store::conversations(&self.pool).await?;
        self.hub.load_view(&contacts, &conversations);
        self.book.set_loaded();
        self.contacts
            .publish_profile_if_changed()
            .await
            .context("telling contacts about the changed profile")?;
        self.messaging
            .resend_pending()
            .await
            .context("producing messages left pending")?;
        Ok(())
    }
}
