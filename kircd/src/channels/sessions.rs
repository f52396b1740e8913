//! One channel's group sessions on this actor's side: its own current
//! outbound session (with the inbound copy it exports from for members who
//! join later), and every session another member shared with it, by id,
//! with the member it came from.

use std::collections::HashMap;

use uuid::Uuid;

use crate::crypto::group::{GroupError, InboundSession, OutboundSession, PickleKey};
use crate::crypto::identity::ActorId;
use crate::store::StoredSession;

struct Own {
    session: OutboundSession,
    epoch: u64,
}

struct Shared {
    author: ActorId,
    session: InboundSession,
}

/// What decrypting a post found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Plaintext(Vec<u8>),
    /// No session of that id (yet): the post waits for it.
    Unknown,
}

#[derive(Default)]
pub struct Sessions {
    own: Option<Own>,
    shared: HashMap<String, Shared>,
}

impl Sessions {
    /// The sessions as stored; one that does not open with `key` is left
    /// out with a warning (its posts then wait, as for a session never
    /// received).
    pub fn load(stored: &[StoredSession], key: &PickleKey) -> Self {
        let mut sessions = Sessions::default();
        for row in stored {
            if row.outbound {
                match OutboundSession::unpickle(&row.pickle, key) {
                    // Stored oldest first: the last is the current one.
                    Ok(session) => {
                        sessions.own = Some(Own {
                            session,
                            epoch: row.epoch,
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "a stored outbound session does not open")
                    }
                }
            } else {
                match InboundSession::unpickle(&row.pickle, key) {
                    Ok(session) => {
                        sessions.shared.insert(
                            row.session_id.clone(),
                            Shared {
                                author: row.author,
                                session,
                            },
                        );
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "a stored inbound session does not open")
                    }
                }
            }
        }
        sessions
    }

    /// The current own session's id, if it was made for `epoch` or later:
    /// a session from before someone left is never used to send again.
    pub fn current(&self, epoch: u64) -> Option<String> {
        self.own
            .as_ref()
            .filter(|own| own.epoch >= epoch)
            .map(|own| own.session.id())
    }

    /// Makes a new own session for `epoch`; returns its rows to store (the
    /// outbound session and its inbound copy).
    pub fn rotate(
        &mut self,
        channel_id: Uuid,
        me: ActorId,
        epoch: u64,
        key: &PickleKey,
    ) -> Vec<StoredSession> {
        let session = OutboundSession::new();
        let copy = session.inbound_copy();
        let id = session.id();
        let rows = vec![
            StoredSession {
                channel_id,
                session_id: id.clone(),
                outbound: true,
                author: me,
                epoch,
                pickle: session.pickle(key),
            },
            StoredSession {
                channel_id,
                session_id: id.clone(),
                outbound: false,
                author: me,
                epoch,
                pickle: copy.pickle(key),
            },
        ];
        self.own = Some(Own { session, epoch });
        self.shared.insert(
            id,
            Shared {
                author: me,
                session: copy,
            },
        );
        rows
    }

    /// Encrypts with the current own session; returns the session's id, the
    /// ciphertext and the session's row to store before the post leaves
    /// (so that a restart never encrypts twice at one index).
    pub fn encrypt(
        &mut self,
        channel_id: Uuid,
        me: ActorId,
        plaintext: &[u8],
        key: &PickleKey,
    ) -> Option<(String, Vec<u8>, StoredSession)> {
        let own = self.own.as_mut()?;
        let ciphertext = own.session.encrypt(plaintext);
        let row = StoredSession {
            channel_id,
            session_id: own.session.id(),
            outbound: true,
            author: me,
            epoch: own.epoch,
            pickle: own.session.pickle(key),
        };
        Some((own.session.id(), ciphertext, row))
    }

    /// An own session from message `index` on, for a member who joined.
    pub fn export(&mut self, session_id: &str, index: u32) -> Option<Vec<u8>> {
        self.shared.get_mut(session_id)?.session.export_from(index)
    }

    /// The current own session from its next message on.
    pub fn export_current(&mut self) -> Option<(String, Vec<u8>)> {
        let own = self.own.as_ref()?;
        let (id, index) = (own.session.id(), own.session.message_index());
        let export = self.export(&id, index)?;
        Some((id, export))
    }

    /// Keeps a session `author` shared; false if one of that id is known
    /// (a copy of the share, or someone else's claim to it).
    pub fn add_shared(&mut self, author: ActorId, session: InboundSession) -> bool {
        let id = session.id();
        if self.shared.contains_key(&id) {
            return false;
        }
        self.shared.insert(id, Shared { author, session });
        true
    }

    /// Opens a post by `author` in `session_id`. A session shared by one
    /// member never opens another's posts.
    pub fn decrypt(
        &mut self,
        author: ActorId,
        session_id: &str,
        ciphertext: &[u8],
    ) -> Result<Opened, GroupError> {
        let Some(shared) = self.shared.get_mut(session_id) else {
            return Ok(Opened::Unknown);
        };
        if shared.author != author {
            return Err(GroupError::BadSignature);
        }
        shared
            .session
            .decrypt(ciphertext)
            .map(|(plaintext, _)| Opened::Plaintext(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::identity;

    #[test]
    fn a_session_is_made_per_epoch_and_opens_only_its_authors_posts() {
        let (me, other) = (identity(1), identity(2));
        let key = PickleKey::of(&me);
        let channel = Uuid::new_v4();
        let mut mine = Sessions::default();
        assert_eq!(mine.current(0), None);
        let rows = mine.rotate(channel, me.id(), 0, &key);
        let first = mine.current(0).unwrap();
        assert_eq!(mine.current(1), None, "someone left: a new one is due");
        let (id, ciphertext, _) = mine.encrypt(channel, me.id(), b"hi", &key).unwrap();
        assert_eq!(id, first);

        // Another member gets the export and opens the post; the session
        // is mine, so it opens nothing claimed by someone else.
        let mut theirs = Sessions::default();
        let export = mine.export(&first, 0).unwrap();
        assert!(theirs.add_shared(me.id(), InboundSession::from_export(&export).unwrap()));
        assert!(!theirs.add_shared(other.id(), InboundSession::from_export(&export).unwrap()));
        assert_eq!(
            theirs.decrypt(me.id(), &first, &ciphertext),
            Ok(Opened::Plaintext(b"hi".to_vec()))
        );
        assert_eq!(
            theirs.decrypt(other.id(), &first, &ciphertext),
            Err(GroupError::BadSignature)
        );
        assert_eq!(
            theirs.decrypt(me.id(), "unknown", &ciphertext),
            Ok(Opened::Unknown)
        );

        // Stored and loaded again, the sessions carry on where they were.
        let mut stored = rows;
        let (_, second, row) = mine.encrypt(channel, me.id(), b"again", &key).unwrap();
        stored[0] = row;
        let mut loaded = Sessions::load(&stored, &key);
        assert_eq!(loaded.current(0), Some(first.clone()));
        assert_eq!(
            loaded.decrypt(me.id(), &first, &second),
            Ok(Opened::Plaintext(b"again".to_vec()))
        );
        let (_, third, _) = loaded.encrypt(channel, me.id(), b"third", &key).unwrap();
        assert_eq!(crate::crypto::group::message_index(&third), Some(2));
    }
}
