//! Records from contacts' data channels. Their chat is stored by a task of
//! its own, beside the Kafka loop: otherwise a message that came the fast
//! way waits behind whatever Kafka batch is in progress (typically the
//! previous message's Kafka copy and its receipt), which is most of the
//! direct path's time. Storing chat is idempotent and safe from two tasks
//! at once (an id is stored once, whichever comes first). Control records
//! go on to the Kafka loop, the one place that applies each sender's
//! streams in order against their marks.

use std::sync::Arc;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BATCH_MAX, Inbox};
use crate::transport::direct::DirectRecord;
use crate::transport::rejections::RejectionLog;

/// Control records from the channels waiting for the Kafka loop; past
/// this, more are dropped (their Kafka copies, or the next heartbeat, do).
pub(super) const CONTROLS_WAITING: usize = 1024;

/// Stores the channels' chat and passes their control records to
/// `controls`, until cancelled or the channels' sender is gone.
pub(super) async fn run(
    inbox: Arc<Inbox>,
    mut records: mpsc::Receiver<DirectRecord>,
    controls: mpsc::Sender<DirectRecord>,
    cancel: CancellationToken,
) {
    let mut log = RejectionLog::new(
        inbox.limits.rejection_log_burst,
        inbox.limits.rejection_log_interval,
    );
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            record = records.recv() => match record {
                Some(record) => record,
                None => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let (chats, others): (Vec<DirectRecord>, Vec<DirectRecord>) =
            batch.into_iter().partition(|record| is_chat(&record.bytes));
        for record in others {
            if controls.try_send(record).is_err() {
                tracing::debug!(
                    "a control record from a data channel was dropped: the inbox is busy"
                );
            }
        }
        if !chats.is_empty()
            && inbox
                .process_direct(&chats, &mut log, &cancel)
                .await
                .is_err()
        {
            break;
        }
    }
    inbox.write_summaries(&mut log);
}

/// Whether the envelope says it carries chat (unchecked: the check that
/// follows refuses a record that lies, in whichever task it lands). Bytes
/// that do not decode as an envelope go to the Kafka loop, which refuses
/// them.
fn is_chat(bytes: &[u8]) -> bool {
    wire::Envelope::decode(bytes).is_ok_and(|envelope| {
        wire::Kind::try_from(envelope.kind).is_ok_and(crate::transport::carries_chat)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_envelope_of_the_chat_kind_is_chat() {
        let envelope = |kind: wire::Kind| {
            wire::Envelope {
                version: 1,
                kind: kind as i32,
                ..wire::Envelope::default()
            }
            .encode_to_vec()
        };
        assert!(is_chat(&envelope(wire::Kind::Chat)));
        assert!(!is_chat(&envelope(wire::Kind::Presence)));
        assert!(!is_chat(&envelope(wire::Kind::Signal)));
        assert!(!is_chat(b"\xff\xff not an envelope"));
        // Chat is the wire's kind 0, protobuf's default: a record without a
        // kind reads as chat, and the chat task's check refuses it (no
        // version, no signature) like any other.
        assert!(is_chat(b""));
    }
}
