//! What acts make of their targets, whatever order they arrive in.

use kircd::content::{Act, ActKind};
use kircd::store::{self, Incoming};
use uuid::Uuid;

use super::{ContactState, conversation, database, identity, incoming, save};

/// An act by `sender`, stored like any received record.
fn act(
    conversation: Uuid,
    sender: &kircd::crypto::identity::Identity,
    target: Uuid,
    kind: ActKind,
    offset: i64,
) -> Incoming {
    let mut record = incoming(Uuid::now_v7(), conversation, sender.id(), offset, 0);
    record.body = kind.body().to_owned();
    record.act = Some(Act { target, kind });
    record
}

/// Stores `records` and applies them as the chat sink does; returns the
/// target as it now is.
async fn store_and_apply(
    pool: &sqlx::PgPool,
    records: &[Incoming],
    target: Uuid,
) -> store::Message {
    store::insert_incoming(pool, records).await.unwrap();
    let mut ids: Vec<Uuid> = records
        .iter()
        .map(|record| record.act.as_ref().map_or(record.id, |act| act.target))
        .collect();
    ids.push(target);
    let reacted: Vec<Uuid> = records
        .iter()
        .filter_map(|record| record.act.as_ref())
        .filter(|act| matches!(act.kind, ActKind::React(_) | ActKind::Unreact(_)))
        .map(|act| act.target)
        .collect();
    store::apply_acts(pool, &ids, &reacted).await.unwrap();
    store::message_by_id(pool, target).await.unwrap().unwrap()
}

#[tokio::test]
async fn the_newest_edit_wins_in_any_arrival_order_and_only_the_authors_count() {
    let pool = database("store_acts_edits").await;
    let me = identity(1);
    let peer = identity(2);
    let stranger_in_the_conversation = identity(3);
    save(&pool, me.id(), &peer, "peer", 1, ContactState::Accepted).await;
    let chat = conversation(me.id(), peer.id());
    let target = Uuid::now_v7();
    let first_edit = act(chat, &peer, target, ActKind::Edit("second".into()), 2);
    let newest_edit = act(chat, &peer, target, ActKind::Edit("third".into()), 3);
    let not_authors = act(
        chat,
        &stranger_in_the_conversation,
        target,
        ActKind::Edit("forged".into()),
        4,
    );
    // The newest edit and a forged one arrive before the message, the
    // older edit after it.
    store::insert_incoming(&pool, &[newest_edit.clone(), not_authors])
        .await
        .unwrap();
    assert!(store::message_by_id(&pool, target).await.unwrap().is_none());
    let mut original = incoming(target, chat, peer.id(), 1, 1);
    original.body = String::from("first");
    let shown = store_and_apply(&pool, &[original], target).await;
    assert_eq!((shown.body.as_str(), shown.edited), ("third", true));
    let shown = store_and_apply(&pool, &[first_edit], target).await;
    assert_eq!(
        shown.body, "third",
        "an older edit arriving late changes nothing"
    );
    let versions: Vec<String> = store::versions(&pool, target)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|version| version.text)
        .collect();
    assert_eq!(versions, ["first", "second", "third"]);
    // Search finds the newest text only.
    let found = store::search(&pool, "third", Some(chat), 10).await.unwrap();
    assert_eq!(
        found.iter().map(|message| message.id).collect::<Vec<_>>(),
        [target]
    );
    assert!(
        store::search(&pool, "forged", Some(chat), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A deletion by the author empties it and its versions for good; a
    // later edit does not bring it back.
    let deletion = act(chat, &peer, target, ActKind::Delete, 5);
    let shown = store_and_apply(&pool, &[deletion], target).await;
    assert_eq!(
        (shown.body.as_str(), shown.deleted, shown.edited),
        ("", true, false)
    );
    let late_edit = act(chat, &peer, target, ActKind::Edit("back".into()), 6);
    let shown = store_and_apply(&pool, &[late_edit], target).await;
    assert_eq!((shown.body.as_str(), shown.deleted), ("", true));
    assert!(
        store::versions(&pool, target)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert!(
        store::search(&pool, "third", Some(chat), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn each_actors_newest_reaction_per_emoji_counts_and_acts_are_never_shown() {
    let pool = database("store_acts_reactions").await;
    let me = identity(1);
    let peer = identity(2);
    save(&pool, me.id(), &peer, "peer", 1, ContactState::Accepted).await;
    let chat = conversation(me.id(), peer.id());
    let target = Uuid::now_v7();
    let original = incoming(target, chat, peer.id(), 1, 1);
    store::insert_incoming(&pool, &[original]).await.unwrap();
    let react =
        |who, emoji: &str, offset| act(chat, who, target, ActKind::React(emoji.into()), offset);
    let unreact =
        |who, emoji: &str, offset| act(chat, who, target, ActKind::Unreact(emoji.into()), offset);
    let shown = store_and_apply(
        &pool,
        &[
            react(&peer, "👍", 2),
            react(&identity(3), "👍", 3),
            react(&peer, "🎉", 4),
            unreact(&identity(3), "👍", 5),
            react(&peer, "👍", 6),
        ],
        target,
    )
    .await;
    let counts: Vec<(String, u32, bool)> = shown
        .reactions
        .iter()
        .map(|reaction| (reaction.emoji.clone(), reaction.count, reaction.mine))
        .collect();
    assert_eq!(counts, [("👍".into(), 1, false), ("🎉".into(), 1, false)]);

    // The history, the unread count and the conversation's last message
    // know only the message.
    let page = store::history(&pool, chat, store::Anchor::Latest, 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|message| message.id)
            .collect::<Vec<_>>(),
        [target]
    );
    assert_eq!(page.messages[0].reactions.len(), 2);
    let listed = store::conversations(&pool).await.unwrap();
    let listed = listed.iter().find(|summary| summary.id == chat).unwrap();
    assert_eq!(listed.unread, 1);
    assert_eq!(
        listed.last_message.as_ref().map(|message| message.id),
        Some(target)
    );
}
