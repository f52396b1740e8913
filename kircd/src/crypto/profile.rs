//! Public profiles and invite tokens.
//!
//! A public profile says how to reach an actor (keys, Kafka inbox, the
//! write-only credential) and is signed by the actor's identity key; a
//! receiver verifies it against the key inside and derives the actor id from
//! that key, so a profile cannot speak for another id. An invite token is a
//! signed profile plus a one-time secret and an expiry, as one copyable
//! string: `kirc1:` + base64url(protobuf).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use kirc_proto::wire::v1 as wire;
use prost::Message;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::crypto::identity::{ActorId, Identity};

pub const TOKEN_PREFIX: &str = "kirc1:";
pub const CHANNEL_TOKEN_PREFIX: &str = "kircc1:";
/// Tokens longer than this are refused before decoding.
const MAX_TOKEN_LEN: usize = 32 * 1024;
const PROFILE_CONTEXT: &[u8] = b"kirc profile v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error(
        "this is not a K-IRC invite ({0}); an invite starts with `kirc1:` (a channel's with `kircc1:`), copy it whole"
    )]
    Malformed(&'static str),
    #[error("this invite has been altered: its signature does not match the profile inside")]
    Tampered,
    #[error("this invite expired at {0}; ask for a new one")]
    Expired(String),
    #[error("this is your own invite; send it to someone else")]
    OwnInvite,
    #[error("this invite was already used: {0} is already a contact")]
    AlreadyUsed(String),
}

/// A profile whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedProfile {
    pub actor_id: ActorId,
    pub signing_key: VerifyingKey,
    pub box_key: crypto_box::PublicKey,
    pub profile: wire::PublicProfile,
    pub signed: wire::SignedProfile,
}

pub fn sign_profile(identity: &Identity, profile: &wire::PublicProfile) -> wire::SignedProfile {
    let bytes = profile.encode_to_vec();
    let mut input = PROFILE_CONTEXT.to_vec();
    input.extend_from_slice(&bytes);
    wire::SignedProfile {
        profile: bytes,
        signature: identity.sign(&input).to_bytes().to_vec(),
    }
}

/// Verifies a signed profile against the signing key it carries.
pub fn verify_profile(signed: &wire::SignedProfile) -> Result<VerifiedProfile, InviteError> {
    let profile = wire::PublicProfile::decode(signed.profile.as_slice())
        .map_err(|_| InviteError::Malformed("the profile does not decode"))?;
    let key_bytes: [u8; 32] = profile
        .signing_key
        .as_slice()
        .try_into()
        .map_err(|_| InviteError::Malformed("the signing key is not 32 bytes"))?;
    let box_bytes: [u8; 32] = profile
        .box_key
        .as_slice()
        .try_into()
        .map_err(|_| InviteError::Malformed("the box key is not 32 bytes"))?;
    let signing_key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| InviteError::Malformed("the signing key is invalid"))?;
    let signature = Signature::from_slice(&signed.signature).map_err(|_| InviteError::Tampered)?;
    let mut input = PROFILE_CONTEXT.to_vec();
    input.extend_from_slice(&signed.profile);
    signing_key
        .verify_strict(&input, &signature)
        .map_err(|_| InviteError::Tampered)?;
    let access = profile
        .kafka
        .as_ref()
        .ok_or(InviteError::Malformed("no Kafka access in the profile"))?;
    if access.bootstrap_servers.is_empty()
        || access.data_in_topic.is_empty()
        || access.rpc_in_topic.is_empty()
    {
        return Err(InviteError::Malformed(
            "the profile's Kafka access is incomplete",
        ));
    }
    Ok(VerifiedProfile {
        actor_id: ActorId::of(&signing_key),
        signing_key,
        box_key: crypto_box::PublicKey::from(box_bytes),
        profile,
        signed: signed.clone(),
    })
}

/// A new one-time secret and its hash (only the hash is stored).
pub fn new_secret() -> ([u8; 16], [u8; 32]) {
    let mut secret = [0u8; 16];
    OsRng.fill_bytes(&mut secret);
    (secret, secret_hash(&secret))
}

pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"kirc invite secret v1")
        .chain_update(secret)
        .finalize()
        .into()
}

pub fn encode_token(invite: &wire::Invite) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(invite.encode_to_vec())
    )
}

/// Decodes a token and checks its profile and expiry. Whitespace a chat
/// program or terminal may have inserted is ignored.
pub fn read_token(
    token: &str,
    now_unix_ms: i64,
) -> Result<(wire::Invite, VerifiedProfile), InviteError> {
    let bytes = token_bytes(token, TOKEN_PREFIX)?;
    let invite = wire::Invite::decode(bytes.as_slice())
        .map_err(|_| InviteError::Malformed("it does not decode"))?;
    let profile = check_invite(&invite, now_unix_ms)?;
    Ok((invite, profile))
}

/// A channel invite token: the owner's invite, and the channel it admits
/// to. Reusable until it expires (the owner keeps the secret's hash with
/// the channel).
pub fn encode_channel_token(invite: &wire::ChannelInvite) -> String {
    format!(
        "{CHANNEL_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(invite.encode_to_vec())
    )
}

/// What a channel token holds, checked like an invite, with the channel's
/// id.
#[derive(Debug, Clone)]
pub struct ChannelToken {
    pub channel_id: uuid::Uuid,
    pub name: String,
    pub owner: wire::Invite,
    pub profile: VerifiedProfile,
}

pub fn read_channel_token(token: &str, now_unix_ms: i64) -> Result<ChannelToken, InviteError> {
    let bytes = token_bytes(token, CHANNEL_TOKEN_PREFIX)?;
    let invite = wire::ChannelInvite::decode(bytes.as_slice())
        .map_err(|_| InviteError::Malformed("it does not decode"))?;
    let channel_id = uuid::Uuid::from_slice(&invite.channel_id)
        .map_err(|_| InviteError::Malformed("the channel is missing"))?;
    let owner = invite
        .owner
        .ok_or(InviteError::Malformed("the owner's invite is missing"))?;
    let profile = check_invite(&owner, now_unix_ms)?;
    Ok(ChannelToken {
        channel_id,
        name: invite.name,
        owner,
        profile,
    })
}

/// The bytes of a token with `prefix`, whitespace removed.
fn token_bytes(token: &str, prefix: &str) -> Result<Vec<u8>, InviteError> {
    let compact: String = token.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() > MAX_TOKEN_LEN {
        return Err(InviteError::Malformed("it is far too long"));
    }
    let body = compact
        .strip_prefix(prefix)
        .ok_or(InviteError::Malformed("the prefix is missing"))?;
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| InviteError::Malformed("it is not base64url"))
}

/// An invite's secret, expiry and signed profile.
fn check_invite(invite: &wire::Invite, now_unix_ms: i64) -> Result<VerifiedProfile, InviteError> {
    if invite.secret.len() != 16 {
        return Err(InviteError::Malformed("the secret is missing"));
    }
    // Every invite carries its expiry; a token cut short just after the
    // secret decodes without one, and is incomplete rather than expired.
    if invite.expires_at_unix_ms <= 0 {
        return Err(InviteError::Malformed("the expiry is missing"));
    }
    let signed = invite
        .profile
        .as_ref()
        .ok_or(InviteError::Malformed("the profile is missing"))?;
    let profile = verify_profile(signed)?;
    if invite.expires_at_unix_ms <= now_unix_ms {
        let expired = jiff::Timestamp::from_millisecond(invite.expires_at_unix_ms)
            .map(|at| at.to_string())
            .unwrap_or_else(|_| String::from("an invalid time"));
        return Err(InviteError::Expired(expired));
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(identity: &Identity) -> wire::PublicProfile {
        wire::PublicProfile {
            signing_key: identity.signing_key().to_bytes().to_vec(),
            box_key: identity.box_key().as_bytes().to_vec(),
            display_name: "alice".into(),
            kafka: Some(wire::KafkaAccess {
                bootstrap_servers: "127.0.0.1:19092".into(),
                data_in_topic: "alice.data-in".into(),
                rpc_in_topic: "alice.rpc-in".into(),
                security_protocol: "plaintext".into(),
                ..wire::KafkaAccess::default()
            }),
            updated_at_unix_ms: 1,
            features: Vec::new(),
        }
    }

    fn token(identity: &Identity, expires_at_unix_ms: i64) -> String {
        let (secret, _) = new_secret();
        encode_token(&wire::Invite {
            profile: Some(sign_profile(identity, &profile(identity))),
            secret: secret.to_vec(),
            expires_at_unix_ms,
        })
    }

    #[test]
    fn a_token_round_trips_and_names_the_inviter() {
        let alice = Identity::generate();
        let text = token(&alice, 2_000);
        assert!(text.starts_with("kirc1:"));
        let (invite, verified) =
            read_token(&format!("  {}\n{} ", &text[..20], &text[20..]), 1_000).unwrap();
        assert_eq!(verified.actor_id, alice.id());
        assert_eq!(verified.box_key, alice.box_key());
        assert_eq!(invite.secret.len(), 16);
    }

    #[test]
    fn expired_tampered_and_malformed_tokens_are_refused_clearly() {
        let alice = Identity::generate();
        let text = token(&alice, 2_000);
        assert!(matches!(
            read_token(&text, 3_000),
            Err(InviteError::Expired(_))
        ));

        // A token cut short at any point is incomplete, never "expired" (a
        // cut right after the secret used to decode with expiry 0) and
        // never accepted.
        let fresh = token(&alice, 10_000);
        for end in TOKEN_PREFIX.len()..fresh.len() {
            let result = read_token(&fresh[..end], 1_000);
            assert!(
                matches!(
                    result,
                    Err(InviteError::Malformed(_) | InviteError::Tampered)
                ),
                "cut at {end}: {result:?}"
            );
        }

        // Flip one byte inside the signed profile.
        let mut bytes = URL_SAFE_NO_PAD.decode(&text[TOKEN_PREFIX.len()..]).unwrap();
        let mut invite = wire::Invite::decode(bytes.as_slice()).unwrap();
        let signed = invite.profile.as_mut().unwrap();
        let position = signed.profile.len() - 3;
        signed.profile[position] ^= 0x20;
        bytes = invite.encode_to_vec();
        let tampered = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(
            read_token(&tampered, 1_000).unwrap_err(),
            InviteError::Tampered
        );

        // Someone else's signature over alice's profile.
        let mallory = Identity::generate();
        let mut forged = sign_profile(&mallory, &profile(&alice));
        forged.profile = profile(&alice).encode_to_vec();
        let invite = wire::Invite {
            profile: Some(forged),
            secret: vec![1; 16],
            expires_at_unix_ms: 2_000,
        };
        assert_eq!(
            read_token(&encode_token(&invite), 1_000).unwrap_err(),
            InviteError::Tampered
        );

        for bad in [
            "",
            "hello",
            "kirc1:",
            "kirc1:!!!",
            "kirc1:AAAA",
            &text[..text.len() / 2],
        ] {
            let err = read_token(bad, 1_000).unwrap_err();
            assert!(matches!(err, InviteError::Malformed(_)), "{bad:?}: {err:?}");
            assert!(err.to_string().contains("not a K-IRC invite"), "{err}");
        }
    }

    #[test]
    fn a_channel_token_names_its_channel_and_is_checked_as_an_invite() {
        let alice = Identity::generate();
        let (secret, _) = new_secret();
        let channel = uuid::Uuid::new_v4();
        let owner = wire::Invite {
            profile: Some(sign_profile(&alice, &profile(&alice))),
            secret: secret.to_vec(),
            expires_at_unix_ms: 2_000,
        };
        let invite = |owner: Option<wire::Invite>, channel_id: Vec<u8>| wire::ChannelInvite {
            owner,
            channel_id,
            name: "#rust".into(),
        };
        let text = encode_channel_token(&invite(Some(owner.clone()), channel.as_bytes().to_vec()));
        assert!(text.starts_with("kircc1:"));
        let read = read_channel_token(&text, 1_000).unwrap();
        assert_eq!(read.channel_id, channel);
        assert_eq!(read.name, "#rust");
        assert_eq!(read.owner, owner);
        assert_eq!(read.profile.actor_id, alice.id());

        assert!(matches!(
            read_channel_token(&text, 3_000),
            Err(InviteError::Expired(_))
        ));
        // A contact's token is not a channel's, and the other way round.
        assert!(matches!(
            read_token(&text, 1_000),
            Err(InviteError::Malformed(_))
        ));
        assert!(matches!(
            read_channel_token(&encode_token(&owner), 1_000),
            Err(InviteError::Malformed(_))
        ));
        for broken in [
            invite(None, channel.as_bytes().to_vec()),
            invite(Some(owner.clone()), vec![1; 3]),
        ] {
            let err = read_channel_token(&encode_channel_token(&broken), 1_000).unwrap_err();
            assert!(matches!(err, InviteError::Malformed(_)), "{err:?}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// A token carries its profile and secret through encoding and
            /// back, whatever the name and the expiry.
            #[test]
            fn tokens_round_trip(
                seed in any::<[u8; 32]>(),
                name in "\\PC{0,40}",
                secret in any::<[u8; 16]>(),
                expires_in in 1..i64::from(u32::MAX),
            ) {
                let identity = Identity::from_seed(&seed);
                let mut public = profile(&identity);
                public.display_name = name.clone();
                let invite = wire::Invite {
                    profile: Some(sign_profile(&identity, &public)),
                    secret: secret.to_vec(),
                    expires_at_unix_ms: 1_000 + expires_in,
                };
                let (read, verified) = read_token(&encode_token(&invite), 1_000).unwrap();
                prop_assert_eq!(read, invite);
                prop_assert_eq!(verified.actor_id, identity.id());
                prop_assert_eq!(verified.profile.display_name, name);
            }
        }
    }
}
