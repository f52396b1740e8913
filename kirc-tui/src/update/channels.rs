//! The channel commands: what each asks of the daemon, checked first
//! against what the open conversation is.

use super::*;
use crate::commands::ChannelAct;

/// The open conversation, if it is a channel.
pub(super) fn open_channel(state: &State) -> Option<&pb::Conversation> {
    state
        .open_conversation()
        .filter(|conversation| conversation.channel.is_some())
}

/// A channel this actor holds, by `#name` (any case) or id.
pub(super) fn find_channel<'a>(state: &'a State, name: &str) -> Option<&'a pb::Conversation> {
    state.view.conversations.iter().find(|conversation| {
        conversation.id == name
            || conversation
                .channel
                .as_ref()
                .is_some_and(|channel| channel.name.eq_ignore_ascii_case(name))
    })
}

/// The IRC-style roster: `@` for the owner and operators.
pub(crate) fn names(channel: &pb::ChannelInfo) -> String {
    let mut names: Vec<String> = channel
        .members
        .iter()
        .map(|member| {
            let mark = match member.role() {
                pb::ChannelRole::Owner | pb::ChannelRole::Op => "@",
                pb::ChannelRole::Member => "",
            };
            format!("{mark}{}", crate::ui::sanitize(&member.display_name))
        })
        .collect();
    names.sort_by_key(|name| (!name.starts_with('@'), name.to_lowercase()));
    names.join(" ")
}

/// Asks the owner (through the daemon) to do `act` in the open channel.
fn act(
    state: &mut State,
    act: pb::ChannelLine,
    member: String,
    text: String,
    effects: &mut Vec<Effect>,
) {
    match open_channel(state) {
        Some(conversation) => effects.push(Effect::ChannelAct {
            channel: conversation.id.clone(),
            act,
            member,
            text,
        }),
        None => notice(state, "open a channel first: /join #channel", true),
    }
}

/// What the open channel holds of itself: `(name, channel)`.
fn open_info(state: &State) -> Option<&pb::ChannelInfo> {
    open_channel(state).and_then(|conversation| conversation.channel.as_ref())
}

pub(super) fn run(state: &mut State, command: Command, effects: &mut Vec<Effect>) {
    match command {
        Command::Invite(None) => {
            let effect = match open_channel(state) {
                Some(conversation) => Effect::ChannelInvite(conversation.id.clone()),
                None => Effect::CreateInvite,
            };
            effects.push(effect);
        }
        Command::Invite(Some(channel)) => effects.push(Effect::ChannelInvite(channel)),
        Command::CreateChannel { name, topic } => {
            effects.push(Effect::CreateChannel { name, topic });
        }
        Command::Join(target) if target.starts_with('#') => {
            match find_channel(state, &target).map(|conversation| conversation.id.clone()) {
                Some(id) => open(state, &id, effects),
                None => notice(
                    state,
                    format!("you are not in {target}; join it with its token"),
                    true,
                ),
            }
        }
        Command::Join(token) => effects.push(Effect::JoinChannel(token)),
        Command::Part(reason) => act(state, pb::ChannelLine::Part, String::new(), reason, effects),
        Command::Topic(Some(text)) => {
            act(state, pb::ChannelLine::Topic, String::new(), text, effects);
        }
        Command::Topic(None) => {
            let shown = open_info(state).map(|channel| {
                if channel.topic.is_empty() {
                    format!("{} has no topic", channel.name)
                } else {
                    format!("{}: {}", channel.name, channel.topic)
                }
            });
            match shown {
                Some(text) => notice(state, text, false),
                None => notice(state, "open a channel first: /join #channel", true),
            }
        }
        Command::Names => {
            let shown =
                open_info(state).map(|channel| format!("{}: {}", channel.name, names(channel)));
            match shown {
                Some(text) => notice(state, text, false),
                None => notice(state, "open a channel first: /join #channel", true),
            }
        }
        Command::Act {
            act: kind,
            member,
            reason,
        } => {
            let line = match kind {
                ChannelAct::Kick => pb::ChannelLine::Kick,
                ChannelAct::Ban => pb::ChannelLine::Ban,
                ChannelAct::Unban => pb::ChannelLine::Unban,
                ChannelAct::Op => pb::ChannelLine::Op,
                ChannelAct::Deop => pb::ChannelLine::Deop,
            };
            act(state, line, member, reason, effects);
        }
        Command::Moderate(on) => {
            let line = if on {
                pb::ChannelLine::Moderated
            } else {
                pb::ChannelLine::Unmoderated
            };
            act(state, line, String::new(), String::new(), effects);
        }
        _ => {}
    }
}
