//! The one place the daemon's own types become the daemon API's
//! (`kirc.v1`): for the hub's events and snapshot, and for the API's
//! answers.

use kirc_proto::v1 as pb;

use super::model::{
    ClusterTraffic, DirectState, DirectStatus, InboxFigures, OwnPresence, PeerPresence,
    PresenceState, TransferProgress,
};
use crate::book::Contact;
use crate::crypto::identity::ActorId;
use crate::store::{
    ContactState, ConversationKind, ConversationSummary, LineKind, Membership, Message,
    MessageState, StoredChannel, StoredRole, TransferRecord, TransferState,
};

pub fn contact_state(state: ContactState) -> pb::ContactState {
    match state {
        ContactState::Accepted => pb::ContactState::Accepted,
        ContactState::Request => pb::ContactState::Request,
        ContactState::Blocked => pb::ContactState::Blocked,
    }
}

pub fn contact(contact: &Contact) -> pb::Contact {
    pb::Contact {
        actor_id: contact.actor_id.to_string(),
        display_name: contact.display_name.clone(),
        state: contact_state(contact.state) as i32,
        peer_accepted: contact.peer_accepted,
        conversation_id: contact.conversation_id.to_string(),
        fingerprint: contact.actor_id.fingerprint(),
        delivery_path: format!(
            "{} → {} ({})",
            contact.access.bootstrap_servers,
            contact.access.data_in_topic,
            contact.access.security_protocol
        ),
        added_at_unix_ms: contact.added_at_unix_ms,
    }
}

pub fn message_state(state: MessageState) -> pb::MessageState {
    match state {
        MessageState::Pending => pb::MessageState::Pending,
        MessageState::Queued => pb::MessageState::Queued,
        MessageState::Delivered => pb::MessageState::Delivered,
        MessageState::Received => pb::MessageState::Received,
        MessageState::Read => pb::MessageState::Read,
    }
}

pub fn message(message: &Message) -> pb::ChatMessage {
    pb::ChatMessage {
        id: message.id.to_string(),
        conversation_id: message.conversation_id.to_string(),
        sender: message.sender.map_or_else(String::new, |id| id.to_string()),
        outgoing: message.outgoing,
        action: message.action,
        body: message.body.clone(),
        created_at_unix_ms: message.created_at_unix_ms,
        state: message_state(message.state) as i32,
        transfer_id: message
            .transfer_id
            .map_or_else(String::new, |id| id.simple().to_string()),
        seq: message.seq,
        direct: message.direct,
        channel_seq: message.channel_seq.unwrap_or(0),
        line: message
            .line
            .map_or(pb::ChannelLine::None, |line| channel_line(line.kind)) as i32,
        line_target: message
            .line
            .and_then(|line| line.target)
            .map_or_else(String::new, |target| target.to_string()),
        reply_to: message
            .reply_to
            .map_or_else(String::new, |id| id.to_string()),
        quote: message.quote.as_ref().map(|quote| pb::Quote {
            sender: quote
                .sender
                .map_or_else(String::new, |sender| sender.to_string()),
            excerpt: quote.excerpt.clone(),
            deleted: quote.deleted,
        }),
        edited: message.edited,
        deleted: message.deleted,
        reactions: message
            .reactions
            .iter()
            .map(|reaction| pb::ReactionCount {
                emoji: reaction.emoji.clone(),
                count: reaction.count,
                mine: reaction.mine,
            })
            .collect(),
    }
}

pub fn channel_line(kind: LineKind) -> pb::ChannelLine {
    match kind {
        LineKind::Create => pb::ChannelLine::Create,
        LineKind::Join => pb::ChannelLine::Join,
        LineKind::Part => pb::ChannelLine::Part,
        LineKind::Kick => pb::ChannelLine::Kick,
        LineKind::Ban => pb::ChannelLine::Ban,
        LineKind::Unban => pb::ChannelLine::Unban,
        LineKind::Op => pb::ChannelLine::Op,
        LineKind::Deop => pb::ChannelLine::Deop,
        LineKind::Topic => pb::ChannelLine::Topic,
        LineKind::Moderated => pb::ChannelLine::Moderated,
        LineKind::Unmoderated => pb::ChannelLine::Unmoderated,
    }
}

/// A member as the API shows it: named from `contacts` (this actor from
/// `me`).
fn member(actor: ActorId, me: Option<(ActorId, &str)>, contacts: &[pb::Contact]) -> pb::Member {
    let own = me.is_some_and(|(id, _)| id == actor);
    let id = actor.to_string();
    let display_name = if let Some((_, name)) = me.filter(|_| own) {
        name.to_owned()
    } else {
        contacts
            .iter()
            .find(|contact| contact.actor_id == id)
            .map(|contact| contact.display_name.clone())
            .unwrap_or_default()
    };
    pb::Member {
        actor_id: id,
        display_name,
        own,
    }
}

/// A conversation as the API shows it; `contacts` names its members and,
/// for a one-to-one chat, gives its `peer`.
pub fn conversation(
    summary: &ConversationSummary,
    me: Option<(ActorId, &str)>,
    contacts: &[pb::Contact],
) -> pb::Conversation {
    // A channel's members are its roster, as events show it; a one-to-one
    // chat's, the two of the conversation.
    let members: Vec<pb::Member> = match &summary.channel {
        Some(channel) => channel_info(channel, me.map(|(id, _)| id))
            .members
            .into_iter()
            .map(|member| pb::Member {
                actor_id: member.actor_id,
                display_name: member.display_name,
                own: member.own,
            })
            // Those who left stay named, after the roster.
            .chain(channel.former.iter().map(|(actor, name)| pb::Member {
                actor_id: actor.to_string(),
                display_name: name.clone(),
                own: me.is_some_and(|(id, _)| id == *actor),
            }))
            .collect(),
        None => summary
            .members
            .iter()
            .map(|actor| member(*actor, me, contacts))
            .collect(),
    };
    let peer = match summary.kind {
        ConversationKind::Direct => members.iter().find(|member| !member.own).and_then(|peer| {
            contacts
                .iter()
                .find(|contact| contact.actor_id == peer.actor_id)
                .cloned()
        }),
        ConversationKind::Channel => None,
    };
    pb::Conversation {
        id: summary.id.to_string(),
        peer,
        last_activity_unix_ms: summary.last_activity_unix_ms,
        unread: summary.unread,
        last_read_seq: summary.last_read_seq,
        last_message: summary.last_message.as_ref().map(message),
        kind: match summary.kind {
            ConversationKind::Direct => pb::ConversationKind::Direct as i32,
            ConversationKind::Channel => pb::ConversationKind::Channel as i32,
        },
        members,
        channel: summary
            .channel
            .as_ref()
            .map(|channel| channel_info(channel, me.map(|(id, _)| id))),
        muted: summary.muted,
    }
}

/// A channel as the API shows it; each member named by the profile the
/// roster carries.
pub fn channel_info(channel: &StoredChannel, me: Option<ActorId>) -> pb::ChannelInfo {
    pb::ChannelInfo {
        name: channel.name.clone(),
        topic: channel.topic.clone(),
        moderated: channel.moderated,
        owner: channel.owner.to_string(),
        membership: match channel.membership {
            Membership::Joining => pb::ChannelMembership::Joining,
            Membership::Joined => pb::ChannelMembership::Joined,
            Membership::Left => pb::ChannelMembership::Left,
        } as i32,
        members: channel
            .roster
            .iter()
            .map(|row| pb::ChannelMember {
                actor_id: row.actor_id.to_string(),
                display_name: display_name_of(&row.signed_profile),
                role: match row.role {
                    StoredRole::Member => pb::ChannelRole::Member,
                    StoredRole::Op => pb::ChannelRole::Op,
                    StoredRole::Owner => pb::ChannelRole::Owner,
                } as i32,
                own: Some(row.actor_id) == me,
            })
            .collect(),
    }
}

/// The name in a stored signed profile (its signature was checked when the
/// roster was relayed, and is again when the channel is loaded).
fn display_name_of(signed_profile: &[u8]) -> String {
    use prost::Message as _;
    kirc_proto::wire::v1::SignedProfile::decode(signed_profile)
        .ok()
        .and_then(|signed| {
            kirc_proto::wire::v1::PublicProfile::decode(signed.profile.as_slice()).ok()
        })
        .map(|profile| profile.display_name)
        .unwrap_or_default()
}

pub fn presence_state(state: PresenceState) -> pb::PresenceState {
    match state {
        PresenceState::Unknown => pb::PresenceState::Unknown,
        PresenceState::Online => pb::PresenceState::Online,
        PresenceState::Away => pb::PresenceState::Away,
        PresenceState::Offline => pb::PresenceState::Offline,
    }
}

pub fn direct_path(status: &DirectStatus) -> pb::DirectPath {
    let state = match status.state {
        DirectState::Off => pb::DirectPathState::Off,
        DirectState::Connecting => pb::DirectPathState::Connecting,
        DirectState::Connected => pb::DirectPathState::Connected,
        DirectState::Failed => pb::DirectPathState::Failed,
    };
    pb::DirectPath {
        actor_id: status.actor.to_string(),
        state: state as i32,
        reason: status.reason.clone(),
        route: status.route.unwrap_or_default().to_owned(),
        round_trip_us: status
            .round_trip
            .map_or(0, |rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
        session: status.session.clone(),
    }
}

pub fn peer_presence(presence: &PeerPresence) -> pb::PeerPresence {
    pb::PeerPresence {
        actor_id: presence.actor.to_string(),
        state: presence_state(presence.state) as i32,
        text: presence.text.clone(),
        typing: presence.typing,
    }
}

pub fn own_presence(presence: &OwnPresence) -> pb::Presence {
    pb::Presence {
        state: presence_state(presence.state) as i32,
        text: presence.text.clone(),
        reason: presence.reason.to_owned(),
    }
}

pub fn traffic(traffic: &ClusterTraffic) -> pb::Traffic {
    pb::Traffic {
        cluster: traffic.cluster.clone(),
        budget_bytes_per_second: traffic.budget_bytes_per_second,
        last_second_bytes: traffic.last_second_bytes,
        total_bytes: traffic.total_bytes,
        paced: traffic.paced,
    }
}

pub fn rejections(inbox: &InboxFigures) -> Vec<pb::RejectionCount> {
    inbox
        .rejected
        .iter()
        .map(|(reason, count)| pb::RejectionCount {
            reason: (*reason).to_owned(),
            count: *count,
        })
        .collect()
}

pub fn inbox_counters(inbox: &InboxFigures) -> pb::InboxCounters {
    pb::InboxCounters {
        redelivered: inbox.redelivered,
        quarantine_rows: inbox.quarantine.rows,
        quarantine_bytes: inbox.quarantine.bytes,
        quarantine_dropped: inbox.quarantine.dropped,
        log_lines_suppressed: inbox.log_lines_suppressed,
    }
}

pub fn transfer_state(state: TransferState) -> pb::TransferState {
    match state {
        TransferState::Offered => pb::TransferState::Offered,
        TransferState::Moving => pb::TransferState::Moving,
        TransferState::Complete => pb::TransferState::Complete,
        TransferState::Refused => pb::TransferState::Refused,
        TransferState::Cancelled => pb::TransferState::Cancelled,
        TransferState::Failed => pb::TransferState::Failed,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn transfer(record: &TransferRecord, progress: TransferProgress) -> pb::Transfer {
    pb::Transfer {
        transfer_id: record.id.simple().to_string(),
        contact_id: record.peer.to_string(),
        conversation_id: record.conversation_id.to_string(),
        outgoing: record.outgoing,
        state: transfer_state(record.state) as i32,
        reason: record.reason.clone(),
        files: record
            .files
            .iter()
            .map(|file| pb::TransferFile {
                path: if record.outgoing {
                    file.offered_path.join("/")
                } else {
                    file.local_path.clone()
                },
                size: file.size,
                hash: hex(&file.hash),
                renamed: file.renamed,
            })
            .collect(),
        total_bytes: record.files.iter().map(|file| file.size).sum(),
        done_bytes: progress.done_bytes,
        bytes_per_second: progress.bytes_per_second,
        waiting: progress.waiting && record.state == TransferState::Moving,
        local_path: record.local_path.clone(),
        created_at_unix_ms: record.created_unix_ms,
        updated_at_unix_ms: record.updated_unix_ms,
        moved_bytes: progress.moved_bytes,
    }
}
