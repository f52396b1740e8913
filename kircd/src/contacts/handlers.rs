//! The control kinds that carry a sender's profile: a contact request (from
//! someone who may not be a contact yet) and an acceptance. Both belong to
//! the sender's `profile` stream, so an old one replayed never rolls a
//! contact's name or address back.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use super::{OwnProfile, send_accepted};
use crate::book::ContactBook;
use crate::crypto::envelope::Rejection;
use crate::crypto::profile::{self, VerifiedProfile, verify_profile};
use crate::hub::Hub;
use crate::store::{self, ContactState};
use crate::transport::marks::Stream;
use crate::transport::outbound::Outbound;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Opening, Sender};

const PROFILE: Stream = "profile";

/// Joins to channels ride on contact requests (`ContactRequest.channel_join`
/// with the channel invite's secret); the channels, a subsystem above this
/// one, take the new member in.
pub trait ChannelJoins: Send + Sync + std::fmt::Debug {
    /// `member`, now an accepted contact, joins `channel` (one of ours, whose
    /// invite it held). Returns once what the join relays is in the outbox.
    fn join<'a>(
        &'a self,
        channel: Uuid,
        member: &'a VerifiedProfile,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// A contact request: accepted at once with a valid one-time secret of ours
/// (or a live invite to one of our channels, which it then joins),
/// otherwise kept as a message request for the user.
#[derive(Debug)]
pub struct RequestHandler {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
    pub outbound: Arc<Outbound>,
    pub own: OwnProfile,
    pub channels: Option<Arc<dyn ChannelJoins>>,
}

impl ControlHandler for RequestHandler {
    fn stream(&self) -> Stream {
        PROFILE
    }

    fn opening(&self) -> Opening {
        Opening::ContactRequest
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let Sender::Requester(verified) = control.sender else {
                return Ok(Err(Rejection::Malformed));
            };
            // The opening decoded it already; it cannot fail here.
            let Ok(request) = wire::ContactRequest::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let channel = Uuid::from_slice(&request.channel_join).ok();
            let secret_hash = profile::secret_hash(&request.invite_secret);
            let claim = match channel {
                _ if request.invite_secret.is_empty() => store::InviteClaim::Unknown,
                // A channel's invite is reusable until it expires.
                Some(channel) => {
                    if store::channel_of_invite(&self.pool, &secret_hash).await? == Some(channel) {
                        store::InviteClaim::Valid
                    } else {
                        store::InviteClaim::Unknown
                    }
                }
                None => {
                    store::claim_invite(&self.pool, &secret_hash, control.header.sender).await?
                }
            };
            let state = if claim == store::InviteClaim::Valid {
                ContactState::Accepted
            } else {
                ContactState::Request
            };
            let (contact, _) = self.book.save(&self.pool, &verified, state, true).await?;
            tracing::info!(contact = %contact.display_name, ?claim, state = ?contact.state, "contact request");
            self.hub.contact_changed(&contact);
            if contact.is_accepted() {
                send_accepted(&self.outbound, &self.own, &contact).await?;
            }
            if let (Some(channel), store::InviteClaim::Valid, true, Some(joins)) = (
                channel,
                claim,
                contact.is_accepted(),
                &self.channels,
            ) {
                joins.join(channel, &verified).await?;
            }
            Ok(Ok(()))
        }
        .boxed()
    }
}

/// An acceptance: the contact accepted us, and its profile (perhaps a new
/// address or name) comes with it.
#[derive(Debug)]
pub struct AcceptedHandler {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
}

impl ControlHandler for AcceptedHandler {
    fn stream(&self) -> Stream {
        PROFILE
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let Sender::Contact(contact) = control.sender else {
                return Ok(Err(Rejection::Malformed));
            };
            let Ok(accepted) = wire::ContactAccepted::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let Some(verified) = accepted
                .profile
                .as_ref()
                .and_then(|signed| verify_profile(signed).ok())
                .filter(|verified| verified.actor_id == control.header.sender)
            else {
                return Ok(Err(Rejection::BadSignature));
            };
            let (saved, profile_newer) = self
                .book
                .save(&self.pool, &verified, contact.state, true)
                .await?;
            self.hub.contact_changed(&saved);
            if !profile_newer {
                // Accepted (again), but with a profile older than the stored one.
                return Ok(Err(Rejection::Stale));
            }
            Ok(Ok(()))
        }
        .boxed()
    }
}
