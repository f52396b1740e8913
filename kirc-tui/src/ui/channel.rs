//! A channel on screen: its row in the conversation list, its title, and
//! its members beside the scrollback.

use kirc_proto::v1::{ChannelMembership, ChannelRole, PresenceState};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::{list_row, presence_dot};
use crate::layout::{sanitize, truncate};
use crate::state::State;

/// A channel in the conversation list: `#name`, dim once left, with its
/// unread count and mentions as for a contact.
pub(super) fn entry(
    state: &State,
    index: usize,
    conversation: &kirc_proto::v1::Conversation,
    channel: &kirc_proto::v1::ChannelInfo,
    width: u16,
) -> Line<'static> {
    let mark = match channel.membership() {
        ChannelMembership::Joining => "…",
        _ if state.mentions.contains(&conversation.id) => "@",
        _ => " ",
    };
    let mut style = Style::new().fg(state.theme.accent);
    if channel.membership() != ChannelMembership::Joined {
        style = style.add_modifier(Modifier::DIM);
    }
    list_row(
        state,
        index,
        conversation,
        mark,
        None,
        sanitize(&channel.name),
        style,
        width,
    )
}

/// The open channel's members, operators first, each with a presence dot
/// (this actor's own presence for itself).
pub(super) fn render_members(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let Some(channel) = state
        .open_conversation()
        .and_then(|conversation| conversation.channel.as_ref())
    else {
        return;
    };
    let block = Block::new()
        .borders(Borders::LEFT)
        .title(format!(" {} ", channel.members.len()).dim());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut members: Vec<_> = channel.members.iter().collect();
    members.sort_by_key(|member| {
        (
            member.role() == ChannelRole::Member,
            member.display_name.to_lowercase(),
        )
    });
    let own_presence = state
        .view
        .status
        .as_ref()
        .and_then(|status| status.presence.as_ref())
        .map(kirc_proto::v1::Presence::state);
    let lines: Vec<Line<'static>> = members
        .into_iter()
        .map(|member| {
            let (dot, colour) = if member.own {
                match own_presence {
                    Some(PresenceState::Away) => ("●", state.theme.attention),
                    _ => ("●", state.theme.good),
                }
            } else {
                presence_dot(state, &member.actor_id)
            };
            let mark = match member.role() {
                ChannelRole::Owner | ChannelRole::Op => "@",
                ChannelRole::Member => " ",
            };
            let room = usize::from(inner.width).saturating_sub(4);
            Line::from(vec![
                Span::styled(format!("{dot} "), Style::new().fg(colour)),
                Span::styled(mark, Style::new().fg(state.theme.attention)),
                Span::styled(
                    truncate(&sanitize(&member.display_name), room),
                    Style::new().fg(state.theme.name_colour(&member.actor_id)),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A channel's title: its name, topic, members (online of all) and where
/// this actor stands.
pub(super) fn title(state: &State, channel: &kirc_proto::v1::ChannelInfo) -> Line<'static> {
    let online = channel
        .members
        .iter()
        .filter(|member| {
            member.own
                || state
                    .view
                    .presence_of(&member.actor_id)
                    .map(|presence| presence.state())
                    == Some(PresenceState::Online)
        })
        .count();
    let (what, colour) = match channel.membership() {
        ChannelMembership::Joining => {
            ("waiting for the owner to let you in", state.theme.attention)
        }
        ChannelMembership::Left => ("you are no longer in this channel", state.theme.bad),
        _ if channel.moderated => ("moderated: only operators speak", state.theme.attention),
        _ => ("", state.theme.good),
    };
    let topic = if channel.topic.is_empty() {
        String::new()
    } else {
        format!(" {} ", sanitize(&channel.topic))
    };
    // Where this actor stands comes before the topic: on a narrow title it
    // is what must not be cut off.
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(" {what} ")
    };
    Line::from(vec![
        Span::styled(
            format!(" {} ", sanitize(&channel.name)),
            Style::new().bold().reversed().fg(state.theme.accent),
        ),
        Span::styled(what, Style::new().fg(colour)),
        Span::styled(
            format!(" {online}/{} here ", channel.members.len()),
            Style::new().dim(),
        ),
        Span::raw(topic),
    ])
}
