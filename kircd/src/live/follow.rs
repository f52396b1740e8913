//! Following Valkey: its expiry events (a contact's presence or typing key
//! ran out), and its coming and going (contacts UNKNOWN while it is away,
//! reloaded from it when it returns).

use std::sync::Arc;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Live;
use crate::backends::supervise::Backoff;
use crate::book::ContactBook;
use crate::config::HealthConfig;
use crate::crypto::identity::ActorId;

/// Follows Valkey until `cancel`, once the state is loaded.
pub fn spawn(
    live: Arc<Live>,
    book: Arc<ContactBook>,
    client: redis::Client,
    health: HealthConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = book.wait_loaded() => {}
        }
        follow(&live, &book, &client, &health, &cancel).await;
    })
}

async fn follow(
    live: &Live,
    book: &ContactBook,
    client: &redis::Client,
    health: &HealthConfig,
    cancel: &CancellationToken,
) {
    let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(live.keys.expiry_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            () = cancel.cancelled() => return,
            pubsub = tokio::time::timeout(health.probe_timeout, subscribed) => pubsub,
        };
        match pubsub {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                live.note_valkey(true);
                let contacts: Vec<ActorId> = book
                    .accepted()
                    .iter()
                    .map(|contact| contact.actor_id)
                    .collect();
                if !live.reload(&contacts).await {
                    live.all_unknown();
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => {
                                if let Ok(key) = message.get_payload::<String>()
                                    && let Some(expired) = live.keys.expired(&key)
                                {
                                    live.expired(expired);
                                }
                            }
                            // The connection is gone: Valkey went away.
                            None => break,
                        },
                    }
                }
                tracing::warn!(
                    "lost Valkey's expiry events; presence shows as unknown until it returns"
                );
                live.note_valkey(false);
                live.all_unknown();
            }
            _ => {
                live.note_valkey(false);
                live.all_unknown();
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
