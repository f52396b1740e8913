//! Channels: IRC-style group conversations, each relayed by the actor that
//! created it (ARCHITECTURE.md, "Channels"). `rules.rs` decides what the
//! owner allows; the group crypto is `crypto::group`.

pub mod rules;
