//! Channels: IRC-style group conversations, each relayed by the actor that
//! created it (ARCHITECTURE.md, "Channels"). `rules.rs` decides what the
//! owner allows, `relay.rs` what a member accepts from the owner; the group
//! crypto is `crypto::group`.

pub mod relay;
pub mod rules;
