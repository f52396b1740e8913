//! The test harness: real kircd processes against the local stack started by
//! `dev/stack up` (Kafka, PostgreSQL, Valkey on loopback). Each [`Actor`] gets
//! its own database, topic prefix, Valkey key prefix and socket, so tests run
//! side by side on one stack. Readiness comes from kircd's own READY
//! notification and event stream, never from sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod aiven;
mod channels;
mod chat;
mod daemon;
pub mod kafka;
mod tmux;
mod watch;

pub use channels::*;
pub use chat::*;
pub use daemon::*;
pub use tmux::*;
pub use watch::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;

/// How long kircd may take to report READY.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the local stack listens (`dev/stack env`).
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    /// postgres://user:password@host:port (no database).
    pub postgres: String,
    pub valkey: String,
    /// The SASL_SSL (SCRAM over TLS) listener standing in for Aiven's.
    pub kafka_sasl: String,
    pub sasl_user: String,
    pub sasl_password: String,
    /// The CA that signed the SASL_SSL listener's certificate.
    pub ca_file: PathBuf,
    /// The STUN/TURN server (coturn) and its long-term credentials.
    pub turn_url: String,
    pub turn_user: String,
    pub turn_password: String,
}

impl Stack {
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Stack {
            kafka: var("KIRC_STACK_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            postgres: var(
                "KIRC_STACK_POSTGRES_URL",
                "postgres://kirc:kirc@127.0.0.1:15432",
            ),
            valkey: var("KIRC_STACK_VALKEY_URL", "redis://127.0.0.1:16379"),
            kafka_sasl: var("KIRC_STACK_KAFKA_SASL_BOOTSTRAP", "127.0.0.1:19094"),
            sasl_user: var("KIRC_STACK_KAFKA_SASL_USER", "kirc-admin"),
            sasl_password: var("KIRC_STACK_KAFKA_SASL_PASSWORD", "kirc-admin-secret"),
            ca_file: std::env::var_os("KIRC_STACK_KAFKA_CA_FILE").map_or_else(
                || repo_root().join(".stack/kafka/tls/ca.pem"),
                PathBuf::from,
            ),
            turn_url: var("KIRC_STACK_TURN_URL", "turn:127.0.0.1:13478?transport=udp"),
            turn_user: var("KIRC_STACK_TURN_USER", "kirc"),
            turn_password: var("KIRC_STACK_TURN_PASSWORD", "kirc-turn"),
        }
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `dev/stack` with `args` (e.g. `["down", "postgres"]`) and checks it
/// succeeded.
pub fn stack_ctl(args: &[&str]) {
    let output = std::process::Command::new(repo_root().join("dev/stack"))
        .args(args)
        .output()
        .expect("run dev/stack");
    assert!(
        output.status.success(),
        "dev/stack {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A binary of this workspace, built next to the running test.
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Creates a database of its own for a test, named after `name`; returns its
/// name.
pub async fn create_database(stack: &Stack, name: &str) -> String {
    let database = format!("kirc_test_{name}_{}", unique_suffix()).replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", stack.postgres))
        .await
        .unwrap_or_else(|err| {
            panic!("cannot reach the stack's PostgreSQL (run dev/stack up): {err}")
        });
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    database
}

/// A unique string for names of topics, databases and prefixes.
pub fn unique(name: &str) -> String {
    format!("{name}_{}", unique_suffix())
}
