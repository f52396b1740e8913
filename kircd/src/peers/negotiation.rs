//! The rules of negotiating one direct connection per contact, as pure
//! functions of what the manager knows (unit-tested here, applied by the
//! manager): who answers when both sides offered at once, when to try
//! again, whom to close when the cap is reached.
//!
//! Both sides may offer at the same instant (each sees the other come
//! online). "Perfect negotiation" resolves it: one side is polite (the
//! lower actor id). The impolite side ignores an offer that collides with
//! its own; the polite side rolls its own offer back and answers. Each
//! session is its own connection, so the polite side rolls back by
//! dropping its offering connection (nothing but its offer and candidates
//! left it, and the contact ignores those by session id) and answering on
//! a new one. Exactly one connection results, whichever offer arrives
//! first.

use std::time::Duration;

use crate::crypto::identity::ActorId;

/// A session of negotiation: 16 random bytes chosen by the side that
/// offered first.
pub type SessionId = [u8; 16];

/// Which side of a session this daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Offerer,
    Answerer,
}

/// The current session with a contact, as far as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub id: SessionId,
    pub role: Role,
    /// The data channel opened.
    pub open: bool,
}

/// What to do with an offer from a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOffer {
    /// Answer it on a new connection, closing the current one if any.
    Answer,
    /// The same session offers again (an ICE restart): answer on the same
    /// connection.
    Renegotiate,
    /// Keep the own offer: the contact, being polite, answers it.
    Ignore,
}

/// The polite side of a pair: the lower actor id.
pub fn polite(me: ActorId, contact: ActorId) -> bool {
    me.as_bytes() < contact.as_bytes()
}

pub fn on_offer(current: Option<Current>, polite: bool, offered: SessionId) -> OnOffer {
    let Some(current) = current else {
        return OnOffer::Answer;
    };
    if current.id == offered {
        return match current.role {
            Role::Answerer => OnOffer::Renegotiate,
            // Our own session id offered back to us: nothing sane to do.
            Role::Offerer => OnOffer::Ignore,
        };
    }
    let collision = current.role == Role::Offerer && !current.open;
    if collision && !polite {
        OnOffer::Ignore
    } else {
        // A collision on the polite side, or the contact started afresh
        // (it restarted, or gave its old session up): its new session wins.
        OnOffer::Answer
    }
}

/// Whether a message of `session` (an answer, candidates, a hang-up)
/// concerns the current session; anything else is left over from one
/// that was replaced and is dropped.
pub fn concerns(current: Option<Current>, session: SessionId) -> bool {
    current.is_some_and(|current| current.id == session)
}

/// The wait before trying a contact again after `failures` sessions in a
/// row that never opened or broke: 1 s, doubling, at most `cap`.
pub fn retry_delay(failures: u32, cap: Duration) -> Duration {
    let doubled = Duration::from_secs(1).saturating_mul(1u32 << failures.min(16));
    doubled.min(cap)
}

/// The hang-up of a side with no place for the session (`rtc.max_peers`
/// connections to contacts in use): the other waits rather than retries.
pub const NO_ROOM: &str = "no room for another connection";

/// Whether a connection to one more contact fits under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// A place is free.
    Free,
    /// The cap is reached; closing this one makes room.
    Evict(ActorId),
    /// The cap is reached and every open connection was used more
    /// recently than the new contact: it waits.
    Full,
}

/// Room for a connection to a contact last used (a chat sent or received)
/// at `wanted`, given (contact, last use) of the connections open now.
/// Only use makes room: the least recently used connection is closed for a
/// contact used more recently, and never for one that is merely online —
/// otherwise, with more contacts online than the cap, each would close
/// another's connection in turn, for ever.
pub fn room<T: Ord + Copy>(open: &[(ActorId, Option<T>)], wanted: Option<T>, cap: usize) -> Room {
    if open.len() < cap {
        return Room::Free;
    }
    let least_recent = open.iter().min_by_key(|(_, last_used)| *last_used);
    match least_recent {
        // `None` (never used) sorts before any use.
        Some((actor, last_used)) if wanted.is_some() && *last_used < wanted => Room::Evict(*actor),
        _ => Room::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SessionId = [1; 16];
    const B: SessionId = [2; 16];

    fn session(id: SessionId, role: Role, open: bool) -> Option<Current> {
        Some(Current { id, role, open })
    }

    #[test]
    fn offers() {
        let cases = [
            ("no session", None, false, B, OnOffer::Answer),
            (
                "glare, impolite keeps its offer",
                session(A, Role::Offerer, false),
                false,
                B,
                OnOffer::Ignore,
            ),
            (
                "glare, polite rolls back and answers",
                session(A, Role::Offerer, false),
                true,
                B,
                OnOffer::Answer,
            ),
            (
                "an ICE restart of the session we answered",
                session(A, Role::Answerer, true),
                false,
                A,
                OnOffer::Renegotiate,
            ),
            (
                "the contact restarted while our offer was open",
                session(A, Role::Offerer, true),
                false,
                B,
                OnOffer::Answer,
            ),
            (
                "the contact gave up the session we were answering",
                session(A, Role::Answerer, false),
                false,
                B,
                OnOffer::Answer,
            ),
            (
                "our own session id offered back",
                session(A, Role::Offerer, false),
                true,
                A,
                OnOffer::Ignore,
            ),
        ];
        for (name, current, polite, offered, expected) in cases {
            assert_eq!(on_offer(current, polite, offered), expected, "{name}");
        }
    }

    /// Both sides offer at once, and each offer reaches the other before,
    /// after, or instead of its answer: exactly one session survives on
    /// both sides.
    #[test]
    fn glare_always_ends_in_one_session() {
        let low = ActorId::from_slice(&[0; 16]).unwrap();
        let high = ActorId::from_slice(&[9; 16]).unwrap();
        assert!(polite(low, high));
        assert!(!polite(high, low));
        let low_offer = session(A, Role::Offerer, false);
        let high_offer = session(B, Role::Offerer, false);
        // The polite (low) side receives the high side's offer: it answers B.
        assert_eq!(on_offer(low_offer, true, B), OnOffer::Answer);
        let low_now = session(B, Role::Answerer, false);
        // The impolite (high) side receives the low side's offer A: ignored.
        assert_eq!(on_offer(high_offer, false, A), OnOffer::Ignore);
        // What the low side still sends of A no longer concerns the high
        // side, and B's answer concerns both.
        assert!(!concerns(high_offer, A));
        assert!(concerns(high_offer, B));
        assert!(concerns(low_now, B));
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        let cap = Duration::from_secs(60);
        let delays: Vec<u64> = (0..9).map(|n| retry_delay(n, cap).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX, cap), cap);
    }

    #[test]
    fn only_a_contact_used_more_recently_than_an_open_connection_makes_room() {
        let a = ActorId::from_slice(&[1; 16]).unwrap();
        let b = ActorId::from_slice(&[2; 16]).unwrap();
        let c = ActorId::from_slice(&[3; 16]).unwrap();
        let used = [(a, Some(30)), (b, Some(10)), (c, Some(20))];
        let idle = [(a, Some(30)), (b, None), (c, Some(20))];
        let cases = [
            ("under the cap", &used[..], None, 4, Room::Free),
            (
                "under the cap, used long ago",
                &used[..],
                Some(5),
                4,
                Room::Free,
            ),
            ("used after the LRU", &used[..], Some(40), 3, Room::Evict(b)),
            (
                "used before every open one",
                &used[..],
                Some(5),
                3,
                Room::Full,
            ),
            (
                "used as long ago as the LRU",
                &used[..],
                Some(10),
                3,
                Room::Full,
            ),
            ("never used", &used[..], None, 3, Room::Full),
            (
                "an open one never used, any use wins",
                &idle[..],
                Some(1),
                3,
                Room::Evict(b),
            ),
            (
                "an open one never used, nor the new one",
                &idle[..],
                None,
                3,
                Room::Full,
            ),
            ("nothing open, cap 0", &[][..], Some(1), 0, Room::Full),
        ];
        for (what, open, wanted, cap, expected) in cases {
            assert_eq!(room(open, wanted, cap), expected, "{what}");
        }
    }
}
