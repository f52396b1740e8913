//! The K-IRC daemon as a library: the `kircd` binary is a thin CLI over it,
//! and the integration tests use its wire and crypto code to play peers and
//! attackers. See ARCHITECTURE.md for the map: the modules below are listed
//! there from the bottom layer up.

pub mod api;
pub mod backends;
pub mod book;
pub mod channels;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod content;
pub mod crypto;
pub mod daemon;
pub mod files;
pub mod hub;
pub mod live;
pub mod messaging;
pub mod peers;
pub mod presence;
pub mod store;
#[cfg(test)]
mod testing;
pub mod transfers;
pub mod transport;
