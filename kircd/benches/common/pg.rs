//! The PostgreSQL floor: durable one-row commits on an actor's database,
//! timed one by one.

use std::time::{Duration, Instant};

/// What [`pg_commits`] inserts, one durable commit per row.
#[derive(Clone, Copy, Debug)]
pub enum CommitRow {
    /// One row of a message's shape (uuid key, text, bytes, time) in a
    /// table with nothing else: the floor of a commit.
    Floor,
    /// The row kircd writes for a sent message: the send path's INSERT into
    /// a copy of its `messages` table with every index (the search index,
    /// the conversation order, the idempotency key).
    Message,
}

/// Durable commits on `actor`'s database, one at a time, of `row`: back
/// to back, or one every `rhythm` ([`super::Rhythm`]).
pub async fn pg_commits(
    actor: &kirc_testkit::Actor,
    count: usize,
    row: CommitRow,
    rhythm: Option<Duration>,
) -> Vec<Duration> {
    use sqlx::Connection as _;
    let url = format!("{}/{}", actor.stack.postgres, actor.database);
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let (create, insert) = match row {
        CommitRow::Floor => (
            "CREATE TABLE bench_floor (id uuid PRIMARY KEY, body text NOT NULL,
             envelope bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            "INSERT INTO bench_floor (id, body, envelope) VALUES ($1, $2, $3)",
        ),
        CommitRow::Message => (
            "CREATE TABLE bench_floor (LIKE messages INCLUDING ALL)",
            "INSERT INTO bench_floor (id, conversation_id, sender, outgoing, action, body, created_at, state, envelope, idempotency_key)
             VALUES ($1, $4, $5, TRUE, FALSE, $2, now(), 'pending', $3, $6)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING id",
        ),
    };
    sqlx::query(create).execute(&mut connection).await.unwrap();
    let envelope = vec![7u8; 220];
    let conversation = uuid::Uuid::now_v7();
    let mut samples = Vec::with_capacity(count);
    let mut rhythm = super::Rhythm::new(rhythm);
    for _ in 0..count {
        rhythm.wait().await;
        let id = uuid::Uuid::now_v7();
        let start = Instant::now();
        let query = sqlx::query(insert)
            .bind(id)
            .bind("a typical chat line of about sixty bytes, give or take a few")
            .bind(&envelope);
        match row {
            CommitRow::Floor => query.execute(&mut connection).await.map(drop),
            CommitRow::Message => query
                .bind(conversation)
                .bind([1u8; 32].as_slice())
                .bind(id.to_string())
                .fetch_one(&mut connection)
                .await
                .map(drop),
        }
        .unwrap();
        samples.push(start.elapsed());
    }
    sqlx::query("DROP TABLE bench_floor")
        .execute(&mut connection)
        .await
        .unwrap();
    samples
}
