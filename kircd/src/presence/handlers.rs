//! Contacts' presence and typing records: shown through the live layer
//! unless they are too old to mean anything now.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;

use crate::crypto::envelope::Rejection;
use crate::hub::PresenceState;
use crate::live::Live;
use crate::transport::marks::Stream;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Sender, is_stale};

/// A typing record older than this when it arrives is dropped.
pub const TYPING_STALE: Duration = Duration::from_secs(5);

/// The longest a contact may ask its presence to be believed.
const MAX_PRESENCE_TTL_SECS: u32 = 86_400;

/// The sender, if it is a contact whose presence we share: presence is
/// between accepted contacts only.
fn accepted(control: &Control<'_>) -> Option<crate::crypto::identity::ActorId> {
    match &control.sender {
        Sender::Contact(contact) if contact.is_accepted() => Some(contact.actor_id),
        _ => None,
    }
}

#[derive(Debug)]
pub struct PresenceHandler(pub Arc<Live>);

impl ControlHandler for PresenceHandler {
    fn stream(&self) -> Stream {
        "presence"
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let Ok(presence) = wire::Presence::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let Some(actor) = accepted(&control) else {
                return Ok(Ok(()));
            };
            let ttl = Duration::from_secs(u64::from(
                presence.ttl_seconds.clamp(1, MAX_PRESENCE_TTL_SECS),
            ));
            if is_stale(control.header.created_at_unix_ms(), ttl) {
                return Ok(Err(Rejection::Stale));
            }
            let state = PresenceState::from_code(presence.state);
            self.0.peer_presence(actor, state, presence.text, ttl).await;
            Ok(Ok(()))
        }
        .boxed()
    }
}

#[derive(Debug)]
pub struct TypingHandler(pub Arc<Live>);

impl ControlHandler for TypingHandler {
    fn stream(&self) -> Stream {
        "typing"
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let Ok(typing) = wire::Typing::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let Some(actor) = accepted(&control) else {
                return Ok(Ok(()));
            };
            // A typing record that waited (a daemon that was down) means
            // nothing now.
            if is_stale(control.header.created_at_unix_ms(), TYPING_STALE) {
                return Ok(Err(Rejection::Stale));
            }
            self.0.peer_typing(actor, typing.active).await;
            Ok(Ok(()))
        }
        .boxed()
    }
}
