//! Replay protection for control records: the last record applied per sender
//! and stream ("mark"), and the verdict on each new one.
//!
//! A sender seals its control records of one stream under one lock and
//! produces them in that order to one partition (the Kafka key is the
//! conversation), and its delivery worker and our inbox keep that order. So a
//! record whose message id (a UUIDv7: its bytes sort by creation time) is not
//! above the mark can only be:
//!
//! - our own consumer reading again what it already applied (same partition,
//!   an offset not past the mark's): `Redelivered`;
//! - the sender's delivery worker sending the applied record again after a
//!   crash (same id, same bytes), or the copy of a record that came first
//!   over the direct path: `Redelivered`;
//! - the same id with other bytes (someone re-encoded a copy): `Replay`;
//! - an older record: `Stale`, whether a copy replayed by whoever holds the
//!   public credential or a late duplicate; either way applying it would move
//!   state backwards.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::PgPool;

use crate::crypto::identity::ActorId;
pub use crate::store::Mark;
use crate::store::{self, StoreError};

/// A stream of control records: the state they update (a sender's profile,
/// its receipts, presence, typing, the own heartbeat), named as stored. Each
/// control kind's handler says which stream it belongs to; records of one
/// stream from one sender are applied in order, streams are independent.
pub type Stream = &'static str;

/// The partition and offset of a record that came over the direct path
/// rather than from a Kafka inbox.
pub const DIRECT: i32 = -1;
pub const DIRECT_OFFSET: i64 = -1;

/// What to do with a control record, given the stream's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// Already applied: harmless, counted apart from attacks.
    Redelivered,
    /// Older than what is applied.
    Stale,
    /// The applied record's id with other bytes.
    Replay,
}

/// The verdict on `record` after `mark`.
pub fn judge(mark: Option<&Mark>, record: &Mark) -> Verdict {
    let Some(mark) = mark else {
        return Verdict::Apply;
    };
    if record.message_id > mark.message_id {
        return Verdict::Apply;
    }
    // Offsets of our own inbox are assigned by our broker: nobody can put a
    // record at an offset the consumer has already passed. A record that
    // came over the direct path has no offset, and this proves nothing.
    if record.partition >= 0 && record.partition == mark.partition && record.offset <= mark.offset {
        return Verdict::Redelivered;
    }
    if record.message_id == mark.message_id {
        if record.digest == mark.digest {
            Verdict::Redelivered
        } else {
            Verdict::Replay
        }
    } else {
        Verdict::Stale
    }
}

/// The marks of every sender and stream: kept in memory (the inbox asks for
/// each control record) and written through to PostgreSQL.
#[derive(Debug, Default)]
pub struct Marks {
    marks: Mutex<HashMap<(ActorId, String), Mark>>,
}

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ActorId, String), Mark>> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn load(&self, pool: &PgPool) -> Result<(), StoreError> {
        let loaded = store::control_marks(pool).await?;
        let mut marks = self.lock();
        marks.clear();
        marks.extend(
            loaded
                .into_iter()
                .map(|(sender, stream, mark)| ((sender, stream), mark)),
        );
        Ok(())
    }

    pub fn judge(&self, sender: ActorId, stream: Stream, record: &Mark) -> Verdict {
        judge(self.lock().get(&(sender, stream.to_owned())), record)
    }

    /// Records that `record` was applied: later records of the stream are
    /// judged against it. Stored before the record's offset is, so a crash in
    /// between only makes the record (idempotent) apply again.
    pub async fn advance(
        &self,
        pool: &PgPool,
        sender: ActorId,
        stream: Stream,
        record: &Mark,
    ) -> Result<(), StoreError> {
        store::save_control_mark(pool, sender, stream, record).await?;
        self.lock().insert((sender, stream.to_owned()), *record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u8) -> Uuid {
        // Byte order is creation order for UUIDv7; a leading byte stands for
        // the timestamp here.
        let mut bytes = [0u8; 16];
        bytes[0] = n;
        Uuid::from_bytes(bytes)
    }

    fn mark(message: u8, partition: i32, offset: i64, digest: u8) -> Mark {
        Mark {
            message_id: id(message),
            partition,
            offset,
            digest: [digest; 32],
        }
    }

    #[test]
    fn verdicts() {
        let applied = mark(10, 1, 100, 7);
        let cases = [
            (
                "first record of a stream",
                None,
                mark(1, 0, 0, 1),
                Verdict::Apply,
            ),
            (
                "newer record",
                Some(applied),
                mark(11, 1, 101, 2),
                Verdict::Apply,
            ),
            (
                "newer record on another partition",
                Some(applied),
                mark(11, 0, 5, 2),
                Verdict::Apply,
            ),
            (
                "our consumer reads the applied record again",
                Some(applied),
                mark(10, 1, 100, 7),
                Verdict::Redelivered,
            ),
            (
                "our consumer reads an earlier record again",
                Some(applied),
                mark(9, 1, 99, 3),
                Verdict::Redelivered,
            ),
            (
                "the sender sends the applied record again",
                Some(applied),
                mark(10, 1, 140, 7),
                Verdict::Redelivered,
            ),
            (
                "the applied id with other bytes",
                Some(applied),
                mark(10, 1, 140, 8),
                Verdict::Replay,
            ),
            (
                "an older record at a new offset",
                Some(applied),
                mark(9, 1, 140, 3),
                Verdict::Stale,
            ),
            (
                "the Kafka copy of a record applied from the direct path",
                Some(mark(10, DIRECT, DIRECT_OFFSET, 7)),
                mark(10, 1, 140, 7),
                Verdict::Redelivered,
            ),
            (
                "the direct copy of a record applied from Kafka",
                Some(applied),
                mark(10, DIRECT, DIRECT_OFFSET, 7),
                Verdict::Redelivered,
            ),
            (
                "an older record over the direct path after one from it",
                Some(mark(10, DIRECT, DIRECT_OFFSET, 7)),
                mark(9, DIRECT, DIRECT_OFFSET, 3),
                Verdict::Stale,
            ),
            (
                "the applied id with other bytes over the direct path",
                Some(mark(10, DIRECT, DIRECT_OFFSET, 7)),
                mark(10, DIRECT, DIRECT_OFFSET, 8),
                Verdict::Replay,
            ),
            (
                "an older record on the other partition",
                Some(applied),
                mark(9, 0, 1, 3),
                Verdict::Stale,
            ),
        ];
        for (name, mark, record, expected) in cases {
            assert_eq!(judge(mark.as_ref(), &record), expected, "{name}");
        }
    }
}
