//! A client's copy of the daemon's state, kept current from `Subscribe`.
//! kirc-tui, the tests and any other tool fold events with this one type, so
//! they all agree with each other and with the daemon.

use crate::v1::{self as pb, event::Kind};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonView {
    pub status: Option<pb::Status>,
    pub contacts: Vec<pb::Contact>,
    /// Most recent activity first.
    pub conversations: Vec<pb::Conversation>,
    /// Contacts' presence and typing, by actor id.
    pub presence: Vec<pb::PeerPresence>,
    /// Transfers, newest first.
    pub transfers: Vec<pb::Transfer>,
}

impl DaemonView {
    /// Folds one event in: a snapshot replaces everything, any other event
    /// updates the part it names.
    pub fn apply(&mut self, event: &pb::Event) {
        match &event.kind {
            Some(Kind::Snapshot(snapshot)) => {
                self.status = snapshot.status.clone();
                self.contacts = snapshot.contacts.clone();
                self.conversations = snapshot.conversations.clone();
                self.presence = snapshot.presence.clone();
                self.transfers = snapshot.transfers.clone();
            }
            Some(Kind::TransferChanged(transfer)) => {
                match self
                    .transfers
                    .iter_mut()
                    .find(|known| known.transfer_id == transfer.transfer_id)
                {
                    Some(known) => *known = transfer.clone(),
                    None => self.transfers.insert(0, transfer.clone()),
                }
            }
            Some(Kind::StatusChanged(status)) => self.status = Some(status.clone()),
            Some(Kind::PeerPresenceChanged(changed)) => {
                match self
                    .presence
                    .iter_mut()
                    .find(|known| known.actor_id == changed.actor_id)
                {
                    Some(known) => *known = changed.clone(),
                    None => self.presence.push(changed.clone()),
                }
            }
            Some(Kind::BackendChanged(changed)) => {
                if let Some(status) = &mut self.status {
                    match status
                        .backends
                        .iter_mut()
                        .find(|backend| backend.backend == changed.backend)
                    {
                        Some(backend) => *backend = changed.clone(),
                        None => status.backends.push(changed.clone()),
                    }
                }
            }
            Some(Kind::TopicsChanged(topics)) => {
                if let Some(status) = &mut self.status {
                    status.topics = topics.topics.clone();
                }
            }
            Some(Kind::RejectionsChanged(rejections)) => {
                if let Some(status) = &mut self.status {
                    status.rejected = rejections.rejected.clone();
                    status.inbox = rejections.inbox;
                }
            }
            Some(Kind::ContactChanged(contact)) => self.upsert_contact(contact),
            Some(Kind::MessageAdded(message)) => self.add_message(message),
            Some(Kind::MessageUpdated(message)) => {
                if let Some(conversation) = self.conversation_mut(&message.conversation_id)
                    && let Some(last) = &mut conversation.last_message
                    && last.id == message.id
                {
                    *last = message.clone();
                }
            }
            Some(Kind::MessageStateChanged(changed)) => {
                if let Some(conversation) = self.conversation_mut(&changed.conversation_id)
                    && let Some(last) = &mut conversation.last_message
                    && last.id == changed.message_id
                {
                    last.state = changed.state;
                }
            }
            Some(Kind::ReadMarkerMoved(moved)) => {
                if let Some(conversation) = self.conversation_mut(&moved.conversation_id) {
                    conversation.last_read_seq = moved.last_read_seq;
                    conversation.unread = moved.unread;
                }
            }
            Some(Kind::ChannelChanged(changed)) => self.change_channel(changed),
            Some(Kind::ConversationMuted(muted)) => {
                if let Some(conversation) = self.conversation_mut(&muted.conversation_id) {
                    conversation.muted = muted.muted;
                }
            }
            Some(Kind::ShuttingDown(_)) | None => {}
        }
    }

    pub fn conversation(&self, id: &str) -> Option<&pb::Conversation> {
        self.conversations
            .iter()
            .find(|conversation| conversation.id == id)
    }

    fn conversation_mut(&mut self, id: &str) -> Option<&mut pb::Conversation> {
        self.conversations
            .iter_mut()
            .find(|conversation| conversation.id == id)
    }

    /// A contact's presence, UNKNOWN if never heard.
    pub fn presence_of(&self, actor_id: &str) -> Option<&pb::PeerPresence> {
        self.presence
            .iter()
            .find(|presence| presence.actor_id == actor_id)
    }

    pub fn transfer(&self, transfer_id: &str) -> Option<&pb::Transfer> {
        self.transfers
            .iter()
            .find(|transfer| transfer.transfer_id == transfer_id)
    }

    pub fn contact(&self, actor_id: &str) -> Option<&pb::Contact> {
        self.contacts
            .iter()
            .find(|contact| contact.actor_id == actor_id)
    }

    fn upsert_contact(&mut self, contact: &pb::Contact) {
        match self
            .contacts
            .iter_mut()
            .find(|known| known.actor_id == contact.actor_id)
        {
            Some(known) => *known = contact.clone(),
            None => self.contacts.push(contact.clone()),
        }
        for conversation in &mut self.conversations {
            for member in &mut conversation.members {
                if member.actor_id == contact.actor_id {
                    member.display_name.clone_from(&contact.display_name);
                }
            }
        }
        match self.conversation_mut(&contact.conversation_id) {
            Some(conversation) => conversation.peer = Some(contact.clone()),
            None => {
                let mut members = Vec::new();
                if let Some(status) = self
                    .status
                    .as_ref()
                    .filter(|status| !status.actor_id.is_empty())
                {
                    members.push(pb::Member {
                        actor_id: status.actor_id.clone(),
                        display_name: status.display_name.clone(),
                        own: true,
                    });
                }
                members.push(pb::Member {
                    actor_id: contact.actor_id.clone(),
                    display_name: contact.display_name.clone(),
                    own: false,
                });
                // Members in the daemon's order (by actor id, as they join
                // together).
                members.sort_by(|one, other| one.actor_id.cmp(&other.actor_id));
                self.conversations.push(pb::Conversation {
                    id: contact.conversation_id.clone(),
                    peer: Some(contact.clone()),
                    last_activity_unix_ms: contact.added_at_unix_ms,
                    kind: pb::ConversationKind::Direct as i32,
                    members,
                    ..pb::Conversation::default()
                });
            }
        }
    }

    fn change_channel(&mut self, changed: &pb::ChannelChanged) {
        let Some(channel) = &changed.channel else {
            return;
        };
        let mut members: Vec<pb::Member> = channel
            .members
            .iter()
            .map(|member| pb::Member {
                actor_id: member.actor_id.clone(),
                display_name: member.display_name.clone(),
                own: member.own,
            })
            .collect();
        match self.conversation_mut(&changed.conversation_id) {
            Some(conversation) => {
                // The roster, then whoever was a member and left: they stay
                // named in the channel's lines.
                for known in conversation.members.drain(..) {
                    if !members
                        .iter()
                        .any(|member| member.actor_id == known.actor_id)
                    {
                        members.push(known);
                    }
                }
                conversation.channel = Some(channel.clone());
                conversation.members = members;
            }
            None => self.conversations.insert(
                0,
                pb::Conversation {
                    id: changed.conversation_id.clone(),
                    kind: pb::ConversationKind::Channel as i32,
                    members,
                    channel: Some(channel.clone()),
                    ..pb::Conversation::default()
                },
            ),
        }
    }

    fn add_message(&mut self, message: &pb::ChatMessage) {
        let Some(index) = self
            .conversations
            .iter()
            .position(|conversation| conversation.id == message.conversation_id)
        else {
            return;
        };
        let mut conversation = self.conversations.remove(index);
        conversation.last_activity_unix_ms = conversation
            .last_activity_unix_ms
            .max(message.created_at_unix_ms);
        // A channel's lines (a join, a kick) are shown, never unread.
        if !message.outgoing
            && message.line == pb::ChannelLine::None as i32
            && message.seq > conversation.last_read_seq
        {
            conversation.unread += 1;
        }
        conversation.last_message = Some(message.clone());
        // Most recent activity first.
        self.conversations.insert(0, conversation);
    }
}
