//! A flood of junk into both inboxes, as anyone with the public credential
//! can write: every record is rejected and counted, the quarantine stays
//! within its bounds (a share of each batch written, oldest dropped, drops
//! counted), the log stays within a
//! few lines per reason and interval plus summaries, and the good message
//! behind the flood arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1 as pb;
use kirc_testkit::kafka;
use kirc_testkit::{Actor, Daemon, befriend, random_records, send};
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(120);
const JUNK: usize = 5_000;
const MAX_ROWS: i64 = 400;
const MAX_BYTES: i64 = 300_000;
const BURST: i64 = 3;

fn total_rejected(status: &pb::Status) -> u64 {
    status.rejected.iter().map(|count| count.count).sum()
}

#[tokio::test]
async fn a_junk_flood_is_rejected_within_bounds_and_blocks_nothing() {
    let alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    bob.set("messaging.quarantine_max_rows", MAX_ROWS)
        .set("messaging.quarantine_max_bytes", MAX_BYTES)
        .set("messaging.rejection_log_burst", BURST)
        .set("messaging.rejection_log_interval", "2s");
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut bob_watch = bob_daemon.watch().await;
    let before = bob_daemon.status().await;

    let producer = kafka::producer(&bob.stack.kafka);
    let data_in = format!("{}data-in", bob.topic_prefix);
    let rpc_in = format!("{}rpc-in", bob.topic_prefix);
    let records = random_records(JUNK, 0x9e37_79b9_7f4a_7c15);
    let started = std::time::Instant::now();
    let sends = records.iter().enumerate().map(|(index, value)| {
        let topic = if index % 5 == 0 { &rpc_in } else { &data_in };
        kafka::produce(&producer, topic, b"junk", value)
    });
    futures::future::join_all(sends).await;
    // A good message behind the flood.
    let good = send(&alice_daemon, &bob.actor_id, "after the flood").await;

    let status = bob_watch
        .wait_for(
            "the flood rejected and the good message stored",
            WAIT,
            |view| {
                let stored = view
                    .conversation(&good.conversation_id)
                    .and_then(|conversation| conversation.last_message.as_ref())
                    .is_some_and(|last| last.id == good.id);
                let rejected = view.status.as_ref().map_or(0, total_rejected);
                stored && rejected == total_rejected(&before) + JUNK as u64
            },
        )
        .await
        .status
        .unwrap();
    // Log intervals the flood may have touched.
    let intervals = started.elapsed().as_secs() / 2 + 2;

    // The quarantine holds at most its bounds, the newest records, and says
    // what it dropped.
    let mut db = sqlx::PgConnection::connect(&format!("{}/{}", bob.stack.postgres, bob.database))
        .await
        .unwrap();
    let (rows, bytes): (i64, i64) =
        sqlx::query_as("SELECT count(*), coalesce(sum(length(head)), 0)::bigint FROM quarantine")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(
        rows <= MAX_ROWS && bytes <= MAX_BYTES,
        "{rows} rows, {bytes} bytes"
    );
    // A batch writes at most an eighth of the bounds, the newest of its
    // records. Of 5,000 records in batches of at most 4,000 one batch held
    // more than a share, so the quarantine holds at least a full share: one
    // more record (at most 4 KiB) would pass one of its bounds.
    assert!(
        rows >= MAX_ROWS / 8 || bytes > MAX_BYTES / 8 - 4096,
        "the quarantine keeps at least one batch's share: {rows} rows, {bytes} bytes"
    );
    let inbox = status.inbox.unwrap();
    assert_eq!(inbox.quarantine_rows, u64::try_from(rows).unwrap());
    assert_eq!(inbox.quarantine_bytes, u64::try_from(bytes).unwrap());
    assert_eq!(
        inbox.quarantine_dropped,
        JUNK as u64 - u64::try_from(rows).unwrap()
    );
    // One consumer reads both inboxes, so a batch may hold either topic's
    // records in any interleaving and "newest" is the order of arrival, not
    // of offsets. Within a topic arrival follows offsets, so the last junk
    // record to arrive is its topic's last, and it is the quarantine's
    // newest row.
    let (newest_topic, newest_offset): (String, i64) =
        sqlx::query_as("SELECT topic, \"offset\" FROM quarantine ORDER BY id DESC LIMIT 1")
            .fetch_one(&mut db)
            .await
            .unwrap();
    let last_junk_offset = |topic: &str| {
        kafka::read_all(&bob.stack.kafka, topic)
            .iter()
            .filter(|record| record.key == b"junk")
            .map(|record| record.offset)
            .max()
            .unwrap()
    };
    assert!(
        [&data_in, &rpc_in].contains(&&newest_topic),
        "the newest row is junk: {newest_topic}"
    );
    assert_eq!(
        newest_offset,
        last_junk_offset(&newest_topic),
        "the newest junk is kept ({newest_topic})"
    );

    // Every rejection has a line of its own or is counted in a summary,
    // and only a handful have lines of their own.
    let lines = || {
        bob_daemon
            .stderr()
            .lines()
            .filter(|line| line.contains("rejected an inbound record"))
            .count() as u64
    };
    let logged = lines();
    let reasons = status.rejected.len() as u64;
    assert!(
        logged <= BURST as u64 * reasons * intervals,
        "{logged} lines for {reasons} reasons in {intervals} intervals"
    );
    let status = bob_watch
        .wait_until("the summaries", WAIT, |status| {
            status
                .inbox
                .is_some_and(|inbox| inbox.log_lines_suppressed + logged == JUNK as u64)
        })
        .await;
    assert_eq!(lines(), logged, "no line of its own after the flood");
    let summaries = bob_daemon
        .stderr()
        .lines()
        .filter(|line| line.contains("rejected more inbound records than were logged"))
        .count();
    assert!(
        summaries >= 1 && summaries as u64 <= reasons * intervals,
        "{summaries} summaries"
    );
    assert_eq!(
        total_rejected(&status),
        total_rejected(&before) + JUNK as u64
    );
}
