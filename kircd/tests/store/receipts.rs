//! Applying a contact's receipt: one statement, so that a crash in the
//! middle of it leaves every message it covers to its next application.

use std::time::{Duration, Instant};

use kircd::store::{self, ContactState, ReceiptKind};
use uuid::Uuid;

use super::{conversation, database, identity, save, sent};

/// The states of `ids`, in their order.
async fn states(pool: &sqlx::PgPool, ids: &[Uuid]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        states.push(
            sqlx::query_scalar("SELECT state FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    states
}

/// A database of its own named `name` with a contact of ours, and four
/// messages we sent it, stored but not yet produced: (pool, conversation,
/// messages).
async fn four_sent(name: &str) -> (sqlx::PgPool, Uuid, Vec<Uuid>) {
    let pool = database(name).await;
    let (me, peer) = (identity(1).id(), identity(2));
    save(&pool, me, &peer, "peer", 1, ContactState::Accepted).await;
    let conversation = conversation(me, peer.id());
    let mut m = Vec::new();
    for _ in 0..4 {
        m.push(sent(&pool, me, conversation).await);
    }
    (pool, conversation, m)
}

#[tokio::test]
async fn a_receipt_cut_short_leaves_every_covered_message_to_its_next_application() {
    let (pool, conversation, m) = four_sent("store_receipt_cut_short").await;
    // Handed on one after the other, each at the first attempt (place,
    // copy and DELIVERED in one write).
    for (offset, id) in (0..).zip(&m) {
        store::record_copy_delivered(&pool, *id, 0, offset)
            .await
            .unwrap();
    }
    let covered = store::received_range(&pool, conversation, m[0], m[3])
        .await
        .unwrap();
    assert_eq!(
        covered.len(),
        4,
        "the range covers its two ends and the two between"
    );

    // Another session holds the last message's row against updates (not
    // against the receipts' reference to it), so the receipt stops at the
    // move of the states; then its backend dies, as when kircd is killed.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM messages WHERE id = $1 FOR NO KEY UPDATE")
        .bind(m[3])
        .execute(&mut *holder)
        .await
        .unwrap();
    let applying = tokio::spawn({
        let (pool, covered) = (pool.clone(), covered.clone());
        async move { store::apply_receipts(&pool, &covered, ReceiptKind::Received).await }
    });
    // PostgreSQL tells when a backend waits on a lock only through its
    // activity view: look until it shows.
    let started = Instant::now();
    let waiting: i32 = loop {
        let waiting = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the receipt never waited on the row"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(waiting)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ended);
    assert!(
        applying.await.unwrap().is_err(),
        "the receipt's backend died"
    );
    holder.rollback().await.unwrap();

    // Nothing of it stayed: the range, applied again, still finds every
    // message it covers, and moves them all.
    assert_eq!(states(&pool, &m).await, ["delivered"; 4]);
    let again = store::received_range(&pool, conversation, m[0], m[3])
        .await
        .unwrap();
    assert_eq!(again.len(), 4, "covered after the cut: {again:?} of {m:?}");
    let moved = store::apply_receipts(&pool, &again, ReceiptKind::Received)
        .await
        .unwrap();
    assert_eq!(moved.len(), 4);
    assert!(moved.iter().all(|(_, of)| *of == conversation));
    assert_eq!(states(&pool, &m).await, ["received"; 4]);
    // Applied once more (a receipt sent again): nothing moves.
    assert!(
        store::apply_receipts(&pool, &again, ReceiptKind::Received)
            .await
            .unwrap()
            .is_empty()
    );
    let read = store::apply_receipts(&pool, &m[..2], ReceiptKind::Read)
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(
        states(&pool, &m).await,
        ["read", "read", "received", "received"]
    );
}

#[tokio::test]
async fn a_copy_the_worker_recorded_alone_keeps_its_message_an_end_after_a_receipt() {
    let (pool, conversation, m) = four_sent("store_copy_alone").await;
    // m[0]'s first attempt was judged failed by the delivery worker and
    // handed on by `SendMessage`'s clock, so neither wrote QUEUED: the
    // worker's copy is its only place. The others went at once.
    store::record_copy(&pool, m[0], 0, 0).await.unwrap();
    for (offset, id) in (1..).zip(&m[1..]) {
        store::record_copy_delivered(&pool, *id, 0, offset)
            .await
            .unwrap();
    }
    // A receipt for m[0] alone takes its copy's row; then the contact,
    // restarted, acknowledges the four again as one range.
    store::apply_receipts(&pool, &m[..1], ReceiptKind::Received)
        .await
        .unwrap();
    let mut covered = store::received_range(&pool, conversation, m[0], m[3])
        .await
        .unwrap();
    covered.sort();
    assert_eq!(covered, m, "found by m[0]'s own place");
}
