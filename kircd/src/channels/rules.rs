//! What a channel's owner allows: the IRC rules of membership, ops, bans,
//! topic and moderated mode, as a pure function of the roster and one
//! actor's request. The owner's kircd applies every member's request
//! through [`Roster::apply`] in its order and relays what it returns; the
//! members apply the owner's relayed events through the same function to
//! follow along, so one piece of code decides on both sides.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::identity::ActorId;

/// A member's standing in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Op,
    /// The actor that created the channel and relays it; exactly one.
    Owner,
}

impl Role {
    fn is_op(self) -> bool {
        self >= Role::Op
    }
}

/// What an actor asks of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Come in (the owner checked the invite's secret before).
    Join,
    Part {
        reason: String,
    },
    Kick {
        target: ActorId,
        reason: String,
    },
    Ban {
        target: ActorId,
        reason: String,
    },
    Unban {
        target: ActorId,
    },
    Op {
        target: ActorId,
    },
    Deop {
        target: ActorId,
    },
    Topic {
        text: String,
    },
    Moderate {
        on: bool,
    },
    /// Say something.
    Post,
}

/// Why a request is refused: what the requester's TUI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you are not in the channel")]
    NotMember,
    #[error("you are banned from the channel")]
    Banned,
    #[error("only the channel's operators may do that")]
    NotOp,
    #[error("they are not in the channel")]
    NoSuchMember,
    #[error("the channel's owner relays it and cannot be removed or demoted")]
    Owner,
    #[error("the channel is moderated: only operators speak")]
    Moderated,
    #[error("the channel is full")]
    Full,
    #[error("the topic is longer than {MAX_TOPIC_CHARS} characters")]
    TopicTooLong,
    #[error("the reason is longer than {MAX_REASON_CHARS} characters")]
    ReasonTooLong,
}

pub const MAX_TOPIC_CHARS: usize = 390;
pub const MAX_REASON_CHARS: usize = 300;

/// What an applied request did, for the owner to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// A line for the scrollback, unless nothing changed (a join of a
    /// member, a topic set to what it was) or the request was a post.
    pub line: bool,
    /// Someone left or was removed: the members make new group sessions
    /// before they send again (the roster's epoch grew).
    pub removed: Option<ActorId>,
}

/// A channel's membership and modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    pub members: BTreeMap<ActorId, Role>,
    pub bans: BTreeSet<ActorId>,
    pub topic: String,
    pub moderated: bool,
    /// Grows whenever someone leaves or is removed.
    pub epoch: u64,
    /// The most members the channel takes.
    pub capacity: usize,
}

impl Roster {
    /// A new channel: its owner alone.
    pub fn new(owner: ActorId, topic: String, capacity: usize) -> Self {
        Roster {
            members: BTreeMap::from([(owner, Role::Owner)]),
            bans: BTreeSet::new(),
            topic,
            moderated: false,
            epoch: 0,
            capacity,
        }
    }

    pub fn role(&self, actor: &ActorId) -> Option<Role> {
        self.members.get(actor).copied()
    }

    /// Applies `request` by `actor`, or says why not (and changes nothing).
    pub fn apply(&mut self, actor: ActorId, request: &Request) -> Result<Applied, Refusal> {
        let unchanged = Applied {
            line: false,
            removed: None,
        };
        let line = Applied {
            line: true,
            removed: None,
        };
        if let Request::Join = request {
            if self.bans.contains(&actor) {
                return Err(Refusal::Banned);
            }
            if self.members.contains_key(&actor) {
                return Ok(unchanged);
            }
            if self.members.len() >= self.capacity {
                return Err(Refusal::Full);
            }
            self.members.insert(actor, Role::Member);
            return Ok(line);
        }
        let role = self.role(&actor).ok_or(Refusal::NotMember)?;
        match request {
            Request::Join => Ok(unchanged),
            Request::Post if self.moderated && !role.is_op() => Err(Refusal::Moderated),
            Request::Post => Ok(unchanged),
            Request::Part { reason } => {
                check_reason(reason)?;
                if role == Role::Owner {
                    return Err(Refusal::Owner);
                }
                Ok(self.remove(actor))
            }
            Request::Topic { text } => {
                if text.chars().count() > MAX_TOPIC_CHARS {
                    return Err(Refusal::TopicTooLong);
                }
                if self.moderated && !role.is_op() {
                    return Err(Refusal::NotOp);
                }
                if *text == self.topic {
                    return Ok(unchanged);
                }
                self.topic.clone_from(text);
                Ok(line)
            }
            _ if !role.is_op() => Err(Refusal::NotOp),
            Request::Moderate { on } => {
                if self.moderated == *on {
                    return Ok(unchanged);
                }
                self.moderated = *on;
                Ok(line)
            }
            Request::Kick { target, reason } => {
                check_reason(reason)?;
                match self.role(target) {
                    None => Err(Refusal::NoSuchMember),
                    Some(Role::Owner) => Err(Refusal::Owner),
                    Some(_) => Ok(self.remove(*target)),
                }
            }
            Request::Ban { target, reason } => {
                check_reason(reason)?;
                if self.role(target) == Some(Role::Owner) {
                    return Err(Refusal::Owner);
                }
                let newly = self.bans.insert(*target);
                if self.members.contains_key(target) {
                    return Ok(self.remove(*target));
                }
                Ok(Applied {
                    line: newly,
                    removed: None,
                })
            }
            Request::Unban { target } => Ok(Applied {
                line: self.bans.remove(target),
                removed: None,
            }),
            Request::Op { target } | Request::Deop { target } => {
                let wanted = if matches!(request, Request::Op { .. }) {
                    Role::Op
                } else {
                    Role::Member
                };
                match self.members.get_mut(target) {
                    None => Err(Refusal::NoSuchMember),
                    Some(Role::Owner) => Err(Refusal::Owner),
                    Some(current) if *current == wanted => Ok(unchanged),
                    Some(current) => {
                        *current = wanted;
                        Ok(line)
                    }
                }
            }
        }
    }

    fn remove(&mut self, actor: ActorId) -> Applied {
        self.members.remove(&actor);
        self.epoch += 1;
        Applied {
            line: true,
            removed: Some(actor),
        }
    }
}

pub const MAX_NAME_CHARS: usize = 50;

/// Why a channel name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a channel's name starts with #, as in #rust")]
    NoHash,
    #[error("a channel's name is # and at least one more character")]
    Empty,
    #[error("a channel's name is at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("a channel's name has no spaces, commas, colons or control characters")]
    Forbidden,
}

/// Checks a channel name the way IRC has them: `#`, then up to 49
/// characters without spaces, commas, colons or control characters.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let Some(rest) = name.strip_prefix('#') else {
        return Err(NameError::NoHash);
    };
    if rest.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ':')
    {
        return Err(NameError::Forbidden);
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), Refusal> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Refusal::ReasonTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(n: u8) -> ActorId {
        ActorId::from_slice(&[n; 16]).unwrap()
    }

    const OWNER: u8 = 1;
    const OP: u8 = 2;
    const MEMBER: u8 = 3;
    const OTHER: u8 = 4;
    const BANNED: u8 = 5;
    const STRANGER: u8 = 6;

    /// Owner 1, op 2, members 3 and 4, 5 banned, 6 a stranger.
    fn roster() -> Roster {
        let mut roster = Roster::new(actor(OWNER), "the topic".into(), 5);
        for n in [OP, MEMBER, OTHER] {
            roster.apply(actor(n), &Request::Join).unwrap();
        }
        roster
            .apply(actor(OWNER), &Request::Op { target: actor(OP) })
            .unwrap();
        roster.bans.insert(actor(BANNED));
        roster
    }

    fn text(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn each_request_is_allowed_or_refused_by_the_rules() {
        use Request::*;
        let kick = |n| Kick {
            target: actor(n),
            reason: text("bye"),
        };
        let ban = |n| Ban {
            target: actor(n),
            reason: String::new(),
        };
        let long = "x".repeat(MAX_TOPIC_CHARS + 1);
        // (who, request, outcome: Ok((line, removed)) or the refusal)
        type Outcome = Result<(bool, Option<u8>), Refusal>;
        let cases: Vec<(u8, Request, Outcome)> = vec![
            (STRANGER, Join, Ok((true, None))),
            (MEMBER, Join, Ok((false, None))),
            (BANNED, Join, Err(Refusal::Banned)),
            (STRANGER, Post, Err(Refusal::NotMember)),
            (MEMBER, Post, Ok((false, None))),
            (
                MEMBER,
                Part {
                    reason: text("bye"),
                },
                Ok((true, Some(MEMBER))),
            ),
            (
                OWNER,
                Part {
                    reason: text("bye"),
                },
                Err(Refusal::Owner),
            ),
            (
                STRANGER,
                Part {
                    reason: text("bye"),
                },
                Err(Refusal::NotMember),
            ),
            (MEMBER, kick(OTHER), Err(Refusal::NotOp)),
            (OP, kick(OTHER), Ok((true, Some(OTHER)))),
            (OP, kick(OWNER), Err(Refusal::Owner)),
            (OP, kick(STRANGER), Err(Refusal::NoSuchMember)),
            (OWNER, kick(OP), Ok((true, Some(OP)))),
            (OP, ban(MEMBER), Ok((true, Some(MEMBER)))),
            (OP, ban(STRANGER), Ok((true, None))),
            (OP, ban(BANNED), Ok((false, None))),
            (OP, ban(OWNER), Err(Refusal::Owner)),
            (MEMBER, ban(OTHER), Err(Refusal::NotOp)),
            (
                OP,
                Unban {
                    target: actor(BANNED),
                },
                Ok((true, None)),
            ),
            (
                OP,
                Unban {
                    target: actor(MEMBER),
                },
                Ok((false, None)),
            ),
            (
                MEMBER,
                Unban {
                    target: actor(BANNED),
                },
                Err(Refusal::NotOp),
            ),
            (
                OWNER,
                Op {
                    target: actor(MEMBER),
                },
                Ok((true, None)),
            ),
            (OWNER, Op { target: actor(OP) }, Ok((false, None))),
            (
                OP,
                Deop {
                    target: actor(OWNER),
                },
                Err(Refusal::Owner),
            ),
            (
                OP,
                Deop {
                    target: actor(STRANGER),
                },
                Err(Refusal::NoSuchMember),
            ),
            (
                MEMBER,
                Op {
                    target: actor(MEMBER),
                },
                Err(Refusal::NotOp),
            ),
            (MEMBER, Topic { text: text("new") }, Ok((true, None))),
            (
                MEMBER,
                Topic {
                    text: text("the topic"),
                },
                Ok((false, None)),
            ),
            (MEMBER, Topic { text: long }, Err(Refusal::TopicTooLong)),
            (MEMBER, Moderate { on: true }, Err(Refusal::NotOp)),
            (OP, Moderate { on: true }, Ok((true, None))),
            (OP, Moderate { on: false }, Ok((false, None))),
            (
                OP,
                Kick {
                    target: actor(MEMBER),
                    reason: "x".repeat(MAX_REASON_CHARS + 1),
                },
                Err(Refusal::ReasonTooLong),
            ),
        ];
        for (who, request, expected) in cases {
            let mut roster = roster();
            let before = roster.clone();
            let outcome = roster.apply(actor(who), &request);
            let expected = expected.map(|(line, removed)| Applied {
                line,
                removed: removed.map(actor),
            });
            assert_eq!(outcome, expected, "{who} {request:?}");
            match outcome {
                Err(_) => assert_eq!(roster, before, "a refusal changes nothing: {request:?}"),
                Ok(Applied {
                    removed: Some(gone),
                    ..
                }) => {
                    assert!(roster.role(&gone).is_none());
                    assert_eq!(roster.epoch, before.epoch + 1, "{request:?}");
                }
                Ok(_) => assert_eq!(roster.epoch, before.epoch, "{request:?}"),
            }
        }
    }

    #[test]
    fn moderated_mode_lets_only_ops_speak_and_set_the_topic() {
        let mut roster = roster();
        roster
            .apply(actor(OP), &Request::Moderate { on: true })
            .unwrap();
        assert_eq!(
            roster.apply(actor(MEMBER), &Request::Post),
            Err(Refusal::Moderated)
        );
        assert!(roster.apply(actor(OP), &Request::Post).is_ok());
        assert!(roster.apply(actor(OWNER), &Request::Post).is_ok());
        let topic = Request::Topic { text: text("t") };
        assert_eq!(roster.apply(actor(MEMBER), &topic), Err(Refusal::NotOp));
        assert!(roster.apply(actor(OP), &topic).is_ok());
    }

    #[test]
    fn a_banned_member_is_out_and_stays_out_until_unbanned() {
        let mut roster = roster();
        let ban = Request::Ban {
            target: actor(MEMBER),
            reason: String::new(),
        };
        roster.apply(actor(OP), &ban).unwrap();
        assert_eq!(
            roster.apply(actor(MEMBER), &Request::Join),
            Err(Refusal::Banned)
        );
        roster
            .apply(
                actor(OP),
                &Request::Unban {
                    target: actor(MEMBER),
                },
            )
            .unwrap();
        assert!(roster.apply(actor(MEMBER), &Request::Join).is_ok());
        assert_eq!(roster.role(&actor(MEMBER)), Some(Role::Member));
    }

    #[test]
    fn channel_names_are_what_irc_users_expect() {
        for good in ["#rust", "#a", "#kirc-dev", "#café", "##", "#日本"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = format!("#{}", "x".repeat(MAX_NAME_CHARS));
        let cases = [
            ("rust", NameError::NoHash),
            ("#", NameError::Empty),
            (long.as_str(), NameError::TooLong),
            ("#two words", NameError::Forbidden),
            ("#a,b", NameError::Forbidden),
            ("#a:b", NameError::Forbidden),
            ("#bell\u{7}", NameError::Forbidden),
            ("#tab\t", NameError::Forbidden),
        ];
        for (name, expected) in cases {
            assert_eq!(check_name(name), Err(expected), "{name:?}");
        }
    }

    #[test]
    fn a_full_channel_takes_no_one_more() {
        let mut roster = roster();
        roster.apply(actor(STRANGER), &Request::Join).unwrap();
        assert_eq!(roster.members.len(), 5);
        assert_eq!(roster.apply(actor(7), &Request::Join), Err(Refusal::Full));
    }
}
