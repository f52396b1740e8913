//! Channels, their rosters and their group sessions in PostgreSQL.

use kircd::crypto::group::{InboundSession, OutboundSession, PickleKey};
use kircd::store::{self, ConversationKind, RosterRow, StoredChannel, StoredRole, StoredSession};
use uuid::Uuid;

use super::{database, identity};

fn row(seed: u8, role: StoredRole) -> RosterRow {
    RosterRow {
        actor_id: identity(seed).id(),
        role,
        signed_profile: vec![seed; 8],
    }
}

#[tokio::test]
async fn a_channel_is_a_conversation_whose_roster_is_replaced_whole() {
    let pool = database("store_channels").await;
    let owner = identity(1).id();
    let mut channel = StoredChannel {
        id: Uuid::new_v4(),
        owner,
        name: "#rust".into(),
        topic: "borrowck".into(),
        moderated: false,
        epoch: 0,
        seq: 1,
        joined: true,
        roster: vec![row(1, StoredRole::Owner), row(2, StoredRole::Member)],
        bans: vec![],
    };
    store::save_channel(&pool, &channel).await.unwrap();
    assert_eq!(store::channels(&pool).await.unwrap(), vec![channel.clone()]);

    // Carol joins, bob is banned (and so out), dave is made an op: the
    // roster is stored as it is after that step, in its order.
    channel.roster = vec![
        row(1, StoredRole::Owner),
        row(4, StoredRole::Op),
        row(3, StoredRole::Member),
    ];
    channel.bans = vec![identity(2).id()];
    channel.epoch = 1;
    channel.seq = 4;
    channel.moderated = true;
    store::save_channel(&pool, &channel).await.unwrap();
    assert_eq!(store::channels(&pool).await.unwrap(), vec![channel.clone()]);

    channel.bans.clear();
    store::save_channel(&pool, &channel).await.unwrap();
    assert_eq!(store::channels(&pool).await.unwrap()[0].bans, vec![]);

    // The conversation list shows it as a channel with everyone who was
    // ever in it.
    let listed = store::conversations(&pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, channel.id);
    assert_eq!(listed[0].kind, ConversationKind::Channel);
    assert_eq!(listed[0].members.len(), 4);
}

#[tokio::test]
async fn group_sessions_come_back_in_their_order_and_open_only_with_the_identity() {
    let pool = database("store_group_sessions").await;
    let me = identity(1);
    let key = PickleKey::of(&me);
    let channel = StoredChannel {
        id: Uuid::new_v4(),
        owner: me.id(),
        name: "#k".into(),
        topic: String::new(),
        moderated: false,
        epoch: 0,
        seq: 0,
        joined: true,
        roster: vec![row(1, StoredRole::Owner)],
        bans: vec![],
    };
    store::save_channel(&pool, &channel).await.unwrap();

    let mut first = OutboundSession::new();
    let second = OutboundSession::new();
    let mut theirs = InboundSession::from_share(&first.share()).unwrap();
    let stored = |session_id: String, outbound, pickle, epoch| StoredSession {
        channel_id: channel.id,
        session_id,
        outbound,
        author: me.id(),
        epoch,
        pickle,
    };
    for session in [
        stored(first.id(), true, first.pickle(&key), 0),
        stored(theirs.id(), false, theirs.pickle(&key), 0),
        stored(second.id(), true, second.pickle(&key), 1),
    ] {
        store::save_session(&pool, &session).await.unwrap();
    }
    // The first session moves on and is stored again: same place, new state.
    let message = first.encrypt(b"one");
    store::save_session(&pool, &stored(first.id(), true, first.pickle(&key), 0))
        .await
        .unwrap();

    let sessions = store::sessions(&pool, channel.id).await.unwrap();
    let order: Vec<(&str, bool)> = sessions
        .iter()
        .map(|s| (s.session_id.as_str(), s.outbound))
        .collect();
    assert_eq!(
        order,
        vec![
            (first.id().as_str(), true),
            (first.id().as_str(), false),
            (second.id().as_str(), true),
        ]
    );
    let reloaded = OutboundSession::unpickle(&sessions[0].pickle, &key).unwrap();
    assert_eq!(reloaded.message_index(), 1);
    let mut inbound = InboundSession::unpickle(&sessions[1].pickle, &key).unwrap();
    assert_eq!(inbound.decrypt(&message).unwrap().0, b"one");
    assert_eq!(theirs.decrypt(&message).unwrap().0, b"one");
    // The database alone opens nothing.
    assert!(OutboundSession::unpickle(&sessions[0].pickle, &PickleKey::of(&identity(9))).is_err());
}
