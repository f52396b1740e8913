//! Replies, reactions, edits and deletions between two real kircd
//! processes on the local stack, through their sockets and Kafka; and at
//! the wire, what a contact may not do: edit or delete another's message,
//! or roll an edit back by replaying an old one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only its `send` is used here.
#[allow(dead_code)]
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use kirc_proto::v1::{self as pb, event::Kind};
use kirc_proto::wire::v1 as wire;
use kirc_testkit::kafka;
use kirc_testkit::{Actor, Daemon, befriend, rejected, send, wait_history};
use raw::RawSender;

const WAIT: Duration = Duration::from_secs(60);

async fn react(daemon: &Daemon, id: &str, emoji: &str, remove: bool) -> pb::ChatMessage {
    daemon
        .client()
        .await
        .react(pb::ReactRequest {
            message_id: id.to_owned(),
            emoji: emoji.to_owned(),
            remove,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn edit(daemon: &Daemon, id: &str, text: &str) -> Result<pb::ChatMessage, tonic::Status> {
    daemon
        .client()
        .await
        .edit_message(pb::EditMessageRequest {
            message_id: id.to_owned(),
            text: text.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn delete(daemon: &Daemon, id: &str) -> Result<pb::ChatMessage, tonic::Status> {
    daemon
        .client()
        .await
        .delete_message(pb::MessageRequest {
            message_id: id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn versions(daemon: &Daemon, id: &str) -> Vec<String> {
    daemon
        .client()
        .await
        .get_message_versions(pb::MessageRequest {
            message_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions
        .into_iter()
        .map(|version| version.text)
        .collect()
}

/// `(emoji, count, mine)` of a message's reactions, in their order.
fn reactions(message: &pb::ChatMessage) -> Vec<(String, u32, bool)> {
    message
        .reactions
        .iter()
        .map(|reaction| (reaction.emoji.clone(), reaction.count, reaction.mine))
        .collect()
}

fn find<'a>(history: &'a [pb::ChatMessage], id: &str) -> Option<&'a pb::ChatMessage> {
    history.iter().find(|message| message.id == id)
}

/// Waits until `daemon`'s copy of message `id` satisfies `done`.
async fn wait_message(
    daemon: &Daemon,
    conversation: &str,
    id: &str,
    what: &str,
    done: impl Fn(&pb::ChatMessage) -> bool,
) -> pb::ChatMessage {
    let history = wait_history(daemon, conversation, what, WAIT, |history| {
        find(history, id).is_some_and(&done)
    })
    .await;
    find(&history, id).unwrap().clone()
}

async fn unread(daemon: &Daemon, conversation: &str) -> u64 {
    daemon
        .client()
        .await
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations
        .into_iter()
        .find(|listed| listed.id == conversation)
        .map_or(0, |listed| listed.unread)
}

#[tokio::test]
async fn replies_reactions_edits_and_deletions_reach_the_contact() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    let first = send(&alice_daemon, &bob.actor_id, "first").await;
    let conversation = first.conversation_id.clone();
    wait_message(
        &bob_daemon,
        &conversation,
        &first.id,
        "first at bob",
        |_| true,
    )
    .await;
    let mut bob_events = bob_daemon.watch().await;

    // A reply, quoted where it arrives.
    let reply = bob_daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: alice.actor_id.clone(),
            text: "agreed".into(),
            reply_to: first.id.clone(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.reply_to, first.id);
    let quoted = wait_message(&alice_daemon, &conversation, &reply.id, "the reply", |_| {
        true
    })
    .await;
    let quote = quoted.quote.expect("the reply quotes what it answers");
    assert_eq!(
        (quote.sender.as_str(), quote.excerpt.as_str()),
        (alice.actor_id.as_str(), "first")
    );

    // Reactions: counted per emoji, each actor's own marked, one taken back.
    react(&bob_daemon, &first.id, "👍", false).await;
    react(&alice_daemon, &first.id, "👍", false).await;
    let shown = react(&alice_daemon, &first.id, "🎉", false).await;
    assert_eq!(
        reactions(&shown),
        vec![("👍".into(), 2, true), ("🎉".into(), 1, true)],
        "the call returns the message as it now is"
    );
    wait_message(
        &bob_daemon,
        &conversation,
        &first.id,
        "three reactions at bob",
        |message| reactions(message) == vec![("👍".into(), 2, true), ("🎉".into(), 1, false)],
    )
    .await;
    react(&bob_daemon, &first.id, "👍", true).await;
    wait_message(
        &alice_daemon,
        &conversation,
        &first.id,
        "bob's 👍 taken back",
        |message| reactions(message) == vec![("👍".into(), 1, true), ("🎉".into(), 1, true)],
    )
    .await;

    // An edit: the newest text, the versions kept, found by a search.
    edit(&alice_daemon, &first.id, "first, edited")
        .await
        .unwrap();
    let edited = wait_message(
        &bob_daemon,
        &conversation,
        &first.id,
        "the edit at bob",
        |message| message.edited && message.body == "first, edited",
    )
    .await;
    assert_eq!(reactions(&edited).len(), 2, "an edit keeps the reactions");
    assert_eq!(
        versions(&bob_daemon, &first.id).await,
        ["first", "first, edited"]
    );
    let found = bob_daemon
        .client()
        .await
        .search(pb::SearchRequest {
            query: "edited".into(),
            limit: 10,
            conversation_id: conversation.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(
        found.iter().map(|message| &message.id).collect::<Vec<_>>(),
        [&first.id]
    );

    // Only the author edits or deletes.
    for refused in [
        edit(&bob_daemon, &first.id, "not yours").await.unwrap_err(),
        delete(&bob_daemon, &first.id).await.unwrap_err(),
    ] {
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    }

    // A deletion: a tombstone, no text, no versions, the reply's quote
    // says so.
    delete(&alice_daemon, &first.id).await.unwrap();
    let gone = wait_message(
        &bob_daemon,
        &conversation,
        &first.id,
        "the deletion at bob",
        |message| message.deleted,
    )
    .await;
    assert_eq!((gone.body.as_str(), gone.reactions.len()), ("", 0));
    assert!(versions(&bob_daemon, &first.id).await.is_empty());
    let reply_at_bob = wait_message(
        &bob_daemon,
        &conversation,
        &reply.id,
        "the quote deleted",
        |message| message.quote.as_ref().is_some_and(|quote| quote.deleted),
    )
    .await;
    assert_eq!(reply_at_bob.quote.unwrap().excerpt, "");

    // None of it was a new message: no event added one, nothing is unread
    // but the first message, and the history holds the two messages.
    // Everything above is published already: the buffered events come at
    // once, and a quiet moment ends the reading.
    while bob_events.next(Duration::from_millis(200)).await.is_some() {}
    let added: Vec<String> = bob_events
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            Some(Kind::MessageAdded(message)) => Some(message.body.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(added, ["agreed"], "only bob's reply was added at bob");
    assert_eq!(unread(&bob_daemon, &conversation).await, 1);
    let history = kirc_testkit::history_all(&bob_daemon, &conversation).await;
    assert_eq!(history.len(), 2);
}

#[tokio::test]
async fn a_contact_cannot_edit_or_delete_anothers_message_nor_replay_an_old_edit() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mine = send(&alice_daemon, &bob.actor_id, "mine").await;
    let conversation = mine.conversation_id.clone();
    wait_message(&bob_daemon, &conversation, &mine.id, "mine at bob", |_| {
        true
    })
    .await;

    // bob's keys, written straight into alice's inbox: signed and sealed
    // as bob's kircd would, but acting on alice's message.
    let as_bob = RawSender::new(&bob, &alice);
    let target = uuid::Uuid::parse_str(&mine.id).unwrap().as_bytes().to_vec();
    let act = |what| wire::ChatPayload {
        act: Some(wire::MessageAct {
            target: target.clone(),
            what: Some(what),
        }),
        ..wire::ChatPayload::default()
    };
    let mut alice_watch = alice_daemon.watch().await;
    as_bob
        .send(
            wire::Kind::MessageAct,
            &act(wire::message_act::What::Edit(wire::Edit {
                text: "bob was here".into(),
            })),
        )
        .await;
    as_bob
        .send(
            wire::Kind::MessageAct,
            &act(wire::message_act::What::Deletion(wire::Deletion {})),
        )
        .await;
    // An act disguised as chat, which a kircd that predates acts would
    // show as an empty message.
    as_bob
        .send(
            wire::Kind::Chat,
            &act(wire::message_act::What::Reaction(wire::Reaction {
                emoji: "👍".into(),
                remove: false,
            })),
        )
        .await;
    let status = alice_watch
        .wait_until("the forged acts refused", WAIT, |status| {
            rejected(status, "forbidden") >= 2 && rejected(status, "malformed") >= 1
        })
        .await;
    assert_eq!(rejected(&status, "forbidden"), 2);
    let history = kirc_testkit::history_all(&alice_daemon, &conversation).await;
    let kept = find(&history, &mine.id).unwrap();
    assert_eq!(
        (
            kept.body.as_str(),
            kept.edited,
            kept.deleted,
            kept.reactions.len()
        ),
        ("mine", false, false, 0)
    );

    // alice edits twice; her first edit's record, written again into bob's
    // inbox, does not take the text back.
    edit(&alice_daemon, &mine.id, "second").await.unwrap();
    wait_message(
        &bob_daemon,
        &conversation,
        &mine.id,
        "the first edit",
        |message| message.body == "second",
    )
    .await;
    edit(&alice_daemon, &mine.id, "third").await.unwrap();
    wait_message(
        &bob_daemon,
        &conversation,
        &mine.id,
        "the second edit",
        |message| message.body == "third",
    )
    .await;
    let edits = kafka::envelopes_of(
        &alice.stack.kafka,
        &format!("{}data-out", alice.topic_prefix),
        wire::Kind::MessageAct,
        &bob.actor_id,
    );
    assert_eq!(edits.len(), 2, "two edits in alice's outbox");
    let (old_edit, _) = &edits[0];
    let mut bob_watch = bob_daemon.watch().await;
    let before = bob_watch.view.status.clone().unwrap_or_default();
    let already = before.inbox.map_or(0, |inbox| inbox.redelivered);
    kafka::produce(
        &kafka::producer(&bob.stack.kafka),
        &format!("{}data-in", bob.topic_prefix),
        &old_edit.key,
        &old_edit.value,
    )
    .await;
    bob_watch
        .wait_until("the old edit ignored", WAIT, |status| {
            status
                .inbox
                .is_some_and(|inbox| inbox.redelivered > already)
        })
        .await;
    let history = kirc_testkit::history_all(&bob_daemon, &conversation).await;
    assert_eq!(find(&history, &mine.id).unwrap().body, "third");
    assert_eq!(
        versions(&bob_daemon, &mine.id).await,
        ["mine", "second", "third"]
    );
}

/// Waits for a `MessageUpdated` event of message `id` for which `done`
/// holds: what a client sees change.
async fn wait_updated(
    watch: &mut kirc_testkit::Watcher,
    id: &str,
    what: &str,
    done: impl Fn(&pb::ChatMessage) -> bool,
) -> pb::ChatMessage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = watch
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no update: {what}"));
        if let Some(Kind::MessageUpdated(message)) = event.kind
            && message.id == id
            && done(&message)
        {
            return message;
        }
    }
}

#[tokio::test]
async fn an_act_or_a_reply_that_comes_before_its_message_waits_for_it_even_across_a_restart() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let conversation = send(&alice_daemon, &bob.actor_id, "hello")
        .await
        .conversation_id;
    let as_bob = RawSender::new(&bob, &alice);
    // Ids made now, messages sent later: what acts on them comes first.
    let late = kircd::crypto::envelope::new_message_id();
    let later = kircd::crypto::envelope::new_message_id();
    let text = |text: &str| wire::ChatPayload {
        text: text.into(),
        ..wire::ChatPayload::default()
    };
    let edit_of = |target: uuid::Uuid, text: &str| wire::ChatPayload {
        act: Some(wire::MessageAct {
            target: target.as_bytes().to_vec(),
            what: Some(wire::message_act::What::Edit(wire::Edit {
                text: text.into(),
            })),
        }),
        ..wire::ChatPayload::default()
    };
    as_bob
        .send(
            wire::Kind::MessageAct,
            &edit_of(late, "the late one, edited"),
        )
        .await;
    let reply = wire::ChatPayload {
        reply_to: later.as_bytes().to_vec(),
        ..text("answering what is still on its way")
    };
    let (reply_id, _) = as_bob.send(wire::Kind::Chat, &reply).await;
    let reply_id = reply_id.to_string();
    let shown = wait_message(
        &alice_daemon,
        &conversation,
        &reply_id,
        "the early reply",
        |message| message.quote.is_none(),
    )
    .await;
    assert_eq!(shown.reply_to, later.to_string());

    let mut watch = alice_daemon.watch().await;
    as_bob
        .send_as(late, wire::Kind::Chat, &text("the late one"))
        .await;
    let edited = wait_updated(
        &mut watch,
        &late.to_string(),
        "the early edit applied",
        |message| message.edited,
    )
    .await;
    assert_eq!(edited.body, "the late one, edited");

    // What waits is kept across a restart.
    as_bob
        .send(
            wire::Kind::MessageAct,
            &edit_of(later, "the later one, edited"),
        )
        .await;
    // A message behind it on the same partition: once it is stored, so is
    // the edit before it.
    let (marker, _) = as_bob
        .send(wire::Kind::Chat, &text("behind the edit"))
        .await;
    wait_message(
        &alice_daemon,
        &conversation,
        &marker.to_string(),
        "the second edit stored",
        |_| true,
    )
    .await;
    assert!(alice_daemon.stop().await.success());
    alice_daemon = Daemon::start(&alice).await;
    let mut watch = alice_daemon.watch().await;
    as_bob
        .send_as(later, wire::Kind::Chat, &text("the later one"))
        .await;
    let quoted = wait_updated(&mut watch, &reply_id, "the reply's quote", |message| {
        message.quote.is_some()
    })
    .await;
    assert_eq!(quoted.quote.unwrap().excerpt, "the later one, edited");
}
