//! Channels, their rosters and their group sessions in PostgreSQL.

use kircd::crypto::group::{InboundSession, OutboundSession, PickleKey};
use kircd::crypto::identity::ActorId;
use kircd::store::{
    self, ChannelItem, ConversationKind, Line, LineKind, MessageState, RosterRow, Step,
    StoredChannel, StoredRole, StoredSession,
};
use uuid::Uuid;

use super::{database, identity};

fn row(seed: u8, role: StoredRole) -> RosterRow {
    RosterRow {
        actor_id: identity(seed).id(),
        role,
        signed_profile: vec![seed; 8],
        display_name: format!("member {seed}"),
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
        membership: store::Membership::Joined,
        roster: vec![row(1, StoredRole::Owner), row(2, StoredRole::Member)],
        bans: vec![],
        former: vec![],
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
    // bob, gone, stays named among the former members.
    let loaded = store::channels(&pool).await.unwrap().remove(0);
    assert_eq!(
        loaded.former,
        vec![(identity(2).id(), "member 2".to_owned())]
    );
    channel.former = loaded.former.clone();
    assert_eq!(loaded, channel);

    channel.bans.clear();
    channel.former.clear();
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
        membership: store::Membership::Joined,
        roster: vec![row(1, StoredRole::Owner)],
        bans: vec![],
        former: vec![],
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

fn channel_of(owner: ActorId) -> StoredChannel {
    StoredChannel {
        id: Uuid::new_v4(),
        owner,
        name: "#k".into(),
        topic: String::new(),
        moderated: false,
        epoch: 0,
        seq: 0,
        membership: store::Membership::Joined,
        roster: vec![row(1, StoredRole::Owner), row(2, StoredRole::Member)],
        bans: vec![],
        former: vec![],
    }
}

fn item<'a>(channel: &StoredChannel, sender: ActorId, body: &'a str, seq: u64) -> ChannelItem<'a> {
    ChannelItem {
        id: Uuid::now_v7(),
        channel_id: channel.id,
        sender,
        outgoing: false,
        action: false,
        body,
        created_at_unix_ms: 1_000,
        channel_seq: Some(seq),
        line: None,
        state: MessageState::Received,
        post: None,
        outbox_key: None,
        idempotency_key: None,
        reply_to: None,
        act: None,
    }
}

#[tokio::test]
async fn an_invite_admits_until_it_expires() {
    let pool = database("store_channel_invites").await;
    let channel = channel_of(identity(1).id());
    store::save_channel(&pool, &channel).await.unwrap();
    let now = kirc_proto::unix_ms(std::time::SystemTime::now());
    store::add_channel_invite(&pool, channel.id, &[1; 32], now + 60_000)
        .await
        .unwrap();
    store::add_channel_invite(&pool, channel.id, &[2; 32], now - 1)
        .await
        .unwrap();
    assert_eq!(
        store::channel_of_invite(&pool, &[1; 32]).await.unwrap(),
        Some(channel.id)
    );
    assert_eq!(
        store::channel_of_invite(&pool, &[1; 32]).await.unwrap(),
        Some(channel.id),
        "reusable"
    );
    assert_eq!(
        store::channel_of_invite(&pool, &[2; 32]).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store::channel_of_invite(&pool, &[3; 32]).await.unwrap(),
        None,
        "unknown"
    );
}

#[tokio::test]
async fn an_owners_step_is_stored_with_its_line_and_found_by_its_cause() {
    let pool = database("store_channel_steps").await;
    let owner = identity(1).id();
    let member = identity(2).id();
    let mut channel = channel_of(owner);
    store::save_channel(&pool, &channel).await.unwrap();

    channel.seq = 1;
    let cause = Uuid::now_v7();
    let step = Step {
        channel_id: channel.id,
        seq: 1,
        cause_id: Some(cause),
        relay: b"relay one".to_vec(),
        recipients: vec![member],
    };
    let post = item(&channel, member, "hello", 1);
    let stored = store::save_step(&pool, &channel, &step, Some(&post))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.channel_seq, Some(1));
    assert_eq!(stored.body, "hello");
    assert_eq!(
        store::step_of_cause(&pool, cause).await.unwrap(),
        Some(step.clone())
    );
    assert_eq!(
        store::step_of_cause(&pool, Uuid::now_v7()).await.unwrap(),
        None
    );
    assert_eq!(
        store::steps_not_fanned_out(&pool).await.unwrap(),
        vec![step.clone()]
    );
    store::step_fanned_out(&pool, channel.id, 1).await.unwrap();
    assert_eq!(store::steps_not_fanned_out(&pool).await.unwrap(), vec![]);
    assert_eq!(store::channels(&pool).await.unwrap()[0].seq, 1);

    // The same place again is refused whole: neither the step nor its line.
    let again = Step {
        cause_id: None,
        ..step
    };
    let line = ChannelItem {
        id: Uuid::now_v7(),
        line: Some(Line {
            kind: LineKind::Join,
            target: None,
        }),
        ..item(&channel, member, "", 1)
    };
    assert!(
        store::save_step(&pool, &channel, &again, Some(&line))
            .await
            .is_err()
    );
    let listed = store::conversations(&pool).await.unwrap();
    assert_eq!(listed[0].unread, 1);

    // A line is shown but never unread.
    channel.seq = 2;
    let join = Step {
        channel_id: channel.id,
        seq: 2,
        cause_id: None,
        relay: b"relay two".to_vec(),
        recipients: vec![member],
    };
    let stored = store::save_step(&pool, &channel, &join, Some(&line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.line, line.line);
    let listed = store::conversations(&pool).await.unwrap();
    assert_eq!(listed[0].unread, 1);
    assert_eq!(listed[0].last_message.as_ref().unwrap().id, line.id);
    // A copy relayed again is stored once.
    assert_eq!(
        store::insert_channel_item(&pool, &post).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn posts_wait_for_their_session_within_a_bound() {
    let pool = database("store_channel_waiting").await;
    let channel = channel_of(identity(1).id());
    store::save_channel(&pool, &channel).await.unwrap();
    for (seq, session) in [(3, "s1"), (1, "s1"), (2, "s2")] {
        assert!(
            store::add_waiting(&pool, channel.id, seq, session, &[seq as u8], 3)
                .await
                .unwrap()
        );
    }
    assert!(
        !store::add_waiting(&pool, channel.id, 4, "s1", b"over", 3)
            .await
            .unwrap()
    );
    assert_eq!(
        store::waiting_for(&pool, channel.id, "s1").await.unwrap(),
        vec![(1, vec![1]), (3, vec![3])]
    );
    store::drop_waiting(&pool, channel.id, &[1, 3])
        .await
        .unwrap();
    assert_eq!(
        store::waiting_for(&pool, channel.id, "s1").await.unwrap(),
        vec![]
    );
    assert_eq!(
        store::waiting_for(&pool, channel.id, "s2")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_own_post_waits_for_the_channel_to_send_it_and_is_placed_once() {
    let pool = database("store_channel_own_posts").await;
    let me = identity(2).id();
    let channel = channel_of(identity(1).id());
    store::save_channel(&pool, &channel).await.unwrap();
    let key = Uuid::new_v4();
    let post = ChannelItem {
        outgoing: true,
        state: MessageState::Pending,
        channel_seq: None,
        post: Some(b"the post"),
        outbox_key: Some(key),
        idempotency_key: None,
        ..item(&channel, me, "mine", 0)
    };
    store::insert_channel_item(&pool, &post)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store::unsent_channel_posts(&pool).await.unwrap(),
        vec![(post.id, channel.id, b"the post".to_vec(), key)]
    );
    assert!(
        store::pending_outgoing(&pool).await.unwrap().is_empty(),
        "not the one-to-one resend's"
    );
    let placed = store::place_own_post(&pool, channel.id, post.id, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(placed.channel_seq, Some(7));
    assert_eq!(placed.state, MessageState::Received);
    assert!(store::unsent_channel_posts(&pool).await.unwrap().is_empty());
    assert_eq!(
        store::place_own_post(&pool, channel.id, post.id, 8)
            .await
            .unwrap(),
        None
    );
}
