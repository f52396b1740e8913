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
/// to back, or one every `rhythm` ([`super::floor::Rhythm`]).
pub async fn pg_commits(
    actor: &kirc_testkit::Actor,
    count: usize,
    row: CommitRow,
    rhythm: Option<Duration>,
) -> Vec<Duration> {
    let mut commits = Commits::new(actor, row).await;
    let mut samples = Vec::with_capacity(count);
    let mut rhythm = super::floor::Rhythm::new(rhythm);
    for _ in 0..count {
        rhythm.wait().await;
        samples.push(commits.sample().await);
    }
    commits.finish().await;
    samples
}

/// A table of its own on an actor's database, to time durable one-row
/// commits of `row` into.
pub struct Commits {
    connection: sqlx::PgConnection,
    row: CommitRow,
    table: String,
    insert: String,
    envelope: Vec<u8>,
    conversation: uuid::Uuid,
}

impl Commits {
    pub async fn new(actor: &kirc_testkit::Actor, row: CommitRow) -> Self {
        use sqlx::Connection as _;
        let url = format!("{}/{}", actor.stack.postgres, actor.database);
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        // The table's name is ours, made of a UUID's hex digits.
        let table = format!("bench_floor_{}", uuid::Uuid::now_v7().simple());
        let (create, insert) = match row {
            CommitRow::Floor => (
                format!(
                    "CREATE TABLE {table} (id uuid PRIMARY KEY, body text NOT NULL,
                     envelope bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                ),
                format!("INSERT INTO {table} (id, body, envelope) VALUES ($1, $2, $3)"),
            ),
            CommitRow::Message => (
                format!("CREATE TABLE {table} (LIKE messages INCLUDING ALL)"),
                format!(
                    "INSERT INTO {table} (id, conversation_id, sender, outgoing, action, body, created_at, state, envelope, idempotency_key)
                     VALUES ($1, $4, $5, TRUE, FALSE, $2, now(), 'pending', $3, $6)
                     ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                     RETURNING id"
                ),
            ),
        };
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut connection)
            .await
            .unwrap();
        Commits {
            connection,
            row,
            table,
            insert,
            envelope: vec![7u8; 220],
            conversation: uuid::Uuid::now_v7(),
        }
    }

    /// One durable commit of one row, timed.
    pub async fn sample(&mut self) -> Duration {
        let id = uuid::Uuid::now_v7();
        let start = Instant::now();
        let query = sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(id)
            .bind("a typical chat line of about sixty bytes, give or take a few")
            .bind(&self.envelope);
        match self.row {
            CommitRow::Floor => query.execute(&mut self.connection).await.map(drop),
            CommitRow::Message => query
                .bind(self.conversation)
                .bind([1u8; 32].as_slice())
                .bind(id.to_string())
                .fetch_one(&mut self.connection)
                .await
                .map(drop),
        }
        .unwrap();
        start.elapsed()
    }

    /// Drops the table.
    pub async fn finish(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", self.table)))
            .execute(&mut self.connection)
            .await
            .unwrap();
    }
}
