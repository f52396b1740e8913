//! A channel in its three shapes: as the rules and checks hold it
//! ([`ChannelView`]), as PostgreSQL stores it, and as the owner relays it
//! (`wire::ChannelState`).

use std::collections::{BTreeMap, BTreeSet};

use kirc_proto::wire::v1 as wire;

use super::relay::{ChannelView, RelayError};
use super::rules::{Role, Roster};
use crate::crypto::profile::{VerifiedProfile, verify_profile};
use crate::store::{Membership, RosterRow, StoredChannel, StoredRole};

fn wire_role(role: Role) -> wire::ChannelRole {
    match role {
        Role::Member => wire::ChannelRole::Member,
        Role::Op => wire::ChannelRole::Op,
        Role::Owner => wire::ChannelRole::Owner,
    }
}

fn stored_role(role: Role) -> StoredRole {
    match role {
        Role::Member => StoredRole::Member,
        Role::Op => StoredRole::Op,
        Role::Owner => StoredRole::Owner,
    }
}

fn role_of(role: StoredRole) -> Role {
    match role {
        StoredRole::Member => Role::Member,
        StoredRole::Op => Role::Op,
        StoredRole::Owner => Role::Owner,
    }
}

impl ChannelView {
    /// A new channel owned by `owner`, whose profile is given.
    pub fn created(
        id: uuid::Uuid,
        name: String,
        topic: String,
        owner: VerifiedProfile,
        capacity: usize,
    ) -> Self {
        ChannelView {
            id,
            owner: owner.actor_id,
            name,
            roster: Roster::new(owner.actor_id, topic, capacity),
            profiles: BTreeMap::from([(owner.actor_id, owner)]),
            seq: 0,
        }
    }

    /// What the owner relays of the channel.
    pub fn state(&self) -> wire::ChannelState {
        wire::ChannelState {
            channel_id: self.id.as_bytes().to_vec(),
            name: self.name.clone(),
            topic: self.roster.topic.clone(),
            moderated: self.roster.moderated,
            members: self
                .roster
                .members
                .iter()
                .filter_map(|(actor, role)| {
                    Some(wire::ChannelMember {
                        profile: Some(self.profiles.get(actor)?.signed.clone()),
                        role: wire_role(*role) as i32,
                    })
                })
                .collect(),
            epoch: self.roster.epoch,
        }
    }

    pub fn stored(&self, membership: Membership) -> StoredChannel {
        StoredChannel {
            id: self.id,
            owner: self.owner,
            name: self.name.clone(),
            topic: self.roster.topic.clone(),
            moderated: self.roster.moderated,
            epoch: self.roster.epoch,
            seq: self.seq,
            membership,
            roster: self
                .roster
                .members
                .iter()
                .filter_map(|(actor, role)| {
                    let profile = self.profiles.get(actor)?;
                    Some(RosterRow {
                        actor_id: *actor,
                        role: stored_role(*role),
                        signed_profile: prost::Message::encode_to_vec(&profile.signed),
                        display_name: profile.profile.display_name.clone(),
                    })
                })
                .collect(),
            bans: self.roster.bans.iter().copied().collect(),
            former: Vec::new(),
        }
    }

    /// The channel as stored, every profile verified again; `capacity` is
    /// the owner's limit (a member's view takes what the owner relays).
    pub fn from_stored(stored: &StoredChannel, capacity: usize) -> Result<Self, RelayError> {
        let mut members = BTreeMap::new();
        let mut profiles = BTreeMap::new();
        for row in &stored.roster {
            let signed = prost::Message::decode(row.signed_profile.as_slice())
                .map_err(|_| RelayError::BadRoster("a stored profile does not decode"))?;
            let profile = verify_profile(&signed)
                .map_err(|_| RelayError::BadRoster("a stored profile is forged"))?;
            if profile.actor_id != row.actor_id {
                return Err(RelayError::BadRoster("a stored profile is someone else's"));
            }
            members.insert(row.actor_id, role_of(row.role));
            profiles.insert(row.actor_id, profile);
        }
        Ok(ChannelView {
            id: stored.id,
            owner: stored.owner,
            name: stored.name.clone(),
            roster: Roster {
                members,
                bans: stored.bans.iter().copied().collect::<BTreeSet<_>>(),
                topic: stored.topic.clone(),
                moderated: stored.moderated,
                epoch: stored.epoch,
                capacity,
            },
            profiles,
            seq: stored.seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::ActorId;
    use crate::testing::{identity, profile};

    #[test]
    fn a_channel_keeps_its_shape_through_the_store_and_the_wire() {
        let owner = identity(1);
        let mut view = ChannelView::created(
            uuid::Uuid::new_v4(),
            "#k".into(),
            "topic".into(),
            profile(&owner, "owner", 1),
            10,
        );
        let member = identity(2);
        view.roster.members.insert(member.id(), Role::Op);
        view.profiles
            .insert(member.id(), profile(&member, "member", 1));
        view.roster
            .bans
            .insert(ActorId::from_slice(&[9; 16]).unwrap());
        view.roster.epoch = 2;
        view.seq = 7;

        let stored = view.stored(Membership::Joined);
        let back = ChannelView::from_stored(&stored, 10).unwrap();
        assert_eq!(back.roster, view.roster);
        assert_eq!(back.seq, 7);
        assert_eq!(
            back.profiles.keys().collect::<Vec<_>>(),
            view.profiles.keys().collect::<Vec<_>>()
        );

        // A member sees what the owner relays: everything but the bans.
        let relayed = ChannelView::from_state(owner.id(), &view.state(), 7).unwrap();
        assert_eq!(relayed.roster.members, view.roster.members);
        assert_eq!(relayed.roster.topic, "topic");
        assert_eq!(relayed.roster.epoch, 2);
        assert!(relayed.roster.bans.is_empty());

        // A stored row whose profile is another actor's is refused.
        let mut swapped = stored.clone();
        swapped.roster[0].actor_id = ActorId::from_slice(&[8; 16]).unwrap();
        assert!(ChannelView::from_stored(&swapped, 10).is_err());
    }
}
