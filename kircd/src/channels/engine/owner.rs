//! Owning a channel: creating it, inviting, taking members in, and making
//! each step of its order (a post, or an event the rules allowed) and
//! fanning it out to every member. One file for the owner's side of the
//! engine: its steps share the order (`step`) and the fan-out, which a
//! split would only pass back and forth.

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    Channel, ChannelError, MessageAct, Running, event_of, line, nothing, now_ms, opened_content,
    request_of,
};
use crate::channels::relay::ChannelView;
use crate::channels::rules::{Refusal, Request, check_name};
use crate::channels::sender::Then;
use crate::channels::sessions::{Opened, Sessions};
use crate::crypto::envelope::{self, Rejection};
use crate::crypto::group::verify_post;
use crate::crypto::identity::ActorId;
use crate::crypto::profile::{self, VerifiedProfile};
use crate::store::{self, ChannelItem, Membership, Message, MessageState, Step, StoreError};

/// What a step carries besides its event or post.
pub(super) struct StepOf {
    pub cause: Option<Uuid>,
    pub item: wire::channel_relay::Item,
    /// The roster changed: the step carries the channel's state.
    pub changed: bool,
    /// Someone who left with this step, who still gets it.
    pub removed: Option<ActorId>,
    /// The owner's own copy, if the step shows as a message or line.
    pub own: Option<OwnCopy>,
}

pub(super) struct OwnCopy {
    pub id: Uuid,
    pub sender: ActorId,
    pub outgoing: bool,
    pub action: bool,
    pub body: String,
    pub created_at_unix_ms: i64,
    pub line: Option<store::Line>,
    /// An own post's idempotency key.
    pub idempotency_key: Option<String>,
    pub reply_to: Option<Uuid>,
    /// A reaction, edit or deletion (the body is then the act's).
    pub act: Option<MessageAct>,
}

impl Running {
    pub(super) async fn create(
        &mut self,
        name: String,
        topic: String,
    ) -> Result<Uuid, ChannelError> {
        self.engine.book.check_loaded()?;
        check_name(&name)?;
        let me = self.own_profile().ok_or(ChannelError::Stopping)?;
        let id = Uuid::new_v4();
        let view = ChannelView::created(id, name, topic, me, self.engine.config.capacity);
        self.channels.insert(
            id,
            Channel {
                view,
                membership: Membership::Joined,
                sessions: Sessions::default(),
            },
        );
        let created = StepOf {
            cause: None,
            item: wire::channel_relay::Item::Event(wire::ChannelEvent {
                kind: wire::ChannelEventKind::Create as i32,
                actor: self.me.as_bytes().to_vec(),
                target: Vec::new(),
                text: String::new(),
            }),
            changed: true,
            removed: None,
            own: None,
        };
        if let Err(err) = self.step(id, created).await {
            self.channels.remove(&id);
            return Err(err.into());
        }
        Ok(id)
    }

    pub(super) async fn invite(&mut self, reference: &str) -> Result<(String, i64), ChannelError> {
        let id = self.resolve(reference)?;
        let held = &self.channels[&id];
        if held.view.owner != self.me {
            return Err(ChannelError::NotOwner(held.view.name.clone()));
        }
        let ttl = i64::try_from(self.engine.config.invite_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let expires_at_unix_ms = now_ms() + ttl;
        let (secret, hash) = profile::new_secret();
        store::add_channel_invite(&self.engine.pool, id, &hash, expires_at_unix_ms).await?;
        let token = profile::encode_channel_token(&wire::ChannelInvite {
            owner: Some(wire::Invite {
                profile: Some(self.engine.own.signed()),
                secret: secret.to_vec(),
                expires_at_unix_ms,
            }),
            channel_id: id.as_bytes().to_vec(),
            name: held.view.name.clone(),
        });
        Ok((token, expires_at_unix_ms))
    }

    /// A contact joins through one of our invites.
    pub(super) async fn admit(
        &mut self,
        channel: Uuid,
        member: VerifiedProfile,
    ) -> Result<oneshot::Receiver<()>, StoreError> {
        let Some(held) = self.channels.get_mut(&channel) else {
            return Ok(nothing());
        };
        if held.view.owner != self.me {
            return Ok(nothing());
        }
        let joiner = member.actor_id;
        match held.view.roster.apply(joiner, &Request::Join) {
            Ok(applied) if applied.line => {}
            Ok(_) => {
                // A member already: it asked again (it lost its state, or
                // the request was read again); it gets the channel as it is.
                return self.resend_state(channel, joiner).await;
            }
            Err(refusal) => {
                tracing::info!(channel = %held.view.name, %refusal, "a join was refused");
                let kind = if refusal == Refusal::Banned {
                    wire::ChannelEventKind::Ban
                } else {
                    wire::ChannelEventKind::Part
                };
                let answer = wire::ChannelRelay {
                    channel_id: channel.as_bytes().to_vec(),
                    seq: 0,
                    item: Some(wire::channel_relay::Item::Event(wire::ChannelEvent {
                        kind: kind as i32,
                        actor: self.me.as_bytes().to_vec(),
                        target: joiner.as_bytes().to_vec(),
                        text: refusal.to_string(),
                    })),
                    state: None,
                };
                return Ok(self.send_all(vec![(
                    joiner,
                    wire::Kind::ChannelRelay,
                    answer.encode_to_vec(),
                    Then::Nothing,
                )]));
            }
        }
        held.view.profiles.insert(joiner, member);
        let join = StepOf {
            cause: None,
            item: wire::channel_relay::Item::Event(wire::ChannelEvent {
                kind: wire::ChannelEventKind::Join as i32,
                actor: joiner.as_bytes().to_vec(),
                target: Vec::new(),
                text: String::new(),
            }),
            changed: true,
            removed: None,
            own: Some(OwnCopy {
                id: Self::line_id(channel, held.view.seq + 1),
                sender: joiner,
                outgoing: false,
                action: false,
                body: String::new(),
                created_at_unix_ms: now_ms(),
                line: line(wire::ChannelEventKind::Join, None),
                idempotency_key: None,
                reply_to: None,
                act: None,
            }),
        };
        let (_, mut flushed) = self.step(channel, join).await?;
        // The owner is a member too: the newcomer gets its session.
        let shares = self.shares_for_newcomer(channel).await;
        if let Some(profile) = self.channels[&channel].view.profiles.get(&joiner).cloned() {
            let records = self.share_records(channel, &[profile], &shares);
            if !records.is_empty() {
                flushed = self.send_all(records);
            }
        }
        Ok(flushed)
    }

    /// A member who asked to join again gets the channel's state now, as a
    /// step of its own (a topic line that changes nothing would be noise).
    async fn resend_state(
        &mut self,
        channel: Uuid,
        member: ActorId,
    ) -> Result<oneshot::Receiver<()>, StoreError> {
        let held = &self.channels[&channel];
        let relay = wire::ChannelRelay {
            channel_id: channel.as_bytes().to_vec(),
            seq: held.view.seq,
            item: Some(wire::channel_relay::Item::Event(wire::ChannelEvent {
                kind: wire::ChannelEventKind::Join as i32,
                actor: member.as_bytes().to_vec(),
                target: Vec::new(),
                text: String::new(),
            })),
            state: Some(held.view.state()),
        };
        Ok(self.send_all(vec![(
            member,
            wire::Kind::ChannelRelay,
            relay.encode_to_vec(),
            Then::Nothing,
        )]))
    }

    /// Makes the next step of an owned channel: stored with the channel
    /// after it (and the owner's copy), then fanned out.
    pub(super) async fn step(
        &mut self,
        channel: Uuid,
        step: StepOf,
    ) -> Result<(Option<Message>, oneshot::Receiver<()>), StoreError> {
        let Some(held) = self.channels.get_mut(&channel) else {
            return Ok((None, nothing()));
        };
        held.view.seq += 1;
        let seq = held.view.seq;
        let relay = wire::ChannelRelay {
            channel_id: channel.as_bytes().to_vec(),
            seq,
            item: Some(step.item),
            state: step.changed.then(|| held.view.state()),
        };
        let mut recipients: Vec<ActorId> = held
            .view
            .roster
            .members
            .keys()
            .copied()
            .filter(|member| *member != self.me)
            .collect();
        if let Some(removed) = step.removed.filter(|removed| *removed != self.me) {
            recipients.push(removed);
        }
        let stored_step = Step {
            channel_id: channel,
            seq,
            cause_id: step.cause,
            relay: relay.encode_to_vec(),
            recipients,
        };
        let own = step.own.as_ref().map(|own| ChannelItem {
            id: own.id,
            channel_id: channel,
            sender: own.sender,
            outgoing: own.outgoing,
            action: own.action,
            body: &own.body,
            created_at_unix_ms: own.created_at_unix_ms,
            channel_seq: Some(seq),
            line: own.line,
            state: MessageState::Received,
            post: None,
            outbox_key: None,
            idempotency_key: own.idempotency_key.as_deref(),
            reply_to: own.reply_to,
            act: own.act.clone(),
        });
        let stored = store::save_step(
            &self.engine.pool,
            &held.view.stored(Membership::Joined),
            &stored_step,
            own.as_ref(),
        )
        .await;
        let message = match stored {
            Ok(message) => message,
            Err(err) => {
                held.view.seq -= 1;
                return Err(err);
            }
        };
        if step.changed {
            self.announce(channel);
        }
        if let Some(own) = &step.own
            && let Err(err) = self
                .publish(own.id, message.clone(), own.act.as_ref())
                .await
        {
            // The step stands; what its act changes shows with the next
            // change to the message or the next page read.
            tracing::warn!(error = %err, "cannot apply a channel message's act");
        }
        let flushed = self.fan_out(&stored_step);
        Ok((message, flushed))
    }

    /// Queues a step's copy for each of its recipients.
    pub(super) fn fan_out(&self, step: &Step) -> oneshot::Receiver<()> {
        let last = step.recipients.len().checked_sub(1);
        let records = step
            .recipients
            .iter()
            .enumerate()
            .map(|(index, recipient)| {
                let then = if Some(index) == last {
                    Then::FannedOut {
                        channel: step.channel_id,
                        seq: step.seq,
                    }
                } else {
                    Then::Nothing
                };
                (
                    *recipient,
                    wire::Kind::ChannelRelay,
                    step.relay.clone(),
                    then,
                )
            })
            .collect();
        if last.is_none() {
            let (channel, seq, pool) = (step.channel_id, step.seq, self.engine.pool.clone());
            tokio::spawn(async move {
                if let Err(err) = store::step_fanned_out(&pool, channel, seq).await {
                    tracing::warn!(error = %err, "cannot record a step with no recipient");
                }
            });
        }
        self.send_all(records)
    }

    /// A record from a member of a channel we own.
    pub(super) async fn owner_record(
        &mut self,
        sender: ActorId,
        record_id: Uuid,
        kind: wire::Kind,
        payload: &[u8],
    ) -> Result<(Result<(), Rejection>, oneshot::Receiver<()>), StoreError> {
        // Read again after a crash: the step it made is repeated, not made
        // again.
        if let Some(step) = store::step_of_cause(&self.engine.pool, record_id).await? {
            return Ok((Ok(()), self.fan_out(&step)));
        }
        match kind {
            wire::Kind::ChannelPost => {
                let Ok(post) = wire::ChannelPost::decode(payload) else {
                    return Ok((Err(Rejection::Undecryptable), nothing()));
                };
                self.member_post(sender, record_id, post).await
            }
            wire::Kind::ChannelCommand => {
                let Ok(command) = wire::ChannelCommand::decode(payload) else {
                    return Ok((Err(Rejection::Undecryptable), nothing()));
                };
                self.member_command(sender, record_id, &command).await
            }
            wire::Kind::ChannelKey => {
                let Ok(forward) = wire::ChannelKeyForward::decode(payload) else {
                    return Ok((Err(Rejection::Undecryptable), nothing()));
                };
                self.forward_key(sender, &forward).await
            }
            _ => Ok((Err(Rejection::Malformed), nothing())),
        }
    }

    async fn member_post(
        &mut self,
        sender: ActorId,
        record_id: Uuid,
        post: wire::ChannelPost,
    ) -> Result<(Result<(), Rejection>, oneshot::Receiver<()>), StoreError> {
        let (Ok(channel), Ok(post_id)) = (
            Uuid::from_slice(&post.channel_id),
            Uuid::from_slice(&post.post_id),
        ) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        let Some(held) = self.channels.get_mut(&channel) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        if post.author != sender.as_bytes() {
            return Ok((Err(Rejection::BadSignature), nothing()));
        }
        if let Err(refusal) = held.view.roster.clone().apply(sender, &Request::Post) {
            tracing::info!(channel = %held.view.name, %refusal, "a post was refused");
            return Ok((Err(Rejection::Stranger), nothing()));
        }
        let Some(author) = held.view.profiles.get(&sender) else {
            return Ok((Err(Rejection::Stranger), nothing()));
        };
        if verify_post(
            &author.signing_key,
            channel,
            post_id,
            &post.session_id,
            &post.ciphertext,
            &post.signature,
        )
        .is_err()
        {
            return Ok((Err(Rejection::BadSignature), nothing()));
        }
        let own = match held
            .sessions
            .decrypt(sender, &post.session_id, &post.ciphertext)
        {
            Ok(Opened::Plaintext(plaintext)) => opened_content(&plaintext).map(|content| OwnCopy {
                id: post_id,
                sender,
                outgoing: false,
                action: content.action,
                body: content.body().to_owned(),
                created_at_unix_ms: created_at(post_id),
                line: None,
                idempotency_key: None,
                reply_to: content.reply_to,
                act: content.act,
            }),
            // The owner reads it once the author's session arrives; it
            // relays it now.
            Ok(Opened::Unknown) | Err(_) => None,
        };
        let waiting = own.is_none().then(|| post.clone());
        let step = StepOf {
            cause: Some(record_id),
            item: wire::channel_relay::Item::Post(post),
            changed: false,
            removed: None,
            own,
        };
        let (_, flushed) = self.step(channel, step).await?;
        if let Some(post) = waiting {
            let seq = self.channels[&channel].view.seq;
            store::add_waiting(
                &self.engine.pool,
                channel,
                seq,
                &post.session_id,
                &post.encode_to_vec(),
                self.engine.config.max_waiting,
            )
            .await?;
        }
        Ok((Ok(()), flushed))
    }

    async fn member_command(
        &mut self,
        sender: ActorId,
        record_id: Uuid,
        command: &wire::ChannelCommand,
    ) -> Result<(Result<(), Rejection>, oneshot::Receiver<()>), StoreError> {
        let Ok(channel) = Uuid::from_slice(&command.channel_id) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        let Some(request) = request_of(command) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        if !self.channels.contains_key(&channel) {
            return Ok((Err(Rejection::Malformed), nothing()));
        }
        match self
            .apply(channel, sender, request, Some(record_id))
            .await?
        {
            Ok(flushed) => Ok((Ok(()), flushed)),
            Err(refusal) => {
                tracing::info!(%refusal, "a member's command was refused");
                Ok((Ok(()), nothing()))
            }
        }
    }

    /// Applies `request` by `actor` on an owned channel and makes its step.
    pub(super) async fn apply(
        &mut self,
        channel: Uuid,
        actor: ActorId,
        request: Request,
        cause: Option<Uuid>,
    ) -> Result<Result<oneshot::Receiver<()>, Refusal>, StoreError> {
        let Some(held) = self.channels.get_mut(&channel) else {
            return Ok(Ok(nothing()));
        };
        let applied = match held.view.roster.apply(actor, &request) {
            Ok(applied) => applied,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if !applied.line {
            return Ok(Ok(nothing()));
        }
        if let Some(removed) = applied.removed {
            // Its profile stays until the step is relayed: the removed
            // member still gets it.
            held.view.profiles.retain(|member, _| {
                *member == removed || held.view.roster.members.contains_key(member)
            });
        }
        let (kind, target, text) = event_of(&request);
        let seq = held.view.seq + 1;
        let step = StepOf {
            cause,
            item: wire::channel_relay::Item::Event(wire::ChannelEvent {
                kind: kind as i32,
                actor: actor.as_bytes().to_vec(),
                target: target.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
                text: text.clone(),
            }),
            changed: true,
            removed: applied.removed,
            own: Some(OwnCopy {
                id: Self::line_id(channel, seq),
                sender: actor,
                outgoing: actor == self.me,
                action: false,
                body: text,
                created_at_unix_ms: now_ms(),
                line: line(kind, target),
                idempotency_key: None,
                reply_to: None,
                act: None,
            }),
        };
        let (_, flushed) = self.step(channel, step).await?;
        if let Some(removed) = applied.removed
            && let Some(held) = self.channels.get_mut(&channel)
        {
            held.view.profiles.remove(&removed);
        }
        Ok(Ok(flushed))
    }

    /// A member's session key for another member: carried on unopened (or
    /// kept, if it is for the owner).
    async fn forward_key(
        &mut self,
        sender: ActorId,
        forward: &wire::ChannelKeyForward,
    ) -> Result<(Result<(), Rejection>, oneshot::Receiver<()>), StoreError> {
        let Ok(inner) = <wire::Envelope as prost::Message>::decode(forward.envelope.as_slice())
        else {
            return Ok((Err(Rejection::Undecodable), nothing()));
        };
        let Some(recipient) = ActorId::from_slice(&inner.recipient) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        let Ok((_, header)) = envelope::parse(&forward.envelope, recipient) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        if header.sender != sender || header.kind != wire::Kind::ChannelKey {
            return Ok((Err(Rejection::BadSignature), nothing()));
        }
        if recipient == self.me {
            return self.receive_key(forward).await;
        }
        // Both must be members of a channel we own; the inner envelope does
        // not say which (the owner cannot read it), so any will do.
        let shared = self.channels.values().any(|held| {
            held.view.owner == self.me
                && held.view.roster.role(&sender).is_some()
                && held.view.roster.role(&recipient).is_some()
        });
        if !shared {
            return Ok((Err(Rejection::Stranger), nothing()));
        }
        let flushed = self.send_all(vec![(
            recipient,
            wire::Kind::ChannelKey,
            forward.encode_to_vec(),
            Then::Nothing,
        )]);
        Ok((Ok(()), flushed))
    }

    /// Sends again, at the start, what a stop left: own posts not yet in the
    /// outbox, then the steps not yet fanned out.
    pub(super) async fn resume(&mut self) -> Result<(), StoreError> {
        let mut records = Vec::new();
        for (id, channel, post, _) in store::unsent_channel_posts(&self.engine.pool).await? {
            let Some(held) = self.channels.get(&channel) else {
                continue;
            };
            records.push((
                held.view.owner,
                wire::Kind::ChannelPost,
                post,
                Then::PostQueued { id, channel },
            ));
        }
        drop(self.send_all(records));
        for step in store::steps_not_fanned_out(&self.engine.pool).await? {
            drop(self.fan_out(&step));
        }
        Ok(())
    }
}

/// A post's time, from its UUIDv7 id.
pub(super) fn created_at(post_id: Uuid) -> i64 {
    post_id
        .get_timestamp()
        .map(|at| {
            let (seconds, nanos) = at.to_unix();
            i64::try_from(seconds).unwrap_or(0) * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
}
