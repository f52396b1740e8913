//! Snapshots of a channel: the conversation list with it, its title, the
//! join / part / kick / topic lines among the messages, and the member
//! list that `/names` shows.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kirc_proto::v1::{self as pb, event::Kind};

use super::tests::{BOB, CAROL, ME, T0, connected, draw, healthy, message};
use crate::state::{Scrollback, State};
use crate::update::{Msg, update};

const DAVE: &str = "da5eda5eda5eda5eda5eda5eda5eda5e";
const CHANNEL: &str = "0193c0de-0000-7000-8000-00000000c0de";

fn member(actor_id: &str, name: &str, role: pb::ChannelRole) -> pb::ChannelMember {
    pb::ChannelMember {
        actor_id: actor_id.into(),
        display_name: name.into(),
        role: role as i32,
        own: actor_id == ME,
    }
}

fn line(seq: u64, actor: &str, kind: pb::ChannelLine, target: &str, text: &str) -> pb::ChatMessage {
    pb::ChatMessage {
        line: kind as i32,
        line_target: target.into(),
        ..channel_message(seq, actor, text)
    }
}

fn channel_message(seq: u64, sender: &str, body: &str) -> pb::ChatMessage {
    pb::ChatMessage {
        conversation_id: CHANNEL.into(),
        channel_seq: seq,
        ..message(
            seq,
            sender,
            body,
            i64::try_from(seq).unwrap(),
            pb::MessageState::Received,
        )
    }
}

/// alice (this actor) owns #rust; bob is an operator, carol a member, dave
/// (no contact of alice's) was removed.
fn with_channel_open(mut state: State) -> State {
    let channel = pb::ChannelInfo {
        name: "#rust".into(),
        topic: "the borrow checker is your friend".into(),
        moderated: true,
        owner: ME.into(),
        membership: pb::ChannelMembership::Joined as i32,
        members: vec![
            member(ME, "alice", pb::ChannelRole::Owner),
            member(BOB, "bob", pb::ChannelRole::Op),
            member(CAROL, "carol", pb::ChannelRole::Member),
        ],
    };
    update(
        &mut state,
        Msg::Event(Box::new(pb::Event {
            seq: 2,
            at_unix_ms: T0,
            kind: Some(Kind::ChannelChanged(pb::ChannelChanged {
                conversation_id: CHANNEL.into(),
                channel: Some(channel),
            })),
        })),
    );
    let mut dave_says = channel_message(4, DAVE, "buy cheap watches");
    dave_says.channel_seq = 5;
    let messages = vec![
        line(1, ME, pb::ChannelLine::Create, "", ""),
        line(2, BOB, pb::ChannelLine::Join, "", ""),
        line(3, DAVE, pb::ChannelLine::Join, "", ""),
        dave_says,
        line(6, ME, pb::ChannelLine::Kick, DAVE, "spam"),
        line(7, ME, pb::ChannelLine::Op, BOB, ""),
        line(
            8,
            BOB,
            pb::ChannelLine::Topic,
            "",
            "the borrow checker is your friend",
        ),
        channel_message(
            9,
            BOB,
            "welcome, carol: alice asked me to keep an eye on things",
        ),
        line(10, ME, pb::ChannelLine::Moderated, "", ""),
        channel_message(11, ME, "quiet time: questions to bob please"),
    ];
    // dave is not a contact: his name comes with a line's roster, here
    // the conversation's members as the daemon last knew them.
    if let Some(conversation) = state
        .view
        .conversations
        .iter_mut()
        .find(|conversation| conversation.id == CHANNEL)
    {
        conversation.members.push(pb::Member {
            actor_id: DAVE.into(),
            display_name: "dave".into(),
            own: false,
        });
        conversation.unread = 1;
        conversation.last_read_seq = 8;
    }
    state.open = Some(CHANNEL.into());
    state
        .scrollbacks
        .insert(CHANNEL.into(), Scrollback::whole(messages));
    state.now_unix_ms = T0;
    state
}

fn type_line(state: &mut State, text: &str) -> Vec<crate::update::Effect> {
    state.input.insert_str(text);
    update(
        state,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    )
}

#[test]
fn channel() {
    let state = with_channel_open(connected(healthy()));
    insta::assert_snapshot!(draw(&state, 100, 20).backend());
}

#[test]
fn channel_with_its_members() {
    let state = with_channel_open(connected(healthy()));
    insta::assert_snapshot!(draw(&state, 120, 16).backend());
}

#[test]
fn channel_names() {
    let mut state = with_channel_open(connected(healthy()));
    type_line(&mut state, "/names");
    insta::assert_snapshot!(draw(&state, 100, 20).backend());
}

#[test]
fn channel_commands_ask_the_daemon_for_the_open_channel() {
    use crate::update::Effect;
    let mut state = with_channel_open(connected(healthy()));
    let act = |act: pb::ChannelLine, member: &str, text: &str| Effect::ChannelAct {
        channel: CHANNEL.into(),
        act,
        member: member.into(),
        text: text.into(),
    };
    let cases = [
        (
            "hello all",
            Effect::Send {
                to: CHANNEL.into(),
                text: "hello all".into(),
                action: false,
                reply_to: None,
            },
        ),
        (
            "/kick carol be nice",
            act(pb::ChannelLine::Kick, "carol", "be nice"),
        ),
        ("/ban carol", act(pb::ChannelLine::Ban, "carol", "")),
        ("/op carol", act(pb::ChannelLine::Op, "carol", "")),
        ("/topic new", act(pb::ChannelLine::Topic, "", "new")),
        ("/mode -m", act(pb::ChannelLine::Unmoderated, "", "")),
        ("/part bye", act(pb::ChannelLine::Part, "", "bye")),
        ("/invite", Effect::ChannelInvite(CHANNEL.into())),
        ("/join kircc1:xyz", Effect::JoinChannel("kircc1:xyz".into())),
        (
            "/create #go gophers",
            Effect::CreateChannel {
                name: "#go".into(),
                topic: "gophers".into(),
            },
        ),
    ];
    for (typed, expected) in cases {
        let effects = type_line(&mut state, typed);
        assert!(effects.contains(&expected), "{typed}: {effects:?}");
    }
    // Outside a channel, its commands say so.
    state.open = Some("conv-bob".into());
    let effects = type_line(&mut state, "/kick carol");
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::ChannelAct { .. }))
    );
    assert!(state.notice.as_ref().is_some_and(|notice| notice.error));
    // `/msg #rust` opens it.
    type_line(&mut state, "/msg #rust");
    assert_eq!(state.open.as_deref(), Some(CHANNEL));
}
