//! The inbox's way into the channels: one handler for the four channel
//! kinds (stream `channel`: every channel record between two actors is
//! sealed and sent in id order through the sender's one queue), and the
//! join that rides on a contact request.

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::Channels;
use super::engine::Command;
use crate::contacts::ChannelJoins;
use crate::crypto::envelope::Rejection;
use crate::crypto::profile::VerifiedProfile;
use crate::transport::marks::Stream;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Sender};

const CHANNEL: Stream = "channel";

fn stopping() -> HandlerError {
    "the channels are stopping".into()
}

/// Posts, relays, commands and key forwards: handed to the engine, and
/// answered once what they caused is in the outbox (the inbox then stores
/// the record's offset).
#[derive(Debug)]
pub struct RecordHandler(pub Channels);

impl ControlHandler for RecordHandler {
    fn stream(&self) -> Stream {
        CHANNEL
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let Sender::Contact(contact) = control.sender else {
                return Ok(Err(Rejection::Malformed));
            };
            let (reply, answer) = oneshot::channel();
            self.0
                .commands
                .send(Command::Record {
                    sender: contact.actor_id,
                    record_id: control.header.message_id,
                    kind: control.header.kind,
                    payload: control.payload,
                    reply,
                })
                .await
                .map_err(|_| stopping())?;
            let (applied, flushed) = answer.await.map_err(|_| stopping())??;
            flushed.await.map_err(|_| stopping())?;
            Ok(applied)
        }
        .boxed()
    }
}

impl ChannelJoins for Channels {
    fn join<'a>(
        &'a self,
        channel: Uuid,
        member: &'a VerifiedProfile,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Joined {
                    channel,
                    member: Box::new(member.clone()),
                    reply,
                })
                .await
                .map_err(|_| stopping())?;
            let flushed = answer.await.map_err(|_| stopping())??;
            flushed.await.map_err(|_| stopping())?;
            Ok(())
        }
        .boxed()
    }
}
