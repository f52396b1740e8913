//! Contacts: invites, adding, accepting, blocking, and telling contacts
//! about a changed profile; and the handlers of the two control kinds that
//! carry a profile (a contact request, an acceptance).

mod handlers;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kirc_proto::wire::v1 as wire;
use prost::Message;
use sqlx::PgPool;
use uuid::Uuid;

use crate::book::{BookError, Contact, ContactBook, LookupError, NotLoaded};
use crate::config::Config;
use crate::crypto::identity::{ActorId, Identity};
use crate::crypto::profile::{self, InviteError};
use crate::hub::Hub;
use crate::store::{self, ContactState, StoreError};
use crate::transport::TransportError;
use crate::transport::outbound::Outbound;
pub use handlers::{AcceptedHandler, ChannelJoins, RequestHandler};

#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error(transparent)]
    NotLoaded(#[from] NotLoaded),
    #[error(transparent)]
    Book(#[from] BookError),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0} is blocked; unblock them first")]
    Blocked(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl From<StoreError> for ContactsError {
    fn from(err: StoreError) -> Self {
        ContactsError::Book(BookError::Store(err))
    }
}

fn now_ms() -> i64 {
    kirc_proto::unix_ms(SystemTime::now())
}

/// This actor's public profile: who it is and how to reach it, as contacts
/// get it (signed, stamped when made).
#[derive(Debug, Clone)]
pub struct OwnProfile {
    identity: Arc<Identity>,
    display_name: String,
    kafka: wire::KafkaAccess,
    /// The `Feature` values the profile lists.
    features: Vec<i32>,
}

impl OwnProfile {
    pub fn new(identity: Arc<Identity>, config: &Config) -> Self {
        let public = &config.public;
        OwnProfile {
            identity,
            display_name: config.actor_name.clone(),
            kafka: wire::KafkaAccess {
                bootstrap_servers: public.bootstrap_servers.clone(),
                data_in_topic: config.kafka.topics.data_in.clone(),
                rpc_in_topic: config.kafka.topics.rpc_in.clone(),
                security_protocol: public.security_protocol.clone(),
                sasl_mechanism: public.sasl_mechanism.clone(),
                username: public.username.clone().unwrap_or_default(),
                password: public
                    .password
                    .as_ref()
                    .map(|password| secrecy::ExposeSecret::expose_secret(password).to_owned())
                    .unwrap_or_default(),
                ca_pem: public.ca_pem.clone().unwrap_or_default(),
            },
            features: if config.messaging.receipt_ranges {
                vec![
                    wire::Feature::ReceiptRanges as i32,
                    wire::Feature::MessageActs as i32,
                ]
            } else {
                vec![wire::Feature::MessageActs as i32]
            },
        }
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    fn unsigned(&self, updated_at_unix_ms: i64) -> wire::PublicProfile {
        wire::PublicProfile {
            signing_key: self.identity.signing_key().to_bytes().to_vec(),
            box_key: self.identity.box_key().as_bytes().to_vec(),
            display_name: self.display_name.clone(),
            kafka: Some(self.kafka.clone()),
            updated_at_unix_ms,
            features: self.features.clone(),
        }
    }

    /// The profile, signed now.
    pub fn signed(&self) -> wire::SignedProfile {
        profile::sign_profile(&self.identity, &self.unsigned(now_ms()))
    }
}

/// The contact operations the API calls.
#[derive(Debug)]
pub struct Contacts {
    pool: PgPool,
    hub: Arc<Hub>,
    book: Arc<ContactBook>,
    outbound: Arc<Outbound>,
    own: OwnProfile,
    invite_ttl: Duration,
}

impl Contacts {
    pub fn new(
        pool: PgPool,
        hub: Arc<Hub>,
        book: Arc<ContactBook>,
        outbound: Arc<Outbound>,
        own: OwnProfile,
        invite_ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Contacts {
            pool,
            hub,
            book,
            outbound,
            own,
            invite_ttl,
        })
    }

    /// A new invite: the signed profile, a one-time secret (only its hash is
    /// kept) and an expiry, as one token. Returns the token and the expiry.
    pub async fn create_invite(
        &self,
        ttl: Option<Duration>,
    ) -> Result<(String, i64), ContactsError> {
        self.book.check_loaded()?;
        let ttl = ttl.unwrap_or(self.invite_ttl);
        let expires_at_unix_ms = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let (secret, hash) = profile::new_secret();
        store::insert_invite(&self.pool, Uuid::now_v7(), &hash, expires_at_unix_ms).await?;
        let token = profile::encode_token(&wire::Invite {
            profile: Some(self.own.signed()),
            secret: secret.to_vec(),
            expires_at_unix_ms,
        });
        Ok((token, expires_at_unix_ms))
    }

    /// Adds the actor of an invite token and sends it a contact request.
    pub async fn add_contact(&self, token: &str) -> Result<Arc<Contact>, ContactsError> {
        self.book.check_loaded()?;
        let (invite, verified) = profile::read_token(token, now_ms())?;
        self.request(&invite, &verified, None).await
    }

    /// Asks the owner of a channel (from the channel's token) to let this
    /// actor in: the contact request carries the channel, so the owner
    /// accepts a contact and a member at once. An owner that is a contact
    /// already is asked again, with the channel.
    pub async fn join_channel(
        &self,
        token: &profile::ChannelToken,
    ) -> Result<Arc<Contact>, ContactsError> {
        self.book.check_loaded()?;
        self.request(&token.owner, &token.profile, Some(token.channel_id))
            .await
    }

    async fn request(
        &self,
        invite: &wire::Invite,
        verified: &profile::VerifiedProfile,
        channel: Option<Uuid>,
    ) -> Result<Arc<Contact>, ContactsError> {
        if verified.actor_id == self.book.me() {
            return Err(InviteError::OwnInvite.into());
        }
        if let Some(existing) = self.book.get(&verified.actor_id) {
            match existing.state {
                ContactState::Blocked => {
                    return Err(ContactsError::Blocked(existing.display_name.clone()));
                }
                ContactState::Accepted if channel.is_none() => {
                    return Err(InviteError::AlreadyUsed(existing.display_name.clone()).into());
                }
                ContactState::Accepted | ContactState::Request => {}
            }
        }
        let (contact, _) = self
            .book
            .save(&self.pool, verified, ContactState::Accepted, false)
            .await?;
        self.hub.contact_changed(&contact);
        let request = wire::ContactRequest {
            profile: Some(self.own.signed()),
            invite_secret: invite.secret.clone(),
            channel_join: channel.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
        };
        self.outbound
            .send_control(
                &contact,
                wire::Kind::ContactRequest,
                &request.encode_to_vec(),
            )
            .await?;
        Ok(contact)
    }

    /// Accepts a message request (and tells the requester).
    pub async fn accept_contact(&self, reference: &str) -> Result<Arc<Contact>, ContactsError> {
        self.book.check_loaded()?;
        let contact = self.book.resolve(reference)?;
        if contact.is_accepted() {
            return Ok(contact);
        }
        let contact = self
            .book
            .set_state(&self.pool, contact.actor_id, ContactState::Accepted)
            .await?
            .ok_or_else(|| LookupError::Unknown(reference.to_owned()))?;
        self.hub.contact_changed(&contact);
        send_accepted(&self.outbound, &self.own, &contact).await?;
        Ok(contact)
    }

    /// Blocks (or unblocks) a contact: everything from a blocked actor is
    /// dropped and counted.
    pub async fn block_contact(
        &self,
        reference: &str,
        blocked: bool,
    ) -> Result<Arc<Contact>, ContactsError> {
        self.book.check_loaded()?;
        let contact = self.book.resolve(reference)?;
        let state = if blocked {
            ContactState::Blocked
        } else {
            ContactState::Accepted
        };
        let contact = self
            .book
            .set_state(&self.pool, contact.actor_id, state)
            .await?
            .ok_or_else(|| LookupError::Unknown(reference.to_owned()))?;
        self.hub.contact_changed(&contact);
        Ok(contact)
    }

    /// This actor: its id and display name.
    pub fn me(&self) -> (ActorId, &str) {
        (self.book.me(), self.own.display_name())
    }

    pub fn list_contacts(&self) -> Result<Vec<Arc<Contact>>, ContactsError> {
        self.book.check_loaded()?;
        Ok(self.book.all())
    }

    /// Sends the current profile to every contact if it changed since it was
    /// last sent (a new address, credential or display name), so that they
    /// reach this actor where it is now.
    pub async fn publish_profile_if_changed(&self) -> Result<(), ContactsError> {
        let current = self.own.unsigned(0).encode_to_vec();
        let published = store::published_profile(&self.pool).await?;
        if published.as_deref() == Some(current.as_slice()) {
            return Ok(());
        }
        // The first start has nobody to tell; later changes go to everyone
        // who accepted us.
        if published.is_some() {
            let recipients = self.book.accepted();
            tracing::info!(
                contacts = recipients.len(),
                "the public profile changed; sending it to contacts"
            );
            for contact in recipients {
                send_accepted(&self.outbound, &self.own, &contact).await?;
            }
        }
        store::set_published_profile(&self.pool, &current).await?;
        Ok(())
    }
}

/// Tells `contact` that we accept it, with our current profile.
async fn send_accepted(
    outbound: &Outbound,
    own: &OwnProfile,
    contact: &Contact,
) -> Result<(), TransportError> {
    let accepted = wire::ContactAccepted {
        profile: Some(own.signed()),
    };
    outbound
        .send_control(
            contact,
            wire::Kind::ContactAccepted,
            &accepted.encode_to_vec(),
        )
        .await
}
