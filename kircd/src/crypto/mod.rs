//! Keys, sealed envelopes, signed profiles and invite tokens: the code that
//! decides what a byte from another actor means. No network, no database.

pub mod envelope;
pub mod group;
pub mod identity;
pub mod profile;
pub mod signatures;
