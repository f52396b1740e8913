//! Storing a batch of received messages: each id once, a copy told from a
//! replay, a batch whose conversation is missing refused whole, and the
//! statement planned once rather than for every batch.

use kircd::store::{self, ContactState};
use uuid::Uuid;

use super::{conversation, database, identity, incoming, save};

#[tokio::test]
async fn a_message_id_is_stored_once_and_a_copy_is_told_from_a_replay() {
    let pool = database("store_messages").await;
    let me = identity(1).id();
    let alice = identity(2);
    save(&pool, me, &alice, "alice", 1, ContactState::Accepted).await;
    let chat = conversation(me, alice.id());
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let stored = store::insert_incoming(
        &pool,
        &[
            incoming(first, chat, alice.id(), 1, 7),
            incoming(second, chat, alice.id(), 2, 8),
            // The same id again in one batch, from the same place: one row.
            incoming(second, chat, alice.id(), 2, 8),
        ],
    )
    .await
    .unwrap();
    assert_eq!(stored.added.len(), 2);
    assert_eq!(stored.added[0].id, first, "kept in batch order");
    assert!(stored.added[0].seq < stored.added[1].seq);
    assert_eq!(stored.redelivered, vec![second]);

    // Later: the sender's own redelivery (same bytes, another offset), and
    // a replay (the same id with other bytes).
    let again = store::insert_incoming(
        &pool,
        &[
            incoming(first, chat, alice.id(), 40, 7),
            incoming(second, chat, alice.id(), 41, 9),
        ],
    )
    .await
    .unwrap();
    assert!(again.added.is_empty());
    assert_eq!(again.redelivered, vec![first]);
    assert_eq!(again.replayed, vec![second]);
}

#[tokio::test]
async fn a_batch_naming_an_unknown_conversation_stores_nothing_and_fails() {
    // What the foreign key did before migration 0014: the batch is refused
    // as a whole, so the inbox stores none of it and tries again.
    let pool = database("store_unknown_conversation").await;
    let me = identity(1).id();
    let alice = identity(2);
    save(&pool, me, &alice, "alice", 1, ContactState::Accepted).await;
    let chat = conversation(me, alice.id());
    let nowhere = Uuid::now_v7();
    let err = store::insert_incoming(
        &pool,
        &[
            incoming(Uuid::now_v7(), chat, alice.id(), 1, 1),
            incoming(Uuid::now_v7(), nowhere, alice.id(), 2, 2),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, store::StoreError::UnknownConversation),
        "{err}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn single_message_batches_stop_being_planned_again() {
    // Most batches on a quiet day hold one message, and planning the
    // batch statement anew each time cost more than running it. After
    // PostgreSQL's five custom plans it must settle on the generic one,
    // which it only does while the generic plan costs no more than a
    // custom one (an index lookup of the named conversations).
    let setup = database("store_generic_plan").await;
    let me = identity(1).id();
    let alice = identity(2);
    save(&setup, me, &alice, "alice", 1, ContactState::Accepted).await;
    let chat = conversation(me, alice.id());
    // One connection, so that every batch and the question below use the
    // same prepared statement.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*setup.connect_options()).clone())
        .await
        .unwrap();
    for offset in 0..8 {
        let batch = [incoming(Uuid::now_v7(), chat, alice.id(), offset, 1)];
        store::insert_incoming(&pool, &batch).await.unwrap();
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE 'INSERT INTO messages%unnest%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(generic >= 3, "generic {generic}, custom {custom}");
}
