//! Two actors talking: the invite handshake, sends, and waiting for
//! history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use kirc_proto::DaemonView;
use kirc_proto::v1 as pb;

use crate::*;

/// A new invite token of `daemon`'s actor (the default expiry).
pub async fn invite(daemon: &Daemon) -> String {
    daemon
        .client()
        .await
        .create_invite(pb::CreateInviteRequest::default())
        .await
        .unwrap()
        .into_inner()
        .token
}

/// `daemon`'s actor adds the actor of `token`; the contact as added.
pub async fn add(daemon: &Daemon, token: String) -> pb::Contact {
    daemon
        .client()
        .await
        .add_contact(pb::AddContactRequest { token })
        .await
        .unwrap()
        .into_inner()
}

/// Makes `inviter` and `adder` contacts: `inviter` creates an invite, `adder`
/// adds it, and both wait until each side shows the other as accepted.
pub async fn befriend(inviter: (&Actor, &Daemon), adder: (&Actor, &Daemon)) {
    let wait = Duration::from_secs(60);
    let mut inviter_watch = inviter.1.watch().await;
    let mut adder_watch = adder.1.watch().await;
    add(adder.1, invite(inviter.1).await).await;
    let accepted = |id: &str| {
        let id = id.to_owned();
        move |view: &DaemonView| {
            view.contact(&id).is_some_and(|contact| {
                contact.state == pb::ContactState::Accepted as i32 && contact.peer_accepted
            })
        }
    };
    inviter_watch
        .wait_for(
            "the adder accepted at the inviter",
            wait,
            accepted(&adder.0.actor_id),
        )
        .await;
    adder_watch
        .wait_for(
            "the inviter confirmed at the adder",
            wait,
            accepted(&inviter.0.actor_id),
        )
        .await;
}

/// Sends a text message and returns it as stored (QUEUED).
pub async fn send(daemon: &Daemon, to: &str, text: &str) -> pb::ChatMessage {
    try_send(daemon, to, text).await.unwrap()
}

pub async fn try_send(
    daemon: &Daemon,
    to: &str,
    text: &str,
) -> Result<pb::ChatMessage, tonic::Status> {
    send_with_key(daemon, to, text, "").await
}

/// `SendMessage` with an idempotency key (empty: none), on a connection of
/// its own; a daemon that cannot be reached is `UNAVAILABLE`.
pub async fn send_with_key(
    daemon: &Daemon,
    to: &str,
    text: &str,
    key: &str,
) -> Result<pb::ChatMessage, tonic::Status> {
    kirc_proto::connect(&daemon.socket)
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?
        .send_message(pb::SendMessageRequest {
            to: to.to_owned(),
            text: text.to_owned(),
            idempotency_key: key.to_owned(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `count` records of 1 to 4,096 random bytes, the same for the same seed
/// (xorshift): junk as anyone with an inbox credential could write it.
pub fn random_records(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % 4096).unwrap() + 1;
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        })
        .collect()
}

/// Waits until `daemon`'s history of `conversation` satisfies `done`, reading
/// it again after each event (events say when something changed; a quiet
/// second makes it look again too), or panics after `timeout`.
pub async fn wait_history(
    daemon: &Daemon,
    conversation: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[pb::ChatMessage]) -> bool,
) -> Vec<pb::ChatMessage> {
    let mut watch = daemon.watch().await;
    let deadline = Instant::now() + timeout;
    loop {
        let history = history_all(daemon, conversation).await;
        if done(&history) {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} at {}; {} messages: {}",
            daemon.socket.display(),
            history.len(),
            by_state(&history)
        );
        watch.next(Duration::from_secs(1)).await;
    }
}

/// How many messages of `history` are in each direction and state, naming
/// the messages of the groups of five or fewer: what a failed wait shows.
fn by_state(history: &[pb::ChatMessage]) -> String {
    let mut groups: std::collections::BTreeMap<(bool, i32), Vec<&pb::ChatMessage>> =
        std::collections::BTreeMap::new();
    for message in history {
        groups
            .entry((message.outgoing, message.state))
            .or_default()
            .push(message);
    }
    groups
        .iter()
        .map(|((outgoing, state), messages)| {
            let state = pb::MessageState::try_from(*state)
                .map(|state| state.as_str_name().to_owned())
                .unwrap_or_else(|_| state.to_string());
            let direction = if *outgoing { "outgoing" } else { "incoming" };
            let mut group = format!("{direction} {state} {}", messages.len());
            if messages.len() <= 5 {
                let named: Vec<String> = messages
                    .iter()
                    .map(|message| format!("{:?} {}", message.body, message.id))
                    .collect();
                group.push_str(&format!(" ({})", named.join(", ")));
            }
            group
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The texts of the received messages of `history`, in order.
pub fn incoming(history: &[pb::ChatMessage]) -> Vec<String> {
    history
        .iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.body.clone())
        .collect()
}

/// The whole history of a conversation, oldest first, read page by page.
pub async fn history_all(daemon: &Daemon, conversation: &str) -> Vec<pb::ChatMessage> {
    let mut client = daemon.client().await;
    let mut messages = Vec::new();
    let mut anchor = None;
    loop {
        let page = client
            .get_history(pb::GetHistoryRequest {
                conversation_id: conversation.to_owned(),
                anchor: anchor.clone(),
                limit: 500,
            })
            .await
            .unwrap()
            .into_inner();
        let first = page.messages.first().map(|message| message.id.clone());
        let mut page_messages = page.messages;
        page_messages.append(&mut messages);
        messages = page_messages;
        match (page.more_before, first) {
            (true, Some(first)) => anchor = Some(pb::get_history_request::Anchor::Before(first)),
            _ => return messages,
        }
    }
}

/// How many records `status` counts as rejected for `reason`.
pub fn rejected(status: &pb::Status, reason: &str) -> u64 {
    status
        .rejected
        .iter()
        .find(|count| count.reason == reason)
        .map_or(0, |count| count.count)
}

/// Waits until every message `daemon` sent in `conversation` is at `state`
/// or past it; the history is read again on each event.
pub async fn wait_all_sent(
    daemon: &Daemon,
    conversation: &str,
    timeout: Duration,
    state: pb::MessageState,
) {
    let mut watch = daemon.watch().await;
    let deadline = Instant::now() + timeout;
    loop {
        let history = history_all(daemon, conversation).await;
        let behind: Vec<String> = history
            .iter()
            .filter(|message| message.outgoing && message.state < state as i32)
            .map(|message| format!("{:?} ({:?})", message.body, message.state()))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {state:?}: {}",
            behind.join(", ")
        );
        watch.next(Duration::from_secs(5)).await;
    }
}

/// The texts of `conversation` in `daemon`'s history, in its order.
pub async fn history_bodies(daemon: &Daemon, conversation: &str) -> Vec<String> {
    history_all(daemon, conversation)
        .await
        .into_iter()
        .map(|message| message.body)
        .collect()
}
