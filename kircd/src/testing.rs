//! Fixtures for the unit tests: identities from fixed seeds, their signed
//! profiles, and contact books made without a database.

use std::sync::Arc;

use kirc_proto::wire::v1 as wire;

use crate::book::{Contact, ContactBook};
use crate::crypto::identity::Identity;
use crate::crypto::profile::{VerifiedProfile, sign_profile, verify_profile};
use crate::store::ContactState;

pub fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_seed(&[seed; 32]))
}

/// `identity`'s profile, signed and verified, stamped at `updated_at`.
pub fn profile(identity: &Identity, name: &str, updated_at: i64) -> VerifiedProfile {
    let profile = wire::PublicProfile {
        signing_key: identity.signing_key().to_bytes().to_vec(),
        box_key: identity.box_key().as_bytes().to_vec(),
        display_name: name.to_owned(),
        kafka: Some(wire::KafkaAccess {
            bootstrap_servers: format!("{name}.example:9093"),
            data_in_topic: format!("{name}.data-in"),
            rpc_in_topic: format!("{name}.rpc-in"),
            security_protocol: String::from("sasl_ssl"),
            sasl_mechanism: String::from("SCRAM-SHA-256"),
            username: String::from("public"),
            password: String::from("write-only"),
            ca_pem: String::new(),
        }),
        updated_at_unix_ms: updated_at,
        features: vec![wire::Feature::ReceiptRanges as i32],
    };
    verify_profile(&sign_profile(identity, &profile)).unwrap()
}

/// A loaded book of `me` holding `contacts` (identity, name, state), added
/// in that order.
pub fn book(me: &Arc<Identity>, contacts: &[(&Identity, &str, ContactState)]) -> ContactBook {
    let book = ContactBook::new(Arc::clone(me));
    for (added, (identity, name, state)) in contacts.iter().enumerate() {
        let added = i64::try_from(added).unwrap();
        book.admit_verified(&profile(identity, name, 1), *state, added);
    }
    book.set_loaded();
    book
}

pub fn contact(book: &ContactBook, identity: &Identity) -> Arc<Contact> {
    book.get(&identity.id()).unwrap()
}
