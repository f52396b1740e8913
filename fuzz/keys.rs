//! The fixed identities every target and the corpus use: alice sends, bob
//! receives. Records in the corpus are sealed with these keys, so mutations
//! of them reach past the signature check into decryption and decoding.

use std::sync::OnceLock;

use kircd::crypto::envelope::PairKey;
use kircd::crypto::identity::Identity;

pub struct Keys {
    pub alice: Identity,
    pub bob: Identity,
    /// Bob's box with alice: what bob opens her envelopes with.
    pub bob_with_alice: PairKey,
    /// Alice's box with bob: what she seals with.
    pub alice_with_bob: PairKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let alice = Identity::from_seed(&[0xa1; 32]);
        let bob = Identity::from_seed(&[0xb0; 32]);
        Keys {
            bob_with_alice: PairKey::new(&bob, &alice.box_key()),
            alice_with_bob: PairKey::new(&alice, &bob.box_key()),
            alice,
            bob,
        }
    })
}

/// The time the token target reads tokens at (ms since the epoch).
pub const NOW_MS: i64 = 1_800_000_000_000;
