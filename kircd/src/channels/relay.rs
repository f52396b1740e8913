//! What a member accepts from a channel's owner: each relayed step is
//! checked against the channel as the member follows it (`ChannelView`),
//! as a pure function, before anything is stored or decrypted. The owner is
//! trusted with the order and the rights (it is the channel's server), not
//! with authorship: a post must carry its author's signature, and its
//! author must be in the roster.

use std::collections::BTreeMap;

use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

use super::rules::{Role, Roster, check_name};
use crate::crypto::group::{GroupError, MAX_GROUP_CIPHERTEXT_BYTES, verify_post};
use crate::crypto::identity::ActorId;
use crate::crypto::profile::{VerifiedProfile, verify_profile};

/// The most members a channel may have: the owner relays the whole roster
/// (a signed profile of about 500 bytes each) in one envelope of at most
/// 64 KiB, and it bounds what a hostile owner can make a member verify.
pub const MAX_ROSTER: usize = 100;

/// Why a relayed step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("the relay is for another channel")]
    WrongChannel,
    #[error("the relay is not from the channel's owner")]
    NotFromOwner,
    #[error("a step at or before one already applied (a copy or a replay)")]
    Old,
    #[error("the relay is malformed: {0}")]
    Malformed(&'static str),
    #[error("the roster is not acceptable: {0}")]
    BadRoster(&'static str),
    #[error("the post's author is not in the channel")]
    NotAMember,
    #[error("the post's author signature does not verify")]
    Forged,
}

/// A post that passed every check but its decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPost {
    pub post_id: Uuid,
    pub author: ActorId,
    pub session_id: String,
    pub ciphertext: Vec<u8>,
}

/// A scrollback line that is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEvent {
    pub kind: wire::ChannelEventKind,
    pub actor: ActorId,
    pub target: Option<ActorId>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Post(CheckedPost),
    Event(CheckedEvent),
}

/// A checked relay: its place, what it says, and the channel after it if
/// it changed.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub seq: u64,
    pub step: Step,
    pub view: Option<ChannelView>,
}

/// A channel as a member follows it: the owner's last relayed state, each
/// member's profile verified.
#[derive(Debug, Clone)]
pub struct ChannelView {
    pub id: Uuid,
    pub owner: ActorId,
    pub name: String,
    pub roster: Roster,
    pub profiles: BTreeMap<ActorId, VerifiedProfile>,
    /// The last step applied.
    pub seq: u64,
}

impl ChannelView {
    /// The channel as `state` describes it, owned by `owner`: every
    /// profile verifies, no member twice, one owner and it is `owner`.
    pub fn from_state(
        owner: ActorId,
        state: &wire::ChannelState,
        seq: u64,
    ) -> Result<Self, RelayError> {
        let id = Uuid::from_slice(&state.channel_id)
            .map_err(|_| RelayError::Malformed("the channel id"))?;
        check_name(&state.name).map_err(|_| RelayError::Malformed("the channel's name"))?;
        if state.members.len() > MAX_ROSTER {
            return Err(RelayError::BadRoster("too many members"));
        }
        let mut roster = Roster::new(owner, state.topic.clone(), MAX_ROSTER);
        roster.members.clear();
        roster.moderated = state.moderated;
        roster.epoch = state.epoch;
        let mut profiles = BTreeMap::new();
        for member in &state.members {
            let signed = member
                .profile
                .as_ref()
                .ok_or(RelayError::BadRoster("a member without a profile"))?;
            let profile =
                verify_profile(signed).map_err(|_| RelayError::BadRoster("a profile is forged"))?;
            let role = match wire::ChannelRole::try_from(member.role) {
                Ok(wire::ChannelRole::Member) => Role::Member,
                Ok(wire::ChannelRole::Op) => Role::Op,
                Ok(wire::ChannelRole::Owner) if profile.actor_id == owner => Role::Owner,
                Ok(wire::ChannelRole::Owner) => {
                    return Err(RelayError::BadRoster("someone else as the owner"));
                }
                Err(_) => return Err(RelayError::BadRoster("an unknown role")),
            };
            if roster.members.insert(profile.actor_id, role).is_some() {
                return Err(RelayError::BadRoster("a member twice"));
            }
            profiles.insert(profile.actor_id, profile);
        }
        if roster.role(&owner) != Some(Role::Owner) {
            return Err(RelayError::BadRoster("the owner is missing"));
        }
        Ok(ChannelView {
            id,
            owner,
            name: state.name.clone(),
            roster,
            profiles,
            seq,
        })
    }

    /// Checks one relayed step, sent by `sender`.
    pub fn check(
        &self,
        sender: ActorId,
        relay: &wire::ChannelRelay,
    ) -> Result<Accepted, RelayError> {
        if sender != self.owner {
            return Err(RelayError::NotFromOwner);
        }
        if relay.channel_id != self.id.as_bytes() {
            return Err(RelayError::WrongChannel);
        }
        if relay.seq <= self.seq {
            return Err(RelayError::Old);
        }
        let view = match &relay.state {
            Some(state) if state.channel_id != relay.channel_id => {
                return Err(RelayError::WrongChannel);
            }
            Some(state) => Some(ChannelView::from_state(self.owner, state, relay.seq)?),
            None => None,
        };
        let step = match &relay.item {
            Some(wire::channel_relay::Item::Post(post)) => Step::Post(self.check_post(post)?),
            Some(wire::channel_relay::Item::Event(event)) => Step::Event(check_event(event)?),
            None => return Err(RelayError::Malformed("neither a post nor an event")),
        };
        Ok(Accepted {
            seq: relay.seq,
            step,
            view,
        })
    }

    /// A post is judged against the roster before its step: its author is
    /// a member, and signed it.
    fn check_post(&self, post: &wire::ChannelPost) -> Result<CheckedPost, RelayError> {
        if post.channel_id != self.id.as_bytes() {
            return Err(RelayError::WrongChannel);
        }
        let post_id =
            Uuid::from_slice(&post.post_id).map_err(|_| RelayError::Malformed("the post id"))?;
        let author =
            ActorId::from_slice(&post.author).ok_or(RelayError::Malformed("the author"))?;
        if post.session_id.is_empty()
            || post.session_id.len() > 64
            || post.ciphertext.is_empty()
            || post.ciphertext.len() > MAX_GROUP_CIPHERTEXT_BYTES
        {
            return Err(RelayError::Malformed("the post's size"));
        }
        let profile = self.profiles.get(&author).ok_or(RelayError::NotAMember)?;
        verify_post(
            &profile.signing_key,
            self.id,
            post_id,
            &post.session_id,
            &post.ciphertext,
            &post.signature,
        )
        .map_err(|_: GroupError| RelayError::Forged)?;
        Ok(CheckedPost {
            post_id,
            author,
            session_id: post.session_id.clone(),
            ciphertext: post.ciphertext.clone(),
        })
    }
}

fn check_event(event: &wire::ChannelEvent) -> Result<CheckedEvent, RelayError> {
    let kind = wire::ChannelEventKind::try_from(event.kind)
        .ok()
        .filter(|kind| *kind != wire::ChannelEventKind::Unspecified)
        .ok_or(RelayError::Malformed("an unknown event"))?;
    let actor =
        ActorId::from_slice(&event.actor).ok_or(RelayError::Malformed("the event's actor"))?;
    let target = match event.target.as_slice() {
        [] => None,
        bytes => {
            Some(ActorId::from_slice(bytes).ok_or(RelayError::Malformed("the event's target"))?)
        }
    };
    if event.text.chars().count() > super::rules::MAX_TOPIC_CHARS {
        return Err(RelayError::Malformed("the event's text"));
    }
    Ok(CheckedEvent {
        kind,
        actor,
        target,
        text: event.text.clone(),
    })
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
