//! Channels when things go wrong or grow: five members who all hear each
//! other in one order (with unread counts and search per channel), the
//! owner killed with `kill -9` during a burst and a member away for a
//! while, and a kicked member who, given the very record of a later post,
//! cannot open it with any session it holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use kirc_testkit::{
    Actor, Daemon, act, create_channel, invite_to, join_by, said, send, wait_channel, wait_said,
};
use kircd::crypto::group::{InboundSession, PickleKey};
use kircd::crypto::identity::Identity;
use prost::Message as _;
use sqlx::{PgPool, Row};

/// `owner` makes `name` and every other daemon joins it.
async fn channel_of(name: &str, owner: &Daemon, members: &[&Daemon]) -> String {
    let channel = create_channel(owner, name).await;
    let token = invite_to(owner, name).await;
    for (joined, member) in members.iter().enumerate() {
        join_by(member, &token).await;
        wait_channel(member, &channel, joined + 2, pb::ChannelMembership::Joined).await;
    }
    for daemon in std::iter::once(&owner).chain(members) {
        wait_channel(
            daemon,
            &channel,
            members.len() + 1,
            pb::ChannelMembership::Joined,
        )
        .await;
    }
    channel
}

async fn database(actor: &Actor) -> PgPool {
    PgPool::connect(&format!("{}/{}", actor.stack.postgres, actor.database))
        .await
        .unwrap()
}

#[tokio::test]
async fn five_members_hear_each_other_in_one_order_with_unread_counts_and_search() {
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let mut actors = Vec::new();
    for name in names {
        actors.push(Actor::new(name).await);
    }
    let mut daemons = Vec::new();
    for actor in &actors {
        daemons.push(Daemon::start(actor).await);
    }
    let members: Vec<&Daemon> = daemons[1..].iter().collect();
    let channel = channel_of("#five", &daemons[0], &members).await;

    // Each says three things, all at once.
    let mut sending = Vec::new();
    for (daemon, name) in daemons.iter().zip(names) {
        let channel = channel.clone();
        sending.push(async move {
            for index in 0..3 {
                send(daemon, &channel, &format!("{name} {index}")).await;
            }
        });
    }
    futures::future::join_all(sending).await;

    let first = wait_said(&daemons[0], &channel, 15).await;
    assert_eq!(first.len(), 15, "{first:?}");
    for (daemon, name) in daemons.iter().zip(names) {
        assert_eq!(
            wait_said(daemon, &channel, 15).await,
            first,
            "{name}'s order"
        );
        // Each author's own three in the order it said them.
        let own: Vec<&String> = first.iter().filter(|said| said.starts_with(name)).collect();
        assert_eq!(
            own,
            [
                &format!("{name} 0"),
                &format!("{name} 1"),
                &format!("{name} 2")
            ]
        );
    }

    // Unread: the twelve others said; lines (the joins) never count.
    for daemon in &daemons {
        let listed = daemon
            .client()
            .await
            .list_conversations(pb::ListConversationsRequest {})
            .await
            .unwrap()
            .into_inner();
        let conversation = listed
            .conversations
            .iter()
            .find(|conversation| conversation.id == channel)
            .unwrap();
        assert_eq!(conversation.unread, 12);
    }
    // Search finds a channel's message in the channel.
    let found = daemons[3]
        .client()
        .await
        .search(pb::SearchRequest {
            query: "carol".into(),
            limit: 10,
            conversation_id: channel.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.messages.len(), 3, "{found:?}");
}

#[tokio::test]
async fn the_owner_killed_mid_burst_and_a_member_away_lose_nothing_and_keep_the_order() {
    let (alice, bob, carol) = (
        Actor::new("alice").await,
        Actor::new("bob").await,
        Actor::new("carol").await,
    );
    let mut alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    let channel = channel_of("#burst", &alice_daemon, &[&bob_daemon, &carol_daemon]).await;
    send(&bob_daemon, &channel, "before").await;
    wait_said(&carol_daemon, &channel, 1).await;

    // Carol goes away; bob says forty things, and the owner is killed
    // after the tenth has reached it.
    assert!(carol_daemon.stop().await.success());
    for index in 0..10 {
        send(&bob_daemon, &channel, &format!("burst {index}")).await;
    }
    wait_said(&alice_daemon, &channel, 6).await;
    alice_daemon.signal(rustix::process::Signal::KILL);
    alice_daemon.wait().await;
    for index in 10..40 {
        send(&bob_daemon, &channel, &format!("burst {index}")).await;
    }
    let alice_daemon = Daemon::start(&alice).await;
    let carol_daemon = Daemon::start(&carol).await;

    let expected: Vec<String> = std::iter::once("before".to_owned())
        .chain((0..40).map(|index| format!("burst {index}")))
        .collect();
    for daemon in [&alice_daemon, &bob_daemon, &carol_daemon] {
        assert_eq!(wait_said(daemon, &channel, 41).await, expected);
    }
    // Exactly once each, and every place given once.
    let history = kirc_testkit::history_all(&carol_daemon, &channel).await;
    let mut places: Vec<u64> = history.iter().map(|message| message.channel_seq).collect();
    places.sort_unstable();
    places.dedup();
    assert_eq!(places.len(), history.len(), "no place twice: {history:#?}");
}

#[tokio::test]
async fn a_kicked_member_given_a_later_post_opens_it_with_none_of_its_sessions() {
    let (alice, bob, carol) = (
        Actor::new("alice").await,
        Actor::new("bob").await,
        Actor::new("carol").await,
    );
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    let channel = channel_of("#kick", &alice_daemon, &[&bob_daemon, &carol_daemon]).await;
    send(&bob_daemon, &channel, "carol may read this").await;
    send(&alice_daemon, &channel, "and this").await;
    wait_said(&carol_daemon, &channel, 2).await;

    act(
        &alice_daemon,
        &channel,
        pb::ChannelLine::Kick,
        "carol",
        "out",
    )
    .await
    .unwrap();
    wait_channel(&carol_daemon, &channel, 2, pb::ChannelMembership::Left).await;
    send(&bob_daemon, &channel, "carol may not").await;
    send(&alice_daemon, &channel, "nor this").await;
    wait_said(&bob_daemon, &channel, 4).await;
    assert_eq!(said(&carol_daemon, &channel).await.len(), 2);

    // The posts as the owner relayed them, from its database: what carol
    // would hold had she kept reading the channel.
    let owner = database(&alice).await;
    let relays: Vec<Vec<u8>> = sqlx::query("SELECT relay FROM channel_steps ORDER BY seq")
        .fetch_all(&owner)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("relay"))
        .collect();
    let posts: Vec<wire::ChannelPost> = relays
        .iter()
        .filter_map(
            |relay| match wire::ChannelRelay::decode(relay.as_slice()).ok()?.item? {
                wire::channel_relay::Item::Post(post) => Some(post),
                wire::channel_relay::Item::Event(_) => None,
            },
        )
        .collect();
    assert_eq!(posts.len(), 4);

    // Every session carol holds, opened with her own key.
    let carol_keys = Identity::load(&carol.dir.path().join("identity.key")).unwrap();
    let key = PickleKey::of(&carol_keys);
    let pickles: Vec<String> = sqlx::query("SELECT pickle FROM group_sessions WHERE NOT outbound")
        .fetch_all(&database(&carol).await)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("pickle"))
        .collect();
    assert!(pickles.len() >= 2, "carol held bob's and alice's sessions");
    let opens = |post: &wire::ChannelPost| {
        pickles.iter().any(|pickle| {
            InboundSession::unpickle(pickle, &key)
                .unwrap()
                .decrypt(&post.ciphertext)
                .is_ok()
        })
    };
    assert!(
        opens(&posts[0]) && opens(&posts[1]),
        "before the kick she could"
    );
    assert!(
        !opens(&posts[2]) && !opens(&posts[3]),
        "after it she cannot"
    );
}
