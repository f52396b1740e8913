//! The actor's own PostgreSQL database: a small lazy pool, the embedded
//! migrations from `migrations/`, and the health probe.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::backends::supervise::Probe;
use crate::config::PostgresConfig;

/// The migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", describe(.0))]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// sqlx's messages for the usual failures, shortened to what matters.
fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => String::from("no connection within the probe timeout"),
        other => other.to_string(),
    }
}

impl Error {
    /// The SQLSTATE code of a server error.
    fn code(&self) -> Option<String> {
        match self {
            Error::Database(sqlx::Error::Database(db)) => db.code().map(|code| code.into_owned()),
            _ => None,
        }
    }

    /// What the user can do about it, for `kircd doctor`.
    pub fn fix(&self, config: &PostgresConfig) -> String {
        match self.code().as_deref() {
            Some("3D000") => {
                let database = config.endpoint.rsplit('/').next().unwrap_or("kirc");
                format!(
                    "create the database (local stack: dev/stack createdb {database}), or point postgres.url at an existing one"
                )
            }
            Some("28P01" | "28000") => String::from(
                "check the user in postgres.url and the password (postgres.password_file or KIRC_POSTGRES_PASSWORD)",
            ),
            _ if matches!(self, Error::Migrate(_)) => String::from(
                "the database holds a schema kircd does not know: use a database of its own",
            ),
            _ => String::from(
                "check postgres.url and that the server is running (local stack: dev/stack up postgres)",
            ),
        }
    }
}

/// The connection settings, with the password from its own setting if given.
pub fn connect_options(config: &PostgresConfig) -> Result<PgConnectOptions, Error> {
    let mut options =
        PgConnectOptions::from_str(config.url.expose_secret())?.application_name("kircd");
    if let Some(password) = &config.password {
        options = options.password(password.expose_secret());
    }
    Ok(options)
}

/// The wait for a pooled connection that is logged as slow.
const SLOW_ACQUIRE: Duration = Duration::from_millis(250);

/// A pooled connection idle longer than this is pinged before it is handed
/// out; one used more recently is trusted.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// A pool that connects on first use, so that kircd starts while the server
/// is away and recovers by itself when it returns.
pub fn pool(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        // A wait for a connection longer than this says the pool is too
        // small for the load, or the process was starved; either is worth
        // a line in the log long before a call fails on the timeout.
        .acquire_slow_threshold(SLOW_ACQUIRE)
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings every connection it hands out by default: a second
        // round trip in front of every statement, on the send path twice.
        // A connection that has just been used is alive; one that sat idle
        // may have been closed by the server (a restart, a managed
        // service's idle cut) and is pinged, so a dead one is replaced
        // instead of failing the statement. One broken in the last 10 s
        // fails one statement and is dropped on release (sqlx tests it
        // then); its caller retries: the inbox with its backoff, kirc-tui
        // a SendMessage under the same idempotency key. At a managed
        // service's distance the ping was a whole extra round trip.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// The pool reports only that it timed out; one direct connection attempt
/// tells why (refused, authentication, no such database).
async fn explain_timeout(options: &PgConnectOptions, timeout: Duration) -> Error {
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Err(err)) => Error::Database(err),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Error::Database(sqlx::Error::PoolTimedOut)
        }
        Err(_) => Error::Database(sqlx::Error::PoolTimedOut),
    }
}

/// Runs `check` on the pool, explaining a pool timeout.
async fn with_explained_timeout<T>(
    options: &PgConnectOptions,
    timeout: Duration,
    check: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match check.await {
        Err(Error::Database(sqlx::Error::PoolTimedOut)) => {
            Err(explain_timeout(options, timeout).await)
        }
        other => other,
    }
}

/// What a check of the database found.
#[derive(Debug, Clone)]
pub struct DatabaseReport {
    pub server_version: String,
    pub pending_migrations: usize,
}

/// Checks the server and counts the migrations not yet applied.
pub async fn inspect(
    pool: &PgPool,
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<DatabaseReport, Error> {
    with_explained_timeout(options, timeout, inspect_pool(pool)).await
}

async fn inspect_pool(pool: &PgPool) -> Result<DatabaseReport, Error> {
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if has_table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let pending_migrations = MIGRATOR
        .iter()
        .filter(|migration| {
            !migration.migration_type.is_down_migration() && !applied.contains(&migration.version)
        })
        .count();
    Ok(DatabaseReport {
        server_version,
        pending_migrations,
    })
}

/// The supervisor's view of the database: the first successful check applies
/// the migrations and records this run.
#[derive(Debug)]
pub struct PostgresProbe {
    pool: PgPool,
    options: PgConnectOptions,
    timeout: Duration,
    migrated: Arc<tokio::sync::OnceCell<()>>,
}

impl PostgresProbe {
    pub fn new(pool: PgPool, options: PgConnectOptions, timeout: Duration) -> Self {
        PostgresProbe {
            pool,
            options,
            timeout,
            migrated: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await?;
        sqlx::query("INSERT INTO daemon_runs (version, pid, hostname) VALUES ($1, $2, $3)")
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(i32::try_from(std::process::id()).unwrap_or(i32::MAX))
            .bind(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            )
            .execute(&self.pool)
            .await?;
        tracing::info!(
            migrations = MIGRATOR.iter().count(),
            "database schema up to date"
        );
        Ok(())
    }
}

impl Probe for PostgresProbe {
    async fn probe(&mut self) -> Result<(), String> {
        let ping = async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(Error::from)
        };
        with_explained_timeout(&self.options, self.timeout, ping)
            .await
            .map_err(|err| err.to_string())?;
        self.migrated
            .get_or_try_init(|| self.migrate())
            .await
            .map_err(|err| err.to_string())?;
        Ok(())
    }
}
