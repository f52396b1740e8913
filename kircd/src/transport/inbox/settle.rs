//! What becomes of the records a batch refused: counted, logged (a few
//! lines per reason, then summaries) and quarantined within bounds.

use std::time::Instant;

use super::{Arrival, Inbox};
use crate::crypto::envelope::Rejection;
use crate::store::{self, Quarantined, StoreError};
use crate::transport::inbox::check::Rejected;
use crate::transport::rejections::RejectionLog;

impl Inbox {
    /// Counts, logs and quarantines the batch's rejected records.
    pub(super) async fn settle(
        &self,
        rejected: &[(&Arrival<'_>, Rejected)],
        log: &mut RejectionLog,
    ) -> Result<(), StoreError> {
        if rejected.is_empty() {
            return Ok(());
        }
        self.write_summaries(log);
        let now = Instant::now();
        let mut kept = Vec::new();
        for (record, refused) in rejected {
            // A flood is logged by the rate limit, once per sender and batch.
            if refused.rejection != Rejection::RateLimited && log.admit(refused.rejection, now) {
                tracing::warn!(
                    reason = refused.rejection.reason(),
                    topic = record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    sender = refused
                        .sender
                        .map(|sender| sender.to_string())
                        .unwrap_or_default(),
                    message_id = refused
                        .message_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    "rejected an inbound record"
                );
            }
            // A replay is a copy of something applied and a flood many
            // records of one sender: nothing worth keeping.
            if !matches!(
                refused.rejection,
                Rejection::Replay | Rejection::RateLimited
            ) {
                kept.push(Quarantined {
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    reason: refused.rejection.reason(),
                    sender: refused.sender,
                    message_id: refused.message_id,
                    bytes: record.bytes,
                });
            }
        }
        if !kept.is_empty() {
            let fill = store::quarantine(
                &self.pool,
                &kept,
                self.limits.quarantine,
                self.rejections.quarantine(),
            )
            .await?;
            self.rejections.set_quarantine(fill);
        }
        // Counted once quarantined: the other lane's loop may publish the
        // counters at any moment, and a count must not say more than the
        // quarantine holds (nor count twice a batch whose quarantining
        // failed and is read again).
        for (_, refused) in rejected {
            self.rejections.add(refused.rejection);
        }
        Ok(())
    }
}
