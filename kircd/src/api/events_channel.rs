//! The events channel: every event of the daemon, published on Valkey as a
//! line of JSON (`<prefix>events`) for other tools (a status bar, a
//! notifier). Like the gRPC stream, it is a view of the hub's event log, so
//! it lives at the API's edge.

use std::sync::Arc;

use kirc_proto::v1::{self as pb, BackendState, event::Kind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backends::supervise::backend_name;
use crate::hub::Hub;
use crate::live::keys::Keys;

/// Publishes every event until `cancel`.
pub fn spawn(hub: Arc<Hub>, keys: Keys, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(publish_events(hub, keys, cancel))
}

/// Events published on the events channel in one Valkey round trip at most.
const PUBLISH_BATCH_MAX: usize = 512;

/// Publishes every event on the events channel as a line of JSON, for other
/// tools (a status bar, a second kircd of the same person). Events that are
/// already waiting go out together in one pipeline, with the unread total
/// taken once for them: an inbox batch of 1,000 messages costs two round
/// trips, not 1,000 (one per event made the channel the ingest's bottleneck).
async fn publish_events(hub: Arc<Hub>, keys: Keys, cancel: CancellationToken) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let channel = keys.events_channel();
    let mut events = hub.subscribe(0, 0).live;
    let mut stopping = false;
    while !stopping {
        // Once stopped, what is still waiting (the ShuttingDown event) goes
        // out before the task ends.
        let mut batch = tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(event) => vec![event],
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => return,
            },
            () = cancel.cancelled() => {
                stopping = true;
                Vec::new()
            }
        };
        while batch.len() < PUBLISH_BATCH_MAX {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let unread: u64 = hub
            .conversations()
            .iter()
            .map(|conversation| conversation.unread)
            .sum();
        let lines: Vec<String> = batch
            .iter()
            .map(|event| event_json(event, unread))
            .collect();
        // Valkey away: the events are not kept for tools (they resubscribe).
        if keys.publish_all(&channel, &lines).await.is_err() {
            tracing::trace!(events = lines.len(), "events not published: Valkey is away");
        }
    }
}

/// One event as the events channel carries it.
pub fn event_json(event: &pb::Event, unread: u64) -> String {
    let (kind, detail) = match &event.kind {
        Some(Kind::Snapshot(_)) => ("snapshot", serde_json::json!({})),
        Some(Kind::BackendChanged(backend)) => (
            "backend_changed",
            serde_json::json!({
                "backend": backend_name(backend.backend()),
                "up": backend.state() == BackendState::Up,
                "error": backend.last_error,
            }),
        ),
        Some(Kind::TopicsChanged(_)) => ("topics_changed", serde_json::json!({})),
        Some(Kind::ShuttingDown(stopping)) => (
            "shutting_down",
            serde_json::json!({ "reason": stopping.reason }),
        ),
        Some(Kind::MessageAdded(message)) => (
            "message_added",
            serde_json::json!({
                "conversation": message.conversation_id,
                "message": message.id,
                "sender": message.sender,
                "outgoing": message.outgoing,
            }),
        ),
        Some(Kind::ConversationMuted(muted)) => (
            "conversation_muted",
            serde_json::json!({ "conversation": muted.conversation_id, "muted": muted.muted }),
        ),
        Some(Kind::MessageUpdated(message)) => (
            "message_updated",
            serde_json::json!({
                "conversation": message.conversation_id,
                "message": message.id,
                "edited": message.edited,
                "deleted": message.deleted,
            }),
        ),
        Some(Kind::MessageStateChanged(changed)) => (
            "message_state_changed",
            serde_json::json!({
                "conversation": changed.conversation_id,
                "message": changed.message_id,
                "state": changed.state().as_str_name(),
            }),
        ),
        Some(Kind::ChannelChanged(changed)) => (
            "channel_changed",
            serde_json::json!({
                "conversation": changed.conversation_id,
                "name": changed.channel.as_ref().map(|channel| channel.name.as_str()),
            }),
        ),
        Some(Kind::ContactChanged(contact)) => (
            "contact_changed",
            serde_json::json!({ "contact": contact.actor_id, "name": contact.display_name, "state": contact.state().as_str_name() }),
        ),
        Some(Kind::ReadMarkerMoved(moved)) => (
            "read_marker_moved",
            serde_json::json!({ "conversation": moved.conversation_id, "unread_in_conversation": moved.unread }),
        ),
        Some(Kind::RejectionsChanged(_)) => ("rejections_changed", serde_json::json!({})),
        Some(Kind::PeerPresenceChanged(presence)) => (
            "presence_changed",
            serde_json::json!({
                "contact": presence.actor_id,
                "state": presence.state().as_str_name(),
                "text": presence.text,
                "typing": presence.typing,
            }),
        ),
        Some(Kind::StatusChanged(_)) => ("status_changed", serde_json::json!({})),
        Some(Kind::TransferChanged(transfer)) => (
            "transfer_changed",
            serde_json::json!({
                "transfer": transfer.transfer_id,
                "contact": transfer.contact_id,
                "outgoing": transfer.outgoing,
                "state": transfer.state().as_str_name(),
                "done_bytes": transfer.done_bytes,
                "total_bytes": transfer.total_bytes,
            }),
        ),
        None => ("unknown", serde_json::json!({})),
    };
    serde_json::json!({
        "seq": event.seq,
        "at": event.at_unix_ms,
        "kind": kind,
        "unread": unread,
        "detail": detail,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_line_with_the_unread_total() {
        let event = pb::Event {
            seq: 7,
            at_unix_ms: 1,
            kind: Some(Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
                conversation_id: "c".into(),
                last_read_seq: 3,
                unread: 0,
            })),
        };
        let line = event_json(&event, 4);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["unread"], 4);
        assert_eq!(parsed["kind"], "read_marker_moved");
        assert!(!line.contains('\n'));
    }
}
