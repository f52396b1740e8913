//! The store against the real local PostgreSQL: each statement's rules,
//! without a daemon around it. A database of its own per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kirc_testkit::{Stack, create_database};
use kircd::backends::postgres::MIGRATOR;
use kircd::crypto::identity::{ActorId, Identity};
use kircd::store::{self, ContactState, Incoming, MessageState, ProfileColumns};
use sqlx::PgPool;
use uuid::Uuid;

mod acts;
mod channels;
mod receipts;
mod received;

async fn database(name: &str) -> PgPool {
    let stack = Stack::from_env();
    let database = create_database(&stack, name).await;
    let pool = PgPool::connect(&format!("{}/{database}", stack.postgres))
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    pool
}

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

/// Saves `who` as a contact of `me` with a profile stamped `stamp` and
/// named `name`; returns (profile replaced, state after).
async fn save(
    pool: &PgPool,
    me: ActorId,
    who: &Identity,
    name: &str,
    stamp: i64,
    state: ContactState,
) -> (bool, ContactState) {
    let saved = store::save_contact(
        pool,
        me,
        ProfileColumns {
            actor_id: who.id(),
            display_name: name,
            signing_key: &who.signing_key().to_bytes(),
            box_key: who.box_key().as_bytes(),
            signed_profile: name.as_bytes(),
            updated_at_unix_ms: stamp,
        },
        conversation(me, who.id()),
        state,
        true,
        |_| None,
    )
    .await
    .unwrap();
    (saved.profile_newer, saved.contact.state)
}

fn conversation(me: ActorId, peer: ActorId) -> Uuid {
    kircd::crypto::envelope::conversation_id(me, peer)
}

fn incoming(id: Uuid, conversation: Uuid, sender: ActorId, offset: i64, digest: u8) -> Incoming {
    Incoming {
        id,
        conversation_id: conversation,
        sender,
        action: false,
        body: format!("message at {offset}"),
        created_at_unix_ms: 1_700_000_000_000 + offset,
        partition: 0,
        offset,
        digest: [digest; 32],
        after_refused: false,
        reply_to: None,
        act: None,
    }
}

#[tokio::test]
async fn an_older_profile_never_replaces_a_newer_one_and_states_only_move_as_allowed() {
    let pool = database("store_contacts").await;
    let me = identity(1).id();
    let alice = identity(2);
    assert_eq!(
        save(&pool, me, &alice, "alice", 10, ContactState::Request).await,
        (true, ContactState::Request)
    );
    // A newer profile replaces the name; adding someone who asked accepts them.
    assert_eq!(
        save(&pool, me, &alice, "alice v2", 20, ContactState::Accepted).await,
        (true, ContactState::Accepted)
    );
    // An older one (a replayed acceptance) changes nothing.
    assert_eq!(
        save(&pool, me, &alice, "alice v1", 15, ContactState::Accepted).await,
        (false, ContactState::Accepted)
    );
    let rows = store::contacts(&pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].signed_profile, b"alice v2");
    assert_eq!(rows[0].profile_updated_at_unix_ms, 20);
    // Blocked stays blocked, whatever a request says.
    store::set_contact_state(&pool, alice.id(), ContactState::Blocked)
        .await
        .unwrap();
    assert_eq!(
        save(&pool, me, &alice, "alice v3", 30, ContactState::Accepted).await,
        (true, ContactState::Blocked)
    );
    // The one-to-one conversation has both as members.
    let conversations = store::conversations(&pool).await.unwrap();
    assert_eq!(conversations.len(), 1);
    let mut members = conversations[0].members.clone();
    members.sort();
    let mut expected = vec![me, alice.id()];
    expected.sort();
    assert_eq!(members, expected);
}

#[tokio::test]
async fn the_read_marker_only_moves_forward_and_says_where_it_was() {
    let pool = database("store_read").await;
    let me = identity(1).id();
    let alice = identity(2);
    save(&pool, me, &alice, "alice", 1, ContactState::Accepted).await;
    let chat = conversation(me, alice.id());
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let batch: Vec<Incoming> = ids
        .iter()
        .enumerate()
        .map(|(at, id)| incoming(*id, chat, alice.id(), i64::try_from(at).unwrap(), 1))
        .collect();
    let stored = store::insert_incoming(&pool, &batch).await.unwrap();
    let seqs: Vec<u64> = stored.added.iter().map(|message| message.seq).collect();
    assert!(
        stored
            .added
            .iter()
            .all(|message| message.state == MessageState::Received && !message.outgoing)
    );

    let marker = store::mark_read(&pool, chat, ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            marker.before,
            marker.last_read_seq,
            marker.unread,
            marker.moved
        ),
        (0, seqs[1], 1, true)
    );
    // Back is refused, and says so.
    let marker = store::mark_read(&pool, chat, ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            marker.before,
            marker.last_read_seq,
            marker.unread,
            marker.moved
        ),
        (seqs[1], seqs[1], 1, false)
    );
    let marker = store::mark_read(&pool, chat, ids[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            marker.before,
            marker.last_read_seq,
            marker.unread,
            marker.moved
        ),
        (seqs[1], seqs[2], 0, true)
    );
    // The receipts for a move cover exactly the messages it passed.
    assert_eq!(
        store::incoming_between(&pool, chat, seqs[0], seqs[2])
            .await
            .unwrap(),
        vec![ids[1], ids[2]]
    );
    // A message of another conversation is not a marker here.
    assert!(
        store::mark_read(&pool, Uuid::now_v7(), ids[2])
            .await
            .unwrap()
            .is_none()
    );
    let summary = &store::conversations(&pool).await.unwrap()[0];
    assert_eq!((summary.unread, summary.last_read_seq), (0, seqs[2]));
    assert_eq!(summary.last_message.as_ref().map(|m| m.id), Some(ids[2]));
}

#[tokio::test]
async fn conversations_are_listed_by_the_time_of_their_last_message() {
    let pool = database("store_activity").await;
    let me = identity(1).id();
    let (alice, bob) = (identity(2), identity(3));
    save(&pool, me, &alice, "alice", 1, ContactState::Accepted).await;
    save(&pool, me, &bob, "bob", 1, ContactState::Accepted).await;
    let (with_alice, with_bob) = (conversation(me, alice.id()), conversation(me, bob.id()));
    // Made just now, with no message yet: activity is when each was made.
    let made = store::conversations(&pool).await.unwrap();
    assert_eq!(made.len(), 2);
    assert!(made.iter().all(|summary| summary.last_message.is_none()));

    // A message far in the future (a sender's clock ahead) puts alice's
    // first; a later, ordinary message from bob does not pass it.
    let future = 4_000_000_000_000;
    let mut ahead = incoming(Uuid::now_v7(), with_alice, alice.id(), 1, 1);
    ahead.created_at_unix_ms = future;
    store::insert_incoming(&pool, &[ahead]).await.unwrap();
    store::insert_incoming(&pool, &[incoming(Uuid::now_v7(), with_bob, bob.id(), 2, 2)])
        .await
        .unwrap();
    let listed = store::conversations(&pool).await.unwrap();
    let order: Vec<Uuid> = listed.iter().map(|summary| summary.id).collect();
    assert_eq!(order, vec![with_alice, with_bob]);
    assert_eq!(listed[0].last_activity_unix_ms, future);

    // Alice's next message, with an ordinary time, is her last: the
    // conversation's activity follows it, and bob's (made later, its
    // message later) comes first.
    let now = kirc_proto::unix_ms(std::time::SystemTime::now());
    let mut ordinary = incoming(Uuid::now_v7(), with_alice, alice.id(), 3, 3);
    ordinary.created_at_unix_ms = 1_700_000_000_000;
    store::insert_incoming(&pool, &[ordinary]).await.unwrap();
    let listed = store::conversations(&pool).await.unwrap();
    let order: Vec<Uuid> = listed.iter().map(|summary| summary.id).collect();
    assert_eq!(order, vec![with_bob, with_alice]);
    // Activity is never earlier than when the conversation was made.
    assert!(
        listed
            .iter()
            .all(|summary| summary.last_activity_unix_ms >= now - 60_000)
    );
}

/// A message's delivery state and outbox position change after it is
/// stored, several times each; no index may name them (as a column or in a
/// partial index's condition), so that PostgreSQL updates the row in place
/// (a heap-only update) instead of adding a version to every index.
#[tokio::test]
async fn a_sent_message_moves_through_its_states_by_updates_in_place() {
    // One connection, so that its own statistics say what its updates did.
    let stack = Stack::from_env();
    let database = create_database(&stack, "hot").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/{database}", stack.postgres))
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'messages'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        indexes.iter().any(|(name, _)| name == "messages_pkey"),
        "the query lists the table's indexes: {indexes:?}"
    );
    for (name, definition) in &indexes {
        for column in ["state", "outbox_partition", "outbox_offset"] {
            assert!(
                !definition.contains(column),
                "index {name} names `{column}`: {definition}"
            );
        }
    }

    let (me, peer) = (identity(1).id(), identity(2));
    save(&pool, me, &peer, "peer", 1, ContactState::Accepted).await;
    let id = Uuid::now_v7();
    store::insert_outgoing(
        &pool,
        &store::Outgoing {
            id,
            conversation_id: conversation(me, peer.id()),
            sender: me,
            action: false,
            body: String::from("hi"),
            created_at_unix_ms: 1,
            envelope: vec![1, 2, 3],
            idempotency_key: None,
            reply_to: None,
            act: None,
        },
    )
    .await
    .unwrap()
    .expect("stored");
    // Placed and QUEUED by one update.
    assert!(store::set_queued(&pool, id, 0, 7).await.unwrap().is_some());
    for state in [MessageState::Delivered, MessageState::Received] {
        store::advance_messages(&pool, &[id], state, true)
            .await
            .unwrap();
    }
    // The connection's counters reach the statistics views when it goes
    // idle after this request.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .unwrap();
    let (updates, in_place): (i64, i64) = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'messages'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((updates, in_place), (3, 3), "(updates, of which in place)");

    // The send's write comes after the delivery's: the place is recorded,
    // the state stays where the delivery moved it.
    assert_eq!(store::set_queued(&pool, id, 0, 9).await.unwrap(), None);
    let (state, offset): (String, i64) =
        sqlx::query_as("SELECT state, outbox_offset FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), offset), ("received", 9));
}

/// Stores an outgoing message in `conversation` (its seq is the next).
async fn sent(pool: &PgPool, me: ActorId, conversation: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    store::insert_outgoing(
        pool,
        &store::Outgoing {
            id,
            conversation_id: conversation,
            sender: me,
            action: false,
            body: String::from("hi"),
            created_at_unix_ms: 1,
            envelope: vec![1],
            idempotency_key: None,
            reply_to: None,
            act: None,
        },
    )
    .await
    .unwrap()
    .expect("stored");
    id
}

#[tokio::test]
async fn a_receipt_range_covers_what_was_delivered_between_its_ends_and_nothing_else() {
    let pool = database("store_receipt_ranges").await;
    let (me, peer, other) = (identity(1).id(), identity(2), identity(3));
    save(&pool, me, &peer, "peer", 1, ContactState::Accepted).await;
    save(&pool, me, &other, "other", 1, ContactState::Accepted).await;
    let elsewhere = conversation(me, other.id());
    let conversation = conversation(me, peer.id());

    // Eight messages, stored in this order (seq) but placed in the outbox
    // in another: two sends at once, m[5] produced again later (its first
    // copy expired from data-out before the delivery worker read it), and
    // m[7]'s produce timed out although the broker wrote it, so only the
    // delivery worker, which hands each copy on, knows its place.
    let mut m = Vec::new();
    for _ in 0..8 {
        m.push(sent(&pool, me, conversation).await);
    }
    let theirs = sent(&pool, me, elsewhere).await;
    let places = [
        (m[0], 0, 10),
        (m[2], 0, 11),
        (m[1], 0, 12),
        (m[3], 0, 13),
        (m[4], 0, 14),
        (m[5], 0, 15),
        (theirs, 0, 16),
        (m[6], 1, 3),
    ];
    for (id, partition, offset) in places {
        store::set_queued(&pool, id, partition, offset)
            .await
            .unwrap();
        if id != m[5] {
            store::record_copy(&pool, id, partition, offset)
                .await
                .unwrap();
        }
    }
    store::set_queued(&pool, m[5], 0, 40).await.unwrap();
    store::record_copy(&pool, m[5], 0, 40).await.unwrap();
    store::record_copy(&pool, m[7], 0, 17).await.unwrap();

    let covered = |mut ids: Vec<Uuid>| {
        ids.sort();
        ids
    };
    let of = |indices: &[usize]| covered(indices.iter().map(|index| m[*index]).collect());
    let range = |first: Uuid, last: Uuid| {
        let pool = pool.clone();
        async move {
            covered(
                store::received_range(&pool, conversation, first, last)
                    .await
                    .unwrap(),
            )
        }
    };
    // By the outbox's order: m[2] went between m[0] and m[1].
    assert_eq!(range(m[0], m[2]).await, of(&[0, 2]));
    assert_eq!(range(m[2], m[4]).await, of(&[1, 2, 3, 4]));
    // m[5]'s first copy expired; it is at 40 now, outside 10..=14.
    assert_eq!(range(m[0], m[4]).await, of(&[0, 1, 2, 3, 4]));
    // From m[4] to m[5]'s copy at 40: m[7], at 17, was handed on between.
    assert_eq!(range(m[4], m[5]).await, of(&[4, 5, 7]));
    // An end known only by the copy the delivery worker handed on covers
    // what lies before it.
    assert_eq!(range(m[3], m[7]).await, of(&[3, 4, 7]));
    // An end with two copies: the stretch is the shortest that fits, from
    // either side.
    store::record_copy(&pool, m[3], 0, 41).await.unwrap();
    assert_eq!(range(m[2], m[3]).await, of(&[1, 2, 3]));
    assert_eq!(range(m[5], m[3]).await, of(&[3, 5]));
    // Ends in two partitions cover themselves alone; another
    // conversation's message is never covered, even named as an end.
    assert_eq!(range(m[3], m[6]).await, of(&[3, 6]));
    assert_eq!(range(m[0], theirs).await, of(&[0]));

    // A receipt takes the covered messages out of later ranges.
    store::apply_receipts(&pool, &of(&[1, 2]), store::ReceiptKind::Received)
        .await
        .unwrap();
    assert_eq!(range(m[0], m[4]).await, of(&[0, 3, 4]));

    // A read range goes by our own order of storing, past PENDING: a
    // message stored but never produced is not covered.
    sent(&pool, me, conversation).await;
    let last = sent(&pool, me, conversation).await;
    store::set_queued(&pool, last, 1, 4).await.unwrap();
    let read = covered(
        store::read_range(&pool, conversation, last, m[1])
            .await
            .unwrap(),
    );
    // m[7] is still PENDING here: the delivery worker's DELIVERED is not
    // written in this test.
    assert_eq!(
        read,
        covered(m[1..7].iter().copied().chain([last]).collect())
    );
}

#[tokio::test]
async fn a_transfer_is_stored_once_and_an_ended_one_never_moves_again() {
    use store::{TransferFileRecord, TransferRecord, TransferState};
    let pool = database("store_transfers").await;
    let (me, alice) = (identity(1), identity(2));
    save(&pool, me.id(), &alice, "alice", 1, ContactState::Accepted).await;
    let file = |name: &str, size: u64| TransferFileRecord {
        offered_path: vec![String::from("folder"), name.to_owned()],
        local_path: format!("folder/{name}"),
        size,
        hash: [1; 32],
        pieces_hash: [2; 32],
        piece_hashes: None,
        verified_pieces: 0,
        modified_ns: None,
        renamed: false,
        saved: false,
    };
    let offered = TransferRecord {
        id: Uuid::now_v7(),
        conversation_id: conversation(me.id(), alice.id()),
        peer: alice.id(),
        outgoing: false,
        state: TransferState::Offered,
        reason: String::new(),
        piece_bytes: 262_144,
        local_path: String::new(),
        created_unix_ms: 0,
        updated_unix_ms: 0,
        files: vec![
            file("a.txt", 10),
            // Every file goes in one statement, its path as JSON: quotes,
            // commas and braces come back as they were.
            file("b, {c} \"d\" é.txt", 600_000),
        ],
    };
    assert!(store::insert_transfer(&pool, &offered).await.unwrap());
    assert!(
        !store::insert_transfer(&pool, &offered).await.unwrap(),
        "a second copy of the offer is not a second transfer"
    );

    assert!(
        store::set_transfer_state(&pool, offered.id, TransferState::Moving, "")
            .await
            .unwrap()
    );
    store::set_piece_hashes(&pool, offered.id, 1, &[7; 96])
        .await
        .unwrap();
    store::set_verified_pieces(&pool, offered.id, &[1, 2])
        .await
        .unwrap();
    let stored = store::transfer(&pool, offered.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TransferState::Moving);
    assert_eq!(stored.files.len(), 2);
    assert_eq!(stored.files[0].verified_pieces, 1);
    assert_eq!(stored.files[1].verified_pieces, 2);
    assert_eq!(
        stored.files[1].piece_hashes.as_deref(),
        Some(&[7u8; 96][..])
    );
    assert_eq!(stored.files[0].offered_path, ["folder", "a.txt"]);
    assert_eq!(
        stored.files[1].offered_path,
        ["folder", "b, {c} \"d\" é.txt"]
    );
    assert_eq!(stored.files[1].local_path, "folder/b, {c} \"d\" é.txt");
    assert_eq!(stored.files[1].size, 600_000);

    assert!(
        store::set_transfer_state(&pool, offered.id, TransferState::Cancelled, "by alice")
            .await
            .unwrap()
    );
    assert!(
        !store::set_transfer_state(&pool, offered.id, TransferState::Complete, "")
            .await
            .unwrap(),
        "a cancelled transfer stays cancelled"
    );
    let listed = store::transfers(&pool, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, TransferState::Cancelled);
    assert_eq!(listed[0].reason, "by alice");
    assert!(
        store::transfers(&pool, 0).await.unwrap().is_empty(),
        "an ended transfer is listed only among the recent ones"
    );
}
