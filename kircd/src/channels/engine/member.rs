//! Being in a channel: joining by token, following the owner's relayed
//! steps, and speaking (which the owner of a channel does too, through the
//! same sessions). Sessions shared and taken are in `keys.rs`.

use std::collections::BTreeMap;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use uuid::Uuid;

use super::owner::{OwnCopy, StepOf, created_at};
use super::{
    Act, Channel, ChannelError, Content, Handled, Running, line, nothing, now_ms, opened_content,
};
use crate::channels::relay::{Accepted, ChannelView, Step};
use crate::channels::rules::Request;
use crate::channels::sender::Then;
use crate::channels::sessions::{Opened, Sessions};
use crate::crypto::envelope::{self, Rejection};
use crate::crypto::group::sign_post;
use crate::crypto::identity::ActorId;
use crate::crypto::profile;
use crate::store::{self, ChannelItem, Membership, Message, MessageState, StoreError};

impl Running {
    /// Joins a channel by its token: the owner becomes a contact (if it is
    /// not) and gets the request; the channel is 'joining' until the owner
    /// relays it.
    pub(super) async fn join(&mut self, token: &str) -> Result<Uuid, ChannelError> {
        self.engine.book.check_loaded()?;
        let token = profile::read_channel_token(token, now_ms())?;
        crate::channels::rules::check_name(&token.name)?;
        if token.profile.actor_id == self.me {
            return Err(profile::InviteError::OwnInvite.into());
        }
        let id = token.channel_id;
        let joined = self
            .channels
            .get(&id)
            .is_some_and(|held| held.membership == Membership::Joined);
        if !joined {
            let me = self.own_profile().ok_or(ChannelError::Stopping)?;
            let mut view = ChannelView::created(
                id,
                token.name.clone(),
                String::new(),
                token.profile.clone(),
                0,
            );
            // Until the owner relays the roster, the channel holds the two
            // profiles known: the owner's and this actor's.
            view.profiles = BTreeMap::from([
                (token.profile.actor_id, token.profile.clone()),
                (me.actor_id, me),
            ]);
            store::save_channel(&self.engine.pool, &view.stored(Membership::Joining)).await?;
            self.channels.insert(
                id,
                Channel {
                    view,
                    membership: Membership::Joining,
                    sessions: Sessions::default(),
                },
            );
            self.announce(id);
        }
        self.engine.contacts.join_channel(&token).await?;
        Ok(id)
    }

    /// This actor's request on a channel: made at once if it owns it,
    /// otherwise checked against the roster it holds and sent to the owner.
    pub(super) async fn act(&mut self, reference: &str, act: Act) -> Result<(), ChannelError> {
        let id = self.resolve(reference)?;
        let held = &self.channels[&id];
        if held.membership != Membership::Joined {
            return Err(ChannelError::NotIn(held.view.name.clone()));
        }
        let request = self.request(&held.view, act)?;
        if held.view.owner == self.me {
            return match self.apply(id, self.me, request, None).await? {
                Ok(_) => Ok(()),
                Err(refusal) => Err(refusal.into()),
            };
        }
        // The owner decides; the same rules here answer at once what it
        // would refuse.
        held.view.roster.clone().apply(self.me, &request)?;
        let (kind, target, text) = super::event_of(&request);
        let command = wire::ChannelCommand {
            channel_id: id.as_bytes().to_vec(),
            kind: kind as i32,
            target: target.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
            text,
        };
        drop(self.send_all(vec![(
            held.view.owner,
            wire::Kind::ChannelCommand,
            command.encode_to_vec(),
            Then::Nothing,
        )]));
        Ok(())
    }

    /// The rules request of an act, its member named by display name or id.
    fn request(&self, view: &ChannelView, act: Act) -> Result<Request, ChannelError> {
        let member = |name: &str| -> Result<ActorId, ChannelError> {
            if let Ok(id) = name.parse::<ActorId>() {
                return Ok(id);
            }
            let mut found = view
                .profiles
                .values()
                .filter(|profile| profile.profile.display_name.eq_ignore_ascii_case(name))
                .map(|profile| profile.actor_id);
            match (found.next(), found.next()) {
                (Some(id), None) => Ok(id),
                _ => Err(ChannelError::NoSuchMember {
                    channel: view.name.clone(),
                    member: name.to_owned(),
                }),
            }
        };
        Ok(match act {
            Act::Part { reason } => Request::Part { reason },
            Act::Kick { member: m, reason } => Request::Kick {
                target: member(&m)?,
                reason,
            },
            Act::Ban { member: m, reason } => Request::Ban {
                target: member(&m)?,
                reason,
            },
            Act::Unban { member: m } => Request::Unban {
                target: member(&m)?,
            },
            Act::Op { member: m } => Request::Op {
                target: member(&m)?,
            },
            Act::Deop { member: m } => Request::Deop {
                target: member(&m)?,
            },
            Act::Topic { text } => Request::Topic { text },
            Act::Moderate { on } => Request::Moderate { on },
        })
    }

    /// Says something in a channel: encrypted with this actor's session
    /// (made and shared first if due), signed, and sent to the owner (or,
    /// for the owner, made a step at once).
    pub(super) async fn send(
        &mut self,
        reference: &str,
        content: Content,
        idempotency_key: &str,
    ) -> Result<Message, ChannelError> {
        let id = self.resolve(reference)?;
        let key = crate::messaging::idempotency_key_of(idempotency_key)
            .map_err(|err| ChannelError::InvalidArgument(err.to_string()))?;
        // A call made again after its answer was lost: the message it sent.
        // (An own post not yet in the outbox is the queue's or the next
        // start's to send.)
        if let Some(key) = &key
            && let Some(sent) = store::outgoing_by_key(&self.engine.pool, key).await?
        {
            if sent.conversation_id != id
                || sent.body != content.text
                || sent.action != content.action
                || sent.reply_to != content.reply_to
            {
                return Err(ChannelError::InvalidArgument(String::from(
                    "this idempotency key was used for another message; choose a new key for each message",
                )));
            }
            return Ok(sent);
        }
        {
            let held = &self.channels[&id];
            if held.membership != Membership::Joined {
                return Err(ChannelError::NotIn(held.view.name.clone()));
            }
            held.view.roster.clone().apply(self.me, &Request::Post)?;
        }
        let shares = self.ensure_session(id).await?;
        if let Some(answered) = content.reply_to
            && store::act_targets(&self.engine.pool, &[answered])
                .await?
                .get(&answered)
                .is_none_or(|target| target.conversation_id != id || !target.actable)
        {
            return Err(ChannelError::InvalidArgument(format!(
                "no message {answered} in this channel to reply to"
            )));
        }
        let chat = content.to_payload();
        let me = self.me;
        let held = self
            .channels
            .get_mut(&id)
            .ok_or_else(|| ChannelError::Unknown(reference.to_owned()))?;
        let (session_id, ciphertext, row) = held
            .sessions
            .encrypt(id, me, &chat.encode_to_vec(), &self.key)
            .ok_or(ChannelError::Stopping)?;
        let owner = held.view.owner;
        store::save_session(&self.engine.pool, &row).await?;
        let post_id = Uuid::now_v7();
        let post = wire::ChannelPost {
            channel_id: id.as_bytes().to_vec(),
            post_id: post_id.as_bytes().to_vec(),
            author: me.as_bytes().to_vec(),
            session_id: session_id.clone(),
            signature: sign_post(&self.engine.identity, id, post_id, &session_id, &ciphertext),
            ciphertext,
        };
        if owner == me {
            drop(self.send_all(shares));
            let step = StepOf {
                cause: None,
                item: wire::channel_relay::Item::Post(post),
                changed: false,
                removed: None,
                own: Some(OwnCopy {
                    id: post_id,
                    sender: me,
                    outgoing: true,
                    action: content.action,
                    body: content.body().to_owned(),
                    created_at_unix_ms: created_at(post_id),
                    line: None,
                    idempotency_key: key.clone(),
                    reply_to: content.reply_to,
                    act: content.act.clone(),
                }),
            };
            let (message, _) = self.step(id, step).await?;
            return message.ok_or(ChannelError::Stopping);
        }
        let encoded = post.encode_to_vec();
        let item = ChannelItem {
            id: post_id,
            channel_id: id,
            sender: me,
            outgoing: true,
            action: content.action,
            body: content.body(),
            created_at_unix_ms: created_at(post_id),
            channel_seq: None,
            line: None,
            state: MessageState::Pending,
            post: Some(&encoded),
            outbox_key: Some(envelope::conversation_id(me, owner)),
            idempotency_key: key.as_deref(),
            reply_to: content.reply_to,
            act: content.act.clone(),
        };
        let message = store::insert_channel_item(&self.engine.pool, &item)
            .await?
            .ok_or(ChannelError::Stopping)?;
        self.publish(post_id, Some(message.clone()), content.act.as_ref())
            .await?;
        let mut records = shares;
        records.push((
            owner,
            wire::Kind::ChannelPost,
            encoded,
            Then::PostQueued {
                id: post_id,
                channel: id,
            },
        ));
        drop(self.send_all(records));
        Ok(message)
    }

    /// A channel record from the inbox.
    pub(super) async fn record(
        &mut self,
        sender: ActorId,
        record_id: Uuid,
        kind: wire::Kind,
        payload: &[u8],
    ) -> Result<Handled, StoreError> {
        match kind {
            wire::Kind::ChannelRelay => {
                let Ok(relay) = wire::ChannelRelay::decode(payload) else {
                    return Ok((Err(Rejection::Undecryptable), nothing()));
                };
                self.relayed(sender, &relay).await
            }
            wire::Kind::ChannelKey => {
                let Ok(forward) = wire::ChannelKeyForward::decode(payload) else {
                    return Ok((Err(Rejection::Undecryptable), nothing()));
                };
                // From the owner of a channel we are in: a member's key for
                // us. From a member of ours: to carry on, or ours.
                if self.owns_a_channel_of(sender) {
                    self.owner_record(sender, record_id, kind, payload).await
                } else {
                    self.receive_key(&forward).await
                }
            }
            wire::Kind::ChannelPost | wire::Kind::ChannelCommand => {
                self.owner_record(sender, record_id, kind, payload).await
            }
            _ => Ok((Err(Rejection::Malformed), nothing())),
        }
    }

    /// Whether `actor` is a member of a channel this actor owns.
    fn owns_a_channel_of(&self, actor: ActorId) -> bool {
        self.channels
            .values()
            .any(|held| held.view.owner == self.me && held.view.roster.role(&actor).is_some())
    }

    /// A step the owner relayed.
    async fn relayed(
        &mut self,
        sender: ActorId,
        relay: &wire::ChannelRelay,
    ) -> Result<Handled, StoreError> {
        let Ok(id) = Uuid::from_slice(&relay.channel_id) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        let Some(held) = self.channels.get(&id) else {
            return Ok((Err(Rejection::Stranger), nothing()));
        };
        if held.view.owner == self.me {
            return Ok((Err(Rejection::Stranger), nothing()));
        }
        if relay.seq == 0 {
            return self.refused(id, sender, relay).await;
        }
        let accepted = match held.view.check(sender, relay) {
            Ok(accepted) => accepted,
            // A copy of a step applied: not an attack.
            Err(crate::channels::relay::RelayError::Old) => return Ok((Ok(()), nothing())),
            Err(err) => {
                tracing::info!(channel = %held.view.name, error = %err, "a relayed step was refused");
                return Ok((Err(err.into()), nothing()));
            }
        };
        if held.membership == Membership::Joining && accepted.view.is_none() {
            // Nothing counts before the roster that lets us in.
            return Ok((Ok(()), nothing()));
        }
        self.apply_relayed(id, accepted).await
    }

    /// The owner's answer to a join it refused: the channel is left, with
    /// a line that says why.
    async fn refused(
        &mut self,
        id: Uuid,
        sender: ActorId,
        relay: &wire::ChannelRelay,
    ) -> Result<Handled, StoreError> {
        let me = self.me;
        let Some(held) = self.channels.get_mut(&id) else {
            return Ok((Err(Rejection::Stranger), nothing()));
        };
        let Some(wire::channel_relay::Item::Event(event)) = &relay.item else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        if sender != held.view.owner || event.target != me.as_bytes() {
            return Ok((Err(Rejection::Stranger), nothing()));
        }
        if held.membership != Membership::Joining {
            // An answer to a join already settled: nothing to do.
            return Ok((Ok(()), nothing()));
        }
        held.membership = Membership::Left;
        let kind = wire::ChannelEventKind::try_from(event.kind).unwrap_or_default();
        let text: String = event
            .text
            .chars()
            .take(crate::channels::rules::MAX_REASON_CHARS)
            .collect();
        let item = ChannelItem {
            id: Self::line_id(id, 0),
            channel_id: id,
            sender,
            outgoing: false,
            action: false,
            body: &text,
            created_at_unix_ms: now_ms(),
            channel_seq: None,
            line: line(kind, Some(me)),
            state: MessageState::Received,
            post: None,
            outbox_key: None,
            idempotency_key: None,
            reply_to: None,
            act: None,
        };
        let stored = store::apply_relayed(
            &self.engine.pool,
            &held.view.stored(Membership::Left),
            Some(&item),
        )
        .await?;
        self.announce(id);
        self.publish(item.id, stored, None).await?;
        Ok((Ok(()), nothing()))
    }

    async fn apply_relayed(&mut self, id: Uuid, accepted: Accepted) -> Result<Handled, StoreError> {
        let me = self.me;
        let Some(held) = self.channels.get_mut(&id) else {
            return Ok((Ok(()), nothing()));
        };
        let before: Vec<ActorId> = held.view.roster.members.keys().copied().collect();
        let accepted_state = accepted.view.is_some();
        let mut next = accepted.view.unwrap_or_else(|| held.view.clone());
        next.seq = accepted.seq;
        let in_roster = next.roster.role(&me).is_some();
        let membership = match (held.membership, in_roster) {
            (_, true) => Membership::Joined,
            (Membership::Joining, false) => Membership::Joining,
            (_, false) => Membership::Left,
        };
        let mut waiting = None;
        let mut placed = None;
        let item = match &accepted.step {
            Step::Post(post) if post.author == me => {
                placed = Some(post.post_id);
                None
            }
            Step::Post(post) => {
                match held
                    .sessions
                    .decrypt(post.author, &post.session_id, &post.ciphertext)
                {
                    Ok(Opened::Plaintext(plaintext)) => opened_content(&plaintext)
                        .map(|content| (post.post_id, post.author, content, None)),
                    Ok(Opened::Unknown) => {
                        waiting = Some(post.clone());
                        None
                    }
                    Err(err) => {
                        tracing::info!(channel = %next.name, error = %err, "a relayed post does not open");
                        None
                    }
                }
            }
            Step::Event(event) => Some((
                Self::line_id(id, accepted.seq),
                event.actor,
                Content {
                    text: event.text.clone(),
                    action: false,
                    reply_to: None,
                    act: None,
                },
                line(event.kind, event.target),
            )),
        };
        let channel_item = item
            .as_ref()
            .map(|(item_id, sender, content, line)| ChannelItem {
                id: *item_id,
                channel_id: id,
                sender: *sender,
                outgoing: *sender == me,
                action: content.action,
                body: content.body(),
                reply_to: content.reply_to,
                act: content.act.clone(),
                created_at_unix_ms: if line.is_some() {
                    now_ms()
                } else {
                    created_at(*item_id)
                },
                channel_seq: Some(accepted.seq),
                line: *line,
                state: MessageState::Received,
                post: None,
                outbox_key: None,
                idempotency_key: None,
            });
        let stored = store::apply_relayed(
            &self.engine.pool,
            &next.stored(membership),
            channel_item.as_ref(),
        )
        .await?;
        let changed = accepted_state || held.membership != membership;
        held.view = next;
        held.membership = membership;
        if changed {
            self.announce(id);
        }
        if let Some(item) = &channel_item {
            self.publish(item.id, stored, item.act.as_ref()).await?;
        }
        if let Some(post_id) = placed
            && let Some(message) =
                store::place_own_post(&self.engine.pool, id, post_id, accepted.seq).await?
        {
            self.engine
                .hub
                .message_state_changed(message.id, id, MessageState::Received);
        }
        if let Some(post) = waiting {
            let encoded = wire::ChannelPost {
                channel_id: id.as_bytes().to_vec(),
                post_id: post.post_id.as_bytes().to_vec(),
                author: post.author.as_bytes().to_vec(),
                session_id: post.session_id.clone(),
                ciphertext: post.ciphertext.clone(),
                signature: Vec::new(),
            };
            if !store::add_waiting(
                &self.engine.pool,
                id,
                accepted.seq,
                &post.session_id,
                &encoded.encode_to_vec(),
                self.engine.config.max_waiting,
            )
            .await?
            {
                tracing::warn!(channel = %id, "too many posts wait for their sessions; one is dropped");
            }
        }
        // Whoever joined gets this actor's sessions, from the first post of
        // it they must be able to read.
        let joined: Vec<_> = {
            let held = &self.channels[&id];
            held.view
                .profiles
                .values()
                .filter(|profile| profile.actor_id != me && !before.contains(&profile.actor_id))
                .cloned()
                .collect()
        };
        let flushed = if joined.is_empty() || membership != Membership::Joined {
            nothing()
        } else {
            let shares = self.shares_for_newcomer(id).await;
            let records = self.share_records(id, &joined, &shares);
            self.send_all(records)
        };
        Ok((Ok(()), flushed))
    }
}
