//! Migrations in place: a database as an earlier kircd left it (migrated up
//! to 0005, a contact, its one-to-one conversation with a `peer` column, a
//! message) is migrated by today's kircd at start, and what it held is all
//! there: the conversation with both actors as members, the contact's
//! profile stamp filled in, the message in history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kirc_proto::v1 as pb;
use kirc_testkit::{Actor, Daemon, create_database, invite};
use kircd::backends::postgres::MIGRATOR;
use kircd::crypto::envelope::conversation_id;
use kircd::crypto::identity::Identity;
use kircd::crypto::profile::read_token;
use prost::Message as _;
use sqlx::Connection;
use std::time::Duration;

/// The last migration of the version before conversations had members.
const BEFORE_MEMBERS: i64 = 5;

#[tokio::test]
async fn a_database_of_one_to_one_conversations_gains_members_in_place() {
    // alice is a real actor; her invite carries her signed profile.
    let alice = Actor::new("alice").await;
    let alice_daemon = Daemon::start(&alice).await;
    let token = invite(&alice_daemon).await;
    let (_, alice_profile) =
        read_token(&token, kirc_proto::unix_ms(std::time::SystemTime::now())).unwrap();

    // bob's database, as the earlier version wrote it.
    let mut bob = Actor::new("bob").await;
    let old = create_database(&bob.stack, "old").await;
    let url = format!("{}/{old}", bob.stack.postgres);
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    MIGRATOR.run_to(BEFORE_MEMBERS, &mut db).await.unwrap();
    let bob_identity = Identity::load(&bob.dir.path().join("identity.key")).unwrap();
    let (bob_id, alice_id) = (bob_identity.id(), alice_profile.actor_id);
    let conversation = conversation_id(bob_id, alice_id);
    let message = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO profile (actor_id, display_name, signing_key, box_key) VALUES ($1, 'bob', $2, $3)")
        .bind(bob_id.as_bytes().as_slice())
        .bind(bob_identity.signing_key().to_bytes().as_slice())
        .bind(bob_identity.box_key().as_bytes().as_slice())
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO contacts (actor_id, display_name, signing_key, box_key, signed_profile, state, peer_accepted)
         VALUES ($1, 'alice', $2, $3, $4, 'accepted', TRUE)",
    )
    .bind(alice_id.as_bytes().as_slice())
    .bind(alice_profile.signing_key.to_bytes().as_slice())
    .bind(alice_profile.box_key.as_bytes().as_slice())
    .bind(alice_profile.signed.encode_to_vec())
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO conversations (id, peer) VALUES ($1, $2)")
        .bind(conversation)
        .bind(alice_id.as_bytes().as_slice())
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, sender, outgoing, body, created_at, state)
         VALUES ($1, $2, $3, FALSE, 'from before the migration', now(), 'received')",
    )
    .bind(message)
    .bind(conversation)
    .bind(alice_id.as_bytes().as_slice())
    .execute(&mut db)
    .await
    .unwrap();

    // Today's kircd on it.
    bob.set("postgres.url", url.as_str());
    let bob_daemon = Daemon::start(&bob).await;
    let conversations = bob_daemon
        .client()
        .await
        .list_conversations(pb::ListConversationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .conversations;
    assert_eq!(conversations.len(), 1, "{conversations:?}");
    let listed = &conversations[0];
    assert_eq!(listed.id, conversation.to_string());
    assert_eq!(listed.kind(), pb::ConversationKind::Direct);
    assert_eq!(
        listed.peer.as_ref().map(|peer| peer.actor_id.as_str()),
        Some(alice.actor_id.as_str())
    );
    let mut members: Vec<(String, String, bool)> = listed
        .members
        .iter()
        .map(|member| {
            (
                member.actor_id.clone(),
                member.display_name.clone(),
                member.own,
            )
        })
        .collect();
    members.sort();
    let mut expected = vec![
        (bob.actor_id.clone(), String::from("bob"), true),
        (alice.actor_id.clone(), String::from("alice"), false),
    ];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(
        listed.last_message.as_ref().map(|last| last.body.as_str()),
        Some("from before the migration")
    );
    // The snapshot says the same as the list.
    let mut watch = bob_daemon.watch().await;
    watch
        .wait_for("the snapshot", Duration::from_secs(10), |view| {
            view.conversations.len() == 1
        })
        .await;
    assert_eq!(watch.view.conversations[0].members, listed.members);

    // The contact's profile stamp, unknown to the old schema, is filled in.
    let stamp: i64 = sqlx::query_scalar("SELECT profile_updated_at FROM contacts")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let alice_stamp =
        kirc_proto::wire::v1::PublicProfile::decode(alice_profile.signed.profile.as_slice())
            .unwrap()
            .updated_at_unix_ms;
    assert_eq!(stamp, alice_stamp);
    let peer_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'conversations' AND column_name = 'peer')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(!peer_column, "the peer column is gone");
    bob_daemon.stop().await;
    alice_daemon.stop().await;
}
