//! No secret in any log: two Aiven actors (kircd and public users, ACLs)
//! over the SASL_SSL listener, every log at trace level, a conversation with presence and
//! typing; then every log file and stderr is searched for each password,
//! each identity key (base64 as stored, hex) and each message text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use kirc_proto::v1 as pb;
use kirc_testkit::aiven::{aiven_actor, secret_file};
use kirc_testkit::{Actor, Daemon, Stack, Watcher, befriend, send, unique};
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(60);

/// An Aiven actor (its kircd and public users on the SASL_SSL listener)
/// whose database has a role of its own with a password nothing else uses;
/// every log at trace level. Returns the actor and its secrets.
async fn sasl_actor(name: &str, stack: &Stack) -> (Actor, Vec<String>) {
    let mut actor = Actor::new(name).await;
    let role = unique(&format!("{name}_role")).replace('.', "_");
    let pg_password = format!("pg-{}", unique("secret"));
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", stack.postgres))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{pg_password}'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    // kircd init made the tables as the stack's user; the role may use them.
    let mut db = sqlx::PgConnection::connect(&format!("{}/{}", stack.postgres, actor.database))
        .await
        .unwrap();
    for what in [
        "SCHEMA public",
        "ALL TABLES IN SCHEMA public",
        "ALL SEQUENCES IN SCHEMA public",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT ALL ON {what} TO \"{role}\""
        )))
        .execute(&mut db)
        .await
        .unwrap();
    }
    let host = stack.postgres.rsplit_once('@').unwrap().1;
    let access = aiven_actor(&mut actor);
    let postgres_password = secret_file(actor.dir.path(), "postgres-password", &pg_password);
    let url = format!("postgres://{role}@{host}/{}", actor.database);
    actor
        .set("postgres.url", url)
        .set("postgres.password_file", postgres_password)
        .set("log.level", "trace");
    (
        actor,
        vec![access.kircd_password, access.public_password, pg_password],
    )
}

/// The identity file's two keys, as stored (base64) and in hex.
fn key_forms(actor: &Actor) -> Vec<String> {
    let text = std::fs::read_to_string(actor.dir.path().join("identity.key")).unwrap();
    let mut forms = Vec::new();
    for line in text.lines() {
        let Some((_, encoded)) = line.split_once(": ") else {
            continue;
        };
        let encoded = encoded.trim();
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        forms.push(encoded.to_owned());
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw));
        forms.push(raw.iter().map(|byte| format!("{byte:02x}")).collect());
    }
    assert_eq!(forms.len(), 6, "two keys in {text:?}");
    forms
}

fn logs_of(daemon: &Daemon) -> String {
    let mut all = daemon.stderr();
    for entry in std::fs::read_dir(&daemon.log_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    all
}

#[tokio::test]
async fn no_password_key_or_message_text_reaches_any_log() {
    let stack = Stack::from_env();
    let (alice, mut secrets) = sasl_actor("alice", &stack).await;
    let (bob, bob_secrets) = sasl_actor("bob", &stack).await;
    secrets.extend(bob_secrets);
    secrets.extend(key_forms(&alice));
    secrets.extend(key_forms(&bob));
    let texts = [
        format!("first secret line {}", unique("a")),
        format!("second secret line {}", unique("b")),
    ];
    secrets.extend(texts.iter().cloned());

    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let _alice_tui = Watcher::interactive(&alice_daemon.socket).await;
    let mut bob_watch = bob_daemon.watch().await;
    let sent = send(&alice_daemon, &bob.actor_id, &texts[0]).await;
    alice_daemon
        .client()
        .await
        .report_typing(pb::ReportTypingRequest {
            conversation_id: sent.conversation_id.clone(),
            active: true,
        })
        .await
        .unwrap();
    send(&bob_daemon, &alice.actor_id, &texts[1]).await;
    bob_watch
        .wait_for("both messages and alice online at bob", WAIT, |view| {
            view.conversation(&sent.conversation_id)
                .and_then(|conversation| conversation.last_message.as_ref())
                .is_some_and(|last| last.body == texts[1])
                && view
                    .presence_of(&alice.actor_id)
                    .is_some_and(|presence| presence.state == pb::PresenceState::Online as i32)
        })
        .await;
    let mut alice_daemon = alice_daemon;
    let mut bob_daemon = bob_daemon;
    for daemon in [&mut alice_daemon, &mut bob_daemon] {
        daemon.signal(rustix::process::Signal::TERM);
        assert!(daemon.wait().await.success());
    }

    for daemon in [&alice_daemon, &bob_daemon] {
        let logs = logs_of(daemon);
        assert!(
            logs.lines().count() > 100,
            "trace logs were written: {} lines",
            logs.lines().count()
        );
        let found: Vec<&String> = secrets
            .iter()
            .filter(|secret| logs.contains(secret.as_str()))
            .collect();
        assert!(found.is_empty(), "{} secrets in the logs", found.len());
    }
}
