//! Sealing and opening envelopes (`kirc.wire.v1.Envelope`). Past 600 lines
//! only with its tests (from `mod tests` on): the property tests of the
//! round trips sit beside the code they pin.
//!
//! Sealing: the payload is encrypted with a libsodium-style box
//! (crypto_box's `ChaChaBox`: X25519 between the sender's and the recipient's
//! box keys, then XChaCha20-Poly1305), and the envelope is signed with the
//! sender's Ed25519 key. The 24-byte nonce is the 16-byte message id followed
//! by the first 8 bytes of the sender's id: message ids are fresh UUIDv7s, and
//! the sender part keeps the two directions of a pair (which share the box
//! key) apart, so no nonce repeats under a key. It is derived, not sent.
//! A contact request goes to someone who does not know the sender's keys yet,
//! so it uses an anonymous sealed box, and the signature is checked against
//! the profile inside it.
//!
//! Opening checks, in order and each with its own [`Rejection`]: size,
//! decoding, version, field sizes, recipient, signature, decryption. Nothing
//! is decrypted before its signature is verified.

use crypto_box::aead::Aead;
use crypto_box::{ChaChaBox, Nonce};
use ed25519_dalek::{Signature, VerifyingKey};
use kirc_proto::wire::v1 as wire;
use prost::Message;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::identity::{ACTOR_ID_LEN, ActorId, Identity};
use crate::crypto::signatures::{self, Signed};

/// The envelope version this code writes and reads.
pub const VERSION: u32 = 1;

/// Envelopes larger than this are rejected unread. A chat message is a few
/// hundred bytes; this leaves room for profiles with a CA certificate.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Why an incoming record was not accepted. Each is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    Oversized,
    /// Not a protobuf Envelope.
    Undecodable,
    /// A version this kircd does not read.
    UnknownVersion,
    /// Decodes, but a field has the wrong size or an unknown kind.
    Malformed,
    /// Addressed to another actor.
    WrongRecipient,
    /// From an actor that is not a contact.
    Stranger,
    /// From a blocked actor.
    Blocked,
    /// The signature does not verify with the sender's key.
    BadSignature,
    /// Signed correctly but does not decrypt, or its payload is invalid.
    Undecryptable,
    /// A message id already stored, arriving again from elsewhere.
    Replay,
    /// A control message too old to act on.
    Stale,
    /// The sender exceeds its inbound rate.
    RateLimited,
    /// An act on a message its sender may not act on: an edit or deletion
    /// of another's message, a message of another conversation, or past
    /// the bound of acts waiting for messages that have not arrived.
    Forbidden,
}

impl Rejection {
    pub const ALL: [Rejection; 13] = [
        Rejection::Oversized,
        Rejection::Undecodable,
        Rejection::UnknownVersion,
        Rejection::Malformed,
        Rejection::WrongRecipient,
        Rejection::Stranger,
        Rejection::Blocked,
        Rejection::BadSignature,
        Rejection::Undecryptable,
        Rejection::Replay,
        Rejection::Stale,
        Rejection::RateLimited,
        Rejection::Forbidden,
    ];

    /// The counter and log name.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Oversized => "oversized",
            Rejection::Undecodable => "undecodable",
            Rejection::UnknownVersion => "unknown_version",
            Rejection::Malformed => "malformed",
            Rejection::WrongRecipient => "wrong_recipient",
            Rejection::Stranger => "stranger",
            Rejection::Blocked => "blocked",
            Rejection::BadSignature => "bad_signature",
            Rejection::Undecryptable => "undecryptable",
            Rejection::Replay => "replay",
            Rejection::Stale => "stale",
            Rejection::RateLimited => "rate_limited",
            Rejection::Forbidden => "forbidden",
        }
    }
}

/// The checked header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub message_id: Uuid,
    pub sender: ActorId,
    pub recipient: ActorId,
    pub kind: wire::Kind,
}

impl Header {
    /// The creation time, from the UUIDv7 message id.
    pub fn created_at_unix_ms(&self) -> i64 {
        self.message_id
            .get_timestamp()
            .map(|timestamp| {
                let (seconds, nanos) = timestamp.to_unix();
                i64::try_from(seconds).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000)
            })
            .unwrap_or(0)
    }
}

/// The id of the one-to-one conversation between two actors: the same on
/// both sides, whoever computes it.
pub fn conversation_id(one: ActorId, other: ActorId) -> Uuid {
    let (low, high) = if one <= other {
        (one, other)
    } else {
        (other, one)
    };
    let digest = Sha256::new()
        .chain_update(b"kirc conversation v1")
        .chain_update(low.as_bytes())
        .chain_update(high.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// A new message id: UUIDv7, ordered by creation time.
pub fn new_message_id() -> Uuid {
    Uuid::now_v7()
}

fn nonce(message_id: &Uuid, sender: &ActorId) -> Nonce {
    let mut nonce = Nonce::default();
    nonce[..16].copy_from_slice(message_id.as_bytes());
    nonce[16..].copy_from_slice(&sender.as_bytes()[..8]);
    nonce
}

fn signing_input(envelope: &wire::Envelope) -> Vec<u8> {
    let mut input = Vec::with_capacity(96 + envelope.ciphertext.len());
    input.extend_from_slice(b"kirc envelope v1\0");
    input.extend_from_slice(&envelope.version.to_be_bytes());
    input.extend_from_slice(&envelope.message_id);
    input.extend_from_slice(&envelope.sender);
    input.extend_from_slice(&envelope.recipient);
    input.extend_from_slice(
        &u32::try_from(envelope.kind)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    input.extend_from_slice(
        &u32::try_from(envelope.ciphertext.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    input.extend_from_slice(&envelope.ciphertext);
    input
}

fn sign_and_encode(sender: &Identity, mut envelope: wire::Envelope) -> Vec<u8> {
    envelope.signature = sender.sign(&signing_input(&envelope)).to_bytes().to_vec();
    envelope.encode_to_vec()
}

fn unsigned(
    sender: &Identity,
    recipient: ActorId,
    kind: wire::Kind,
    message_id: Uuid,
    ciphertext: Vec<u8>,
) -> wire::Envelope {
    wire::Envelope {
        version: VERSION,
        message_id: message_id.as_bytes().to_vec(),
        sender: sender.id().as_bytes().to_vec(),
        recipient: recipient.as_bytes().to_vec(),
        kind: kind as i32,
        ciphertext,
        signature: Vec::new(),
    }
}

/// The box between this actor and one peer: the X25519 agreement is done
/// once per contact, not once per message.
pub struct PairKey(ChaChaBox);

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

impl PairKey {
    pub fn new(me: &Identity, peer_box: &crypto_box::PublicKey) -> Self {
        PairKey(ChaChaBox::new(peer_box, me.box_secret()))
    }
}

/// Seals `payload` for a known recipient: boxed with the pair's key, signed.
pub fn seal(
    sender: &Identity,
    recipient: ActorId,
    pair: &PairKey,
    kind: wire::Kind,
    message_id: Uuid,
    payload: &[u8],
) -> Vec<u8> {
    // Encryption with a valid key and nonce cannot fail for in-memory
    // payloads; an empty ciphertext would be rejected by the receiver.
    let ciphertext = pair
        .0
        .encrypt(&nonce(&message_id, &sender.id()), payload)
        .unwrap_or_default();
    sign_and_encode(
        sender,
        unsigned(sender, recipient, kind, message_id, ciphertext),
    )
}

/// Seals `payload` anonymously (the recipient needs no key of the sender's
/// to open it), signed by the sender.
pub fn seal_anonymous(
    sender: &Identity,
    recipient: ActorId,
    recipient_box: &crypto_box::PublicKey,
    kind: wire::Kind,
    message_id: Uuid,
    payload: &[u8],
) -> Vec<u8> {
    let ciphertext = recipient_box.seal(&mut OsRng, payload).unwrap_or_default();
    sign_and_encode(
        sender,
        unsigned(sender, recipient, kind, message_id, ciphertext),
    )
}

/// Decodes and checks what can be checked without keys.
pub fn parse(bytes: &[u8], me: ActorId) -> Result<(wire::Envelope, Header), Rejection> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Rejection::Oversized);
    }
    let envelope = wire::Envelope::decode(bytes).map_err(|_| Rejection::Undecodable)?;
    if envelope.version != VERSION {
        return Err(Rejection::UnknownVersion);
    }
    let message_id = Uuid::from_slice(&envelope.message_id).map_err(|_| Rejection::Malformed)?;
    let sender = ActorId::from_slice(&envelope.sender).ok_or(Rejection::Malformed)?;
    let recipient = ActorId::from_slice(&envelope.recipient).ok_or(Rejection::Malformed)?;
    let kind = wire::Kind::try_from(envelope.kind).map_err(|_| Rejection::Malformed)?;
    if envelope.signature.len() != ed25519_dalek::SIGNATURE_LENGTH || envelope.ciphertext.is_empty()
    {
        return Err(Rejection::Malformed);
    }
    if recipient != me {
        return Err(Rejection::WrongRecipient);
    }
    debug_assert_eq!(ACTOR_ID_LEN, 16);
    Ok((
        envelope,
        Header {
            message_id,
            sender,
            recipient,
            kind,
        },
    ))
}

/// Checks the signature with the sender's key (strict Ed25519: no malleable
/// signatures).
pub fn verify(envelope: &wire::Envelope, sender_key: &VerifyingKey) -> Result<(), Rejection> {
    let signature = Signature::from_slice(&envelope.signature).map_err(|_| Rejection::Malformed)?;
    sender_key
        .verify_strict(&signing_input(envelope), &signature)
        .map_err(|_| Rejection::BadSignature)
}

/// Checks many envelopes' signatures in one equation (a random linear
/// combination of theirs, one multi-scalar multiplication: about half the
/// work of checking them one by one). `true` means every envelope is signed
/// by the holder of its key; `false` that one at least may not be, and they
/// must be checked one by one with [`verify`] to find which. The equation
/// is the cofactorless one; it differs from [`verify`]'s strict rules only
/// on signatures a key's holder crafts with small-order parts, which prove
/// nothing a holder could not sign anyway. Weak keys, which let anyone sign,
/// are left to [`verify`], which refuses them.
pub fn verify_all(envelopes: &[(&wire::Envelope, &VerifyingKey)]) -> bool {
    let inputs: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|(envelope, _)| signing_input(envelope))
        .collect();
    let batch: Vec<Signed<'_>> = envelopes
        .iter()
        .zip(&inputs)
        .map(|((envelope, key), input)| Signed {
            message: input,
            signature: &envelope.signature,
            key,
        })
        .collect();
    signatures::verify_batch(&batch)
}

/// Decrypts a verified envelope from a known sender.
pub fn open(
    envelope: &wire::Envelope,
    header: &Header,
    pair: &PairKey,
) -> Result<Vec<u8>, Rejection> {
    pair.0
        .decrypt(
            &nonce(&header.message_id, &header.sender),
            envelope.ciphertext.as_slice(),
        )
        .map_err(|_| Rejection::Undecryptable)
}

/// Decrypts an anonymous sealed box (a contact request). Its signature is
/// checked afterwards, against the profile inside.
pub fn open_anonymous(envelope: &wire::Envelope, me: &Identity) -> Result<Vec<u8>, Rejection> {
    me.box_secret()
        .unseal(&envelope.ciphertext)
        .map_err(|_| Rejection::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> Vec<u8> {
        wire::ChatPayload {
            text: text.into(),
            ..wire::ChatPayload::default()
        }
        .encode_to_vec()
    }

    /// `count` envelopes from alice to bob, each signed by her.
    fn from_alice(count: usize) -> (Identity, Vec<wire::Envelope>) {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let pair = PairKey::new(&alice, &bob.box_key());
        let envelopes = (0..count)
            .map(|index| {
                let bytes = seal(
                    &alice,
                    bob.id(),
                    &pair,
                    wire::Kind::Chat,
                    new_message_id(),
                    &chat(&format!("{index}")),
                );
                wire::Envelope::decode(bytes.as_slice()).unwrap()
            })
            .collect();
        (alice, envelopes)
    }

    #[test]
    fn signatures_checked_together_pass_only_if_each_passes() {
        let (alice, mut envelopes) = from_alice(5);
        let key = alice.signing_key();
        let all = |envelopes: &[wire::Envelope]| {
            verify_all(&envelopes.iter().map(|e| (e, &key)).collect::<Vec<_>>())
        };
        assert!(all(&envelopes));
        // Any one altered byte (signed input or signature) fails the group.
        envelopes[3].ciphertext[0] ^= 1;
        assert!(!all(&envelopes));
        envelopes[3].ciphertext[0] ^= 1;
        envelopes[1].signature[40] ^= 1;
        assert!(!all(&envelopes));
        assert!(verify(&envelopes[1], &key).is_err());
        envelopes[1].signature.truncate(10);
        assert!(!all(&envelopes));
        // Someone else's key.
        let other = Identity::generate().signing_key();
        assert!(!verify_all(&[(&envelopes[0], &other)]));
    }

    #[test]
    fn a_weak_key_fails_the_group_as_it_fails_alone() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
        use curve25519_dalek::scalar::Scalar;
        // The identity point as a key: anyone can sign for it, since
        // s·B = R + k·A holds for R = s·B whatever the message.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity_point).unwrap();
        let (_, mut envelopes) = from_alice(1);
        let s = Scalar::from(7u8);
        let mut forged = (s * ED25519_BASEPOINT_POINT).compress().to_bytes().to_vec();
        forged.extend_from_slice(s.as_bytes());
        envelopes[0].signature = forged;
        // A batch equation alone takes the forgery (ed25519-dalek's, whose
        // equation ours shares).
        let messages = [signing_input(&envelopes[0])];
        let signature = Signature::from_slice(&envelopes[0].signature).unwrap();
        assert!(
            ed25519_dalek::verify_batch(&[messages[0].as_slice()], &[signature], &[weak]).is_ok()
        );
        assert!(!verify_all(&[(&envelopes[0], &weak)]));
        assert_eq!(verify(&envelopes[0], &weak), Err(Rejection::BadSignature));
    }

    #[test]
    fn seal_then_open_round_trips_and_binds_every_field() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let id = new_message_id();
        let bytes = seal(
            &alice,
            bob.id(),
            &PairKey::new(&alice, &bob.box_key()),
            wire::Kind::Chat,
            id,
            &chat("hello"),
        );

        let (envelope, header) = parse(&bytes, bob.id()).unwrap();
        assert_eq!(header.sender, alice.id());
        assert_eq!(header.message_id, id);
        assert!(
            (header.created_at_unix_ms() - kirc_proto::unix_ms(std::time::SystemTime::now())).abs()
                < 5_000
        );
        verify(&envelope, &alice.signing_key()).unwrap();
        let payload = open(&envelope, &header, &PairKey::new(&bob, &alice.box_key())).unwrap();
        assert_eq!(
            wire::ChatPayload::decode(payload.as_slice()).unwrap().text,
            "hello"
        );

        // Any changed field breaks the signature.
        for tamper in 0..4 {
            let mut changed = envelope.clone();
            match tamper {
                0 => changed.message_id[0] ^= 1,
                1 => changed.ciphertext[0] ^= 1,
                2 => changed.kind = wire::Kind::Receipt as i32,
                _ => changed.sender[0] ^= 1,
            }
            assert_eq!(
                verify(&changed, &alice.signing_key()),
                Err(Rejection::BadSignature),
                "tamper {tamper}"
            );
        }
        // Another key does not verify it.
        assert_eq!(
            verify(&envelope, &bob.signing_key()),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn parse_classifies_bad_input() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let good = seal(
            &alice,
            bob.id(),
            &PairKey::new(&alice, &bob.box_key()),
            wire::Kind::Chat,
            new_message_id(),
            &chat("x"),
        );

        assert_eq!(
            parse(&good, alice.id()).unwrap_err(),
            Rejection::WrongRecipient
        );
        assert_eq!(
            parse(b"\xff\xff\xff garbage", bob.id()).unwrap_err(),
            Rejection::Undecodable
        );
        assert_eq!(
            parse(&good[..good.len() / 2], bob.id()).unwrap_err(),
            Rejection::Undecodable
        );
        assert_eq!(
            parse(&vec![0u8; MAX_ENVELOPE_BYTES + 1], bob.id()).unwrap_err(),
            Rejection::Oversized
        );

        let mut envelope = wire::Envelope::decode(good.as_slice()).unwrap();
        envelope.version = 2;
        assert_eq!(
            parse(&envelope.encode_to_vec(), bob.id()).unwrap_err(),
            Rejection::UnknownVersion
        );
        let mut envelope = wire::Envelope::decode(good.as_slice()).unwrap();
        envelope.sender.truncate(5);
        assert_eq!(
            parse(&envelope.encode_to_vec(), bob.id()).unwrap_err(),
            Rejection::Malformed
        );
        let mut envelope = wire::Envelope::decode(good.as_slice()).unwrap();
        envelope.kind = 99;
        assert_eq!(
            parse(&envelope.encode_to_vec(), bob.id()).unwrap_err(),
            Rejection::Malformed
        );
    }

    #[test]
    fn only_the_recipient_can_open() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let eve = Identity::generate();
        let bytes = seal(
            &alice,
            bob.id(),
            &PairKey::new(&alice, &bob.box_key()),
            wire::Kind::Chat,
            new_message_id(),
            &chat("secret"),
        );
        let (envelope, header) = parse(&bytes, bob.id()).unwrap();
        assert_eq!(
            open(&envelope, &header, &PairKey::new(&eve, &alice.box_key())),
            Err(Rejection::Undecryptable)
        );
    }

    #[test]
    fn anonymous_seal_opens_without_the_senders_keys() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let bytes = seal_anonymous(
            &alice,
            bob.id(),
            &bob.box_key(),
            wire::Kind::ContactRequest,
            new_message_id(),
            b"profile",
        );
        let (envelope, _) = parse(&bytes, bob.id()).unwrap();
        assert_eq!(open_anonymous(&envelope, &bob).unwrap(), b"profile");
        verify(&envelope, &alice.signing_key()).unwrap();
        assert_eq!(
            open_anonymous(&envelope, &alice),
            Err(Rejection::Undecryptable)
        );
    }

    #[test]
    fn conversation_ids_agree_on_both_sides() {
        let a = Identity::generate().id();
        let b = Identity::generate().id();
        assert_eq!(conversation_id(a, b), conversation_id(b, a));
        assert_ne!(conversation_id(a, b), conversation_id(a, a));
    }

    #[test]
    fn wire_overhead_per_chat_message_is_under_160_bytes() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        for size in [1usize, 50, 100, 500, 4000] {
            let text = "x".repeat(size);
            let bytes = seal(
                &alice,
                bob.id(),
                &PairKey::new(&alice, &bob.box_key()),
                wire::Kind::Chat,
                new_message_id(),
                &chat(&text),
            );
            // The record key (the 16-byte conversation id) travels too.
            let overhead = bytes.len() + 16 - size;
            assert!(
                overhead <= 160,
                "{size}-byte text: {overhead} bytes of overhead"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn kind() -> impl Strategy<Value = wire::Kind> {
            prop_oneof![
                Just(wire::Kind::Chat),
                Just(wire::Kind::ContactAccepted),
                Just(wire::Kind::Receipt),
                Just(wire::Kind::ReceiptRange),
                Just(wire::Kind::Presence),
                Just(wire::Kind::Typing),
                Just(wire::Kind::Heartbeat),
            ]
        }

        proptest! {
            /// Whatever the payload, kind and id: what alice seals, bob
            /// parses, verifies and opens to the same bytes; any one byte
            /// of the ciphertext changed is refused by the signature.
            #[test]
            fn seal_then_open_round_trips(
                seeds in any::<([u8; 32], [u8; 32])>(),
                payload in proptest::collection::vec(any::<u8>(), 0..2048),
                kind in kind(),
                id in any::<u128>(),
                flip in any::<(usize, u8)>(),
            ) {
                let alice = Identity::from_seed(&seeds.0);
                let bob = Identity::from_seed(&seeds.1);
                let message_id = Uuid::from_u128(id);
                let sealed = seal(&alice, bob.id(), &PairKey::new(&alice, &bob.box_key()), kind, message_id, &payload);
                let (envelope, header) = parse(&sealed, bob.id()).unwrap();
                prop_assert_eq!(header.message_id, message_id);
                prop_assert_eq!(header.sender, alice.id());
                prop_assert_eq!(header.kind, kind);
                verify(&envelope, &alice.signing_key()).unwrap();
                let opened = open(&envelope, &header, &PairKey::new(&bob, &alice.box_key())).unwrap();
                prop_assert_eq!(&opened, &payload);

                let mut tampered = envelope.clone();
                let at = flip.0 % tampered.ciphertext.len();
                tampered.ciphertext[at] ^= flip.1.max(1);
                prop_assert_eq!(verify(&tampered, &alice.signing_key()), Err(Rejection::BadSignature));
            }

            /// Parsing never panics, whatever the bytes.
            #[test]
            fn parse_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse(&bytes, Identity::from_seed(&[1; 32]).id());
            }
        }
    }
}
