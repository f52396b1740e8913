//! Channel crypto: each member's messages are encrypted once for the whole
//! channel with a Megolm group session (vodozemac, the Matrix crypto crate)
//! and signed by their author's identity key.
//!
//! A member holds one *outbound* session per channel and hands its session
//! key to every other member over the pairwise box (an envelope sealed from
//! member to member, carried by the owner, who cannot open it). Each member
//! builds an *inbound* session from every key it receives, and so can read
//! exactly the messages of the sessions it was given. A member who leaves or
//! is removed keeps the inbound sessions it had; the others make new
//! outbound sessions and share them only with who remains, so it reads
//! nothing said after.
//!
//! Two signatures cover a post: Megolm's own, by the session's key (which
//! arrived sealed from its author), and the author's identity signature over
//! the post's ids and ciphertext (below), which every member checks against
//! the author's signed profile in the roster. The relaying owner can thus
//! order, withhold or drop a post, but not alter it or write one in another
//! member's name.

use ed25519_dalek::{Signature, VerifyingKey};
use uuid::Uuid;
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig, SessionKey,
};
use zeroize::Zeroizing;

use super::identity::{ActorId, Identity};

/// The largest Megolm message accepted: a chat payload of the largest
/// envelope, with room for Megolm's header, MAC and signature.
pub const MAX_GROUP_CIPHERTEXT_BYTES: usize = 64 * 1024;

/// What can be wrong with a group message or key from another actor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("not a Megolm message or session key")]
    Undecodable,
    #[error("the author's signature does not verify")]
    BadSignature,
    #[error("the message does not decrypt with its session")]
    Undecryptable,
    #[error("the message is from before the session's first known index")]
    UnknownIndex,
    #[error("a stored session does not open with this identity's key")]
    Pickle,
}

/// The key that encrypts this actor's group sessions at rest (PostgreSQL
/// holds them; the identity file holds what opens them). Derived, so that
/// no second secret has to be kept.
pub struct PickleKey(Zeroizing<[u8; 32]>);

impl PickleKey {
    pub fn of(identity: &Identity) -> Self {
        PickleKey(Zeroizing::new(
            identity.derive_key("kirc 2026-12 channel group sessions at rest v1"),
        ))
    }
}

/// This member's session for one channel: what it encrypts with.
pub struct OutboundSession(GroupSession);

impl OutboundSession {
    pub fn new() -> Self {
        OutboundSession(GroupSession::new(SessionConfig::version_1()))
    }

    /// The session's public id (its signing key in base64): the name under
    /// which members keep the inbound side.
    pub fn id(&self) -> String {
        self.0.session_id()
    }

    /// How many messages it has encrypted.
    pub fn message_index(&self) -> u32 {
        self.0.message_index()
    }

    /// The key another member builds the inbound side from: it opens this
    /// message and every later one, none before.
    pub fn share(&self) -> Vec<u8> {
        self.0.session_key().to_bytes()
    }

    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.0.encrypt(plaintext).to_bytes()
    }

    /// The inbound side of this session from its current index: what the
    /// member keeps to read its own posts and to hand the session to a
    /// member who joins later ([`InboundSession::export_from`]).
    pub fn inbound_copy(&self) -> InboundSession {
        InboundSession(InboundGroupSession::new(
            &self.0.session_key(),
            SessionConfig::version_1(),
        ))
    }

    pub fn pickle(&self, key: &PickleKey) -> String {
        self.0.pickle().encrypt(&key.0)
    }

    pub fn unpickle(pickled: &str, key: &PickleKey) -> Result<Self, GroupError> {
        GroupSessionPickle::from_encrypted(pickled, &key.0)
            .map(|pickle| OutboundSession(GroupSession::from_pickle(pickle)))
            .map_err(|_| GroupError::Pickle)
    }
}

impl Default for OutboundSession {
    fn default() -> Self {
        Self::new()
    }
}

/// Another member's session, as far as it was shared with this actor.
pub struct InboundSession(InboundGroupSession);

impl InboundSession {
    /// Builds the inbound side from a shared key. The key carries its own
    /// signature by the session's key, checked here; that it came from the
    /// member it names is up to the envelope that carried it.
    pub fn from_share(share: &[u8]) -> Result<Self, GroupError> {
        let key = SessionKey::from_bytes(share).map_err(|_| GroupError::Undecodable)?;
        Ok(InboundSession(InboundGroupSession::new(
            &key,
            SessionConfig::version_1(),
        )))
    }

    /// Builds the inbound side from an export ([`InboundSession::export_from`]).
    /// An export carries no signature of the session's own: it must come
    /// sealed from the member whose session it is.
    pub fn from_export(export: &[u8]) -> Result<Self, GroupError> {
        let key = ExportedSessionKey::from_bytes(export).map_err(|_| GroupError::Undecodable)?;
        Ok(InboundSession(InboundGroupSession::import(
            &key,
            SessionConfig::version_1(),
        )))
    }

    /// The session from message `index` on, for another member: it opens
    /// that message and every later one. `None` if this side does not reach
    /// back that far.
    pub fn export_from(&mut self, index: u32) -> Option<Vec<u8>> {
        self.0.export_at(index).map(|key| key.to_bytes())
    }

    pub fn id(&self) -> String {
        self.0.session_id()
    }

    /// The plaintext and the message's index in its session.
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<(Vec<u8>, u32), GroupError> {
        if ciphertext.len() > MAX_GROUP_CIPHERTEXT_BYTES {
            return Err(GroupError::Undecodable);
        }
        let message = MegolmMessage::from_bytes(ciphertext).map_err(|_| GroupError::Undecodable)?;
        match self.0.decrypt(&message) {
            Ok(decrypted) => Ok((decrypted.plaintext, decrypted.message_index)),
            Err(vodozemac::megolm::DecryptionError::UnknownMessageIndex(..)) => {
                Err(GroupError::UnknownIndex)
            }
            Err(_) => Err(GroupError::Undecryptable),
        }
    }

    pub fn pickle(&self, key: &PickleKey) -> String {
        self.0.pickle().encrypt(&key.0)
    }

    pub fn unpickle(pickled: &str, key: &PickleKey) -> Result<Self, GroupError> {
        InboundGroupSessionPickle::from_encrypted(pickled, &key.0)
            .map(|pickle| InboundSession(InboundGroupSession::from_pickle(pickle)))
            .map_err(|_| GroupError::Pickle)
    }
}

/// The index of a Megolm message in its session, read from its bytes.
pub fn message_index(ciphertext: &[u8]) -> Option<u32> {
    MegolmMessage::from_bytes(ciphertext)
        .ok()
        .map(|message| message.message_index())
}

/// What the author signs of a post: every field a member acts on, each
/// variable-length one with its length, under a label of its own so that no
/// other signature of the same key can pass for it.
fn post_signing_input(
    channel: Uuid,
    post_id: Uuid,
    author: ActorId,
    session_id: &str,
    ciphertext: &[u8],
) -> Vec<u8> {
    const LABEL: &[u8] = b"kirc channel post v1\0";
    let mut input = Vec::with_capacity(LABEL.len() + 64 + session_id.len() + ciphertext.len());
    input.extend_from_slice(LABEL);
    input.extend_from_slice(channel.as_bytes());
    input.extend_from_slice(post_id.as_bytes());
    input.extend_from_slice(author.as_bytes());
    for field in [session_id.as_bytes(), ciphertext] {
        // Every field is bounded far below 4 GiB by the envelope's size.
        input.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(field);
    }
    input
}

/// The author's signature over a post.
pub fn sign_post(
    author: &Identity,
    channel: Uuid,
    post_id: Uuid,
    session_id: &str,
    ciphertext: &[u8],
) -> Vec<u8> {
    author
        .sign(&post_signing_input(
            channel,
            post_id,
            author.id(),
            session_id,
            ciphertext,
        ))
        .to_bytes()
        .to_vec()
}

/// Checks a post's signature against its author's key (strict Ed25519).
pub fn verify_post(
    author_key: &VerifyingKey,
    channel: Uuid,
    post_id: Uuid,
    session_id: &str,
    ciphertext: &[u8],
    signature: &[u8],
) -> Result<(), GroupError> {
    let signature = Signature::from_slice(signature).map_err(|_| GroupError::BadSignature)?;
    let input = post_signing_input(
        channel,
        post_id,
        ActorId::of(author_key),
        session_id,
        ciphertext,
    );
    author_key
        .verify_strict(&input, &signature)
        .map_err(|_| GroupError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(n: u8) -> Identity {
        Identity::from_seed(&[n; 32])
    }

    #[test]
    fn every_member_with_the_share_reads_and_the_rest_do_not() {
        let mut alice = OutboundSession::new();
        let share = alice.share();
        let mut bob = InboundSession::from_share(&share).unwrap();
        let mut carol = InboundSession::from_share(&share).unwrap();
        assert_eq!(bob.id(), alice.id());

        let first = alice.encrypt(b"hello channel");
        assert_eq!(bob.decrypt(&first).unwrap(), (b"hello channel".to_vec(), 0));
        assert_eq!(carol.decrypt(&first).unwrap().0, b"hello channel");

        // Carol is removed: alice rotates and shares only with bob.
        let mut rotated = OutboundSession::new();
        assert_ne!(rotated.id(), alice.id());
        let mut bob_rotated = InboundSession::from_share(&rotated.share()).unwrap();
        let after = rotated.encrypt(b"said after the kick");
        assert_eq!(
            bob_rotated.decrypt(&after).unwrap().0,
            b"said after the kick"
        );
        // Carol holds every session she was given, and none opens it.
        assert_eq!(carol.decrypt(&after), Err(GroupError::Undecryptable));
        alice.encrypt(b"the old session moves on");
        assert_eq!(carol.decrypt(&after), Err(GroupError::Undecryptable));
    }

    #[test]
    fn a_share_opens_its_message_and_later_ones_only() {
        let mut alice = OutboundSession::new();
        let early = alice.encrypt(b"before dave joined");
        let mut dave = InboundSession::from_share(&alice.share()).unwrap();
        let late = alice.encrypt(b"after");
        assert_eq!(dave.decrypt(&early), Err(GroupError::UnknownIndex));
        assert_eq!(dave.decrypt(&late).unwrap(), (b"after".to_vec(), 1));
    }

    #[test]
    fn a_late_member_gets_the_session_from_the_first_post_it_must_read() {
        let mut alice = OutboundSession::new();
        let mut own = alice.inbound_copy();
        let before = alice.encrypt(b"before dave");
        // The owner placed these after dave's join, before alice knew of it.
        let after_join = [alice.encrypt(b"one"), alice.encrypt(b"two")];
        let mut dave = InboundSession::from_export(&own.export_from(1).unwrap()).unwrap();
        assert_eq!(dave.id(), alice.id());
        assert_eq!(dave.decrypt(&before), Err(GroupError::UnknownIndex));
        assert_eq!(dave.decrypt(&after_join[0]).unwrap(), (b"one".to_vec(), 1));
        assert_eq!(dave.decrypt(&after_join[1]).unwrap().0, b"two");
        assert_eq!(own.decrypt(&before).unwrap().0, b"before dave");
        assert!(own.export_from(99).is_some(), "a ratchet can move forward");
        assert!(dave.export_from(0).is_none(), "but never back");
        assert!(InboundSession::from_export(b"junk").is_err());
    }

    #[test]
    fn altered_or_foreign_bytes_are_refused() {
        let mut alice = OutboundSession::new();
        let mut bob = InboundSession::from_share(&alice.share()).unwrap();
        let mut message = alice.encrypt(b"hi");
        let middle = message.len() / 2;
        message[middle] ^= 1;
        assert!(bob.decrypt(&message).is_err());
        assert_eq!(bob.decrypt(b"junk"), Err(GroupError::Undecodable));
        assert!(InboundSession::from_share(b"junk").is_err());
        let mut share = alice.share();
        let last = share.len() - 1;
        share[last] ^= 1;
        assert!(InboundSession::from_share(&share).is_err());
    }

    #[test]
    fn sessions_survive_a_pickle_under_their_owner_key_only() {
        let me = seeded(1);
        let key = PickleKey::of(&me);
        let mut outbound = OutboundSession::new();
        outbound.encrypt(b"one");
        let inbound = InboundSession::from_share(&outbound.share()).unwrap();

        let mut outbound = OutboundSession::unpickle(&outbound.pickle(&key), &key).unwrap();
        assert_eq!(outbound.message_index(), 1);
        let mut inbound = InboundSession::unpickle(&inbound.pickle(&key), &key).unwrap();
        let message = outbound.encrypt(b"two");
        assert_eq!(inbound.decrypt(&message).unwrap(), (b"two".to_vec(), 1));

        let other = PickleKey::of(&seeded(2));
        assert_eq!(
            OutboundSession::unpickle(&outbound.pickle(&key), &other).err(),
            Some(GroupError::Pickle)
        );
        assert!(InboundSession::unpickle(&inbound.pickle(&key), &other).is_err());
    }

    #[test]
    fn a_post_verifies_only_as_its_author_signed_it() {
        let alice = seeded(1);
        let mallory = seeded(2);
        let channel = Uuid::from_bytes([7; 16]);
        let post = Uuid::now_v7();
        let signature = sign_post(&alice, channel, post, "session", b"ciphertext");
        let key = alice.signing_key();
        assert_eq!(
            verify_post(&key, channel, post, "session", b"ciphertext", &signature),
            Ok(())
        );

        let other_channel = Uuid::from_bytes([8; 16]);
        // (case, author key, channel, post id, session id, ciphertext)
        type Case<'a> = (&'a str, VerifyingKey, Uuid, Uuid, &'a str, &'a [u8]);
        let cases: [Case; 5] = [
            (
                "another author",
                mallory.signing_key(),
                channel,
                post,
                "session",
                b"ciphertext",
            ),
            (
                "another channel",
                key,
                other_channel,
                post,
                "session",
                b"ciphertext",
            ),
            (
                "another id",
                key,
                channel,
                Uuid::now_v7(),
                "session",
                b"ciphertext",
            ),
            (
                "another session",
                key,
                channel,
                post,
                "sessioN",
                b"ciphertext",
            ),
            (
                "altered bytes",
                key,
                channel,
                post,
                "session",
                b"ciphertexT",
            ),
        ];
        for (case, key, channel, post, session, ciphertext) in cases {
            assert_eq!(
                verify_post(&key, channel, post, session, ciphertext, &signature),
                Err(GroupError::BadSignature),
                "{case}"
            );
        }
        // The length prefixes keep a byte from moving between fields.
        let shifted = sign_post(&alice, channel, post, "sessionc", b"iphertext");
        assert_ne!(shifted, signature);
        assert!(verify_post(&key, channel, post, "session", b"ciphertext", b"short").is_err());
    }
}
