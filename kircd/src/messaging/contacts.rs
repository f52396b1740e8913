//! Contacts: invites, adding, accepting, blocking, and telling contacts
//! about a changed profile.

use std::time::Duration;

use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use prost::Message;
use uuid::Uuid;

use super::{Messaging, MessagingError, now_ms};
use crate::crypto::profile::{self, InviteError};
use crate::store::{self, ContactRecord, ContactState};

impl Messaging {
    pub async fn create_invite(
        &self,
        ttl: Option<Duration>,
    ) -> Result<pb::CreateInviteResponse, MessagingError> {
        self.check_ready()?;
        let ttl = ttl.unwrap_or(self.config.messaging.invite_ttl);
        let expires_at_unix_ms = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let (secret, hash) = profile::new_secret();
        store::insert_invite(&self.pool, Uuid::now_v7(), &hash, expires_at_unix_ms).await?;
        let token = profile::encode_token(&wire::Invite {
            profile: Some(self.signed_profile()),
            secret: secret.to_vec(),
            expires_at_unix_ms,
        });
        Ok(pb::CreateInviteResponse {
            token,
            expires_at_unix_ms,
        })
    }

    pub async fn add_contact(&self, token: &str) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let (invite, profile) = profile::read_token(token, now_ms())?;
        if profile.actor_id == self.me {
            return Err(InviteError::OwnInvite.into());
        }
        if let Some(existing) = self.known(&profile.actor_id) {
            match existing.state {
                ContactState::Blocked => {
                    return Err(MessagingError::Blocked(existing.display_name));
                }
                ContactState::Accepted => {
                    return Err(InviteError::AlreadyUsed(existing.display_name).into());
                }
                ContactState::Request => {}
            }
        }
        let contact = store::save_contact(
            &self.pool,
            &self.identity,
            &profile,
            ContactState::Accepted,
            false,
        )
        .await?
        .contact;
        self.remember(&contact);
        let request = wire::ContactRequest {
            profile: Some(self.signed_profile()),
            invite_secret: invite.secret,
        };
        self.send_control(
            &contact,
            wire::Kind::ContactRequest,
            &request.encode_to_vec(),
        )
        .await?;
        Ok(contact.to_pb())
    }

    pub async fn accept_contact(&self, reference: &str) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let contact = self.resolve(reference)?;
        if contact.state == ContactState::Accepted {
            return Ok(contact.to_pb());
        }
        let contact = store::set_contact_state(
            &self.pool,
            &self.identity,
            contact.actor_id,
            ContactState::Accepted,
        )
        .await?
        .ok_or_else(|| MessagingError::UnknownContact(reference.to_owned()))?;
        self.remember(&contact);
        self.send_accepted(&contact).await?;
        Ok(contact.to_pb())
    }

    pub async fn block_contact(
        &self,
        reference: &str,
        blocked: bool,
    ) -> Result<pb::Contact, MessagingError> {
        self.check_ready()?;
        let contact = self.resolve(reference)?;
        let state = if blocked {
            ContactState::Blocked
        } else {
            ContactState::Accepted
        };
        let contact = store::set_contact_state(&self.pool, &self.identity, contact.actor_id, state)
            .await?
            .ok_or_else(|| MessagingError::UnknownContact(reference.to_owned()))?;
        self.remember(&contact);
        Ok(contact.to_pb())
    }

    pub fn list_contacts(&self) -> Result<Vec<pb::Contact>, MessagingError> {
        self.check_ready()?;
        let contacts = self
            .contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<pb::Contact> = contacts.values().map(ContactRecord::to_pb).collect();
        list.sort_by_key(|contact| contact.added_at_unix_ms);
        Ok(list)
    }

    pub(super) async fn send_accepted(
        &self,
        contact: &ContactRecord,
    ) -> Result<(), MessagingError> {
        let accepted = wire::ContactAccepted {
            profile: Some(self.signed_profile()),
        };
        self.send_control(
            contact,
            wire::Kind::ContactAccepted,
            &accepted.encode_to_vec(),
        )
        .await
    }

    /// Sends the current profile to every contact if it changed since it was
    /// last sent (a new address, credential or display name), so that they
    /// reach this actor where it is now.
    pub(super) async fn publish_profile_if_changed(
        &self,
        contacts: &[ContactRecord],
    ) -> Result<(), MessagingError> {
        let mut current = wire::PublicProfile::decode(self.signed_profile().profile.as_slice())
            .unwrap_or_default();
        current.updated_at_unix_ms = 0;
        let current = current.encode_to_vec();
        let published = store::published_profile(&self.pool).await?;
        if published.as_deref() == Some(current.as_slice()) {
            return Ok(());
        }
        // The first start has nobody to tell; later changes go to everyone
        // who accepted us.
        let recipients: Vec<&ContactRecord> = contacts
            .iter()
            .filter(|contact| contact.state == ContactState::Accepted)
            .collect();
        if published.is_some() {
            tracing::info!(
                contacts = recipients.len(),
                "the public profile changed; sending it to contacts"
            );
            for contact in recipients {
                self.send_accepted(contact).await?;
            }
        }
        store::set_published_profile(&self.pool, &current).await?;
        Ok(())
    }
}
